/* postern: the active health checker (see health.h). One thread, one libuv
 * loop; a tick every TICK_MS looks at the registry's servers in use
 * (pst_balance_each) and starts the checks that are due. Each server has a
 * checker here, keyed by its registry entry (entries are never freed while
 * postern runs, so the pointer is a stable key). */
#include "postern/health.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "postern/balance.h"
#include "postern/common.h"
#include "postern/log.h"
#include "postern/proxy.h"
#include "postern/tls.h"
#include "postern/uvio.h"

#define TICK_MS 50
/* The status line of a health answer must come within this many bytes. */
#define STATUS_MAX 512

typedef enum {
  CHK_IDLE = 0,       /* waiting for its next due time */
  CHK_CONNECTING = 1, /* connect in flight */
  CHK_WAITING =
      2, /* http: request written (over TLS: handshake under way), reading the status line */
  CHK_CLOSING = 3, /* the socket is closing; idle once its close callback ran */
} chk_state_t;

typedef struct chk_s {
  struct chk_s *next;
  pst_srv_check_t c; /* the newest copy of the server's check */
  chk_state_t state;
  int seen;         /* still in use at the last tick */
  int up;           /* this checker's verdict, as published */
  unsigned ok_run;  /* successes in a row */
  unsigned bad_run; /* failures in a row */
  uint64_t due_ms;
  uint64_t deadline_ms; /* of the check in flight */
  char status[STATUS_MAX];
  size_t status_len;
  char req[1400];
  /* An http check of a set with tls: (balance.h): the context (our own
   * reference), the session of this check, the ciphertext being fed. */
  WOLFSSL_CTX *tls_ctx;
  WOLFSSL *ssl;
  const char *in_ptr;
  size_t in_len;
  int tls_open; /* handshake done, request written */
  char cin[4096];
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
} chk_t;

static struct {
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t stop;
  uv_timer_t tick;
  chk_t *list;
  unsigned seed;
  int started;
  int stopping; /* checker thread only: handles are being closed */
} H;

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* interval +- 10%, so that checks of many servers (and of many postern
 * instances) do not fall into step. */
static uint64_t jittered(uint64_t interval) {
  uint64_t span = interval / 5;
  return interval - interval / 10 + (span > 0 ? (uint64_t)rand_r(&H.seed) % span : 0);
}

/* ---- one check ---- */

static void chk_on_close(uv_handle_t *h) {
  chk_t *k = h->data;
  k->state = CHK_IDLE;
}

/* ---- TLS (an http check of a set with tls:) ---- */

/* Frees the check's TLS session (the socket is closing or failed). */
static void chk_tls_end(chk_t *k) {
  if (k->ssl != NULL) wolfSSL_free(k->ssl);
  k->ssl = NULL;
  k->tls_open = 0;
}

/* wolfSSL reads what the socket read, and writes through uvio (copied
 * when the kernel does not take it at once): it never touches a socket. */
static int chk_tls_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  chk_t *k = ctx;
  return pst_tls_io_take(&k->in_ptr, &k->in_len, buf, sz);
}

static void chk_on_tls_write(uv_write_t *req, int status);

static int chk_tls_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  chk_t *k = ctx;
  if (pst_uv_write((uv_stream_t *)&k->tcp, buf, (size_t)sz, k, chk_on_tls_write) != 0) {
    return WOLFSSL_CBIO_ERR_GENERAL;
  }
  return sz;
}

/* The check in flight ended: ok, or a failure with its cause. */
static void chk_result(chk_t *k, int ok, const char *cause) {
  /* Stopping: the close of every handle cancels requests in flight, whose
   * callbacks land here; the socket is closing already. */
  if (H.stopping) return;
  assert(k->state == CHK_CONNECTING || k->state == CHK_WAITING);
  k->state = CHK_CLOSING;
  chk_tls_end(k);
  uv_close((uv_handle_t *)&k->tcp, chk_on_close);
  k->due_ms = now_ms() + jittered(k->c.interval_ms);
  char why[300];
  if (ok) {
    k->bad_run = 0;
    if (++k->ok_run >= k->c.rise && !k->up) {
      k->up = 1;
      snprintf(why, sizeof(why), "%u check%s passed in a row", k->ok_run,
               k->ok_run == 1 ? "" : "s");
      pst_balance_set_up(k->c.srv, 1, k->c.backend, k->c.server, why);
    }
    return;
  }
  k->ok_run = 0;
  if (++k->bad_run >= k->c.fall && k->up) {
    k->up = 0;
    snprintf(why, sizeof(why), "%s (%u check%s failed in a row)", cause, k->bad_run,
             k->bad_run == 1 ? "" : "s");
    pst_balance_set_up(k->c.srv, 0, k->c.backend, k->c.server, why);
  } else {
    pst_log_debug("backend %s: server %s: health check failed: %s", k->c.backend, k->c.server,
                  cause);
  }
}

