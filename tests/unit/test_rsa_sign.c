/* postern: unit tests for the RSA-2048 private operation that
 * .ci/wolfssl-rsa-ifma.patch computes with AVX-512 IFMA (the two 1024-bit CRT
 * exponentiations of sp_RsaPrivate_2048, side by side).
 *
 * Keys are made at run time (`openssl genpkey`: this wolfSSL is built
 * without WOLFSSL_KEY_GEN, so wc_MakeRsaKey is not there) and loaded with
 * wc_RsaPrivateKeyDecode. For each key:
 *   - raw private operations (sp_RsaPrivate_2048, CRT) on random inputs and
 *     on edge inputs (0, 1, 2, p, q, multiples of p and of q, p - 1, q + 1,
 *     n - 1, n - p, 2^2047, inputs of every length 0..256 and inputs >= n up
 *     to 2^2048 - 1) against (x mod n)^d mod n computed without CRT
 *     (sp_exptmod, wolfSSL's generic 2048-bit code);
 *   - the same key with p and q swapped (q > p then, and a new qInv);
 *   - PKCS#1 v1.5 signatures (wc_RsaSSL_Sign, deterministic) of thousands of
 *     random messages, each checked with the public key (sig^e mod n gives
 *     the padded message back: RSA is a permutation of Z_n, so that pins the
 *     signature down), and some compared with `openssl pkeyutl -sign` on the
 *     same key.
 * Besides the random keys, keys with chosen primes (made at run time by a
 * small Python script with python3-cryptography; never committed): p just
 * below 2^1024 (52-bit limbs all ones) with q just above 2^1023, two primes
 * just below 2^1024, and 1025/1023-bit primes, which wolfSSL's rsa.c must
 * give to its generic (blinded, non-SP) code: checked correct there, and the
 * IFMA counter must not move.
 * Every private operation checks which path ran: sp_2048_ifma_used() (the
 * patch's counter) must grow by one per raw operation where the IFMA path is
 * expected (this CPU has IFMA, parent process) and stay put otherwise.
 * The whole suite then runs again in a child with wolfSSL's AVX2 flag
 * cleared, which takes the IFMA path away (the patch gates it on that flag):
 * on a CPU with IFMA both paths are checked, on one without it the fallback
 * is checked twice, and the output says which. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cpuid.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "child_test_util.h"
#include "rng_test_util.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/cpuid.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sp.h>
#include <wolfssl/wolfcrypt/sp_int.h>

/* .ci/wolfssl-rsa-ifma.patch: private operations its IFMA code did (exported
 * by sp_x86_64.c, declared in no header). */
unsigned long sp_2048_ifma_used(void);

/* How many keys and operations; POSTERN_RSA_TEST_SCALE multiplies them. */
#define KEYS 3
#define RAW_PER_KEY 300
#define SIGN_PER_KEY 1000
#define OPENSSL_PER_KEY 4

static int scale = 1;
/* Whether raw operations on 1024-bit-prime keys must take the IFMA path. */
static int expect_ifma;
static char tmpdir[256];

/* Whether this CPU and OS can run the IFMA code (the patch's own check). */
static int cpu_has_ifma(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1U << 27))) return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  if (!(b & (1U << 16)) || !(b & (1U << 21)) || !(b & (1U << 31))) return 0;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  (void)hi;
  return (lo & 0xe6) == 0xe6;
}

static int run(const char *cmd) {
  int st = system(cmd);
  return st == 0 ? 0 : -1;
}

/* Reads a whole file into buf; returns its length or -1. */
static long read_file(const char *path, uint8_t *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t n = fread(buf, 1, cap, f);
  int bad = ferror(f) || !feof(f);
  fclose(f);
  return bad ? -1 : (long)n;
}

