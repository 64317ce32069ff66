/* Unit tests for the HTTP/1.1 parsers (src/h1_parse.c): requests (framing,
 * pipelining, smuggling refusals, limits, hop-by-hop fields, upgrade) and
 * backend responses (framing, 1xx, 101 tunnels, HEAD, truncation), with
 * every input also fed byte by byte, and allocation failures injected. */
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

#include "http_test_util.h"

/* ---- request collector ---------------------------------------------------- */

#define MAX_HEADS 8

typedef struct {
  pst_http_request_t *req[MAX_HEADS];
  pst_http_response_t *resp[MAX_HEADS];
  int heads, ends;
  pst_buf_t body;
  int head_rc, body_rc, end_rc; /* what the callbacks return */
} rec_t;

static int rec_req_head(void *arg, pst_http_request_t *r) {
  rec_t *t = arg;
  assert_true(t->heads < MAX_HEADS);
  t->req[t->heads++] = r;
  return t->head_rc;
}

static int rec_resp_head(void *arg, pst_http_response_t *r) {
  rec_t *t = arg;
  assert_true(t->heads < MAX_HEADS);
  t->resp[t->heads++] = r;
  return t->head_rc;
}

static int rec_body(void *arg, const char *data, size_t len) {
  rec_t *t = arg;
  long saved = fail_at; /* the collector itself never fails */
  fail_at = -1;
  assert_int_equal(pst_buf_append(&t->body, data, len), 0);
  fail_at = saved;
  return t->body_rc;
}

static int rec_end(void *arg) {
  rec_t *t = arg;
  t->ends++;
  return t->end_rc;
}

static void rec_free(rec_t *t) {
  for (int i = 0; i < t->heads; i++) {
    pst_http_request_free(t->req[i]);
    free(t->req[i]);
    pst_http_response_free(t->resp[i]);
    free(t->resp[i]);
  }
  pst_buf_free(&t->body);
  memset(t, 0, sizeof(*t));
}

static const pst_h1_req_callbacks_t req_cb = {rec_req_head, rec_body, rec_end};
static const pst_h1_resp_callbacks_t resp_cb = {rec_resp_head, rec_body, rec_end};

static pst_h1_req_parser_t *req_new(rec_t *t) {
  pst_h1_req_parser_t *p = pst_h1_req_parser_new(&req_cb, t, 1024);
  assert_non_null(p);
  return p;
}

/* Feeds s whole, then again and again with what was left after each
 * stop, until all is used or an error. Returns the last result. */
static int req_feed_all(pst_h1_req_parser_t *p, const char *s, size_t n, int *status) {
  for (int guard = 0; guard < 100; guard++) {
    size_t used = 0;
    int rc = pst_h1_req_feed(p, s, n, &used, status);
    assert_true(used <= n);
    s += used;
    n -= used;
    if (rc != 0 || n == 0) return rc;
  }
  fail_msg("parser made no progress");
  return -1;
}

/* The same, one byte per call; a call that stops without taking its byte
 * (a message ended) is repeated. */
static int req_feed_bytes(pst_h1_req_parser_t *p, const char *s, size_t n, int *status) {
  size_t off = 0;
  for (int zero = 0; off < n;) {
    size_t used = 0;
    int rc = pst_h1_req_feed(p, s + off, 1, &used, status);
    assert_true(used <= 1);
    off += used;
    if (rc != 0) return rc;
    zero = used == 0 ? zero + 1 : 0;
    assert_true(zero < 2);
  }
  return 0;
}

/* Parses one request fed whole (or byte by byte) into t. */
static int parse_req(rec_t *t, const char *s, int bytewise, int *status) {
  pst_h1_req_parser_t *p = req_new(t);
  int st = -1;
  int rc = bytewise ? req_feed_bytes(p, s, strlen(s), &st) : req_feed_all(p, s, strlen(s), &st);
  if (status != NULL) *status = st;
  if (rc < 0) {
    assert_non_null(pst_h1_req_why(p));
  } else {
    assert_null(pst_h1_req_why(p));
  }
  pst_h1_req_parser_free(p);
  return rc;
}

/* Field i of h, which must be called name, in name's case: names keep the
 * case they were received in. */
static const char *hdr(const pst_headers_t *h, size_t i, const char *name) {
  assert_true(i < h->n);
  assert_string_equal(h->v[i].name, name);
  assert_int_equal(h->v[i].name_len, strlen(name));
  assert_int_equal(h->v[i].value_len, strlen(h->v[i].value));
  return h->v[i].value;
}

/* ---- requests ------------------------------------------------------------- */

static void test_simple_get(void **state) {
  rec_t t = {0};
  const char *s =
      "GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  curl/8 \r\n"
      "Accept: */*\r\nX-Empty:\r\nACCEPT: text/html\r\n\r\n";
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    int st = -1;
    assert_int_equal(parse_req(&t, s, bytewise, &st), 0);
    assert_int_equal(st, 0);
    assert_int_equal(t.heads, 1);
    assert_int_equal(t.ends, 1);
    pst_http_request_t *r = t.req[0];
    assert_string_equal(r->method, "GET");
    assert_string_equal(r->target, "/a/b?c=d");
    assert_string_equal(r->authority, "example.com");
    assert_int_equal(r->http_minor, 1);
    assert_true(r->keep_alive);
    assert_false(r->expect_continue);
    assert_false(r->upgrade);
    assert_null(r->upgrade_proto);
    assert_int_equal(r->body, PST_BODY_NONE);
    assert_int_equal(r->headers.n, 4);
    assert_string_equal(hdr(&r->headers, 0, "User-Agent"), "curl/8");
    assert_string_equal(hdr(&r->headers, 1, "Accept"), "*/*");
    assert_string_equal(hdr(&r->headers, 2, "X-Empty"), "");
    assert_string_equal(hdr(&r->headers, 3, "ACCEPT"), "text/html");
    assert_int_equal(r->headers.bytes, strlen("user-agentcurl/8accept*/*x-emptyaccepttext/html"));
    assert_string_equal(pst_headers_get(&r->headers, "accept"), "*/*");
    assert_int_equal(t.body.len, 0);
    rec_free(&t);
  }
}

