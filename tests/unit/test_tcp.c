/* postern: unit tests for the tcp relay (src/tcp.c), driven through a fake
 * connection (a pst_host_t whose services record what the relay asks)
 * against a backend the test serves on 127.0.0.1 (loop_test_util.h):
 * bytes both ways, half-close both ways and the normal end, connect
 * failure and timeout, backend errors, backpressure both ways, and a
 * connection that closes under the relay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/common.h"
#include "postern/pool.h"
#include "postern/tcp.h"

#include "loop_test_util.h"

/* ---- a fake connection ------------------------------------------------------ */

typedef struct {
  pst_host_t h;
  pst_app_t *app;
  pst_host_phase_t phase;
  pst_buf_t sent; /* bytes the relay sent to the client */
  int send_rc;    /* what send returns */
  size_t queued;  /* what queued returns */
  int pause_on;   /* pause(h, 1) calls */
  int pause_off;  /* pause(h, 0) calls */
  int paused;
  int ends;
  int closes;
  int close_err;
  char close_reason[128];
  int touches;
  int calls_after_close; /* any service asked after close: must stay 0 */
  char why[128];
} fake_host_t;

static fake_host_t fh;

static fake_host_t *F(const pst_host_t *h) { return (fake_host_t *)h; }

static void note_call(const pst_host_t *h) {
  if (F(h)->closes > 0) F(h)->calls_after_close++;
}

static int host_send(pst_host_t *h, const char *data, size_t len) {
  note_call(h);
  if (F(h)->send_rc != 0) return F(h)->send_rc;
  assert_int_equal(pst_buf_append(&F(h)->sent, data, len), 0);
  return 0;
}

static size_t host_queued(const pst_host_t *h) { return F(h)->queued; }

static void host_pause(pst_host_t *h, int pause) {
  note_call(h);
  int *count = pause ? &F(h)->pause_on : &F(h)->pause_off;
  (*count)++;
  F(h)->paused = pause;
}

static void host_end(pst_host_t *h) {
  note_call(h);
  F(h)->ends++;
}

/* As the connection does: the application hears closing at once, and is
 * destroyed later (by the test, once its handles would be closed). */
static void host_close(pst_host_t *h, int err, const char *reason) {
  fake_host_t *f = F(h);
  note_call(h);
  f->closes++;
  if (f->closes > 1) return;
  f->close_err = err;
  snprintf(f->close_reason, sizeof(f->close_reason), "%s", reason);
  f->phase = PST_HOST_CLOSING;
  if (f->app != NULL && f->app->ops->closing != NULL) f->app->ops->closing(f->app);
}

static const char *host_why(pst_host_t *h, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(F(h)->why, sizeof(F(h)->why), fmt, ap);
  va_end(ap);
  return F(h)->why;
}

static pst_host_phase_t host_phase(const pst_host_t *h) { return F(h)->phase; }

static void host_touch(pst_host_t *h) {
  note_call(h);
  F(h)->touches++;
}

static void host_waiting(pst_host_t *h, int delta) { fail_msg("the relay has no requests"); }

static void host_facts(pst_host_t *h, pst_info_facts_t *f) { fail_msg("the relay needs no facts"); }

static const pst_host_ops_t host_ops = {
    .send = host_send,
    .queued = host_queued,
    .pause = host_pause,
    .end = host_end,
    .close = host_close,
    .why = host_why,
    .phase = host_phase,
    .touch = host_touch,
    .waiting = host_waiting,
    .facts = host_facts,
};

/* ---- fixture -------------------------------------------------------------- */

static pst_listener_conf_t lc;
static pst_backend_conf_t bc;
static pst_pools_t *pools;
static tb_t tb;

static int setup(void **state) {
  loop_setup();
  memset(&lc, 0, sizeof(lc));
  lc.name = "test";
  lc.mode = PST_MODE_TCP;
  lc.backend_connect_timeout_ms = 1000;
  lc.pool_max_idle = 8;
  lc.pool_idle_ms = 60000;
  memset(&tb, 0, sizeof(tb));
  pools = pst_pools_new(loop);
  assert_non_null(pools);
  pst_buf_free(&fh.sent);
  memset(&fh, 0, sizeof(fh));
  fh.h.ops = &host_ops;
  fh.h.id = 7;
  fh.h.loop = loop;
  fh.h.pools = pools;
  fh.h.lc = &lc;
  fh.h.backend = &bc;
  fh.h.peer = "127.0.0.1:40000";
  fh.h.peer_ip = "127.0.0.1";
  fh.h.sni = "";
  fh.phase = PST_HOST_OPEN;
  return 0;
}

