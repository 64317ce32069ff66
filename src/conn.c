/* postern: one client connection (see conn.h): accept, the TLS handshake
 * (with 0-RTT, early.h), the client's input and the one output path, the
 * choice of the application after the handshake, the services that
 * application uses (pst_host_t), timers, and the one close path. */
#include "postern/conn.h"

#include <assert.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"
#include "postern/common.h"
#include "postern/early.h"
#include "postern/gen.h"
#include "postern/h1.h"
#include "postern/h2.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/sni.h"
#include "postern/tcp.h"
#include "postern/tls.h"
#include "postern/uvio.h"

/* How long a closing connection may take to flush its close_notify. */
#define CONN_LINGER_MS 1000

static void conn_pump(pst_conn_t *conn);

/* ---- wolfSSL I/O: no sockets, only the connection's buffers ---- */

static int conn_tls_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  pst_conn_t *conn = ctx;
  /* At the end of what the client sent, even after its TCP FIN: a FIN is
   * not a TLS close, and wolfSSL told of one (CONN_CLOSE) would refuse to
   * write the answers still due to a client that only half-closed. The
   * handshake and the reader see client.eof themselves. */
  return pst_tls_io_take(&conn->in_ptr, &conn->in_len, buf, sz);
}

/* Everything wolfSSL sends is queued in cout and written by pst_conn_flush_now,
 * so one pump step makes one write(2). The queue is bounded by
 * backpressure: applications stop producing above PST_CLIENT_HIGH_WATER. */
static int conn_tls_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  pst_conn_t *conn = ctx;
  if (pst_buf_append(&conn->cout, buf, (size_t)sz) != 0) return WOLFSSL_CBIO_ERR_GENERAL;
  return sz;
}

/* ---- output: the one path to the client ---- */

static size_t conn_queued(const pst_conn_t *conn) {
  return conn->early_out.len + conn->pout.len + conn->cout.len +
         uv_stream_get_write_queue_size((const uv_stream_t *)&conn->client.tcp);
}

/* The client's output is below the low-water mark again: the application
 * may produce more. */
static void conn_drained(pst_conn_t *conn) {
  if (conn->app == NULL || conn->state != PST_CONN_OPEN || conn->client.shut) return;
  if (conn_queued(conn) < PST_CLIENT_LOW_WATER) conn->app->ops->drain(conn->app);
}

static void conn_on_write(uv_write_t *req, int status) {
  pst_conn_t *conn = pst_uv_write_done(req);
  if (conn->state == PST_CONN_CLOSING) return;
  if (status < 0) {
    pst_conn_client_failed(conn, status, "client write failed");
    return;
  }
  conn_drained(conn);
}

/* Hands the ciphertext wolfSSL produced to the client socket now, and ends
 * a cork. Returns 0 or a negative libuv error (the caller closes). This and
 * the per-turn flush below are the only writes to the client. */
int pst_conn_flush_now(pst_conn_t *conn) {
  conn->cork = 0;
  if (conn->cout.len == 0 || uv_is_closing((uv_handle_t *)&conn->client.tcp)) return 0;
  int rc = pst_uv_write((uv_stream_t *)&conn->client.tcp, pst_buf_head(&conn->cout), conn->cout.len,
                        conn, conn_on_write);
  pst_buf_consume(&conn->cout, conn->cout.len);
  return rc;
}

/* Encrypts pout into cout. Returns 0 or PST_ETLS; pout is emptied either
 * way. */
int pst_conn_encrypt(pst_conn_t *conn) {
  if (conn->pout.len == 0) return 0;
  /* One call: wolfSSL cuts it into records of at most 16 KiB, and the send
   * callback never blocks, so it takes everything or fails. */
  int n = wolfSSL_write(conn->ssl, pst_buf_head(&conn->pout), (int)conn->pout.len);
  int ok = n == (int)conn->pout.len;
  pst_buf_consume(&conn->pout, conn->pout.len);
  return ok ? 0 : PST_ETLS;
}

static void conn_want_flush(pst_conn_t *conn) {
  if (conn->flush_queued || conn->state == PST_CONN_CLOSING) return;
  conn->flush_queued = 1;
  conn->flush_next = conn->worker->flush_list;
  conn->worker->flush_list = conn;
}

/* Takes conn off the flush list (it is about to be freed). The list only
 * holds the connections with output due this loop turn: a short walk. */
void pst_conn_flush_unlist(pst_conn_t *conn) {
  if (!conn->flush_queued) return;
  for (pst_conn_t **p = &conn->worker->flush_list; *p != NULL; p = &(*p)->flush_next) {
    if (*p == conn) {
      *p = conn->flush_next;
      break;
    }
  }
  conn->flush_queued = 0;
}

/* Encrypts and writes what is due to conn's client; tells the application
 * there is room again when its output left at once (no write callback will
 * say so). May close conn. */
