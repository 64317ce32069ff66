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

#include "postern/balance.h"
#include "postern/common.h"
#include "postern/log.h"
#include "postern/proxy.h"

#define TICK_MS 50
/* The status line of a health answer must come within this many bytes. */
#define STATUS_MAX 512

typedef enum {
  CHK_IDLE = 0,       /* waiting for its next due time */
  CHK_CONNECTING = 1, /* connect in flight */
  CHK_WAITING = 2,    /* http: request written, reading the status line */
  CHK_CLOSING = 3,    /* the socket is closing; idle once its close callback ran */
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

/* The check in flight ended: ok, or a failure with its cause. */
static void chk_result(chk_t *k, int ok, const char *cause) {
  /* Stopping: the close of every handle cancels requests in flight, whose
   * callbacks land here; the socket is closing already. */
  if (H.stopping) return;
  assert(k->state == CHK_CONNECTING || k->state == CHK_WAITING);
  k->state = CHK_CLOSING;
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

static void chk_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  chk_t *k = s->data;
  char cause[128];
  if (k->state != CHK_WAITING || n == 0) return;
  if (n < 0) {
    chk_result(k, 0, n == UV_EOF ? "closed without a status line" : uv_strerror((int)n));
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
  uv_buf_t b =
      uv_buf_init(k->req, (unsigned)(len < (int)(sizeof(k->req) - n) ? n + (size_t)len : 0));
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
    free(k);
  }
}
