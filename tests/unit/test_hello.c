/* postern: unit tests for the ClientHello scanner (src/hello.c): whole and
 * partial hellos, hellos over several records, and what it must refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/common.h"
#include "postern/hello.h"

/* A growable byte string for building messages. */
typedef struct {
  uint8_t b[80000];
  size_t n;
} bytes_t;

static void put(bytes_t *o, const void *p, size_t n) {
  memcpy(o->b + o->n, p, n);
  o->n += n;
}

static void put8(bytes_t *o, unsigned v) { o->b[o->n++] = (uint8_t)v; }

static void put16(bytes_t *o, unsigned v) {
  put8(o, v >> 8);
  put8(o, v);
}

static void put24(bytes_t *o, size_t v) {
  put8(o, (unsigned)(v >> 16));
  put16(o, (unsigned)v);
}

static void ext(bytes_t *o, unsigned type, const bytes_t *data) {
  put16(o, type);
  put16(o, (unsigned)data->n);
  put(o, data->b, data->n);
}

typedef struct {
  int early;               /* add early_data */
  int identities;          /* 0: no pre_shared_key */
  int psk_not_last;        /* put an extension after pre_shared_key */
  int no_exts;             /* no extensions block at all */
  size_t padding;          /* a padding extension of this size (RFC 7685) */
  const uint16_t *sigalgs; /* signature_algorithms to list, 0-terminated; NULL: none */
  const uint16_t *suites;  /* cipher suites, 0-terminated; NULL: TLS 1.3's two */
  uint8_t binder_fill;
} hello_opts_t;

/* The ClientHello handshake message (header included). */
static void build_hello(bytes_t *msg, const hello_opts_t *o) {
  static bytes_t body, exts, e;
  body.n = exts.n = 0;
  put16(&body, 0x0303);
  for (int i = 0; i < 32; i++) put8(&body, (unsigned)i);
  put8(&body, 32);
  for (int i = 0; i < 32; i++) put8(&body, 0xaa);
  if (o->suites != NULL) {
    size_t n = 0;
    while (o->suites[n] != 0) n++;
    put16(&body, (unsigned)(2 * n));
    for (size_t i = 0; i < n; i++) put16(&body, o->suites[i]);
  } else {
    put16(&body, 4);
    put16(&body, 0x1301);
    put16(&body, 0x1302);
  }
  put8(&body, 1);
  put8(&body, 0);
  if (!o->no_exts) {
    e.n = 0;
    put8(&e, 2); /* supported_versions: TLS 1.3 */
    put16(&e, 0x0304);
    ext(&exts, 43, &e);
    e.n = 0; /* key_share: X448 (56 bytes), X25519 (32 bytes) */
    put16(&e, 2 + 2 + 56 + 2 + 2 + 32);
    put16(&e, 0x001e);
    put16(&e, 56);
    for (int i = 0; i < 56; i++) put8(&e, 0x11);
    put16(&e, 0x001d);
    put16(&e, 32);
    for (int i = 0; i < 32; i++) put8(&e, 0x22);
    ext(&exts, 51, &e);
    if (o->sigalgs != NULL) {
      size_t n = 0;
      while (o->sigalgs[n] != 0) n++;
      e.n = 0;
      put16(&e, (unsigned)(2 * n));
      for (size_t i = 0; i < n; i++) put16(&e, o->sigalgs[i]);
      ext(&exts, 13, &e);
    }
    if (o->padding > 0) {
      e.n = 0;
      memset(e.b, 0, o->padding);
      e.n = o->padding;
      ext(&exts, 21, &e);
    }
    if (o->early) {
      e.n = 0;
      ext(&exts, 42, &e);
    }
    if (o->identities > 0) {
      static bytes_t ids, binders;
      ids.n = binders.n = 0;
      for (int i = 0; i < o->identities; i++) {
        put16(&ids, 100);
        for (int k = 0; k < 100; k++) put8(&ids, (unsigned)(i + k));
        put16(&ids, 0x1234);
        put16(&ids, 0x5678);
        put8(&binders, 32);
        for (int k = 0; k < 32; k++) put8(&binders, (unsigned)(o->binder_fill + i + k));
      }
      e.n = 0;
      put16(&e, (unsigned)ids.n);
      put(&e, ids.b, ids.n);
      put16(&e, (unsigned)binders.n);
      put(&e, binders.b, binders.n);
      ext(&exts, 41, &e);
    }
    if (o->psk_not_last) {
      e.n = 0;
      ext(&exts, 45, &e);
    }
    put16(&body, (unsigned)exts.n);
    put(&body, exts.b, exts.n);
  }
  msg->n = 0;
  put8(msg, 1);
  put24(msg, body.n);
  put(msg, body.b, body.n);
}

