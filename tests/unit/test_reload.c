/* Unit tests for the pure parts of the reload transaction: which listeners
 * keep their sockets (matched by address), and the "what changed" text of
 * the "reload ok" log line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "postern/cert-t.h"
#include "postern/config.h"
#include "postern/gen.h"
#include "postern/reload.h"

static char dir[] = "/tmp/postern-test-reload-XXXXXX";
static char cert_a[256], cert_b[256], key_a[256];

static int setup(void **state) {
  if (mkdtemp(dir) == NULL) return -1;
  char *paths[] = {cert_a, cert_b, key_a};
  const char *names[] = {"a.pem", "b.pem", "a.key"};
  for (int i = 0; i < 3; i++) {
    snprintf(paths[i], 256, "%s/%s", dir, names[i]);
    FILE *f = fopen(paths[i], "w");
    if (f == NULL) return -1;
    fputs("not read by the parser\n", f);
    fclose(f);
  }
  return 0;
}

static int teardown(void **state) {
  unlink(cert_a);
  unlink(cert_b);
  unlink(key_a);
  rmdir(dir);
  return 0;
}

/* A config from a YAML text in which CERT and KEY stand for the test files. */
static pst_config_t *parse(const char *tmpl) {
  char text[4096], err[512];
  size_t o = 0;
  for (const char *p = tmpl; *p != '\0' && o < sizeof(text) - 300;) {
    if (strncmp(p, "CERTB", 5) == 0) {
      o += (size_t)snprintf(text + o, sizeof(text) - o, "%s", cert_b);
      p += 5;
    } else if (strncmp(p, "CERT", 4) == 0) {
      o += (size_t)snprintf(text + o, sizeof(text) - o, "%s", cert_a);
      p += 4;
    } else if (strncmp(p, "KEY", 3) == 0) {
      o += (size_t)snprintf(text + o, sizeof(text) - o, "%s", key_a);
      p += 3;
    } else {
      text[o++] = *p++;
    }
  }
  text[o] = '\0';
  pst_config_t *cfg = NULL;
  int rc = pst_config_parse("t.yaml", text, o, &cfg, err, sizeof(err));
  if (rc != 0) print_error("config error: %s\n", err);
  assert_int_equal(rc, 0);
  return cfg;
}

/* A generation with a config and no certificates: what describe reads. */
static pst_gen_t *fake_gen(pst_config_t *cfg) {
  pst_gen_t *g = calloc(1, sizeof(*g));
  assert_non_null(g);
  g->cfg = cfg;
  g->listeners = calloc(cfg->n_listeners, sizeof(*g->listeners));
  assert_non_null(g->listeners);
  for (size_t i = 0; i < cfg->n_listeners; i++) g->listeners[i].conf = &cfg->listeners[i];
  return g;
}

static void fake_gen_free(pst_gen_t *g) {
  free(g->listeners);
  pst_config_free(g->cfg);
  free(g);
}

#define LISTENER(name, port, extra) \
  "  - name: " name                 \
  "\n"                              \
  "    listen: \"127.0.0.1:" port   \
  "\"\n"                            \
  "    backend: \"builtin:info\"\n" \
  "    tls:\n"                      \
  "      certificates:\n"           \
  "        - {cert: CERT, key: KEY}\n" extra

/* Runs match + describe on two config texts; returns the text (static). */
static const char *describe(const char *old_text, const char *new_text, long *keep_out) {
  static char buf[2048];
  pst_gen_t *a = fake_gen(parse(old_text)), *b = fake_gen(parse(new_text));
  long keep[16];
  pst_reload_match(a->cfg, b->cfg, keep);
  if (keep_out != NULL) memcpy(keep_out, keep, sizeof(long) * b->cfg->n_listeners);
  pst_reload_describe(a, b, keep, buf, sizeof(buf));
  fake_gen_free(a);
  fake_gen_free(b);
  return buf;
}

