/* postern: relaying after the handshake. tcp mode pipes the decrypted byte
 * stream to the backend and back, with backpressure both ways and
 * half-close both ways; builtin:info answers HTTP/1.1 itself. */
#include "postern/relay.h"

#include <stdio.h>
#include <string.h>

#include "postern/common.h"
#include "postern/conn.h"
#include "postern/early.h"
#include "postern/front.h"
#include "postern/gen.h"
#include "postern/log.h"
#include "postern/tls.h"
#include "postern/uvio.h"

static size_t queued(uv_tcp_t *t) { return uv_stream_get_write_queue_size((uv_stream_t *)t); }

/* Both directions finished and flushed: a normal end. */
static void relay_check_done(pst_conn_t *conn) {
  if (conn->client.eof && conn->backend.shut_done && conn->client.shut_done &&
      (conn->info != NULL || conn->backend.eof)) {
    pst_conn_close(conn, 0, "done");
  }
}

static void relay_on_client_shutdown(uv_shutdown_t *req, int status) {
  pst_conn_t *conn = PST_CONTAINER_OF(req, pst_conn_t, client.shutdown_req);
  if (conn->state == PST_CONN_CLOSING) return;
  conn->client.shut_done = 1;
  if (conn->info != NULL || conn->front != NULL) {
    pst_conn_close(conn, 0, "done");
    return;
  }
  relay_check_done(conn);
}

/* The backend finished sending: close_notify, then FIN, to the client
 * (RFC 8446 6.1 allows the client to go on sending after it). */
static void relay_shut_client(pst_conn_t *conn) {
  if (conn->client.shut) return;
  /* What the front end queued this loop turn goes before the close_notify. */
  if (pst_conn_encrypt_pending(conn) != 0) return;
  int rc = pst_conn_shut_client(conn, relay_on_client_shutdown);
  if (rc != 0) pst_conn_client_failed(conn, rc, "client shutdown failed");
}

static void relay_on_backend_shutdown(uv_shutdown_t *req, int status) {
  pst_conn_t *conn = PST_CONTAINER_OF(req, pst_conn_t, backend.shutdown_req);
  if (conn->state == PST_CONN_CLOSING) return;
  conn->backend.shut_done = 1;
  relay_check_done(conn);
}

void pst_relay_client_eof(pst_conn_t *conn) {
  conn->client.eof = 1;
  /* RFC 8446 6.1: data after close_notify is ignored; stop reading so it
   * cannot pile up in cin either. */
  if (conn->client.reading) {
    uv_read_stop((uv_stream_t *)&conn->client.tcp);
    conn->client.reading = 0;
  }
  if (conn->state != PST_CONN_OPEN || conn->backend.shut) return;
  if (conn->front != NULL) {
    conn->backend.shut = 1; /* the client's end is handled once */
    conn->front->ops->client_eof(conn->front);
    return;
  }
  conn->backend.shut = 1;
  if (conn->info != NULL) {
    /* Everything asked has been answered: end with close_notify. */
    conn->backend.shut_done = 1;
    relay_shut_client(conn);
    return;
  }
  if (conn->backend.eof && queued(&conn->backend.tcp) == 0) {
    /* Both directions are over and nothing waits for the backend: the close
     * that follows ends its side; a shutdown(2) first would only cost a
     * system call. */
    conn->backend.shut_done = 1;
    relay_check_done(conn);
    return;
  }
  int rc = uv_shutdown(&conn->backend.shutdown_req, (uv_stream_t *)&conn->backend.tcp,
                       relay_on_backend_shutdown);
  if (rc != 0) pst_conn_close(conn, rc, "backend shutdown failed");
}

/* ---- builtin:info ---- */