/* Wraps msg in handshake records of at most frag bytes each. */
static void records(bytes_t *out, const bytes_t *msg, size_t frag) {
  out->n = 0;
  for (size_t off = 0; off < msg->n; off += frag) {
    size_t n = msg->n - off < frag ? msg->n - off : frag;
    put8(out, 22);
    put16(out, 0x0301);
    put16(out, (unsigned)n);
    put(out, msg->b + off, n);
  }
}

static bytes_t msg, wire;

/* What the certificate choice reads (tls.c): signature schemes, by kind,
 * unknown ones skipped; TLS 1.2 suites by authentication; TLS 1.3 offered. */
static void test_certificate_choice(void **state) {
  (void)state;
  static const uint16_t sigalgs[] = {0x0403, 0xfe00, 0x0804, 0x0401, 0x0807, 0};
  static const uint16_t suites[] = {0x1301, 0xc02f, 0x00ff, 0};
  hello_opts_t o = {.sigalgs = sigalgs, .suites = suites};
  pst_hello_t h;
  build_hello(&msg, &o);
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), 0);
  assert_true(h.has_sigalgs);
  assert_int_equal(h.sigalgs, PST_HELLO_SIG_ECDSA_P256 | PST_HELLO_SIG_RSA_PSS |
                                  PST_HELLO_SIG_RSA_PKCS1 | PST_HELLO_SIG_ED25519);
  assert_int_equal(h.suites, PST_HELLO_SUITE_RSA);
  assert_true(h.tls13);
  assert_false(h.has_groups); /* this builder sends no supported_groups */

  static const uint16_t p384[] = {0x0503, 0x0603, 0};
  static const uint16_t ecdsa12[] = {0xc02b, 0xcca9, 0};
  hello_opts_t o2 = {.sigalgs = p384, .suites = ecdsa12};
  build_hello(&msg, &o2);
  records(&wire, &msg, 100); /* over several records */
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), 0);
  assert_int_equal(h.sigalgs, PST_HELLO_SIG_ECDSA_P384 | PST_HELLO_SIG_ECDSA_P521);
  assert_int_equal(h.suites, PST_HELLO_SUITE_ECDSA);

  hello_opts_t none = {0};
  build_hello(&msg, &none);
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), 0);
  assert_false(h.has_sigalgs);
  assert_int_equal(h.sigalgs, 0);

  /* An odd-length list is malformed: the scanner gives up (wolfSSL judges). */
  static const uint16_t one[] = {0x0403, 0};
  hello_opts_t odd = {.sigalgs = one};
  build_hello(&msg, &odd);
  msg.b[msg.n - 3] = 3; /* the list length inside the last extension */
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), PST_EPROTO);
}

static void test_full_hello(void **state) {
  hello_opts_t o = {.early = 1, .identities = 1, .binder_fill = 0x40};
  pst_hello_t h;
  build_hello(&msg, &o);
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), 0);
  assert_true(h.early_data);
  assert_true(h.psk);
  assert_int_equal(h.identities, 1);
  assert_int_equal(h.binder_len, 32);
  for (int k = 0; k < 32; k++) assert_int_equal(h.binder[k], 0x40 + k);
  assert_int_equal(h.n_share_groups, 2);
  assert_int_equal(h.share_groups[0], 0x001e);
  assert_int_equal(h.share_groups[1], 0x001d);
  /* Bytes after the ClientHello (early data records) change nothing. */
  uint8_t more[] = {23, 3, 3, 0, 5, 1, 2, 3, 4, 5};
  put(&wire, more, sizeof(more));
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), 0);
  assert_true(h.early_data);
}

static void test_every_prefix_needs_more(void **state) {
  hello_opts_t o = {.early = 1, .identities = 1};
  pst_hello_t h;
  build_hello(&msg, &o);
  records(&wire, &msg, 16384);
  for (size_t n = 0; n < wire.n; n++) {
    assert_int_equal(pst_hello_scan(wire.b, n, &h), PST_HELLO_NEED_MORE);
  }
}

