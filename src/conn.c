/* postern: a connection's life: accept, TLS handshake, timers, writes and
 * the one close path. Relaying bytes once the handshake is done is in
 * relay.c. */
#include "postern/conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/common.h"
#include "postern/conn-t.h"
#include "postern/early.h"
#include "postern/front.h"
#include "postern/gen.h"
#include "postern/log.h"
#include "postern/relay.h"
#include "postern/tls.h"
#include "postern/uvio.h"
#include "postern/worker.h"

/* How long a closing connection may take to flush its close_notify. */
#define CONN_LINGER_MS 1000

static void conn_arm_timer(pst_conn_t *conn, uint64_t ms);

/* ---- wolfSSL I/O: no sockets, only the connection's buffers ---- */

static int conn_tls_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  pst_conn_t *conn = ctx;
  /* At the end of what the client sent, even after its TCP FIN: a FIN is
   * not a TLS close, and wolfSSL told of one (CONN_CLOSE) would refuse to
   * write the answers still due to a client that only half-closed. The
   * handshake and the relay see conn->client.eof themselves. */
  if (conn->in_len == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
  size_t n = (size_t)sz < conn->in_len ? (size_t)sz : conn->in_len;
  memcpy(buf, conn->in_ptr, n);
  conn->in_ptr += n;
  conn->in_len -= n;
  return (int)n;
}

/* Everything wolfSSL sends is queued in cout and written by
 * pst_conn_flush_client, so one pump step makes one write(2). The queue is
 * bounded by backpressure: the backend is not read while the client's
 * socket has too much unsent. */
static int conn_tls_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  pst_conn_t *conn = ctx;
  if (pst_buf_append(&conn->cout, buf, (size_t)sz) != 0) return WOLFSSL_CBIO_ERR_GENERAL;
  return sz;
}

/* ---- writes ---- */

static void conn_on_write(uv_write_t *req, int status) {
  uv_stream_t *s = req->handle;
  pst_conn_t *conn = pst_uv_write_done(req);
  if (conn->state == PST_CONN_CLOSING) return;
  if (status < 0) {
    if (s == (uv_stream_t *)&conn->client.tcp) {
      pst_conn_client_failed(conn, status, "client write failed");
    } else {
      pst_conn_close(conn, status, "backend write failed");
    }
    return;
  }
  pst_relay_on_drain(conn, s);
}

int pst_conn_write(pst_conn_t *conn, uv_stream_t *s, const char *data, size_t len) {
  return pst_uv_write(s, data, len, conn, conn_on_write);
}

int pst_conn_shut_client(pst_conn_t *conn, uv_shutdown_cb cb) {
  conn->client.shut = 1;
  wolfSSL_shutdown(conn->ssl);
  int rc = pst_conn_flush_client(conn);
  if (rc == 0) rc = uv_shutdown(&conn->client.shutdown_req, (uv_stream_t *)&conn->client.tcp, cb);
  return rc;
}

int pst_conn_flush_client(pst_conn_t *conn) {
  conn->cork = 0;
  if (conn->cout.len == 0 || !conn->client.open) return 0;
  int rc = pst_conn_write(conn, (uv_stream_t *)&conn->client.tcp, pst_buf_head(&conn->cout),
                          conn->cout.len);
  pst_buf_consume(&conn->cout, conn->cout.len);
  return rc;
}

/* Encrypts pout into cout. Returns 0 or PST_ETLS; pout is emptied either
 * way. */
static int conn_encrypt(pst_conn_t *conn) {
  if (conn->pout.len == 0) return 0;
  /* One call: wolfSSL cuts it into records of at most 16 KiB, and the send
   * callback never blocks, so it takes everything or fails. */
  int n = wolfSSL_write(conn->ssl, pst_buf_head(&conn->pout), (int)conn->pout.len);
  int ok = n == (int)conn->pout.len;
  pst_buf_consume(&conn->pout, conn->pout.len);
  return ok ? 0 : PST_ETLS;
}

