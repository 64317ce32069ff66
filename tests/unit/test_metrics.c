/* postern: unit tests for the counters and their exposition (src/metrics.c):
 * label value and help escapes; every family's HELP and TYPE once, before
 * its samples, and every sample of a declared family; counts bumped by
 * several threads with blocks of their own (which end before the scrape)
 * and by the shared block, summed; the handshake labels mapped to their
 * tables with "other" and "none"; a histogram's cumulative buckets, +Inf,
 * _sum and _count; a listener's slot kept across a simulated reload; the
 * overflow slot once every slot is taken; the shutdown summary. Tests share
 * the process's counters: each resets them and uses listener names of its
 * own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "postern/buf.h"
#include "metrics_test_util.h"
#include "postern/metrics.h"

static int count_lines_starting(const char *text, const char *prefix) {
  int n = 0;
  size_t len = strlen(prefix);
  for (const char *p = text; p != NULL && *p != '\0';) {
    if (strncmp(p, prefix, len) == 0) n++;
    p = strchr(p, '\n');
    if (p != NULL) p++;
  }
  return n;
}

static void test_label_and_help_escapes(void **state) {
  (void)state;
  pst_buf_t b = {0};
  assert_int_equal(pst_metrics_label(&b, "a\\b\"c\nd"), 0);
  assert_int_equal(b.len, strlen("a\\\\b\\\"c\\nd"));
  assert_memory_equal(pst_buf_head(&b), "a\\\\b\\\"c\\nd", b.len);
  pst_buf_free(&b);
  assert_int_equal(pst_metrics_head(&b, "x_total", "counter", "say \"hi\"\\\nbye"), 0);
  const char want[] = "# HELP x_total say \"hi\"\\\\\\nbye\n# TYPE x_total counter\n";
  assert_int_equal(b.len, strlen(want));
  assert_memory_equal(pst_buf_head(&b), want, b.len);
  pst_buf_free(&b);
}

/* Every "# TYPE" once; its "# HELP" just before; each sample line's name
 * is the family declared last, or its _bucket, _sum or _count for a
 * histogram. */
static void test_families_declared_once(void **state) {
  (void)state;
  pst_metrics_reset();
  unsigned slot = pst_metrics_listener_slot("fam");
  pst_metrics_conn_accepted(slot);
  pst_metrics_handshake(slot, "TLSv1.3", "X25519", "TLS_AES_128_GCM_SHA256", "h2", 0, 1000000);
  pst_metrics_http_request(slot, PST_MPROTO_H1, 200);
  char *text = render();
  char family[128] = "", type[32] = "";
  int families = 0;
  for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    if (strncmp(line, "# HELP ", 7) == 0) {
      char name[128];
      assert_int_equal(sscanf(line + 7, "%127s", name), 1);
      char *next = strtok(NULL, "\n");
      assert_non_null(next);
      char tname[128];
      assert_int_equal(sscanf(next, "# TYPE %127s %31s", tname, type), 2);
      assert_string_equal(name, tname);
      assert_string_not_equal(name, family); /* not the same family twice in a row */
      strcpy(family, name);
      families++;
      continue;
    }
    assert_true(line[0] != '#');
    size_t n = strcspn(line, "{ ");
    char name[128];
    assert_true(n < sizeof(name));
    memcpy(name, line, n);
    name[n] = '\0';
    if (strcmp(type, "histogram") == 0) {
      char ok = 0;
      const char *sfx[] = {"_bucket", "_sum", "_count"};
      for (size_t i = 0; i < 3; i++) {
        size_t fl = strlen(family);
        if (strncmp(name, family, fl) == 0 && strcmp(name + fl, sfx[i]) == 0) ok = 1;
      }
      assert_true(ok);
    } else {
      assert_string_equal(name, family);
    }
  }
  free(text);
  text = render();
  /* Each family once in the whole text. */
  for (char *p = strstr(text, "# TYPE "); p != NULL; p = strstr(p + 1, "# TYPE ")) {
    char prefix[160], name[128];
    assert_int_equal(sscanf(p + 7, "%127s", name), 1);
    snprintf(prefix, sizeof(prefix), "# TYPE %s ", name);
    assert_int_equal(count_lines_starting(text, prefix), 1);
  }
  assert_true(families >= 14);
  assert_int_equal(sample(text, "postern_connections_accepted_total{listener=\"fam\"}"), 1);
  assert_int_equal(sample(text, "postern_connections_open{listener=\"fam\"}"), 1);
  assert_int_equal(
      sample(text, "postern_http_requests_total{listener=\"fam\",protocol=\"h1\",code=\"2xx\"}"),
      1);
  free(text);
}

