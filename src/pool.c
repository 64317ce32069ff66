/* postern: backend connections and the per-worker keep-alive pool (see
 * pool.h). Reusing connections saves the backend connect (socket, connect,
 * close: ~45% of the kernel time per request in tcp mode) on every request
 * of http mode; the tcp relay leases one connection per client connection
 * and never pools it. */
#include "postern/pool.h"

#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "postern/common.h"
#include "postern/config.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/uvio.h"
#include "pool_int.h"

/* Idle connections at most per pool that each carry one client's PROXY
 * header (bconn_pool_room): the fixed bound of before the pool followed
 * its demand, which such connections do not share. */
#define POOL_OWNED_IDLE_MAX 128

static void bconn_on_timer(uv_timer_t *t);
static void bconn_close(pst_bconn_t *b);

/* The connection's one timer and its deadline. Deadlines are set and
 * cleared several times per request (backend_response while a response is
 * due, backend_pool.idle while idle), each a heap operation in libuv when
 * done on the uv timer itself. So the deadline is kept here and the uv timer
 * left armed as long as it fires no later than the deadline: clearing the
 * deadline costs nothing, and a later deadline nothing either; when the
 * timer fires early it re-arms for the rest (once per timeout period at
 * most). */
typedef struct {
  uv_timer_t t;     /* first: b->timer points here and its memory is this one's */
  uint64_t due;     /* the deadline, loop time in ms (uv_now), while set */
  uint64_t fires;   /* when the armed uv timer calls bconn_on_timer */
  unsigned set : 1; /* a deadline is set */
} bconn_timer_t;

static bconn_timer_t *bconn_timer_of(uv_timer_t *t) {
  return PST_CONTAINER_OF(t, bconn_timer_t, t);
}

/* Sets the deadline ms from now, making the timer on first use. Returns 0
 * or -ENOMEM. */
static int bconn_timer_start(pst_bconn_t *b, uint64_t ms) {
  if (b->timer == NULL) {
    bconn_timer_t *bt = malloc(sizeof(*bt));
    if (bt == NULL) return -ENOMEM;
    uv_timer_init(b->pools->loop, &bt->t);
    bt->t.data = b;
    bt->set = 0;
    b->timer = &bt->t;
  }
  bconn_timer_t *bt = bconn_timer_of(b->timer);
  bt->due = uv_now(b->pools->loop) + ms;
  bt->set = 1;
  /* Armed to fire by the deadline: it stays (a zero timer is a step of an
   * in-process answer, due now: always armed afresh). */
  if (ms > 0 && uv_is_active((uv_handle_t *)b->timer) && bt->fires <= bt->due) return 0;
  bt->fires = bt->due;
  return uv_timer_start(b->timer, bconn_on_timer, ms, 0);
}

/* Clears the deadline; the uv timer, if armed, fires and finds none. */
static void bconn_timer_stop(pst_bconn_t *b) {
  if (b->timer != NULL) bconn_timer_of(b->timer)->set = 0;
}

/* postern_backend_connections{state} (metrics.h): this worker's part,
 * moved with each state change; in-process connections are no backend's. */
static void bconn_gauge(const pst_bconn_t *b, bconn_state_t state, int delta) {
  if (b->local || state == BCONN_CLOSING) return;
  pst_metrics_gauge_add(state == BCONN_IDLE ? PST_MGAUGE_BACKEND_IDLE : PST_MGAUGE_BACKEND_ACTIVE,
                        delta);
}

/* Whether b counts in its pool's demand (pool_size.c): a connection to an
 * address that may be pooled, while the pool set lives (pst_pools_shutdown
 * frees the pools under leased connections). */
static int bconn_in_demand(const pst_bconn_t *b) {
  return b->pool != NULL && b->how != PST_LEASE_ONCE && b->owner == 0 && !b->pools->closed;
}