int pst_conn_encrypt_pending(pst_conn_t *conn) {
  int rc = conn_encrypt(conn);
  if (rc != 0) pst_conn_close(conn, rc, "TLS write failed");
  return rc;
}

void pst_conn_want_flush(pst_conn_t *conn) {
  if (conn->flush_queued || conn->state == PST_CONN_CLOSING) return;
  conn->flush_queued = 1;
  conn->flush_next = conn->worker->flush_list;
  conn->worker->flush_list = conn;
}

/* Takes conn off the flush list (it is about to be freed). The list only
 * holds the connections with output due this loop turn: a short walk. */
static void conn_flush_unlist(pst_conn_t *conn) {
  if (!conn->flush_queued) return;
  for (pst_conn_t **p = &conn->worker->flush_list; *p != NULL; p = &(*p)->flush_next) {
    if (*p == conn) {
      *p = conn->flush_next;
      break;
    }
  }
  conn->flush_queued = 0;
}

/* Encrypts and writes what is due to conn's client; tells the front end
 * there is room again when its output left at once (no write callback will
 * say so). May close conn. */
static void conn_flush(pst_conn_t *conn) {
  if (conn->state == PST_CONN_CLOSING) return;
  size_t sent = conn->pout.len;
  if (pst_conn_encrypt_pending(conn) != 0) return;
  if (conn->cork && sent == 0) return; /* the session ticket waits for the answer */
  int rc = pst_conn_flush_client(conn);
  if (rc != 0) {
    pst_conn_client_failed(conn, rc, "client write failed");
    return;
  }
  if (sent > 0 && conn->front != NULL && conn->state == PST_CONN_OPEN && !conn->client.shut &&
      pst_conn_client_queued(conn) < PST_LOW_WATER) {
    conn->front->ops->client_drain(conn->front);
  }
}

void pst_conn_flush_all(pst_worker_t *worker) {
  /* A front end told of room may queue more: it comes back on the list and
   * is written in this same pass, until the socket stops taking bytes. */
  pst_conn_t *conn;
  while ((conn = worker->flush_list) != NULL) {
    worker->flush_list = conn->flush_next;
    conn->flush_queued = 0;
    conn_flush(conn);
  }
}

/* ---- reading the client ---- */

/* Keeps the ciphertext wolfSSL did not take (it stopped because the backend
 * is slow, or the state does not read yet) for the next pump. */
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

int pst_conn_read_client(pst_conn_t *conn, int on) {
  if (!conn->client.open || conn->client.eof || conn->client.reading == (unsigned)!!on) return 0;
  conn->client.reading = !!on;
  if (on) return uv_read_start((uv_stream_t *)&conn->client.tcp, pst_uv_alloc_slab, pst_conn_on_client_read);
  return uv_read_stop((uv_stream_t *)&conn->client.tcp);
}

/* The handshake has just completed: hold the session ticket back when the
 * client sent more than its Finished (a request, which the relay takes next
 * or which waits for the backend connect), until something answers it
 * (conn-t.h: cork). TLS 1.3 only: a TLS 1.2 server's own Finished comes
 * after the client's, and a False Start client waits for it. */
static void conn_maybe_cork(pst_conn_t *conn) {
  if (conn->in_len == 0 || conn->state == PST_CONN_CLOSING) return;
  if (wolfSSL_version(conn->ssl) != TLS1_3_VERSION) return;
  conn->cork = 1;
}

void pst_conn_pump(pst_conn_t *conn) {
  if (conn->state == PST_CONN_HANDSHAKE) {
    pst_conn_handshake(conn);
    if (conn->state != PST_CONN_HANDSHAKE) conn_maybe_cork(conn);
  }
  if (conn->state == PST_CONN_OPEN) pst_relay_from_client(conn);
  if (conn->state == PST_CONN_CLOSING) return;
  if (conn_keep_input(conn) != 0) {
    pst_conn_close(conn, -ENOMEM, "out of memory");
    return;
  }
  /* While the backend connect runs, what the client sends waits in cin, up
   * to the high-water mark; beyond it, in the kernel. */
  if (conn->state == PST_CONN_CONNECTING && conn->cin.len > PST_HIGH_WATER) {
    pst_conn_read_client(conn, 0);
  }
  if (conn->cout.len > 0) pst_conn_want_flush(conn);
}

