/* postern: unit tests for backend connections (src/pool.c), on a loop of
 * the test's own against backends it serves itself on 127.0.0.1
 * (loop_test_util.h): the three ways to lease (pooled, fresh, once), writes
 * that wait for the connect, reads, write backpressure and on_drain,
 * connect failure and timeout, the keep-alive pool (reuse, limits, idle
 * timeout, a backend closing an idle connection, shutdown), half-close,
 * and the in-process builtin:info connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/common.h"
#include "postern/pool.h"

#include "loop_test_util.h"

/* ---- fixture -------------------------------------------------------------- */

/* What one lessee heard. Static, not on a test's stack: when a test fails,
 * the teardown's loop may still deliver events to it. */
typedef struct {
  pst_bconn_t *b;
  int connects;
  int connect_status;
  pst_buf_t got;       /* bytes read */
  int eof;             /* on_read(UV_EOF) */
  int read_err;        /* another negative on_read */
  int reads_after_eof; /* anything after UV_EOF: must stay 0 */
  int drains;
  int timers;
  int write_errors;
  int shutdowns;
  int shutdown_status;
  int release_in_read; /* release b (not reusable) from inside on_read */
} lessee_t;

static lessee_t L1, L2;
static pst_listener_conf_t lc;
static pst_pools_t *pools;
static tb_t tb;

/* Connections leased and not released yet: the teardown releases them
 * when a test failed half-way. */
static pst_bconn_t *leased[32];

static void track(pst_bconn_t *b) {
  for (size_t i = 0; i < PST_ARRAY_SIZE(leased); i++) {
    if (leased[i] == NULL) {
      leased[i] = b;
      return;
    }
  }
  fail_msg("too many leased connections");
}

static void release(pst_bconn_t *b, int reusable) {
  for (size_t i = 0; i < PST_ARRAY_SIZE(leased); i++) {
    if (leased[i] == b) leased[i] = NULL;
  }
  pst_bconn_release(b, reusable);
}

static void on_connect(void *arg, int status) {
  lessee_t *l = arg;
  l->connects++;
  l->connect_status = status;
}

static void on_read(void *arg, const char *data, ssize_t n) {
  lessee_t *l = arg;
  if (l->eof || l->read_err) l->reads_after_eof++;
  if (n > 0) {
    assert_int_equal(pst_buf_append(&l->got, data, (size_t)n), 0);
  } else if (n == UV_EOF) {
    l->eof = 1;
  } else {
    l->read_err = (int)n;
  }
  if (l->release_in_read) {
    release(l->b, 0);
    l->b = NULL;
  }
}

static void on_drain(void *arg) { ((lessee_t *)arg)->drains++; }
static void on_timer(void *arg) { ((lessee_t *)arg)->timers++; }
static void on_write_error(void *arg, int status) { ((lessee_t *)arg)->write_errors++; }

static void on_shutdown(void *arg, int status) {
  lessee_t *l = arg;
  l->shutdowns++;
  l->shutdown_status = status;
}

static const pst_bconn_events_t events = {
    .on_connect = on_connect,
    .on_read = on_read,
    .on_drain = on_drain,
    .on_timer = on_timer,
    .on_write_error = on_write_error,
    .on_shutdown = on_shutdown,
};

static void lessee_reset(lessee_t *l) {
  pst_buf_free(&l->got);
  memset(l, 0, sizeof(*l));
}

static int setup(void **state) {
  loop_setup();
  memset(&lc, 0, sizeof(lc));
  lc.name = "test";
  lc.backend_connect_timeout_ms = 1000;
  lc.pool_max_idle = 8;
  lc.pool_idle_ms = 60000;
  lc.backend_response_timeout_ms = 1000;
  lc.max_header_bytes = 32768;
  lessee_reset(&L1);
  lessee_reset(&L2);
  memset(&tb, 0, sizeof(tb));
  memset(leased, 0, sizeof(leased));
  pools = pst_pools_new(loop);
  assert_non_null(pools);
  return 0;
}