static void test_fragmented(void **state) {
  hello_opts_t o = {.early = 1, .identities = 2, .binder_fill = 7};
  pst_hello_t h;
  build_hello(&msg, &o);
  size_t frags[] = {1, 2, 3, 5, 100, 257};
  for (size_t i = 0; i < PST_ARRAY_SIZE(frags); i++) {
    records(&wire, &msg, frags[i]);
    assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), 0);
    assert_true(h.early_data && h.psk);
    assert_int_equal(h.identities, 2);
    assert_int_equal(h.binder[0], 7); /* the first binder */
    assert_int_equal(pst_hello_scan(wire.b, wire.n - 1, &h), PST_HELLO_NEED_MORE);
  }
  /* A ClientHello bigger than one record (a big padding extension). */
  hello_opts_t big = {.early = 1, .identities = 1, .padding = 20000};
  build_hello(&msg, &big);
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), 0);
  assert_true(h.early_data && h.psk);
}

static void test_no_early_data(void **state) {
  pst_hello_t h;
  hello_opts_t plain = {0};
  build_hello(&msg, &plain);
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), 0);
  assert_false(h.early_data);
  assert_false(h.psk);
  hello_opts_t psk_only = {.identities = 1};
  build_hello(&msg, &psk_only);
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), 0);
  assert_false(h.early_data);
  assert_true(h.psk);
  hello_opts_t none = {.no_exts = 1};
  build_hello(&msg, &none);
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), 0);
  assert_false(h.early_data);
}

static void test_refused(void **state) {
  pst_hello_t h;
  /* Not TLS at all. */
  const char *get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(pst_hello_scan((const uint8_t *)get, strlen(get), &h), PST_EPROTO);
  /* Application data first. */
  uint8_t app[] = {23, 3, 3, 0, 1, 0};
  assert_int_equal(pst_hello_scan(app, sizeof(app), &h), PST_EPROTO);
  /* A record longer than 2^14. */
  uint8_t huge[] = {22, 3, 1, 0x40, 0x01};
  assert_int_equal(pst_hello_scan(huge, sizeof(huge), &h), PST_EPROTO);
  /* An empty handshake record. */
  uint8_t empty[] = {22, 3, 1, 0, 0};
  assert_int_equal(pst_hello_scan(empty, sizeof(empty), &h), PST_EPROTO);
  /* Another handshake message (ServerHello). */
  uint8_t sh[] = {22, 3, 3, 0, 4, 2, 0, 0, 0};
  assert_int_equal(pst_hello_scan(sh, sizeof(sh), &h), PST_EPROTO);
  /* A ClientHello announcing more than PST_HELLO_MAX. */
  uint8_t big[] = {22, 3, 1, 0, 4, 1, 0x01, 0x00, 0x01};
  assert_int_equal(pst_hello_scan(big, sizeof(big), &h), PST_EPROTO);
  /* pre_shared_key not last (RFC 8446 4.2.11). */
  hello_opts_t notlast = {.early = 1, .identities = 1, .psk_not_last = 1};
  build_hello(&msg, &notlast);
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), PST_EPROTO);
  assert_false(h.early_data); /* nothing half-filled is left */
  /* Extensions whose length is off by one. */
  hello_opts_t good = {.early = 1, .identities = 1};
  build_hello(&msg, &good);
  size_t exts_len_at = 4 + 2 + 32 + 1 + 32 + 2 + 4 + 1 + 1;
  msg.b[exts_len_at + 1]++;
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), PST_EPROTO);
  /* A hello shorter than its own fields. */
  uint8_t tiny[] = {22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3};
  assert_int_equal(pst_hello_scan(tiny, sizeof(tiny), &h), PST_EPROTO);
  /* A key share without its key. */
  build_hello(&msg, &good);
  size_t ks = exts_len_at + 2 + 4 + 3; /* after supported_versions */
  assert_int_equal(msg.b[ks + 1], 51);
  msg.b[ks + 2 + 2 + 2 + 2 + 1] = 0; /* the X448 share's length: 0 */
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), PST_EPROTO);
  /* A truncated binder list. */
  build_hello(&msg, &good);
  msg.b[msg.n - 33] = 60; /* the binder says 60 bytes, 32 follow */
  records(&wire, &msg, 16384);
  assert_int_equal(pst_hello_scan(wire.b, wire.n, &h), PST_EPROTO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_hello), cmocka_unit_test(test_every_prefix_needs_more),
      cmocka_unit_test(test_fragmented), cmocka_unit_test(test_no_early_data),
      cmocka_unit_test(test_refused),    cmocka_unit_test(test_certificate_choice),
  };
  return cmocka_run_group_tests_name("hello", tests, NULL, NULL);
}
