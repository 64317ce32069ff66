/* postern: unit tests for one HTTP exchange (src/stream.c), driven by a
 * fake front end and a fake connection (a pst_host_t whose services record
 * what the stream asks) over a real pool set, against an HTTP/1.1 backend
 * the test serves on 127.0.0.1 (loop_test_util.h) or the in-process
 * builtin:info: the response's head, body and end; request bodies;
 * keep-alive reuse and the one retry on a fresh connection; 502 and 504;
 * the waiting count; cuts; a front end that frees its stream from inside a
 * callback; backpressure; 101 tunnels; and builtin:info's GET, HEAD and
 * POST. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/common.h"
#include "postern/http.h"
#include "postern/pool.h"
#include "postern/stream.h"

#include "loop_test_util.h"

/* ---- a fake connection ------------------------------------------------------ */

typedef struct {
  pst_host_t h;
  pst_host_phase_t phase;
  int waiting; /* the count the stream keeps through waiting() */
  int waiting_max;
  int waiting_calls;
  int touches;
  int facts;
} fake_host_t;

static fake_host_t fh;

static fake_host_t *F(const pst_host_t *h) { return (fake_host_t *)h; }

static int host_send(pst_host_t *h, const char *data, size_t len) {
  fail_msg("a stream sends through its front end");
  return 0;
}
static size_t host_queued(const pst_host_t *h) { return 0; }
static void host_pause(pst_host_t *h, int pause) { fail_msg("a stream does not pause the client"); }
static void host_end(pst_host_t *h) { fail_msg("a stream does not end the client"); }

static void host_close(pst_host_t *h, int err, const char *reason) {
  fail_msg("a stream does not close the connection");
}

static const char *host_why(pst_host_t *h, const char *fmt, ...) { return ""; }
static pst_host_phase_t host_phase(const pst_host_t *h) { return F(h)->phase; }
static void host_touch(pst_host_t *h) { F(h)->touches++; }

static void host_waiting(pst_host_t *h, int delta) {
  fake_host_t *f = F(h);
  assert_true(delta == 1 || delta == -1);
  f->waiting += delta;
  f->waiting_calls++;
  assert_true(f->waiting >= 0);
  if (f->waiting > f->waiting_max) f->waiting_max = f->waiting;
}

static void host_facts(pst_host_t *h, pst_info_facts_t *f) {
  F(h)->facts++;
  memset(f, 0, sizeof(*f));
  f->client = "127.0.0.1:40000";
  f->sni = "info.test";
  f->alpn = "http/1.1";
  f->version = "TLSv1.3";
  f->cipher = "TLS_AES_128_GCM_SHA256";
  f->group = "X25519";
  f->early_data = "not sent";
  f->handshake_ms = 1.5;
  f->listener = "test";
}

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

/* ---- a fake front end ------------------------------------------------------ */

typedef struct {
  pst_stream_t *s;
  int heads; /* every head, 1xx included */
  int informational;
  int status; /* of the last head */
  int keep_alive;
  pst_body_kind_t body_kind;
  uint64_t content_length;
  char content_type[64];
  char content_length_field[32]; /* a Content-Length field kept in the headers */
  pst_buf_t body;
  int ends;
  int errors;
  int error_status;
  char why[128];
  int drains;
  int after_done;   /* callbacks after on_end or on_error: must stay 0 */
  int free_in_head; /* pst_stream_free from inside on_head */
  int free_in_end;  /* pst_stream_free from inside on_end / on_error */
  int free_in_body; /* pst_stream_free from inside on_body */
  int freed;
} front_t;

static front_t fe, fe2;

static front_t *FE(pst_stream_t *s) { return s->front; }

static void front_free(front_t *f) {
  if (f->freed) return;
  f->freed = 1;
  pst_stream_free(f->s);
}

static int on_head(pst_stream_t *s, pst_http_response_t *resp) {
  front_t *f = FE(s);
  if (f->ends || f->errors) f->after_done++;
  f->heads++;
  f->status = resp->status;
  if (resp->status < 200) f->informational++;
  f->keep_alive = resp->keep_alive;
  f->body_kind = resp->body;
  f->content_length = resp->content_length;
  const char *ct = pst_headers_get(&resp->headers, "content-type");
  snprintf(f->content_type, sizeof(f->content_type), "%s", ct != NULL ? ct : "");
  const char *cl = pst_headers_get(&resp->headers, "content-length");
  snprintf(f->content_length_field, sizeof(f->content_length_field), "%s", cl != NULL ? cl : "");
  pst_http_response_free(resp);
  free(resp);
  if (f->free_in_head) front_free(f);
  return 0;
}