static int teardown(void **state) {
  tb_stop(&tb);
  for (size_t i = 0; i < PST_ARRAY_SIZE(leased); i++) release(leased[i], 0);
  pst_pools_shutdown(pools);
  WAIT_QUIETLY(pst_pools_open(pools) == 0);
  unsigned open = pst_pools_open(pools);
  if (open == 0) pst_pools_free(pools); /* else it would assert */
  pools = NULL;
  lessee_reset(&L1);
  lessee_reset(&L2);
  loop_teardown();
  assert_int_equal(open, 0);
  return 0;
}

static pst_bconn_t *lease(const pst_backend_conf_t *bc, pst_lease_t how, lessee_t *l, int *reused) {
  int err = 1;
  *reused = -1;
  l->b = pst_pool_lease(pools, &lc, bc, how, &events, l, reused, &err);
  assert_non_null(l->b);
  track(l->b);
  assert_true(*reused == 0 || *reused == 1);
  return l->b;
}

static const char *got_str(lessee_t *l) {
  assert_int_equal(pst_buf_append(&l->got, "", 1), 0);
  l->got.len--;
  return pst_buf_head(&l->got);
}

static const char *in_str(tb_conn_t *c) {
  assert_int_equal(pst_buf_append(&c->in, "", 1), 0);
  c->in.len--;
  return pst_buf_head(&c->in);
}

/* Leases a connection to tb and waits until it is connected and the
 * backend has accepted it. */
static pst_bconn_t *lease_connected(const pst_backend_conf_t *bc, pst_lease_t how, lessee_t *l) {
  int reused;
  int accepted = tb.n_conns;
  pst_bconn_t *b = lease(bc, how, l, &reused);
  assert_int_equal(reused, 0);
  pst_bconn_read(b, 1);
  WAIT_FOR(l->connects == 1 && tb.n_conns == accepted + 1);
  assert_int_equal(l->connect_status, 0);
  return b;
}

/* ---- fresh connections: write, read, on_drain ---------------------------- */

static void test_fresh_write_read(void **state) {
  tb_start(&tb);
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  int reused;
  pst_bconn_t *b = lease(&bc, PST_LEASE_FRESH, &L1, &reused);
  assert_int_equal(reused, 0);
  assert_false(pst_bconn_is_local(b));
  assert_int_equal(pst_pools_open(pools), 1);
  /* No event from inside the call; reading asked for while connecting
   * starts once connected; a write while connecting waits for it. */
  pst_bconn_read(b, 1);
  assert_int_equal(pst_bconn_write(b, "ping", 4), 0);
  assert_int_equal(L1.connects, 0);
  assert_int_equal(pst_bconn_queued(b), 4);
  WAIT_FOR(L1.connects == 1);
  assert_int_equal(L1.connect_status, 0);
  WAIT_FOR(tb.conns[0] != NULL && tb.conns[0]->in.len == 4);
  assert_string_equal(in_str(tb.conns[0]), "ping");
  /* The write that had to wait is done: on_drain, and nothing queued. */
  WAIT_FOR(L1.drains >= 1);
  assert_int_equal(pst_bconn_queued(b), 0);
  /* A write the socket takes at once needs no callback. */
  assert_int_equal(pst_bconn_write(b, "+more", 5), 0);
  WAIT_FOR(tb.conns[0]->in.len == 9);
  assert_string_equal(in_str(tb.conns[0]), "ping+more");

  tb_write_str(tb.conns[0], "pong");
  WAIT_FOR(L1.got.len == 4);
  assert_string_equal(got_str(&L1), "pong");
  /* Backend EOF reaches the lessee once, then nothing. */
  tb_shutdown(tb.conns[0]);
  WAIT_FOR(L1.eof);
  assert_int_equal(L1.read_err, 0);
  run_for(20);
  assert_int_equal(L1.reads_after_eof, 0);
  assert_int_equal(L1.write_errors, 0);
  assert_int_equal(L1.timers, 0); /* the connect timeout was stopped */

  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  WAIT_FOR(tb.conns[0] == NULL || tb.conns[0]->eof);
  tb_stop(&tb);
}