/* b's pool has one connection more (delta 1) or less (-1) in use. */
static void bconn_demand(pst_bconn_t *b, int delta) {
  pool_demand_t *d = &b->pool->demand;
  assert(delta > 0 || d->busy > 0);
  d->busy = delta > 0 ? d->busy + 1 : d->busy - 1;
  pst_pool_demand_note(d, uv_now(b->pools->loop), b->idle_ms);
}

static int state_busy(bconn_state_t s) { return s == BCONN_CONNECTING || s == BCONN_LEASED; }

/* The one place a connection changes state: CONNECTING -> LEASED <-> IDLE,
 * and CLOSING from any state, once. */
static void bconn_set_state(pst_bconn_t *b, bconn_state_t state) {
  assert(b->state != BCONN_CLOSING);
  assert(state == BCONN_CLOSING || (b->state == BCONN_CONNECTING && state == BCONN_LEASED) ||
         (b->state == BCONN_LEASED && state == BCONN_IDLE) ||
         (b->state == BCONN_IDLE && state == BCONN_LEASED));
  bconn_gauge(b, b->state, -1);
  bconn_gauge(b, state, 1);
  if (state_busy(b->state) != state_busy(state) && bconn_in_demand(b))
    bconn_demand(b, state_busy(state) ? 1 : -1);
  b->state = state;
}

/* ---- pool sets ---- */

pst_pools_t *pst_pools_new(uv_loop_t *loop) {
  pst_pools_t *pools = calloc(1, sizeof(*pools));
  if (pools != NULL) pools->loop = loop;
  return pools;
}

unsigned pst_pools_open(const pst_pools_t *pools) { return pools->open; }

void pst_pools_free(pst_pools_t *pools) {
  if (pools == NULL) return;
  assert(pools->closed && pools->list == NULL && pools->open == 0);
  free(pools);
}

/* The pool of one server address and tls: settings (tls_key, NULL for
 * plain TCP): a connection made under other settings is never shared. */
static pool_t *pool_find(pst_pools_t *pools, const pst_addr_t *addr, const char *tls_key) {
  for (pool_t *p = pools->list; p != NULL; p = p->next) {
    if (!pst_addr_equal(&p->addr, addr)) continue;
    if ((p->tls_key == NULL) != (tls_key == NULL)) continue;
    if (tls_key == NULL || strcmp(p->tls_key, tls_key) == 0) return p;
  }
  pool_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  if (tls_key != NULL && (p->tls_key = strdup(tls_key)) == NULL) {
    free(p);
    return NULL;
  }
  p->addr = *addr;
  p->next = pools->list;
  pools->list = p;
  return p;
}

static void idle_unlink(pst_bconn_t *b) {
  assert(b->state == BCONN_IDLE && b->pool->n_idle > 0);
  if (b->prev != NULL)
    b->prev->next = b->next;
  else
    b->pool->idle = b->next;
  if (b->next != NULL) b->next->prev = b->prev;
  b->next = b->prev = NULL;
  b->pool->n_idle--;
  if (b->owner != 0) b->pool->n_idle_owned--;
  size_t cost = pst_pool_idle_cost(b->tls != NULL);
  assert(b->pools->idle_bytes >= cost);
  b->pools->idle_bytes -= cost;
}

/* ---- closing ---- */

static void bconn_free(pst_bconn_t *b) {
  assert(b->pools->open > 0);
  pst_pool_tls_free(b);
  b->pools->open--;
  if (b->answer != NULL) pst_buf_free(b->answer);
  free(b->answer);
  free(b);
}

static void bconn_on_close(uv_handle_t *h) {
  pst_bconn_t *b = h->data;
  if (h != (uv_handle_t *)&b->tcp && !pst_pool_tls_owns(b, h)) free(h); /* the timer */
  assert(b->handles > 0);
  if (--b->handles == 0) bconn_free(b);
}

static void bconn_on_timer_dropped(uv_handle_t *h) { free(h); }