static void chk_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  chk_t *k = h->data;
  if (k->ssl != NULL) {
    *buf = uv_buf_init(k->cin, sizeof(k->cin));
    return;
  }
  buf->base = k->status + k->status_len;
  buf->len = sizeof(k->status) - 1 - k->status_len;
}

/* "HTTP/1.1 200 ..." (RFC 9112 4): 2xx and 3xx are healthy. Returns 1
 * healthy, 0 not (cause written), -EAGAIN when more bytes are needed. */
static int chk_status(chk_t *k, char *cause, size_t len) {
  k->status[k->status_len] = '\0';
  char *eol = strstr(k->status, "\r\n");
  if (eol == NULL) eol = strchr(k->status, '\n');
  if (eol == NULL) {
    if (k->status_len + 1 < sizeof(k->status)) return -EAGAIN;
    snprintf(cause, len, "no status line in %d bytes", STATUS_MAX);
    return 0;
  }
  int code = 0;
  if (strncmp(k->status, "HTTP/1.", 7) != 0 || k->status[8] != ' ' ||
      sscanf(k->status + 9, "%3d", &code) != 1 || code < 100 || code > 599) {
    snprintf(cause, len, "invalid status line");
    return 0;
  }
  if (code >= 200 && code < 400) return 1;
  snprintf(cause, len, "status %d", code);
  return 0;
}

/* A TLS failure of the check: the cause in words (tls.h). */
static void chk_tls_failed(chk_t *k, int r) {
  char cause[300], why[280];
  int e = wolfSSL_get_error(k->ssl, r);
  snprintf(cause, sizeof(cause), "TLS (server name %s): %s", k->c.tls_name,
           pst_tls_backend_why(e, why, sizeof(why)));
  chk_result(k, 0, cause);
}

/* Ciphertext read: the handshake, then the request, then the status line
 * decrypted into status. */
static void chk_tls_read(chk_t *k, const char *data, size_t n) {
  char cause[128];
  k->in_ptr = data;
  k->in_len = n;
  if (!k->tls_open) {
    int r = wolfSSL_connect(k->ssl);
    if (r != WOLFSSL_SUCCESS) {
      int e = wolfSSL_get_error(k->ssl, r);
      if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE) chk_tls_failed(k, r);
      return;
    }
    k->tls_open = 1;
    size_t len = strlen(k->req);
    r = wolfSSL_write(k->ssl, k->req, (int)len);
    if (r != (int)len) {
      chk_tls_failed(k, r);
      return;
    }
  }
  for (;;) {
    size_t room = sizeof(k->status) - 1 - k->status_len;
    int r = wolfSSL_read(k->ssl, k->status + k->status_len, (int)room);
    if (r <= 0) {
      int e = wolfSSL_get_error(k->ssl, r);
      if (e == WOLFSSL_ERROR_WANT_READ) return;
      if (e == WOLFSSL_ERROR_ZERO_RETURN) {
        chk_result(k, 0, "closed without a status line");
      } else {
        chk_tls_failed(k, r);
      }
      return;
    }
    k->status_len += (size_t)r;
    int rc = chk_status(k, cause, sizeof(cause));
    if (rc >= 0) {
      chk_result(k, rc, cause);
      return;
    }
  }
}

static void chk_on_tls_write(uv_write_t *req, int status) {
  chk_t *k = pst_uv_write_done(req);
  if (k->state == CHK_WAITING && status < 0) chk_result(k, 0, uv_strerror(status));
}

static void chk_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  chk_t *k = s->data;
  char cause[128];
  if (k->state != CHK_WAITING || n == 0) return;
  if (n < 0) {
    chk_result(k, 0,
               n == UV_EOF ? (k->ssl != NULL && !k->tls_open ? "closed during the TLS handshake"
                                                             : "closed without a status line")
                           : uv_strerror((int)n));
    return;
  }
  if (k->ssl != NULL) {
    chk_tls_read(k, buf->base, (size_t)n);
    return;
  }
  k->status_len += (size_t)n;
  int rc = chk_status(k, cause, sizeof(cause));
  if (rc >= 0) chk_result(k, rc, cause);
}

static void chk_on_write(uv_write_t *req, int status) {
  chk_t *k = req->data;
  if (k->state == CHK_WAITING && status < 0) chk_result(k, 0, uv_strerror(status));
}

/* A tcp check with a PROXY header: healthy once the header is written. */
static void chk_on_header_written(uv_write_t *req, int status) {
  chk_t *k = req->data;
  if (k->state == CHK_WAITING) chk_result(k, status == 0, status == 0 ? NULL : uv_strerror(status));
}