void pst_conn_on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pst_conn_t *conn = PST_CONTAINER_OF(s, pst_conn_t, client.tcp);
  if (nread == 0 || conn->state == PST_CONN_CLOSING) return;
  conn->t_last_ms = uv_now(s->loop);
  if (nread < 0) {
    if (nread != UV_EOF) {
      pst_conn_client_failed(conn, (int)nread, "client read failed");
      return;
    }
    /* TCP FIN: wolfSSL sees it as a closed connection once the bytes
     * already received are consumed. */
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
  pst_conn_pump(conn);
}

/* ---- handshake ---- */

static const char *conn_tls_error(WOLFSSL *ssl, int rc, char *buf, size_t len) {
  int e = wolfSSL_get_error(ssl, rc);
  wolfSSL_ERR_error_string_n((unsigned long)e, buf, len);
  return buf;
}

/* The longest server name kept (RFC 6066 3: a DNS host name, at most 255
 * bytes); a longer one is cut, as it always was. */
#define CONN_SNI_MAX 255

/* Keeps the server name the client asked for, lower-cased, for routes and
 * logs (also after a failed handshake, to say which name failed). The name
 * cannot change once the ClientHello is processed: the first copy stays.
 * Without memory for the copy, the connection goes on without a name (the
 * default route, "-" in logs). */
