/* postern: backend connections and the per-worker keep-alive pool (http
 * mode). Reusing connections saves the backend connect (socket, connect,
 * close: ~45% of the kernel time per request in tcp mode) on every request. */
#include "postern/pool.h"

#include <stdlib.h>
#include <string.h>

#include "postern/common.h"
#include "postern/config.h"
#include "postern/log.h"
#include "postern/relay.h"
#include "postern/uvio.h"

typedef enum {
  BCONN_CONNECTING = 0, /* connect in flight, leased */
  BCONN_LEASED = 1,     /* connected, serving one exchange */
  BCONN_IDLE = 2,       /* connected, in the pool, reading to notice a close */
  BCONN_CLOSING = 3,    /* uv_close called on its handles */
} bconn_state_t;

typedef struct pst_pool_s {
  struct pst_pool_s *next;
  pst_addr_t addr;
  pst_bconn_t *idle; /* newest first: the one most likely still alive */
  unsigned n_idle;
} pst_pool_t;

struct pst_bconn_s {
  pst_worker_t *worker;
  pst_pool_t *pool;
  bconn_state_t state;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t connect_req;
  uv_shutdown_t shutdown_req;
  int handles;
  int reading;
  unsigned max_idle;
  uint64_t idle_ms;
  const pst_bconn_events_t *ev;
  void *arg;
  pst_bconn_t *next, *prev; /* idle list */
};

static pst_pool_t *pool_find(pst_worker_t *worker, const pst_addr_t *addr) {
  for (pst_pool_t *p = worker->pools; p != NULL; p = p->next) {
    if (pst_addr_equal(&p->addr, addr)) return p;
  }
  pst_pool_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  p->addr = *addr;
  p->next = worker->pools;
  worker->pools = p;
  return p;
}

static void idle_unlink(pst_bconn_t *b) {
  if (b->prev != NULL) b->prev->next = b->next;
  else b->pool->idle = b->next;
  if (b->next != NULL) b->next->prev = b->prev;
  b->next = b->prev = NULL;
  b->pool->n_idle--;
}

static void bconn_on_close(uv_handle_t *h) {
  pst_bconn_t *b = h->data;
  if (--b->handles > 0) return;
  b->worker->n_bconns--;
  free(b);
}

static void bconn_close(pst_bconn_t *b) {
  if (b->state == BCONN_CLOSING) return;
  if (b->state == BCONN_IDLE) idle_unlink(b);
  b->state = BCONN_CLOSING;
  b->ev = NULL;
  uv_close((uv_handle_t *)&b->tcp, bconn_on_close);
  uv_close((uv_handle_t *)&b->timer, bconn_on_close);
}

static void bconn_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  pst_bconn_t *b = PST_CONTAINER_OF(s, pst_bconn_t, tcp);
  if (n == 0) return;
  if (b->state == BCONN_IDLE) {
    /* A pooled connection said something (its close, or bytes nobody asked
     * for): it cannot carry another request. */
    bconn_close(b);
    return;
  }
  if (b->state != BCONN_LEASED || b->ev == NULL) return;
  b->ev->on_read(b->arg, buf->base, n);
}

static void bconn_on_timer(uv_timer_t *t) {
  pst_bconn_t *b = PST_CONTAINER_OF(t, pst_bconn_t, timer);
  if (b->state == BCONN_IDLE) {
    bconn_close(b); /* backend_pool.idle reached */
    return;
  }
  if (b->ev != NULL) b->ev->on_timer(b->arg);
}

static void bconn_on_connect(uv_connect_t *req, int status) {
  pst_bconn_t *b = PST_CONTAINER_OF(req, pst_bconn_t, connect_req);
  if (b->state != BCONN_CONNECTING) return; /* released while connecting */
  uv_timer_stop(&b->timer);
  if (status == 0) {
    b->state = BCONN_LEASED;
    uv_tcp_nodelay(&b->tcp, 1);
  }
  if (b->ev != NULL) b->ev->on_connect(b->arg, status);
}

/* Hands b to a new lessee: its events, and the pool limits b will be
 * released under, taken from the lessee's listener because a pool is per
 * backend address and shared by every listener (of every configuration
 * generation) that uses that address. */
static void bconn_lease_to(pst_bconn_t *b, const pst_listener_conf_t *lc,
                           const pst_bconn_events_t *ev, void *arg) {
  b->ev = ev;
  b->arg = arg;
  b->max_idle = lc->pool_max_idle;
  b->idle_ms = lc->pool_idle_ms;
}

