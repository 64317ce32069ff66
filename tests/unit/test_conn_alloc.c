/* postern: allocation failure at connection level. A real connection of
 * src/conn.c (conn_test_util.h: a worker on the test's loop, a wolfSSL
 * client over a socket of the same loop) runs a full TLS 1.3 handshake and
 * a request, once per N, with the N-th allocation postern
 * makes after the client connects failing (http_test_util.h; the client's
 * own allocations never fail). For every N the connection must either
 * answer anyway or end by itself, and leave nothing behind: the worker
 * counts it out, the teardown finds no connection or backend connection
 * open, and LeakSanitizer finds nothing at exit. The loop ends at the first
 * N past the exchange's last allocation.
 *
 * The tcp relay (to the test's echo backend), HTTP/1.1 (the request sent
 * alone and with the client's Finished) and HTTP/2. No process is
 * started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_test_util.h"

#include "conn_test_util.h"

/* The exchange's timeouts: a connection that an allocation failure leaves
 * waiting still ends, by its handshake or idle timeout. */
static const timeouts_t alloc_timeouts = {"1s", "1s"};

#define H1_REQUEST "GET /json HTTP/1.1\r\nHost: " SNI "\r\nAccept: application/json\r\n\r\n"

/* An HTTP/2 client's first flight for GET /: the preface, an empty
 * SETTINGS, and a HEADERS frame (END_STREAM | END_HEADERS, stream 1) whose
 * block uses only static-table entries and literals (RFC 7541): :method
 * GET (2), :scheme https (7), :path / (4), :authority www.wolfssl.com
 * (literal with indexed name 1, not added to the table). */
static const char h2_request[] =
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    "\x00\x00\x14\x01\x05\x00\x00\x00\x01"
    "\x82\x87\x84\x01\x0f"
    "www.wolfssl.com";
#define H2_REQUEST_LEN (sizeof(h2_request) - 1)

/* One exchange: on the tcp relay (alpn NULL: "ping" echoed by the test's
 * backend) or on the http listener with ALPN alpn; with_finished: the
 * HTTP/1.1 request leaves with the client's Finished. */
typedef struct {
  const char *alpn;
  int with_finished;
} exchange_t;

#define TCP_PING "ping"

/* The test backend echoes what the tcp relay forwards. */
static void echo(tb_conn_t *c) {
  if (c->in.len == 0) return;
  tb_write(c, pst_buf_head(&c->in), c->in.len);
  pst_buf_consume(&c->in, c->in.len);
}

/* What one run with the n-th allocation failing came to. */
typedef enum { RUN_ANSWERED, RUN_ENDED, RUN_TIMED_OUT, RUN_REFUSED, RUN_HUNG } run_t;

/* An answer is in the client's plaintext: a complete HTTP/1.1 response,
 * or in HTTP/2 (RFC 9113 6) a response HEADERS frame or a RST_STREAM on
 * stream 1, or a GOAWAY: the stream or the connection refused with a
 * reason is an answer too. */
static int answered(const client_t *c, const exchange_t *x) {
  if (x->alpn == NULL) return client_got(c, TCP_PING);
  if (strcmp(x->alpn, "h2") != 0) return http_response_len(c) > 0;
  const unsigned char *p = (const unsigned char *)pst_buf_head(&c->plain);
  size_t len = c->plain.len;
  for (size_t o = 0; o + 9 <= len;) {
    size_t flen = ((size_t)p[o] << 16) | ((size_t)p[o + 1] << 8) | p[o + 2];
    int type = p[o + 3], on_stream_1 = p[o + 8] == 1;
    if ((type == 1 || type == 3) && on_stream_1) return 1; /* HEADERS, RST_STREAM */
    if (type == 7) return 1;                               /* GOAWAY */
    o += 9 + flen;
  }
  return 0;
}

/* Runs the exchange with the n-th allocation after the connect failing;
 * *failed says whether one did. */
static run_t run_once(const exchange_t *x, long n, int *failed) {
  void *st = (void *)&alloc_timeouts;
  assert_int_equal(setup(&st), 0);
  tb.on_data = echo;
  client_t *c = client_start(x->alpn != NULL ? LN_HTTP : LN_TCP, 1, SNI, x->alpn);
  int h2 = x->alpn != NULL && strcmp(x->alpn, "h2") == 0;
  if (x->with_finished) c->with_finished = H1_REQUEST; /* HTTP/1.1 only */
  failed_alloc = 0;
  fail_at = n;
  uint64_t t0 = uv_now(loop);
  WAIT_QUIETLY(accept_rc != 0 || gone > 0 || c->hs_done || c->hs_err);
  if (c->hs_done && !x->with_finished) {
    alloc_paused++;
    if (x->alpn == NULL)
      client_send(c, TCP_PING);
    else if (h2)
      client_send_len(c, h2_request, H2_REQUEST_LEN);
    else
      client_send(c, H1_REQUEST);
    alloc_paused--;
  }
  WAIT_QUIETLY(accept_rc != 0 || gone > 0 || answered(c, x));
  fail_at = -1;
  *failed = failed_alloc;
  run_t r = RUN_HUNG;
  if (answered(c, x))
    r = RUN_ANSWERED;
  else if (accept_rc != 0)
    r = RUN_REFUSED;
  else if (gone > 0) /* an end that waited for a timeout is an end, but say so */
    r = uv_now(loop) - t0 >= 900 ? RUN_TIMED_OUT : RUN_ENDED;
  assert_int_equal(teardown(&st), 0);
  return r;
}

static const char *exchange_name(const exchange_t *x) {
  if (x->alpn == NULL) return "tcp relay";
  return x->with_finished ? "http/1.1 (request with Finished)" : x->alpn;
}

static void alloc_failures(const exchange_t *x) {
  long counts[RUN_HUNG + 1] = {0};
  long n = 0;
  for (;; n++) {
    int failed = 0;
    run_t r = run_once(x, n, &failed);
    if (!failed) {
      assert_int_equal(r, RUN_ANSWERED); /* with no failure, the exchange works */
      break;
    }
    counts[r]++;
    if (r == RUN_TIMED_OUT && getenv("POSTERN_TEST_LOG") != NULL) {
      print_message("%s: allocation %ld failing: ended by a timeout\n", exchange_name(x), n);
    }
    if (r == RUN_HUNG) {
      fail_msg("%s: with allocation %ld failing, the connection neither answered nor ended",
               exchange_name(x), n);
    }
    assert_true(n < 20000);
  }
  print_message(
      "%s: %ld allocations; failing each: %ld answered anyway, %ld ended, "
      "%ld ended by a timeout, %ld refused at accept\n",
      exchange_name(x), n, counts[RUN_ANSWERED], counts[RUN_ENDED], counts[RUN_TIMED_OUT],
      counts[RUN_REFUSED]);
}

static void test_tcp(void **state) { alloc_failures(&(exchange_t){NULL, 0}); }
static void test_http1(void **state) { alloc_failures(&(exchange_t){"http/1.1", 0}); }
static void test_http1_with_finished(void **state) { alloc_failures(&(exchange_t){"http/1.1", 1}); }
static void test_http2(void **state) { alloc_failures(&(exchange_t){"h2", 0}); }

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tcp),
      cmocka_unit_test(test_http1),
      cmocka_unit_test(test_http1_with_finished),
      cmocka_unit_test(test_http2),
  };
  return cmocka_run_group_tests_name("conn_alloc", tests, group_setup, group_teardown);
}