/* Closes the timer that is no longer needed (its memory goes with it). */
static void bconn_timer_drop(pst_bconn_t *b) {
  if (b->timer == NULL) return;
  uv_close((uv_handle_t *)b->timer, bconn_on_timer_dropped);
  b->timer = NULL;
}

void pst_pool_close(pst_bconn_t *b) { bconn_close(b); }

static void bconn_close(pst_bconn_t *b) {
  if (b->state == BCONN_CLOSING) return;
  if (b->state == BCONN_IDLE) idle_unlink(b);
  bconn_set_state(b, BCONN_CLOSING);
  b->ev = NULL;
  b->handles = 0;
  if (b->tls != NULL) b->handles += pst_pool_tls_close(b, bconn_on_close);
  if (!b->local) {
    uv_close((uv_handle_t *)&b->tcp, bconn_on_close);
    b->handles++;
  }
  if (b->timer != NULL) {
    uv_close((uv_handle_t *)b->timer, bconn_on_close);
    b->timer = NULL;
    b->handles++;
  }
  if (b->handles == 0) bconn_free(b); /* in-process, never armed */
}

void pst_pools_shutdown(pst_pools_t *pools) {
  pools->closed = 1;
  pool_t *next;
  for (pool_t *p = pools->list; p != NULL; p = next) {
    next = p->next;
    while (p->idle != NULL) bconn_close(p->idle);
    if (p->session != NULL) wolfSSL_SESSION_free(p->session);
    free(p->tls_key);
    free(p);
  }
  pools->list = NULL;
}

/* ---- events ---- */

static void bconn_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  pst_bconn_t *b = PST_CONTAINER_OF(s, pst_bconn_t, tcp);
  if (n == 0) return;
  if (b->tls != NULL) {
    if (n < 0) {
      uv_read_stop(s);
      b->reading = 0;
    }
    pst_pool_tls_on_read(b, buf->base, n);
    return;
  }
  if (b->state == BCONN_IDLE) {
    /* A pooled connection said something (its close, or bytes nobody asked
     * for): it cannot carry another request. */
    bconn_close(b);
    return;
  }
  if (n < 0) {
    uv_read_stop(s);
    b->reading = 0;
  }
  if (b->state != BCONN_LEASED || b->ev == NULL) return;
  b->ev->on_read(b->arg, buf->base, n);
}

static int bconn_start_read(pst_bconn_t *b) {
  int rc = uv_read_start((uv_stream_t *)&b->tcp, pst_uv_alloc_slab, bconn_on_read);
  if (rc == 0) b->reading = 1;
  return rc;
}

int pst_pool_start_read(pst_bconn_t *b) { return bconn_start_read(b); }

/* In-process connections: the next loop turn "connects", then delivers the
 * answer and its end, as a socket would. */
static void bconn_local_step(pst_bconn_t *b) {
  if (b->state == BCONN_CONNECTING) {
    bconn_set_state(b, BCONN_LEASED);
    b->ev->on_connect(b->arg, 0);
    return;
  }
  if (b->answer == NULL || !b->want_read) return; /* paused: pst_bconn_read resumes */
  pst_buf_t *answer = b->answer;
  b->answer = NULL;
  /* The lessee may release b from inside on_read: then no EOF follows. */
  b->ev->on_read(b->arg, pst_buf_head(answer), (ssize_t)answer->len);
  pst_buf_free(answer);
  free(answer);
  if (b->state == BCONN_LEASED && b->ev != NULL) b->ev->on_read(b->arg, NULL, UV_EOF);
}