/* The PROXY header a server with proxy_protocol expects first, written to
 * out (size bytes): a check names its own connection, its local address as
 * the source and the server as the destination (proxy-protocol.txt 2.1
 * suggests this for health checks; a LOCAL header or "UNKNOWN" line some
 * servers refuse). Sets *n; returns 0, -ENOSPC, -ENOMEM or a libuv error. */
static int chk_proxy_header(chk_t *k, char *out, size_t size, size_t *n) {
  struct sockaddr_storage self, peer;
  int self_len = sizeof(self), peer_len = sizeof(peer);
  int rc = uv_tcp_getsockname(&k->tcp, (struct sockaddr *)&self, &self_len);
  if (rc == 0) rc = uv_tcp_getpeername(&k->tcp, (struct sockaddr *)&peer, &peer_len);
  if (rc != 0) return rc;
  pst_proxy_info_t info = {.src = (const struct sockaddr *)&self,
                           .dst = (const struct sockaddr *)&peer};
  pst_buf_t b = {0};
  rc = pst_proxy_write(k->c.proxy_protocol, &info, &b);
  if (rc == 0 && b.len > size) rc = -ENOSPC;
  if (rc == 0) {
    memcpy(out, pst_buf_head(&b), b.len);
    *n = b.len;
  }
  pst_buf_free(&b);
  return rc;
}

/* An http check over TLS: the PROXY header (the first n bytes of req) in
 * the clear, then the ClientHello; the request (the rest of req) goes once
 * the handshake is done (chk_tls_read). */
static void chk_tls_start(chk_t *k, size_t n) {
  int rc = 0;
  if (n > 0) {
    rc = pst_uv_write((uv_stream_t *)&k->tcp, k->req, n, k, chk_on_tls_write);
    memmove(k->req, k->req + n, strlen(k->req + n) + 1);
  }
  if (rc != 0) {
    chk_result(k, 0, uv_strerror(rc));
    return;
  }
  k->ssl = wolfSSL_new(k->tls_ctx);
  if (k->ssl == NULL || pst_tls_backend_client(k->ssl, k->c.tls_name, k->c.tls_verify, 1) != 0) {
    chk_result(k, 0, "cannot set up TLS");
    return;
  }
  wolfSSL_SSLSetIORecv(k->ssl, chk_tls_recv);
  wolfSSL_SSLSetIOSend(k->ssl, chk_tls_send);
  wolfSSL_SetIOReadCtx(k->ssl, k);
  wolfSSL_SetIOWriteCtx(k->ssl, k);
  rc = uv_read_start((uv_stream_t *)&k->tcp, chk_alloc, chk_on_read);
  if (rc != 0) {
    chk_result(k, 0, uv_strerror(rc));
    return;
  }
  chk_tls_read(k, NULL, 0); /* the ClientHello */
}

static void chk_on_connect(uv_connect_t *req, int status) {
  chk_t *k = req->data;
  if (k->state != CHK_CONNECTING) return; /* timed out meanwhile */
  if (status < 0) {
    chk_result(k, 0, status == UV_ECONNREFUSED ? "connection refused" : uv_strerror(status));
    return;
  }
  size_t n = 0;
  if (k->c.proxy_protocol != PST_PROXY_NONE) {
    int rc = chk_proxy_header(k, k->req, sizeof(k->req), &n);
    if (rc != 0) {
      chk_result(k, 0, "cannot make the PROXY header");
      return;
    }
  }
  k->state = CHK_WAITING;
  k->status_len = 0;
  k->write.data = k;
  if (k->c.check == PST_CHECK_TCP) {
    if (n == 0) {
      chk_result(k, 1, NULL);
      return;
    }
    uv_buf_t hb = uv_buf_init(k->req, (unsigned)n);
    int rc = uv_write(&k->write, (uv_stream_t *)&k->tcp, &hb, 1, chk_on_header_written);
    if (rc != 0) chk_result(k, 0, uv_strerror(rc));
    return;
  }
  /* RFC 9112 3.2: Host is required; the server's address as written. */
  int len = snprintf(k->req + n, sizeof(k->req) - n,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: postern-health-check\r\n"
                     "Connection: close\r\n\r\n",
                     k->c.path, k->c.server);
  if (len < 0 || len >= (int)(sizeof(k->req) - n)) {
    chk_result(k, 0, "request too long");
    return;
  }
  if (k->tls_ctx != NULL) {
    chk_tls_start(k, n);
    return;
  }
  uv_buf_t b = uv_buf_init(k->req, (unsigned)(n + (size_t)len));
  int rc = uv_write(&k->write, (uv_stream_t *)&k->tcp, &b, 1, chk_on_write);
  if (rc == 0) rc = uv_read_start((uv_stream_t *)&k->tcp, chk_alloc, chk_on_read);
  if (rc != 0) chk_result(k, 0, uv_strerror(rc));
}