static void test_match_by_address(void **state) {
  pst_config_t *a = parse("listeners:\n" LISTENER("one", "8443", "") LISTENER("two", "8444", ""));
  pst_config_t *b = parse("listeners:\n" LISTENER("renamed", "8444", "")
                              LISTENER("three", "8445", "") LISTENER("four", "8443", ""));
  long keep[3];
  assert_int_equal(pst_reload_match(a, b, keep), 2);
  assert_int_equal(keep[0], 1); /* same address, another name: the same socket */
  assert_int_equal(keep[1], -1);
  assert_int_equal(keep[2], 0);
  pst_config_free(a);
  pst_config_free(b);
}

static void test_match_family_and_host_matter(void **state) {
  pst_config_t *a = parse("listeners:\n" LISTENER("one", "8443", ""));
  pst_config_t *b = parse(
      "listeners:\n"
      "  - listen: \"[::1]:8443\"\n"
      "    backend: \"builtin:info\"\n"
      "    tls: {certificates: [{cert: CERT, key: KEY}]}\n"
      "  - listen: \"127.0.0.2:8443\"\n"
      "    backend: \"builtin:info\"\n"
      "    tls: {certificates: [{cert: CERT, key: KEY}]}\n");
  long keep[2];
  assert_int_equal(pst_reload_match(a, b, keep), 0);
  assert_int_equal(keep[0], -1);
  assert_int_equal(keep[1], -1);
  pst_config_free(a);
  pst_config_free(b);
}

static void test_describe_nothing(void **state) {
  const char *t = "listeners:\n" LISTENER("one", "8443", "");
  assert_string_equal(describe(t, t, NULL), "nothing changed");
}

static void test_describe_listeners_added_removed(void **state) {
  const char *s =
      describe("listeners:\n" LISTENER("one", "8443", "") LISTENER("two", "8444", ""),
               "listeners:\n" LISTENER("one", "8443", "") LISTENER("three", "8445", ""), NULL);
  assert_string_equal(s,
                      "listener three added on 127.0.0.1:8445; "
                      "listener two removed from 127.0.0.1:8444 (its connections drain)");
}

static void test_describe_settings(void **state) {
  const char *s = describe(
      "listeners:\n" LISTENER("one", "8443", ""),
      "listeners:\n" LISTENER("uno", "8443",
                              "    alpn: [h2]\n"
                              "    max_connections: 5000\n"
                              "    timeouts: {idle: 5s}\n"
                              "    routes:\n"
                              "      - {names: [api.example.test], backend: \"builtin:info\"}\n"),
      NULL);
  assert_string_equal(s,
                      "listener uno: settings changed: name (was one), alpn, routes, timeouts, "
                      "max_connections 5000 (was 10000)");
}

static void test_describe_top_level(void **state) {
  const char *s = describe("log_level: info\nlisteners:\n" LISTENER("one", "8443", ""),
                           "log_level: debug\nshutdown_timeout: 5s\nexpiry_warn_days: 30\n"
                           "watch: true\nwatch_debounce: 250ms\n"
                           "listeners:\n" LISTENER("one", "8443", ""),
                           NULL);
  assert_string_equal(s,
                      "log_level debug (was info); shutdown_timeout 5s (was 10s); "
                      "expiry_warn_days 30 (was 21); watch on; watch_debounce 250ms (was 1s)");
}

static void test_describe_workers_need_restart(void **state) {
  const char *s = describe("workers: 2\nlisteners:\n" LISTENER("one", "8443", ""),
                           "workers: 4\nlisteners:\n" LISTENER("one", "8443", ""), NULL);
  assert_string_equal(s, "workers 4 (running 2: takes effect at the next start)");
}

/* A certificate as pst_cert_load would leave it, for what describe reads. */
static pst_cert_t *fake_cert(const char *path, const char *pem, const char *key, const char *serial,
                             const char *name) {
  pst_cert_t *c = calloc(1, sizeof(*c));
  c->cert_path = strdup(path);
  c->key_path = strdup("k.pem");
  c->chain_pem = (unsigned char *)strdup(pem);
  c->chain_pem_len = strlen(pem);
  c->key_pem = (unsigned char *)strdup(key);
  c->key_pem_len = strlen(key);
  c->chain = calloc(1, sizeof(*c->chain));
  c->chain[0].serial_hex = strdup(serial);
  c->chain_len = 1;
  c->names = calloc(1, sizeof(char *));
  c->names[0] = strdup(name);
  c->n_names = 1;
  return c;
}

