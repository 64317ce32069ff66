/* postern: the shared 0-RTT strike register in Redis, one client per worker
 * (see replay_redis.h for what it guarantees and how it fails closed). */
#include "postern/replay_redis.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "postern/common.h"
#include "postern/log.h"
#include "postern/metrics.h"

/* At most one "unavailable" warning per worker this often, with the count
 * of early data rejected since the last one. */
#define RR_WARN_MS 10000
/* The longest key: prefix (config_replay.c: 128) and 32 hex digits. */
#define RR_KEY_MAX (128 + 2 * PST_REPLAY_KEY_LEN + 1)

typedef enum {
  RR_OFF = 0,        /* store: local, or not configured: no connection */
  RR_CONNECTING = 1, /* connect (and AUTH) under way, PST_REPLAY_REDIS_CONNECT_MS at most */
  RR_READY = 2,      /* connected (and authenticated): claims are sent */
  RR_BACKOFF = 3,    /* the connection failed or was dropped: waiting to retry */
  RR_CLOSED = 4,     /* pst_replay_redis_close ran: nothing more */
} rr_state_t;

struct pst_replay_redis_req_s {
  pst_replay_redis_t *r;
  pst_replay_redis_cb cb; /* NULL once told, timed out or cancelled */
  void *arg;
  uint64_t sent_ms;     /* loop time it was sent */
  uint64_t deadline_ms; /* loop time the connection stops waiting for it */
};

struct pst_replay_redis_s {
  uv_loop_t *loop;
  unsigned worker_id;
  rr_state_t state;
  redisAsyncContext *ac;        /* the connection, NULL when none */
  int configured;               /* conf holds a store: redis */
  pst_replay_store_conf_t conf; /* a copy of the live generation's (strings owned) */
  /* The claims in flight, oldest first, in the order Redis answers them:
   * records [head, tail) of ring (indices modulo cap) are sent and not
   * answered; those before exp are no longer waited for (told, timed out
   * or cancelled). */
  pst_replay_redis_req_t *ring;
  unsigned cap;
  uint64_t head, tail, exp;
  uv_timer_t timer; /* the next claim's deadline, or the oldest one's stuck limit */
  uv_timer_t retry; /* the backoff before a connect, or the connect's deadline */
  uint64_t backoff_ms;
  uint64_t rand;       /* xorshift state for the backoff's jitter */
  char window[24];     /* PST_REPLAY_REDIS_WINDOW_MS in decimal, for PX */
  uint64_t warned_ms;  /* loop time of the last warning, 0 for none */
  uint64_t unwarned;   /* failures since then */
  int closing_handles; /* handles whose close callback has not run */
};

static void rr_connect(pst_replay_redis_t *r);

/* ---- failure reports ---- */

static const char *rr_where(const pst_replay_redis_t *r) {
  return r->conf.address != NULL ? r->conf.address : "?";
}

/* Early data rejected because the register could not answer: counted, and
 * warned about at most once per RR_WARN_MS. */
static void rr_unavailable(pst_replay_redis_t *r, const char *why) {
  pst_metric_inc(PST_M_EARLY_REDIS_UNAVAILABLE);
  r->unwarned++;
  uint64_t now = uv_now(r->loop) + 1; /* never 0: 0 means "never warned" */
  if (r->warned_ms != 0 && now - r->warned_ms < RR_WARN_MS) return;
  pst_log_warn(
      "worker %u: 0-RTT shared strike register (Redis %s) unavailable: %s: early data rejected "
      "(%llu times since the last warning); handshakes go on at 1-RTT",
      r->worker_id, rr_where(r), why, (unsigned long long)r->unwarned);
  r->warned_ms = now;
  r->unwarned = 0;
}

static const char *rr_error_name(int err) {
  switch (err) {
    case -ETIMEDOUT: return "no answer within redis.timeout";
    case -EBUSY: return "redis.max_in_flight commands waiting (backpressure)";
    case -EIO: return "error reply";
    default: return "not connected";
  }
}

/* ---- the claims' ring ---- */

