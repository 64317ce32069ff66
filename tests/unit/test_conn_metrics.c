/* postern: unit tests for what real connections count (metrics.h), driven
 * as test_conn_io.c drives them (conn_test_util.h: a worker on the test's
 * loop, the listeners "relay" (tcp mode) and "web" (http mode), wolfSSL
 * clients): the listener label, the handshake's labels as wolfSSL names
 * them (none may fall to "other"), the close reasons (done, handshake
 * timeout, handshake failed without and with its alert, client reset, idle timeout,
 * backend refused), the HTTP request's status class and the backend connect
 * failure. The counters are the process's: each test resets them. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "conn_test_util.h"
#include "metrics_test_util.h"
#include "postern/metrics.h"

static int metrics_setup(void **state) {
  pst_metrics_reset();
  return setup(state);
}

/* The relay from end to end: accepted, one TLS 1.3 handshake whose group
 * and cipher are in the tables, closed "done". */
static void test_relay_counted(void **state) {
  client_t *c = client_start(LN_TCP, 1, SNI, NULL);
  handshake(c);
  WAIT_FOR(tb.n_conns == 1 && tb.conns[0] != NULL);
  client_close_notify(c);
  WAIT_FOR(tb.conns[0]->eof);
  tb_shutdown(tb.conns[0]);
  WAIT_FOR(gone == 1);
  char *text = render();
  assert_int_equal(sample(text, "postern_connections_accepted_total{listener=\"relay\"}"), 1);
  assert_int_equal(
      sample(text, "postern_connections_closed_total{listener=\"relay\",reason=\"done\"}"), 1);
  assert_int_equal(sample(text, "postern_connections_open{listener=\"relay\"}"), 0);
  assert_int_equal(sample(text,
                          "postern_tls_handshakes_total{listener=\"relay\",version=\"TLSv1.3\","
                          "group=\"x25519\",cipher=\"TLS_AES_128_GCM_SHA256\",alpn=\"none\","
                          "resumed=\"false\"}"),
                   1);
  assert_int_equal(sample(text, "postern_tls_handshake_duration_seconds_count{listener=\"relay\"}"),
                   1);
  assert_null(strstr(text, "listener=\"(other)\""));
  free(text);
}

/* HTTP/1.1 to builtin:info: the request's class, the ALPN label. */
static void test_http_request_counted(void **state) {
  client_t *c = client_start(LN_HTTP, 1, SNI, "http/1.1");
  handshake(c);
  client_send(c, "GET / HTTP/1.1\r\nHost: " SNI "\r\n\r\n");
  free(http_take_response(c));
  client_send(c, "GET / HTTP/1.1\r\nHost: \r\nHost: x\r\n\r\n"); /* two Host fields: 400 */
  free(http_take_response(c));
  WAIT_FOR(gone == 1);
  char *text = render();
  assert_int_equal(
      sample(text, "postern_http_requests_total{listener=\"web\",protocol=\"h1\",code=\"2xx\"}"),
      1);
  assert_int_equal(
      sample(text, "postern_http_requests_total{listener=\"web\",protocol=\"h1\",code=\"4xx\"}"),
      1);
  assert_int_equal(
      sample(text, "postern_http_responses_generated_total{listener=\"web\",status=\"400\"}"), 1);
  assert_int_equal(sample(text,
                          "postern_tls_handshakes_total{listener=\"web\",version=\"TLSv1.3\","
                          "group=\"x25519\",cipher=\"TLS_AES_128_GCM_SHA256\",alpn=\"http/1.1\","
                          "resumed=\"false\"}"),
                   1);
  free(text);
}

/* A silent client: handshake_timeout, and a failure without an alert. */
static void test_handshake_timeout_counted(void **state) {
  client_start(LN_TCP, 0, NULL, NULL);
  WAIT_FOR(gone == 1);
  char *text = render();
  assert_int_equal(sample(text,
                          "postern_connections_closed_total{listener=\"relay\","
                          "reason=\"handshake_timeout\"}"),
                   1);
  assert_int_equal(
      sample(text, "postern_tls_handshake_failures_total{listener=\"relay\",alert=\"none\"}"), 1);
  free(text);
}