static int write_file(const char *path, const uint8_t *buf, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(buf, 1, n, f);
  return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* Makes an RSA-2048 key with chosen primes: argv[1] the kind, argv[2] a seed,
 * argv[3] the PEM to write. "edge": p the prime just below a random point
 * within 2^21 of 2^1024, q just above 2^1023 (above 2^1023 + 2^22, so that
 * n has 2048 bits); "high": both just below 2^1024;
 * "unbalanced": random primes of 1025 and 1023 bits (n still 2048 bits). */
static const char keygen_py[] =
    "import random, sys\n"
    "from cryptography.hazmat.primitives import serialization\n"
    "from cryptography.hazmat.primitives.asymmetric import rsa\n"
    "kind, rnd, E = sys.argv[1], random.Random(int(sys.argv[2])), 65537\n"
    "def is_prime(n):\n"
    "    for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47):\n"
    "        if n % p == 0:\n"
    "            return False\n"
    "    d, s = n - 1, 0\n"
    "    while d % 2 == 0:\n"
    "        d, s = d // 2, s + 1\n"
    "    for _ in range(40):\n"
    "        x = pow(rnd.randrange(2, n - 1), d, n)\n"
    "        if x in (1, n - 1):\n"
    "            continue\n"
    "        for _ in range(s - 1):\n"
    "            x = x * x % n\n"
    "            if x == n - 1:\n"
    "                break\n"
    "        else:\n"
    "            return False\n"
    "    return True\n"
    "def prime(n, step):\n"
    "    n |= 1\n"
    "    while not (is_prime(n) and (n - 1) % E != 0):\n"
    "        n += step\n"
    "    return n\n"
    "if kind == 'edge':\n"
    "    p = prime(2**1024 - 1 - rnd.getrandbits(21), -2)\n"
    "    q = prime(2**1023 + 2**22 + rnd.getrandbits(21), 2)\n"
    "elif kind == 'high':\n"
    "    p = prime(2**1024 - 1 - rnd.getrandbits(21), -2)\n"
    "    q = prime(p - 2, -2)\n"
    "else:\n"
    "    p = prime(rnd.getrandbits(1023) | 3 << 1023, 2)\n"
    "    q = prime(rnd.getrandbits(1021) | 3 << 1021, 2)\n"
    "n = p * q\n"
    "assert n.bit_length() == 2048 and p != q\n"
    "d = pow(E, -1, (p - 1) * (q - 1))\n"
    "pub = rsa.RSAPublicNumbers(E, n)\n"
    "k = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), pub)\n"
    "pem = k.private_key().private_bytes(serialization.Encoding.PEM,\n"
    "    serialization.PrivateFormat.PKCS8, serialization.NoEncryption())\n"
    "open(sys.argv[3], 'wb').write(pem)\n";

/* Makes key number i (PEM for pkeyutl, DER for wolfSSL) and loads it into
 * key: with openssl's generator when kind is NULL, with keygen_py's given
 * kind otherwise. */
static void make_key(int i, RsaKey *key, const char *kind) {
  char cmd[2048];
  if (kind == NULL) {
    snprintf(cmd, sizeof(cmd),
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s/k%d.pem "
             "2>/dev/null",
             tmpdir, i);
  } else {
    snprintf(cmd, sizeof(cmd), "%s/keygen.py", tmpdir);
    assert_int_equal(write_file(cmd, (const uint8_t *)keygen_py, strlen(keygen_py)), 0);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/keygen.py %s %llu %s/k%d.pem", tmpdir, kind,
             (unsigned long long)rng_next(), tmpdir, i);
  }
  assert_int_equal(run(cmd), 0);
  snprintf(cmd, sizeof(cmd), "openssl pkey -in %s/k%d.pem -outform DER -out %s/k%d.der", tmpdir, i,
           tmpdir, i);
  assert_int_equal(run(cmd), 0);
  static uint8_t der[4096];
  snprintf(cmd, sizeof(cmd), "%s/k%d.der", tmpdir, i);
  long n = read_file(cmd, der, sizeof(der));
  assert_true(n > 0);
  word32 idx = 0;
  assert_int_equal(wc_InitRsaKey(key, NULL), 0);
  assert_int_equal(wc_RsaPrivateKeyDecode(der, &idx, key, (word32)n), 0);
  assert_int_equal(wc_RsaEncryptSize(key), 256);
}

/* (x mod n)^d mod n without CRT, x given as big-endian bytes (any length up to 256),
 * into out[256]. */
