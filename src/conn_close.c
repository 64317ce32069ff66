/* postern: how a connection ends (the conn module; conn_int.h): the
 * client's side ended with close_notify and a FIN (RFC 8446 6.1), or with
 * the fatal alert of a TLS failure and a FIN (6.2); the bytes the client
 * still sends read and dropped until its end or the linger timer; then the
 * handles closed and the connection freed. */
#include <assert.h>
#include <stdlib.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "conn_int.h"
#include "postern/buf.h"
#include "postern/common.h"
#include "postern/conn.h"
#include "postern/early.h"
#include "postern/gen.h"
#include "postern/metrics.h"
#include "postern/pool.h"
#include "postern/tls.h"
#include "postern/uvio.h"

static int conn_send_fin(pst_conn_t *conn, uv_shutdown_cb cb);

/* ---- ending the client's side ---- */

/* For a shutdown callback: the connection, and the request freed. The
 * request is allocated when the end comes, not carried by every idle
 * connection; libuv runs the callback (UV_ECANCELED at worst) before the
 * handle's close callback, so the connection is still there. */
static pst_conn_t *conn_shutdown_done(uv_shutdown_t *req) {
  pst_conn_t *conn = req->data;
  free(req);
  return conn;
}

static void conn_on_client_shutdown(uv_shutdown_t *req, int status) {
  pst_conn_t *conn = conn_shutdown_done(req);
  if (conn->state == PST_CONN_CLOSING) return;
  conn->client.shut_done = 1;
  if (conn->app != NULL && conn->app->ops->client_shut != NULL) {
    conn->app->ops->client_shut(conn->app);
    return;
  }
  pst_conn_close(conn, 0, "done");
}

/* Ends the client's side: what is queued, then close_notify (RFC 8446 6.1),
 * then a TCP shutdown whose completion runs cb. Returns 0, PST_ETLS when the
 * queued answers cannot be encrypted (nothing sent yet), or a negative libuv
 * error (cb will not run; the caller closes). */
static int conn_shut_client(pst_conn_t *conn, uv_shutdown_cb cb) {
  /* What the application queued this loop turn goes before the close_notify. */
  if (pst_conn_encrypt(conn) != 0) return PST_ETLS;
  wolfSSL_shutdown(conn->ssl);
  return conn_send_fin(conn, cb);
}

/* Writes what is in cout, then a TCP shutdown whose completion runs cb.
 * Returns 0 or a negative libuv error (cb will not run; the caller closes). */
static int conn_send_fin(pst_conn_t *conn, uv_shutdown_cb cb) {
  conn->client.shut = 1;
  int rc = pst_conn_flush_now(conn);
  if (rc != 0) return rc;
  uv_shutdown_t *req = malloc(sizeof(*req));
  if (req == NULL) return -ENOMEM;
  req->data = conn;
  rc = uv_shutdown(req, (uv_stream_t *)&conn->client.tcp, cb);
  if (rc != 0) free(req);
  return rc;
}

/* host->ops->end, and the end asked during the handshake. */
void pst_conn_end(pst_conn_t *conn) {
  if (conn->state == PST_CONN_HANDSHAKE || conn->state == PST_CONN_EARLY) {
    conn->end_after_handshake = 1;
    return;
  }
  if (conn->state != PST_CONN_OPEN || conn->client.shut) return;
  int rc = conn_shut_client(conn, conn_on_client_shutdown);
  if (rc == PST_ETLS)
    pst_conn_close(conn, rc, "TLS write failed");
  else if (rc != 0)
    pst_conn_client_failed(conn, rc, "client shutdown failed");
}

/* ---- close ---- */

static void conn_free(pst_conn_t *conn) {
  pst_worker_t *worker = conn->worker;
  assert(conn->state == PST_CONN_CLOSING && conn->handles == 0);
  if (conn->prev != NULL)
    conn->prev->next = conn->next;
  else
    worker->conns = conn->next;
  if (conn->next != NULL) conn->next->prev = conn->prev;
  /* The application goes last: its streams could still hear from their
   * backends until now, and host services refuse work once CLOSING. */
  if (conn->app != NULL) conn->app->ops->destroy(conn->app);
  pst_conn_flush_unlist(conn);
  if (conn->ssl != NULL) {
    pst_tls_conn_release(conn->ssl); /* its client certificate, if any */
    wolfSSL_free(conn->ssl);
  }
  pst_early_free(&conn->early);
  pst_buf_free(&conn->cin);
  pst_buf_free(&conn->early_out);
  pst_buf_free(&conn->cout);
  pst_buf_free(&conn->pout);
  pst_gen_unref(conn->gen);
  free(conn->peer_buf);
  free(conn->sni_buf);
  free(conn->why);
  free(conn->proxied);
  pst_wlistener_t *wl = conn->wl;
  free(conn);
  worker->conn_gone(worker, wl);
}

static void conn_on_handle_close(uv_handle_t *h) {
  pst_conn_t *conn = h->data;
  assert(conn->handles > 0);
  if (--conn->handles == 0) conn_free(conn);
}

static void conn_close_handle(pst_conn_t *conn, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  h->data = conn;
  uv_close(h, conn_on_handle_close);
}

/* Closes every handle now (the last close callback frees conn). */
void pst_conn_close_handles(pst_conn_t *conn) {
  conn_close_handle(conn, (uv_handle_t *)&conn->client.tcp);
  conn_close_handle(conn, (uv_handle_t *)&conn->timer);
}

/* After our FIN: what the client still sends is read and dropped. */
static void conn_on_linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  if (nread < 0) pst_conn_close_handles(PST_CONTAINER_OF(s, pst_conn_t, client.tcp));
}

