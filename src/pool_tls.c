/* postern: the TLS layer of a backend connection to a set with tls: (see
 * pool_int.h). wolfSSL runs as a client fed from the socket's reads and
 * writing through the connection's write path, never touching a socket
 * (the same discipline as conn.c on the client side). The lessee sees
 * plaintext: on_connect once the handshake is done and the certificate
 * verified, on_read with decrypted bytes, pst_bconn_write encrypting, and
 * pst_bconn_shutdown sending close_notify.
 *
 * States (pst_btls_t.state): HANDSHAKE while the bconn is CONNECTING (the
 * connect timer covers TCP and TLS both: a failure of either is a connect
 * failure for the balancer and the retries); OPEN once it is done; SHUT
 * after our close_notify (the server may still answer, RFC 8446 6.1); DONE
 * after the server's close_notify, its FIN or an error. Ciphertext is read
 * into the worker's slab and fed straight from there; what wolfSSL has not
 * consumed when the lessee pauses waits in held (at most one read), and is
 * delivered on the next loop turn after it resumes (the kick timer: no
 * event runs inside a pst_bconn_* call). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "pool_int.h"
#include "postern/common.h"
#include "postern/log.h"
#include "postern/tls.h"

/* Plaintext taken from wolfSSL per call: one record at most. */
#define BTLS_CHUNK 16384

typedef enum {
  BTLS_HANDSHAKE = 0, /* ClientHello sent (or about to be), the server's flight awaited */
  BTLS_OPEN = 1,      /* handshake done, certificate verified: records both ways */
  BTLS_SHUT = 2,      /* our close_notify sent; the server's records are still read */
  BTLS_DONE = 3,      /* the server's close_notify or FIN, or a fatal error: no more records */
} btls_state_t;

struct pst_btls_s {
  WOLFSSL *ssl;
  const char *in_ptr; /* ciphertext being fed to wolfSSL (the slab, or held) */
  size_t in_len;
  pst_buf_t held;  /* ciphertext read but not yet fed (the lessee paused) */
  uv_timer_t kick; /* delivers held records after a resume; initialised on first use */
  btls_state_t state;
  unsigned kick_init : 1;
  unsigned started : 1;   /* wolfSSL_connect called: the ClientHello is out */
  unsigned feeding : 1;   /* in_ptr/in_len are set (btls_feed) */
  unsigned from_held : 1; /* ... and point into held */
  unsigned resumed : 1;
  char name[256]; /* the server name checked (and sent as SNI unless an address) */
};

static void btls_set_state(pst_btls_t *t, btls_state_t s) {
  assert(s > t->state || (s == BTLS_DONE && t->state == BTLS_DONE));
  t->state = s;
}

/* ---- wolfSSL I/O: the connection's buffers, never the socket ---- */

static int btls_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  (void)ssl;
  pst_btls_t *t = ctx;
  return pst_tls_io_take(&t->in_ptr, &t->in_len, buf, sz);
}

/* Each record goes out at once through the connection's write path (copied
 * when the kernel does not take it whole), so that pst_bconn_queued and
 * on_drain count ciphertext like plaintext: backpressure is unchanged. */
static int btls_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  (void)ssl;
  pst_bconn_t *b = ctx;
  if (b->state == BCONN_CLOSING && b->tls->state != BTLS_OPEN) return WOLFSSL_CBIO_ERR_CONN_CLOSE;
  if (pst_pool_write_raw(b, buf, (size_t)sz) != 0) return WOLFSSL_CBIO_ERR_GENERAL;
  return sz;
}

/* ---- the pool key and the layer's life ---- */

const char *pst_pool_tls_key(const pst_backend_set_conf_t *set, char *buf, size_t len) {
  if (set == NULL || !set->tls) return NULL;
  snprintf(buf, len, "%d|%s|%s", set->tls_verify,
           set->tls_server_name != NULL ? set->tls_server_name : "",
           set->tls_ca_file != NULL ? set->tls_ca_file : "");
  return buf;
}