static void bconn_on_timer(uv_timer_t *t) {
  pst_bconn_t *b = t->data;
  bconn_timer_t *bt = bconn_timer_of(t);
  if (!bt->set) return; /* cleared since it was armed */
  uint64_t now = uv_now(t->loop);
  if (now < bt->due) { /* the deadline moved later: wait for the rest */
    bt->fires = bt->due;
    uv_timer_start(t, bconn_on_timer, bt->due - now, 0);
    return;
  }
  bt->set = 0;
  if (b->state == BCONN_IDLE) {
    bconn_close(b); /* backend_pool.idle reached */
    return;
  }
  if (b->ev == NULL) return;
  if (b->local && (b->state == BCONN_CONNECTING || b->answer != NULL)) {
    bconn_local_step(b);
    return;
  }
  if (b->state == BCONN_CONNECTING) { /* backend_connect_timeout */
    pst_metrics_backend_timeout(b->metrics_slot, PST_MPHASE_CONNECT);
    pst_metrics_backend_connect_failed(b->metrics_slot);
  }
  b->ev->on_timer(b->arg);
}

static void bconn_on_shutdown(uv_shutdown_t *req, int status);

void pst_pool_connected(pst_bconn_t *b, int status) {
  assert(b->state == BCONN_CONNECTING);
  bconn_timer_stop(b);
  if (b->how == PST_LEASE_ONCE) bconn_timer_drop(b); /* the tcp relay arms no other */
  if (status != 0) pst_metrics_backend_connect_failed(b->metrics_slot);
  if (status == 0) {
    bconn_set_state(b, BCONN_LEASED);
    if (b->want_read && !b->reading) {
      int rc = bconn_start_read(b);
      if (rc != 0) status = rc;
    } else if (!b->want_read && b->reading) {
      uv_read_stop((uv_stream_t *)&b->tcp); /* the handshake read; the lessee has not asked */
      b->reading = 0;
    }
  }
  if (b->ev != NULL) b->ev->on_connect(b->arg, status);
  if (status == 0 && b->shut_pending && b->state == BCONN_LEASED && b->ev != NULL) {
    b->shut_pending = 0;
    if (b->tls != NULL) pst_pool_tls_shutdown(b);
    int rc = uv_shutdown(&b->req.shutdown, (uv_stream_t *)&b->tcp, bconn_on_shutdown);
    if (rc != 0 && b->ev->on_shutdown != NULL) b->ev->on_shutdown(b->arg, rc);
  }
}

static void bconn_on_connect(uv_connect_t *req, int status) {
  pst_bconn_t *b = PST_CONTAINER_OF(req, pst_bconn_t, req.connect);
  if (b->state != BCONN_CONNECTING) return; /* released while connecting */
  if (status == 0) uv_tcp_nodelay(&b->tcp, 1);
  if (status == 0 && b->tls != NULL) {
    /* The connect timer goes on over the handshake: both are the connect. */
    status = pst_pool_tls_start(b);
    if (status == 0) return;
  }
  pst_pool_connected(b, status);
}

/* ---- leasing ---- */

/* Hands b to a new lessee: its events, and the pool limits b will be
 * released under, taken from the lessee's listener because a pool is per
 * backend address and shared by every listener (of every configuration
 * generation) that uses that address. */
static void bconn_lease_to(pst_bconn_t *b, const pst_listener_conf_t *lc, pst_lease_t how,
                           const pst_bconn_events_t *ev, void *arg) {
  b->how = how;
  b->ev = ev;
  b->arg = arg;
  b->want_read = 0;
  b->max_idle = lc->pool_max_idle;
  b->max_idle_mib = lc->pool_max_idle_mib;
  b->idle_ms = lc->pool_idle_ms;
  b->metrics_slot = lc->metrics_slot;
}

static pst_bconn_t *bconn_new(pst_pools_t *pools, int local) {
  pst_bconn_t *b = calloc(1, sizeof(*b));
  if (b == NULL) return NULL;
  b->pools = pools;
  b->local = !!local;
  b->state = BCONN_CONNECTING;
  bconn_gauge(b, b->state, 1);
  if (!local) {
    uv_tcp_init(pools->loop, &b->tcp);
    b->tcp.data = b;
  }
  pools->open++;
  return b;
}