void pst_conn_info_facts(pst_conn_t *conn, pst_info_facts_t *f) {
  WOLFSSL *ssl = conn->ssl;
  memset(f, 0, sizeof(*f));
  f->listener = conn->gl->conf->name;
  f->client = conn->peer;
  f->sni = conn->sni[0] ? conn->sni : NULL;
  f->alpn = conn->alpn[0] ? conn->alpn : NULL;
  f->version = conn->version;
  f->cipher = conn->cipher;
  f->group = pst_tls_group_name(ssl);
  f->resumed = wolfSSL_session_reused(ssl);
  f->early_data = pst_early_status_name(conn->early_status);
  f->handshake_ms = conn->handshake_ms;
  const pst_cert_t *cert = conn->gl->certs[pst_tls_cert_index(conn->gl, ssl)];
  f->chain = cert->chain;
  f->chain_len = cert->chain_len;
}

static void relay_info(pst_conn_t *conn, const char *data, size_t len) {
  pst_info_facts_t facts;
  pst_buf_t out = {0};
  pst_conn_info_facts(conn, &facts);
  int rc = pst_info_feed(conn->info, data, len, &facts, &out);
  if (out.len > 0) {
    conn->backend.bytes += out.len;
    if (wolfSSL_write(conn->ssl, pst_buf_head(&out), (int)out.len) != (int)out.len) {
      pst_buf_free(&out);
      pst_conn_close(conn, PST_ETLS, "TLS write failed");
      return;
    }
    conn->cork = 0; /* an answer: the session ticket goes with it */
  }
  pst_buf_free(&out);
  if (rc == -ENOMEM) {
    pst_conn_close(conn, rc, "out of memory");
  } else if (rc != 0) {
    /* Connection: close, or a bad request that got its 400. */
    conn->client.eof = 1;
    pst_relay_client_eof(conn);
  }
}

/* ---- client -> backend ---- */

/* Early data held until now (conn-t.h): the start of the client's stream,
 * handed on before anything read after the handshake. A connection that
 * reaches here has completed its handshake, which a replayed ClientHello
 * never does: held early data is never delivered twice. */
static void relay_early_flush(pst_conn_t *conn) {
  if (conn->early.len == 0) return;
  pst_buf_t early = conn->early;
  memset(&conn->early, 0, sizeof(conn->early));
  const char *data = pst_buf_head(&early);
  int rc = 0;
  if (conn->info != NULL) {
    relay_info(conn, data, early.len);
  } else if (conn->front != NULL) {
    rc = conn->front->ops->feed(conn->front, data, early.len);
    if (rc != 0 && conn->state != PST_CONN_CLOSING) pst_conn_close(conn, PST_EPROTO, "HTTP error");
  } else {
    rc = pst_conn_write(conn, (uv_stream_t *)&conn->backend.tcp, data, early.len);
    if (rc != 0) pst_conn_close(conn, rc, "backend write failed");
  }
  pst_buf_free(&early);
}

void pst_relay_from_client(pst_conn_t *conn) {
  char *plain = conn->worker->plain;
  if (conn->early.len > 0 && conn->state == PST_CONN_OPEN) relay_early_flush(conn);
  /* backend.shut: the client's end was already handled. */
  while (conn->state == PST_CONN_OPEN && !conn->backend.shut) {
    if (conn->front != NULL && conn->client_paused) return; /* the front end resumes */
    if (conn->info != NULL && queued(&conn->client.tcp) > PST_HIGH_WATER) {
      /* Pipelined requests whose answers the client does not read. */
      conn->client_paused = 1; /* resumed by pst_relay_on_drain */
      pst_conn_read_client(conn, 0);
      return;
    }
    if (conn->info == NULL && conn->front == NULL && queued(&conn->backend.tcp) > PST_HIGH_WATER) {
      conn->client_paused = 1; /* resumed by pst_relay_on_drain */
      pst_conn_read_client(conn, 0);
      return;
    }
    int n = wolfSSL_read(conn->ssl, plain, PST_RECORD_MAX);
    if (n > 0) {
      conn->client.bytes += (uint64_t)n;
      if (conn->info != NULL) {
        relay_info(conn, plain, (size_t)n);
        continue;
      }
      if (conn->front != NULL) {
        if (conn->front->ops->feed(conn->front, plain, (size_t)n) != 0 &&
            conn->state != PST_CONN_CLOSING) {
          pst_conn_close(conn, PST_EPROTO, "HTTP error");
        }
        continue;
      }
      int rc = pst_conn_write(conn, (uv_stream_t *)&conn->backend.tcp, plain, (size_t)n);
      if (rc != 0) pst_conn_close(conn, rc, "backend write failed");
      continue;
    }
    int e = wolfSSL_get_error(conn->ssl, n);
    int want = e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE;
    if (want && !(conn->client.eof && conn->in_len == 0)) return;
    if (want || e == WOLFSSL_ERROR_ZERO_RETURN || conn->client.eof) {
      /* close_notify (RFC 8446 6.1), or the TCP stream ended and every byte
       * before the end has been relayed. */
      pst_relay_client_eof(conn);
      return;
    }
    char msg[128];
    wolfSSL_ERR_error_string_n((unsigned long)e, msg, sizeof(msg));
    pst_conn_client_failed(conn, PST_ETLS, pst_conn_why(conn, "TLS read failed: %s", msg));
    return;
  }
}

