/* postern: unit tests for the 0-RTT strike register (src/replay.c): claims,
 * replays, releases, how long entries live, a full register, and many
 * threads claiming at once. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/common.h"
#include "postern/replay.h"

static void make_key(uint8_t key[PST_REPLAY_KEY_LEN], uint32_t n) {
  uint8_t binder[32] = {0};
  memcpy(binder, &n, sizeof(n));
  pst_replay_key(binder, sizeof(binder), key);
}

static void test_key(void **state) {
  uint8_t a[16], b[16], c[16];
  make_key(a, 1);
  make_key(b, 1);
  make_key(c, 2);
  assert_memory_equal(a, b, 16);
  assert_memory_not_equal(a, c, 16);
  /* A 48-byte binder (SHA-384 suites) works the same way. */
  uint8_t binder48[48] = {7};
  pst_replay_key(binder48, sizeof(binder48), a);
  assert_memory_not_equal(a, c, 16);
}

static void test_claim_and_replay(void **state) {
  pst_replay_t *r = NULL;
  assert_int_equal(pst_replay_new(1000, 1000, &r), 0);
  uint8_t a[16], b[16];
  make_key(a, 1);
  make_key(b, 2);
  assert_int_equal(pst_replay_claim(r, a, 100), 0);
  assert_int_equal(pst_replay_claim(r, a, 100), PST_REPLAY_SEEN);
  assert_int_equal(pst_replay_claim(r, a, 900), PST_REPLAY_SEEN);
  assert_int_equal(pst_replay_claim(r, b, 900), 0);
  assert_int_equal(pst_replay_count(r, 900), 2);
  /* Released (its early data was not accepted): it may be claimed again. */
  pst_replay_release(r, b, 950);
  assert_int_equal(pst_replay_count(r, 950), 1);
  assert_int_equal(pst_replay_claim(r, b, 960), 0);
  assert_int_equal(pst_replay_claim(r, b, 960), PST_REPLAY_SEEN);
  /* Releasing what is not there does nothing. */
  uint8_t c[16];
  make_key(c, 3);
  pst_replay_release(r, c, 970);
  assert_int_equal(pst_replay_claim(r, a, 970), PST_REPLAY_SEEN);
  pst_replay_free(r);
}

static void test_window(void **state) {
  pst_replay_t *r = NULL;
  assert_int_equal(pst_replay_new(1000, 1000, &r), 0);
  uint8_t a[16], b[16];
  make_key(a, 1);
  make_key(b, 2);
  /* Claimed late in window 0: still there through window 1. */
  assert_int_equal(pst_replay_claim(r, a, 999), 0);
  assert_int_equal(pst_replay_claim(r, a, 1000), PST_REPLAY_SEEN);
  assert_int_equal(pst_replay_claim(r, a, 1999), PST_REPLAY_SEEN);
  /* Claimed early in window 1: there until the end of window 2. */
  assert_int_equal(pst_replay_claim(r, b, 1000), 0);
  /* Window 2: a (window 0) is gone, b (window 1) is not. */
  assert_int_equal(pst_replay_claim(r, b, 2999), PST_REPLAY_SEEN);
  assert_int_equal(pst_replay_claim(r, a, 2000), 0);
  /* A released key in the previous window. */
  pst_replay_release(r, a, 3000);
  assert_int_equal(pst_replay_claim(r, a, 3001), 0);
  /* A long silence forgets everything. */
  assert_int_equal(pst_replay_claim(r, b, 100000), 0);
  assert_int_equal(pst_replay_claim(r, a, 100000), 0);
  /* A clock that goes back does not forget. */
  assert_int_equal(pst_replay_claim(r, a, 50000), PST_REPLAY_SEEN);
  pst_replay_free(r);
}

/* A key whose first byte picks the shard: the register has 16 shards. */
static void shard_key(uint8_t key[16], uint8_t shard, uint32_t n) {
  make_key(key, n);
  key[0] = shard;
}