static pst_replay_redis_req_t *rr_at(pst_replay_redis_t *r, uint64_t i) {
  return &r->ring[i % r->cap];
}

/* Tells req's connection the result, once. */
static void rr_tell(pst_replay_redis_t *r, pst_replay_redis_req_t *req, int result) {
  pst_replay_redis_cb cb = req->cb;
  if (cb == NULL) return;
  req->cb = NULL;
  if (result == PST_REPLAY_SEEN) pst_metric_inc(PST_M_EARLY_REDIS_REPLAYED);
  if (result < 0) rr_unavailable(r, rr_error_name(result));
  cb(req->arg, result);
}

static void rr_on_timer(uv_timer_t *t);

/* Arms the timer for the first claim still waited for, or for the oldest
 * one's stuck limit, whichever comes first; stops it when none is in
 * flight. */
static void rr_arm(pst_replay_redis_t *r) {
  if (r->state == RR_CLOSED) return;
  if (r->exp < r->head) r->exp = r->head;
  while (r->exp < r->tail && rr_at(r, r->exp)->cb == NULL) r->exp++;
  if (r->head == r->tail) {
    uv_timer_stop(&r->timer);
    return;
  }
  uint64_t due = rr_at(r, r->head)->sent_ms + PST_REPLAY_REDIS_STUCK_MS;
  if (r->exp < r->tail && rr_at(r, r->exp)->deadline_ms < due) due = rr_at(r, r->exp)->deadline_ms;
  uint64_t now = uv_now(r->loop);
  uv_timer_start(&r->timer, rr_on_timer, due > now ? due - now : 0, 0);
}

/* ---- the connection ---- */

static void rr_on_retry(uv_timer_t *t);

/* Drops the connection: hiredis answers every command in flight with no
 * reply (rr_on_reply tells each claim -ENOTCONN) before it returns, unless
 * called from inside one of its callbacks (then right after it). */
static void rr_drop(pst_replay_redis_t *r) {
  redisAsyncContext *ac = r->ac;
  if (ac == NULL) return;
  r->ac = NULL;
  redisAsyncFree(ac);
}

/* The connection failed or was dropped: retry after the backoff, jittered
 * to between half and all of it (workers and instances do not all come
 * back at the same instant), and doubled up to its cap. */
static void rr_backoff(pst_replay_redis_t *r) {
  rr_drop(r);
  if (r->state == RR_CLOSED || !r->configured) return;
  r->state = RR_BACKOFF;
  r->rand ^= r->rand << 13;
  r->rand ^= r->rand >> 7;
  r->rand ^= r->rand << 17;
  uint64_t b = r->backoff_ms, delay = b / 2 + r->rand % (b / 2 + 1);
  r->backoff_ms = b * 2 < PST_REPLAY_REDIS_BACKOFF_MAX_MS ? b * 2 : PST_REPLAY_REDIS_BACKOFF_MAX_MS;
  uv_timer_start(&r->retry, rr_on_retry, delay, 0);
}

static void rr_ready(pst_replay_redis_t *r) {
  uv_timer_stop(&r->retry);
  r->state = RR_READY;
  r->backoff_ms = PST_REPLAY_REDIS_BACKOFF_MIN_MS;
  pst_log_info("worker %u: 0-RTT shared strike register: connected to Redis %s", r->worker_id,
               rr_where(r));
}