static void conn_flush(pst_conn_t *conn) {
  if (conn->state == PST_CONN_CLOSING) return;
  size_t sent = conn->pout.len;
  if (pst_conn_encrypt(conn) != 0) {
    pst_conn_close(conn, PST_ETLS, "TLS write failed");
    return;
  }
  if (conn->cork && sent == 0) return; /* the session ticket waits for the answer */
  int rc = pst_conn_flush_now(conn);
  if (rc != 0) {
    pst_conn_client_failed(conn, rc, "client write failed");
    return;
  }
  if (sent > 0) conn_drained(conn);
}

void pst_conn_flush_all(pst_worker_t *worker) {
  /* An application told of room may queue more: it comes back on the list
   * and is written in this same pass, until the socket stops taking bytes. */
  pst_conn_t *conn;
  while ((conn = worker->flush_list) != NULL) {
    worker->flush_list = conn->flush_next;
    conn->flush_queued = 0;
    conn_flush(conn);
  }
}

/* Traffic from or to the client's application: the idle timeout starts
 * again, and the connection goes last in the eviction order, unless a
 * request head is incomplete (its place is the head's start). */
static void conn_activity(pst_conn_t *conn) {
  conn->t_last_ms = uv_now(conn->timer.loop);
  if (!conn->head) pst_conn_evict_requeue(conn);
}

/* ---- host services (app-t.h) ---- */

static pst_conn_t *conn_of(const pst_host_t *h) { return PST_CONTAINER_OF(h, pst_conn_t, host); }

/* host->ops->send. */
static int conn_send(pst_host_t *h, const char *data, size_t len) {
  pst_conn_t *conn = conn_of(h);
  if (conn->state == PST_CONN_CLOSING || conn->client.shut) return PST_ESHUTDOWN;
  if (len == 0) return 0;
  if (conn->state == PST_CONN_OPEN) {
    if (pst_buf_append(&conn->pout, data, len) != 0) {
      pst_conn_close(conn, -ENOMEM, "out of memory");
      return -ENOMEM;
    }
    conn->bytes_out += len;
    conn_want_flush(conn);
    return 0;
  }
  /* An answer to 0-RTT early data. While early data is being read,
   * postern's Finished is already out and its write keys are the
   * application keys: the answer goes at once, as 0.5-RTT data (RFC 8446
   * 2.3; .ci/wolfssl-half-rtt-data.patch), which is what saves 0-RTT's
   * round trip; not at the end of the loop turn, when the client's
   * EndOfEarlyData may have closed that window. Otherwise (the window
   * between the client's EndOfEarlyData and its Finished) it waits for the
   * handshake (conn_open). */
  if (conn->early.phase != PST_EARLY_READING || conn->early.bytes == 0 || conn->early_out.len > 0) {
    if (pst_buf_append(&conn->early_out, data, len) == 0) return 0;
    pst_conn_close(conn, -ENOMEM, "out of memory");
    return -ENOMEM;
  }
  if (wolfSSL_write(conn->ssl, data, (int)len) != (int)len) {
    pst_conn_close(conn, PST_ETLS, "TLS write failed");
    return PST_ETLS;
  }
  conn->bytes_out += len;
  int rc = pst_conn_flush_now(conn);
  if (rc != 0) pst_conn_client_failed(conn, rc, "client write failed");
  return rc;
}

/* host->ops->queued. */
static size_t conn_host_queued(const pst_host_t *h) { return conn_queued(conn_of(h)); }

static int conn_read_client(pst_conn_t *conn, int on);

/* host->ops->pause. */
static void conn_pause(pst_host_t *h, int pause) {
  pst_conn_t *conn = conn_of(h);
  if (conn->state != PST_CONN_OPEN || conn->client.paused == (unsigned)!!pause) return;
  conn->client.paused = !!pause;
  if (pause) {
    conn_read_client(conn, 0);
    return;
  }
  int rc = conn_read_client(conn, 1);
  if (rc != 0) {
    pst_conn_client_failed(conn, rc, "client read failed");
    return;
  }
  conn_pump(conn); /* decrypted bytes wolfSSL holds, and kept ciphertext */
}

/* host->ops->end. */
static void conn_host_end(pst_host_t *h) { pst_conn_end(conn_of(h)); }

/* host->ops->close. */
static void conn_host_close(pst_host_t *h, int err, const char *reason) {
  pst_conn_close(conn_of(h), err, reason);
}

const char *pst_conn_why(pst_conn_t *conn, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *why = pst_conn_vwhy(conn, fmt, ap);
  va_end(ap);
  return why;
}

/* host->ops->why. */
static const char *conn_host_why(pst_host_t *h, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *why = pst_conn_vwhy(conn_of(h), fmt, ap);
  va_end(ap);
  return why;
}

/* host->ops->phase. */
static pst_host_phase_t conn_phase(const pst_host_t *h) {
  switch (conn_of(h)->state) {
    case PST_CONN_PROXY:
    case PST_CONN_HANDSHAKE:
    case PST_CONN_EARLY: return PST_HOST_EARLY;
    case PST_CONN_OPEN: return PST_HOST_OPEN;
    case PST_CONN_CLOSING: break;
  }
  return PST_HOST_CLOSING;
}

/* host->ops->touch. */
static void conn_touch(pst_host_t *h) { conn_activity(conn_of(h)); }