static void ref_private(RsaKey *key, const uint8_t *in, word32 inlen, uint8_t out[256]) {
  mp_int x, r;
  assert_int_equal(mp_init_multi(&x, &r, NULL, NULL, NULL, NULL), MP_OKAY);
  assert_int_equal(mp_read_unsigned_bin(&x, in, inlen), MP_OKAY);
  assert_int_equal(mp_mod(&x, &key->n, &x), MP_OKAY);
  assert_int_equal(mp_exptmod(&x, &key->d, &key->n, &r), MP_OKAY);
  assert_int_equal(mp_to_unsigned_bin_len(&r, out, 256), MP_OKAY);
  mp_clear(&x);
  mp_clear(&r);
}

/* sp_RsaPrivate_2048 (the CRT code the patch changes) on x against the
 * reference; the IFMA counter must move by one exactly when expect_ifma. */
static void check_raw(RsaKey *key, const uint8_t *in, word32 inlen, const char *what) {
  uint8_t got[256], want[256];
  word32 outlen = sizeof(got);
  unsigned long before = sp_2048_ifma_used();
  int err = sp_RsaPrivate_2048(in, inlen, &key->d, &key->p, &key->q, &key->dP, &key->dQ, &key->u,
                               &key->n, got, &outlen);
  if (err != 0 || outlen != 256) {
    fail_msg("sp_RsaPrivate_2048 failed (%d) on %s, seed %llu", err, what,
             (unsigned long long)rng_state);
  }
  if (sp_2048_ifma_used() - before != (unsigned long)expect_ifma) {
    fail_msg("%s: the IFMA path %s", what,
             expect_ifma ? "did not run (this CPU has IFMA)" : "ran where it must not");
  }
  ref_private(key, in, inlen, want);
  if (memcmp(got, want, 256) != 0) {
    fail_msg("CRT result differs from x^d mod n on %s (rng state %llu)", what,
             (unsigned long long)rng_state);
  }
}

/* mp_int to 256 big-endian bytes. */
static void mp_bytes(mp_int *a, uint8_t out[256]) {
  assert_int_equal(mp_to_unsigned_bin_len(a, out, 256), MP_OKAY);
}

