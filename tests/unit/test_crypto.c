/* postern: unit tests for the changes postern makes to wolfSSL's crypto
 * (.ci/wolfssl-*.patch). Each patched fast path is checked against the code it
 * replaces or against published vectors:
 *   - X25519 key generation through Ed25519's fixed-base table
 *     (wolfssl-x25519-keygen-edwards.patch) must give the ladder's bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/curve25519.h>

/* A small deterministic generator (splitmix64): failures must be
 * reproducible, and the seed is printed when a comparison fails. */
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

static void hex_decode(const char *hex, uint8_t *out, size_t n) {
  assert_int_equal(strlen(hex), 2 * n);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
    out[i] = (uint8_t)v;
  }
}

/* ---- X25519 ---------------------------------------------------------- */

/* RFC 7748 5: the scalar's three low bits cleared, bit 255 cleared, bit 254
 * set. wc_curve25519_make_pub accepts only clamped keys. */
static void x25519_clamp(uint8_t k[CURVE25519_KEYSIZE]) {
  k[0] &= 248;
  k[31] &= 127;
  k[31] |= 64;
}

/* The public key by the Montgomery ladder on u = 9, the computation
 * wc_curve25519_make_pub did before the patch (wc_curve25519_generic still
 * runs it for any base point). */
static void x25519_ladder_pub(const uint8_t priv[32], uint8_t pub[32]) {
  static const uint8_t nine[CURVE25519_KEYSIZE] = {9};
  assert_int_equal(wc_curve25519_generic(32, pub, 32, priv, 32, nine), 0);
}

static void check_make_pub(const uint8_t priv[32], uint64_t seed, int i) {
  uint8_t fast[32], ladder[32];
  assert_int_equal(wc_curve25519_make_pub(32, fast, 32, priv), 0);
  x25519_ladder_pub(priv, ladder);
  if (memcmp(fast, ladder, 32) != 0) {
    print_error("X25519 public keys differ (seed %llu, key %d)\n", (unsigned long long)seed, i);
    fail();
  }
}

/* RFC 7748 6.1: Alice's and Bob's key pairs and their shared secret. */
static void test_x25519_rfc7748_vectors(void **state) {
  static const struct {
    const char *priv, *pub;
  } v[] = {
      {"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
       "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"},
      {"5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
       "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"},
  };
  uint8_t priv[2][32], pub[2][32];
  for (int i = 0; i < 2; i++) {
    uint8_t want[32];
    hex_decode(v[i].priv, priv[i], 32);
    hex_decode(v[i].pub, want, 32);
    /* X25519 clamps the scalar itself (RFC 7748 5), so the clamped key has
     * the same public key. */
    x25519_clamp(priv[i]);
    assert_int_equal(wc_curve25519_make_pub(32, pub[i], 32, priv[i]), 0);
    assert_memory_equal(pub[i], want, 32);
    uint8_t ladder[32];
    x25519_ladder_pub(priv[i], ladder);
    assert_memory_equal(ladder, want, 32);
  }

  /* The exchange itself, through the key API TLS uses. */
  uint8_t want_k[32];
  hex_decode("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", want_k, 32);
  for (int i = 0; i < 2; i++) {
    curve25519_key mine, theirs;
    assert_int_equal(wc_curve25519_init(&mine), 0);
    assert_int_equal(wc_curve25519_init(&theirs), 0);
    assert_int_equal(wc_curve25519_import_private_raw_ex(priv[i], 32, pub[i], 32, &mine,
                                                         EC25519_LITTLE_ENDIAN),
                     0);
    assert_int_equal(
        wc_curve25519_import_public_ex(pub[1 - i], 32, &theirs, EC25519_LITTLE_ENDIAN), 0);
    uint8_t k[32];
    word32 klen = sizeof(k);
    assert_int_equal(
        wc_curve25519_shared_secret_ex(&mine, &theirs, k, &klen, EC25519_LITTLE_ENDIAN), 0);
    assert_int_equal(klen, 32);
    assert_memory_equal(k, want_k, 32);
    wc_curve25519_free(&mine);
    wc_curve25519_free(&theirs);
  }
}

/* Random clamped keys: the fast key generation and the ladder agree. */
static void test_x25519_make_pub_random(void **state) {
  uint64_t seed = getenv("POSTERN_TEST_SEED") ? strtoull(getenv("POSTERN_TEST_SEED"), NULL, 0)
                                              : 0x78323535313921ULL;
  rng_state = seed;
  for (int i = 0; i < 4000; i++) {
    uint8_t priv[32];
    rng_fill(priv, sizeof(priv));
    x25519_clamp(priv);
    check_make_pub(priv, seed, i);
  }
}

/* Scalars at the edges. wc_curve25519_make_pub checks only the three low bits
 * and bit 255, so bit 254 may be clear. The only accepted scalar that is a
 * multiple of the group order l is 0 (8 l > 2^255): there the Edwards side
 * has the identity (Y == Z, an inversion of zero) and the ladder the point at
 * infinity, both encoded as u = 0. */
static void test_x25519_make_pub_edges(void **state) {
  uint8_t k[32], pub[32], zero[32] = {0};

  memset(k, 0, sizeof(k));
  check_make_pub(k, 0, -1);
  assert_int_equal(wc_curve25519_make_pub(32, pub, 32, k), 0);
  assert_memory_equal(pub, zero, 32);
  k[0] = 8;
  check_make_pub(k, 0, -2);
  memset(k, 0xff, sizeof(k));
  k[0] = 0xf8;
  k[31] = 0x7f;
  check_make_pub(k, 0, -3); /* the largest accepted scalar */
  k[31] = 0x3f;
  check_make_pub(k, 0, -4); /* bit 254 clear */
  memset(k, 0, sizeof(k));
  k[31] = 0x40;
  check_make_pub(k, 0, -5); /* 2^254 alone */
  /* Unclamped keys are refused, as before. */
  k[0] = 1;
  assert_int_not_equal(wc_curve25519_make_pub(32, pub, 32, k), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_x25519_rfc7748_vectors),
      cmocka_unit_test(test_x25519_make_pub_random),
      cmocka_unit_test(test_x25519_make_pub_edges),
  };
  return cmocka_run_group_tests_name("crypto", tests, NULL, NULL);
}
