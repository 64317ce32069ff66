/* postern: unit tests for the server-name lookup tables (src/sni.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/common.h"
#include "postern/sni.h"

static int lookup(const pst_sni_map_t *map, const char *name) {
  return pst_sni_map_lookup(map, name, strlen(name));
}

static int setup_map(void **state) {
  pst_sni_map_t *map = pst_sni_map_new();
  if (map == NULL) return -1;
  *state = map;
  return 0;
}

static int teardown_map(void **state) {
  pst_sni_map_free(*state);
  return 0;
}

static void test_exact(void **state) {
  pst_sni_map_t *map = *state;
  assert_int_equal(pst_sni_map_add(map, "example.test", 1), 0);
  assert_int_equal(pst_sni_map_add(map, "www.example.test", 2), 0);
  assert_int_equal(lookup(map, "example.test"), 1);
  assert_int_equal(lookup(map, "www.example.test"), 2);
  assert_int_equal(lookup(map, "api.example.test"), -1);
  assert_int_equal(lookup(map, "example.tes"), -1);
  assert_int_equal(lookup(map, "example.testx"), -1);
}

static void test_wildcard(void **state) {
  pst_sni_map_t *map = *state;
  assert_int_equal(pst_sni_map_add(map, "*.example.test", 7), 0);
  assert_int_equal(lookup(map, "a.example.test"), 7);
  assert_int_equal(lookup(map, "www.example.test"), 7);
  assert_int_equal(lookup(map, "x-1_y.example.test"), 7);
  /* The base name itself is not covered. */
  assert_int_equal(lookup(map, "example.test"), -1);
  /* Two labels deep is not covered. */
  assert_int_equal(lookup(map, "b.a.example.test"), -1);
  /* An empty first label is not a label. */
  assert_int_equal(lookup(map, ".example.test"), -1);
  assert_int_equal(lookup(map, "aexample.test"), -1);
  /* A single-label wildcard base is allowed and behaves the same. */
  assert_int_equal(pst_sni_map_add(map, "*.test", 8), 0);
  assert_int_equal(lookup(map, "other.test"), 8);
  assert_int_equal(lookup(map, "example.test"), 8);
  assert_int_equal(lookup(map, "test"), -1);
}

static void test_exact_over_wildcard(void **state) {
  pst_sni_map_t *map = *state;
  /* Added wildcard first, to show order does not matter. */
  assert_int_equal(pst_sni_map_add(map, "*.example.test", 1), 0);
  assert_int_equal(pst_sni_map_add(map, "www.example.test", 2), 0);
  assert_int_equal(pst_sni_map_add(map, "example.test", 3), 0);
  assert_int_equal(lookup(map, "www.example.test"), 2);
  assert_int_equal(lookup(map, "api.example.test"), 1);
  assert_int_equal(lookup(map, "example.test"), 3);
}

/* pst_sni_map_get finds a name as written: the wildcard entry for "*.b",
 * never the exact one, and the other way round. */
static void test_get_as_written(void **state) {
  pst_sni_map_t *m = *state;
  assert_int_equal(pst_sni_map_add(m, "*.example.test", 1), 0);
  assert_int_equal(pst_sni_map_add(m, "a.example.test", 2), 0);
  assert_int_equal(pst_sni_map_get(m, "*.example.test"), 1);
  assert_int_equal(pst_sni_map_get(m, "*.EXAMPLE.test."), 1);
  assert_int_equal(pst_sni_map_get(m, "a.example.test"), 2);
  assert_int_equal(pst_sni_map_get(m, "b.example.test"), -1);
  assert_int_equal(pst_sni_map_get(m, "example.test"), -1);
  assert_int_equal(pst_sni_map_get(m, "*.a.example.test"), -1);
}

static void test_case(void **state) {
  pst_sni_map_t *map = *state;
  assert_int_equal(pst_sni_map_add(map, "Example.TEST", 1), 0);
  assert_int_equal(pst_sni_map_add(map, "*.Wild.Example.Test", 2), 0);
  assert_int_equal(lookup(map, "example.test"), 1);
  assert_int_equal(lookup(map, "EXAMPLE.TEST"), 1);
  assert_int_equal(lookup(map, "eXaMpLe.TeSt"), 1);
  assert_int_equal(lookup(map, "ABC.wild.example.test"), 2);
  assert_int_equal(lookup(map, "abc.WILD.EXAMPLE.TEST"), 2);
  /* A different name that hashes alike but differs in one byte. */
  assert_int_equal(lookup(map, "example.tesu"), -1);
  /* Duplicates are detected across case too. */
  assert_int_equal(pst_sni_map_add(map, "EXAMPLE.test", 9), 1);
  assert_int_equal(pst_sni_map_add(map, "*.wild.EXAMPLE.test", 9), 1);
}