typedef struct {
  unsigned slot;
  int n;
  int attach;
} bumper_t;

static void *bump_thread(void *arg) {
  bumper_t *b = arg;
  if (b->attach) assert_int_equal(pst_metrics_thread_attach(), 0);
  for (int i = 0; i < b->n; i++) {
    pst_metrics_conn_accepted(b->slot);
    if (i % 2 == 0) pst_metrics_conn_closed(b->slot, PST_MCLOSE_DONE);
    pst_metric_inc(PST_M_ACCEPT_ERRORS);
  }
  pst_metrics_gauge_add(PST_MGAUGE_BACKEND_IDLE, 2);
  pst_metrics_gauge_add(PST_MGAUGE_BACKEND_IDLE, -1);
  return NULL;
}

/* Workers with blocks of their own and threads on the shared block, all
 * at once; the workers end before the scrape: their counts stay. */
static void test_threads_summed(void **state) {
  (void)state;
  pst_metrics_reset();
  unsigned slot = pst_metrics_listener_slot("threads");
  enum { THREADS = 6, N = 20000 };
  pthread_t t[THREADS];
  bumper_t b[THREADS];
  for (int i = 0; i < THREADS; i++) {
    b[i] = (bumper_t){.slot = slot, .n = N, .attach = i % 3 != 0};
    assert_int_equal(pthread_create(&t[i], NULL, bump_thread, &b[i]), 0);
  }
  char *during = render(); /* a scrape while they bump: must not crash or race */
  free(during);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  char *text = render();
  assert_int_equal(sample(text, "postern_connections_accepted_total{listener=\"threads\"}"),
                   THREADS * N);
  assert_int_equal(
      sample(text, "postern_connections_closed_total{listener=\"threads\",reason=\"done\"}"),
      THREADS * N / 2);
  assert_int_equal(sample(text, "postern_connections_open{listener=\"threads\"}"), THREADS * N / 2);
  assert_int_equal(sample(text, "postern_accept_errors_total"), THREADS * N);
  assert_int_equal(sample(text, "postern_backend_connections{state=\"idle\"}"), THREADS);
  assert_int_equal(sample(text, "postern_backend_connections{state=\"active\"}"), 0);
  assert_int_equal(pst_metric_get(PST_M_ACCEPT_ERRORS), THREADS * N);
  free(text);
}