/* Bytes that are no ClientHello: handshake_failed, with the alert sent. */
static void test_handshake_failure_counted(void **state) {
  client_t *c = client_start(LN_HTTP, 0, NULL, NULL);
  WAIT_FOR(tw.n_conns == 1);
  client_send_raw(c, "GET / HTTP/1.1\r\nHost: " SNI "\r\n\r\n");
  WAIT_FOR(gone == 1);
  char *text = render();
  assert_int_equal(sample(text,
                          "postern_connections_closed_total{listener=\"web\","
                          "reason=\"handshake_failed\"}"),
                   1);
  const char *f = strstr(text, "postern_tls_handshake_failures_total{listener=\"web\"");
  assert_non_null(f);
  printf("%.*s\n", (int)strcspn(f, "\n"), f);
  assert_null(strstr(text, "alert=\"other\""));
  free(text);
}

/* A server name that is no DNS host name: the handshake fails with the
 * illegal_parameter alert (tls.h), counted by its RFC 8446 6 name. */
static void test_alert_counted(void **state) {
  client_t *c = client_start(LN_HTTP, 1, "bad..name", NULL);
  WAIT_FOR(c->hs_done || c->hs_err);
  WAIT_FOR(gone == 1);
  char *text = render();
  assert_int_equal(sample(text,
                          "postern_tls_handshake_failures_total{listener=\"web\","
                          "alert=\"illegal_parameter\"}"),
                   1);
  assert_int_equal(sample(text,
                          "postern_connections_closed_total{listener=\"web\","
                          "reason=\"handshake_failed\"}"),
                   1);
  assert_int_equal(sample(text, "postern_connections_open{listener=\"web\"}"), 0);
  free(text);
}

/* A client's reset: client_closed. */
static void test_client_reset_counted(void **state) {
  client_t *c = client_start(LN_TCP, 1, SNI, NULL);
  handshake(c);
  WAIT_FOR(tb.n_conns == 1);
  assert_int_equal(uv_tcp_close_reset(&c->tcp, client_on_close), 0);
  WAIT_FOR(gone == 1);
  char *text = render();
  assert_int_equal(sample(text,
                          "postern_connections_closed_total{listener=\"relay\","
                          "reason=\"client_closed\"}"),
                   1);
  free(text);
}

/* The route's backend refuses: a connect failure, closed backend_error. */
static void test_backend_refused_counted(void **state) {
  client_t *c = client_start(LN_TCP, 1, REFUSED_SNI, NULL);
  WAIT_FOR(c->hs_done || c->hs_err);
  WAIT_FOR(gone == 1);
  char *text = render();
  assert_int_equal(sample(text, "postern_backend_connect_failures_total{listener=\"relay\"}"), 1);
  assert_int_equal(sample(text,
                          "postern_connections_closed_total{listener=\"relay\","
                          "reason=\"backend_error\"}"),
                   1);
  free(text);
}

/* A quiet relay: idle_timeout. */
static void test_idle_timeout_counted(void **state) {
  client_t *c = client_start(LN_TCP, 1, SNI, NULL);
  handshake(c);
  WAIT_FOR(gone == 1);
  char *text = render();
  assert_int_equal(sample(text,
                          "postern_connections_closed_total{listener=\"relay\","
                          "reason=\"idle_timeout\"}"),
                   1);
  free(text);
}

#define T(f, t) cmocka_unit_test_prestate_setup_teardown(f, metrics_setup, teardown, (void *)(t))

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_relay_counted, &long_timeouts),
      T(test_http_request_counted, &long_timeouts),
      T(test_handshake_timeout_counted, &short_handshake),
      T(test_handshake_failure_counted, &long_timeouts),
      T(test_alert_counted, &long_timeouts),
      T(test_client_reset_counted, &long_timeouts),
      T(test_backend_refused_counted, &long_timeouts),
      T(test_idle_timeout_counted, &short_idle),
  };
  return cmocka_run_group_tests_name("conn_metrics", tests, group_setup, group_teardown);
}