static int on_body(pst_stream_t *s, const char *data, size_t len) {
  front_t *f = FE(s);
  if (f->ends || f->errors) f->after_done++;
  assert_int_equal(pst_buf_append(&f->body, data, len), 0);
  if (f->free_in_body) front_free(f);
  return 0;
}

static void on_end(pst_stream_t *s) {
  front_t *f = FE(s);
  if (f->ends || f->errors) f->after_done++;
  f->ends++;
  if (f->free_in_end) front_free(f);
}

static void on_error(pst_stream_t *s, int status, const char *why) {
  front_t *f = FE(s);
  if (f->ends || f->errors) f->after_done++;
  f->errors++;
  f->error_status = status;
  snprintf(f->why, sizeof(f->why), "%s", why);
  if (f->free_in_end) front_free(f);
}

static void on_drain(pst_stream_t *s) { FE(s)->drains++; }

static const pst_stream_ops_t stream_ops = {
    .on_head = on_head,
    .on_body = on_body,
    .on_end = on_end,
    .on_error = on_error,
    .on_drain = on_drain,
};

static void front_reset(front_t *f) {
  pst_buf_free(&f->body);
  memset(f, 0, sizeof(*f));
}

/* ---- fixture -------------------------------------------------------------- */

static pst_listener_conf_t lc;
static pst_backend_conf_t bc;
static pst_pools_t *pools;
static tb_t tb;

static int setup(void **state) {
  loop_setup();
  memset(&lc, 0, sizeof(lc));
  lc.name = "test";
  lc.mode = PST_MODE_HTTP;
  lc.backend_connect_timeout_ms = 1000;
  lc.backend_response_timeout_ms = 1000;
  lc.max_header_bytes = 32768;
  lc.pool_max_idle = 8;
  lc.pool_idle_ms = 60000;
  lc.forwarded = PST_FORWARDED_XFF;
  memset(&tb, 0, sizeof(tb));
  pools = pst_pools_new(loop);
  assert_non_null(pools);
  memset(&fh, 0, sizeof(fh));
  fh.h.ops = &host_ops;
  fh.h.id = 9;
  fh.h.loop = loop;
  fh.h.pools = pools;
  fh.h.lc = &lc;
  fh.h.backend = &bc;
  fh.h.peer = "127.0.0.1:40000";
  fh.h.peer_ip = "127.0.0.1";
  fh.h.sni = "example.test";
  fh.phase = PST_HOST_OPEN;
  front_reset(&fe);
  front_reset(&fe2);
  return 0;
}

static int teardown(void **state) {
  /* A test that failed half-way leaves its stream running: free it before
   * the pools go, as a closing connection would. */
  front_free(&fe);
  front_free(&fe2);
  tb_stop(&tb);
  pst_pools_shutdown(pools);
  WAIT_QUIETLY(pst_pools_open(pools) == 0);
  unsigned open = pst_pools_open(pools);
  if (open == 0) pst_pools_free(pools); /* else it would assert */
  pools = NULL;
  front_reset(&fe);
  front_reset(&fe2);
  loop_teardown();
  assert_int_equal(open, 0);
  return 0;
}

static pst_http_request_t *request(const char *method, const char *target) {
  pst_http_request_t *r = calloc(1, sizeof(*r));
  assert_non_null(r);
  r->method = strdup(method);
  r->target = strdup(target);
  r->authority = strdup("example.test");
  assert_non_null(r->method);
  assert_non_null(r->target);
  assert_non_null(r->authority);
  r->http_minor = 1;
  r->keep_alive = 1;
  return r;
}

static pst_stream_t *start(front_t *f, pst_http_request_t *req) {
  f->s = pst_stream_start(&fh.h, &stream_ops, f, 0, req);
  assert_non_null(f->s);
  assert_ptr_equal(f->s->front, f);
  /* No callback from inside the call. */
  assert_int_equal(f->heads + f->ends + f->errors + f->drains, 0);
  return f->s;
}

static const char *body_str(front_t *f) {
  assert_int_equal(pst_buf_append(&f->body, "", 1), 0);
  f->body.len--;
  return pst_buf_head(&f->body);
}