/* Reading stops and starts again (response backpressure): bytes sent
 * meanwhile arrive once reading resumes. */
static void test_read_pause(void **state) {
  tb_start(&tb);
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_FRESH, &L1);
  pst_bconn_read(b, 0);
  tb_write_str(tb.conns[0], "held");
  run_for(30);
  assert_int_equal(L1.got.len, 0);
  pst_bconn_read(b, 1);
  WAIT_FOR(L1.got.len == 4);
  assert_string_equal(got_str(&L1), "held");
  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* A backend that does not read: the queue grows past the high-water mark,
 * and on_drain comes once it falls below the low-water mark. Every byte
 * arrives, in order. */
static void test_write_backpressure(void **state) {
  tb_start(&tb);
  tb.no_read = 1;
  tb.discard = 1;
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_FRESH, &L1);
  static char chunk[128 * 1024];
  memset(chunk, 'x', sizeof(chunk));
  size_t sent = 0;
  /* The kernel's buffers on loopback take some megabytes first. */
  for (int i = 0; i < 512 && pst_bconn_queued(b) <= PST_BACKEND_HIGH_WATER; i++) {
    assert_int_equal(pst_bconn_write(b, chunk, sizeof(chunk)), 0);
    sent += sizeof(chunk);
  }
  assert_true(pst_bconn_queued(b) > PST_BACKEND_HIGH_WATER);
  run_for(20);
  int drains = L1.drains;
  assert_true(pst_bconn_queued(b) > PST_BACKEND_HIGH_WATER); /* nobody reads */
  tb_read(tb.conns[0], 1);
  WAIT_FOR(L1.drains > drains && pst_bconn_queued(b) < PST_BACKEND_LOW_WATER);
  WAIT_FOR(tb.conns[0]->got == sent);
  assert_int_equal(pst_bconn_queued(b), 0);
  assert_int_equal(L1.write_errors, 0);
  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* A connection released as reusable with bytes still queued is closed, not
 * pooled: the next request would queue behind another's bytes. */
static void test_release_with_queued_bytes_closes(void **state) {
  tb_start(&tb);
  tb.no_read = 1;
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_POOLED, &L1);
  static char chunk[128 * 1024];
  memset(chunk, 'y', sizeof(chunk));
  for (int i = 0; i < 512 && pst_bconn_queued(b) == 0; i++) {
    assert_int_equal(pst_bconn_write(b, chunk, sizeof(chunk)), 0);
  }
  assert_true(pst_bconn_queued(b) > 0);
  release(b, 1);
  WAIT_FOR(pst_pools_open(pools) == 0);
  int reused;
  b = lease(&bc, PST_LEASE_POOLED, &L2, &reused);
  assert_int_equal(reused, 0);
  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* ---- the pool ------------------------------------------------------------- */

static void echo(tb_conn_t *c) {
  if (c->in.len == 0) return;
  tb_write(c, pst_buf_head(&c->in), c->in.len);
  pst_buf_consume(&c->in, c->in.len);
}

/* A connection released as reusable is the next POOLED lease's, at once
 * and without on_connect; its events go to the new lessee. FRESH never
 * takes an idle one, but its connection may be pooled afterwards. */