int pst_pool_tls_new(pst_bconn_t *b, const pst_backend_conf_t *bc, int once) {
  const pst_backend_set_conf_t *set = bc->set;
  assert(set != NULL && set->tls && b->tls == NULL);
  if (set->tls_ctx == NULL) return PST_ETLS; /* a generation that failed to build it never serves */
  pst_btls_t *t = calloc(1, sizeof(*t));
  if (t == NULL) return -ENOMEM;
  b->tls = t;
  t->ssl = wolfSSL_new(set->tls_ctx); /* holds a reference to the context */
  if (t->ssl == NULL) return -ENOMEM;
  wolfSSL_SSLSetIORecv(t->ssl, btls_recv);
  wolfSSL_SSLSetIOSend(t->ssl, btls_send);
  wolfSSL_SetIOReadCtx(t->ssl, t);
  wolfSSL_SetIOWriteCtx(t->ssl, b);
  pst_tls_backend_name(set, bc->addr.text, t->name, sizeof(t->name));
  /* http mode speaks HTTP/1.1 to the servers (RFC 7301); the tcp relay's
   * protocol is the client's, which postern does not know: no ALPN. */
  int rc = pst_tls_backend_client(t->ssl, t->name, set->tls_verify, !once);
  if (rc != 0) return rc;
  pool_t *pool = b->pool;
  if (pool->session != NULL && wolfSSL_set_session(t->ssl, pool->session) != WOLFSSL_SUCCESS) {
    wolfSSL_SESSION_free(pool->session); /* expired: a full handshake, and a new one kept */
    pool->session = NULL;
  }
  return 0;
}

void pst_pool_tls_free(pst_bconn_t *b) {
  pst_btls_t *t = b->tls;
  if (t == NULL) return;
  if (t->ssl != NULL) wolfSSL_free(t->ssl);
  pst_buf_free(&t->held);
  free(t);
  b->tls = NULL;
}

int pst_pool_tls_owns(const pst_bconn_t *b, const uv_handle_t *h) {
  return b->tls != NULL && h == (const uv_handle_t *)&b->tls->kick;
}

void pst_pool_tls_keep_session(pst_bconn_t *b) {
  pst_btls_t *t = b->tls;
  if (t == NULL || t->state == BTLS_HANDSHAKE || b->pool == NULL) return;
  WOLFSSL_SESSION *s = wolfSSL_get1_session(t->ssl);
  if (s == NULL) return;
  if (b->pool->session != NULL) wolfSSL_SESSION_free(b->pool->session);
  b->pool->session = s;
}

unsigned pst_pool_tls_close(pst_bconn_t *b, uv_close_cb cb) {
  pst_btls_t *t = b->tls;
  pst_pool_tls_keep_session(b);
  /* A healthy connection ends with close_notify (RFC 8446 6.1), taken by
   * the kernel at once or dropped with the socket. */
  if (t->state == BTLS_OPEN) {
    wolfSSL_shutdown(t->ssl);
    btls_set_state(t, BTLS_SHUT);
  }
  if (!t->kick_init) return 0;
  uv_close((uv_handle_t *)&t->kick, cb);
  return 1;
}

/* ---- the handshake ---- */

/* Feeds data (n bytes read now) after what is held. Returns 0 or -ENOMEM. */
static int btls_feed(pst_btls_t *t, const char *data, size_t n) {
  assert(!t->feeding);
  if (t->held.len > 0) {
    if (n > 0 && pst_buf_append(&t->held, data, n) != 0) return -ENOMEM;
    t->in_ptr = pst_buf_head(&t->held);
    t->in_len = t->held.len;
    t->from_held = 1;
  } else {
    t->in_ptr = data;
    t->in_len = n;
    t->from_held = 0;
  }
  t->feeding = 1;
  return 0;
}

/* Keeps what wolfSSL did not take for later (the slab is the next read's).
 * Returns 0 or -ENOMEM. */
static int btls_hold(pst_btls_t *t) {
  if (!t->feeding) return 0;
  int rc = 0;
  if (t->from_held) {
    pst_buf_consume(&t->held, t->held.len - t->in_len);
  } else if (t->in_len > 0) {
    rc = pst_buf_append(&t->held, t->in_ptr, t->in_len);
  }
  t->in_ptr = NULL;
  t->in_len = 0;
  t->feeding = 0;
  return rc;
}

/* One handshake step. Returns 1 when it completed, 0 when it waits for the
 * server, or wolfSSL's (negative) error. */