pst_bconn_t *pst_pool_lease(pst_pools_t *pools, const pst_listener_conf_t *lc,
                            const pst_backend_conf_t *bc, pst_lease_t how,
                            const pst_bconn_events_t *ev, void *arg, int *reused, int *err) {
  return pst_pool_lease_owned(pools, lc, bc, how, 0, ev, arg, reused, err);
}

/* The newest idle connection of pool that belongs to owner (0: to nobody).
 * The idle list is at most as long as pool_size.c allows. */
static pst_bconn_t *idle_of(const pool_t *pool, uint64_t owner) {
  for (pst_bconn_t *b = pool->idle; b != NULL; b = b->next) {
    if (b->owner == owner) return b;
  }
  return NULL;
}

void pst_pools_drop_owner(pst_pools_t *pools, uint64_t owner) {
  if (owner == 0) return;
  for (pool_t *p = pools->list; p != NULL; p = p->next) {
    pst_bconn_t *b;
    while ((b = idle_of(p, owner)) != NULL) bconn_close(b);
  }
}

pst_bconn_t *pst_pool_lease_owned(pst_pools_t *pools, const pst_listener_conf_t *lc,
                                  const pst_backend_conf_t *bc, pst_lease_t how, uint64_t owner,
                                  const pst_bconn_events_t *ev, void *arg, int *reused, int *err) {
  *reused = 0;
  *err = -ENOMEM;
  if (bc->kind == PST_BACKEND_BUILTIN_INFO) {
    pst_bconn_t *b = bconn_new(pools, 1);
    if (b == NULL) return NULL;
    bconn_lease_to(b, lc, PST_LEASE_ONCE, ev, arg);
    b->want_read = 1;
    if (bconn_timer_start(b, 0) != 0) {
      bconn_close(b);
      return NULL;
    }
    return b;
  }
  char key[PST_POOL_TLS_KEY_MAX];
  const char *tls_key = pst_pool_tls_key(bc->set, key, sizeof(key));
  pool_t *pool = pool_find(pools, &bc->addr, tls_key);
  if (pool == NULL) return NULL;
  pst_bconn_t *idle = how == PST_LEASE_POOLED ? idle_of(pool, owner) : NULL;
  if (idle != NULL) {
    pst_bconn_t *b = idle;
    idle_unlink(b);
    bconn_timer_stop(b);
    bconn_set_state(b, BCONN_LEASED);
    bconn_lease_to(b, lc, how, ev, arg);
    /* It is read while idle, to notice a close, and stays read: stopping
     * and starting again would cost two epoll_ctl calls per request. */
    b->want_read = 1;
    *reused = 1;
    return b;
  }
  pst_bconn_t *b = bconn_new(pools, 0);
  if (b == NULL) return NULL;
  b->pool = pool;
  b->owner = owner;
  bconn_lease_to(b, lc, how, ev, arg);
  if (bconn_in_demand(b)) {
    bconn_demand(b, 1); /* CONNECTING, set by bconn_new */
    /* FRESH passes over the idle connections (a retry, RFC 9110 9.2.2):
     * they were not free for it, so they count as held. */
    if (how == PST_LEASE_FRESH)
      pst_pool_demand_held(&pool->demand, pool->n_idle - pool->n_idle_owned);
  }
  int rc = tls_key != NULL ? pst_pool_tls_new(b, bc, how == PST_LEASE_ONCE) : 0;
  if (rc == 0) rc = bconn_timer_start(b, lc->backend_connect_timeout_ms);
  if (rc == 0) {
    rc = uv_tcp_connect(&b->req.connect, &b->tcp, (const struct sockaddr *)&bc->addr.ss,
                        bconn_on_connect);
  }
  if (rc != 0) {
    pst_metrics_backend_connect_failed(lc->metrics_slot);
    *err = rc;
    bconn_close(b);
    return NULL;
  }
  return b;
}

int pst_bconn_is_local(const pst_bconn_t *b) { return b->local; }