/* The edge inputs: multiples of a prime make one CRT half zero. */
static void check_edges(RsaKey *key) {
  uint8_t in[256];
  mp_int t, k;
  assert_int_equal(mp_init_multi(&t, &k, NULL, NULL, NULL, NULL), MP_OKAY);

  memset(in, 0, sizeof(in));
  check_raw(key, in, 256, "0");
  check_raw(key, in, 0, "empty input (0)");
  in[255] = 1;
  check_raw(key, in, 256, "1");
  in[255] = 2;
  check_raw(key, in, 256, "2");
  in[0] = 0x40;
  in[255] = 0;
  check_raw(key, in, 256, "2^2046");

  mp_int *primes[2] = {&key->p, &key->q};
  for (int w = 0; w < 2; w++) {
    mp_int *pr = primes[w];
    /* p, 2p, 3p, ..., and a large random multiple. */
    for (mp_digit m = 1; m <= 5; m++) {
      assert_int_equal(mp_mul_d(pr, m, &t), MP_OKAY);
      mp_bytes(&t, in);
      check_raw(key, in, 256, w ? "small multiple of q" : "small multiple of p");
    }
    for (int j = 0; j < 8; j++) {
      uint8_t kb[120];
      rng_fill(kb, sizeof(kb));
      kb[0] &= 0x7f;
      assert_int_equal(mp_read_unsigned_bin(&k, kb, sizeof(kb)), MP_OKAY);
      assert_int_equal(mp_mul(pr, &k, &t), MP_OKAY);
      mp_bytes(&t, in);
      check_raw(key, in, 256, w ? "random multiple of q" : "random multiple of p");
    }
    assert_int_equal(mp_sub_d(pr, 1, &t), MP_OKAY);
    mp_bytes(&t, in);
    check_raw(key, in, 256, w ? "q - 1" : "p - 1");
    assert_int_equal(mp_add_d(pr, 1, &t), MP_OKAY);
    mp_bytes(&t, in);
    check_raw(key, in, 256, w ? "q + 1" : "p + 1");
    assert_int_equal(mp_sub(&key->n, pr, &t), MP_OKAY);
    mp_bytes(&t, in);
    check_raw(key, in, 256, w ? "n - q" : "n - p");
  }
  assert_int_equal(mp_sub_d(&key->n, 1, &t), MP_OKAY);
  mp_bytes(&t, in);
  check_raw(key, in, 256, "n - 1");
  assert_int_equal(mp_sub_d(&key->n, 2, &t), MP_OKAY);
  mp_bytes(&t, in);
  check_raw(key, in, 256, "n - 2");

  /* Inputs of every length (the top byte non-zero, so each length is
   * really that long; 256 bytes may be >= n: reduced like the rest), and
   * inputs whose CRT halves are all ones or all zeros in the top bits. */
  for (word32 len = 0; len <= 256; len++) {
    rng_fill(in, len);
    if (len > 0 && in[0] == 0) in[0] = 1;
    check_raw(key, in, len, "input of each length");
  }
  /* Inputs >= n (256 bytes at most): n, n + 1, random ones
   * and 2^2048 - 1; the result is (x mod n)^d. */
  assert_int_equal(mp_copy(&key->n, &t), MP_OKAY);
  mp_bytes(&t, in);
  check_raw(key, in, 256, "n");
  assert_int_equal(mp_add_d(&key->n, 1, &t), MP_OKAY);
  mp_bytes(&t, in);
  check_raw(key, in, 256, "n + 1");
  /* n + (random mod (2^2048 - n)): n may be close to 2^2048. */
  memset(in, 0xff, sizeof(in));
  assert_int_equal(mp_read_unsigned_bin(&k, in, 256), MP_OKAY);
  assert_int_equal(mp_sub(&k, &key->n, &k), MP_OKAY);
  assert_int_equal(mp_add_d(&k, 1, &k), MP_OKAY);
  for (int j = 0; j < 16; j++) {
    rng_fill(in, sizeof(in));
    assert_int_equal(mp_read_unsigned_bin(&t, in, 256), MP_OKAY);
    assert_int_equal(mp_mod(&t, &k, &t), MP_OKAY);
    assert_int_equal(mp_add(&t, &key->n, &t), MP_OKAY);
    mp_bytes(&t, in);
    check_raw(key, in, 256, "random input >= n");
  }
  memset(in, 0xff, sizeof(in));
  check_raw(key, in, 256, "2^2048 - 1");
  memset(in, 0xff, sizeof(in));
  in[0] = 0x7f;
  if (mp_read_unsigned_bin(&t, in, 256) == MP_OKAY && mp_cmp(&t, &key->n) == MP_LT) {
    check_raw(key, in, 256, "0x7fff...ff");
  }
  mp_clear(&t);
  mp_clear(&k);
}

/* Random x < n. */
static void check_random_raw(RsaKey *key, int count) {
  uint8_t in[256];
  mp_int t;
  assert_int_equal(mp_init(&t), MP_OKAY);
  for (int i = 0; i < count; i++) {
    do {
      rng_fill(in, sizeof(in));
      assert_int_equal(mp_read_unsigned_bin(&t, in, 256), MP_OKAY);
    } while (mp_cmp(&t, &key->n) != MP_LT);
    check_raw(key, in, 256, "random input");
  }
  mp_clear(&t);
}

/* PKCS#1 v1.5 signatures of random messages, checked with the public key.
 * ifma: whether they must take the IFMA path (at least one operation each)
 * or must not (the counter stays put). */