static void conn_record_sni(pst_conn_t *conn) {
  if (conn->sni[0] != '\0') return;
  void *name = NULL;
  unsigned short n = wolfSSL_SNI_GetRequest(conn->ssl, WOLFSSL_SNI_HOST_NAME, &name);
  if (n == 0 || name == NULL) return;
  if (n > CONN_SNI_MAX) n = CONN_SNI_MAX;
  char *sni = malloc((size_t)n + 1);
  if (sni == NULL) return;
  for (unsigned short i = 0; i < n; i++) {
    char c = ((const char *)name)[i];
    sni[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
  }
  sni[n] = '\0';
  conn->sni = sni;
}

const char *pst_conn_why(pst_conn_t *conn, const char *fmt, ...) {
  /* Allocated once and then reused, so that a reason already handed to
   * pst_conn_close stays valid memory however often it is rewritten. */
  if (conn->why == NULL && (conn->why = malloc(PST_CONN_WHY_LEN)) == NULL) {
    return "out of memory (the reason could not be recorded)";
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(conn->why, PST_CONN_WHY_LEN, fmt, ap);
  va_end(ap);
  return conn->why;
}

/* Reports a handshake that failed (rc: the failing wolfSSL return) and
 * closes the connection. */
static void conn_handshake_failed(pst_conn_t *conn, int rc) {
  char msg[128];
  const char *why;
  if (pst_tls_sni_rejected(conn->ssl)) {
    why = "handshake refused: no certificate for this server name (unknown_sni: reject)";
  } else {
    why = pst_conn_why(conn, "handshake failed: %s",
                       conn_tls_error(conn->ssl, rc, msg, sizeof(msg)));
  }
  conn_record_sni(conn);
  /* The alert wolfSSL queued (e.g. unrecognized_name) still goes out. */
  pst_conn_flush_client(conn);
  pst_conn_close(conn, PST_ETLS, why);
}

/* The handshake waits for client bytes; a client that has closed will send
 * none. */
static void conn_handshake_wait(pst_conn_t *conn) {
  if (conn->client.eof) pst_conn_close(conn, PST_EPROTO, "client closed during handshake");
}

void pst_conn_record_alpn(pst_conn_t *conn) {
  char *p = NULL;
  unsigned short plen = 0;
  if (wolfSSL_ALPN_GetProtocol(conn->ssl, &p, &plen) == WOLFSSL_SUCCESS && p != NULL) {
    snprintf(conn->alpn, sizeof(conn->alpn), "%.*s", (int)plen, p);
  }
}

void pst_conn_handshake(pst_conn_t *conn) {
  /* 0-RTT is decided before wolfSSL sees the ClientHello (early.h). */
  if (!conn->hello_scanned && pst_early_hello(conn) > 0) {
    conn_handshake_wait(conn);
    return;
  }
  int rc;
  if (conn->early_reading) {
    rc = pst_early_read(conn);
    if (conn->early.len > 0) {
      conn_record_sni(conn); /* known once the ClientHello is processed: picks the backend */
      pst_relay_early(conn);
      if (conn->state == PST_CONN_CLOSING) return;
    }
    if (rc == -ENOMEM) {
      pst_conn_close(conn, rc, "out of memory");
      return;
    }
    if (rc < 0) {
      conn_handshake_failed(conn, rc);
      return;
    }
    if (rc > 0) {
      conn_handshake_wait(conn);
      return;
    }
    conn->early_reading = 0; /* the client's Finished came: wolfSSL_accept finishes */
  }
  /* With early data offered, wolfSSL_accept returns success once its own
   * Finished is sent (tls13.c: earlyData != no_early_data), before the
   * client's Finished is read: the handshake is done only when
   * wolfSSL_is_init_finished says so. */
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
  if (pst_early_finish(conn) != 0) {
    conn_handshake_failed(conn, WOLFSSL_FATAL_ERROR);
    return;
  }
  conn->handshake_ms = (double)(uv_hrtime() - conn->t_start_ns) / 1e6;
  conn_record_sni(conn);
  pst_conn_record_alpn(conn);
  conn->version = wolfSSL_get_version(conn->ssl);
  conn->cipher = pst_tls_cipher_name(conn->ssl);
  pst_relay_start(conn);
}

/* ---- timers ---- */

static void conn_on_timer(uv_timer_t *t) {
  pst_conn_t *conn = PST_CONTAINER_OF(t, pst_conn_t, timer);
  const pst_listener_conf_t *lc = conn->gl->conf;
  switch (conn->state) {
    case PST_CONN_HANDSHAKE:
      pst_conn_close(conn, PST_ETIMEDOUT, "handshake timeout");
      return;
    case PST_CONN_CONNECTING:
      pst_conn_close(conn, PST_ETIMEDOUT, "backend connect timeout");
      return;
    case PST_CONN_OPEN: {
      /* The idle deadline moves with every read; re-arm for what is left
       * rather than restarting the timer on each read. */
      uint64_t idle = uv_now(t->loop) - conn->t_last_ms;
      /* An http-mode request waiting for its response head is not idle:
       * timeouts.backend_response governs it. Any other stream counts as
       * idle unless bytes move (stream.c refreshes t_last_ms), so a stalled
       * body or tunnel cannot hold the connection forever. */
      if (conn->streams_waiting > 0) idle = 0;
      if (idle >= lc->idle_timeout_ms) {
        pst_conn_close(conn, PST_ETIMEDOUT, "idle timeout");
        return;
      }
      conn_arm_timer(conn, lc->idle_timeout_ms - idle);
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

void pst_conn_set_state(pst_conn_t *conn, pst_conn_state_t state) {
  const pst_listener_conf_t *lc = conn->gl->conf;
  /* Legal moves only: HANDSHAKE -> CONNECTING|OPEN -> OPEN -> CLOSING. */
  if (state <= conn->state && !(state == PST_CONN_OPEN && conn->state == PST_CONN_OPEN)) {
    pst_log_error("conn %llu: illegal state change %d -> %d", (unsigned long long)conn->id,
                  conn->state, state);
    abort();
  }
  conn->state = state;
  switch (state) {
    case PST_CONN_CONNECTING: conn_arm_timer(conn, lc->backend_connect_timeout_ms); break;
    case PST_CONN_OPEN:
      conn->t_last_ms = uv_now(conn->timer.loop);
      conn_arm_timer(conn, lc->idle_timeout_ms);
      break;
    case PST_CONN_CLOSING: conn_arm_timer(conn, CONN_LINGER_MS); break;
    case PST_CONN_HANDSHAKE: break;
  }
}

/* ---- accept ---- */

/* Records the client's address as conn->peer ("ip:port", "[ip6]:port") and
 * conn->peer_ip (without port), both in one allocation sized to them.
 * Returns 0 or -ENOMEM (conn->peer stays "?"). */
static int conn_peer_name(pst_conn_t *conn) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char host[48] = "?";
  char peer[80];
  int port = 0;
  const char *fmt = "%s:%d";
  if (uv_tcp_getpeername(&conn->client.tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
      fmt = "[%s]:%d";
    } else {
      uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
  }
  int n = snprintf(peer, sizeof(peer), fmt, host, port);
  if (n < 0 || (size_t)n >= sizeof(peer)) n = (int)strlen(peer);
  size_t hlen = strlen(host);
  char *buf = malloc((size_t)n + 1 + hlen + 1);
  if (buf == NULL) return -ENOMEM;
  memcpy(buf, peer, (size_t)n + 1);
  memcpy(buf + n + 1, host, hlen + 1);
  conn->peer_buf = buf;
  conn->peer = buf;
  conn->peer_ip = buf + n + 1;
  return 0;
}

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
  conn->id = ++worker->next_conn_id;
  conn->t_start_ns = uv_hrtime();
  conn->reason = "";
  conn->peer = conn->peer_ip = "?";
  conn->sni = "";
  uv_tcp_init(&worker->loop, &conn->client.tcp);
  conn->client.open = 1;
  uv_timer_init(&worker->loop, &conn->timer);
  conn->handles = 2;
  /* Linked before anything can fail, so the close path finds it. */
  conn->next = worker->conns;
  if (worker->conns != NULL) worker->conns->prev = conn;
  worker->conns = conn;
  worker->n_conns++;
  wl->n_conns++;

  int rc = uv_accept((uv_stream_t *)&wl->handle, (uv_stream_t *)&conn->client.tcp);
  if (rc != 0) {
    pst_conn_close(conn, rc, "accept failed");
    return rc;
  }
  if (conn_peer_name(conn) != 0) {
    pst_conn_close(conn, -ENOMEM, "out of memory");
    return -ENOMEM;
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
  rc = pst_conn_read_client(conn, 1);
  if (rc != 0) {
    pst_conn_close(conn, rc, "client read failed");
    return rc;
  }
  return 0;
}

/* ---- close ---- */

static void conn_log(pst_conn_t *conn) {
  if (!pst_log_enabled(PST_LOG_INFO)) return;
  const char *alpn = conn->alpn[0] ? conn->alpn : "-";
  const char *version = conn->version, *cipher = conn->cipher;
  double dur = (double)(uv_hrtime() - conn->t_start_ns) / 1e6;
  pst_log_info("conn %llu client=%s listener=%s sni=%s alpn=%s version=%s cipher=%s "
               "handshake_ms=%.2f resumed=%d early_data=%s backend=%s bytes_in=%llu "
               "bytes_out=%llu duration_ms=%.1f close=%s%s%s",
               (unsigned long long)conn->id, conn->peer, conn->gl->conf->name,
               conn->sni[0] ? conn->sni : "-", alpn, version ? version : "-",
               cipher ? cipher : "-", conn->handshake_ms,
               conn->handshake_ms > 0 && wolfSSL_session_reused(conn->ssl),
               conn->early_status == PST_EARLY_NOT_SENT   ? "none"
               : conn->early_status == PST_EARLY_REPLAYED ? "replayed"
                                                          : pst_early_status_name(conn->early_status),
               conn->backend_conf ? conn->backend_conf->addr.text : "-",
               (unsigned long long)conn->client.bytes, (unsigned long long)conn->backend.bytes,
               dur, conn->err == 0 ? "ok" : conn->reason,
               conn->err == 0 || conn->err == PST_ETLS ? "" : ": ",
               conn->err == 0 || conn->err == PST_ETLS ? "" : pst_strerror(conn->err));
}

static void conn_free(pst_conn_t *conn) {
  pst_worker_t *worker = conn->worker;
  if (conn->prev != NULL) conn->prev->next = conn->next;
  else worker->conns = conn->next;
  if (conn->next != NULL) conn->next->prev = conn->prev;
  /* The front end goes last: its streams could still hear from their
   * backends until now, and conn services refuse work once CLOSING. */
  if (conn->front != NULL) conn->front->ops->destroy(conn->front);
  conn_flush_unlist(conn);
  if (conn->ssl != NULL) wolfSSL_free(conn->ssl);
  pst_info_free(conn->info);
  pst_buf_free(&conn->early);
  pst_buf_free(&conn->cin);
  pst_buf_free(&conn->early_out);
  pst_buf_free(&conn->cout);
  pst_buf_free(&conn->pout);
  pst_gen_unref(conn->gen);
  free(conn->peer_buf);
  if (conn->sni[0] != '\0') free((char *)conn->sni);
  free(conn->why);
  pst_wlistener_t *wl = conn->wl;
  free(conn);
  pst_worker_conn_gone(worker, wl, NULL);
}

static void conn_on_handle_close(uv_handle_t *h) {
  pst_conn_t *conn = h->data;
  if (--conn->handles == 0) conn_free(conn);
}

static void conn_close_handle(pst_conn_t *conn, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  h->data = conn;
  uv_close(h, conn_on_handle_close);
}

void pst_conn_close_handles(pst_conn_t *conn) {
  conn_close_handle(conn, (uv_handle_t *)&conn->client.tcp);
  if (conn->backend.open) conn_close_handle(conn, (uv_handle_t *)&conn->backend.tcp);
  conn_close_handle(conn, (uv_handle_t *)&conn->timer);
}

static void conn_on_final_shutdown(uv_shutdown_t *req, int status) {
  pst_conn_t *conn = PST_CONTAINER_OF(req, pst_conn_t, client.shutdown_req);
  pst_conn_close_handles(conn);
}

void pst_conn_client_failed(pst_conn_t *conn, int err, const char *reason) {
  conn->client_failed = 1;
  pst_conn_close(conn, err, reason);
}

void pst_conn_close(pst_conn_t *conn, int err, const char *reason) {
  if (conn->state == PST_CONN_CLOSING) return;
  int healthy = conn->client.open && conn->ssl != NULL && conn->handshake_ms > 0 &&
                !conn->client_failed && err != PST_ETLS;
  conn->err = err;
  conn->reason = reason ? reason : "";
  conn_log(conn);
  pst_conn_set_state(conn, PST_CONN_CLOSING);
  if (conn->backend.open) {
    uv_read_stop((uv_stream_t *)&conn->backend.tcp);
    conn_close_handle(conn, (uv_handle_t *)&conn->backend.tcp);
  }
  if (conn->client.open) uv_read_stop((uv_stream_t *)&conn->client.tcp);
  /* RFC 8446 6.1: end with close_notify when the client can still hear it;
   * the shutdown callback runs once queued bytes are written. Answers
   * queued this loop turn go before the close_notify. */
  if (healthy && !conn->client.shut && conn_encrypt(conn) != 0) healthy = 0;
  if (healthy && !conn->client.shut && pst_conn_shut_client(conn, conn_on_final_shutdown) == 0) {
    return; /* the linger timer bounds the wait */
  }
  pst_conn_close_handles(conn);
}