static void test_handshake_labels(void **state) {
  (void)state;
  pst_metrics_reset();
  unsigned slot = pst_metrics_listener_slot("hs");
  pst_metrics_handshake(slot, "TLSv1.3", "X25519", "TLS_AES_128_GCM_SHA256", "h2", 1, 1);
  pst_metrics_handshake(slot, "TLSv1.3", "X25519", "TLS_AES_128_GCM_SHA256", "h2", 1, 1);
  pst_metrics_handshake(slot, "TLSv1.2", "P-256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", NULL, 0,
                        1);
  pst_metrics_handshake(slot, "SSLv3", "brainpool", "TLS_WEIRD", "spdy/3", 0, 1);
  pst_metrics_handshake_failed(slot, 112);
  pst_metrics_handshake_failed(slot, -1);
  pst_metrics_handshake_failed(slot, 250);
  pst_metrics_early(slot, PST_MEARLY_REPLAYED);
  pst_metrics_http_generated(slot, 421);
  pst_metrics_http_generated(slot, 418);
  pst_metrics_http_request(slot, PST_MPROTO_H2, 0);
  pst_metrics_backend_timeout(slot, PST_MPHASE_RESPONSE);
  char *text = render();
  assert_int_equal(sample(text,
                          "postern_tls_handshakes_total{listener=\"hs\",version=\"TLSv1.3\","
                          "group=\"x25519\",cipher=\"TLS_AES_128_GCM_SHA256\",alpn=\"h2\","
                          "resumed=\"true\"}"),
                   2);
  assert_int_equal(sample(text,
                          "postern_tls_handshakes_total{listener=\"hs\",version=\"TLSv1.2\","
                          "group=\"secp256r1\",cipher="
                          "\"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\",alpn=\"none\","
                          "resumed=\"false\"}"),
                   1);
  assert_int_equal(sample(text,
                          "postern_tls_handshakes_total{listener=\"hs\",version=\"other\","
                          "group=\"other\",cipher=\"other\",alpn=\"other\","
                          "resumed=\"false\"}"),
                   1);
  /* Only nonzero combinations are written. */
  assert_int_equal(count_lines_starting(text, "postern_tls_handshakes_total{listener=\"hs\""), 3);
  assert_int_equal(sample(text,
                          "postern_tls_handshake_failures_total{listener=\"hs\","
                          "alert=\"unrecognized_name\"}"),
                   1);
  assert_int_equal(
      sample(text, "postern_tls_handshake_failures_total{listener=\"hs\",alert=\"none\"}"), 1);
  assert_int_equal(
      sample(text, "postern_tls_handshake_failures_total{listener=\"hs\",alert=\"other\"}"), 1);
  assert_int_equal(
      sample(text, "postern_tls_early_data_total{listener=\"hs\",outcome=\"replayed\"}"), 1);
  assert_int_equal(
      sample(text, "postern_http_responses_generated_total{listener=\"hs\",status=\"421\"}"), 1);
  assert_int_equal(
      sample(text, "postern_http_responses_generated_total{listener=\"hs\",status=\"other\"}"), 1);
  assert_int_equal(
      sample(text, "postern_http_requests_total{listener=\"hs\",protocol=\"h2\",code=\"none\"}"),
      1);
  assert_int_equal(
      sample(text, "postern_backend_timeouts_total{listener=\"hs\",phase=\"response\"}"), 1);
  assert_int_equal(sample(text, "postern_backend_connect_failures_total{listener=\"hs\"}"), 0);
  free(text);
}

static void test_histogram(void **state) {
  (void)state;
  pst_metrics_reset();
  unsigned slot = pst_metrics_listener_slot("hist");
  pst_metrics_handshake(slot, "TLSv1.3", "X25519", "TLS_AES_128_GCM_SHA256", "h2", 0, 300000);
  pst_metrics_handshake(slot, "TLSv1.3", "X25519", "TLS_AES_128_GCM_SHA256", "h2", 0, 500000);
  pst_metrics_handshake(slot, "TLSv1.3", "X25519", "TLS_AES_128_GCM_SHA256", "h2", 0, 3000000);
  pst_metrics_handshake(slot, "TLSv1.3", "X25519", "TLS_AES_128_GCM_SHA256", "h2", 0,
                        6000000000ull);
  char *text = render();
  const char *b = "postern_tls_handshake_duration_seconds_bucket{listener=\"hist\",le=";
  char s[160];
  struct {
    const char *le;
    int count;
  } want[] = {{"0.0005", 2}, {"0.001", 2}, {"0.0025", 2}, {"0.005", 3},
              {"1", 3},      {"2.5", 3},   {"5", 3},      {"+Inf", 4}};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    snprintf(s, sizeof(s), "%s\"%s\"}", b, want[i].le);
    assert_int_equal(sample(text, s), want[i].count);
  }
  assert_int_equal(count_lines_starting(text, b), 14);
  assert_int_equal(sample(text, "postern_tls_handshake_duration_seconds_count{listener=\"hist\"}"),
                   4);
  double sum = sample(text, "postern_tls_handshake_duration_seconds_sum{listener=\"hist\"}");
  assert_true(sum > 6.0037 && sum < 6.0039);
  /* The +Inf bucket is the last of the listener's, before _sum. */
  char *inf = strstr(text, "le=\"+Inf\"");
  char *sum_line = strstr(text, "postern_tls_handshake_duration_seconds_sum{listener=\"hist\"}");
  assert_non_null(inf);
  assert_true(inf < sum_line);
  free(text);
}

/* A reload that keeps a listener's name keeps its slot and its counts; a
 * new name gets a new slot; a name dropped keeps its counts (a counter does
 * not go back). */