static void test_pooled_reuse(void **state) {
  tb_start(&tb);
  tb.on_data = echo;
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_POOLED, &L1);
  assert_int_equal(pst_bconn_write(b, "one", 3), 0);
  WAIT_FOR(L1.got.len == 3);
  release(b, 1);
  assert_int_equal(pst_pools_open(pools), 1); /* idle, pooled */

  int reused;
  pst_bconn_t *b2 = lease(&bc, PST_LEASE_POOLED, &L2, &reused);
  assert_int_equal(reused, 1);
  assert_ptr_equal(b2, b);
  assert_int_equal(pst_bconn_write(b2, "two", 3), 0);
  WAIT_FOR(L2.got.len == 3);
  assert_string_equal(got_str(&L2), "two");
  assert_int_equal(L2.connects, 0); /* ready at once: no on_connect */
  assert_int_equal(L1.got.len, 3);  /* the first lessee hears nothing more */
  assert_int_equal(tb.n_conns, 1);  /* the same backend connection */
  assert_int_equal(tb.conns[0]->got, 6);
  release(b2, 1);

  /* FRESH: a new connection although one is idle. */
  lessee_reset(&L1);
  pst_bconn_t *b3 = lease_connected(&bc, PST_LEASE_FRESH, &L1);
  assert_ptr_not_equal(b3, b);
  assert_int_equal(tb.n_conns, 2);
  assert_int_equal(pst_pools_open(pools), 2);
  release(b3, 1); /* pooled too */
  run_for(20);
  assert_int_equal(pst_pools_open(pools), 2);

  /* Newest first: the connection just released is the one reused. */
  lessee_reset(&L2);
  b2 = lease(&bc, PST_LEASE_POOLED, &L2, &reused);
  assert_int_equal(reused, 1);
  assert_ptr_equal(b2, b3);
  release(b2, 1);

  /* Shutdown closes the idle ones; the backend sees both go. */
  pst_pools_shutdown(pools);
  WAIT_FOR(pst_pools_open(pools) == 0);
  WAIT_FOR((tb.conns[0] == NULL || tb.conns[0]->eof) && (tb.conns[1] == NULL || tb.conns[1]->eof));
  tb_stop(&tb);
}

/* A connection leased with an owner (a client connection whose PROXY header
 * it carries, stream.c) goes back to the pool for that owner only: another
 * owner and the shared leases (owner 0) never get it, and dropping the
 * owner closes it. */