static void rr_on_auth(redisAsyncContext *ac, void *reply, void *privdata) {
  pst_replay_redis_t *r = ac->data;
  const redisReply *rep = reply;
  if (r == NULL || r->ac != ac || rep == NULL) return; /* dropped meanwhile */
  if (rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0) {
    rr_ready(r);
    return;
  }
  if (r->backoff_ms == PST_REPLAY_REDIS_BACKOFF_MIN_MS) { /* the first of a streak */
    pst_log_error("worker %u: Redis %s refused AUTH: %s: check redis.password_file", r->worker_id,
                  rr_where(r), rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
  }
  rr_backoff(r);
}

static void rr_on_connect(const redisAsyncContext *cac, int status) {
  pst_replay_redis_t *r = cac->data;
  if (r == NULL || r->ac != cac) return;
  if (status != REDIS_OK) {
    /* hiredis frees the context once this returns. Only the first failure
     * of a streak is logged: claims meanwhile warn (rr_unavailable). */
    r->ac = NULL;
    if (r->backoff_ms == PST_REPLAY_REDIS_BACKOFF_MIN_MS) {
      pst_log_warn("worker %u: cannot connect to Redis %s: %s; retrying", r->worker_id, rr_where(r),
                   cac->errstr);
    }
    rr_backoff(r);
    return;
  }
  if (r->conf.password == NULL) {
    rr_ready(r);
    return;
  }
  if (redisAsyncCommand(r->ac, rr_on_auth, NULL, "AUTH %b", r->conf.password,
                        r->conf.password_len) != REDIS_OK) {
    rr_backoff(r);
  }
}

static void rr_on_disconnect(const redisAsyncContext *cac, int status) {
  pst_replay_redis_t *r = cac->data;
  if (r == NULL || r->ac != cac) return; /* our own rr_drop */
  /* hiredis frees the context once this returns. */
  r->ac = NULL;
  pst_log_warn("worker %u: lost the connection to Redis %s: %s; reconnecting", r->worker_id,
               rr_where(r), cac->errstr[0] != '\0' ? cac->errstr : "closed by the server");
  rr_backoff(r);
}

/* Starts a connection; its outcome comes to rr_on_connect, within
 * PST_REPLAY_REDIS_CONNECT_MS (rr_on_retry), or it is retried. */
static void rr_connect(pst_replay_redis_t *r) {
  assert(r->ac == NULL && r->configured);
  redisAsyncContext *ac = r->conf.unix_path != NULL ? redisAsyncConnectUnix(r->conf.unix_path)
                                                    : redisAsyncConnect(r->conf.host, r->conf.port);
  if (ac == NULL || ac->err != 0 || redisLibuvAttach(ac, r->loop) != REDIS_OK) {
    if (ac != NULL && r->backoff_ms == PST_REPLAY_REDIS_BACKOFF_MIN_MS) {
      pst_log_warn("worker %u: cannot connect to Redis %s: %s; retrying", r->worker_id, rr_where(r),
                   ac->err != 0 ? ac->errstr : "event loop");
    }
    if (ac != NULL) redisAsyncFree(ac);
    rr_backoff(r);
    return;
  }
  ac->data = r;
  r->ac = ac;
  redisAsyncSetConnectCallback(ac, rr_on_connect);
  redisAsyncSetDisconnectCallback(ac, rr_on_disconnect);
  r->state = RR_CONNECTING;
  uv_timer_start(&r->retry, rr_on_retry, PST_REPLAY_REDIS_CONNECT_MS, 0);
}

static void rr_on_retry(uv_timer_t *t) {
  pst_replay_redis_t *r = PST_CONTAINER_OF(t, pst_replay_redis_t, retry);
  if (r->state == RR_CONNECTING) {
    pst_log_warn("worker %u: Redis %s did not answer the connect within %d ms; retrying",
                 r->worker_id, rr_where(r), PST_REPLAY_REDIS_CONNECT_MS);
    rr_backoff(r);
  } else if (r->state == RR_BACKOFF) {
    rr_connect(r);
  }
}

/* hiredis' answer to a claim (reply NULL: the connection ended first). */
static void rr_on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  pst_replay_redis_req_t *req = privdata;
  pst_replay_redis_t *r = req->r;
  /* Redis answers in order: this is the oldest command in flight. */
  assert(r->head < r->tail && rr_at(r, r->head) == req);
  r->head++;
  const redisReply *rep = reply;
  int result;
  if (rep == NULL) {
    result = -ENOTCONN;
  } else if (rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0) {
    result = PST_REPLAY_REDIS_CLAIMED;
  } else if (rep->type == REDIS_REPLY_NIL) {
    result = PST_REPLAY_SEEN;
  } else {
    if (req->cb != NULL) {
      pst_log_debug("worker %u: Redis %s answered a claim with %s", r->worker_id, rr_where(r),
                    rep->type == REDIS_REPLY_ERROR ? rep->str : "an unexpected reply");
    }
    result = -EIO;
  }
  rr_tell(r, req, result);
}