/* Our FIN is out. Closing a socket that holds unread bytes sends a reset,
 * and a reset can make the client's stack drop the alert or close_notify
 * it has not read yet: so the client's bytes are read and dropped until its
 * own FIN, an error, or the linger timer, and only then is it closed. */
static void conn_on_final_shutdown(uv_shutdown_t *req, int status) {
  pst_conn_t *conn = conn_shutdown_done(req);
  uv_stream_t *s = (uv_stream_t *)&conn->client.tcp;
  if (status == 0 && !conn->client.eof && !conn->client.failed &&
      uv_read_start(s, pst_uv_alloc_slab, conn_on_linger_read) == 0) {
    return; /* the linger timer bounds the wait */
  }
  pst_conn_close_handles(conn);
}

/* Why conn closes, for postern_connections_closed_total: what err says,
 * read with the state it closes in (metrics.h: pst_mclose_t). */
static pst_mclose_t conn_close_why(const pst_conn_t *conn, int err) {
  int handshake = conn->state == PST_CONN_HANDSHAKE || conn->state == PST_CONN_EARLY;
  if (err == 0) return PST_MCLOSE_DONE;
  if (err == PST_ESHUTDOWN) return PST_MCLOSE_SHUTDOWN;
  if (err == PST_ELIMIT) return PST_MCLOSE_EVICTED;
  /* Before any TLS byte: the PROXY header's fault, or the peer's address
   * (proxy.h); its timeout too, since the header never came. */
  if (conn->state == PST_CONN_PROXY) return PST_MCLOSE_PROXY_REFUSED;
  if (conn->timer_closed) {
    if (handshake) return PST_MCLOSE_HANDSHAKE_TIMEOUT;
    return conn->head ? PST_MCLOSE_REQUEST_HEAD_TIMEOUT : PST_MCLOSE_IDLE_TIMEOUT;
  }
  if (conn->client.failed) return PST_MCLOSE_CLIENT_CLOSED; /* reset, EPIPE */
  switch (err) {
    case PST_ETLS: return handshake ? PST_MCLOSE_HANDSHAKE_FAILED : PST_MCLOSE_TLS_ERROR;
    /* In the handshake: the client's FIN (conn_handshake_wait). */
    case PST_EPROTO: return handshake ? PST_MCLOSE_CLIENT_CLOSED : PST_MCLOSE_PROTOCOL_ERROR;
    case PST_EBACKEND:
    case PST_ETIMEDOUT: return PST_MCLOSE_BACKEND_ERROR; /* the tcp relay's connect timeout */
    case -ENOMEM: return PST_MCLOSE_ERROR;
    /* After the handshake, a system error that is not the client socket's
     * (client.failed) is the backend's: the tcp relay passes them on. */
    default: return handshake ? PST_MCLOSE_ERROR : PST_MCLOSE_BACKEND_ERROR;
  }
}

/* Counts conn's close, and a handshake that did not complete with the
 * fatal alert wolfSSL sent (RFC 8446 6.2), if any. */
static void conn_count_close(const pst_conn_t *conn, int err) {
  unsigned slot = conn->gl->conf->metrics_slot;
  pst_metrics_conn_closed(slot, conn_close_why(conn, err));
  if (conn->ssl == NULL || (conn->state != PST_CONN_HANDSHAKE && conn->state != PST_CONN_EARLY)) {
    return;
  }
  WOLFSSL_ALERT_HISTORY h = {.last_tx = {.code = -1, .level = -1}};
  wolfSSL_get_alert_history(conn->ssl, &h);
  pst_metrics_handshake_failed(slot, h.last_tx.level == alert_fatal ? h.last_tx.code : -1);
}

/* Like pst_conn_close, for a failure of the client socket itself: nothing
 * is flushed to it. */
void pst_conn_client_failed(pst_conn_t *conn, int err, const char *reason) {
  conn->client.failed = 1;
  pst_conn_close(conn, err, reason);
}

void pst_conn_close(pst_conn_t *conn, int err, const char *reason) {
  if (conn->state == PST_CONN_CLOSING) return;
  assert(err <= 0);
  int hears = conn->ssl != NULL && !conn->client.failed && !conn->client.shut;
  int healthy = hears && conn->handshake_ms > 0 && err != PST_ETLS;
  conn->err = err;
  pst_conn_log(conn, reason != NULL ? reason : "");
  conn_count_close(conn, err);
  pst_conn_set_state(conn, PST_CONN_CLOSING);
  pst_conn_evict_unlink(conn);
  if (conn->app != NULL && conn->app->ops->closing != NULL) conn->app->ops->closing(conn->app);
  /* Kept-alive server connections that carry this client's PROXY header
   * (stream.c) serve nobody else: closed with it. */
  if (conn->host.backend != NULL && conn->host.backend->proxy_protocol != PST_PROXY_NONE) {
    pst_pools_drop_owner(conn->host.pools, conn->host.id);
  }
  uv_read_stop((uv_stream_t *)&conn->client.tcp);
  /* RFC 8446 6.1: end with close_notify when the client can still hear it;
   * the shutdown callback runs once queued bytes are written. Answers
   * queued this loop turn go before the close_notify. */
  int rc = healthy ? conn_shut_client(conn, conn_on_final_shutdown) : PST_ETLS;
  /* RFC 8446 6.2: a failed TLS connection ends with the fatal alert wolfSSL
   * queued, sent before the close, whether the handshake, a later record or
   * the close_notify itself failed; a FIN after it, not a reset, so the
   * client reads it. Every TLS failure comes here: the alert goes once. */
  if (rc == PST_ETLS && hears && (healthy || err == PST_ETLS) && conn->cout.len > 0) {
    rc = conn_send_fin(conn, conn_on_final_shutdown);
  }
  if (rc != 0) pst_conn_close_handles(conn); /* else the linger timer bounds the wait */
}