static void chk_start(chk_t *k) {
  assert(k->state == CHK_IDLE);
  uv_tcp_init(&H.loop, &k->tcp);
  k->tcp.data = k;
  k->connect.data = k;
  k->state = CHK_CONNECTING;
  k->deadline_ms = now_ms() + k->c.timeout_ms;
  int rc =
      uv_tcp_connect(&k->connect, &k->tcp, (const struct sockaddr *)&k->c.addr.ss, chk_on_connect);
  if (rc != 0) chk_result(k, 0, uv_strerror(rc));
}

/* ---- the tick ---- */

static void tick_collect(const pst_srv_check_t *c, void *arg) {
  if (c->check == PST_CHECK_NONE) return;
  chk_t *k = H.list;
  while (k != NULL && k->c.srv != c->srv) k = k->next;
  if (k == NULL) {
    k = calloc(1, sizeof(*k));
    if (k == NULL) return; /* checked at a later tick */
    k->up = 1;             /* the registry's state of a server new to it */
    k->due_ms = now_ms() + (c->interval_ms > 0 ? (uint64_t)rand_r(&H.seed) % c->interval_ms : 0);
    k->next = H.list;
    H.list = k;
  }
  /* Our own reference to the TLS context: the registry may drop its own
   * (a reload) while a check runs. */
  if (c->tls_ctx != k->tls_ctx) {
    if (c->tls_ctx != NULL) wolfSSL_CTX_up_ref(c->tls_ctx);
    /* A check in flight keeps the old one through its WOLFSSL. */
    if (k->tls_ctx != NULL) wolfSSL_CTX_free(k->tls_ctx);
    k->tls_ctx = c->tls_ctx;
  }
  k->c = *c;
  k->seen = 1;
}

static void health_on_tick(uv_timer_t *t) {
  for (chk_t *k = H.list; k != NULL; k = k->next) k->seen = 0;
  pst_balance_each(tick_collect, NULL);
  uint64_t now = now_ms();
  chk_t **pp = &H.list;
  while (*pp != NULL) {
    chk_t *k = *pp;
    if (!k->seen && k->state == CHK_IDLE) { /* no generation names it any more */
      *pp = k->next;
      if (k->tls_ctx != NULL) wolfSSL_CTX_free(k->tls_ctx);
      free(k);
      continue;
    }
    if ((k->state == CHK_CONNECTING || k->state == CHK_WAITING) && now >= k->deadline_ms) {
      char why[64];
      snprintf(why, sizeof(why), "timeout after %llu ms", (unsigned long long)k->c.timeout_ms);
      chk_result(k, 0, why);
    } else if (k->seen && k->state == CHK_IDLE && now >= k->due_ms) {
      chk_start(k);
    }
    pp = &k->next;
  }
}

static void health_close_walk(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void health_on_stop(uv_async_t *a) {
  H.stopping = 1;
  uv_walk(&H.loop, health_close_walk, NULL);
}

static void health_main(void *arg) {
  uv_run(&H.loop, UV_RUN_DEFAULT);
  uv_loop_close(&H.loop);
  /* The TLS checks' sessions share this thread's random generator
   * (tls.h): they go first, then it. */
  for (chk_t *k = H.list; k != NULL; k = k->next) chk_tls_end(k);
  pst_tls_thread_cleanup();
}

int pst_health_start(void) {
  if (H.started) return 0;
  int rc = uv_loop_init(&H.loop);
  if (rc != 0) return rc;
  H.seed = (unsigned)uv_hrtime();
  uv_async_init(&H.loop, &H.stop, health_on_stop);
  uv_timer_init(&H.loop, &H.tick);
  uv_timer_start(&H.tick, health_on_tick, TICK_MS, TICK_MS);
  rc = uv_thread_create(&H.thread, health_main, NULL);
  if (rc != 0) {
    uv_close((uv_handle_t *)&H.stop, NULL);
    uv_close((uv_handle_t *)&H.tick, NULL);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    uv_loop_close(&H.loop);
    return rc;
  }
  H.started = 1;
  return 0;
}

void pst_health_stop(void) {
  if (!H.started) return;
  uv_async_send(&H.stop);
  uv_thread_join(&H.thread);
  H.started = 0;
  H.stopping = 0;
  while (H.list != NULL) {
    chk_t *k = H.list;
    H.list = k->next;
    chk_tls_end(k);
    if (k->tls_ctx != NULL) wolfSSL_CTX_free(k->tls_ctx);
    free(k);
  }
}
