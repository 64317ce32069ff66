/* postern: unit tests for the changes postern makes to wolfSSL's crypto
 * (.ci/wolfssl-*.patch). Each patched fast path is checked against the code it
 * replaces or against published vectors:
 *   - X25519 key generation through Ed25519's fixed-base table
 *     (wolfssl-x25519-keygen-edwards.patch) must give the ladder's bytes;
 *   - SHA-256 with the x86 SHA extensions (wolfssl-sha256-shani.patch) is
 *     checked against FIPS 180-2 and RFC 4231 vectors and against Python's
 *     hashlib for every length up to 1000 bytes and streamed input; the same
 *     tests run again in a child with the SHA extensions masked, so the
 *     AVX2 path wolfSSL falls back to stays covered on a CPU that has them;
 *   - SSL objects sharing their thread's random generator
 *     (wolfssl-thread-rng.patch): one seed per thread, not per object, and a
 *     seed that fails makes wolfSSL_new fail and the next one try again;
 *   - a TLS 1.3 server that keeps only its suite's transcript hash after the
 *     ServerHello (wolfssl-tls13-transcript-hashes.patch): in-memory
 *     handshakes with each suite, a HelloRetryRequest and resumption, which
 *     fail (Finished) unless both sides hash the same transcript. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "child_test_util.h"
#include "rng_test_util.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/cpuid.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/sha256.h>

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
    assert_int_equal(
        wc_curve25519_import_private_raw_ex(priv[i], 32, pub[i], 32, &mine, EC25519_LITTLE_ENDIAN),
        0);
    assert_int_equal(wc_curve25519_import_public_ex(pub[1 - i], 32, &theirs, EC25519_LITTLE_ENDIAN),
                     0);
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

/* ---- SHA-256 --------------------------------------------------------- */