/* The connection's end: closing (if it did not close yet), then destroy. */
static void app_destroy(void) {
  if (fh.app == NULL) return;
  if (fh.closes == 0) host_close(&fh.h, PST_ESHUTDOWN, "test over");
  pst_app_t *a = fh.app;
  fh.app = NULL;
  a->ops->destroy(a);
}

static int teardown(void **state) {
  app_destroy();
  tb_stop(&tb);
  pst_pools_shutdown(pools);
  WAIT_QUIETLY(pst_pools_open(pools) == 0);
  unsigned open = pst_pools_open(pools);
  if (open == 0) pst_pools_free(pools); /* else it would assert */
  pools = NULL;
  pst_buf_free(&fh.sent);
  loop_teardown();
  assert_int_equal(open, 0);
  return 0;
}

static const char *sent_str(void) {
  assert_int_equal(pst_buf_append(&fh.sent, "", 1), 0);
  fh.sent.len--;
  return pst_buf_head(&fh.sent);
}

static const char *in_str(tb_conn_t *c) {
  assert_int_equal(pst_buf_append(&c->in, "", 1), 0);
  c->in.len--;
  return pst_buf_head(&c->in);
}

static pst_app_t *start_relay(void) {
  int err = 1;
  fh.app = pst_tcp_app_new(&fh.h, &err);
  assert_non_null(fh.app);
  assert_ptr_equal(fh.app->host, &fh.h);
  return fh.app;
}

/* Starts the relay to tb and waits until the backend has its connection. */
static pst_app_t *start_connected(void) {
  backend_at(&bc, tb.port);
  pst_app_t *a = start_relay();
  WAIT_FOR(tb.n_conns == 1);
  run_for(5); /* and the relay has heard of the connect */
  return a;
}

/* ---- bytes both ways ---------------------------------------------------------- */

