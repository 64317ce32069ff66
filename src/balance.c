/* postern: server choice within a backend set, and the registry of servers'
 * shared health (see balance.h).
 *
 * Policies:
 * - round_robin: nginx's smooth weighted round robin. Every pick adds each
 *   candidate's weight to its current weight, takes the largest and takes
 *   the total off it: weights 5,1,1 give a a b a c a a, never a a a a a b c.
 * - least_connections: the fewest connections in use by this worker per
 *   unit of weight (a[i]/w[i] < a[j]/w[j], compared as a[i]*w[j] <
 *   a[j]*w[i]); ties go round, from a cursor, so that idle servers share.
 * - client_ip: a ring of 64 points per unit of weight per server, each
 *   placed by a hash of the server's address and the point's number; a
 *   client's address hashes onto the ring and goes to the next point's
 *   server (Karger et al., consistent hashing). Removing a server removes
 *   only its points: only its clients move.
 * Servers down (health check) or ejected (passive) are skipped; when every
 * server is out the same policy runs over all of them. */
#include "postern/balance.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "postern/common.h"
#include "postern/config.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/tls.h"

/* Threads that keep balancing state of their own (workers; any more fall
 * back to a stateless weighted random choice). */
#define MAX_SLOTS 512
#define RING_POINTS 64
#define RING_MAX 65536

/* One registry entry: a server of a named backend, shared by every
 * generation naming both. Fields under "lock" change only under the
 * registry's mutex; the atomics are read on the request path. */
struct pst_srv_s {
  struct pst_srv_s *next;
  char *backend;
  char *server;
  unsigned refs; /* lock: sets (of live generations) holding it */
  pst_addr_t addr;
  /* lock: the check of the newest generation naming it */
  pst_check_t check;
  char path[1028];
  uint64_t interval_ms, timeout_ms;
  unsigned rise, fall;
  pst_proxy_t proxy_protocol; /* lock: the set's, which its checks send too */
  WOLFSSL_CTX *tls_ctx;       /* lock: an http check's TLS context (a reference), or NULL */
  char tls_name[256];         /* lock: the name that check verifies */
  int tls_verify;
  atomic_int up;                      /* the health checker's verdict (1 at first) */
  atomic_uint fails[2];               /* consecutive live failures by pst_fail_t (passive) */
  atomic_uint_least64_t out_until_ms; /* passive ejection ends (uv_hrtime ms) */
  atomic_uint_least64_t changes;      /* up/down changes and ejections */
  uint64_t epoch;                     /* lock: the newest generation naming it */
  atomic_int retired;                 /* the newest generation does not name it */
};

typedef struct {
  pst_srv_t *srv;
  unsigned weight;
  pst_backend_conf_t bc; /* what the pool leases: this server's address */
} bserver_t;

/* One thread's balancing state for one set. */
typedef struct {
  unsigned cursor;  /* least connections: where ties start */
  int64_t *cw;      /* round robin: current weights */
  unsigned *active; /* least connections: leases in use */
} bthread_t;