static void test_trailing_dot(void **state) {
  pst_sni_map_t *map = *state;
  assert_int_equal(pst_sni_map_add(map, "example.test.", 1), 0);
  assert_int_equal(pst_sni_map_add(map, "*.wild.test.", 2), 0);
  assert_int_equal(lookup(map, "example.test"), 1);
  assert_int_equal(lookup(map, "example.test."), 1);
  assert_int_equal(lookup(map, "a.wild.test."), 2);
  assert_int_equal(lookup(map, "a.wild.test"), 2);
  /* Only one trailing dot is ignored. */
  assert_int_equal(lookup(map, "example.test.."), -1);
  assert_int_equal(lookup(map, "."), -1);
  /* "example.test" and "example.test." are the same name. */
  assert_int_equal(pst_sni_map_add(map, "example.test", 5), 1);
}

static void test_no_match(void **state) {
  pst_sni_map_t *map = *state;
  assert_int_equal(pst_sni_map_add(map, "example.test", 1), 0);
  assert_int_equal(lookup(map, "example.org"), -1);
  assert_int_equal(lookup(map, ""), -1);
  assert_int_equal(lookup(map, "test"), -1);
  assert_int_equal(pst_sni_map_lookup(map, NULL, 0), -1);
}

static void test_duplicate_keeps_first(void **state) {
  pst_sni_map_t *map = *state;
  assert_int_equal(pst_sni_map_add(map, "example.test", 1), 0);
  assert_int_equal(pst_sni_map_add(map, "example.test", 2), 1);
  assert_int_equal(pst_sni_map_add(map, "*.example.test", 3), 0);
  assert_int_equal(pst_sni_map_add(map, "*.example.test", 4), 1);
  assert_int_equal(lookup(map, "example.test"), 1);
  assert_int_equal(lookup(map, "a.example.test"), 3);
}

static void test_malformed(void **state) {
  pst_sni_map_t *map = *state;
  static const char *const bad[] = {
      "",
      ".",
      "*",
      "*.",
      "**.example.test",
      "*example.test",
      "a*.example.test",
      "www.*.example.test",
      "www.example.*",
      "*.*.example.test",
      ".example.test",
      "example..test",
      "example.test..",
      "exa mple.test",
      "example.test:443",
      "https://example.test",
      "caf\xc3\xa9.test",
  };
  for (size_t i = 0; i < PST_ARRAY_SIZE(bad); i++) {
    if (pst_sni_map_add(map, bad[i], 1) != PST_ECONFIG) fail_msg("accepted \"%s\"", bad[i]);
  }
  assert_int_equal(pst_sni_map_add(map, "example.test", -1), -EINVAL);

  /* Length limits: labels of 63 bytes, names of 253 bytes. */
  char label[70];
  memset(label, 'a', 63);
  strcpy(label + 63, ".test");
  assert_int_equal(pst_sni_map_add(map, label, 1), 0);
  memset(label, 'b', 64);
  strcpy(label + 64, ".test");
  assert_int_equal(pst_sni_map_add(map, label, 1), PST_ECONFIG);

  char name[300];
  size_t n = 0;
  while (n + 10 <= 253) { /* "aaaaaaaaa." blocks of 10 */
    memset(name + n, 'c', 9);
    name[n + 9] = '.';
    n += 10;
  }
  memset(name + n, 'd', 253 - n); /* fill to exactly 253 bytes */
  name[253] = '\0';
  assert_int_equal(pst_sni_map_add(map, name, 1), 0);
  assert_int_equal(lookup(map, name), 1);
  name[253] = '.';
  name[254] = '\0'; /* 253 plus a trailing dot is still fine */
  assert_int_equal(pst_sni_map_add(map, name, 2), 1);
  name[253] = 'd';
  name[254] = '\0'; /* 254 bytes */
  assert_int_equal(pst_sni_map_add(map, name, 1), PST_ECONFIG);
  assert_int_equal(lookup(map, name), -1);

  /* Nothing malformed went in. */
  assert_int_equal(lookup(map, "a.example.test"), -1);
}