static void test_owned_connections(void **state) {
  tb_start(&tb);
  tb.on_data = echo;
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  int reused, err;
  L1.b = pst_pool_lease_owned(pools, &lc, &bc, PST_LEASE_POOLED, 7, &events, &L1, &reused, &err);
  assert_non_null(L1.b);
  track(L1.b);
  assert_int_equal(reused, 0);
  pst_bconn_read(L1.b, 1);
  WAIT_FOR(L1.connects == 1 && tb.n_conns == 1);
  pst_bconn_t *owned = L1.b;
  release(owned, 1);
  assert_int_equal(pst_pools_open(pools), 1); /* idle, pooled for owner 7 */

  /* Owner 0 (shared) and owner 8 get new connections, not owner 7's. */
  pst_bconn_t *shared = lease(&bc, PST_LEASE_POOLED, &L2, &reused);
  assert_int_equal(reused, 0);
  assert_ptr_not_equal(shared, owned);
  WAIT_FOR(L2.connects == 1 && tb.n_conns == 2);
  release(shared, 1);
  lessee_reset(&L2);
  L2.b = pst_pool_lease_owned(pools, &lc, &bc, PST_LEASE_POOLED, 8, &events, &L2, &reused, &err);
  assert_non_null(L2.b);
  track(L2.b);
  assert_int_equal(reused, 0);
  assert_ptr_not_equal(L2.b, owned);
  assert_ptr_not_equal(L2.b, shared);
  WAIT_FOR(L2.connects == 1 && tb.n_conns == 3);
  release(L2.b, 0);

  /* Owner 7 gets its own back; the shared one stays for owner 0. */
  lessee_reset(&L1);
  L1.b = pst_pool_lease_owned(pools, &lc, &bc, PST_LEASE_POOLED, 7, &events, &L1, &reused, &err);
  assert_int_equal(reused, 1);
  assert_ptr_equal(L1.b, owned);
  release(L1.b, 1);
  WAIT_FOR(pst_pools_open(pools) == 2);

  /* Its client connection closes: owner 7's idle connection closes, the
   * shared one stays. */
  pst_pools_drop_owner(pools, 7);
  WAIT_FOR(pst_pools_open(pools) == 1);
  lessee_reset(&L2);
  assert_ptr_equal(lease(&bc, PST_LEASE_POOLED, &L2, &reused), shared);
  assert_int_equal(reused, 1);
  release(shared, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* Connections to another address are another pool. */
static void test_pools_per_address(void **state) {
  tb_t *tb2 = calloc(1, sizeof(*tb2));
  assert_non_null(tb2);
  tb_start(&tb);
  tb_start(tb2);
  pst_backend_conf_t bc, bc2;
  backend_at(&bc, tb.port);
  backend_at(&bc2, tb2->port);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_POOLED, &L1);
  release(b, 1);
  int reused;
  pst_bconn_t *b2 = lease(&bc2, PST_LEASE_POOLED, &L2, &reused);
  assert_int_equal(reused, 0);
  WAIT_FOR(L2.connects == 1 && tb2->n_conns == 1);
  release(b2, 0);
  WAIT_FOR(pst_pools_open(pools) == 1);
  tb_stop(tb2);
  free(tb2);
  tb_stop(&tb);
}

/* ONCE (the tcp relay) is never pooled, whatever the release says. */
static void test_once_never_pooled(void **state) {
  tb_start(&tb);
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_ONCE, &L1);
  release(b, 1);
  WAIT_FOR(pst_pools_open(pools) == 0);
  WAIT_FOR(tb.conns[0]->eof);
  int reused;
  b = lease(&bc, PST_LEASE_POOLED, &L2, &reused);
  assert_int_equal(reused, 0);
  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* backend_pool.max_idle bounds the idle connections of one address. */
static void test_max_idle(void **state) {
  lc.pool_max_idle = 1;
  tb_start(&tb);
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *a = lease_connected(&bc, PST_LEASE_FRESH, &L1);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_FRESH, &L2);
  release(a, 1);
  release(b, 1); /* no room: closed */
  WAIT_FOR(pst_pools_open(pools) == 1);
  WAIT_FOR(tb.conns[1] == NULL || tb.conns[1]->eof);
  assert_false(tb.conns[0]->eof);
  int reused;
  lessee_reset(&L1);
  assert_ptr_equal(lease(&bc, PST_LEASE_POOLED, &L1, &reused), a);
  assert_int_equal(reused, 1);
  release(a, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);

  /* max_idle 0: nothing is ever pooled. */
  lc.pool_max_idle = 0;
  lessee_reset(&L1);
  a = lease_connected(&bc, PST_LEASE_POOLED, &L1);
  release(a, 1);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* The pool keeps as many idle connections as the peak in use (issue 17):
 * 8 at once, all released, all reused, no new connect; then, once the
 * peak is two windows old (a window is backend_pool.idle), releases beyond
 * the new peak close. */
static void test_pool_keeps_peak(void **state) {
  enum { N = TB_MAX_CONNS };
  static lessee_t ls[N];
  lc.pool_max_idle = 4096;
  tb_start(&tb);
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *bs[N];
  for (int i = 0; i < N; i++) {
    lessee_reset(&ls[i]);
    bs[i] = lease_connected(&bc, PST_LEASE_POOLED, &ls[i]);
  }
  for (int i = 0; i < N; i++) release(bs[i], 1);
  run_for(20);
  assert_int_equal(pst_pools_open(pools), N); /* all kept */
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) {
      int reused;
      lessee_reset(&ls[i]);
      bs[i] = lease(&bc, PST_LEASE_POOLED, &ls[i], &reused);
      assert_int_equal(reused, 1);
    }
    for (int i = 0; i < N; i++) release(bs[i], 1);
  }
  assert_int_equal(tb.n_conns, N); /* steady load: no connect per request */
  assert_int_equal(pst_pools_open(pools), N);

  /* Two leases under a 20 ms window, released 50 ms later: the peak of 8
   * is forgotten, the pool holds 6 idle already, above the new peak (2). */
  lc.pool_idle_ms = 20;
  for (int i = 0; i < 2; i++) {
    int reused;
    lessee_reset(&ls[i]);
    bs[i] = lease(&bc, PST_LEASE_POOLED, &ls[i], &reused);
    assert_int_equal(reused, 1);
  }
  run_for(50);
  release(bs[0], 1);
  release(bs[1], 1);
  WAIT_FOR(pst_pools_open(pools) == N - 2);
  for (int i = 0; i < N; i++) lessee_reset(&ls[i]);
  tb_stop(&tb);
}