static void check_signatures(RsaKey *key, WC_RNG *rng, int count, int ifma) {
  uint8_t msg[64], sig[256], back[256];
  unsigned long before = sp_2048_ifma_used();
  for (int i = 0; i < count; i++) {
    word32 len = 1 + (word32)(rng_next() % sizeof(msg));
    rng_fill(msg, len);
    int n = wc_RsaSSL_Sign(msg, len, sig, sizeof(sig), key, rng);
    if (n != 256)
      fail_msg("wc_RsaSSL_Sign returned %d (rng state %llu)", n, (unsigned long long)rng_state);
    n = wc_RsaSSL_Verify(sig, 256, back, sizeof(back), key);
    if (n != (int)len || memcmp(back, msg, len) != 0) {
      fail_msg("signature %d does not verify (rng state %llu)", i, (unsigned long long)rng_state);
    }
  }
  unsigned long ran = sp_2048_ifma_used() - before;
  if (ifma ? ran < (unsigned long)count : ran != 0) {
    fail_msg("%d signatures, %lu IFMA operations (expected %s)", count, ran,
             ifma ? "one or more each" : "none");
  }
}

/* A key rsa.c gives to its generic code (primes not both 1024 bits): raw
 * private operations through wc_RsaFunction against the reference, and
 * signatures; the IFMA counter must not move. */
static void check_generic(RsaKey *key, WC_RNG *rng, int count) {
  uint8_t in[256], got[256], want[256];
  mp_int t;
  unsigned long before = sp_2048_ifma_used();
  assert_int_equal(mp_init(&t), MP_OKAY);
  for (int i = 0; i < count; i++) {
    do {
      rng_fill(in, sizeof(in));
      assert_int_equal(mp_read_unsigned_bin(&t, in, 256), MP_OKAY);
    } while (mp_cmp(&t, &key->n) != MP_LT);
    if (i == 0) {
      assert_int_equal(mp_sub_d(&key->n, 1, &t), MP_OKAY);
      mp_bytes(&t, in);
    }
    word32 outlen = sizeof(got);
    int err = wc_RsaFunction(in, 256, got, &outlen, RSA_PRIVATE_DECRYPT, key, rng);
    if (err != 0 || outlen != 256)
      fail_msg("wc_RsaFunction failed (%d), rng state %llu", err, (unsigned long long)rng_state);
    ref_private(key, in, 256, want);
    if (memcmp(got, want, 256) != 0)
      fail_msg("generic private operation wrong (rng state %llu)", (unsigned long long)rng_state);
  }
  mp_clear(&t);
  check_signatures(key, rng, count, 0);
  assert_int_equal(sp_2048_ifma_used(), before);
}

/* Signatures compared byte for byte with OpenSSL's on the same key. */
static void check_openssl(int keyno, RsaKey *key, WC_RNG *rng, int count) {
  char path[512], cmd[1536];
  uint8_t msg[48], sig[256], theirs[300];
  for (int i = 0; i < count; i++) {
    rng_fill(msg, sizeof(msg));
    snprintf(path, sizeof(path), "%s/m%d", tmpdir, keyno);
    assert_int_equal(write_file(path, msg, sizeof(msg)), 0);
    snprintf(cmd, sizeof(cmd),
             "openssl pkeyutl -sign -inkey %s/k%d.pem -pkeyopt rsa_padding_mode:pkcs1 "
             "-in %s/m%d -out %s/s%d",
             tmpdir, keyno, tmpdir, keyno, tmpdir, keyno);
    assert_int_equal(run(cmd), 0);
    snprintf(path, sizeof(path), "%s/s%d", tmpdir, keyno);
    assert_int_equal(read_file(path, theirs, sizeof(theirs)), 256);
    assert_int_equal(wc_RsaSSL_Sign(msg, sizeof(msg), sig, sizeof(sig), key, rng), 256);
    assert_memory_equal(sig, theirs, 256);
  }
}

/* The key with p and q exchanged: dP, dQ swap and qInv becomes p^-1 mod q. */
static void swap_primes(RsaKey *key) {
  mp_int t;
  assert_int_equal(mp_init(&t), MP_OKAY);
  assert_int_equal(mp_copy(&key->p, &t), MP_OKAY);
  assert_int_equal(mp_copy(&key->q, &key->p), MP_OKAY);
  assert_int_equal(mp_copy(&t, &key->q), MP_OKAY);
  assert_int_equal(mp_copy(&key->dP, &t), MP_OKAY);
  assert_int_equal(mp_copy(&key->dQ, &key->dP), MP_OKAY);
  assert_int_equal(mp_copy(&t, &key->dQ), MP_OKAY);
  assert_int_equal(mp_invmod(&key->q, &key->p, &key->u), MP_OKAY);
  mp_clear(&t);
}