/* host->ops->waiting. */
static void conn_waiting(pst_host_t *h, int delta) {
  pst_conn_t *conn = conn_of(h);
  assert(delta == 1 || delta == -1);
  assert(delta > 0 || conn->waiting > 0);
  conn->waiting += (unsigned)delta;
  if (conn->waiting == 0) {
    conn_activity(conn);
  } else {
    pst_conn_evict_unlink(conn); /* timeouts.backend_response governs */
  }
}

static void conn_arm_timer(pst_conn_t *conn, uint64_t ms);

/* host->ops->head. The deadline is the connection timer's: armed for the
 * head's deadline when that comes before the idle one (conn_on_timer
 * re-arms for whichever is next). */
static void conn_head(pst_host_t *h, int started) {
  pst_conn_t *conn = conn_of(h);
  if (conn->state == PST_CONN_CLOSING || conn->head == (unsigned)!!started) return;
  if (!started) {
    conn->head = 0;
    conn_activity(conn);
    return;
  }
  conn->head = 1;
  conn->head_start_ms = uv_now(conn->timer.loop);
  pst_conn_evict_requeue(conn);
  uint64_t limit = conn->gl->conf->request_head_timeout_ms;
  if (conn->state == PST_CONN_OPEN && limit < uv_timer_get_due_in(&conn->timer)) {
    conn_arm_timer(conn, limit);
  }
}

/* host->ops->client_cert: tls.c keeps it with the WOLFSSL object. */
static const pst_client_cert_t *conn_client_cert(const pst_host_t *h) {
  const pst_conn_t *conn = conn_of(h);
  return conn->ssl != NULL ? pst_tls_client_cert(conn->ssl) : NULL;
}

/* host->ops->facts. */
static void conn_facts(pst_host_t *h, pst_info_facts_t *f) { pst_conn_facts(conn_of(h), f); }

/* host->ops->proxy_header. */
static int conn_proxy_header(pst_host_t *h, pst_proxy_t version, pst_buf_t *out) {
  return pst_conn_proxy_header(conn_of(h), version, out);
}

static const pst_host_ops_t conn_host_ops = {
    .send = conn_send,
    .queued = conn_host_queued,
    .pause = conn_pause,
    .end = conn_host_end,
    .close = conn_host_close,
    .why = conn_host_why,
    .phase = conn_phase,
    .touch = conn_touch,
    .waiting = conn_waiting,
    .facts = conn_facts,
    .head = conn_head,
    .proxy_header = conn_proxy_header,
    .client_cert = conn_client_cert,
};

/* ---- the application ---- */

/* The one choice of an application, once the route is known: the tcp relay
 * for a tcp-mode listener whose route is an address; otherwise HTTP, by
 * ALPN (RFC 9113 3.2), whose backend may also be builtin:info (for which a
 * tcp-mode listener offers only http/1.1: config.c). */
static pst_app_t *conn_app_new(pst_conn_t *conn, int *err) {
  *err = -ENOMEM;
  if (conn->gl->conf->mode == PST_MODE_TCP && conn->host.backend->kind == PST_BACKEND_ADDR) {
    return pst_tcp_app_new(&conn->host, err);
  }
  if (conn->alpn != NULL && strcmp(conn->alpn, "h2") == 0) return pst_h2_app_new(&conn->host);
  return pst_h1_app_new(&conn->host);
}

/* Whether the application may start during the handshake, on 0-RTT early
 * data: the tcp relay with tcp_early_data: forward, and HTTP/1.1 to an
 * address (RFC 8470: it forwards only requests safe to replay). HTTP/2 and
 * builtin:info keep early data until the handshake completes. */
static int conn_app_takes_early(const pst_conn_t *conn) {
  const pst_listener_conf_t *lc = conn->gl->conf;
  if (conn->host.backend->kind != PST_BACKEND_ADDR) return 0;
  if (lc->mode == PST_MODE_TCP) return lc->tcp_early_data == PST_TCP_EARLY_FORWARD;
  return conn->alpn == NULL || strcmp(conn->alpn, "h2") != 0;
}

/* Records the protocol ALPN selected: one of the listener's (tls.c picks
 * only from them), so a pointer to the configuration's copy, which lives
 * as long as the connection's generation. */
static void conn_record_alpn(pst_conn_t *conn) {
  char *p = NULL;
  unsigned short plen = 0;
  if (conn->alpn != NULL || wolfSSL_ALPN_GetProtocol(conn->ssl, &p, &plen) != WOLFSSL_SUCCESS ||
      p == NULL) {
    return;
  }
  const pst_listener_conf_t *lc = conn->gl->conf;
  for (size_t i = 0; i < lc->n_alpn; i++) {
    if (strlen(lc->alpn[i]) == plen && memcmp(lc->alpn[i], p, plen) == 0) conn->alpn = lc->alpn[i];
  }
}

/* Picks the route (SNI is known) and starts the application, in state
 * (EARLY or OPEN). Returns 0, or a negative error after which conn is
 * closing. */