/* backend_pool.idle: an idle connection closes when it has waited that
 * long. */
static void test_idle_timeout(void **state) {
  lc.pool_idle_ms = 20;
  tb_start(&tb);
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_POOLED, &L1);
  release(b, 1);
  assert_int_equal(pst_pools_open(pools), 1);
  WAIT_FOR(pst_pools_open(pools) == 0);
  WAIT_FOR(tb.conns[0]->eof);
  tb_stop(&tb);
}

/* An idle connection the backend closes, or that receives bytes nobody
 * asked for, leaves the pool at once: the next lease connects anew. */
static void test_idle_closed_by_backend(void **state) {
  tb_start(&tb);
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_POOLED, &L1);
  release(b, 1);
  tb_close_conn(tb.conns[0]);
  WAIT_FOR(pst_pools_open(pools) == 0);

  lessee_reset(&L1);
  b = lease_connected(&bc, PST_LEASE_POOLED, &L1);
  release(b, 1);
  tb_write_str(tb.conns[1], "unasked");
  WAIT_FOR(pst_pools_open(pools) == 0);
  int reused;
  b = lease(&bc, PST_LEASE_POOLED, &L2, &reused);
  assert_int_equal(reused, 0);
  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* A connection released before its connect completed never reports, and
 * is not pooled. */
static void test_release_while_connecting(void **state) {
  tb_start(&tb);
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  int reused;
  pst_bconn_t *b = lease(&bc, PST_LEASE_POOLED, &L1, &reused);
  assert_int_equal(pst_bconn_write(b, "x", 1), 0);
  release(b, 1);
  WAIT_FOR(pst_pools_open(pools) == 0);
  run_for(20);
  assert_int_equal(L1.connects + L1.drains + L1.write_errors + L1.timers, 0);
  tb_stop(&tb);
}

/* After pst_pools_shutdown, leased connections go on, and a reusable
 * release closes instead of pooling. */
static void test_shutdown_with_leased(void **state) {
  tb_start(&tb);
  tb.on_data = echo;
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *idle = lease_connected(&bc, PST_LEASE_POOLED, &L1);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_POOLED, &L2);
  release(idle, 1);
  assert_int_equal(pst_pools_open(pools), 2);
  pst_pools_shutdown(pools);
  WAIT_FOR(pst_pools_open(pools) == 1);
  assert_int_equal(pst_bconn_write(b, "still", 5), 0);
  WAIT_FOR(L2.got.len == 5);
  release(b, 1);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* ---- failures ------------------------------------------------------------- */

static void test_connect_refused(void **state) {
  int port;
  int fd = refusing_port(&port);
  pst_backend_conf_t bc;
  backend_at(&bc, port);
  int reused;
  pst_bconn_t *b = lease(&bc, PST_LEASE_FRESH, &L1, &reused);
  assert_int_equal(L1.connects, 0);
  WAIT_FOR(L1.connects == 1);
  assert_int_equal(L1.connect_status, UV_ECONNREFUSED);
  assert_int_equal(L1.timers, 0);
  release(b, 1); /* never pooled: it never connected */
  WAIT_FOR(pst_pools_open(pools) == 0);
  close(fd);
}