static void test_not_nul_terminated(void **state) {
  pst_sni_map_t *map = *state;
  assert_int_equal(pst_sni_map_add(map, "example.test", 1), 0);
  assert_int_equal(pst_sni_map_add(map, "*.example.test", 2), 0);
  /* A heap copy without a terminator, so ASan catches any over-read. */
  static const char text[] = "www.example.testXYZ";
  char *buf = malloc(sizeof(text) - 1);
  assert_non_null(buf);
  memcpy(buf, text, sizeof(text) - 1);
  assert_int_equal(pst_sni_map_lookup(map, buf, 16), 2);      /* www.example.test */
  assert_int_equal(pst_sni_map_lookup(map, buf + 4, 12), 1);  /* example.test */
  assert_int_equal(pst_sni_map_lookup(map, buf + 4, 15), -1); /* example.testXYZ */
  assert_int_equal(pst_sni_map_lookup(map, buf, 4), -1);      /* "www." */
  assert_int_equal(pst_sni_map_lookup(map, buf, sizeof(text) - 1), -1);
  free(buf);
}

static void test_empty_map(void **state) {
  pst_sni_map_t *map = *state;
  assert_int_equal(lookup(map, "example.test"), -1);
  assert_int_equal(lookup(map, "a.example.test"), -1);
  assert_int_equal(lookup(map, ""), -1);
  pst_sni_map_free(NULL);
}

/* Many names: the tables grow and every name stays reachable. */
static void test_many(void **state) {
  pst_sni_map_t *map = *state;
  char name[64];
  for (int i = 0; i < 5000; i++) {
    snprintf(name, sizeof(name), "host%d.example.test", i);
    assert_int_equal(pst_sni_map_add(map, name, i), 0);
    snprintf(name, sizeof(name), "*.zone%d.test", i);
    assert_int_equal(pst_sni_map_add(map, name, 100000 + i), 0);
  }
  for (int i = 0; i < 5000; i++) {
    snprintf(name, sizeof(name), "HOST%d.example.test", i);
    assert_int_equal(lookup(map, name), i);
    snprintf(name, sizeof(name), "x.zone%d.test", i);
    assert_int_equal(lookup(map, name), 100000 + i);
  }
  assert_int_equal(lookup(map, "host5000.example.test"), -1);
  assert_int_equal(lookup(map, "zone1.test"), -1);
}

/* Selection for a ClientHello: match, default, reject, and no SNI. */
static void test_select(void **state) {
  pst_sni_map_t *map = *state;
  assert_int_equal(pst_sni_map_add(map, "example.test", 0), 0);
  assert_int_equal(pst_sni_map_add(map, "*.example.test", 1), 0);
  /* A match wins whatever the policy. */
  assert_int_equal(pst_sni_select(map, "example.test", 12, 7, 0), 0);
  assert_int_equal(pst_sni_select(map, "EXAMPLE.test", 12, 7, 1), 0);
  assert_int_equal(pst_sni_select(map, "x.example.test", 14, 7, 1), 1);
  /* Unknown name: the default, or a rejection. */
  assert_int_equal(pst_sni_select(map, "unknown.invalid", 15, 7, 0), 7);
  assert_int_equal(pst_sni_select(map, "unknown.invalid", 15, 7, 1), PST_SNI_REJECT);
  /* No SNI at all: always the default, even with reject. */
  assert_int_equal(pst_sni_select(map, NULL, 0, 7, 0), 7);
  assert_int_equal(pst_sni_select(map, NULL, 0, 7, 1), 7);
  assert_int_equal(pst_sni_select(map, "", 0, 7, 1), 7);
  /* A wildcard match two labels deep is no match. */
  assert_int_equal(pst_sni_select(map, "a.b.example.test", 16, 7, 1), PST_SNI_REJECT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_exact, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_wildcard, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_exact_over_wildcard, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_case, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_get_as_written, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_trailing_dot, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_no_match, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_duplicate_keeps_first, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_malformed, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_not_nul_terminated, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_empty_map, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_many, setup_map, teardown_map),
      cmocka_unit_test_setup_teardown(test_select, setup_map, teardown_map),
  };
  return cmocka_run_group_tests_name("sni", tests, NULL, NULL);
}