static int conn_app_start(pst_conn_t *conn, pst_conn_state_t state) {
  assert(conn->app == NULL && (state == PST_CONN_EARLY || state == PST_CONN_OPEN));
  pst_conn_set_state(conn, state);
  int err;
  conn->app = conn_app_new(conn, &err);
  if (conn->app == NULL) {
    pst_conn_close(conn, err, err == -ENOMEM ? "out of memory" : "backend connect failed");
    return err;
  }
  return 0;
}

/* Picks the backend by the server name (routes). */
static void conn_route(pst_conn_t *conn) {
  conn->host.backend =
      pst_sni_route(conn->gl->routes, conn->gl->conf, conn->host.sni, strlen(conn->host.sni));
}

/* Hands bytes to the application. Returns 0, or nonzero after which conn
 * is closing. */
static int conn_feed(pst_conn_t *conn, const char *data, size_t len) {
  int rc = conn->app->ops->feed(conn->app, data, len);
  if (rc != 0 && conn->state != PST_CONN_CLOSING) {
    pst_conn_close(conn, rc,
                   rc == -ENOMEM ? "out of memory" : "the application refused the client's bytes");
  }
  return conn->state == PST_CONN_CLOSING;
}

/* Early data (conn->early.data) is the very start of the client's stream:
 * it goes to the application before anything read after the handshake. A
 * connection that holds it until its handshake completes delivers it once:
 * a replayed ClientHello never completes. */
static void conn_feed_early(pst_conn_t *conn) {
  if (conn->early.data.len == 0 || conn->app == NULL) return;
  pst_buf_t early = {0};
  pst_early_take(&conn->early, &early);
  conn_feed(conn, pst_buf_head(&early), early.len);
  pst_buf_free(&early);
}

/* Early data was accepted while the handshake runs: start the application
 * on it if it takes early data, else it waits for the handshake. */
static void conn_early_data(pst_conn_t *conn) {
  if (conn->app == NULL) {
    conn_route(conn);
    conn_record_alpn(conn); /* known once the ClientHello is processed */
    if (!conn_app_takes_early(conn)) return;
    if (conn_app_start(conn, PST_CONN_EARLY) != 0) return;
  }
  conn_feed_early(conn);
}

/* A connection that completes its handshake while its worker drains for
 * shutdown takes no new work either (pst_conn_shutdown_all reached only
 * the open ones). */
static void conn_open_draining(pst_conn_t *conn) {
  if (conn->state == PST_CONN_OPEN && conn->worker->state == PST_WORKER_DRAINING) {
    conn->app->ops->shutdown(conn->app);
  }
}

/* The handshake has just completed. An application started on early data
 * now gets the answers held back and learns the handshake is done; else
 * the application starts now. May close conn. */
static void conn_open(pst_conn_t *conn) {
  if (conn->app == NULL) {
    conn_route(conn);
    if (conn_app_start(conn, PST_CONN_OPEN) == 0) conn_open_draining(conn);
    return;
  }
  pst_conn_set_state(conn, PST_CONN_OPEN);
  pst_buf_t out = conn->early_out;
  memset(&conn->early_out, 0, sizeof(conn->early_out));
  int rc = conn_send(&conn->host, pst_buf_head(&out), out.len);
  pst_buf_free(&out);
  if (rc != 0) return;
  /* An application paused on early_out's size hears nothing from a write
   * that the socket took at once: tell it there is room. */
  conn_drained(conn);
  if (conn->state != PST_CONN_OPEN) return;
  if (conn->app->ops->handshake_done != NULL) conn->app->ops->handshake_done(conn->app);
  if (conn->end_after_handshake && conn->state == PST_CONN_OPEN) pst_conn_end(conn);
  conn_open_draining(conn);
}

/* The client finished sending (TCP FIN, or close_notify): the application
 * is told once, when it runs with the handshake complete. */
static void conn_client_eof(pst_conn_t *conn) {
  conn->client.eof = 1;
  /* RFC 8446 6.1: data after close_notify is ignored; stop reading so it
   * cannot pile up in cin either. */
  conn_read_client(conn, 0);
  if (conn->state != PST_CONN_OPEN || conn->client.eof_told) return;
  conn->client.eof_told = 1;
  conn->app->ops->client_eof(conn->app);
}

/* Decrypts what the client sent and hands it to the application, until
 * wolfSSL needs more bytes or the application paused the client. */
static void conn_from_client(pst_conn_t *conn) {
  char *plain = conn->worker->plain;
  if (conn->early.data.len > 0) conn_feed_early(conn);
  while (conn->state == PST_CONN_OPEN && !conn->client.eof_told && !conn->client.paused) {
    int n = wolfSSL_read(conn->ssl, plain, PST_RECORD_MAX);
    if (n > 0) {
      conn->bytes_in += (uint64_t)n;
      conn_activity(conn);
      conn_feed(conn, plain, (size_t)n);
      continue;
    }
    int e = wolfSSL_get_error(conn->ssl, n);
    int want = e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE;
    if (want && !(conn->client.eof && conn->in_len == 0)) return;
    if (want || e == WOLFSSL_ERROR_ZERO_RETURN || conn->client.eof) {
      /* close_notify (RFC 8446 6.1), or the TCP stream ended and every byte
       * before the end has been handed on. */
      conn_client_eof(conn);
      return;
    }
    char msg[128];
    wolfSSL_ERR_error_string_n((unsigned long)e, msg, sizeof(msg));
    /* The socket is fine: the fatal alert wolfSSL queued goes out (RFC 8446
     * 6.2) through pst_conn_close. */
    pst_conn_close(conn, PST_ETLS, pst_conn_why(conn, "TLS read failed: %s", msg));
    return;
  }
}