/* ---- backend -> client ---- */

/* tcp_early_data: forward, the backend answered while the handshake still
 * runs: the answer goes at once as 0.5-RTT data when the window is open
 * (pst_conn_send), else it waits in early_out and the backend is not read
 * until pst_relay_start sends it. An end of the backend's stream waits for
 * the handshake too: close_notify needs it complete. May close conn. */
static void relay_backend_early(pst_conn_t *conn, uv_stream_t *s, ssize_t nread,
                                const uv_buf_t *buf) {
  if (nread < 0 || pst_conn_send(conn, buf->base, (size_t)nread) != 0 ||
      conn->early_out.len > 0 || pst_conn_client_queued(conn) > PST_HIGH_WATER) {
    conn->backend.reading = 0;
    uv_read_stop(s);
  }
  if (nread == UV_EOF) conn->backend.eof = 1;
  else if (nread < 0) pst_conn_close(conn, (int)nread, "backend read failed");
}

static void relay_on_backend_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pst_conn_t *conn = PST_CONTAINER_OF(s, pst_conn_t, backend.tcp);
  if (nread == 0 || conn->state == PST_CONN_CLOSING) return;
  conn->t_last_ms = uv_now(s->loop);
  if (conn->state == PST_CONN_HANDSHAKE) {
    relay_backend_early(conn, s, nread, buf);
    return;
  }
  if (nread < 0) {
    conn->backend.reading = 0;
    uv_read_stop(s);
    if (nread != UV_EOF) {
      pst_conn_close(conn, (int)nread, "backend read failed");
      return;
    }
    conn->backend.eof = 1;
    relay_shut_client(conn);
    return;
  }
  conn->backend.bytes += (uint64_t)nread;
  /* An answer held back during the handshake goes first (pst_relay_start). */
  if (pst_conn_encrypt_pending(conn) != 0) return;
  /* wolfSSL_write encrypts it all: the send callback never blocks. */
  if (wolfSSL_write(conn->ssl, buf->base, (int)nread) != (int)nread) {
    pst_conn_close(conn, PST_ETLS, "TLS write failed");
    return;
  }
  int rc = pst_conn_flush_client(conn);
  if (rc != 0) {
    pst_conn_client_failed(conn, rc, "client write failed");
    return;
  }
  if (queued(&conn->client.tcp) > PST_HIGH_WATER) {
    conn->backend.reading = 0;
    uv_read_stop(s);
  }
}

static int relay_read_backend(pst_conn_t *conn) {
  if (conn->backend.reading || conn->backend.eof) return 0;
  conn->backend.reading = 1;
  return uv_read_start((uv_stream_t *)&conn->backend.tcp, pst_uv_alloc_slab, relay_on_backend_read);
}

