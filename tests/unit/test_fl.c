/* Unit tests for the per-thread free lists (src/fl.c). fl.c is built into
 * this file with PST_FL_ON: under AddressSanitizer (every unit test build)
 * the lists are otherwise off, get being malloc and put free. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define PST_FL_ON 1
#include "../../src/fl.c"

/* A block put back is the next one got (LIFO: the one most likely still in
 * the cache), and the list counts what it holds. */
static void test_reuse(void **state) {
  static _Thread_local pst_fl_t fl = PST_FL_INIT(64);
  char *a = pst_fl_get(&fl), *b = pst_fl_get(&fl);
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  memset(a, 'x', 64);
  memset(b, 'y', 64);
  pst_fl_put(&fl, a);
  pst_fl_put(&fl, b);
  assert_int_equal(fl.n, 2);
  assert_ptr_equal(pst_fl_get(&fl), b);
  assert_ptr_equal(pst_fl_get(&fl), a);
  assert_int_equal(fl.n, 0);
  assert_null(fl.head);
  pst_fl_put(&fl, NULL); /* allowed, nothing kept */
  assert_int_equal(fl.n, 0);
  pst_fl_put(&fl, a);
  pst_fl_put(&fl, b);
  pst_fl_drain(&fl);
  assert_int_equal(fl.n, 0);
  assert_null(fl.head);
}

/* get0 zeroes a recycled block (its first bytes held the link). */
static void test_zeroed(void **state) {
  static _Thread_local pst_fl_t fl = PST_FL_INIT(48);
  unsigned char *a = pst_fl_get(&fl);
  assert_non_null(a);
  memset(a, 0xff, 48);
  pst_fl_put(&fl, a);
  unsigned char *z = pst_fl_get0(&fl);
  assert_ptr_equal(z, a);
  for (size_t i = 0; i < 48; i++) assert_int_equal(z[i], 0);
  pst_fl_put(&fl, z);
  z = pst_fl_get0(&fl); /* recycled */
  pst_fl_put(&fl, z);
  z = malloc(48); /* a block from malloc of the size mixes in */
  pst_fl_put(&fl, z);
  assert_int_equal(fl.n, 2);
  pst_fl_drain(&fl);
}

/* The bound: above max blocks go back to free() (ASan's leak check at exit
 * sees any that were lost), and the bound follows PST_FL_KEEP_BYTES. */
static void test_bound(void **state) {
  static _Thread_local pst_fl_t fl = PST_FL_INIT(16384);
  assert_int_equal(fl.max, PST_FL_KEEP_BYTES / 16384);
  pst_fl_t small = PST_FL_INIT(16);
  assert_int_equal(small.max, PST_FL_KEEP_MAX);
  void *p[128];
  for (unsigned i = 0; i < fl.max + 4; i++) p[i] = pst_fl_get(&fl);
  for (unsigned i = 0; i < fl.max + 4; i++) pst_fl_put(&fl, p[i]);
  assert_int_equal(fl.n, fl.max);
  pst_fl_drain(&fl);
  assert_int_equal(fl.n, 0);
}

/* A thread's lists are emptied when it exits (a worker stopped by a
 * reload): here a list the main thread can still see afterwards. */
static pst_fl_t shared_fl = PST_FL_INIT(128);

static void *thread_main(void *arg) {
  void *a = pst_fl_get(&shared_fl), *b = pst_fl_get(&shared_fl);
  pst_fl_put(&shared_fl, a);
  pst_fl_put(&shared_fl, b);
  *(unsigned *)arg = shared_fl.n;
  return NULL;
}

static void test_thread_exit(void **state) {
  pthread_t t;
  unsigned held = 0;
  assert_int_equal(pthread_create(&t, NULL, thread_main, &held), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(held, 2);
  assert_int_equal(shared_fl.n, 0);
  assert_null(shared_fl.head);
  assert_int_equal(shared_fl.listed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reuse),
      cmocka_unit_test(test_zeroed),
      cmocka_unit_test(test_bound),
      cmocka_unit_test(test_thread_exit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