static void test_slots_across_reload(void **state) {
  (void)state;
  pst_metrics_reset();
  unsigned web = pst_metrics_listener_slot("web"), api = pst_metrics_listener_slot("api");
  assert_true(web > 0 && api > 0 && web != api);
  pst_metrics_conn_accepted(web);
  pst_metrics_conn_accepted(api);
  /* The next generation: api removed, admin added, web kept. */
  unsigned web2 = pst_metrics_listener_slot("web"), admin = pst_metrics_listener_slot("adm");
  assert_int_equal(web2, web);
  assert_true(admin != web && admin != api && admin > 0);
  pst_metrics_conn_accepted(web2);
  char *text = render();
  assert_int_equal(sample(text, "postern_connections_accepted_total{listener=\"web\"}"), 2);
  assert_int_equal(sample(text, "postern_connections_accepted_total{listener=\"api\"}"), 1);
  assert_int_equal(sample(text, "postern_connections_accepted_total{listener=\"adm\"}"), 0);
  /* The overflow slot is not written while nothing was counted there. */
  assert_int_equal(sample(text, "postern_connections_accepted_total{listener=\"(other)\"}"), -1);
  free(text);
}

static void test_summary_and_log(void **state) {
  (void)state;
  pst_metrics_reset();
  unsigned slot = pst_metrics_listener_slot("sum");
  pst_metrics_handshake(slot, "TLSv1.3", "X25519", "TLS_AES_128_GCM_SHA256", NULL, 1, 10);
  pst_metrics_handshake(slot, "TLSv1.3", "X25519", "TLS_AES_128_GCM_SHA256", NULL, 0, 10);
  pst_metrics_reload(1);
  pst_metrics_reload(0);
  pst_metrics_reload(0);
  pst_metrics_http_generated(slot, 502);
  pst_metrics_http_request(slot, PST_MPROTO_H1, 502);
  pst_metrics_early(slot, PST_MEARLY_ACCEPTED);
  pst_metrics_summary_t s;
  pst_metrics_summary(&s);
  assert_int_equal(s.handshakes, 2);
  assert_int_equal(s.resumed, 1);
  assert_int_equal(s.reloads, 1);
  assert_int_equal(s.reloads_failed, 2);
  assert_int_equal(s.http_502, 1);
  assert_int_equal(s.http_requests, 1);
  assert_int_equal(s.early[PST_MEARLY_ACCEPTED], 1);
  char *text = render();
  assert_int_equal(sample(text, "postern_reloads_total{result=\"ok\"}"), 1);
  assert_int_equal(sample(text, "postern_reloads_total{result=\"failed\"}"), 2);
  free(text);
  pst_metrics_log(); /* does not crash; its line is checked by test_reload.py */
}

/* Runs last: it takes every slot left. */
static void test_overflow_slot(void **state) {
  (void)state;
  pst_metrics_reset();
  char name[32];
  unsigned last = 0;
  for (int i = 0; i < PST_METRICS_LISTENERS; i++) {
    snprintf(name, sizeof(name), "many%d", i);
    unsigned slot = pst_metrics_listener_slot(name);
    if (slot == 0) break;
    last = slot;
  }
  assert_int_equal(last, PST_METRICS_LISTENERS - 1);
  assert_int_equal(pst_metrics_listener_slot("one-too-many"), 0);
  assert_int_equal(pst_metrics_listener_slot("web"), pst_metrics_listener_slot("web"));
  assert_int_not_equal(pst_metrics_listener_slot("web"), 0); /* known names keep theirs */
  pst_metrics_conn_accepted(pst_metrics_listener_slot("one-too-many"));
  pst_metrics_conn_accepted(pst_metrics_listener_slot("another"));
  pst_metrics_conn_accepted(PST_METRICS_LISTENERS + 5); /* out of range: the overflow */
  char *text = render();
  assert_int_equal(sample(text, "postern_connections_accepted_total{listener=\"(other)\"}"), 3);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_label_and_help_escapes),
      cmocka_unit_test(test_families_declared_once),
      cmocka_unit_test(test_threads_summed),
      cmocka_unit_test(test_handshake_labels),
      cmocka_unit_test(test_histogram),
      cmocka_unit_test(test_slots_across_reload),
      cmocka_unit_test(test_summary_and_log),
      cmocka_unit_test(test_overflow_slot),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