pst_bconn_t *pst_pool_lease(pst_worker_t *worker, const pst_listener_conf_t *lc,
                            const pst_addr_t *addr, int fresh, const pst_bconn_events_t *ev,
                            void *arg, int *reused, int *err) {
  pst_pool_t *pool = pool_find(worker, addr);
  *reused = 0;
  *err = -ENOMEM;
  if (pool == NULL) return NULL;
  if (!fresh && pool->idle != NULL) {
    pst_bconn_t *b = pool->idle;
    idle_unlink(b);
    uv_timer_stop(&b->timer);
    b->state = BCONN_LEASED;
    bconn_lease_to(b, lc, ev, arg);
    *reused = 1;
    return b;
  }
  pst_bconn_t *b = calloc(1, sizeof(*b));
  if (b == NULL) return NULL;
  b->worker = worker;
  b->pool = pool;
  bconn_lease_to(b, lc, ev, arg);
  b->state = BCONN_CONNECTING;
  uv_tcp_init(&worker->loop, &b->tcp);
  uv_timer_init(&worker->loop, &b->timer);
  b->tcp.data = b->timer.data = b;
  b->handles = 2;
  worker->n_bconns++;
  int rc = uv_tcp_connect(&b->connect_req, &b->tcp, (const struct sockaddr *)&addr->ss,
                          bconn_on_connect);
  if (rc != 0) {
    *err = rc;
    bconn_close(b);
    return NULL;
  }
  uv_timer_start(&b->timer, bconn_on_timer, lc->backend_connect_timeout_ms, 0);
  return b;
}

static void bconn_on_write(uv_write_t *req, int status) {
  pst_bconn_t *b = pst_uv_write_done(req);
  if (b->state != BCONN_LEASED || b->ev == NULL) return;
  if (status < 0) {
    b->ev->on_write_error(b->arg, status);
    return;
  }
  if (pst_bconn_queued(b) < PST_LOW_WATER) b->ev->on_drain(b->arg);
}

int pst_bconn_write(pst_bconn_t *b, const char *data, size_t len) {
  return pst_uv_write((uv_stream_t *)&b->tcp, data, len, b, bconn_on_write);
}

size_t pst_bconn_queued(const pst_bconn_t *b) {
  return uv_stream_get_write_queue_size((const uv_stream_t *)&b->tcp);
}

void pst_bconn_read(pst_bconn_t *b, int on) {
  if (b->state == BCONN_CLOSING || b->reading == !!on) return;
  if (on) {
    /* Fails (ENOTCONN) while connecting: reading then starts on connect. */
    if (uv_read_start((uv_stream_t *)&b->tcp, pst_uv_alloc_slab, bconn_on_read) == 0) b->reading = 1;
  } else {
    uv_read_stop((uv_stream_t *)&b->tcp);
    b->reading = 0;
  }
}

void pst_bconn_timer(pst_bconn_t *b, uint64_t ms) {
  if (b->state == BCONN_CLOSING) return;
  if (ms == 0) uv_timer_stop(&b->timer);
  else uv_timer_start(&b->timer, bconn_on_timer, ms, 0);
}

static void bconn_on_shutdown(uv_shutdown_t *req, int status) { PST_UNUSED(req); }

void pst_bconn_shutdown(pst_bconn_t *b) {
  if (b->state != BCONN_LEASED) return;
  uv_shutdown(&b->shutdown_req, (uv_stream_t *)&b->tcp, bconn_on_shutdown);
}

void pst_bconn_release(pst_bconn_t *b, int reusable) {
  if (b == NULL || b->state == BCONN_CLOSING) return;
  b->ev = NULL;
  b->arg = NULL;
  pst_pool_t *pool = b->pool;
  if (!reusable || b->state != BCONN_LEASED || b->worker->pools_closed ||
      pool->n_idle >= b->max_idle || pst_bconn_queued(b) > 0) {
    bconn_close(b);
    return;
  }
  b->state = BCONN_IDLE;
  b->next = pool->idle;
  b->prev = NULL;
  if (pool->idle != NULL) pool->idle->prev = b;
  pool->idle = b;
  pool->n_idle++;
  pst_bconn_read(b, 1); /* notice the backend closing it */
  uv_timer_start(&b->timer, bconn_on_timer, b->idle_ms, 0);
}

void pst_pool_shutdown(pst_worker_t *worker) {
  worker->pools_closed = 1;
  pst_pool_t *next;
  for (pst_pool_t *p = worker->pools; p != NULL; p = next) {
    next = p->next;
    while (p->idle != NULL) bconn_close(p->idle);
    free(p);
  }
  worker->pools = NULL;
}

unsigned pst_pool_open_count(const pst_worker_t *worker) { return worker->n_bconns; }