static void test_rsa_private(void **state) {
  (void)state;
  WC_RNG rng;
  assert_int_equal(wc_InitRng(&rng), 0);
  uint64_t seed = 0;
  const char *s = getenv("POSTERN_RSA_TEST_SEED");
  seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
  printf("rng seed %llu (POSTERN_RSA_TEST_SEED repeats it)\n", (unsigned long long)seed);
  rng_state = seed;

  /* Random keys, then chosen primes (keygen_py): "edge", "high". */
  static const char *const kinds[] = {"edge", "high"};
  int nkinds = (int)(sizeof(kinds) / sizeof(kinds[0]));
  for (int i = 0; i < KEYS * scale + nkinds; i++) {
    RsaKey key;
    const char *kind = i < KEYS * scale ? NULL : kinds[i - KEYS * scale];
    int div = kind ? 3 : 1;
    if (kind) printf("key with chosen primes: %s\n", kind);
    make_key(i, &key, kind);
    assert_int_equal(wc_RsaSetRNG(&key, &rng), 0);
    check_edges(&key);
    check_random_raw(&key, RAW_PER_KEY / div);
    check_signatures(&key, &rng, SIGN_PER_KEY / div, expect_ifma);
    check_openssl(i, &key, &rng, OPENSSL_PER_KEY / div);
    swap_primes(&key);
    check_edges(&key);
    check_random_raw(&key, RAW_PER_KEY / 3);
    check_signatures(&key, &rng, SIGN_PER_KEY / 3, expect_ifma);
    wc_FreeRsaKey(&key);
  }
  /* 1025/1023-bit primes: rsa.c's generic code, correct, never IFMA. */
  RsaKey key;
  printf("key with chosen primes: unbalanced (1025/1023 bits)\n");
  make_key(KEYS * scale + nkinds, &key, "unbalanced");
  assert_int_equal(wc_RsaSetRNG(&key, &rng), 0);
  assert_int_equal(mp_count_bits(&key.p), 1025);
  assert_int_equal(mp_count_bits(&key.q), 1023);
  check_generic(&key, &rng, RAW_PER_KEY / 10);
  check_openssl(KEYS * scale + nkinds, &key, &rng, 1);
  wc_FreeRsaKey(&key);
  wc_FreeRng(&rng);
}

/* The same checks in a child without the IFMA path (AVX2 flag cleared). */
static void test_rsa_private_fallback(void **state) {
  (void)state;
  rerun_self_with("POSTERN_TEST_NO_IFMA");
}

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/postern-rsa-test-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
  return run(cmd);
}

int main(void) {
  const char *sc = getenv("POSTERN_RSA_TEST_SCALE");
  if (sc && atoi(sc) > 0) scale = atoi(sc);
  assert_int_equal(wolfCrypt_Init(), 0);
  if (getenv("POSTERN_TEST_NO_IFMA")) {
    /* Before the first RSA operation: cpuid_get_flags fills the flags in
     * first, or the clear would be undone. */
    (void)cpuid_get_flags();
    cpuid_clear_flag(CPUID_AVX2);
    expect_ifma = 0;
    printf("RSA private operation: the fallback (BMI2/ADX code, IFMA path disabled)\n");
    const struct CMUnitTest fallback[] = {cmocka_unit_test(test_rsa_private)};
    return cmocka_run_group_tests_name("rsa sign, fallback", fallback, setup, teardown);
  }
  expect_ifma = cpu_has_ifma();
  printf("RSA private operation: %s\n",
         cpu_has_ifma() ? "AVX-512 IFMA (this CPU has it)"
                        : "this CPU has no AVX-512 IFMA: the fallback is what is tested, twice");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rsa_private),
      cmocka_unit_test(test_rsa_private_fallback),
  };
  return cmocka_run_group_tests_name("rsa sign", tests, setup, teardown);
}