static int btls_handshake(pst_btls_t *t) {
  t->started = 1;
  int r = wolfSSL_connect(t->ssl);
  if (r == WOLFSSL_SUCCESS) return 1;
  int e = wolfSSL_get_error(t->ssl, r);
  if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) return 0;
  return e < 0 ? e : PST_ETLS;
}

int pst_pool_tls_start(pst_bconn_t *b) {
  pst_btls_t *t = b->tls;
  assert(t->state == BTLS_HANDSHAKE && !t->started);
  if (!b->reading) {
    int rc = pst_pool_start_read(b);
    if (rc != 0) return rc;
  }
  int r = btls_handshake(t); /* the ClientHello */
  if (r < 0) {
    char why[300];
    pst_log_warn("backend server %s: TLS handshake failed to start: %s", b->pool->addr.text,
                 pst_tls_backend_why(r, why, sizeof(why)));
    btls_set_state(t, BTLS_DONE);
    return PST_ETLS;
  }
  return 0;
}

static void btls_failed(pst_bconn_t *b, int e) {
  pst_btls_t *t = b->tls;
  char why[300];
  pst_tls_backend_why(e, why, sizeof(why));
  pst_log_warn("backend server %s: TLS handshake failed (server name %s): %s", b->pool->addr.text,
               t->name, why);
  btls_set_state(t, BTLS_DONE);
  if (b->reading) {
    uv_read_stop((uv_stream_t *)&b->tcp);
    b->reading = 0;
  }
  pst_pool_connected(b, PST_ETLS);
}

/* ---- records ---- */

/* Delivers decrypted records to the lessee while it reads. */
static void btls_deliver(pst_bconn_t *b) {
  pst_btls_t *t = b->tls;
  char out[BTLS_CHUNK];
  while (b->state == BCONN_LEASED && b->ev != NULL && b->want_read && t->state != BTLS_DONE) {
    int r = wolfSSL_read(t->ssl, out, sizeof(out));
    if (r > 0) {
      b->ev->on_read(b->arg, out, r);
      continue;
    }
    int e = wolfSSL_get_error(t->ssl, r);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) return;
    btls_set_state(t, BTLS_DONE);
    if (e == WOLFSSL_ERROR_ZERO_RETURN) {
      b->ev->on_read(b->arg, NULL, UV_EOF); /* the server's close_notify */
      return;
    }
    char why[300];
    pst_log_warn("backend server %s: TLS record error: %s", b->pool->addr.text,
                 pst_tls_backend_why(e, why, sizeof(why)));
    b->ev->on_read(b->arg, NULL, PST_ETLS);
    return;
  }
}

/* An idle pooled connection read something: a ticket or a key update
 * keeps it; data, an alert or the server's close ends it. */
static void btls_idle_read(pst_bconn_t *b) {
  char out[256];
  int r = wolfSSL_read(b->tls->ssl, out, sizeof(out));
  if (r <= 0 && wolfSSL_get_error(b->tls->ssl, r) == WOLFSSL_ERROR_WANT_READ) return;
  pst_pool_close(b);
}