/* ---- reading the client ---- */

/* Keeps the ciphertext wolfSSL did not take (the application paused, or
 * the state does not read yet) for the next pump. */
static int conn_keep_input(pst_conn_t *conn) {
  if (conn->in_is_cin) {
    pst_buf_consume(&conn->cin, conn->cin.len - conn->in_len);
  } else if (conn->in_len > 0) {
    if (pst_buf_append(&conn->cin, conn->in_ptr, conn->in_len) != 0) return -ENOMEM;
  }
  conn->in_ptr = pst_buf_head(&conn->cin);
  conn->in_len = conn->cin.len;
  conn->in_is_cin = 1;
  return 0;
}

static void conn_on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Starts (on != 0) or stops reading the client. Returns 0 or a libuv error. */
static int conn_read_client(pst_conn_t *conn, int on) {
  if (conn->client.eof || conn->client.reading == (unsigned)!!on) return 0;
  conn->client.reading = !!on;
  uv_stream_t *s = (uv_stream_t *)&conn->client.tcp;
  return on ? uv_read_start(s, pst_uv_alloc_slab, conn_on_client_read) : uv_read_stop(s);
}

/* The handshake has just completed: hold the session ticket back when the
 * client sent more than its Finished (a request, which the application
 * takes next), until something answers it (conn_int.h: cork). TLS 1.3
 * only: a TLS 1.2 server's own Finished comes after the client's, and a
 * False Start client waits for it. */
static void conn_maybe_cork(pst_conn_t *conn) {
  if (conn->in_len == 0 || conn->state == PST_CONN_CLOSING) return;
  if (wolfSSL_version(conn->ssl) != TLS1_3_VERSION) return;
  conn->cork = 1;
}

static void conn_handshake(pst_conn_t *conn);

/* Runs the handshake and hands on what the client sent, then keeps leftover
 * ciphertext and flushes output. May close the connection. */
static void conn_pump(pst_conn_t *conn) {
  if (conn->state == PST_CONN_HANDSHAKE || conn->state == PST_CONN_EARLY) {
    conn_handshake(conn);
    if (conn->state == PST_CONN_OPEN) conn_maybe_cork(conn);
  }
  if (conn->state == PST_CONN_OPEN) conn_from_client(conn);
  if (conn->state == PST_CONN_CLOSING) return;
  if (conn_keep_input(conn) != 0) {
    pst_conn_close(conn, -ENOMEM, "out of memory");
    return;
  }
  if (conn->cout.len > 0) conn_want_flush(conn);
}

static void conn_on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pst_conn_t *conn = PST_CONTAINER_OF(s, pst_conn_t, client.tcp);
  if (nread == 0 || conn->state == PST_CONN_CLOSING) return;
  if (conn->state == PST_CONN_PROXY) {
    /* accept_proxy: the header first (conn_proxy.c), then the TLS bytes
     * that came after it in the same read. */
    if (nread == UV_EOF) {
      pst_conn_proxy_fail(conn, PST_EPROTO);
    } else if (nread < 0) {
      pst_conn_client_failed(conn, (int)nread, "client read failed");
    } else if (pst_conn_proxy_input(conn, buf->base, (size_t)nread) > 0) {
      conn_pump(conn);
    }
    return;
  }
  /* Bytes read are not yet traffic for the idle timeout: only a whole
   * record that decrypts is (conn_from_client), so that a client dripping
   * a record it never completes is idle. */
  if (nread < 0) {
    if (nread != UV_EOF) {
      pst_conn_client_failed(conn, (int)nread, "client read failed");
      return;
    }
    /* TCP FIN: the application hears of it once the bytes already received
     * are consumed. */
    conn->client.eof = 1;
    conn->client.reading = 0;
    uv_read_stop(s);
  } else if (conn->cin.len > 0) {
    if (pst_buf_append(&conn->cin, buf->base, (size_t)nread) != 0) {
      pst_conn_close(conn, -ENOMEM, "out of memory");
      return;
    }
    conn->in_ptr = pst_buf_head(&conn->cin);
    conn->in_len = conn->cin.len;
    conn->in_is_cin = 1;
  } else {
    conn->in_ptr = buf->base;
    conn->in_len = (size_t)nread;
    conn->in_is_cin = 0;
  }
  conn_pump(conn);
}

/* ---- handshake ---- */

/* Reports a handshake that failed (rc: the failing wolfSSL return) and
 * closes the connection. */