void pst_relay_on_drain(pst_conn_t *conn, uv_stream_t *s) {
  if (conn->state != PST_CONN_OPEN) return;
  if (s == (uv_stream_t *)&conn->client.tcp) {
    if (conn->front != NULL) {
      if (!conn->client.shut && queued(&conn->client.tcp) < PST_LOW_WATER) {
        conn->front->ops->client_drain(conn->front);
      }
      return;
    }
    if (conn->info != NULL) {
      if (conn->client_paused && queued(&conn->client.tcp) < PST_LOW_WATER) {
        conn->client_paused = 0;
        if (pst_conn_read_client(conn, 1) != 0) {
          pst_conn_client_failed(conn, -EIO, "client read failed");
          return;
        }
        pst_conn_pump(conn);
      }
      return;
    }
    if (!conn->client.shut && queued(&conn->client.tcp) < PST_LOW_WATER) {
      int rc = relay_read_backend(conn);
      if (rc != 0) pst_conn_close(conn, rc, "backend read failed");
    }
    return;
  }
  if (conn->client_paused && queued(&conn->backend.tcp) < PST_LOW_WATER) {
    conn->client_paused = 0;
    int rc = pst_conn_read_client(conn, 1);
    if (rc != 0) {
      pst_conn_client_failed(conn, rc, "client read failed");
      return;
    }
    pst_conn_pump(conn); /* ciphertext kept while paused */
  }
}

/* ---- backend connect ---- */

static void relay_on_connect(uv_connect_t *req, int status) {
  pst_conn_t *conn = PST_CONTAINER_OF(req, pst_conn_t, connect_req);
  if (conn->state == PST_CONN_CLOSING) return;
  if (status < 0) {
    pst_log_warn("conn %llu: backend %s: connect failed: %s", (unsigned long long)conn->id,
                 conn->backend_conf->addr.text, uv_strerror(status));
    pst_conn_close(conn, status, "backend connect failed");
    return;
  }
  uv_tcp_nodelay(&conn->backend.tcp, 1);
  if (conn->state == PST_CONN_HANDSHAKE) {
    /* Connected while the handshake still runs (tcp_early_data: forward):
     * the early data goes now, and the answer comes back as 0.5-RTT data
     * (relay_backend_early): one round trip in all (RFC 8446 2.3). */
    conn->backend_connected = 1;
    if (conn->early.len > 0) relay_early_flush(conn);
    int rc = conn->state == PST_CONN_HANDSHAKE ? relay_read_backend(conn) : 0;
    if (rc != 0) pst_conn_close(conn, rc, "backend read failed");
    return;
  }
  pst_conn_set_state(conn, PST_CONN_OPEN);
  int rc = relay_read_backend(conn);
  if (rc == 0 && !conn->client.eof) rc = pst_conn_read_client(conn, 1);
  if (rc != 0) {
    pst_conn_close(conn, rc, "read failed");
    return;
  }
  /* Client bytes that came with or after the handshake wait in cin. */
  pst_conn_pump(conn);
}

/* Starts connecting to conn->backend_conf. May close conn. */
static void relay_connect_backend(pst_conn_t *conn) {
  uv_tcp_init(&conn->worker->loop, &conn->backend.tcp);
  conn->backend.open = 1;
  conn->handles++;
  const pst_addr_t *a = &conn->backend_conf->addr;
  int rc = uv_tcp_connect(&conn->connect_req, &conn->backend.tcp, (const struct sockaddr *)&a->ss,
                          relay_on_connect);
  if (rc != 0) {
    pst_log_warn("conn %llu: backend %s: connect failed: %s", (unsigned long long)conn->id, a->text,
                 uv_strerror(rc));
    pst_conn_close(conn, rc, "backend connect failed");
  }
}

static void relay_connect(pst_conn_t *conn) {
  pst_conn_set_state(conn, PST_CONN_CONNECTING);
  /* The client is still read (what it sends waits in cin, bounded by
   * pst_conn_pump), and the backend is read from the start: stopping and
   * restarting either would cost epoll_ctl calls on every connection. */
  if (conn->backend_early) return;
  relay_connect_backend(conn);
  if (conn->state == PST_CONN_CONNECTING) {
    int rc = relay_read_backend(conn);
    if (rc != 0) pst_conn_close(conn, rc, "backend read failed");
  }
}