int pst_bconn_local_answer(pst_bconn_t *b, pst_buf_t *response) {
  assert(b->local && b->state == BCONN_LEASED && b->answer == NULL);
  b->answer = malloc(sizeof(*b->answer));
  if (b->answer == NULL) return -ENOMEM;
  *b->answer = *response;
  memset(response, 0, sizeof(*response));
  return bconn_timer_start(b, 0);
}

/* ---- writing and reading ---- */

static void bconn_on_write(uv_write_t *req, int status) {
  pst_bconn_t *b = pst_uv_write_done(req);
  if (b->state != BCONN_LEASED || b->ev == NULL) return;
  if (status < 0) {
    b->ev->on_write_error(b->arg, status);
    return;
  }
  if (pst_bconn_queued(b) < PST_BACKEND_LOW_WATER) b->ev->on_drain(b->arg);
}

int pst_pool_write_raw(pst_bconn_t *b, const char *data, size_t len) {
  return pst_uv_write((uv_stream_t *)&b->tcp, data, len, b, bconn_on_write);
}

int pst_bconn_write(pst_bconn_t *b, const char *data, size_t len) {
  assert(!b->local && b->state != BCONN_IDLE);
  if (b->state == BCONN_CLOSING) return PST_ESHUTDOWN;
  /* With tls, bytes written before on_connect (a PROXY header) go in the
   * clear ahead of the ClientHello: proxy-protocol.txt 2, the header comes
   * first on the connection. */
  if (b->tls != NULL && b->state == BCONN_LEASED) return pst_pool_tls_write(b, data, len);
  return pst_pool_write_raw(b, data, len);
}

int pst_bconn_write_proxy(pst_bconn_t *b, pst_host_t *host, pst_proxy_t version) {
  pst_buf_t hdr = {0};
  int rc = host->ops->proxy_header(host, version, &hdr);
  if (rc == 0) rc = pst_bconn_write(b, pst_buf_head(&hdr), hdr.len);
  pst_buf_free(&hdr);
  return rc;
}

size_t pst_bconn_queued(const pst_bconn_t *b) {
  if (b->local) return 0;
  return uv_stream_get_write_queue_size((const uv_stream_t *)&b->tcp);
}

void pst_bconn_read(pst_bconn_t *b, int on) {
  if (b->state == BCONN_CLOSING) return;
  b->want_read = !!on;
  if (b->local) {
    /* An answer held back while paused goes on the next turn. */
    if (on && b->state == BCONN_LEASED && b->answer != NULL) bconn_timer_start(b, 0);
    return;
  }
  if (b->tls != NULL) {
    if (b->state == BCONN_CONNECTING) return; /* the handshake reads; pst_pool_connected decides */
    if (on) pst_pool_tls_resume(b);
  }
  if (b->reading == !!on) return;
  if (!on) {
    uv_read_stop((uv_stream_t *)&b->tcp);
    b->reading = 0;
    return;
  }
  /* While connecting this may fail (ENOTCONN): bconn_on_connect starts it. */
  bconn_start_read(b);
}

void pst_bconn_timer(pst_bconn_t *b, uint64_t ms) {
  if (b->state == BCONN_CLOSING) return;
  if (ms == 0) {
    /* An in-process answer still due keeps its zero timer. */
    if (!(b->local && b->answer != NULL)) bconn_timer_stop(b);
    return;
  }
  if (b->local && (b->state == BCONN_CONNECTING || b->answer != NULL)) return;
  /* Without memory for the timer the deadline is not armed: said, not
   * hidden (the connection's own idle timeout still bounds it). */
  if (bconn_timer_start(b, ms) != 0) {
    pst_log_warn("backend connection: no memory for a timer: deadline of %llu ms not armed",
                 (unsigned long long)ms);
  }
}

static void bconn_on_shutdown(uv_shutdown_t *req, int status) {
  pst_bconn_t *b = PST_CONTAINER_OF(req, pst_bconn_t, req.shutdown);
  if (b->state != BCONN_LEASED || b->ev == NULL || b->ev->on_shutdown == NULL) return;
  b->ev->on_shutdown(b->arg, status);
}