void pst_pool_tls_on_read(pst_bconn_t *b, const char *data, ssize_t n) {
  pst_btls_t *t = b->tls;
  if (n < 0) {
    /* TCP ended or failed: a FIN without close_notify ends the records
     * (RFC 8446 6.1: the lessee judges whether what came is complete). */
    if (b->state == BCONN_IDLE) {
      pst_pool_close(b);
      return;
    }
    if (t->state == BTLS_HANDSHAKE) {
      btls_failed(b, SOCKET_PEER_CLOSED_E);
      return;
    }
    if (t->state == BTLS_DONE) return; /* the lessee has heard the end already */
    /* Records still held (a resume's kick not yet run) go first, then the
     * end, once. */
    if (t->held.len > 0 && btls_feed(t, NULL, 0) == 0) {
      btls_deliver(b);
      btls_hold(t);
    }
    if (t->state == BTLS_DONE || b->state != BCONN_LEASED || b->ev == NULL) return;
    btls_set_state(t, BTLS_DONE);
    b->ev->on_read(b->arg, NULL, n);
    return;
  }
  if (t->state == BTLS_DONE) return;
  if (btls_feed(t, data, (size_t)n) != 0) {
    if (b->state == BCONN_IDLE) {
      pst_pool_close(b);
    } else if (t->state == BTLS_HANDSHAKE) {
      btls_failed(b, MEMORY_E);
    } else if (b->ev != NULL) {
      btls_set_state(t, BTLS_DONE);
      b->ev->on_read(b->arg, NULL, -ENOMEM);
    }
    return;
  }
  if (b->state == BCONN_IDLE) {
    btls_idle_read(b);
    if (b->state == BCONN_IDLE) btls_hold(t);
    return;
  }
  if (t->state == BTLS_HANDSHAKE) {
    int r = btls_handshake(t);
    if (r < 0) {
      btls_failed(b, r);
      return;
    }
    if (r == 0) {
      btls_hold(t); /* a partial record: wolfSSL keeps it; nothing is left here */
      return;
    }
    btls_set_state(t, BTLS_OPEN);
    t->resumed = wolfSSL_session_reused(t->ssl) == 1;
    pst_log_debug("backend server %s: TLS %s with %s, %s", b->pool->addr.text,
                  wolfSSL_get_version(t->ssl), t->name, t->resumed ? "resumed" : "full handshake");
    pst_pool_tls_keep_session(b);
    /* The rest of this read (a ticket, or the first records) is read once
     * the lessee reads. */
    if (btls_hold(t) != 0) {
      btls_failed(b, MEMORY_E);
      return;
    }
    pst_pool_connected(b, 0);
    if (b->state != BCONN_LEASED || b->ev == NULL) return;
    if (t->held.len > 0 && b->want_read) btls_feed(t, NULL, 0);
  }
  btls_deliver(b);
  if (b->state != BCONN_CLOSING && btls_hold(t) != 0 && b->ev != NULL) {
    btls_set_state(t, BTLS_DONE);
    b->ev->on_read(b->arg, NULL, -ENOMEM);
  }
}

static void btls_on_kick(uv_timer_t *h) {
  pst_bconn_t *b = h->data;
  pst_btls_t *t = b->tls;
  if (b->state != BCONN_LEASED || t->state == BTLS_DONE) return;
  btls_feed(t, NULL, 0);
  btls_deliver(b);
  if (b->state != BCONN_CLOSING && btls_hold(t) != 0 && b->ev != NULL) {
    btls_set_state(t, BTLS_DONE);
    b->ev->on_read(b->arg, NULL, -ENOMEM);
  }
}

void pst_pool_tls_resume(pst_bconn_t *b) {
  pst_btls_t *t = b->tls;
  if (b->state != BCONN_LEASED || t->state == BTLS_DONE) return;
  if (t->held.len == 0 && wolfSSL_pending(t->ssl) == 0) return;
  if (!t->kick_init) {
    uv_timer_init(b->pools->loop, &t->kick);
    t->kick.data = b;
    t->kick_init = 1;
  }
  uv_timer_start(&t->kick, btls_on_kick, 0, 0);
}

int pst_pool_tls_reusable(const pst_bconn_t *b) {
  const pst_btls_t *t = b->tls;
  /* Released from inside on_read, b may be feeding: what counts is what
   * wolfSSL has not taken yet, not the buffer it is taken from. */
  size_t unread = t->feeding ? t->in_len : t->held.len;
  return t->state == BTLS_OPEN && unread == 0 && wolfSSL_pending(t->ssl) == 0;
}

int pst_pool_tls_write(pst_bconn_t *b, const char *data, size_t len) {
  pst_btls_t *t = b->tls;
  if (t->state != BTLS_OPEN && t->state != BTLS_DONE) return PST_ESHUTDOWN;
  while (len > 0) {
    int n = len > BTLS_CHUNK ? BTLS_CHUNK : (int)len;
    int r = wolfSSL_write(t->ssl, data, n);
    if (r <= 0) {
      char why[300];
      int e = wolfSSL_get_error(t->ssl, r);
      pst_log_debug("backend server %s: TLS write failed: %s", b->pool->addr.text,
                    pst_tls_backend_why(e, why, sizeof(why)));
      return PST_ETLS;
    }
    data += r;
    len -= (size_t)r;
  }
  return 0;
}

void pst_pool_tls_shutdown(pst_bconn_t *b) {
  pst_btls_t *t = b->tls;
  if (t->state != BTLS_OPEN) return;
  wolfSSL_shutdown(t->ssl); /* close_notify; the server's answer is still read */
  btls_set_state(t, BTLS_SHUT);
}