static void sha256_hex(const uint8_t *msg, size_t len, char out[65]) {
  uint8_t d[WC_SHA256_DIGEST_SIZE];
  wc_Sha256 sha;
  assert_int_equal(wc_InitSha256(&sha), 0);
  assert_int_equal(wc_Sha256Update(&sha, msg, (word32)len), 0);
  assert_int_equal(wc_Sha256Final(&sha, d), 0);
  wc_Sha256Free(&sha);
  for (int i = 0; i < WC_SHA256_DIGEST_SIZE; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

/* FIPS 180-2 appendix B: one block, two blocks, one million 'a'. */
static void test_sha256_fips_vectors(void **state) {
  char hex[65];
  const char *abc = "abc";
  sha256_hex((const uint8_t *)abc, 3, hex);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  sha256_hex((const uint8_t *)two, strlen(two), hex);
  assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

  /* One million 'a', in one call and in 1000 calls of 1000. */
  uint8_t *a = malloc(1000000);
  assert_non_null(a);
  memset(a, 'a', 1000000);
  sha256_hex(a, 1000000, hex);
  assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  wc_Sha256 sha;
  uint8_t d[WC_SHA256_DIGEST_SIZE];
  assert_int_equal(wc_InitSha256(&sha), 0);
  for (int i = 0; i < 1000; i++) assert_int_equal(wc_Sha256Update(&sha, a, 1000), 0);
  assert_int_equal(wc_Sha256Final(&sha, d), 0);
  wc_Sha256Free(&sha);
  for (int i = 0; i < WC_SHA256_DIGEST_SIZE; i++) sprintf(hex + 2 * i, "%02x", d[i]);
  assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(a);

  /* SHA-224 shares the compression function (FIPS 180-2 appendix C... "abc"). */
  wc_Sha224 s224;
  uint8_t d224[WC_SHA224_DIGEST_SIZE];
  assert_int_equal(wc_InitSha224(&s224), 0);
  assert_int_equal(wc_Sha224Update(&s224, (const uint8_t *)abc, 3), 0);
  assert_int_equal(wc_Sha224Final(&s224, d224), 0);
  wc_Sha224Free(&s224);
  for (int i = 0; i < WC_SHA224_DIGEST_SIZE; i++) sprintf(hex + 2 * i, "%02x", d224[i]);
  assert_string_equal(hex, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7");
}

/* The reference: Python's hashlib (OpenSSL's code, not wolfSSL's), run at
 * test time on the same bytes. */
#define REF_MAX 70000
static const size_t ref_long[] = {1024, 4095, 4096, 4097, 65536, REF_MAX};
#define REF_COUNT (1001 + sizeof(ref_long) / sizeof(ref_long[0]))

struct sha_ref {
  uint8_t *msg; /* REF_MAX pseudo-random bytes */
  size_t len[REF_COUNT];
  char hex[REF_COUNT][65];
};

static void sha_ref_load(struct sha_ref *ref, uint64_t seed) {
  char path[] = "/tmp/test_crypto.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  ref->msg = malloc(REF_MAX);
  assert_non_null(ref->msg);
  rng_state = seed;
  rng_fill(ref->msg, REF_MAX);
  assert_int_equal(write(fd, ref->msg, REF_MAX), REF_MAX);
  close(fd);

  char cmd[512];
  snprintf(cmd, sizeof(cmd),
           "/usr/bin/python3 -c 'import hashlib,sys\n"
           "b=open(sys.argv[1],\"rb\").read()\n"
           "for n in list(range(1001))+[int(x) for x in sys.argv[2:]]:"
           " print(n, hashlib.sha256(b[:n]).hexdigest())' %s %zu %zu %zu %zu %zu %zu",
           path, ref_long[0], ref_long[1], ref_long[2], ref_long[3], ref_long[4], ref_long[5]);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  /* Read to the end before pclose, so that the child never writes to a
   * closed pipe; then check that each line is the length asked for. */
  size_t i = 0;
  char line[128];
  while (fgets(line, sizeof(line), p) != NULL) {
    if (i >= REF_COUNT) {
      i = REF_COUNT + 1; /* too many lines, or an earlier one was malformed */
      continue;
    }
    size_t want = i <= 1000 ? i : ref_long[i - 1001];
    if (sscanf(line, "%zu %64s", &ref->len[i], ref->hex[i]) == 2 && ref->len[i] == want &&
        strlen(ref->hex[i]) == 64)
      i++;
    else
      i = REF_COUNT + 1;
  }
  assert_int_equal(pclose(p), 0);
  unlink(path);
  assert_int_equal(i, REF_COUNT);
}

/* Every length from 0 to 1000 (all the padding cases, one to sixteen
 * blocks) and a few long ones, in one update. */
static void test_sha256_lengths(void **state) {
  struct sha_ref *ref = malloc(sizeof(*ref));
  assert_non_null(ref);
  sha_ref_load(ref, 0x5348413235360aULL);
  for (size_t i = 0; i < REF_COUNT; i++) {
    char hex[65];
    sha256_hex(ref->msg, ref->len[i], hex);
    if (strcmp(hex, ref->hex[i]) != 0) {
      print_error("SHA-256 of %zu bytes: %s, hashlib says %s\n", ref->len[i], hex, ref->hex[i]);
      fail();
    }
  }
  free(ref->msg);
  free(ref);
}

/* The same messages fed in pieces split at random points (buffered partial
 * blocks, then whole blocks from unaligned input, then a tail). */
static void test_sha256_streaming(void **state) {
  struct sha_ref *ref = malloc(sizeof(*ref));
  assert_non_null(ref);
  uint64_t seed = 0x73747265616dULL;
  sha_ref_load(ref, seed);
  rng_state = seed ^ 1;
  for (int round = 0; round < 3000; round++) {
    size_t i = (size_t)(rng_next() % REF_COUNT), len = ref->len[i], off = 0;
    wc_Sha256 sha;
    uint8_t d[WC_SHA256_DIGEST_SIZE];
    assert_int_equal(wc_InitSha256(&sha), 0);
    while (off < len) {
      uint64_t r = rng_next();
      /* Mostly short pieces, sometimes several blocks at once. */
      size_t piece = (r & 3) == 0 ? (size_t)((r >> 8) % 1024) : (size_t)((r >> 8) % 97);
      if (piece > len - off) piece = len - off;
      assert_int_equal(wc_Sha256Update(&sha, ref->msg + off, (word32)piece), 0);
      off += piece;
    }
    assert_int_equal(wc_Sha256Final(&sha, d), 0);
    wc_Sha256Free(&sha);
    char hex[65];
    for (int k = 0; k < WC_SHA256_DIGEST_SIZE; k++) sprintf(hex + 2 * k, "%02x", d[k]);
    if (strcmp(hex, ref->hex[i]) != 0) {
      print_error("streamed SHA-256 of %zu bytes differs (round %d)\n", len, round);
      fail();
    }
  }
  free(ref->msg);
  free(ref);
}

/* RFC 4231 4.2-4.8: HMAC-SHA-256 (the TLS 1.3 key schedule's HKDF). */
static void test_hmac_sha256_rfc4231(void **state) {
  static const struct {
    const char *key, *data, *mac; /* hex */
  } v[] = {
      {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL /* 50 x 0xdd */,
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {"0102030405060708090a0b0c0d0e0f10111213141516171819", NULL /* 50 x 0xcd */,
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {"0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c", "546573742057697468205472756e636174696f6e",
       "a3b6167473100ee06e0c796c2955552b" /* truncated to 128 bits */},
      {NULL /* 131 x 0xaa */,
       "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368"
       "204b6579204669727374",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {NULL /* 131 x 0xaa */,
       "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d73697a"
       "65206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a6520646174612e20546865"
       "206b6579206e6565647320746f20626520686173686564206265666f7265206265696e672075736564206279"
       "2074686520484d414320616c676f726974686d2e",
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
  for (size_t t = 0; t < sizeof(v) / sizeof(v[0]); t++) {
    uint8_t key[131], data[160], want[32], mac[WC_SHA256_DIGEST_SIZE];
    size_t klen, dlen, mlen = strlen(v[t].mac) / 2;
    if (v[t].key) {
      klen = strlen(v[t].key) / 2;
      hex_decode(v[t].key, key, klen);
    } else {
      klen = 131;
      memset(key, 0xaa, klen);
    }
    if (v[t].data) {
      dlen = strlen(v[t].data) / 2;
      hex_decode(v[t].data, data, dlen);
    } else {
      dlen = 50;
      memset(data, t == 2 ? 0xdd : 0xcd, dlen);
    }
    hex_decode(v[t].mac, want, mlen);
    Hmac hmac;
    assert_int_equal(wc_HmacInit(&hmac, NULL, INVALID_DEVID), 0);
    assert_int_equal(wc_HmacSetKey(&hmac, WC_SHA256, key, (word32)klen), 0);
    assert_int_equal(wc_HmacUpdate(&hmac, data, (word32)dlen), 0);
    assert_int_equal(wc_HmacFinal(&hmac, mac), 0);
    wc_HmacFree(&hmac);
    assert_memory_equal(mac, want, mlen);
  }
}

/* Run the SHA-256 tests again in a child whose wolfSSL sees no SHA
 * extensions, so the AVX2 transform is chosen (see main). */
static void test_sha256_without_shani(void **state) {
#ifdef CPUID_SHA
  rerun_self_with("POSTERN_TEST_NO_SHANI");
#else
  skip();
#endif
}

/* ---- the per-thread random generator -------------------------------- */

/* wolfSSL seeds its generators with getrandom(2) (WOLFSSL_GETRANDOM). This
 * definition takes the place of libc's for the whole program (wolfSSL is
 * linked statically), so the test can count the seeds and make them fail. */
static _Atomic unsigned getrandom_calls;
static _Atomic int getrandom_fail;

ssize_t getrandom(void *buf, size_t len, unsigned int flags) {
  getrandom_calls++;
  if (getrandom_fail) {
    errno = EIO;
    return -1;
  }
  return syscall(SYS_getrandom, buf, len, flags);
}

static void *thread_rng_other_thread(void *arg) {
  WOLFSSL_CTX *ctx = arg;
  unsigned before = getrandom_calls;
  WOLFSSL *a = wolfSSL_new(ctx), *b = wolfSSL_new(ctx);
  /* This thread's own generator: one seed for both objects. */
  int ok = a != NULL && b != NULL && getrandom_calls == before + 1;
  wolfSSL_free(a);
  wolfSSL_free(b);
  /* LeakSanitizer reports the generator if this does not free it. */
  wolfSSL_FreeThreadRng();
  return ok ? arg : NULL;
}

static void test_thread_rng(void **state) {
  assert_int_equal(wolfSSL_Init(), WOLFSSL_SUCCESS);
  WOLFSSL_CTX *shared = wolfSSL_CTX_new(wolfTLS_client_method());
  WOLFSSL_CTX *own = wolfSSL_CTX_new(wolfTLS_client_method());
  assert_non_null(shared);
  assert_non_null(own);
  assert_int_equal(wolfSSL_CTX_UseThreadRng(shared), WOLFSSL_SUCCESS);
  assert_int_not_equal(wolfSSL_CTX_UseThreadRng(NULL), WOLFSSL_SUCCESS);

  /* One seed for the thread, then none. */
  unsigned before = getrandom_calls;
  WOLFSSL *s[4];
  for (int i = 0; i < 4; i++) assert_non_null(s[i] = wolfSSL_new(shared));
  assert_int_equal(getrandom_calls, before + 1);

  /* A context that did not ask: a seed per object, as in 5.5.4. */
  before = getrandom_calls;
  WOLFSSL *o = wolfSSL_new(own);
  assert_non_null(o);
  assert_int_equal(getrandom_calls, before + 1);
  wolfSSL_free(o);

  /* Freeing the objects leaves the generator to the next ones. */
  for (int i = 0; i < 4; i++) wolfSSL_free(s[i]);
  before = getrandom_calls;
  assert_non_null(s[0] = wolfSSL_new(shared));
  assert_int_equal(getrandom_calls, before);
  wolfSSL_free(s[0]);

  /* Another thread has its own. */
  pthread_t t;
  void *ret;
  assert_int_equal(pthread_create(&t, NULL, thread_rng_other_thread, shared), 0);
  assert_int_equal(pthread_join(t, &ret), 0);
  assert_ptr_equal(ret, shared);

  /* A seed that fails: wolfSSL_new fails cleanly, for the shared generator as
   * for an own one, and the next call instantiates it again. */
  wolfSSL_FreeThreadRng();
  getrandom_fail = 1;
  assert_null(wolfSSL_new(shared));
  assert_null(wolfSSL_new(shared));
  assert_null(wolfSSL_new(own));
  getrandom_fail = 0;
  before = getrandom_calls;
  assert_non_null(s[0] = wolfSSL_new(shared));
  assert_non_null(s[1] = wolfSSL_new(shared));
  assert_int_equal(getrandom_calls, before + 1);
  wolfSSL_free(s[0]);
  wolfSSL_free(s[1]);

  wolfSSL_FreeThreadRng();
  wolfSSL_FreeThreadRng(); /* a second call is harmless */
  wolfSSL_CTX_free(shared);
  wolfSSL_CTX_free(own);
  wolfSSL_Cleanup();
}

/* ---- TLS 1.3 handshakes in memory ------------------------------------ */

struct mem_pipe {
  uint8_t buf[1 << 16];
  size_t len;
};

static int mem_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  struct mem_pipe *p = ctx;
  if (p->len == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
  size_t n = p->len < (size_t)sz ? p->len : (size_t)sz;
  memcpy(buf, p->buf, n);
  memmove(p->buf, p->buf + n, p->len - n);
  p->len -= n;
  return (int)n;
}

static int mem_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  struct mem_pipe *p = ctx;
  if (p->len + (size_t)sz > sizeof(p->buf)) return WOLFSSL_CBIO_ERR_WANT_WRITE;
  memcpy(p->buf + p->len, buf, (size_t)sz);
  p->len += (size_t)sz;
  return sz;
}

static struct mem_pipe *to_server, *to_client;

/* Runs one handshake between new objects of cctx and sctx, offering sess
 * (if not NULL), then one message each way. Returns the client's session
 * (a ticket) for resumption; *resumed tells whether the server resumed. */
static WOLFSSL_SESSION *mem_handshake(WOLFSSL_CTX *cctx, WOLFSSL_CTX *sctx, const char *suite,
                                      WOLFSSL_SESSION *sess, int *resumed) {
  to_server->len = to_client->len = 0;
  WOLFSSL *c = wolfSSL_new(cctx), *s = wolfSSL_new(sctx);
  assert_non_null(c);
  assert_non_null(s);
  wolfSSL_SetIOReadCtx(c, to_client);
  wolfSSL_SetIOWriteCtx(c, to_server);
  wolfSSL_SetIOReadCtx(s, to_server);
  wolfSSL_SetIOWriteCtx(s, to_client);
  assert_int_equal(wolfSSL_set_cipher_list(c, suite), WOLFSSL_SUCCESS);
  if (sess != NULL) assert_int_equal(wolfSSL_set_session(c, sess), WOLFSSL_SUCCESS);
  int cdone = 0, sdone = 0;
  for (int i = 0; i < 20 && !(cdone && sdone); i++) {
    if (!cdone) {
      int rc = wolfSSL_connect(c);
      cdone = rc == WOLFSSL_SUCCESS;
      if (!cdone) assert_int_equal(wolfSSL_get_error(c, rc), WOLFSSL_ERROR_WANT_READ);
    }
    if (!sdone) {
      int rc = wolfSSL_accept(s);
      sdone = rc == WOLFSSL_SUCCESS;
      if (!sdone) assert_int_equal(wolfSSL_get_error(s, rc), WOLFSSL_ERROR_WANT_READ);
    }
  }
  assert_true(cdone && sdone);
  assert_string_equal(wolfSSL_get_cipher_name(s), suite);

  char buf[32];
  assert_int_equal(wolfSSL_write(s, "ping", 4), 4);
  assert_int_equal(wolfSSL_read(c, buf, sizeof(buf)), 4); /* after the ticket */
  assert_memory_equal(buf, "ping", 4);
  assert_int_equal(wolfSSL_write(c, "pong", 4), 4);
  assert_int_equal(wolfSSL_read(s, buf, sizeof(buf)), 4);
  assert_memory_equal(buf, "pong", 4);

  *resumed = wolfSSL_session_reused(s);
  WOLFSSL_SESSION *out = wolfSSL_get1_session(c);
  wolfSSL_free(s);
  wolfSSL_free(c);
  return out;
}

static void test_tls13_handshakes(void **state) {
  char dir[] = "/tmp/test_crypto_pki.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char cmd[512];
  snprintf(cmd, sizeof(cmd),
           "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout key.pem -out cert.pem -subj /CN=localhost -days 2 2>/dev/null",
           dir);
  assert_int_equal(system(cmd), 0);
  char cert[128], key[128];
  snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
  snprintf(key, sizeof(key), "%s/key.pem", dir);

  to_server = calloc(1, sizeof(*to_server));
  to_client = calloc(1, sizeof(*to_client));
  assert_non_null(to_server);
  assert_non_null(to_client);
  assert_int_equal(wolfSSL_Init(), WOLFSSL_SUCCESS);
  WOLFSSL_CTX *sctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
  WOLFSSL_CTX *cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
  assert_non_null(sctx);
  assert_non_null(cctx);
  assert_int_equal(wolfSSL_CTX_use_certificate_file(sctx, cert, WOLFSSL_FILETYPE_PEM),
                   WOLFSSL_SUCCESS);
  assert_int_equal(wolfSSL_CTX_use_PrivateKey_file(sctx, key, WOLFSSL_FILETYPE_PEM),
                   WOLFSSL_SUCCESS);
  wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_NONE, NULL);
  wolfSSL_CTX_set_group_messages(sctx);
  assert_int_equal(wolfSSL_CTX_UseThreadRng(sctx), WOLFSSL_SUCCESS);
  WOLFSSL_CTX *ctxs[] = {sctx, cctx};
  for (int i = 0; i < 2; i++) {
    wolfSSL_CTX_SetIORecv(ctxs[i], mem_recv);
    wolfSSL_CTX_SetIOSend(ctxs[i], mem_send);
  }

  static const char *suites[] = {"TLS13-AES128-GCM-SHA256", "TLS13-AES256-GCM-SHA384",
                                 "TLS13-CHACHA20-POLY1305-SHA256"};
  for (int hrr = 0; hrr <= 1; hrr++) {
    if (hrr) {
      /* The client's key share (P-256, its first group) is not one the
       * server takes: the server asks for X25519 (RFC 8446 4.1.4). */
      int sg[] = {WOLFSSL_ECC_X25519}, cg[] = {WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_X25519};
      assert_int_equal(wolfSSL_CTX_set_groups(sctx, sg, 1), WOLFSSL_SUCCESS);
      assert_int_equal(wolfSSL_CTX_set_groups(cctx, cg, 2), WOLFSSL_SUCCESS);
    }
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
      int resumed;
      WOLFSSL_SESSION *sess = mem_handshake(cctx, sctx, suites[i], NULL, &resumed);
      assert_false(resumed);
      assert_non_null(sess);
      WOLFSSL_SESSION *again = mem_handshake(cctx, sctx, suites[i], sess, &resumed);
      assert_true(resumed);
      wolfSSL_SESSION_free(again);
      wolfSSL_SESSION_free(sess);
    }
  }

  wolfSSL_CTX_free(sctx);
  wolfSSL_CTX_free(cctx);
  wolfSSL_FreeThreadRng();
  wolfSSL_Cleanup();
  free(to_server);
  free(to_client);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

#define SHA256_TESTS                                                                 \
  cmocka_unit_test(test_sha256_fips_vectors), cmocka_unit_test(test_sha256_lengths), \
      cmocka_unit_test(test_sha256_streaming), cmocka_unit_test(test_hmac_sha256_rfc4231)

int main(void) {
#ifdef CPUID_SHA
  if (getenv("POSTERN_TEST_NO_SHANI")) {
    /* Before any hash runs: wolfSSL picks its SHA-256 transform once, from
     * these flags (cpuid_get_flags fills them in first, or the clear would
     * be undone). */
    (void)cpuid_get_flags();
    cpuid_clear_flag(CPUID_SHA);
    const struct CMUnitTest fallback[] = {SHA256_TESTS};
    return cmocka_run_group_tests_name("crypto without SHA extensions", fallback, NULL, NULL);
  }
  printf("SHA extensions: %s\n", IS_INTEL_SHA(cpuid_get_flags()) ? "yes" : "no");
#endif
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_x25519_rfc7748_vectors), cmocka_unit_test(test_x25519_make_pub_random),
      cmocka_unit_test(test_x25519_make_pub_edges),  SHA256_TESTS,
      cmocka_unit_test(test_sha256_without_shani),   cmocka_unit_test(test_thread_rng),
      cmocka_unit_test(test_tls13_handshakes),
  };
  return cmocka_run_group_tests_name("crypto", tests, NULL, NULL);
}
