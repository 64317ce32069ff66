/* A small deterministic generator (splitmix64) for the unit tests that
 * compare many random inputs against a reference (test_crypto.c,
 * test_rsa_sign.c): failures must be reproducible, so each test sets
 * rng_state from a seed it prints.
 *
 * Include it once per test binary. */
#ifndef POSTERN_TESTS_RNG_TEST_UTIL_H
#define POSTERN_TESTS_RNG_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

static uint64_t rng_state;

static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void rng_fill(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng_next();
    for (size_t j = 0; j < 8 && i + j < n; j++) p[i + j] = (uint8_t)(v >> (8 * j));
  }
}

#endif