struct pst_bset_s {
  const pst_backend_set_conf_t *conf;
  uint64_t epoch;               /* of the config it belongs to */
  struct pst_bset_s *live_next; /* lock: in live_sets while attached */
  size_t n;
  bserver_t *servers;
  uint64_t *ring; /* sorted points: hash << 16 | server index */
  size_t n_ring;
  bthread_t *slots[MAX_SLOTS]; /* each written and read by one thread only */
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pst_srv_t *reg_list;
/* lock: the epochs of the configs attached now (one per generation), and
 * the last one given. A server that the newest of them does not name is
 * retired: requests of older generations (kept-alive client connections)
 * go to it only when no other server is usable, so that a reload that
 * removes a server takes it out at once. */
static uint64_t *live_epochs;
static size_t n_live, cap_live;
static uint64_t last_epoch;
/* lock: every attached set, so that a config dropped before it went live
 * (a failed or superseded reload) gives each server back the check of the
 * newest config still attached (reg_restore). */
static pst_bset_t *live_sets;

static atomic_uint next_slot;
static _Thread_local int tl_slot = -1;
static _Thread_local unsigned tl_seed;

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* FNV-1a over the bytes, then splitmix64's finaliser: FNV alone clusters
 * on inputs that differ in their last bytes, as "10.0.0.1:80#1" and "#2". */
static uint64_t hash_bytes(const void *p, size_t n, uint64_t h) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

static uint64_t hash_str(const char *s) { return hash_bytes(s, strlen(s), 0xcbf29ce484222325ull); }

/* ---- the registry ---- */

static pst_srv_t *reg_get(const char *backend, const pst_server_conf_t *sc) {
  for (pst_srv_t *s = reg_list; s != NULL; s = s->next) {
    if (strcmp(s->backend, backend) == 0 && strcmp(s->server, sc->addr.text) == 0) return s;
  }
  pst_srv_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->backend = strdup(backend);
  s->server = strdup(sc->addr.text);
  if (s->backend == NULL || s->server == NULL) {
    free(s->backend);
    free(s->server);
    free(s);
    return NULL;
  }
  atomic_init(&s->up, 1);
  s->next = reg_list;
  reg_list = s;
  return s;
}

/* Copies the newest generation's check into s (under reg_lock). */
static void reg_configure(pst_srv_t *s, const pst_backend_set_conf_t *c,
                          const pst_server_conf_t *sc) {
  s->addr = sc->addr;
  if (s->check != PST_CHECK_NONE && c->check == PST_CHECK_NONE) {
    atomic_store_explicit(&s->up, 1, memory_order_relaxed); /* nothing checks it any more */
  }
  s->check = c->check;
  snprintf(s->path, sizeof(s->path), "%s", c->check_path != NULL ? c->check_path : "/");
  s->interval_ms = c->check_interval_ms;
  s->timeout_ms = c->check_timeout_ms;
  s->rise = c->rise;
  s->fall = c->fall;
  s->proxy_protocol = c->proxy_protocol;
  /* An http check of a set with tls: speaks TLS with the set's context,
   * held here (a reference) for the checker thread. */
  WOLFSSL_CTX *ctx = c->tls && c->check == PST_CHECK_HTTP ? c->tls_ctx : NULL;
  if (ctx != s->tls_ctx) {
    if (ctx != NULL) wolfSSL_CTX_up_ref(ctx);
    if (s->tls_ctx != NULL) wolfSSL_CTX_free(s->tls_ctx);
    s->tls_ctx = ctx;
  }
  s->tls_verify = c->tls_verify;
  s->tls_name[0] = '\0';
  if (ctx != NULL) pst_tls_backend_name(c, sc->addr.text, s->tls_name, sizeof(s->tls_name));
}

void pst_balance_each(void (*fn)(const pst_srv_check_t *c, void *arg), void *arg) {
  pst_srv_check_t c;
  pthread_mutex_lock(&reg_lock);
  for (pst_srv_t *s = reg_list; s != NULL; s = s->next) {
    if (s->refs == 0) continue;
    memset(&c, 0, sizeof(c));
    c.srv = s;
    snprintf(c.backend, sizeof(c.backend), "%s", s->backend);
    snprintf(c.server, sizeof(c.server), "%s", s->server);
    c.addr = s->addr;
    c.check = s->check;
    memcpy(c.path, s->path, sizeof(c.path));
    c.interval_ms = s->interval_ms;
    c.timeout_ms = s->timeout_ms;
    c.rise = s->rise;
    c.fall = s->fall;
    c.proxy_protocol = s->proxy_protocol;
    c.tls_ctx = s->tls_ctx;
    memcpy(c.tls_name, s->tls_name, sizeof(c.tls_name));
    c.tls_verify = s->tls_verify;
    fn(&c, arg);
  }
  pthread_mutex_unlock(&reg_lock);
}

void pst_balance_set_up(pst_srv_t *srv, int up, const char *backend, const char *server,
                        const char *cause) {
  /* Under the lock: a reload may have turned the check off meanwhile
   * (reg_configure), and then the server stays up. */
  pthread_mutex_lock(&reg_lock);
  int old = srv->check == PST_CHECK_NONE
                ? !!up
                : atomic_exchange_explicit(&srv->up, !!up, memory_order_relaxed);
  pthread_mutex_unlock(&reg_lock);
  if (old == !!up) return;
  atomic_fetch_add_explicit(&srv->changes, 1, memory_order_relaxed);
  if (up) {
    /* Back by its checks: a passive ejection of the outage ends too. */
    atomic_store_explicit(&srv->out_until_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&srv->fails[0], 0, memory_order_relaxed);
    atomic_store_explicit(&srv->fails[1], 0, memory_order_relaxed);
    pst_log_info("backend %s: server %s is up: %s", backend, server, cause);
  } else {
    pst_log_warn("backend %s: server %s is down: %s", backend, server, cause);
  }
}

static int srv_usable(pst_srv_t *s, uint64_t now) {
  return atomic_load_explicit(&s->up, memory_order_relaxed) &&
         !atomic_load_explicit(&s->retired, memory_order_relaxed) &&
         atomic_load_explicit(&s->out_until_ms, memory_order_relaxed) <= now;
}

int pst_balance_usable(const pst_backend_set_conf_t *set, size_t i) {
  if (set == NULL || set->rt == NULL || i >= set->rt->n) return 0;
  return srv_usable(set->rt->servers[i].srv, now_ms());
}

static int render_family(pst_buf_t *out, int up) {
  uint64_t now = now_ms();
  const char *name =
      up ? "postern_backend_server_up" : "postern_backend_server_state_changes_total";
  int rc = pst_metrics_head(out, name, up ? "gauge" : "counter",
                            up ? "1 when the server takes requests: up by its health check and "
                                 "not ejected by live failures"
                               : "times the server went up or down by its health check, or was "
                                 "ejected by live failures");
  for (pst_srv_t *s = reg_list; s != NULL && rc == 0; s = s->next) {
    if (s->refs == 0) continue;
    rc = pst_buf_printf(out, "%s{backend=\"", name);
    if (rc == 0) rc = pst_metrics_label(out, s->backend);
    if (rc == 0) rc = pst_buf_append(out, "\",server=\"", 10);
    if (rc == 0) rc = pst_metrics_label(out, s->server);
    if (rc != 0) break;
    if (up) {
      rc = pst_buf_printf(out, "\"} %d\n", srv_usable(s, now));
    } else {
      rc = pst_buf_printf(
          out, "\"} %llu\n",
          (unsigned long long)atomic_load_explicit(&s->changes, memory_order_relaxed));
    }
  }
  return rc != 0 ? -ENOMEM : 0;
}

int pst_health_render(pst_buf_t *out) {
  pthread_mutex_lock(&reg_lock);
  int rc = render_family(out, 1);
  if (rc == 0) rc = render_family(out, 0);
  pthread_mutex_unlock(&reg_lock);
  return rc;
}

/* ---- set runtimes ---- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The consistent-hash ring: points per server in proportion to its weight,
 * scaled down together when the total would pass RING_MAX. */
static int ring_build(pst_bset_t *b) {
  uint64_t total = 0;
  for (size_t i = 0; i < b->n; i++) total += (uint64_t)b->servers[i].weight * RING_POINTS;
  double scale = total > RING_MAX ? (double)RING_MAX / (double)total : 1.0;
  b->ring = malloc((size_t)(total > RING_MAX ? RING_MAX + b->n : total) * sizeof(*b->ring));
  if (b->ring == NULL) return -ENOMEM;
  for (size_t i = 0; i < b->n; i++) {
    size_t pts = (size_t)((double)b->servers[i].weight * RING_POINTS * scale);
    if (pts == 0) pts = 1;
    const char *text = b->servers[i].bc.addr.text;
    for (size_t k = 0; k < pts; k++) {
      char point[160];
      int len = snprintf(point, sizeof(point), "%s#%zu", text, k);
      uint64_t h = hash_bytes(point, (size_t)len, 0xcbf29ce484222325ull);
      b->ring[b->n_ring++] = (h << 16) | (uint64_t)i; /* at most 256 servers: 16 bits */
    }
  }
  qsort(b->ring, b->n_ring, sizeof(*b->ring), cmp_u64);
  return 0;
}

static void bset_free(pst_bset_t *b) {
  if (b == NULL) return;
  for (pst_bset_t **pp = &live_sets; *pp != NULL; pp = &(*pp)->live_next) {
    if (*pp == b) {
      *pp = b->live_next;
      break;
    }
  }
  for (size_t i = 0; i < MAX_SLOTS; i++) free(b->slots[i]);
  free(b->servers);
  free(b->ring);
  free(b);
}

/* Builds set c's runtime; takes a registry reference per server (under
 * reg_lock). */
static int bset_build(pst_backend_set_conf_t *c, uint64_t epoch) {
  pst_bset_t *b = calloc(1, sizeof(*b));
  if (b == NULL) return -ENOMEM;
  b->conf = c;
  b->epoch = epoch;
  b->servers = calloc(c->n_servers, sizeof(*b->servers));
  if (b->servers == NULL) {
    free(b);
    return -ENOMEM;
  }
  for (size_t i = 0; i < c->n_servers; i++) {
    bserver_t *s = &b->servers[i];
    s->srv = reg_get(c->name, &c->servers[i]);
    if (s->srv == NULL) {
      bset_free(b);
      return -ENOMEM;
    }
    s->srv->refs++;
    s->srv->epoch = epoch;
    b->n++;
    reg_configure(s->srv, c, &c->servers[i]);
    s->weight = c->servers[i].weight;
    s->bc.kind = PST_BACKEND_ADDR;
    s->bc.set = c;
    s->bc.addr = c->servers[i].addr;
    s->bc.mark = c->servers[i].mark;
    s->bc.proxy_protocol = c->proxy_protocol;
  }
  if (ring_build(b) != 0) {
    for (size_t i = 0; i < b->n; i++) b->servers[i].srv->refs--;
    bset_free(b);
    return -ENOMEM;
  }
  c->rt = b;
  b->live_next = live_sets;
  live_sets = b;
  return 0;
}

/* After the config of epoch dropped is detached: each server it configured
 * last gets the check (path, interval, address...) of the newest config
 * still attached that names it, so that a config which never went live
 * leaves nothing of itself in the registry (under reg_lock). */
static void reg_restore(uint64_t dropped) {
  for (pst_srv_t *s = reg_list; s != NULL; s = s->next) {
    if (s->epoch != dropped || s->refs == 0) continue;
    const pst_bset_t *best = NULL;
    size_t at = 0;
    for (const pst_bset_t *b = live_sets; b != NULL; b = b->live_next) {
      if (best != NULL && b->epoch <= best->epoch) continue;
      for (size_t k = 0; k < b->n; k++) {
        if (b->servers[k].srv == s) {
          best = b, at = k;
          break;
        }
      }
    }
    assert(best != NULL); /* refs > 0: an attached set holds it */
    s->epoch = best->epoch;
    reg_configure(s, best->conf, &best->conf->servers[at]);
  }
}

/* Marks retired the servers the newest attached config does not name
 * (under reg_lock). */
static void reg_retire(void) {
  uint64_t newest = 0;
  for (size_t i = 0; i < n_live; i++) {
    if (live_epochs[i] > newest) newest = live_epochs[i];
  }
  for (pst_srv_t *s = reg_list; s != NULL; s = s->next) {
    atomic_store_explicit(&s->retired, s->refs > 0 && s->epoch < newest, memory_order_relaxed);
  }
}

static void epoch_drop(uint64_t epoch) {
  for (size_t i = 0; i < n_live; i++) {
    if (live_epochs[i] == epoch) {
      live_epochs[i] = live_epochs[--n_live];
      break;
    }
  }
  if (n_live == 0) {
    free(live_epochs);
    live_epochs = NULL;
    cap_live = 0;
  }
}

void pst_balance_detach(pst_config_t *cfg) {
  if (cfg == NULL) return;
  pthread_mutex_lock(&reg_lock);
  uint64_t epoch = 0;
  for (size_t i = 0; i < cfg->n_backends; i++) {
    pst_bset_t *b = cfg->backends[i]->rt;
    if (b == NULL) continue;
    for (size_t k = 0; k < b->n; k++) {
      assert(b->servers[k].srv->refs > 0);
      b->servers[k].srv->refs--;
    }
    epoch = b->epoch;
    bset_free(b);
    cfg->backends[i]->rt = NULL;
  }
  if (epoch != 0) {
    epoch_drop(epoch);
    reg_restore(epoch);
    reg_retire();
  }
  pthread_mutex_unlock(&reg_lock);
}

int pst_balance_attach(pst_config_t *cfg) {
  int rc = 0;
  pthread_mutex_lock(&reg_lock);
  if (cfg->n_backends > 0 && n_live == cap_live) {
    size_t cap = cap_live ? cap_live * 2 : 8;
    uint64_t *e = realloc(live_epochs, cap * sizeof(*e));
    if (e == NULL) rc = -ENOMEM;
    if (e != NULL) live_epochs = e, cap_live = cap;
  }
  uint64_t epoch = ++last_epoch;
  for (size_t i = 0; i < cfg->n_backends && rc == 0; i++) rc = bset_build(cfg->backends[i], epoch);
  if (rc == 0 && cfg->n_backends > 0) {
    live_epochs[n_live++] = epoch;
    reg_retire();
  }
  pthread_mutex_unlock(&reg_lock);
  if (rc != 0) pst_balance_detach(cfg);
  return rc;
}

/* ---- choosing ---- */

static bthread_t *thread_state(pst_bset_t *b) {
  if (tl_slot < 0) {
    unsigned s = atomic_fetch_add_explicit(&next_slot, 1, memory_order_relaxed);
    tl_slot = s < MAX_SLOTS ? (int)s : MAX_SLOTS;
    tl_seed = (unsigned)uv_hrtime() ^ s;
  }
  if (tl_slot >= MAX_SLOTS) return NULL;
  bthread_t *t = b->slots[tl_slot];
  if (t != NULL) return t;
  t = calloc(1, sizeof(*t) + b->n * (sizeof(int64_t) + sizeof(unsigned)));
  if (t == NULL) return NULL;
  t->cw = (int64_t *)(t + 1);
  t->active = (unsigned *)(t->cw + b->n);
  b->slots[tl_slot] = t;
  return t;
}

static int tried(const pst_pick_t *p, size_t i) {
  for (unsigned k = 0; k < p->n_tried; k++) {
    if (p->tried[k] == (int)i) return 1;
  }
  return 0;
}

/* Whether server i may be chosen: not tried, and usable unless any will do. */
static int candidate(const pst_bset_t *b, const pst_pick_t *p, size_t i, int any, uint64_t now) {
  return !tried(p, i) && (any || srv_usable(b->servers[i].srv, now));
}

static int pick_round_robin(pst_bset_t *b, bthread_t *t, const pst_pick_t *p, int any,
                            uint64_t now) {
  int64_t total = 0;
  int best = -1;
  for (size_t i = 0; i < b->n; i++) {
    if (!candidate(b, p, i, any, now)) continue;
    t->cw[i] += b->servers[i].weight;
    total += b->servers[i].weight;
    if (best < 0 || t->cw[i] > t->cw[best]) best = (int)i;
  }
  if (best >= 0) t->cw[best] -= total;
  return best;
}

static int pick_least_conn(pst_bset_t *b, bthread_t *t, const pst_pick_t *p, int any,
                           uint64_t now) {
  int best = -1;
  for (size_t k = 0; k < b->n; k++) {
    size_t i = (t->cursor + k) % b->n;
    if (!candidate(b, p, i, any, now)) continue;
    if (best < 0 || (uint64_t)t->active[i] * b->servers[best].weight <
                        (uint64_t)t->active[best] * b->servers[i].weight) {
      best = (int)i;
    }
  }
  if (best >= 0) t->cursor = ((unsigned)best + 1) % (unsigned)b->n;
  return best;
}

static int pick_hash(pst_bset_t *b, const pst_pick_t *p, int any, uint64_t now) {
  uint64_t key = p->key >> 16;
  size_t lo = 0, hi = b->n_ring;
  while (lo < hi) { /* the first point at or after key */
    size_t mid = lo + (hi - lo) / 2;
    if ((b->ring[mid] >> 16) < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (size_t k = 0; k < b->n_ring; k++) {
    size_t i = (size_t)(b->ring[(lo + k) % b->n_ring] & 0xffff);
    if (candidate(b, p, i, any, now)) return (int)i;
  }
  return -1;
}

/* Without a thread state of its own: a weighted random choice. */
static int pick_random(pst_bset_t *b, const pst_pick_t *p, int any, uint64_t now) {
  uint64_t total = 0;
  for (size_t i = 0; i < b->n; i++) {
    if (candidate(b, p, i, any, now)) total += b->servers[i].weight;
  }
  if (total == 0) return -1;
  uint64_t r = (uint64_t)rand_r(&tl_seed) % total;
  for (size_t i = 0; i < b->n; i++) {
    if (!candidate(b, p, i, any, now)) continue;
    if (r < b->servers[i].weight) return (int)i;
    r -= b->servers[i].weight;
  }
  return -1;
}

static int pick_policy(pst_bset_t *b, bthread_t *t, const pst_pick_t *p, int any, uint64_t now) {
  switch (b->conf->balance) {
    case PST_BALANCE_CLIENT_IP:
      if (p->key_set) return pick_hash(b, p, any, now);
      break;
    case PST_BALANCE_LEAST_CONN:
      if (t != NULL) return pick_least_conn(b, t, p, any, now);
      break;
    case PST_BALANCE_ROUND_ROBIN:
      if (t != NULL) return pick_round_robin(b, t, p, any, now);
      break;
  }
  return pick_random(b, p, any, now);
}

/* Chooses and leases a server: usable ones first, else any not tried. */
static const pst_backend_conf_t *choose(pst_pick_t *p) {
  pst_bset_t *b = p->set;
  bthread_t *t = thread_state(b);
  uint64_t now = now_ms();
  int i = pick_policy(b, t, p, 0, now);
  if (i < 0) i = pick_policy(b, t, p, 1, now);
  if (i < 0) return NULL;
  pst_srv_t *srv = b->servers[i].srv;
  uint64_t until = atomic_load_explicit(&srv->out_until_ms, memory_order_relaxed);
  if (until != 0 && until <= now && atomic_compare_exchange_strong(&srv->out_until_ms, &until, 0)) {
    /* The first pick after an ejection's end says so, once. */
    pst_log_info("backend %s: server %s back after passive.cooldown", b->conf->name, srv->server);
  }
  p->idx = i;
  p->attempts++;
  if (t != NULL) {
    t->active[i]++;
    p->active = 1;
  }
  return &b->servers[i].bc;
}

const pst_backend_conf_t *pst_balance_pick(const pst_backend_conf_t *bc, const char *client_ip,
                                           pst_pick_t *pick) {
  memset(pick, 0, sizeof(*pick));
  pick->idx = -1;
  if (bc->kind != PST_BACKEND_ADDR || bc->set == NULL || bc->set->rt == NULL) return bc;
  pick->set = bc->set->rt;
  pick->start_ms = now_ms();
  if (client_ip != NULL && pick->set->conf->balance == PST_BALANCE_CLIENT_IP) {
    pick->key = hash_str(client_ip);
    pick->key_set = 1;
  }
  const pst_backend_conf_t *r = choose(pick);
  assert(r != NULL); /* nothing tried yet: every server is a candidate */
  return r != NULL ? r : bc;
}

void pst_balance_done(pst_pick_t *pick) {
  if (!pick->active || pick->set == NULL || pick->idx < 0) return;
  pick->active = 0;
  bthread_t *t = thread_state(pick->set);
  assert(t != NULL && t->active[pick->idx] > 0); /* released on the leasing thread */
  if (t != NULL && t->active[pick->idx] > 0) t->active[pick->idx]--;
}

const pst_backend_conf_t *pst_balance_next(pst_pick_t *pick, int avoid_current,
                                           uint64_t budget_ms) {
  if (pick->set == NULL || pick->idx < 0) return NULL;
  pst_balance_done(pick);
  if (!avoid_current) {
    /* A stale pooled connection: the same server again, on a fresh one. */
    bthread_t *t = thread_state(pick->set);
    if (t != NULL) {
      t->active[pick->idx]++;
      pick->active = 1;
    }
    return &pick->set->servers[pick->idx].bc;
  }
  if (pick->n_tried < PST_BALANCE_MAX_TRIES) pick->tried[pick->n_tried++] = pick->idx;
  pick->idx = -1;
  if (pick->attempts > pick->set->conf->retries) return NULL;
  if (now_ms() - pick->start_ms >= budget_ms) return NULL;
  return choose(pick);
}

int pst_balance_lease(pst_pick_t *pick, const pst_backend_conf_t *bc, int retry, uint64_t budget_ms,
                      pst_balance_lease_fn lease, void *arg) {
  assert(bc != NULL);
  for (;;) {
    if (retry) pst_metric_inc(PST_M_BACKEND_RETRIES);
    int rc = lease(arg, bc, retry);
    if (rc == 0 || rc == -ENOMEM) return rc;
    pst_balance_connected(pick, rc);
    bc = pst_balance_next(pick, 1, budget_ms);
    if (bc == NULL) return rc;
    retry = 1;
  }
}

/* A live failure of the current server: the one that reaches
 * passive.failures in a row ejects it for passive.cooldown, once. */
static void srv_failed(pst_pick_t *pick, pst_fail_t why) {
  const pst_backend_set_conf_t *c = pick->set->conf;
  pst_srv_t *s = pick->set->servers[pick->idx].srv;
  if (c->passive_failures == 0) return;
  unsigned n = atomic_fetch_add_explicit(&s->fails[why], 1, memory_order_relaxed) + 1;
  if (n < c->passive_failures) return;
  uint64_t now = now_ms(), until = atomic_load_explicit(&s->out_until_ms, memory_order_relaxed);
  if (until > now) return; /* out already */
  if (!atomic_compare_exchange_strong(&s->out_until_ms, &until, now + c->passive_cooldown_ms)) {
    return; /* another worker ejected it */
  }
  atomic_store_explicit(&s->fails[why], 0, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->changes, 1, memory_order_relaxed);
  pst_metric_inc(PST_M_BACKEND_EJECTIONS);
  pst_log_warn("backend %s: server %s ejected for %llu ms: %u %s in a row", c->name, s->server,
               (unsigned long long)c->passive_cooldown_ms, n,
               why == PST_FAIL_CONNECT ? "connect failures" : "5xx responses");
}

/* A success of the current server ends its run of failures of that kind:
 * connects and responses are counted apart, so that in http mode a run of
 * 5xx on fresh connections still ejects. */
static void srv_ok(pst_pick_t *pick, pst_fail_t kind) {
  pst_srv_t *s = pick->set->servers[pick->idx].srv;
  /* Read first: a write per request would bounce the line between workers. */
  if (atomic_load_explicit(&s->fails[kind], memory_order_relaxed) != 0) {
    atomic_store_explicit(&s->fails[kind], 0, memory_order_relaxed);
  }
}

void pst_balance_connected(pst_pick_t *pick, int status) {
  if (pick->set == NULL || pick->idx < 0) return;
  if (status < 0) {
    srv_failed(pick, PST_FAIL_CONNECT);
  } else {
    srv_ok(pick, PST_FAIL_CONNECT);
  }
}

void pst_balance_response(pst_pick_t *pick, int status) {
  if (pick->set == NULL || pick->idx < 0) return;
  if (status >= 500 && status <= 599) {
    srv_failed(pick, PST_FAIL_5XX);
  } else {
    srv_ok(pick, PST_FAIL_5XX);
  }
}

uint64_t pst_balance_connect_ms(const pst_pick_t *pick, uint64_t budget_ms) {
  if (pick->set == NULL || pick->idx < 0) return budget_ms;
  uint64_t spent = now_ms() - pick->start_ms;
  uint64_t left = spent < budget_ms ? budget_ms - spent : 1;
  /* This attempt and those that may follow it: retries left, and servers
   * not tried yet besides this one. */
  uint64_t retries_left = pick->set->conf->retries + 1 - pick->attempts;
  uint64_t others = pick->set->n - pick->n_tried - 1;
  uint64_t attempts = 1 + (retries_left < others ? retries_left : others);
  uint64_t ms = left / attempts;
  return ms > 0 ? ms : 1;
}

int pst_balance_keep(const pst_pick_t *pick) {
  if (pick->set == NULL || pick->idx < 0) return 1;
  return !atomic_load_explicit(&pick->set->servers[pick->idx].srv->retired, memory_order_relaxed);
}

const char *pst_balance_server(const pst_pick_t *pick) {
  if (pick->set == NULL || pick->idx < 0) return "";
  return pick->set->servers[pick->idx].bc.addr.text;
}

int pst_balance_addr_used(const pst_addr_t *addr, void *arg) {
  const pst_config_t *cfg = arg;
  for (size_t i = 0; i < cfg->n_backends; i++) {
    const pst_backend_set_conf_t *b = cfg->backends[i];
    for (size_t k = 0; k < b->n_servers; k++) {
      if (pst_addr_equal(&b->servers[k].addr, addr)) return 1;
    }
  }
  return 0;
}