/* http mode, RFC 8470: an HTTP/1.1 front end starts during the handshake
 * and forwards the early requests that are safe to replay (GET, HEAD,
 * OPTIONS without a body) at once, with Early-Data: 1; any other request
 * waits for the handshake (h1.c). HTTP/2 and builtin:info keep their early
 * data until the handshake completes, like the tcp mode default. */
static void relay_early_http(pst_conn_t *conn) {
  if (conn->front == NULL) {
    if (conn->early_front_refused) return;
    conn->backend_conf = pst_gen_backend(conn->gl, conn->sni, strlen(conn->sni));
    pst_conn_record_alpn(conn);
    if (strcmp(conn->alpn, "h2") == 0 || conn->backend_conf->kind != PST_BACKEND_ADDR) {
      conn->early_front_refused = 1;
      return;
    }
    conn->front = pst_h1_front_new(conn);
    if (conn->front == NULL) {
      pst_conn_close(conn, -ENOMEM, "out of memory");
      return;
    }
    conn->backend.shut_done = 1; /* no backend side of its own */
  }
  relay_early_flush(conn);
}

void pst_relay_early(pst_conn_t *conn) {
  const pst_listener_conf_t *lc = conn->gl->conf;
  if (lc->mode == PST_MODE_HTTP) {
    relay_early_http(conn);
    return;
  }
  if (lc->mode != PST_MODE_TCP || lc->tcp_early_data != PST_TCP_EARLY_FORWARD) return;
  if (conn->backend_connected) {
    relay_early_flush(conn);
    return;
  }
  if (conn->backend_early) return; /* connecting: relay_on_connect sends it */
  conn->backend_conf = pst_gen_backend(conn->gl, conn->sni, strlen(conn->sni));
  if (conn->backend_conf->kind != PST_BACKEND_ADDR) return; /* answered after the handshake */
  conn->backend_early = 1;
  relay_connect_backend(conn);
}

void pst_relay_start(pst_conn_t *conn) {
  conn->backend_conf = pst_gen_backend(conn->gl, conn->sni, strlen(conn->sni));
  if (conn->front != NULL) {
    /* Started during the handshake for early data: answers made meanwhile
     * go out now, and requests held back may proceed. */
    pst_conn_set_state(conn, PST_CONN_OPEN);
    pst_buf_t out = conn->early_out;
    memset(&conn->early_out, 0, sizeof(conn->early_out));
    int rc = pst_conn_send(conn, pst_buf_head(&out), out.len);
    pst_buf_free(&out);
    if (rc != 0) return;
    /* A response paused on early_out's size hears nothing from a write that
     * the socket took at once: tell the front end there is room. */
    if (pst_conn_client_queued(conn) < PST_LOW_WATER) conn->front->ops->client_drain(conn->front);
    if (conn->state != PST_CONN_OPEN) return;
    if (conn->front->ops->handshake_done != NULL) conn->front->ops->handshake_done(conn->front);
    if (conn->end_after_handshake && conn->state == PST_CONN_OPEN) pst_conn_end(conn);
    return;
  }
  if (conn->backend_connected) {
    /* Connected during the handshake (pst_relay_early): what the backend
     * answered that could not go as 0.5-RTT data goes first, then relay
     * at once; the caller's pump goes on reading the client. */
    pst_conn_set_state(conn, PST_CONN_OPEN);
    pst_buf_t out = conn->early_out;
    memset(&conn->early_out, 0, sizeof(conn->early_out));
    int rc = out.len > 0 ? pst_conn_send(conn, pst_buf_head(&out), out.len) : 0;
    pst_buf_free(&out);
    if (rc != 0) return;
    if (conn->backend.eof) {
      relay_shut_client(conn);
      return;
    }
    rc = relay_read_backend(conn);
    if (rc != 0) pst_conn_close(conn, rc, "backend read failed");
    return;
  }
  int h2 = strcmp(conn->alpn, "h2") == 0;
  if (conn->gl->conf->mode == PST_MODE_HTTP &&
      (h2 || conn->backend_conf->kind != PST_BACKEND_BUILTIN_INFO)) {
    pst_conn_set_state(conn, PST_CONN_OPEN);
    conn->backend.shut_done = 1; /* no backend side of its own */
    conn->front = h2 ? pst_h2_front_new(conn) : pst_h1_front_new(conn);
    if (conn->front == NULL) pst_conn_close(conn, -ENOMEM, "out of memory");
    return;
  }
  if (conn->backend_conf->kind == PST_BACKEND_BUILTIN_INFO) {
    conn->info = pst_info_new();
    if (conn->info == NULL) {
      pst_conn_close(conn, -ENOMEM, "out of memory");
      return;
    }
    pst_conn_set_state(conn, PST_CONN_OPEN);
    return;
  }
  relay_connect(conn);
}