static void test_pipelined(void **state) {
  rec_t t = {0};
  const char *a = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n";
  const char *b = "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz";
  const char *c = "\r\nGET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  const char *d = "GET /4 HTTP/1.1\r\nHost: h\r\n\r\n";
  char all[512];
  snprintf(all, sizeof(all), "%s%s%s%s", a, b, c, d);
  size_t n = strlen(all), off = 0, used = 0;
  int st;
  pst_h1_req_parser_t *p = req_new(&t);
  /* One request per feed, with its exact size. */
  assert_int_equal(pst_h1_req_feed(p, all, n, &used, &st), 0);
  assert_int_equal(used, strlen(a));
  assert_int_equal(t.heads, 1);
  assert_int_equal(t.ends, 1);
  off += used;
  assert_int_equal(pst_h1_req_feed(p, all + off, n - off, &used, &st), 0);
  assert_int_equal(used, strlen(b));
  assert_int_equal(t.heads, 2);
  assert_int_equal(t.ends, 2);
  assert_string_equal(buf_str(&t.body), "xyz");
  off += used;
  /* An empty line before a request line is ignored (RFC 9112 2.2). */
  assert_int_equal(pst_h1_req_feed(p, all + off, n - off, &used, &st), 0);
  assert_int_equal(used, strlen(c));
  assert_int_equal(t.heads, 3);
  assert_int_equal(t.ends, 3);
  assert_string_equal(t.req[2]->target, "/3");
  assert_false(t.req[2]->keep_alive);
  off += used;
  /* After Connection: close, the rest is discarded unparsed. */
  assert_int_equal(pst_h1_req_feed(p, all + off, n - off, &used, &st), 0);
  assert_int_equal(used, strlen(d));
  assert_int_equal(t.heads, 3);
  assert_string_equal(t.req[0]->target, "/1");
  assert_string_equal(t.req[1]->target, "/2");
  assert_int_equal(t.req[1]->body, PST_BODY_LENGTH);
  assert_int_equal(t.req[1]->content_length, 3);
  pst_h1_req_parser_free(p);
  rec_free(&t);
}

static void test_split_byte_by_byte(void **state) {
  rec_t t = {0};
  const char *s =
      "PUT /up HTTP/1.1\r\nHost: h:8443\r\nTransfer-Encoding: chunked\r\n"
      "X-A: 1\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n"
      "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
  pst_h1_req_parser_t *p = req_new(&t);
  int st;
  assert_int_equal(req_feed_bytes(p, s, strlen(s), &st), 0);
  assert_int_equal(t.heads, 2);
  assert_int_equal(t.ends, 2);
  assert_string_equal(t.req[0]->authority, "h:8443");
  assert_int_equal(t.req[0]->body, PST_BODY_CHUNKED);
  assert_int_equal(t.req[0]->headers.n, 1);
  assert_string_equal(buf_str(&t.body), "hello0123456789");
  assert_string_equal(t.req[1]->target, "/next");
  pst_h1_req_parser_free(p);
  rec_free(&t);
}

static void test_post_length_split(void **state) {
  rec_t t = {0};
  const char *head = "POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
  pst_h1_req_parser_t *p = req_new(&t);
  size_t used;
  int st;
  assert_int_equal(pst_h1_req_feed(p, head, strlen(head), &used, &st), 0);
  assert_int_equal(used, strlen(head));
  assert_int_equal(t.heads, 1);
  assert_int_equal(t.ends, 0);
  assert_int_equal(t.req[0]->body, PST_BODY_LENGTH);
  assert_int_equal(t.req[0]->content_length, 10);
  assert_int_equal(pst_h1_req_feed(p, "abcd", 4, &used, &st), 0);
  assert_int_equal(used, 4);
  assert_int_equal(t.ends, 0);
  assert_int_equal(pst_h1_req_feed(p, "efghijGET", 9, &used, &st), 0);
  assert_int_equal(used, 6);
  assert_int_equal(t.ends, 1);
  assert_string_equal(buf_str(&t.body), "abcdefghij");
  pst_h1_req_parser_free(p);
  rec_free(&t);
}

static void test_chunked_ext_trailers(void **state) {
  rec_t t = {0};
  const char *s =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
      "Trailer: X-Sum\r\n\r\n"
      "3;name=value\r\nabc\r\n"
      "03;q=\"quoted value\"\r\ndef\r\n"
      "1;a;b\r\ng\r\n"
      "0;last\r\nX-Sum: 123\r\nX-Other: x\r\n\r\n";
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    assert_int_equal(parse_req(&t, s, bytewise, NULL), 0);
    assert_int_equal(t.ends, 1);
    assert_string_equal(buf_str(&t.body), "abcdefg");
    /* Trailers dropped, Trailer removed (hop-by-hop here). */
    assert_int_equal(t.req[0]->headers.n, 0);
    rec_free(&t);
  }
}

typedef struct {
  const char *why;
  const char *req;
  size_t len;
  int status;
} bad_t;

#define B(why, req, status) \
  { why, req, sizeof(req) - 1, status }

#define RQ(x) "POST / HTTP/1.1\r\nHost: h\r\n" x
#define CHUNKED RQ("Transfer-Encoding: chunked\r\n\r\n")