static void test_full(void **state) {
  pst_replay_t *r = NULL;
  /* 32 claims per window: 2 per shard. */
  assert_int_equal(pst_replay_new(32, 1000, &r), 0);
  uint8_t k[16];
  shard_key(k, 0, 1);
  assert_int_equal(pst_replay_claim(r, k, 10), 0);
  shard_key(k, 16, 2);
  assert_int_equal(pst_replay_claim(r, k, 10), 0);
  shard_key(k, 32, 3);
  assert_int_equal(pst_replay_claim(r, k, 10), PST_ELIMIT);
  /* Another shard still has room. */
  shard_key(k, 1, 4);
  assert_int_equal(pst_replay_claim(r, k, 10), 0);
  /* A known key is still recognised when full. */
  shard_key(k, 0, 1);
  assert_int_equal(pst_replay_claim(r, k, 10), PST_REPLAY_SEEN);
  /* A released slot can be taken again. */
  shard_key(k, 16, 2);
  pst_replay_release(r, k, 20);
  shard_key(k, 32, 3);
  assert_int_equal(pst_replay_claim(r, k, 20), 0);
  /* The next window has room again (the previous one is still checked). */
  shard_key(k, 48, 5);
  assert_int_equal(pst_replay_claim(r, k, 1000), 0);
  shard_key(k, 0, 1);
  assert_int_equal(pst_replay_claim(r, k, 1000), PST_REPLAY_SEEN);
  pst_replay_free(r);
  assert_int_equal(pst_replay_new(0, 1000, &r), -EINVAL);
  assert_int_equal(pst_replay_new(10, 0, &r), -EINVAL);
}

/* Keys whose home slots collide, released in every order: every key left
 * must still be found (backward-shift deletion keeps probe chains whole). */
static void test_release_in_clusters(void **state) {
  pst_replay_t *r = NULL;
  /* One shard (key[0] = 0) holds up to 64 keys in 128 slots. */
  assert_int_equal(pst_replay_new(64 * 16, 1000, &r), 0);
  enum { N = 40 };
  uint8_t keys[N][16];
  for (int i = 0; i < N; i++) {
    memset(keys[i], 0, 16);
    keys[i][1] = (uint8_t)(i + 1);        /* distinct keys */
    keys[i][8] = (uint8_t)(120 + i % 12); /* homes 120..131: wrap around slot 127 */
  }
  unsigned seed = 12345;
  for (int round = 0; round < 50; round++) {
    int present[N] = {0};
    for (int i = 0; i < N; i++) {
      assert_int_equal(pst_replay_claim(r, keys[i], (uint64_t)round * 10000), 0);
      present[i] = 1;
    }
    for (int step = 0; step < N; step++) {
      seed = seed * 1103515245u + 12345u;
      int victim = (int)((seed >> 16) % N);
      if (present[victim]) {
        pst_replay_release(r, keys[victim], (uint64_t)round * 10000);
        present[victim] = 0;
      }
      for (int i = 0; i < N; i++) {
        if (!present[i]) continue;
        assert_int_equal(pst_replay_claim(r, keys[i], (uint64_t)round * 10000), PST_REPLAY_SEEN);
      }
    }
    size_t n = 0;
    for (int i = 0; i < N; i++) n += (size_t)present[i];
    assert_int_equal(pst_replay_count(r, (uint64_t)round * 10000), n);
  }
  pst_replay_free(r);
}

#define THREADS 8
#define KEYS 2000

typedef struct {
  pst_replay_t *r;
  int fresh; /* claims that returned 0 */
} worker_arg_t;

static void *claimer(void *p) {
  worker_arg_t *w = p;
  for (uint32_t i = 0; i < KEYS; i++) {
    uint8_t k[16];
    make_key(k, i);
    if (pst_replay_claim(w->r, k, 5) == 0) w->fresh++;
  }
  return NULL;
}

static void test_threads(void **state) {
  pst_replay_t *r = NULL;
  assert_int_equal(pst_replay_new(4 * KEYS, 1000, &r), 0);
  pthread_t t[THREADS];
  worker_arg_t w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i].r = r;
    w[i].fresh = 0;
    assert_int_equal(pthread_create(&t[i], NULL, claimer, &w[i]), 0);
  }
  int fresh = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    fresh += w[i].fresh;
  }
  /* Each ClientHello is accepted exactly once, whichever worker saw it. */
  assert_int_equal(fresh, KEYS);
  assert_int_equal(pst_replay_count(r, 5), KEYS);
  pst_replay_free(r);
}

static void test_global(void **state) {
  pst_replay_t *g = pst_replay_global();
  assert_non_null(g);
  assert_ptr_equal(g, pst_replay_global());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_key),
      cmocka_unit_test(test_claim_and_replay),
      cmocka_unit_test(test_window),
      cmocka_unit_test(test_full),
      cmocka_unit_test(test_release_in_clusters),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_global),
  };
  return cmocka_run_group_tests_name("replay", tests, NULL, NULL);
}