/* ---- services for the http-mode front ends (front.h) ---- */

int pst_conn_send(pst_conn_t *conn, const char *data, size_t len) {
  if (conn->state == PST_CONN_CLOSING || conn->client.shut) return PST_ESHUTDOWN;
  if (len == 0) return 0;
  if (conn->state != PST_CONN_HANDSHAKE) {
    if (pst_buf_append(&conn->pout, data, len) != 0) {
      pst_conn_close(conn, -ENOMEM, "out of memory");
      return -ENOMEM;
    }
    conn->backend.bytes += len;
    pst_conn_want_flush(conn);
    return 0;
  }
  /* A response to a request that came as 0-RTT early data. While early
   * data is being read, postern's Finished is already out and its write
   * keys are the application keys: the response goes at once, as 0.5-RTT
   * data (RFC 8446 2.3; .ci/wolfssl-half-rtt-data.patch), which is what
   * saves 0-RTT's round trip; not at the end of the loop turn, when the
   * client's EndOfEarlyData may have closed that window. Otherwise (the
   * window between the client's EndOfEarlyData and its Finished) it waits
   * for pst_relay_start. */
  if (!conn->early_reading || conn->early_bytes == 0 || conn->early_out.len > 0) {
    if (pst_buf_append(&conn->early_out, data, len) == 0) return 0;
    pst_conn_close(conn, -ENOMEM, "out of memory");
    return -ENOMEM;
  }
  if (wolfSSL_write(conn->ssl, data, (int)len) != (int)len) {
    pst_conn_close(conn, PST_ETLS, "TLS write failed");
    return PST_ETLS;
  }
  conn->backend.bytes += len;
  int rc = pst_conn_flush_client(conn);
  if (rc != 0) pst_conn_client_failed(conn, rc, "client write failed");
  return rc;
}

size_t pst_conn_client_queued(const pst_conn_t *conn) {
  return conn->early_out.len + conn->pout.len + conn->cout.len +
         uv_stream_get_write_queue_size((const uv_stream_t *)&conn->client.tcp);
}

void pst_conn_client_pause(pst_conn_t *conn, int pause) {
  if (conn->state != PST_CONN_OPEN || conn->client_paused == !!pause) return;
  conn->client_paused = !!pause;
  if (pause) {
    pst_conn_read_client(conn, 0);
    return;
  }
  if (pst_conn_read_client(conn, 1) != 0) {
    pst_conn_client_failed(conn, -EIO, "client read failed");
    return;
  }
  pst_conn_pump(conn); /* decrypted bytes wolfSSL holds, and kept ciphertext */
}

void pst_conn_end(pst_conn_t *conn) {
  if (conn->state == PST_CONN_HANDSHAKE) conn->end_after_handshake = 1;
  if (conn->state != PST_CONN_OPEN) return;
  relay_shut_client(conn);
}

const char *pst_conn_client_ip(const pst_conn_t *conn) { return conn->peer_ip; }

const pst_backend_conf_t *pst_conn_backend(const pst_conn_t *conn) { return conn->backend_conf; }