static const bad_t bad_requests[] = {
    B("CL and TE",
      RQ("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 400),
    B("TE and CL",
      RQ("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 400),
    B("two CLs", RQ("Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"), 400),
    B("two equal CLs", RQ("Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"), 400),
    B("CL list", RQ("Content-Length: 3, 3\r\n\r\nabc"), 400),
    B("CL sign", RQ("Content-Length: +3\r\n\r\nabc"), 400),
    B("CL empty", RQ("Content-Length: \r\n\r\n"), 400),
    B("chunked, identity", RQ("Transfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
      400),
    B("identity", RQ("Transfer-Encoding: identity\r\n\r\nabc"), 400),
    B("chunked twice",
      RQ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
    B("chunked, chunked", RQ("Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"), 400),
    B("TE empty", RQ("Transfer-Encoding: \r\n\r\n"), 400),
    B("gzip, chunked", RQ("Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 501),
    B("TE on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
      400),
    B("bad chunk size", CHUNKED "x\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk size 0x", CHUNKED "0x3\r\nabc\r\n0\r\n\r\n", 400),
    B("negative chunk size", CHUNKED "-3\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk size space", CHUNKED "3 \r\nabc\r\n0\r\n\r\n", 400),
    B("chunk size overflow", CHUNKED "fffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk size bare LF", CHUNKED "3\nabc\r\n0\r\n\r\n", 400),
    B("chunk size bare CR", CHUNKED "3\rXabc\r\n0\r\n\r\n", 400),
    B("chunk data too long", CHUNKED "3\r\nabcd\r\n0\r\n\r\n", 400),
    B("chunk data bare LF", CHUNKED "3\r\nabc\n0\r\n\r\n", 400),
    B("last chunk bare LF", CHUNKED "3\r\nabc\r\n0\r\n\n", 400),
    B("trailer bare LF", CHUNKED "0\r\nX: y\n\r\n", 400),
    B("trailer obs-fold", CHUNKED "0\r\nX: y\r\n z\r\n\r\n", 400),
    /* Chunk extensions outside RFC 9112 7.1.1 (valid ones: test_chunk_ext_rfc). */
    B("chunk ext control", CHUNKED "3;a\x01\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext without name", CHUNKED "3;\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext BWS without ;", CHUNKED "3 a\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext BWS before CR", CHUNKED "3;a \r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext bad name", CHUNKED "3;a@b\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext empty value", CHUNKED "3;a=\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext bad token value", CHUNKED "3;a=b/c\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext open quote", CHUNKED "3;a=\"b\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext after quote", CHUNKED "3;a=\"b\"c\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext NUL in quote", CHUNKED "3;a=\"\0\"\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext LF in quote", CHUNKED "3;a=\"\n\"\r\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext bare LF", CHUNKED "3;a\nabc\r\n0\r\n\r\n", 400),
    B("chunk ext bare CR", CHUNKED "3;a\rXabc\r\n0\r\n\r\n", 400),
    B("chunk ext two =", CHUNKED "3;a=b=c\r\nabc\r\n0\r\n\r\n", 400),
    B("TE only commas", RQ("Transfer-Encoding: , ,\r\n\r\n0\r\n\r\n"), 400),
    B("TE chunked, , identity",
      RQ("Transfer-Encoding: chunked, , identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 400),
    B("TE chunked, CL",
      RQ("Transfer-Encoding: chunked,\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 400),
    B("obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400),
    B("obs-fold tab", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 400),
    B("space before first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
    B("bare LF after request line", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400),
    B("bare LF after field", "GET / HTTP/1.1\r\nHost: h\n\r\n", 400),
    B("bare LF as blank line", "GET / HTTP/1.1\r\nHost: h\r\n\n", 400),
    B("bare CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400),
    B("bare CR ending a field", "GET / HTTP/1.1\r\nHost: h\rX: b\r\n\r\n", 400),
    B("NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 400),
    B("control in value",
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01"
      "b\r\n\r\n",
      400),
    B("DEL in value",
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f"
      "b\r\n\r\n",
      400),
    B("space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    B("tab before colon", "GET / HTTP/1.1\r\nHost: h\r\nX\t: y\r\n\r\n", 400),
    B("empty field name", "GET / HTTP/1.1\r\nHost: h\r\n: y\r\n\r\n", 400),
    B("no colon", "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400),
    B("bad name token", "GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n", 400),
    B("invalid method", "G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("lower-case method", "get / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("double space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("tab in target", "GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("leading space", " GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
    B("fragment", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("authority-form GET", "GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("asterisk GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("userinfo", "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("ftp scheme", "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("empty authority", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    B("missing Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
    B("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    B("two equal Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
    B("empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
    B("empty Host on 1.0", "GET / HTTP/1.0\r\nHost:\r\n\r\n", 400),
    B("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    B("Host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    B("Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    B("Host bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
    B("Host bad IPv6", "GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 400),
    B("CONNECT", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 501),
    B("HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
    B("HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    B("HTTP/0.9", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505),
    B("HTTP/3.0", "GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
    B("h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    B("HTTP/1.10", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400),
    B("bad version", "GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400),
    B("Expect other", "GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", 417),
};

/* Feeds s and expects a refusal with status; the head never reaches on_head
 * unless the problem is in the body. */
static void expect_refused(const bad_t *b, int bytewise, size_t len) {
  rec_t t = {0};
  pst_h1_req_parser_t *p = req_new(&t);
  int st = -1, rc;
  if (bytewise) {
    rc = 0;
    for (size_t off = 0; off < len && rc == 0;) {
      size_t used = 0;
      rc = pst_h1_req_feed(p, b->req + off, 1, &used, &st);
      off += used;
    }
  } else {
    rc = req_feed_all(p, b->req, len, &st);
  }
  if (rc != PST_EPROTO || st != b->status) {
    fail_msg("%s (%s): rc %d status %d, expected %d", b->why, bytewise ? "bytewise" : "whole", rc,
             st, b->status);
  }
  assert_int_equal(t.ends, 0);
  if (strstr(b->why, "chunk") == NULL && strstr(b->why, "trailer") == NULL) {
    assert_int_equal(t.heads, 0);
  }
  /* The error sticks. */
  size_t used = 99;
  assert_int_equal(pst_h1_req_feed(p, "GET", 3, &used, &st), PST_EPROTO);
  assert_int_equal(used, 0);
  assert_int_equal(st, b->status);
  pst_h1_req_parser_free(p);
  rec_free(&t);
}

static void test_smuggling_refused(void **state) {
  for (size_t i = 0; i < PST_ARRAY_SIZE(bad_requests); i++) {
    /* len from sizeof: "NUL in value" holds a NUL. */
    expect_refused(&bad_requests[i], 0, bad_requests[i].len);
    expect_refused(&bad_requests[i], 1, bad_requests[i].len);
  }
}

static void test_accepted_forms(void **state) {
  rec_t t = {0};
  /* Absolute-form: its authority wins over Host (RFC 9112 3.2.2). */
  assert_int_equal(
      parse_req(&t, "GET HTTP://Example.com:8080/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", 0, NULL),
      0);
  assert_string_equal(t.req[0]->authority, "Example.com:8080");
  assert_string_equal(t.req[0]->target, "/p?q=1");
  rec_free(&t);
  assert_int_equal(parse_req(&t, "GET https://h?x HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL), 0);
  assert_string_equal(t.req[0]->authority, "h");
  assert_string_equal(t.req[0]->target, "/?x");
  rec_free(&t);
  assert_int_equal(
      parse_req(&t, "GET http://[2001:db8::1]:80 HTTP/1.1\r\nHost: x\r\n\r\n", 0, NULL), 0);
  assert_string_equal(t.req[0]->authority, "[2001:db8::1]:80");
  assert_string_equal(t.req[0]->target, "/");
  rec_free(&t);
  assert_int_equal(parse_req(&t, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL), 0);
  assert_string_equal(t.req[0]->method, "OPTIONS");
  assert_string_equal(t.req[0]->target, "*");
  rec_free(&t);
  /* HTTP/1.0 needs no Host; the authority is then empty. */
  assert_int_equal(parse_req(&t, "GET / HTTP/1.0\r\n\r\n", 0, NULL), 0);
  assert_string_equal(t.req[0]->authority, "");
  assert_int_equal(t.req[0]->http_minor, 0);
  assert_false(t.req[0]->keep_alive);
  rec_free(&t);
  assert_int_equal(
      parse_req(&t, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: [::1]:8443\r\n\r\n", 0,
                NULL),
      0);
  assert_true(t.req[0]->keep_alive);
  assert_string_equal(t.req[0]->authority, "[::1]:8443");
  assert_int_equal(t.req[0]->headers.n, 0);
  rec_free(&t);
  /* Tabs and obs-text in values are fine (RFC 9110 5.5). */
  assert_int_equal(parse_req(&t, "GET / HTTP/1.1\r\nHost: h\r\nX: a\tb \xff\r\n\r\n", 0, NULL), 0);
  assert_string_equal(hdr(&t.req[0]->headers, 0, "X"), "a\tb \xff");
  rec_free(&t);
  /* CL 0 is a body of length 0: no on_body, on_end at once. */
  assert_int_equal(
      parse_req(&t, "DELETE /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 0, NULL), 0);
  assert_int_equal(t.req[0]->body, PST_BODY_LENGTH);
  assert_int_equal(t.req[0]->content_length, 0);
  assert_int_equal(t.ends, 1);
  rec_free(&t);
  /* TE chunked, case-insensitive. */
  assert_int_equal(parse_req(&t, RQ("Transfer-Encoding: Chunked\r\n\r\n0\r\n\r\n"), 0, NULL), 0);
  assert_int_equal(t.req[0]->body, PST_BODY_CHUNKED);
  assert_int_equal(t.ends, 1);
  rec_free(&t);
}

static void test_head_limit(void **state) {
  rec_t t = {0};
  /* Limit 1024 (req_new). A head of exactly 1024 bytes passes. */
  char s[2048];
  const char *pre = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
  size_t pre_len = strlen(pre), fill = 1024 - pre_len - 4;
  memcpy(s, pre, pre_len);
  memset(s + pre_len, 'a', fill);
  memcpy(s + pre_len + fill, "\r\n\r\n", 5);
  assert_int_equal(strlen(s), 1024);
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    assert_int_equal(parse_req(&t, s, bytewise, NULL), 0);
    assert_int_equal(t.heads, 1);
    rec_free(&t);
  }
  /* One more byte: 431, in one piece or in small pieces. */
  memset(s + pre_len, 'b', fill + 1);
  memcpy(s + pre_len + fill + 1, "\r\n\r\n", 5);
  assert_int_equal(strlen(s), 1025);
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    int st = 0;
    assert_int_equal(parse_req(&t, s, bytewise, &st), PST_ELIMIT);
    assert_int_equal(st, 431);
    assert_int_equal(t.heads, 0);
    rec_free(&t);
  }
  /* An endless header in 100-byte pieces fails as soon as it passes the
   * limit, having used no more than the limit. */
  pst_h1_req_parser_t *p = req_new(&t);
  char piece[100];
  memset(piece, 'v', sizeof(piece));
  size_t total = 0, used = 0;
  int st = 0, rc = pst_h1_req_feed(p, "GET / HTTP/1.1\r\nX-Big: ", 23, &used, &st);
  assert_int_equal(rc, 0);
  total += used;
  for (int i = 0; i < 1000 && rc == 0; i++) {
    rc = pst_h1_req_feed(p, piece, sizeof(piece), &used, &st);
    total += used;
  }
  assert_int_equal(rc, PST_ELIMIT);
  assert_int_equal(st, 431);
  assert_true(total <= 1024);
  pst_h1_req_parser_free(p);
  rec_free(&t);
  /* Too many fields, however small. */
  pst_buf_t b = {0};
  assert_int_equal(pst_buf_printf(&b, "GET / HTTP/1.1\r\nHost: h\r\n"), 0);
  for (int i = 0; i < PST_HTTP_MAX_FIELDS; i++) assert_int_equal(pst_buf_printf(&b, "a:\r\n"), 0);
  assert_int_equal(pst_buf_printf(&b, "\r\n"), 0);
  assert_int_equal(pst_buf_append(&b, "", 1), 0);
  p = pst_h1_req_parser_new(&req_cb, &t, 65536);
  assert_int_equal(req_feed_all(p, pst_buf_head(&b), b.len - 1, &st), PST_ELIMIT);
  assert_int_equal(st, 431);
  pst_h1_req_parser_free(p);
  pst_buf_free(&b);
  /* Trailers count against the limit too. */
  assert_int_equal(pst_buf_printf(&b, CHUNKED "0\r\n"), 0);
  for (int i = 0; i < 100; i++)
    assert_int_equal(pst_buf_printf(&b, "X-Trailer: 0123456789\r\n"), 0);
  assert_int_equal(pst_buf_printf(&b, "\r\n"), 0);
  assert_int_equal(pst_buf_append(&b, "", 1), 0);
  assert_int_equal(parse_req(&t, pst_buf_head(&b), 0, &st), PST_ELIMIT);
  assert_int_equal(st, 431);
  rec_free(&t);
  pst_buf_free(&b);
}

static void test_hop_by_hop_removed(void **state) {
  rec_t t = {0};
  const char *s =
      "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret,x-other\r\n"
      "Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X\r\nProxy-Connection: x\r\n"
      "Upgrade: websocket\r\nX-Secret: 1\r\nX-Keep: 2\r\nX-Other: 3\r\n"
      "Connection: X-Third\r\nX-Third: 4\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
  assert_int_equal(parse_req(&t, s, 0, NULL), 0);
  pst_http_request_t *r = t.req[0];
  assert_int_equal(r->headers.n, 2);
  assert_string_equal(hdr(&r->headers, 0, "X-Keep"), "2");
  assert_string_equal(hdr(&r->headers, 1, "X-Forwarded-For"), "10.0.0.1");
  assert_int_equal(r->headers.bytes, strlen("x-keep2x-forwarded-for10.0.0.1"));
  /* Upgrade without Connection: upgrade is no upgrade. */
  assert_false(r->upgrade);
  assert_true(r->keep_alive);
  rec_free(&t);
}

static void test_upgrade(void **state) {
  rec_t t = {0};
  const char *s =
      "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
      "Upgrade: websocket\r\nSec-WebSocket-Key: abc\r\n\r\n";
  const char *next = "GET /after HTTP/1.1\r\nHost: h\r\n\r\n";
  char all[512];
  snprintf(all, sizeof(all), "%s%s", s, next);
  pst_h1_req_parser_t *p = req_new(&t);
  size_t used;
  int st;
  assert_int_equal(pst_h1_req_feed(p, all, strlen(all), &used, &st), 0);
  assert_int_equal(used, strlen(s));
  assert_int_equal(t.ends, 1);
  assert_true(t.req[0]->upgrade);
  assert_string_equal(t.req[0]->upgrade_proto, "websocket");
  assert_int_equal(t.req[0]->headers.n, 1);
  /* The backend declined: the connection goes on in HTTP/1.1. */
  assert_int_equal(pst_h1_req_feed(p, all + used, strlen(next), &used, &st), 0);
  assert_int_equal(used, strlen(next));
  assert_int_equal(t.heads, 2);
  assert_string_equal(t.req[1]->target, "/after");
  pst_h1_req_parser_free(p);
  rec_free(&t);
  /* h2c and HTTP/1.0 upgrades are ignored. */
  assert_int_equal(parse_req(&t,
                             "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                             "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
                             0, NULL),
                   0);
  assert_false(t.req[0]->upgrade);
  assert_null(t.req[0]->upgrade_proto);
  assert_int_equal(t.req[0]->headers.n, 0);
  rec_free(&t);
  assert_int_equal(
      parse_req(&t, "GET / HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 0, NULL),
      0);
  assert_false(t.req[0]->upgrade);
  rec_free(&t);
  /* An upgrade request with a body. */
  assert_int_equal(parse_req(&t,
                             "POST / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n"
                             "Upgrade: foo/2, bar\r\nContent-Length: 2\r\n\r\nhi",
                             0, NULL),
                   0);
  assert_true(t.req[0]->upgrade);
  assert_string_equal(t.req[0]->upgrade_proto, "foo/2, bar");
  assert_string_equal(buf_str(&t.body), "hi");
  rec_free(&t);
}

static void test_expect_continue(void **state) {
  rec_t t = {0};
  assert_int_equal(
      parse_req(&t, RQ("Expect: 100-Continue\r\nContent-Length: 2\r\n\r\nok"), 0, NULL), 0);
  assert_true(t.req[0]->expect_continue);
  assert_int_equal(t.req[0]->headers.n, 0);
  rec_free(&t);
  assert_int_equal(parse_req(&t, CHUNKED, 0, NULL), 0);
  assert_false(t.req[0]->expect_continue);
  rec_free(&t);
  assert_int_equal(
      parse_req(&t, RQ("Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"), 0, NULL), 0);
  assert_true(t.req[0]->expect_continue);
  assert_int_equal(t.ends, 0);
  rec_free(&t);
  /* No content, or HTTP/1.0: ignored (RFC 9110 10.1.1). */
  assert_int_equal(
      parse_req(&t, "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", 0, NULL), 0);
  assert_false(t.req[0]->expect_continue);
  rec_free(&t);
  assert_int_equal(
      parse_req(&t, "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", 0,
                NULL),
      0);
  assert_false(t.req[0]->expect_continue);
  rec_free(&t);
}

static void test_callback_stops(void **state) {
  rec_t t = {0};
  const char *s =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
  size_t head = strlen("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
  pst_h1_req_parser_t *p = req_new(&t);
  size_t used, off = 0, n = strlen(s);
  int st;
  t.head_rc = 5;
  assert_int_equal(pst_h1_req_feed(p, s, n, &used, &st), 5);
  assert_int_equal(used, head);
  off += used;
  t.head_rc = 0;
  t.body_rc = 7; /* backpressure: stop after each piece */
  assert_int_equal(pst_h1_req_feed(p, s + off, n - off, &used, &st), 7);
  assert_int_equal(used, 6); /* "3\r\nabc": up to the end of what on_body got */
  assert_string_equal(buf_str(&t.body), "abc");
  off += used;
  assert_int_equal(pst_h1_req_feed(p, s + off, n - off, &used, &st), 7);
  assert_int_equal(used, 9);
  assert_string_equal(buf_str(&t.body), "abcdefg");
  off += used;
  t.end_rc = 3;
  assert_int_equal(pst_h1_req_feed(p, s + off, n - off, &used, &st), 3);
  assert_int_equal(st, 0);
  off += used;
  assert_int_equal(off, n);
  assert_int_equal(t.ends, 1);
  pst_h1_req_parser_free(p);
  rec_free(&t);
  /* A NULL on_head frees the head; the parser goes on. */
  pst_h1_req_callbacks_t cb = {NULL, NULL, rec_end};
  p = pst_h1_req_parser_new(&cb, &t, 1024);
  assert_non_null(p);
  assert_int_equal(req_feed_all(p, s, n, &st), 0);
  assert_int_equal(t.ends, 1);
  assert_int_equal(t.heads, 0);
  pst_h1_req_parser_free(p);
  rec_free(&t);
  /* Freeing a parser in the middle of a request leaks nothing. */
  p = req_new(&t);
  assert_int_equal(pst_h1_req_feed(p, s, 20, &used, &st), 0);
  pst_h1_req_parser_free(p);
  rec_free(&t);
}

/* ---- responses ------------------------------------------------------------ */

static pst_h1_resp_parser_t *resp_new(rec_t *t) {
  pst_h1_resp_parser_t *p = pst_h1_resp_parser_new(&resp_cb, t, 1024);
  assert_non_null(p);
  return p;
}

static int resp_feed_all(pst_h1_resp_parser_t *p, const char *s, size_t n, size_t *total) {
  *total = 0;
  for (int guard = 0; guard < 100; guard++) {
    size_t used = 0;
    int rc = pst_h1_resp_feed(p, s, n, &used);
    *total += used;
    s += used;
    n -= used;
    if (rc != 0 || n == 0 || used == 0) return rc;
  }
  fail_msg("parser made no progress");
  return -1;
}

static int resp_feed_bytes(pst_h1_resp_parser_t *p, const char *s, size_t n, size_t *total) {
  *total = 0;
  for (int zero = 0; *total < n && zero < 2;) {
    size_t used = 0;
    int rc = pst_h1_resp_feed(p, s + *total, 1, &used);
    if (rc != 0) return rc;
    zero = used == 0 ? zero + 1 : 0;
    *total += used;
  }
  return 0;
}

static void test_resp_length_chunked(void **state) {
  rec_t t = {0};
  const char *s =
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\n"
      "X-Hop: 1\r\nServer: s\r\n\r\nhello"
      "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2;x=y\r\nab\r\n0\r\nT: 1\r\n\r\n";
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    pst_h1_resp_parser_t *p = resp_new(&t);
    size_t total, used;
    if (!bytewise) {
      assert_int_equal(pst_h1_resp_feed(p, s, strlen(s), &used), 0);
      assert_int_equal(used,
                       strlen("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, "
                              "X-Hop\r\nX-Hop: 1\r\nServer: s\r\n\r\nhello"));
      assert_int_equal(t.ends, 1);
    }
    assert_int_equal(bytewise ? resp_feed_bytes(p, s, strlen(s), &total)
                              : resp_feed_all(p, s + used, strlen(s) - used, &total),
                     0);
    assert_int_equal(t.heads, 2);
    assert_int_equal(t.ends, 2);
    pst_http_response_t *r = t.resp[0];
    assert_int_equal(r->status, 200);
    assert_string_equal(r->reason, "OK");
    assert_int_equal(r->body, PST_BODY_LENGTH);
    assert_int_equal(r->content_length, 5);
    assert_true(r->keep_alive);
    assert_int_equal(r->headers.n, 1);
    assert_string_equal(hdr(&r->headers, 0, "Server"), "s");
    r = t.resp[1];
    assert_int_equal(r->status, 404);
    assert_string_equal(r->reason, "Not Found");
    assert_int_equal(r->body, PST_BODY_CHUNKED);
    assert_true(r->keep_alive);
    assert_int_equal(r->headers.n, 0);
    assert_string_equal(buf_str(&t.body), "helloab");
    assert_int_equal(pst_h1_resp_finish(p), 0); /* idle close */
    pst_h1_resp_parser_free(p);
    rec_free(&t);
  }
}

static void test_resp_until_close(void **state) {
  rec_t t = {0};
  pst_h1_resp_parser_t *p = resp_new(&t);
  const char *s = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome";
  size_t used;
  assert_int_equal(pst_h1_resp_feed(p, s, strlen(s), &used), 0);
  assert_int_equal(used, strlen(s));
  assert_int_equal(pst_h1_resp_feed(p, " more", 5, &used), 0);
  assert_int_equal(t.resp[0]->body, PST_BODY_UNTIL_CLOSE);
  assert_false(t.resp[0]->keep_alive);
  assert_int_equal(t.ends, 0);
  assert_int_equal(pst_h1_resp_finish(p), 0);
  assert_int_equal(t.ends, 1);
  assert_string_equal(buf_str(&t.body), "some more");
  pst_h1_resp_parser_free(p);
  rec_free(&t);
  /* HTTP/1.0 with a length: complete, but no reuse without keep-alive. */
  p = resp_new(&t);
  s = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi";
  assert_int_equal(pst_h1_resp_feed(p, s, strlen(s), &used), 0);
  assert_false(t.resp[0]->keep_alive);
  assert_int_equal(t.ends, 1);
  pst_h1_resp_parser_free(p);
  rec_free(&t);
}

static void test_resp_truncated(void **state) {
  static const char *const cut[] = {
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
      "HTTP/1.1 200 OK\r\nContent-Le",
      "HTTP/1.1 100 Continue\r\n\r\n",
  };
  for (size_t i = 0; i < PST_ARRAY_SIZE(cut); i++) {
    rec_t t = {0};
    pst_h1_resp_parser_t *p = resp_new(&t);
    size_t used;
    assert_int_equal(pst_h1_resp_feed(p, cut[i], strlen(cut[i]), &used), 0);
    assert_int_equal(used, strlen(cut[i]));
    assert_int_equal(pst_h1_resp_finish(p), PST_EPROTO);
    assert_int_equal(t.ends, 0);
    assert_non_null(pst_h1_resp_why(p));
    pst_h1_resp_parser_free(p);
    rec_free(&t);
  }
}

static void test_resp_bodiless(void **state) {
  rec_t t = {0};
  pst_h1_resp_parser_t *p = resp_new(&t);
  size_t used;
  /* HEAD: Content-Length describes GET's body; none follows. */
  const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"x\"\r\n\r\n";
  const char *next = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n";
  char all[256];
  snprintf(all, sizeof(all), "%s%s", s, next);
  pst_h1_resp_expect(p, "HEAD");
  assert_int_equal(pst_h1_resp_feed(p, all, strlen(all), &used), 0);
  assert_int_equal(used, strlen(s));
  assert_int_equal(t.ends, 1);
  pst_http_response_t *r = t.resp[0];
  assert_int_equal(r->body, PST_BODY_NONE);
  assert_true(r->keep_alive);
  assert_string_equal(pst_headers_get(&r->headers, "content-length"), "1234");
  /* The expectation lasted for one response only; 204 has no body even
   * with Content-Length, which is dropped (RFC 9110 8.6). */
  pst_h1_resp_expect(p, "GET");
  assert_int_equal(pst_h1_resp_feed(p, all + used, strlen(next), &used), 0);
  assert_int_equal(used, strlen(next));
  r = t.resp[1];
  assert_int_equal(r->status, 204);
  assert_int_equal(r->body, PST_BODY_NONE);
  assert_null(pst_headers_get(&r->headers, "content-length"));
  assert_int_equal(t.ends, 2);
  /* 304 with chunked: no body, framing dropped, the next one parses. */
  s = "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  assert_int_equal(resp_feed_all(p, s, strlen(s), &used), 0);
  assert_int_equal(used, strlen(s));
  assert_int_equal(t.heads, 4);
  assert_int_equal(t.resp[2]->status, 304);
  assert_int_equal(t.resp[2]->body, PST_BODY_NONE);
  assert_int_equal(t.resp[2]->headers.n, 0);
  assert_int_equal(t.resp[3]->body, PST_BODY_LENGTH);
  assert_int_equal(t.ends, 4);
  /* A HEAD expectation lasts across 1xx heads. */
  s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  pst_h1_resp_expect(p, "HEAD");
  assert_int_equal(resp_feed_all(p, s, strlen(s), &used), 0);
  assert_int_equal(used, strlen(s));
  assert_int_equal(t.heads, 6);
  assert_int_equal(t.resp[5]->body, PST_BODY_NONE);
  assert_int_equal(t.ends, 5);
  assert_int_equal(t.body.len, 0);
  pst_h1_resp_parser_free(p);
  rec_free(&t);
}

static void test_resp_1xx(void **state) {
  rec_t t = {0};
  const char *s =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    pst_h1_resp_parser_t *p = resp_new(&t);
    size_t used;
    pst_h1_resp_expect(p, "POST");
    if (bytewise) {
      assert_int_equal(resp_feed_bytes(p, s, strlen(s), &used), 0);
    } else {
      assert_int_equal(pst_h1_resp_feed(p, s, strlen(s), &used), 0);
    }
    assert_int_equal(used, strlen(s));
    assert_int_equal(t.heads, 3);
    assert_int_equal(t.ends, 1);
    assert_int_equal(t.resp[0]->status, 100);
    assert_int_equal(t.resp[0]->body, PST_BODY_NONE);
    assert_int_equal(t.resp[1]->status, 103);
    assert_string_equal(hdr(&t.resp[1]->headers, 0, "Link"), "</a.css>; rel=preload");
    assert_int_equal(t.resp[2]->status, 200);
    assert_string_equal(buf_str(&t.body), "hi");
    pst_h1_resp_parser_free(p);
    rec_free(&t);
  }
}

static void test_resp_101_tunnel(void **state) {
  rec_t t = {0};
  const char *head =
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
      "Upgrade: websocket\r\nSec-WebSocket-Accept: xyz\r\n\r\n";
  char all[256];
  size_t n = (size_t)snprintf(all, sizeof(all), "%s\x81\x05hello", head);
  pst_h1_resp_parser_t *p = resp_new(&t);
  size_t used;
  assert_int_equal(pst_h1_resp_feed(p, all, n, &used), 0);
  assert_int_equal(used, strlen(head));
  assert_int_equal(t.heads, 1);
  assert_int_equal(t.ends, 1);
  pst_http_response_t *r = t.resp[0];
  assert_int_equal(r->status, 101);
  assert_true(r->upgrade);
  assert_false(r->keep_alive);
  assert_string_equal(r->upgrade_proto, "websocket");
  assert_int_equal(r->headers.n, 1);
  assert_int_equal(t.body.len, 0);
  /* The tunnel bytes are never taken. */
  assert_int_equal(pst_h1_resp_feed(p, all + used, n - used, &used), 0);
  assert_int_equal(used, 0);
  assert_int_equal(pst_h1_resp_finish(p), 0);
  pst_h1_resp_parser_free(p);
  rec_free(&t);
  /* A 101 without Upgrade is refused. */
  p = resp_new(&t);
  assert_int_equal(pst_h1_resp_feed(p, "HTTP/1.1 101 S\r\n\r\nxyz", 21, &used), PST_EPROTO);
  assert_int_equal(t.heads, 0);
  pst_h1_resp_parser_free(p);
  rec_free(&t);
}

/* RFC 9112 7.1.1: BWS around ";" and "=", quoted values with quoted-pairs
 * and obs-text, several extensions, valued or not; all dropped. llhttp 8.1
 * refuses most of these, so it never sees them (h1_parse.c). */
static void test_chunk_ext_rfc(void **state) {
  rec_t t = {0};
  const char *s = CHUNKED
      "3 ;a=b ; c = \"q \\\" v\"\t;d\t ;e=f;g\r\nabc\r\n"
      "2;x=\"\xff;\\\\\"\r\nde\r\n"
      "1;a=b;c\r\nf\r\n"
      "0 ; last=\"\"\r\nX-T: 1\r\n\r\n"
      "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    assert_int_equal(parse_req(&t, s, bytewise, NULL), 0);
    assert_int_equal(t.heads, 2);
    assert_int_equal(t.ends, 2);
    assert_string_equal(buf_str(&t.body), "abcdef");
    assert_string_equal(t.req[1]->target, "/next");
    rec_free(&t);
  }
  /* The same on a backend's response. */
  const char *r =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2 ; a = \"x y\"\r\nab\r\n0\r\n\r\n";
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    pst_h1_resp_parser_t *p = resp_new(&t);
    size_t total;
    assert_int_equal(bytewise ? resp_feed_bytes(p, r, strlen(r), &total)
                              : resp_feed_all(p, r, strlen(r), &total),
                     0);
    assert_int_equal(t.ends, 1);
    assert_string_equal(buf_str(&t.body), "ab");
    pst_h1_resp_parser_free(p);
    rec_free(&t);
  }
}

/* RFC 9110 5.6.1: empty list elements are ignored, so "chunked," and
 * ", chunked" are chunked, in requests and responses. */
static void test_te_empty_elements(void **state) {
  rec_t t = {0};
  static const char *const te[] = {"chunked,", ", chunked", "chunked ,  ,", "Chunked,\r\nX: y"};
  for (size_t i = 0; i < PST_ARRAY_SIZE(te); i++) {
    char s[256];
    static const char fmt[] =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: %s\r\n\r\n"
        "3\r\nabc\r\n0\r\n\r\n"
        "GET /n HTTP/1.1\r\nHost: h\r\n\r\n";
    snprintf(s, sizeof(s), fmt, te[i]);
    for (int bytewise = 0; bytewise < 2; bytewise++) {
      assert_int_equal(parse_req(&t, s, bytewise, NULL), 0);
      assert_int_equal(t.heads, 2);
      assert_int_equal(t.req[0]->body, PST_BODY_CHUNKED);
      assert_string_equal(buf_str(&t.body), "abc");
      assert_string_equal(t.req[1]->target, "/n");
      rec_free(&t);
    }
  }
  const char *r =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n2\r\nab\r\n0\r\n\r\n"
      "HTTP/1.1 204 No Content\r\n\r\n";
  pst_h1_resp_parser_t *p = resp_new(&t);
  size_t total;
  assert_int_equal(resp_feed_all(p, r, strlen(r), &total), 0);
  assert_int_equal(t.heads, 2);
  assert_int_equal(t.resp[0]->body, PST_BODY_CHUNKED);
  assert_string_equal(buf_str(&t.body), "ab");
  pst_h1_resp_parser_free(p);
  rec_free(&t);
}

/* A request line that alone passes the head limit is a URI too long (414,
 * RFC 9110 15.5.15); the same size reached in the fields is 431. */
static void test_uri_too_long(void **state) {
  rec_t t = {0};
  char s[4096];
  memcpy(s, "GET /", 5);
  memset(s + 5, 'u', 1100);
  snprintf(s + 1105, sizeof(s) - 1105, " HTTP/1.1\r\nHost: h\r\n\r\n");
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    int st = 0;
    assert_int_equal(parse_req(&t, s, bytewise, &st), PST_ELIMIT);
    assert_int_equal(st, 414);
    assert_int_equal(t.heads, 0);
    rec_free(&t);
  }
  /* A target of 900 bytes fits; fields pushing the head past 1024: 431. */
  memset(s + 5, 'u', 900);
  snprintf(s + 905, sizeof(s) - 905, " HTTP/1.1\r\nHost: h\r\nX: %0200d\r\n\r\n", 0);
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    int st = 0;
    assert_int_equal(parse_req(&t, s, bytewise, &st), PST_ELIMIT);
    assert_int_equal(st, 431);
    rec_free(&t);
  }
  snprintf(s + 905, sizeof(s) - 905, " HTTP/1.1\r\nHost: h\r\n\r\n");
  assert_int_equal(parse_req(&t, s, 0, NULL), 0);
  assert_int_equal(strlen(t.req[0]->target), 901);
  rec_free(&t);
}

static void test_resp_refused(void **state) {
  static const char *const bad[] = {
      "HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n",
      "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
      "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
      "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\rXab\r\n0\r\n\r\n",
      "HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
  };
  for (size_t i = 0; i < PST_ARRAY_SIZE(bad); i++) {
    for (int bytewise = 0; bytewise < 2; bytewise++) {
      rec_t t = {0};
      pst_h1_resp_parser_t *p = resp_new(&t);
      size_t used;
      int rc = bytewise ? resp_feed_bytes(p, bad[i], strlen(bad[i]), &used)
                        : resp_feed_all(p, bad[i], strlen(bad[i]), &used);
      if (rc != PST_EPROTO) fail_msg("response %zu (%d): rc %d", i, bytewise, rc);
      assert_int_equal(t.ends, 0);
      assert_int_equal(pst_h1_resp_finish(p), PST_EPROTO);
      pst_h1_resp_parser_free(p);
      rec_free(&t);
    }
  }
  /* Head limit. */
  rec_t t = {0};
  pst_h1_resp_parser_t *p = resp_new(&t);
  char big[2048];
  memset(big, 'x', sizeof(big));
  memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
  size_t used;
  assert_int_equal(resp_feed_all(p, big, sizeof(big), &used), PST_ELIMIT);
  assert_true(used <= 1024);
  pst_h1_resp_parser_free(p);
  rec_free(&t);
}

/* ---- shared scanner ------------------------------------------------------- */

static void test_head_scan(void **state) {
  pst_h1_scan_t s;
  const char *h = "\r\nGET / HTTP/1.1\r\nA: b\r\n\r\nbody";
  pst_h1_scan_init(&s, 1);
  assert_int_equal(pst_h1_head_scan(&s, h, strlen(h)), strlen(h) - 4);
  assert_true(s.done);
  assert_null(s.why);
  assert_int_equal(pst_h1_head_scan(&s, "x", 1), 0);
  pst_h1_scan_init(&s, 1);
  assert_int_equal(pst_h1_head_scan(&s, "GET / HTTP/1.1\r", 15), 15);
  assert_int_equal(pst_h1_head_scan(&s, "X", 1), 0);
  assert_string_equal(s.why, "CR not followed by LF");
  /* Status lines may hold tabs and several spaces in the reason. */
  pst_h1_scan_init(&s, 0);
  h = "HTTP/1.1 200 A  B\tC\r\n\r\n";
  assert_int_equal(pst_h1_head_scan(&s, h, strlen(h)), strlen(h));
  assert_true(s.done);
  pst_h1_scan_init(&s, 1);
  h = "GET / HTTP/1.1\r\nA: b\r\nC:\td\r\n\r\n";
  assert_int_equal(pst_h1_head_scan(&s, h, strlen(h)), strlen(h));
}

/* ---- allocation failures --------------------------------------------------- */

static int oom_request_once(void) {
  rec_t t = {0};
  const char *s =
      "POST http://h:1/x HTTP/1.1\r\nHost: h\r\nConnection: upgrade, X-A\r\n"
      "Upgrade: websocket\r\nX-A: 1\r\nX-B: 2\r\nExpect: 100-continue\r\n"
      "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n";
  pst_h1_req_parser_t *p = pst_h1_req_parser_new(&req_cb, &t, 4096);
  if (p == NULL) return -ENOMEM;
  size_t used;
  int st = 0;
  int rc = pst_h1_req_feed(p, s, strlen(s), &used, &st);
  fail_at = -1; /* the collector's own appends must not fail */
  if (rc == -ENOMEM) {
    assert_int_equal(st, 500);
    assert_int_equal(t.heads, 0);
  } else {
    assert_int_equal(rc, 0);
    assert_int_equal(t.ends, 1);
  }
  pst_h1_req_parser_free(p);
  rec_free(&t);
  return rc;
}

static int oom_response_once(void) {
  rec_t t = {0};
  const char *s =
      "HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nX-B: 2\r\n"
      "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  pst_h1_resp_parser_t *p = pst_h1_resp_parser_new(&resp_cb, &t, 4096);
  if (p == NULL) return -ENOMEM;
  size_t used;
  pst_h1_resp_expect(p, "GET");
  int rc = pst_h1_resp_feed(p, s, strlen(s), &used);
  fail_at = -1;
  if (rc != -ENOMEM) assert_int_equal(rc, 0);
  pst_h1_resp_parser_free(p);
  rec_free(&t);
  return rc;
}

static void run_oom(int (*once)(void)) {
  int saw_ok = 0;
  for (long i = 0; i < 1000 && !saw_ok; i++) {
    failed_alloc = 0;
    fail_at = i;
    int rc = once();
    fail_at = -1;
    if (!failed_alloc) {
      assert_int_equal(rc, 0);
      if (getenv("OOM_DEBUG")) fprintf(stderr, "oom: %ld failure points\n", i);
      saw_ok = 1;
    }
  }
  assert_true(saw_ok);
}

static void test_oom(void **state) {
  run_oom(oom_request_once);
  run_oom(oom_response_once);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_simple_get),
      cmocka_unit_test(test_pipelined),
      cmocka_unit_test(test_split_byte_by_byte),
      cmocka_unit_test(test_post_length_split),
      cmocka_unit_test(test_chunked_ext_trailers),
      cmocka_unit_test(test_chunk_ext_rfc),
      cmocka_unit_test(test_te_empty_elements),
      cmocka_unit_test(test_uri_too_long),
      cmocka_unit_test(test_smuggling_refused),
      cmocka_unit_test(test_accepted_forms),
      cmocka_unit_test(test_head_limit),
      cmocka_unit_test(test_hop_by_hop_removed),
      cmocka_unit_test(test_upgrade),
      cmocka_unit_test(test_expect_continue),
      cmocka_unit_test(test_callback_stops),
      cmocka_unit_test(test_resp_length_chunked),
      cmocka_unit_test(test_resp_until_close),
      cmocka_unit_test(test_resp_truncated),
      cmocka_unit_test(test_resp_bodiless),
      cmocka_unit_test(test_resp_1xx),
      cmocka_unit_test(test_resp_101_tunnel),
      cmocka_unit_test(test_resp_refused),
      cmocka_unit_test(test_head_scan),
      cmocka_unit_test(test_oom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