/* timeouts.backend_connect: a connect that neither completes nor fails
 * reports on_timer, not on_connect. */
static void test_connect_timeout(void **state) {
  int port, filler;
  int fd = full_listener(&port, &filler);
  lc.backend_connect_timeout_ms = 30;
  pst_backend_conf_t bc;
  backend_at(&bc, port);
  int reused;
  pst_bconn_t *b = lease(&bc, PST_LEASE_FRESH, &L1, &reused);
  uint64_t t0 = uv_now(loop);
  WAIT_FOR(L1.timers == 1);
  assert_true(uv_now(loop) - t0 >= 25);
  assert_int_equal(L1.connects, 0);
  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  run_for(10);
  assert_int_equal(L1.connects, 0); /* the cancelled connect reports nothing */
  close(filler);
  close(fd);
}

/* pst_bconn_timer: armed, re-armed, stopped. */
static void test_timer(void **state) {
  tb_start(&tb);
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  pst_bconn_t *b = lease_connected(&bc, PST_LEASE_FRESH, &L1);
  pst_bconn_timer(b, 10);
  WAIT_FOR(L1.timers == 1);
  pst_bconn_timer(b, 10);
  pst_bconn_timer(b, 0);
  run_for(40);
  assert_int_equal(L1.timers, 1);
  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* ---- half-close ------------------------------------------------------------ */

/* pst_bconn_shutdown ends the write side after what is queued (asked while
 * connecting, it waits for the connect); the backend can still answer. */
static void test_shutdown_half_close(void **state) {
  tb_start(&tb);
  pst_backend_conf_t bc;
  backend_at(&bc, tb.port);
  int reused;
  pst_bconn_t *b = lease(&bc, PST_LEASE_ONCE, &L1, &reused);
  pst_bconn_read(b, 1);
  assert_int_equal(pst_bconn_write(b, "last words", 10), 0);
  assert_int_equal(pst_bconn_shutdown(b), 0);
  assert_int_equal(L1.shutdowns, 0);
  WAIT_FOR(L1.shutdowns == 1);
  assert_int_equal(L1.shutdown_status, 0);
  assert_int_equal(L1.connects, 1);
  WAIT_FOR(tb.conns[0] != NULL && tb.conns[0]->eof);
  assert_string_equal(in_str(tb.conns[0]), "last words");
  /* The other direction is still open. */
  tb_write_str(tb.conns[0], "reply");
  WAIT_FOR(L1.got.len == 5);
  assert_string_equal(got_str(&L1), "reply");
  assert_int_equal(L1.eof, 0);
  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* ---- the in-process builtin:info connection --------------------------------- */

static void local_response(pst_buf_t *resp) {
  memset(resp, 0, sizeof(*resp));
  assert_int_equal(pst_buf_printf(resp, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"), 0);
}

static void test_local(void **state) {
  pst_backend_conf_t bc;
  backend_info(&bc);
  int reused;
  pst_bconn_t *b = lease(&bc, PST_LEASE_POOLED, &L1, &reused);
  assert_int_equal(reused, 0);
  assert_true(pst_bconn_is_local(b));
  assert_int_equal(pst_pools_open(pools), 1);
  /* It "connects" on the next loop turn, not inside the call. */
  assert_int_equal(L1.connects, 0);
  turns(1);
  assert_int_equal(L1.connects, 1);
  assert_int_equal(L1.connect_status, 0);
  assert_int_equal(pst_bconn_queued(b), 0);
  assert_int_equal(pst_bconn_shutdown(b), PST_ESHUTDOWN);
  pst_bconn_read(b, 0); /* no effect */
  pst_bconn_read(b, 1);
  /* Its timer works like a socket's while no answer is due. */
  pst_bconn_timer(b, 5);
  WAIT_FOR(L1.timers == 1);

  pst_buf_t resp;
  local_response(&resp);
  size_t len = resp.len;
  assert_int_equal(pst_bconn_local_answer(b, &resp), 0);
  assert_int_equal(resp.len, 0); /* taken over */
  assert_null(resp.data);
  pst_bconn_timer(b, 0); /* must not cancel the answer */
  assert_int_equal(L1.got.len, 0);
  turns(1);
  assert_int_equal(L1.got.len, len);
  assert_memory_equal(pst_buf_head(&L1.got), "HTTP/1.1 200 OK\r\n", 17);
  assert_true(L1.eof);
  assert_int_equal(L1.reads_after_eof, 0);
  release(b, 1); /* never pooled */
  WAIT_FOR(pst_pools_open(pools) == 0);
  assert_int_equal(L1.timers, 1);
}

/* A lessee that releases from inside on_read hears no UV_EOF. */
static void test_local_release_in_read(void **state) {
  pst_backend_conf_t bc;
  backend_info(&bc);
  int reused;
  pst_bconn_t *b = lease(&bc, PST_LEASE_ONCE, &L1, &reused);
  WAIT_FOR(L1.connects == 1);
  pst_buf_t resp;
  local_response(&resp);
  L1.release_in_read = 1;
  assert_int_equal(pst_bconn_local_answer(b, &resp), 0);
  WAIT_FOR(L1.got.len > 0);
  assert_null(L1.b);
  assert_false(L1.eof);
  WAIT_FOR(pst_pools_open(pools) == 0);
  assert_false(L1.eof);
}

/* Released before its first turn: no event at all; an answer still due
 * when it is released is dropped (and freed). */
static void test_local_release_early(void **state) {
  pst_backend_conf_t bc;
  backend_info(&bc);
  int reused;
  pst_bconn_t *b = lease(&bc, PST_LEASE_POOLED, &L1, &reused);
  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  assert_int_equal(L1.connects, 0);

  b = lease(&bc, PST_LEASE_POOLED, &L2, &reused);
  WAIT_FOR(L2.connects == 1);
  pst_buf_t resp;
  local_response(&resp);
  assert_int_equal(pst_bconn_local_answer(b, &resp), 0);
  release(b, 1);
  WAIT_FOR(pst_pools_open(pools) == 0);
  assert_int_equal(L2.got.len, 0);
  assert_false(L2.eof);
}

/* A paused lessee (its client is slow) gets the answer only once it reads
 * again, as with a socket. */
static void test_local_paused(void **state) {
  pst_backend_conf_t bc;
  backend_info(&bc);
  int reused;
  pst_bconn_t *b = lease(&bc, PST_LEASE_ONCE, &L1, &reused);
  WAIT_FOR(L1.connects == 1);
  pst_bconn_read(b, 0);
  pst_buf_t resp;
  local_response(&resp);
  size_t len = resp.len;
  assert_int_equal(pst_bconn_local_answer(b, &resp), 0);
  turns(3);
  assert_int_equal(L1.got.len, 0);
  assert_false(L1.eof);
  pst_bconn_read(b, 1);
  WAIT_FOR(L1.eof);
  assert_int_equal(L1.got.len, len);
  release(b, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
}

static void test_free_null(void **state) {
  pst_pools_free(NULL);
  pst_bconn_release(NULL, 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_fresh_write_read),
      T(test_read_pause),
      T(test_write_backpressure),
      T(test_release_with_queued_bytes_closes),
      T(test_pooled_reuse),
      T(test_owned_connections),
      T(test_pools_per_address),
      T(test_once_never_pooled),
      T(test_max_idle),
      T(test_pool_keeps_peak),
      T(test_idle_timeout),
      T(test_idle_closed_by_backend),
      T(test_release_while_connecting),
      T(test_shutdown_with_leased),
      T(test_connect_refused),
      T(test_local_paused),
      T(test_connect_timeout),
      T(test_timer),
      T(test_shutdown_half_close),
      T(test_local),
      T(test_local_release_in_read),
      T(test_local_release_early),
      T(test_free_null),
  };
  return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
