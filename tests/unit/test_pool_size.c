/* postern: unit tests for the backend pool's sizing policy (src/pool_size.c):
 * the peak of connections in use over two windows, its decay, and the
 * three bounds of a release (max_idle, the peak, the memory budget). The
 * policy is pure: these tests give it times and counts, no loop. The pool
 * itself under it is tested in test_pool.c (test_pool_keeps_peak). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/pool_int.h"

/* Sets busy and notes it at now (window 1000 ms). */
static void set_busy(pool_demand_t *d, unsigned busy, uint64_t now) {
  d->busy = busy;
  pst_pool_demand_note(d, now, 1000);
}

/* The target follows the highest count in use within the window. */
static void test_peak_in_window(void **state) {
  pool_demand_t d = {0};
  set_busy(&d, 1, 0);
  set_busy(&d, 500, 10);
  set_busy(&d, 20, 20);
  assert_int_equal(pst_pool_demand_target(&d), 500);
  set_busy(&d, 0, 999);
  assert_int_equal(pst_pool_demand_target(&d), 500);
}

/* A peak is remembered for one more window, then forgotten: the target
 * falls to what the load needs now within two windows. */
static void test_peak_decays(void **state) {
  pool_demand_t d = {0};
  set_busy(&d, 500, 0);
  set_busy(&d, 10, 1500); /* the next window: the old peak is the previous one's */
  assert_int_equal(pst_pool_demand_target(&d), 500);
  set_busy(&d, 10, 2100); /* one more: 500 is gone */
  assert_int_equal(pst_pool_demand_target(&d), 10);
  /* A long quiet spell (no note for several windows) forgets both. */
  set_busy(&d, 300, 2200);
  assert_int_equal(pst_pool_demand_target(&d), 300);
  set_busy(&d, 3, 9000);
  assert_int_equal(pst_pool_demand_target(&d), 3);
}

/* Windows stay aligned to their start (a note late in a window does not
 * stretch the next one), and a clock that goes back restarts them. */
static void test_window_alignment(void **state) {
  pool_demand_t d = {0};
  set_busy(&d, 7, 0);
  set_busy(&d, 2, 1900); /* window [1000, 2000): peak[1] = 7 */
  assert_int_equal(d.window_start_ms, 1000);
  assert_int_equal(pst_pool_demand_target(&d), 7);
  set_busy(&d, 2, 2000);
  assert_int_equal(d.window_start_ms, 2000);
  assert_int_equal(pst_pool_demand_target(&d), 2);
  set_busy(&d, 4, 5);
  assert_int_equal(d.window_start_ms, 5);
  assert_int_equal(pst_pool_demand_target(&d), 4);
  /* Window 0 is taken as 1 ms, not a division by zero. */
  d.busy = 1;
  pst_pool_demand_note(&d, 100, 0);
  assert_int_equal(pst_pool_demand_target(&d), 1); /* 95 windows: only busy now */
}

/* A steady load never churns: a pool holds no more connections than its
 * peak in use, so every release finds room, however large the peak. */
static void test_steady_load_keeps_all(void **state) {
  size_t cost = pst_pool_idle_cost(0);
  size_t budget = (size_t)64 << 20;
  for (unsigned conc = 1; conc <= 4096; conc *= 4) {
    pool_demand_t d = {0};
    set_busy(&d, conc, 0); /* conc connections opened, all in use */
    /* Release them one by one, each time with the others idle or in use:
     * n_idle + busy (after this release) = conc - 1. */
    for (unsigned idle = 0; idle < conc; idle++) {
      d.busy = conc - idle - 1;
      assert_int_equal(pst_pool_keep(&d, idle, 4096, idle * cost, cost, budget), POOL_KEEP);
    }
  }
}

/* The three bounds, each on its own; the first that refuses is named. */
static void test_bounds(void **state) {
  pool_demand_t d = {0};
  set_busy(&d, 100, 0);
  size_t cost = pst_pool_idle_cost(0);
  assert_int_equal(pst_pool_keep(&d, 99, 4096, 0, cost, SIZE_MAX), POOL_KEEP);
  assert_int_equal(pst_pool_keep(&d, 100, 4096, 0, cost, SIZE_MAX), POOL_FULL_PEAK);
  assert_int_equal(pst_pool_keep(&d, 10, 10, 0, cost, SIZE_MAX), POOL_FULL_MAX_IDLE);
  assert_int_equal(pst_pool_keep(&d, 0, 0, 0, cost, SIZE_MAX), POOL_FULL_MAX_IDLE); /* max_idle 0 */
  /* Memory: room for exactly 3 connections. */
  size_t budget = 3 * cost;
  assert_int_equal(pst_pool_keep(&d, 2, 4096, 2 * cost, cost, budget), POOL_KEEP);
  assert_int_equal(pst_pool_keep(&d, 3, 4096, 3 * cost, cost, budget), POOL_FULL_MEMORY);
  /* The budget counts every pool of the worker: another pool's idle
   * connections use it up for this one too. */
  assert_int_equal(pst_pool_keep(&d, 0, 4096, 3 * cost, cost, budget), POOL_FULL_MEMORY);
  /* idle_bytes above the budget (a reload lowered it) does not wrap. */
  assert_int_equal(pst_pool_keep(&d, 0, 4096, 5 * cost, cost, budget), POOL_FULL_MEMORY);
  /* With nothing in use recently the pool keeps nothing. */
  pool_demand_t none = {0};
  assert_int_equal(pst_pool_keep(&none, 0, 4096, 0, cost, SIZE_MAX), POOL_FULL_PEAK);
}

/* A FRESH lease passes over idle connections: they count as held, so the
 * new one has room when it is released. */
static void test_held(void **state) {
  pool_demand_t d = {0};
  set_busy(&d, 1, 0);
  pst_pool_demand_held(&d, 3); /* 3 idle passed over */
  assert_int_equal(pst_pool_demand_target(&d), 4);
  d.busy = 0;
  assert_int_equal(pst_pool_keep(&d, 3, 4096, 0, 1, SIZE_MAX), POOL_KEEP);
}

/* The default budget (64 MiB) holds thousands of idle connections: the
 * issue's 2,000 concurrent streams fit, with TLS too. */
static void test_cost_estimates(void **state) {
  size_t plain = pst_pool_idle_cost(0), tls = pst_pool_idle_cost(1);
  assert_true(plain >= 4096 && plain < 8192);
  assert_true(tls > plain);
  assert_true(((size_t)64 << 20) / tls >= 4000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_peak_in_window),
      cmocka_unit_test(test_peak_decays),
      cmocka_unit_test(test_window_alignment),
      cmocka_unit_test(test_steady_load_keeps_all),
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_cost_estimates),
      cmocka_unit_test(test_held),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