int pst_bconn_shutdown(pst_bconn_t *b) {
  /* While connecting libuv queues the shutdown behind the connect. */
  if ((b->state != BCONN_LEASED && b->state != BCONN_CONNECTING) || b->local) return PST_ESHUTDOWN;
  if (b->state == BCONN_CONNECTING) {
    b->shut_pending = 1; /* its request's memory is the connect's: after it */
    return 0;
  }
  if (b->tls != NULL) pst_pool_tls_shutdown(b);
  return uv_shutdown(&b->req.shutdown, (uv_stream_t *)&b->tcp, bconn_on_shutdown);
}

/* Whether b, released reusable and LEASED, has room in its pool
 * (pool_size.c): the decision counts b as no longer in use. */
static int bconn_pool_room(pst_bconn_t *b) {
  pool_t *pool = b->pool;
  pst_pool_demand_note(&pool->demand, uv_now(b->pools->loop), b->idle_ms); /* a quiet spell */
  pool_demand_t d = pool->demand;
  unsigned n_idle = pool->n_idle - pool->n_idle_owned;
  unsigned max_idle = b->max_idle;
  if (b->owner != 0) {
    /* A connection of one client connection (owner) serves no other: the
     * pool's demand says nothing about it. max_idle, the budget, the idle
     * timer and its client connection's end bound it. */
    d.peak[0] = UINT_MAX;
    n_idle = pool->n_idle_owned;
    /* Kept apart from max_idle (4096 by default, sized for shared ones): a
     * client with many streams would otherwise leave that many sockets idle
     * that no one else can use, and a few such clients would take the
     * memory budget the shared connections need. */
    max_idle = max_idle < POOL_OWNED_IDLE_MAX ? max_idle : POOL_OWNED_IDLE_MAX;
  } else {
    assert(d.busy > 0);
    d.busy--;
  }
  size_t cost = pst_pool_idle_cost(b->tls != NULL);
  size_t budget = b->max_idle_mib == 0 ? SIZE_MAX : (size_t)b->max_idle_mib << 20; /* 0: none */
  return pst_pool_keep(&d, n_idle, max_idle, b->pools->idle_bytes, cost, budget) == POOL_KEEP;
}

void pst_bconn_release(pst_bconn_t *b, int reusable) {
  if (b == NULL || b->state == BCONN_CLOSING) return;
  assert(b->state != BCONN_IDLE); /* released twice */
  b->ev = NULL;
  b->arg = NULL;
  pool_t *pool = b->pool;
  if (!reusable || b->local || b->how == PST_LEASE_ONCE || b->state != BCONN_LEASED ||
      b->pools->closed || !bconn_pool_room(b) || pst_bconn_queued(b) > 0 ||
      (b->tls != NULL && !pst_pool_tls_reusable(b))) {
    bconn_close(b);
    return;
  }
  if (b->tls != NULL) pst_pool_tls_keep_session(b);
  bconn_set_state(b, BCONN_IDLE);
  b->pools->idle_bytes += pst_pool_idle_cost(b->tls != NULL);
  b->next = pool->idle;
  b->prev = NULL;
  if (pool->idle != NULL) pool->idle->prev = b;
  pool->idle = b;
  pool->n_idle++;
  if (b->owner != 0) pool->n_idle_owned++;
  if (!b->reading) bconn_start_read(b); /* notice the backend closing it */
  if (bconn_timer_start(b, b->idle_ms) != 0) bconn_close(b);
}

void pst_pools_sweep(pst_pools_t *pools, int (*keep)(const pst_addr_t *addr, void *arg),
                     void *arg) {
  for (pool_t *p = pools->list; p != NULL; p = p->next) {
    if (p->idle == NULL || keep(&p->addr, arg)) continue;
    while (p->idle != NULL) bconn_close(p->idle);
  }
}