static void test_relay_both_ways(void **state) {
  tb_start(&tb);
  backend_at(&bc, tb.port);
  pst_app_t *a = start_relay();
  /* Bytes fed while connecting wait for the connection. */
  assert_int_equal(a->ops->feed(a, "hello ", 6), 0);
  assert_int_equal(a->ops->feed(a, "backend", 7), 0);
  WAIT_FOR(tb.n_conns == 1 && tb.conns[0]->in.len == 13);
  assert_string_equal(in_str(tb.conns[0]), "hello backend");
  tb_write_str(tb.conns[0], "hello client");
  WAIT_FOR(fh.sent.len == 12);
  assert_string_equal(sent_str(), "hello client");
  assert_true(fh.touches > 0);
  assert_int_equal(fh.closes + fh.ends + fh.pause_on, 0);
  /* The worker draining changes nothing for a byte stream. */
  a->ops->shutdown(a);
  assert_int_equal(a->ops->feed(a, "more", 4), 0);
  WAIT_FOR(tb.conns[0]->in.len == 17);
  assert_int_equal(fh.closes, 0);
  app_destroy();
  WAIT_FOR(tb.conns[0]->eof);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* The client ends first: the backend sees EOF and may still answer; then
 * the backend ends (end() to the client), and once the client's side is
 * shut the relay closes the connection normally. */
static void test_client_ends_first(void **state) {
  tb_start(&tb);
  pst_app_t *a = start_connected();
  assert_int_equal(a->ops->feed(a, "request", 7), 0);
  a->ops->client_eof(a);
  WAIT_FOR(tb.conns[0]->eof);
  assert_string_equal(in_str(tb.conns[0]), "request");
  assert_int_equal(fh.closes, 0);
  tb_write_str(tb.conns[0], "late answer");
  WAIT_FOR(fh.sent.len == 11);
  assert_string_equal(sent_str(), "late answer");
  assert_int_equal(fh.ends, 0);
  tb_shutdown(tb.conns[0]);
  WAIT_FOR(fh.ends == 1);
  assert_int_equal(fh.closes, 0); /* the client's side is not shut yet */
  a->ops->client_shut(a);
  assert_int_equal(fh.closes, 1);
  assert_int_equal(fh.close_err, 0);
  assert_string_equal(fh.close_reason, "done");
  app_destroy();
  WAIT_FOR(pst_pools_open(pools) == 0);
  assert_int_equal(fh.calls_after_close, 0);
  tb_stop(&tb);
}

/* The backend ends first: end() to the client, the client goes on sending
 * (RFC 8446 6.1), and its end then completes the relay. */
static void test_backend_ends_first(void **state) {
  tb_start(&tb);
  pst_app_t *a = start_connected();
  tb_write_str(tb.conns[0], "bye");
  tb_shutdown(tb.conns[0]);
  WAIT_FOR(fh.ends == 1);
  assert_string_equal(sent_str(), "bye");
  assert_int_equal(a->ops->feed(a, "still talking", 13), 0);
  WAIT_FOR(tb.conns[0]->in.len == 13);
  a->ops->client_shut(a); /* the client has its close_notify and FIN */
  assert_int_equal(fh.closes, 0);
  a->ops->client_eof(a);
  WAIT_FOR(fh.closes == 1);
  assert_int_equal(fh.close_err, 0);
  assert_string_equal(fh.close_reason, "done");
  app_destroy();
  WAIT_FOR(tb.conns[0]->eof);
  assert_string_equal(in_str(tb.conns[0]), "still talking");
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* Both ends, with bytes still queued for the backend when the client
 * ends: they are written before the backend's side is shut. */
static void test_client_eof_after_backend_eof_with_queue(void **state) {
  tb_start(&tb);
  tb.no_read = 1;
  tb.discard = 1;
  pst_app_t *a = start_connected();
  tb_shutdown(tb.conns[0]);
  WAIT_FOR(fh.ends == 1);
  a->ops->client_shut(a);
  static char chunk[128 * 1024];
  memset(chunk, 'q', sizeof(chunk));
  size_t fed = 0;
  for (int i = 0; i < 512 && fh.pause_on == 0; i++) {
    assert_int_equal(a->ops->feed(a, chunk, sizeof(chunk)), 0);
    fed += sizeof(chunk);
  }
  assert_int_equal(fh.pause_on, 1);
  a->ops->client_eof(a);
  run_for(10);
  assert_int_equal(fh.closes, 0); /* bytes still wait for the backend */
  tb_read(tb.conns[0], 1);
  WAIT_FOR(fh.closes == 1);
  assert_int_equal(fh.close_err, 0);
  WAIT_FOR(tb.conns[0]->eof);
  assert_int_equal(tb.conns[0]->got, fed);
  app_destroy();
  tb_stop(&tb);
}

/* ---- failures ------------------------------------------------------------- */

static void test_connect_refused(void **state) {
  int port;
  int fd = refusing_port(&port);
  backend_at(&bc, port);
  pst_app_t *a = start_relay();
  assert_int_equal(a->ops->feed(a, "lost", 4), 0);
  WAIT_FOR(fh.closes == 1);
  assert_int_equal(fh.close_err, UV_ECONNREFUSED);
  assert_string_equal(fh.close_reason, "backend connect failed");
  /* After closing, the relay takes bytes without doing anything. */
  assert_int_equal(a->ops->feed(a, "more", 4), 0);
  a->ops->client_eof(a);
  a->ops->drain(a);
  app_destroy();
  WAIT_FOR(pst_pools_open(pools) == 0);
  assert_int_equal(fh.calls_after_close, 0);
  close(fd);
}

static void test_connect_timeout(void **state) {
  int port, filler;
  int fd = full_listener(&port, &filler);
  lc.backend_connect_timeout_ms = 30;
  backend_at(&bc, port);
  start_relay();
  WAIT_FOR(fh.closes == 1);
  assert_int_equal(fh.close_err, PST_ETIMEDOUT);
  assert_string_equal(fh.close_reason, "backend connect timeout");
  app_destroy();
  WAIT_FOR(pst_pools_open(pools) == 0);
  close(filler);
  close(fd);
}

/* A socket that cannot even be made: no application, the error says why. */
static void test_no_socket(void **state) {
  memset(&bc, 0, sizeof(bc));
  bc.addr.ss.ss_family = AF_UNSPEC;
  snprintf(bc.addr.text, sizeof(bc.addr.text), "nowhere");
  int err = 0;
  assert_null(pst_tcp_app_new(&fh.h, &err));
  assert_int_equal(err, UV_EINVAL);
  WAIT_FOR(pst_pools_open(pools) == 0);
}

/* The backend resets the connection: the relay closes with the error. */
static void test_backend_reset(void **state) {
  tb_start(&tb);
  start_connected();
  assert_int_equal(uv_tcp_close_reset(&tb.conns[0]->tcp, tb_conn_on_close), 0);
  tb.conns[0]->closed = 1;
  WAIT_FOR(fh.closes == 1);
  assert_int_equal(fh.close_err, UV_ECONNRESET);
  assert_string_equal(fh.close_reason, "backend read failed");
  app_destroy();
  tb_stop(&tb);
}

/* The connection closes for its own reasons (client error, shutdown
 * timeout): the relay lets go of the backend at once and hears nothing
 * more. */
static void test_connection_closes(void **state) {
  tb_start(&tb);
  pst_app_t *a = start_connected();
  host_close(&fh.h, PST_ESHUTDOWN, "shutdown timeout");
  WAIT_FOR(tb.conns[0]->eof);
  assert_int_equal(a->ops->feed(a, "x", 1), 0);
  run_for(10);
  assert_int_equal(fh.calls_after_close, 0);
  assert_int_equal(fh.closes, 1);
  app_destroy();
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* ---- backpressure ------------------------------------------------------------ */

/* A backend that does not read: once its queue passes the high-water mark
 * the relay stops reading the client (pause 1, once), and resumes it
 * (pause 0) when the queue drains. */
static void test_backpressure_to_backend(void **state) {
  tb_start(&tb);
  tb.no_read = 1;
  tb.discard = 1;
  pst_app_t *a = start_connected();
  static char chunk[128 * 1024];
  memset(chunk, 'z', sizeof(chunk));
  size_t fed = 0;
  for (int i = 0; i < 512 && fh.pause_on == 0; i++) {
    assert_int_equal(a->ops->feed(a, chunk, sizeof(chunk)), 0);
    fed += sizeof(chunk);
  }
  assert_int_equal(fh.pause_on, 1);
  assert_int_equal(fh.pause_off, 0);
  /* Bytes the connection still had go on (it pauses reading, not what it
   * decrypted already); no second pause. */
  assert_int_equal(a->ops->feed(a, chunk, sizeof(chunk)), 0);
  fed += sizeof(chunk);
  assert_int_equal(fh.pause_on, 1);
  run_for(10);
  assert_int_equal(fh.pause_off, 0);
  tb_read(tb.conns[0], 1);
  WAIT_FOR(fh.pause_off == 1);
  assert_int_equal(fh.paused, 0);
  WAIT_FOR(tb.conns[0]->got == fed);
  assert_int_equal(fh.pause_on, 1);
  assert_int_equal(fh.closes, 0);
  app_destroy();
  tb_stop(&tb);
}

/* The client's output is full: the relay stops reading the backend until
 * the connection says drain. */
static void test_backpressure_to_client(void **state) {
  tb_start(&tb);
  pst_app_t *a = start_connected();
  fh.queued = PST_CLIENT_HIGH_WATER + 1;
  tb_write_str(tb.conns[0], "a");
  WAIT_FOR(fh.sent.len == 1);
  tb_write_str(tb.conns[0], "b");
  run_for(30);
  assert_string_equal(sent_str(), "a");
  /* A drain while nothing is paused is harmless; this one resumes. */
  fh.queued = 0;
  a->ops->drain(a);
  WAIT_FOR(fh.sent.len == 2);
  assert_string_equal(sent_str(), "ab");
  a->ops->drain(a);
  tb_write_str(tb.conns[0], "c");
  WAIT_FOR(fh.sent.len == 3);
  assert_int_equal(fh.closes, 0);
  app_destroy();
  tb_stop(&tb);
}

/* The client's side is shut (send refuses): the backend's bytes are
 * dropped and the relay goes on. */
static void test_send_refused(void **state) {
  tb_start(&tb);
  pst_app_t *a = start_connected();
  fh.send_rc = PST_ESHUTDOWN;
  tb_write_str(tb.conns[0], "nobody hears this");
  run_for(20);
  assert_int_equal(fh.sent.len, 0);
  assert_int_equal(fh.closes, 0);
  assert_int_equal(a->ops->feed(a, "ok", 2), 0);
  WAIT_FOR(tb.conns[0]->in.len == 2);
  app_destroy();
  tb_stop(&tb);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_relay_both_ways),
      T(test_client_ends_first),
      T(test_backend_ends_first),
      T(test_client_eof_after_backend_eof_with_queue),
      T(test_connect_refused),
      T(test_connect_timeout),
      T(test_no_socket),
      T(test_backend_reset),
      T(test_connection_closes),
      T(test_backpressure_to_backend),
      T(test_backpressure_to_client),
      T(test_send_refused),
  };
  return cmocka_run_group_tests_name("tcp", tests, NULL, NULL);
}