static void fake_cert_free(pst_cert_t *c) {
  free(c->cert_path);
  free(c->key_path);
  free(c->chain_pem);
  free(c->key_pem);
  free(c->chain[0].serial_hex);
  free(c->chain);
  free(c->names[0]);
  free(c->names);
  free(c);
}

static void test_describe_certificates(void **state) {
  const char *t = "listeners:\n" LISTENER("one", "8443", "");
  pst_gen_t *a = fake_gen(parse(t)), *b = fake_gen(parse(t));
  pst_cert_t *old_certs[3] = {
      fake_cert("/c/site.pem", "PEM1", "KEY1", "0A", "site.test"),
      fake_cert("/c/api.pem", "PEM2", "KEY2", "0B", "api.test"),
      fake_cert("/c/gone.pem", "PEM3", "KEY3", "0C", "gone.test"),
  };
  pst_cert_t *new_certs[3] = {
      fake_cert("/c/site.pem", "PEM9", "KEY9", "1F", "site.test"),
      fake_cert("/c/api.pem", "PEM2", "KEY8", "0B", "api.test"),
      fake_cert("/c/new.pem", "PEM4", "KEY4", "0D", "new.test"),
  };
  a->listeners[0].certs = old_certs;
  a->listeners[0].n_certs = 3;
  b->listeners[0].certs = new_certs;
  b->listeners[0].n_certs = 3;
  long keep[1] = {0};
  char buf[1024];
  pst_reload_describe(a, b, keep, buf, sizeof(buf));
  assert_string_equal(buf,
                      "listener one: certificate /c/site.pem replaced (serial 1F, was 0A), key "
                      "k.pem replaced, certificate /c/new.pem added (new.test), certificate "
                      "/c/gone.pem removed");
  /* Too small a buffer: cut with "...", still one NUL-terminated line. */
  char small[40];
  pst_reload_describe(a, b, keep, small, sizeof(small));
  assert_int_equal(strlen(small), sizeof(small) - 1);
  assert_string_equal(small + sizeof(small) - 4, "...");
  for (int i = 0; i < 3; i++) {
    fake_cert_free(old_certs[i]);
    fake_cert_free(new_certs[i]);
  }
  a->listeners[0].certs = b->listeners[0].certs = NULL;
  fake_gen_free(a);
  fake_gen_free(b);
}

/* The daily check: leaves within expiry_warn_days are warned about, an
 * expired one is an error, the others say nothing. */
static void test_daily_expiry_check(void **state) {
  pst_gen_t *g = fake_gen(parse("expiry_warn_days: 30\nlisteners:\n" LISTENER("one", "8443", "")));
  time_t now = 1800000000;
  pst_cert_t *certs[3] = {
      fake_cert("/c/fine.pem", "P1", "K1", "01", "fine.test"),
      fake_cert("/c/soon.pem", "P2", "K2", "02", "soon.test"),
      fake_cert("/c/gone.pem", "P3", "K3", "03", "gone.test"),
  };
  long offsets[3] = {60L * 86400, 10L * 86400, -86400};
  for (int i = 0; i < 3; i++) {
    certs[i]->chain[0].not_after = now + offsets[i];
    certs[i]->chain[0].subject = strdup("CN=x");
  }
  g->listeners[0].certs = certs;
  g->listeners[0].n_certs = 3;
  assert_int_equal(pst_gen_log_expiry(g, now), 2);
  g->cfg->expiry_warn_days = 0; /* no warnings; the expired one is still said */
  assert_int_equal(pst_gen_log_expiry(g, now), 1);
  for (int i = 0; i < 3; i++) {
    free(certs[i]->chain[0].subject);
    fake_cert_free(certs[i]);
  }
  g->listeners[0].certs = NULL;
  fake_gen_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_match_by_address),
      cmocka_unit_test(test_match_family_and_host_matter),
      cmocka_unit_test(test_describe_nothing),
      cmocka_unit_test(test_describe_listeners_added_removed),
      cmocka_unit_test(test_describe_settings),
      cmocka_unit_test(test_describe_top_level),
      cmocka_unit_test(test_describe_workers_need_restart),
      cmocka_unit_test(test_describe_certificates),
      cmocka_unit_test(test_daily_expiry_check),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