static void conn_handshake_failed(pst_conn_t *conn, int rc) {
  char msg[128];
  const char *why;
  int sni = pst_tls_sni_rejected(conn->ssl);
  if (sni == PST_TLS_SNI_UNKNOWN) {
    why = "handshake refused: no certificate for this server name (unknown_sni: reject)";
  } else if (sni == PST_TLS_SNI_MALFORMED) {
    why = "handshake refused: the server name is not a DNS host name (RFC 6066 3)";
  } else if (sni == PST_TLS_NO_CERT) {
    why = "handshake refused: no certificate whose signature the client accepts";
  } else {
    wolfSSL_ERR_error_string_n((unsigned long)wolfSSL_get_error(conn->ssl, rc), msg, sizeof(msg));
    why = pst_conn_why(conn, "handshake failed: %s", msg);
  }
  pst_conn_record_sni(conn);
  /* pst_conn_close sends the alert wolfSSL queued (e.g. unrecognized_name). */
  pst_conn_close(conn, PST_ETLS, why);
}

/* The handshake waits for client bytes; a client that has closed will send
 * none. */
static void conn_handshake_wait(pst_conn_t *conn) {
  if (conn->client.eof) pst_conn_close(conn, PST_EPROTO, "client closed during handshake");
}

/* The shared strike register answered (early.h: pst_early_shared_t): the
 * handshake goes on with what the client sent meanwhile (kept in cin). */
static void conn_on_early_decided(void *arg) {
  pst_conn_t *conn = arg;
  if (conn->state == PST_CONN_CLOSING) return;
  int rc = conn_read_client(conn, 1);
  if (rc != 0) {
    pst_conn_close(conn, rc, "client read failed");
    return;
  }
  conn_pump(conn);
}

/* The 0-RTT part of the handshake (early.h). Returns 1 when the handshake
 * waits or conn is closing, 0 to go on with wolfSSL_accept. */
static int conn_handshake_early(pst_conn_t *conn) {
  pst_early_t *e = &conn->early;
  if (e->phase == PST_EARLY_HELLO) {
    const pst_early_shared_t shared = {conn->worker->replay_redis,
                                       &conn->gen->cfg->early_data_replay, conn_on_early_decided,
                                       conn};
    int rc = pst_early_hello(e, conn->ssl, conn->gl->conf, &shared, conn->in_ptr, conn->in_len,
                             conn->client.eof, conn->host.id, conn->host.peer);
    if (rc == 1) {
      conn_handshake_wait(conn);
      return 1;
    }
    /* The whole ClientHello is here: its server name as sent, which
     * wolfSSL's cuts at a NUL (tls.h), is checked and kept. */
    unsigned char name[PST_TLS_SNI_BUF];
    size_t n;
    if (pst_tls_sni_precheck(conn->ssl, conn->in_ptr, conn->in_len, name, &n) > 0) {
      pst_conn_keep_sni(conn, name, n);
    }
    /* Waiting for the shared register (at most its timeout): the client
     * is not read meanwhile, so what it can make postern hold is bounded. */
    if (rc == PST_EARLY_WAIT) conn_read_client(conn, 0);
  }
  if (e->phase == PST_EARLY_SHARED) return 1;
  if (e->phase != PST_EARLY_READING) return 0;
  uint64_t before = e->bytes;
  int rc = pst_early_read(e, conn->ssl, conn->worker->plain, &conn->cout);
  conn->bytes_in += e->bytes - before;
  if (e->data.len > 0) {
    pst_conn_record_sni(conn); /* known once the ClientHello is processed: picks the route */
    conn_early_data(conn);
    if (conn->state == PST_CONN_CLOSING) return 1;
  }
  if (rc == -ENOMEM) {
    pst_conn_close(conn, rc, "out of memory");
    return 1;
  }
  if (rc < 0) {
    conn_handshake_failed(conn, WOLFSSL_FATAL_ERROR);
    return 1;
  }
  if (rc > 0) {
    conn_handshake_wait(conn);
    return 1;
  }
  return 0; /* the client's Finished came: wolfSSL_accept finishes */
}

/* Continues the handshake; on completion records what it negotiated and
 * opens the application. May close the connection. */
static void conn_handshake(pst_conn_t *conn) {
  if (conn_handshake_early(conn) != 0) return;
  /* With early data offered, wolfSSL_accept returns success once its own
   * Finished is sent (tls13.c: earlyData != no_early_data), before the
   * client's Finished is read: the handshake is done only when
   * wolfSSL_is_init_finished says so. */
  int rc;
  for (int i = 0; i < 2; i++) {
    rc = wolfSSL_accept(conn->ssl);
    if (rc != WOLFSSL_SUCCESS || wolfSSL_is_init_finished(conn->ssl)) break;
  }
  if (rc != WOLFSSL_SUCCESS) {
    int e = wolfSSL_get_error(conn->ssl, rc);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
      conn_handshake_wait(conn);
      return;
    }
    conn_handshake_failed(conn, rc);
    return;
  }
  if (!wolfSSL_is_init_finished(conn->ssl)) {
    conn_handshake_wait(conn);
    return;
  }
  if (pst_early_finish(&conn->early, conn->ssl, conn->gl->conf) != 0) {
    conn_handshake_failed(conn, WOLFSSL_FATAL_ERROR);
    return;
  }
  conn->handshake_ms = (double)(uv_hrtime() - conn->t_start_ns) / 1e6;
  pst_conn_record_sni(conn);
  conn_record_alpn(conn);
  conn->version = wolfSSL_get_version(conn->ssl);
  conn->cipher = pst_tls_cipher_name(conn->ssl);
  pst_metrics_handshake(conn->gl->conf->metrics_slot, conn->version, pst_tls_group_name(conn->ssl),
                        conn->cipher, conn->alpn, wolfSSL_session_reused(conn->ssl),
                        uv_hrtime() - conn->t_start_ns);
  pst_tls_conn_trim(conn->ssl); /* after SNI, ALPN and the ticket: bench/README.md */
  conn_open(conn);
}