static void rr_on_timer(uv_timer_t *t) {
  pst_replay_redis_t *r = PST_CONTAINER_OF(t, pst_replay_redis_t, timer);
  uint64_t now = uv_now(r->loop);
  if (r->exp < r->head) r->exp = r->head;
  while (r->exp < r->tail) {
    pst_replay_redis_req_t *req = rr_at(r, r->exp);
    if (req->cb != NULL && req->deadline_ms > now) break;
    r->exp++;
    rr_tell(r, req, -ETIMEDOUT); /* a no-op when already told or cancelled */
  }
  if (r->head < r->tail && now - rr_at(r, r->head)->sent_ms >= PST_REPLAY_REDIS_STUCK_MS &&
      r->ac != NULL) {
    pst_log_warn("worker %u: Redis %s has not answered for %d ms: reconnecting", r->worker_id,
                 rr_where(r), PST_REPLAY_REDIS_STUCK_MS);
    rr_backoff(r);
  }
  rr_arm(r);
}

/* ---- configuration ---- */

static int str_eq(const char *a, const char *b) {
  return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int conf_equal(const pst_replay_store_conf_t *a, const pst_replay_store_conf_t *b) {
  return a->store == b->store && str_eq(a->host, b->host) && a->port == b->port &&
         str_eq(a->unix_path, b->unix_path) && a->password_len == b->password_len &&
         (a->password_len == 0 || memcmp(a->password, b->password, a->password_len) == 0) &&
         str_eq(a->key_prefix, b->key_prefix) && a->timeout_ms == b->timeout_ms &&
         a->max_in_flight == b->max_in_flight;
}

static void conf_clear(pst_replay_store_conf_t *c) {
  free(c->address);
  free(c->host);
  free(c->unix_path);
  if (c->password != NULL) explicit_bzero(c->password, c->password_len);
  free(c->password);
  free(c->key_prefix);
  memset(c, 0, sizeof(*c));
}

static char *dup_or_null(const char *s, int *failed) {
  if (s == NULL) return NULL;
  char *d = strdup(s);
  if (d == NULL) *failed = 1;
  return d;
}

static int conf_copy(pst_replay_store_conf_t *to, const pst_replay_store_conf_t *from) {
  int failed = 0;
  *to = *from;
  to->address = dup_or_null(from->address, &failed);
  to->host = dup_or_null(from->host, &failed);
  to->unix_path = dup_or_null(from->unix_path, &failed);
  to->key_prefix = dup_or_null(from->key_prefix, &failed);
  to->password = NULL;
  if (from->password != NULL) {
    to->password = malloc(from->password_len + 1);
    if (to->password == NULL) {
      failed = 1;
    } else {
      memcpy(to->password, from->password, from->password_len + 1);
    }
  }
  if (failed) conf_clear(to);
  return failed ? -ENOMEM : 0;
}

pst_replay_redis_t *pst_replay_redis_new(uv_loop_t *loop, unsigned worker_id) {
  pst_replay_redis_t *r = calloc(1, sizeof(*r));
  if (r == NULL) return NULL;
  r->loop = loop;
  r->worker_id = worker_id;
  r->state = RR_OFF;
  r->backoff_ms = PST_REPLAY_REDIS_BACKOFF_MIN_MS;
  r->rand = (uv_hrtime() ^ ((uint64_t)worker_id << 32)) | 1;
  snprintf(r->window, sizeof(r->window), "%llu", (unsigned long long)PST_REPLAY_REDIS_WINDOW_MS);
  uv_timer_init(loop, &r->timer);
  uv_timer_init(loop, &r->retry);
  return r;
}

int pst_replay_redis_configure(pst_replay_redis_t *r, const pst_replay_store_conf_t *conf) {
  if (r->state == RR_CLOSED) return 0;
  int want = conf != NULL && conf->store == PST_REPLAY_STORE_REDIS;
  if (want && r->configured && conf_equal(&r->conf, conf)) return 0;
  if (!want && !r->configured) return 0;
  /* Another store: claims in flight end now, as unavailable. */
  rr_drop(r);
  uv_timer_stop(&r->retry);
  assert(r->head == r->tail);
  r->head = r->tail = r->exp = 0;
  conf_clear(&r->conf);
  free(r->ring);
  r->ring = NULL;
  r->configured = 0;
  r->state = RR_OFF;
  r->backoff_ms = PST_REPLAY_REDIS_BACKOFF_MIN_MS;
  if (!want) return 0;
  r->ring = calloc(conf->max_in_flight, sizeof(*r->ring));
  if (r->ring == NULL || conf_copy(&r->conf, conf) != 0) {
    free(r->ring);
    r->ring = NULL;
    return -ENOMEM;
  }
  r->cap = conf->max_in_flight;
  r->configured = 1;
  rr_connect(r);
  return 0;
}

/* ---- claims ---- */

int pst_replay_redis_claim(pst_replay_redis_t *r, const pst_replay_store_conf_t *conf,
                           const uint8_t key[PST_REPLAY_KEY_LEN], pst_replay_redis_cb cb, void *arg,
                           pst_replay_redis_req_t **req) {
  static const char hex[] = "0123456789abcdef";
  if (r->state != RR_READY || r->ac == NULL || !conf_equal(&r->conf, conf)) {
    rr_unavailable(r, rr_error_name(-ENOTCONN));
    return -ENOTCONN;
  }
  if (r->tail - r->head >= r->cap) {
    rr_unavailable(r, rr_error_name(-EBUSY));
    return -EBUSY;
  }
  char name[RR_KEY_MAX];
  size_t n = strlen(r->conf.key_prefix);
  assert(n + 2 * PST_REPLAY_KEY_LEN < sizeof(name));
  memcpy(name, r->conf.key_prefix, n);
  for (int i = 0; i < PST_REPLAY_KEY_LEN; i++) {
    name[n++] = hex[key[i] >> 4];
    name[n++] = hex[key[i] & 15];
  }
  pst_replay_redis_req_t *q = rr_at(r, r->tail);
  /* The loop's time is that of the start of this turn, which may have
   * handled many handshakes since: the deadline counts from now. */
  uv_update_time(r->loop);
  uint64_t now = uv_now(r->loop);
  *q = (pst_replay_redis_req_t){r, cb, arg, now, now + r->conf.timeout_ms};
  /* One atomic command: set only if absent (NX), expiring on Redis' own
   * clock (PX). */
  if (redisAsyncCommand(r->ac, rr_on_reply, q, "SET %b 1 NX PX %s", name, n, r->window) !=
      REDIS_OK) {
    q->cb = NULL;
    rr_unavailable(r, rr_error_name(-ENOTCONN));
    return -ENOTCONN;
  }
  r->tail++;
  /* Always: the timer may be armed for the oldest claim's stuck limit,
   * later than this one's deadline. */
  rr_arm(r);
  *req = q;
  return 0;
}

void pst_replay_redis_cancel(pst_replay_redis_req_t *req) {
  if (req != NULL) req->cb = NULL;
}

unsigned pst_replay_redis_in_flight(const pst_replay_redis_t *r) {
  return (unsigned)(r->tail - r->head);
}

/* ---- end ---- */

static void rr_on_close(uv_handle_t *h) {
  pst_replay_redis_t *r = h->data;
  r->closing_handles--;
}

void pst_replay_redis_close(pst_replay_redis_t *r) {
  if (r == NULL || r->state == RR_CLOSED) return;
  r->configured = 0;
  rr_drop(r);
  r->state = RR_CLOSED;
  r->timer.data = r->retry.data = r;
  r->closing_handles = 2;
  uv_close((uv_handle_t *)&r->timer, rr_on_close);
  uv_close((uv_handle_t *)&r->retry, rr_on_close);
}

void pst_replay_redis_free(pst_replay_redis_t *r) {
  if (r == NULL) return;
  assert(r->state == RR_CLOSED && r->closing_handles == 0);
  conf_clear(&r->conf);
  free(r->ring);
  free(r);
}