static void answer_hello(tb_conn_t *c, const char *req, size_t len) {
  tb_write_str(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
}

static void answer_nothing(tb_conn_t *c, const char *req, size_t len) {}

/* The test's backend answering every request with h. */
static void backend_start(void (*h)(tb_conn_t *, const char *, size_t)) {
  tb_start(&tb);
  tb.on_data = tb_http;
  tb.on_request = h;
  backend_at(&bc, tb.port);
}

/* ---- exchanges ---------------------------------------------------------------- */

static void test_get(void **state) {
  backend_start(answer_hello);
  pst_stream_t *s = start(&fe, request("GET", "/a?b=1"));
  assert_int_equal(s->state, PST_STREAM_CONNECTING);
  WAIT_FOR(fe.ends == 1);
  assert_int_equal(fe.errors, 0);
  assert_int_equal(fe.heads, 1);
  assert_int_equal(fe.status, 200);
  assert_string_equal(fe.content_type, "text/plain");
  assert_string_equal(body_str(&fe), "hello");
  assert_int_equal(s->state, PST_STREAM_DONE);
  assert_int_equal(s->status, 200);
  assert_int_equal(s->bytes_out, 5);
  assert_null(s->bconn); /* released before on_end */
  assert_false(s->early_data);
  /* The request as the backend saw it: HTTP/1.1 with forwarding fields. */
  assert_non_null(strstr(tb.last_request, "GET /a?b=1 HTTP/1.1\r\n"));
  assert_non_null(strstr(tb.last_request, "\r\nX-Forwarded-For: 127.0.0.1\r\n"));
  assert_null(strstr(tb.last_request, "Early-Data"));
  /* Waiting for the head: +1, then -1. */
  assert_int_equal(fh.waiting, 0);
  assert_int_equal(fh.waiting_max, 1);
  assert_int_equal(fh.waiting_calls, 2);
  assert_true(fh.touches > 0);
  front_free(&fe);
  assert_int_equal(pst_pools_open(pools), 1); /* kept alive, pooled */
  assert_int_equal(fe.after_done, 0);
  tb_stop(&tb);
}

/* A second exchange reuses the kept-alive backend connection. */
static void test_keep_alive_reuse(void **state) {
  backend_start(answer_hello);
  start(&fe, request("GET", "/1"));
  WAIT_FOR(fe.ends == 1);
  front_free(&fe);
  pst_stream_t *s = start(&fe2, request("GET", "/2"));
  /* A pooled connection is written to at once. */
  assert_int_equal(s->state, PST_STREAM_WAITING);
  assert_int_equal(fh.waiting, 1);
  WAIT_FOR(fe2.ends == 1);
  assert_string_equal(body_str(&fe2), "hello");
  assert_int_equal(tb.n_conns, 1);
  assert_int_equal(tb.conns[0]->requests, 2);
  assert_int_equal(s->retried, 0);
  assert_int_equal(fh.waiting, 0);
  front_free(&fe2);
  tb_stop(&tb);
}

static void answer_close(tb_conn_t *c, const char *req, size_t len) {
  tb_write_str(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
}

/* Connection: close from the backend: not reused. */
static void test_backend_close_not_reused(void **state) {
  backend_start(answer_close);
  start(&fe, request("GET", "/1"));
  WAIT_FOR(fe.ends == 1);
  assert_false(fe.keep_alive);
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
  start(&fe2, request("GET", "/2"));
  WAIT_FOR(fe2.ends == 1);
  assert_int_equal(tb.n_conns, 2);
  front_free(&fe2);
  tb_stop(&tb);
}

static void answer_then_close_second(tb_conn_t *c, const char *req, size_t len) {
  if (c->requests == 2) {
    tb_close_conn(c); /* dies without a byte */
    return;
  }
  answer_hello(c, req, len);
}

/* A reused connection that dies before answering a GET: the request goes
 * again, once, on a fresh connection (RFC 9110 9.2.2). */
static void test_retry_on_fresh_connection(void **state) {
  backend_start(answer_then_close_second);
  start(&fe, request("GET", "/1"));
  WAIT_FOR(fe.ends == 1);
  front_free(&fe);
  pst_stream_t *s = start(&fe2, request("GET", "/2"));
  WAIT_FOR(fe2.ends + fe2.errors == 1);
  assert_int_equal(fe2.errors, 0);
  assert_int_equal(fe2.status, 200);
  assert_int_equal(s->retried, 1);
  assert_int_equal(tb.n_conns, 2);
  assert_int_equal(tb.requests, 3);
  assert_int_equal(fh.waiting, 0);
  front_free(&fe2);
  tb_stop(&tb);
}

/* A POST with a body is not sent twice: 502. */
static void test_no_retry_for_post(void **state) {
  backend_start(answer_then_close_second);
  start(&fe, request("GET", "/1"));
  WAIT_FOR(fe.ends == 1);
  front_free(&fe);
  pst_http_request_t *req = request("POST", "/form");
  req->body = PST_BODY_LENGTH;
  req->content_length = 4;
  pst_stream_t *s = start(&fe2, req);
  assert_int_equal(pst_stream_body(s, "data", 4), 0);
  assert_int_equal(pst_stream_body_end(s), 0);
  WAIT_FOR(fe2.ends + fe2.errors == 1);
  assert_int_equal(fe2.errors, 1);
  assert_int_equal(fe2.error_status, 502);
  assert_string_equal(fe2.why, "backend closed the connection");
  assert_int_equal(s->retried, 0);
  assert_int_equal(tb.n_conns, 1);
  assert_int_equal(fh.waiting, 0);
  front_free(&fe2);
  tb_stop(&tb);
}

/* A pooled connection found dead when the request is written (the
 * backend reset it while it was idle, before the pool could notice): the
 * request goes on a fresh connection at once, without an error. */
static void test_dead_pooled_connection_at_lease(void **state) {
  backend_start(answer_hello);
  start(&fe, request("GET", "/1"));
  WAIT_FOR(fe.ends == 1);
  front_free(&fe);
  assert_int_equal(pst_pools_open(pools), 1);
  /* The RST is out when uv_close returns; the loop does not run before the
   * next request. */
  assert_int_equal(uv_tcp_close_reset(&tb.conns[0]->tcp, tb_conn_on_close), 0);
  tb.conns[0]->closed = 1;
  pst_stream_t *s = start(&fe2, request("POST", "/2"));
  assert_int_equal(s->state, PST_STREAM_CONNECTING); /* a fresh one, connecting */
  WAIT_FOR(fe2.ends + fe2.errors == 1);
  assert_int_equal(fe2.ends, 1);
  assert_int_equal(tb.n_conns, 2);
  assert_int_equal(tb.requests, 2);
  front_free(&fe2);
  tb_stop(&tb);
}

static void answer_twice(tb_conn_t *c, const char *req, size_t len) {
  answer_hello(c, req, len);
  answer_hello(c, req, len);
}

/* Bytes after a complete response that nobody asked for: the response is
 * delivered, the connection is not reused. */
static void test_extra_bytes_not_reused(void **state) {
  backend_start(answer_twice);
  start(&fe, request("GET", "/"));
  WAIT_FOR(fe.ends == 1);
  assert_string_equal(body_str(&fe), "hello");
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* The backend answers before the request body is complete (413, say):
 * the exchange ends, later body bytes are ignored, and the connection is
 * not reused (the request was not complete). */
static void test_response_before_body_end(void **state) {
  backend_start(answer_nothing);
  pst_http_request_t *req = request("POST", "/big");
  req->body = PST_BODY_LENGTH;
  req->content_length = 1000;
  pst_stream_t *s = start(&fe, req);
  assert_int_equal(pst_stream_body(s, "part", 4), 0);
  WAIT_FOR(tb.n_conns == 1 && tb.conns[0]->in.len > 0);
  tb_write_str(tb.conns[0], "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
  WAIT_FOR(fe.ends == 1);
  assert_int_equal(fe.status, 413);
  assert_int_equal(pst_stream_body(s, "more", 4), 0);
  assert_int_equal(pst_stream_body_end(s), 0);
  assert_int_equal(fh.waiting_calls, 0);
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

static void answer_echo_length(tb_conn_t *c, const char *req, size_t len) {
  const char *body = strstr(req, "\r\n\r\n") + 4;
  char resp[256];
  snprintf(resp, sizeof(resp), "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n%s",
           strlen(body), body);
  tb_write_str(c, resp);
}

/* Request body bytes: some wait for the connection, the rest follow;
 * on_drain tells the front end it may read more. */
static void test_post_body(void **state) {
  backend_start(answer_echo_length);
  pst_http_request_t *req = request("POST", "/up");
  req->body = PST_BODY_LENGTH;
  req->content_length = 9;
  pst_stream_t *s = start(&fe, req);
  assert_int_equal(pst_stream_body(s, "early", 5), 0);
  assert_int_equal(pst_stream_queued(s), 5); /* waits for the connection */
  WAIT_FOR(fe.drains >= 1);
  assert_int_equal(s->state, PST_STREAM_SENDING);
  assert_int_equal(fh.waiting, 0); /* not waiting while the body comes */
  assert_int_equal(pst_stream_body(s, "late", 4), 0);
  assert_int_equal(pst_stream_body_end(s), 0);
  assert_int_equal(s->state, PST_STREAM_WAITING);
  assert_int_equal(fh.waiting, 1);
  WAIT_FOR(fe.ends == 1);
  assert_int_equal(fe.status, 201);
  assert_string_equal(body_str(&fe), "earlylate");
  assert_int_equal(s->bytes_in, 9);
  assert_non_null(strstr(tb.last_request, "\r\nContent-Length: 9\r\n"));
  assert_int_equal(fh.waiting, 0);
  front_free(&fe);
  tb_stop(&tb);
}

/* An h2 body of unknown length goes chunked (RFC 9112 7.1). */
static void test_stream_body_chunked(void **state) {
  backend_start(answer_hello);
  pst_http_request_t *req = request("PUT", "/f");
  req->body = PST_BODY_STREAM;
  pst_stream_t *s = start(&fe, req);
  assert_int_equal(pst_stream_body(s, "abc", 3), 0);
  WAIT_FOR(fe.drains >= 1);
  assert_int_equal(pst_stream_body(s, "de", 2), 0);
  assert_int_equal(pst_stream_body_end(s), 0);
  WAIT_FOR(fe.ends == 1);
  const char *body = strstr(tb.last_request, "\r\n\r\n");
  assert_non_null(body);
  assert_string_equal(body + 4, "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  assert_non_null(strstr(tb.last_request, "\r\nTransfer-Encoding: chunked\r\n"));
  front_free(&fe);
  tb_stop(&tb);
}

static void answer_head(tb_conn_t *c, const char *req, size_t len) {
  tb_write_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
}

/* A response to HEAD has no body whatever Content-Length says, and its
 * connection can carry the next request. */
static void test_head(void **state) {
  backend_start(answer_head);
  start(&fe, request("HEAD", "/"));
  WAIT_FOR(fe.ends == 1);
  assert_int_equal(fe.status, 200);
  assert_int_equal(fe.body.len, 0);
  front_free(&fe);
  assert_int_equal(pst_pools_open(pools), 1);
  pst_stream_t *s = start(&fe2, request("HEAD", "/"));
  WAIT_FOR(fe2.ends == 1);
  assert_int_equal(s->retried, 0);
  assert_int_equal(tb.n_conns, 1);
  front_free(&fe2);
  tb_stop(&tb);
}

static void answer_103(tb_conn_t *c, const char *req, size_t len) {
  tb_write_str(c, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n");
  tb_write_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

/* 1xx heads go to the front end as they are; the stream waits on for the
 * final one. */
static void test_informational(void **state) {
  backend_start(answer_103);
  pst_stream_t *s = start(&fe, request("GET", "/"));
  WAIT_FOR(fe.ends == 1);
  assert_int_equal(fe.heads, 2);
  assert_int_equal(fe.informational, 1);
  assert_int_equal(fe.status, 200);
  assert_int_equal(s->status, 200);
  assert_string_equal(body_str(&fe), "ok");
  assert_int_equal(fh.waiting_max, 1);
  assert_int_equal(fh.waiting, 0);
  front_free(&fe);
  tb_stop(&tb);
}

static void answer_until_close(tb_conn_t *c, const char *req, size_t len) {
  tb_write_str(c, "HTTP/1.1 200 OK\r\n\r\nall of it");
  tb_shutdown(c);
}

/* A body delimited by the backend closing (RFC 9112 6.3 item 8) ends with
 * the close, and the connection is not reused. */
static void test_body_until_close(void **state) {
  backend_start(answer_until_close);
  start(&fe, request("GET", "/"));
  WAIT_FOR(fe.ends + fe.errors == 1);
  assert_int_equal(fe.ends, 1);
  assert_int_equal(fe.body_kind, PST_BODY_UNTIL_CLOSE);
  assert_string_equal(body_str(&fe), "all of it");
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* ---- failures ------------------------------------------------------------- */

static void test_connect_refused_502(void **state) {
  int port;
  int fd = refusing_port(&port);
  backend_at(&bc, port);
  pst_stream_t *s = start(&fe, request("GET", "/"));
  WAIT_FOR(fe.errors == 1);
  assert_int_equal(fe.error_status, 502);
  assert_string_equal(fe.why, "backend connect failed");
  assert_int_equal(fe.heads + fe.ends, 0);
  assert_int_equal(s->state, PST_STREAM_DONE);
  assert_int_equal(fh.waiting_calls, 0); /* it never waited for a head */
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
  close(fd);
}

/* No socket at all: NULL, and the request is freed (LeakSanitizer). */
static void test_no_socket(void **state) {
  memset(&bc, 0, sizeof(bc));
  bc.addr.ss.ss_family = AF_UNSPEC;
  snprintf(bc.addr.text, sizeof(bc.addr.text), "nowhere");
  assert_null(pst_stream_start(&fh.h, &stream_ops, &fe, 0, request("GET", "/")));
  assert_int_equal(fh.waiting_calls, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
}

static void test_connect_timeout_502(void **state) {
  int port, filler;
  int fd = full_listener(&port, &filler);
  lc.backend_connect_timeout_ms = 30;
  backend_at(&bc, port);
  start(&fe, request("GET", "/"));
  WAIT_FOR(fe.errors == 1);
  assert_int_equal(fe.error_status, 502);
  assert_string_equal(fe.why, "backend connect timeout");
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
  close(filler);
  close(fd);
}

/* No response head within timeouts.backend_response: 504, and the
 * connection is not reused. */
static void test_response_timeout_504(void **state) {
  lc.backend_response_timeout_ms = 30;
  backend_start(answer_nothing);
  uint64_t t0 = uv_now(loop);
  start(&fe, request("GET", "/slow"));
  WAIT_FOR(tb.requests == 1);
  assert_int_equal(fh.waiting, 1);
  WAIT_FOR(fe.errors == 1);
  assert_true(uv_now(loop) - t0 >= 30);
  assert_int_equal(fe.error_status, 504);
  assert_int_equal(fe.heads, 0);
  assert_int_equal(fh.waiting, 0);
  assert_int_equal(fh.waiting_calls, 2);
  front_free(&fe);
  WAIT_FOR(tb.conns[0]->eof);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

static void answer_garbage(tb_conn_t *c, const char *req, size_t len) {
  tb_write_str(c, "SMTP ready\r\n\r\n");
}

static void test_invalid_response_502(void **state) {
  backend_start(answer_garbage);
  start(&fe, request("GET", "/"));
  WAIT_FOR(fe.errors == 1);
  assert_int_equal(fe.error_status, 502);
  assert_string_equal(fe.why, "invalid response from the backend");
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

static void answer_truncated(tb_conn_t *c, const char *req, size_t len) {
  tb_write_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  tb_close_conn(c);
}

/* The backend goes away in the middle of the body: the response is cut
 * (status 0), since its head already reached the front end. */
static void test_truncated_body_cut(void **state) {
  backend_start(answer_truncated);
  start(&fe, request("GET", "/"));
  WAIT_FOR(fe.errors == 1);
  assert_int_equal(fe.heads, 1);
  assert_int_equal(fe.error_status, 0);
  assert_string_equal(body_str(&fe), "abc");
  assert_int_equal(fe.ends, 0);
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

static void answer_101(tb_conn_t *c, const char *req, size_t len) {
  tb_write_str(c,
               "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
               "Upgrade: websocket\r\n\r\nfrom backend");
}

/* 101 to a request that did not ask for an upgrade. */
static void test_unasked_101_502(void **state) {
  backend_start(answer_101);
  start(&fe, request("GET", "/"));
  WAIT_FOR(fe.errors == 1);
  assert_int_equal(fe.error_status, 502);
  assert_int_equal(fe.heads, 0);
  front_free(&fe);
  tb_stop(&tb);
}

/* ---- the front end's side --------------------------------------------------- */

/* The front end frees the stream from inside on_end, and from inside
 * on_body (the client went away mid-response: the backend connection is
 * closed, not reused). */
static void test_free_inside_callbacks(void **state) {
  backend_start(answer_hello);
  fe.free_in_end = 1;
  start(&fe, request("GET", "/"));
  WAIT_FOR(fe.ends == 1);
  assert_true(fe.freed);
  assert_int_equal(pst_pools_open(pools), 1);

  fe2.free_in_body = 1;
  start(&fe2, request("GET", "/"));
  WAIT_FOR(fe2.freed);
  run_for(10);
  assert_int_equal(fe2.ends + fe2.errors, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  assert_int_equal(fh.waiting, 0);
  tb_stop(&tb);
}

/* Freed from inside on_head: nothing more is heard (the body is not
 * delivered), the connection is closed. */
static void test_free_inside_head(void **state) {
  backend_start(answer_hello);
  fe.free_in_head = 1;
  start(&fe, request("GET", "/"));
  WAIT_FOR(fe.freed);
  run_for(10);
  assert_int_equal(fe.heads, 1);
  assert_int_equal(fe.body.len, 0);
  assert_int_equal(fe.ends + fe.errors, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  assert_int_equal(fh.waiting, 0);
  tb_stop(&tb);
}

/* Request body backpressure: the front end watches pst_stream_queued and
 * hears on_drain once the backend has taken the bytes. */
static void test_body_backpressure(void **state) {
  backend_start(answer_nothing);
  tb.no_read = 1;
  tb.discard = 1;
  pst_http_request_t *req = request("PUT", "/big");
  req->body = PST_BODY_STREAM;
  pst_stream_t *s = start(&fe, req);
  WAIT_FOR(fe.drains == 1 && tb.n_conns == 1);
  static char chunk[128 * 1024];
  memset(chunk, 'b', sizeof(chunk));
  for (int i = 0; i < 512 && pst_stream_queued(s) <= PST_BACKEND_HIGH_WATER; i++) {
    assert_int_equal(pst_stream_body(s, chunk, sizeof(chunk)), 0);
  }
  assert_true(pst_stream_queued(s) > PST_BACKEND_HIGH_WATER);
  int drains = fe.drains;
  tb_read(tb.conns[0], 1);
  WAIT_FOR(fe.drains > drains && pst_stream_queued(s) < PST_BACKEND_LOW_WATER);
  assert_int_equal(fe.errors, 0);
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* Freed while connecting or while waiting for the head: no callback, the
 * waiting count is given back, the connection closed. */
static void test_free_early(void **state) {
  backend_start(answer_nothing);
  start(&fe, request("GET", "/"));
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);

  start(&fe2, request("GET", "/"));
  WAIT_FOR(tb.requests == 1);
  assert_int_equal(fh.waiting, 1);
  front_free(&fe2);
  assert_int_equal(fh.waiting, 0);
  WAIT_FOR(pst_pools_open(pools) == 0);
  run_for(10);
  assert_int_equal(fe.heads + fe.ends + fe.errors + fe2.heads + fe2.ends + fe2.errors, 0);
  tb_stop(&tb);
}

/* pst_stream_pause stops the response until the front end has room. */
static void test_pause(void **state) {
  backend_start(answer_hello);
  pst_stream_t *s = start(&fe, request("GET", "/"));
  pst_stream_pause(s, 1); /* while connecting: reading starts paused */
  WAIT_FOR(tb.requests == 1);
  run_for(30);
  assert_int_equal(fe.heads, 0);
  pst_stream_pause(s, 0);
  WAIT_FOR(fe.ends == 1);
  assert_string_equal(body_str(&fe), "hello");
  front_free(&fe);
  tb_stop(&tb);
}

/* A request that came as 0-RTT early data says so (RFC 8470 5.1). */
static void test_early_data(void **state) {
  backend_start(answer_hello);
  fh.phase = PST_HOST_EARLY;
  pst_stream_t *s = start(&fe, request("GET", "/"));
  assert_true(s->early_data);
  WAIT_FOR(fe.ends == 1);
  assert_non_null(strstr(tb.last_request, "\r\nEarly-Data: 1\r\n"));
  front_free(&fe);
  tb_stop(&tb);
}

/* 101 Switching Protocols: raw bytes both ways, bytes after the head
 * included, half-close from the client, end when the backend closes. */
static void test_tunnel(void **state) {
  backend_start(answer_101);
  pst_http_request_t *req = request("GET", "/ws");
  req->upgrade = 1;
  req->upgrade_proto = strdup("websocket");
  pst_stream_t *s = start(&fe, req);
  assert_int_equal(pst_stream_tunnel_write(s, "x", 1), PST_EPROTO); /* not yet */
  WAIT_FOR(fe.body.len == 12);
  assert_int_equal(fe.status, 101);
  assert_string_equal(body_str(&fe), "from backend");
  assert_int_equal(s->state, PST_STREAM_TUNNEL);
  assert_int_equal(fh.waiting, 0);
  assert_non_null(strstr(tb.last_request, "\r\nUpgrade: websocket\r\n"));
  assert_int_equal(pst_stream_tunnel_write(s, "from client", 11), 0);
  WAIT_FOR(tb.conns[0]->in.len == 11);
  assert_memory_equal(pst_buf_head(&tb.conns[0]->in), "from client", 11);
  pst_stream_tunnel_shutdown(s);
  WAIT_FOR(tb.conns[0]->eof);
  tb_write_str(tb.conns[0], "+more");
  WAIT_FOR(fe.body.len == 17);
  tb_close_conn(tb.conns[0]);
  WAIT_FOR(fe.ends == 1);
  assert_int_equal(fe.errors, 0);
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
  tb_stop(&tb);
}

/* ---- builtin:info ------------------------------------------------------------ */

static void test_info_get(void **state) {
  backend_info(&bc);
  pst_stream_t *s = start(&fe, request("GET", "/"));
  WAIT_FOR(fe.ends == 1);
  assert_int_equal(fe.errors, 0);
  assert_int_equal(fe.status, 200);
  assert_int_equal(fe.body_kind, PST_BODY_LENGTH);
  assert_true(fe.body.len > 0);
  assert_int_equal(fe.body.len, fe.content_length);
  assert_int_equal(s->bytes_out, fe.body.len);
  assert_string_equal(fe.content_type, "text/html; charset=utf-8");
  assert_non_null(strstr(body_str(&fe), "TLS_AES_128_GCM_SHA256"));
  assert_int_equal(fh.facts, 1);
  assert_int_equal(fh.waiting, 0);
  assert_int_equal(fh.waiting_max, 1);
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0); /* never pooled */

  /* JSON when asked for. */
  pst_http_request_t *req = request("GET", "/");
  assert_int_equal(pst_headers_add(&req->headers, "accept", 6, "application/json", 16), 0);
  start(&fe2, req);
  WAIT_FOR(fe2.ends == 1);
  assert_string_equal(fe2.content_type, "application/json");
  assert_int_equal(body_str(&fe2)[0], '{');
  front_free(&fe2);
  WAIT_FOR(pst_pools_open(pools) == 0);
}

/* Several Accept fields are one list (RFC 9110 5.3): the second asks. */
static void test_info_accept_list(void **state) {
  backend_info(&bc);
  pst_http_request_t *req = request("GET", "/");
  assert_int_equal(pst_headers_add(&req->headers, "accept", 6, "text/html", 9), 0);
  assert_int_equal(pst_headers_add(&req->headers, "Accept", 6, "application/json", 16), 0);
  start(&fe, req);
  WAIT_FOR(fe.ends == 1);
  assert_string_equal(fe.content_type, "application/json");
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
}

/* HEAD: the GET's head, its Content-Length field kept (RFC 9110 8.6,
 * 9.3.2), and no body. */
static void test_info_head(void **state) {
  backend_info(&bc);
  start(&fe, request("GET", "/"));
  WAIT_FOR(fe.ends == 1);
  start(&fe2, request("HEAD", "/"));
  WAIT_FOR(fe2.ends == 1);
  assert_int_equal(fe2.errors, 0);
  assert_int_equal(fe2.status, 200);
  assert_int_equal(fe2.body_kind, PST_BODY_NONE);
  assert_int_equal(fe2.body.len, 0);
  assert_int_equal(strtoull(fe2.content_length_field, NULL, 10), fe.body.len);
  assert_string_equal(fe2.content_type, fe.content_type);
  front_free(&fe);
  front_free(&fe2);
  WAIT_FOR(pst_pools_open(pools) == 0);
}

/* Any other method: 405. Its body has nowhere to go and is dropped. */
static void test_info_post(void **state) {
  backend_info(&bc);
  pst_http_request_t *req = request("POST", "/");
  req->body = PST_BODY_LENGTH;
  req->content_length = 3;
  pst_stream_t *s = start(&fe, req);
  assert_int_equal(pst_stream_body(s, "abc", 3), 0);
  WAIT_FOR(fe.ends + fe.errors == 1);
  assert_int_equal(fe.ends, 1);
  assert_int_equal(fe.status, 405);
  assert_int_equal(pst_stream_body_end(s), 0);
  assert_int_equal(fh.waiting, 0);
  front_free(&fe);
  WAIT_FOR(pst_pools_open(pools) == 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_get),
      T(test_keep_alive_reuse),
      T(test_backend_close_not_reused),
      T(test_retry_on_fresh_connection),
      T(test_no_retry_for_post),
      T(test_dead_pooled_connection_at_lease),
      T(test_extra_bytes_not_reused),
      T(test_response_before_body_end),
      T(test_post_body),
      T(test_stream_body_chunked),
      T(test_head),
      T(test_informational),
      T(test_body_until_close),
      T(test_connect_refused_502),
      T(test_no_socket),
      T(test_connect_timeout_502),
      T(test_response_timeout_504),
      T(test_invalid_response_502),
      T(test_truncated_body_cut),
      T(test_unasked_101_502),
      T(test_free_inside_callbacks),
      T(test_free_inside_head),
      T(test_body_backpressure),
      T(test_free_early),
      T(test_pause),
      T(test_early_data),
      T(test_tunnel),
      T(test_info_get),
      T(test_info_accept_list),
      T(test_info_head),
      T(test_info_post),
  };
  return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