/* ---- timers and state ---- */

/* Milliseconds left before the request head being received is due (0: it
 * is late), or UINT64_MAX when none is. */
static uint64_t conn_head_left(const pst_conn_t *conn, uint64_t now) {
  if (!conn->head) return UINT64_MAX;
  uint64_t limit = conn->gl->conf->request_head_timeout_ms, spent = now - conn->head_start_ms;
  return spent < limit ? limit - spent : 0;
}

static void conn_on_timer(uv_timer_t *t) {
  pst_conn_t *conn = PST_CONTAINER_OF(t, pst_conn_t, timer);
  const pst_listener_conf_t *lc = conn->gl->conf;
  switch (conn->state) {
    case PST_CONN_PROXY: pst_conn_proxy_fail(conn, PST_ETIMEDOUT); return;
    case PST_CONN_HANDSHAKE:
    case PST_CONN_EARLY:
      conn->timer_closed = 1;
      pst_conn_close(conn, PST_ETIMEDOUT, "handshake timeout");
      return;
    case PST_CONN_OPEN: {
      /* The idle deadline moves with every read; re-arm for what is left
       * rather than restarting the timer on each read. */
      uint64_t now = uv_now(t->loop);
      uint64_t idle = now - conn->t_last_ms;
      /* A request waiting for its response head is not idle:
       * timeouts.backend_response governs it. Any other exchange counts as
       * idle unless bytes move (touch), so a stalled body or tunnel cannot
       * hold the connection forever. */
      if (conn->waiting > 0) idle = 0;
      if (idle >= lc->idle_timeout_ms) {
        conn->timer_closed = 1;
        pst_conn_close(conn, PST_ETIMEDOUT, "idle timeout");
        return;
      }
      /* A request head has a total deadline, however often bytes come. */
      uint64_t next = lc->idle_timeout_ms - idle, head = conn_head_left(conn, now);
      if (head == 0) {
        conn->timer_closed = 1;
        pst_conn_close(conn, PST_ETIMEDOUT, "request head timeout (timeouts.request_head)");
        return;
      }
      conn_arm_timer(conn, head < next ? head : next);
      return;
    }
    case PST_CONN_CLOSING:
      /* The close_notify flush took too long: close without it. */
      pst_conn_close_handles(conn);
      return;
  }
}

static void conn_arm_timer(pst_conn_t *conn, uint64_t ms) {
  uv_timer_start(&conn->timer, conn_on_timer, ms, 0);
}

/* The one place the state changes: legal moves only, PROXY -> HANDSHAKE ->
 * EARLY -> OPEN -> CLOSING, where PROXY (a listener without accept_proxy
 * starts in HANDSHAKE) and EARLY may be skipped and CLOSING comes from any
 * state; arms the state's timer (the handshake's was armed at accept, and
 * covers the PROXY header too). */
void pst_conn_set_state(pst_conn_t *conn, pst_conn_state_t state) {
  const pst_listener_conf_t *lc = conn->gl->conf;
  if (state <= conn->state) {
    pst_log_error("conn %llu: illegal state change %d -> %d", (unsigned long long)conn->host.id,
                  conn->state, state);
    abort();
  }
  /* The handshake (and the PROXY header before it) is over, either way:
   * the listener's overload bound counts it no more (worker.c: wl_take). */
  if (conn->state < PST_CONN_OPEN && state >= PST_CONN_OPEN) {
    pst_conn_hs_unlink(conn);
  }
  conn->state = state;
  switch (state) {
    case PST_CONN_OPEN: {
      /* A head begun in 0-RTT data keeps its start. */
      uint64_t now = uv_now(conn->timer.loop), head = conn_head_left(conn, now);
      conn->t_last_ms = now;
      conn_arm_timer(conn, head < lc->idle_timeout_ms ? head : lc->idle_timeout_ms);
      break;
    }
    case PST_CONN_CLOSING: conn_arm_timer(conn, CONN_LINGER_MS); break;
    case PST_CONN_PROXY:
    case PST_CONN_HANDSHAKE:
    case PST_CONN_EARLY: break;
  }
}

/* ---- accept ---- */

static void conn_on_reject_close(uv_handle_t *h) { free(h); }

/* Accepts and closes at once: used when a connection cannot be set up, so
 * that the listener does not stall on a socket nobody takes. */
static void conn_reject(pst_wlistener_t *wl) {
  uv_tcp_t *t = malloc(sizeof(*t));
  if (t == NULL) return;
  uv_tcp_init(&wl->worker->loop, t);
  uv_accept((uv_stream_t *)&wl->handle, (uv_stream_t *)t);
  uv_close((uv_handle_t *)t, conn_on_reject_close);
}

/* Fills what the application will see of conn (app-t.h). */
static void conn_host_init(pst_conn_t *conn, pst_worker_t *worker) {
  pst_host_t *h = &conn->host;
  h->ops = &conn_host_ops;
  h->id = ++worker->next_conn_id;
  h->loop = &worker->loop;
  h->pools = worker->pools;
  h->lc = conn->gl->conf;
  h->routes = conn->gl->routes;
  h->access_file = conn->gl->access_file;
  h->access_log = worker->access_log;
  h->peer = h->peer_ip = "?";
  h->sni = "";
}

/* The client sent its FIN already (CLOSE_WAIT): under overload its
 * connection waited in the listen queue until the client gave up. */
static int conn_client_gone(pst_conn_t *conn) {
  uv_os_fd_t fd;
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  if (uv_fileno((uv_handle_t *)&conn->client.tcp, &fd) != 0 ||
      getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
    return 0;
  }
  return ti.tcpi_state == TCP_CLOSE_WAIT;
}

int pst_conn_accept(pst_worker_t *worker, pst_wlistener_t *wl) {
  pst_conn_t *conn = calloc(1, sizeof(*conn));
  if (conn == NULL) {
    conn_reject(wl);
    return -ENOMEM;
  }
  conn->worker = worker;
  conn->wl = wl;
  conn->gen = pst_gen_ref(worker->gen);
  conn->gl = &conn->gen->listeners[wl->index];
  /* The first state: the PROXY header's, or straight to the handshake. */
  conn->state =
      conn->gl->conf->accept_proxy != PST_PROXY_NONE ? PST_CONN_PROXY : PST_CONN_HANDSHAKE;
  conn->t_start_ns = uv_hrtime();
  conn_host_init(conn, worker);
  uv_tcp_init(&worker->loop, &conn->client.tcp);
  uv_timer_init(&worker->loop, &conn->timer);
  conn->handles = 2;
  /* Linked before anything can fail, so the close path finds it. */
  conn->next = worker->conns;
  if (worker->conns != NULL) worker->conns->prev = conn;
  worker->conns = conn;
  worker->n_conns++;
  wl->n_conns++;
  pst_conn_hs_link(conn); /* until pst_conn_set_state leaves the handshake */
  pst_conn_evict_requeue(conn);
  pst_metrics_conn_accepted(conn->gl->conf->metrics_slot); /* pst_conn_close counts it closed */

  int rc = uv_accept((uv_stream_t *)&wl->handle, (uv_stream_t *)&conn->client.tcp);
  if (rc != 0) {
    pst_conn_close(conn, rc, "accept failed");
    return rc;
  }
  if (pst_conn_peer_name(conn) != 0) {
    pst_conn_close(conn, -ENOMEM, "out of memory");
    return -ENOMEM;
  }
  if (conn->state == PST_CONN_PROXY && (rc = pst_conn_proxy_start(conn)) != 0) return rc;
  if (wl->check_gone && conn->state == PST_CONN_HANDSHAKE && conn_client_gone(conn)) {
    /* No handshake for a client that no longer waits for it. */
    pst_conn_close(conn, PST_EPROTO, "the client gave up while it waited in the listen queue");
    return PST_EPROTO;
  }
  conn->ssl = wolfSSL_new(conn->gl->ctx);
  if (conn->ssl == NULL) {
    pst_conn_close(conn, -ENOMEM, "cannot create TLS session");
    return -ENOMEM;
  }
  wolfSSL_SSLSetIORecv(conn->ssl, conn_tls_recv);
  wolfSSL_SSLSetIOSend(conn->ssl, conn_tls_send);
  wolfSSL_SetIOReadCtx(conn->ssl, conn);
  wolfSSL_SetIOWriteCtx(conn->ssl, conn);
  wolfSSL_set_ex_data(conn->ssl, 0, conn);
  conn_arm_timer(conn, conn->gl->conf->handshake_timeout_ms);
  rc = conn_read_client(conn, 1);
  if (rc != 0) {
    pst_conn_close(conn, rc, "client read failed");
    return rc;
  }
  return 0;
}

/* ---- the worker's calls ---- */

void pst_conn_shutdown_all(pst_worker_t *worker) {
  pst_conn_t *next;
  for (pst_conn_t *c = worker->conns; c != NULL; c = next) {
    next = c->next;
    if (c->app != NULL && c->state == PST_CONN_OPEN) c->app->ops->shutdown(c->app);
  }
}

void pst_conn_close_all(pst_worker_t *worker, int err, const char *reason) {
  pst_conn_t *next;
  for (pst_conn_t *c = worker->conns; c != NULL; c = next) {
    next = c->next;
    pst_conn_close(c, err, reason);
  }
}
