/* Unit tests for the builtin:info page (src/info.c): the complete HTTP/1.1
 * response pst_info_respond gives to a method and an Accept value (GET,
 * HEAD, 405), its head as the backend-side response parser reads it, and
 * the HTML and JSON pages pst_info_render builds, hostile facts included.
 * Parsing the client's request is the front ends' work now (test_h1_parse.c,
 * test_http.c, test_h2.c); the in-process backend that calls
 * pst_info_respond is tested in test_pool.c and test_stream.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_test_util.h"
#include "postern/common.h"
#include "postern/http.h"
#include "postern/info.h"

/* 2026-01-01 00:00:00 UTC and 2030-06-15 12:30:45 UTC. */
#define T_LEAF ((time_t)1767225600)
#define T_CA ((time_t)1907757045)

static pst_cert_info_t chain[2];

static pst_info_facts_t facts_default(void) {
  chain[0] = (pst_cert_info_t){.subject = "CN=info.test",
                               .issuer = "CN=Test CA",
                               .serial_hex = "0A1B2C",
                               .key_desc = "ECDSA P-256",
                               .not_after = T_LEAF};
  chain[1] = (pst_cert_info_t){
      .subject = "CN=Test CA", .issuer = "CN=Test CA", .serial_hex = "01", .not_after = T_CA};
  return (pst_info_facts_t){
      .client = "127.0.0.1:51234",
      .sni = "info.test",
      .alpn = "http/1.1",
      .version = "TLSv1.3",
      .cipher = "TLS_AES_128_GCM_SHA256",
      .group = "X25519",
      .resumed = 0,
      .early_data = "not sent",
      .handshake_ms = 12.345,
      .chain = chain,
      .chain_len = 2,
      .listener = "main",
  };
}

/* One parsed response, pointing into the output buffer. */
typedef struct {
  int status;
  const char *head; /* from the status line to the blank line, inclusive */
  size_t head_len;
  const char *body;
  size_t body_len;
  size_t content_length;
} resp_t;

/* Parses the response at p (n bytes). HEAD responses have no body whatever
 * Content-Length says. Returns the bytes it spans; fails the test when the
 * framing is wrong. */
static size_t parse_resp(const char *p, size_t n, int head_only, resp_t *r) {
  memset(r, 0, sizeof(*r));
  const char *end = memmem(p, n, "\r\n\r\n", 4);
  assert_non_null(end);
  r->head = p;
  r->head_len = (size_t)(end - p) + 4;
  assert_int_equal(sscanf(p, "HTTP/1.1 %d ", &r->status), 1);
  const char *cl = memmem(p, r->head_len, "\r\nContent-Length: ", 18);
  assert_non_null(cl);
  r->content_length = strtoul(cl + 18, NULL, 10);
  r->body = p + r->head_len;
  r->body_len = head_only ? 0 : r->content_length;
  assert_true(r->head_len + r->body_len <= n);
  return r->head_len + r->body_len;
}

/* Returns a copy of header name's value (static storage), or NULL. */
static const char *hdr(const resp_t *r, const char *name) {
  static char val[256];
  char pat[64];
  snprintf(pat, sizeof(pat), "\r\n%s: ", name);
  const char *h = memmem(r->head, r->head_len, pat, strlen(pat));
  if (h == NULL) return NULL;
  h += strlen(pat);
  const char *e = memmem(h, r->head_len - (size_t)(h - r->head), "\r\n", 2);
  assert_non_null(e);
  assert_true((size_t)(e - h) < sizeof(val));
  memcpy(val, h, (size_t)(e - h));
  val[e - h] = '\0';
  return val;
}

/* Does the body contain s? */
static int body_has(const resp_t *r, const char *s) {
  return memmem(r->body, r->body_len, s, strlen(s)) != NULL;
}

/* Asks for the answer to method with this Accept value (NULL: none) and
 * parses it: out holds exactly one response. */
static void one(const char *method, const char *accept, const pst_info_facts_t *f, pst_buf_t *out,
                resp_t *r) {
  assert_int_equal(pst_info_respond(method, accept, f, out), 0);
  size_t used = parse_resp(pst_buf_head(out), out->len, strcmp(method, "HEAD") == 0, r);
  assert_int_equal(used, out->len); /* exactly one response */
}

static void test_get_html(void **state) {
  pst_info_facts_t f = facts_default();
  pst_buf_t out = {0};
  resp_t r;
  one("GET", NULL, &f, &out, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(hdr(&r, "Content-Type"), "text/html; charset=utf-8");
  assert_string_equal(hdr(&r, "Cache-Control"), "no-store");
  assert_string_equal(hdr(&r, "Server"), "postern");
  assert_string_equal(hdr(&r, "Vary"), "Accept");
  assert_non_null(hdr(&r, "Date"));
  assert_null(hdr(&r, "Connection"));
  assert_int_equal(r.content_length, out.len - r.head_len);
  assert_true(body_has(&r, "<title>postern: your TLS connection</title>"));
  assert_true(body_has(&r, "This page was served by postern&#39;s builtin:info") ||
              body_has(&r, "This page was served by postern's builtin:info"));
  assert_true(body_has(&r, "<td>info.test</td>"));
  assert_true(body_has(&r, "<td>TLSv1.3</td>"));
  assert_true(body_has(&r, "12.35 ms"));
  assert_true(body_has(&r, "2026-01-01 00:00:00 UTC"));
  assert_true(body_has(&r, "2030-06-15 12:30:45 UTC"));
  assert_true(body_has(&r, "</html>\n"));
  /* Self-contained: nothing fetched from elsewhere, no script. */
  assert_false(body_has(&r, "<script"));
  assert_false(body_has(&r, "http://"));
  assert_false(body_has(&r, "https://"));
  pst_buf_free(&out);

  /* An Accept without JSON in it gets the page too. */
  one("GET", "text/html,application/xhtml+xml,*/*;q=0.8", &f, &out, &r);
  assert_string_equal(hdr(&r, "Content-Type"), "text/html; charset=utf-8");
  pst_buf_free(&out);
}

static const char *const json_keys[] = {
    "\"listener\":",   "\"client\":",       "\"sni\":",    "\"alpn\":",
    "\"version\":",    "\"cipher\":",       "\"group\":",  "\"resumed\":",
    "\"early_data\":", "\"handshake_ms\":", "\"chain\":[",
};

static void test_get_json(void **state) {
  pst_info_facts_t f = facts_default();
  f.sni = NULL;
  f.alpn = NULL;
  f.resumed = 1;
  pst_buf_t out = {0};
  resp_t r;
  /* Media types are case-insensitive (RFC 9110 8.3.1), and JSON need not
   * come first in the list. */
  one("GET", "text/html;q=0.9, Application/JSON", &f, &out, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(hdr(&r, "Content-Type"), "application/json");
  assert_string_equal(hdr(&r, "Vary"), "Accept");
  assert_null(hdr(&r, "Connection"));
  assert_int_equal(r.content_length, out.len - r.head_len);
  for (size_t i = 0; i < PST_ARRAY_SIZE(json_keys); i++) {
    assert_true(body_has(&r, json_keys[i]));
  }
  assert_true(body_has(&r, "{\"listener\":\"main\",\"client\":\"127.0.0.1:51234\","));
  assert_true(body_has(&r, "\"sni\":null,\"alpn\":null,\"version\":\"TLSv1.3\""));
  assert_true(body_has(&r, "\"resumed\":true,\"early_data\":\"not sent\""));
  assert_true(body_has(&r, "\"handshake_ms\":12.35,"));
  assert_true(body_has(&r,
                       "\"chain\":[{\"subject\":\"CN=info.test\",\"issuer\":"
                       "\"CN=Test CA\",\"serial\":\"0A1B2C\",\"key\":\"ECDSA P-256\",\"not_after\":"
                       "\"2026-01-01 00:00:00 UTC\"},{\"subject\":\"CN=Test CA\","));
  assert_true(body_has(&r, "\"not_after\":\"2030-06-15 12:30:45 UTC\"}]}"));
  pst_buf_free(&out);

  /* Several Accept lines make one list (RFC 9110 5.3): JSON may be asked
   * for by a later member, in any case. */
  one("GET", "text/html, aPPLICATION/json", &f, &out, &r);
  assert_string_equal(hdr(&r, "Content-Type"), "application/json");
  pst_buf_free(&out);
}

/* The renderer escapes what it is given: a server name and a listener name
 * are the client's and the operator's text, and the client address could
 * be anything a broken resolver returns. */
static void test_escaping(void **state) {
  pst_info_facts_t f = facts_default();
  f.sni = "evil\"<script>alert('x')</script>&\\";
  f.listener = "ctl\x01\n";
  f.client =
      "bad\xff"
      "utf8";
  pst_buf_t out = {0};
  resp_t r;

  one("GET", "application/json", &f, &out, &r);
  assert_true(body_has(&r, "\"sni\":\"evil\\\"<script>alert('x')</script>&\\\\\""));
  assert_true(body_has(&r, "\"listener\":\"ctl\\u0001\\u000a\""));
  assert_true(body_has(&r, "\"client\":\"bad\\ufffdutf8\""));
  pst_buf_free(&out);

  one("GET", NULL, &f, &out, &r);
  assert_false(body_has(&r, "<script>"));
  assert_true(body_has(&r, "evil&quot;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;\\"));
  assert_true(body_has(&r, "bad\xEF\xBF\xBDutf8"));
  assert_false(body_has(&r, "\x01"));
  pst_buf_free(&out);
}

/* pst_info_render is the page alone: what pst_info_respond sends after its
 * head, with the matching media type. */
static void test_render(void **state) {
  pst_info_facts_t f = facts_default();
  for (int json = 0; json <= 1; json++) {
    pst_buf_t body = {0}, out = {0};
    const char *ctype = NULL;
    resp_t r;
    assert_int_equal(pst_info_render(&f, json, &body, &ctype), 0);
    assert_string_equal(ctype, json ? "application/json" : "text/html; charset=utf-8");
    assert_true(body.len > 0);
    one("GET", json ? "application/json" : NULL, &f, &out, &r);
    assert_string_equal(hdr(&r, "Content-Type"), ctype);
    assert_int_equal(r.body_len, body.len);
    assert_memory_equal(r.body, pst_buf_head(&body), body.len);
    pst_buf_free(&body);
    pst_buf_free(&out);
  }
}

/* RFC 9110 9.3.2: the GET's head, with its Content-Length, and no content. */
static void test_head(void **state) {
  pst_info_facts_t f = facts_default();
  pst_buf_t get = {0}, head = {0};
  resp_t rg, rh;
  one("GET", NULL, &f, &get, &rg);
  one("HEAD", NULL, &f, &head, &rh);
  assert_int_equal(rh.status, 200);
  assert_int_equal(rh.content_length, rg.content_length);
  assert_int_equal(head.len, rh.head_len); /* no body at all */
  assert_string_equal(hdr(&rh, "Content-Type"), "text/html; charset=utf-8");
  assert_string_equal(hdr(&rh, "Vary"), "Accept");
  assert_null(hdr(&rh, "Connection"));
  pst_buf_free(&get);
  pst_buf_free(&head);

  /* The same for the JSON representation. */
  one("GET", "application/json", &f, &get, &rg);
  one("HEAD", "application/json", &f, &head, &rh);
  assert_int_equal(rh.content_length, rg.content_length);
  assert_int_equal(head.len, rh.head_len);
  assert_string_equal(hdr(&rh, "Content-Type"), "application/json");
  pst_buf_free(&get);
  pst_buf_free(&head);
}

/* RFC 9110 15.5.6: any other method is 405 with Allow, whatever Accept
 * says. Method names are case-sensitive (RFC 9110 9.1): "get" is not GET.
 * No Connection field: a request with a body the backend never reads is
 * the front end's business (it forwarded or discarded the body), and
 * CONNECT's tunnel is never opened. */
static void test_405(void **state) {
  static const char *const methods[] = {"POST",    "PUT",   "DELETE", "CONNECT",
                                        "OPTIONS", "PATCH", "BREW",   "get"};
  pst_info_facts_t f = facts_default();
  for (size_t i = 0; i < PST_ARRAY_SIZE(methods); i++) {
    pst_buf_t out = {0};
    resp_t r;
    one(methods[i], "application/json", &f, &out, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(hdr(&r, "Allow"), "GET, HEAD");
    assert_string_equal(hdr(&r, "Content-Type"), "text/plain; charset=utf-8");
    assert_string_equal(hdr(&r, "Cache-Control"), "no-store");
    assert_null(hdr(&r, "Connection"));
    assert_true(r.body_len > 0);
    assert_int_equal(r.content_length, out.len - r.head_len);
    pst_buf_free(&out);
  }
}

/* What the HTTP/1.1 response parser of the backend side (the one stream.c
 * reads builtin:info's answer with) makes of the response. */
typedef struct {
  pst_http_response_t *resp;
  pst_buf_t body;
  int ends;
} parsed_t;

static int parsed_on_head(void *arg, pst_http_response_t *resp) {
  parsed_t *p = arg;
  assert_null(p->resp);
  p->resp = resp;
  return 0;
}

static int parsed_on_body(void *arg, const char *data, size_t len) {
  parsed_t *p = arg;
  return pst_buf_append(&p->body, data, len);
}

static int parsed_on_end(void *arg) {
  parsed_t *p = arg;
  p->ends++;
  return 0;
}

static const pst_h1_resp_callbacks_t parsed_callbacks = {
    .on_head = parsed_on_head,
    .on_body = parsed_on_body,
    .on_end = parsed_on_end,
};

/* Feeds the answer to method into a fresh response parser: it must take all
 * of it as one complete response. */
static void parse_strict(const char *method, const char *accept, pst_buf_t *out, parsed_t *p) {
  pst_info_facts_t f = facts_default();
  memset(p, 0, sizeof(*p));
  assert_int_equal(pst_info_respond(method, accept, &f, out), 0);
  pst_h1_resp_parser_t *rp = pst_h1_resp_parser_new(&parsed_callbacks, p, 8192);
  assert_non_null(rp);
  pst_h1_resp_expect(rp, method);
  size_t consumed = 0;
  assert_int_equal(pst_h1_resp_feed(rp, pst_buf_head(out), out->len, &consumed), 0);
  assert_null(pst_h1_resp_why(rp));
  assert_int_equal(consumed, out->len);
  assert_int_equal(p->ends, 1);
  assert_non_null(p->resp);
  assert_int_equal(pst_h1_resp_finish(rp), 0); /* nothing cut short */
  pst_h1_resp_parser_free(rp);
}

static void parsed_free(parsed_t *p) {
  pst_http_response_free(p->resp);
  free(p->resp);
  pst_buf_free(&p->body);
}

static void test_response_head(void **state) {
  pst_buf_t out = {0};
  parsed_t p;

  parse_strict("GET", NULL, &out, &p);
  /* The status line, exactly. */
  assert_true(out.len > 17);
  assert_memory_equal(pst_buf_head(&out), "HTTP/1.1 200 OK\r\n", 17);
  assert_int_equal(p.resp->status, 200);
  assert_int_equal(p.resp->body, PST_BODY_LENGTH);
  /* Content-Length is the body's length: framing is by length, never by
   * closing, so the in-process connection's EOF is not the end of it. */
  assert_int_equal(p.resp->content_length, p.body.len);
  assert_true(p.body.len > 0);
  /* No Connection field: keep-alive as HTTP/1.1's default; whether the
   * client connection stays open is the front end's decision. */
  assert_true(p.resp->keep_alive);
  assert_null(pst_headers_get(&p.resp->headers, "connection"));
  assert_null(pst_headers_get(&p.resp->headers, "transfer-encoding"));
  assert_string_equal(pst_headers_get(&p.resp->headers, "content-type"),
                      "text/html; charset=utf-8");
  /* An IMF-fixdate (RFC 9110 5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT". */
  const char *date = pst_headers_get(&p.resp->headers, "date");
  assert_non_null(date);
  assert_int_equal(strlen(date), 29);
  assert_string_equal(date + 25, " GMT");
  parsed_free(&p);
  pst_buf_free(&out);

  parse_strict("HEAD", "application/json", &out, &p);
  assert_int_equal(p.resp->status, 200);
  assert_int_equal(p.body.len, 0);
  assert_true(p.resp->keep_alive);
  assert_null(pst_headers_get(&p.resp->headers, "connection"));
  parsed_free(&p);
  pst_buf_free(&out);

  parse_strict("POST", NULL, &out, &p);
  assert_memory_equal(pst_buf_head(&out), "HTTP/1.1 405 Method Not Allowed\r\n", 33);
  assert_int_equal(p.resp->status, 405);
  assert_int_equal(p.resp->body, PST_BODY_LENGTH);
  assert_int_equal(p.resp->content_length, p.body.len);
  assert_true(p.resp->keep_alive);
  assert_null(pst_headers_get(&p.resp->headers, "connection"));
  assert_string_equal(pst_headers_get(&p.resp->headers, "allow"), "GET, HEAD");
  parsed_free(&p);
  pst_buf_free(&out);
}

/* The response is appended after what out already holds. */
static void test_appends(void **state) {
  pst_info_facts_t f = facts_default();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(pst_buf_append(&out, "before", 6), 0);
  assert_int_equal(pst_info_respond("HEAD", NULL, &f, &out), 0);
  assert_memory_equal(pst_buf_head(&out), "before", 6);
  assert_int_equal(parse_resp(pst_buf_head(&out) + 6, out.len - 6, 1, &r), out.len - 6);
  assert_int_equal(r.status, 200);
  pst_buf_free(&out);
}

/* Out of memory at any allocation: -ENOMEM and out as it was, never half a
 * response (the contract in info.h). */
static void test_nomem(void **state) {
  static const char *const methods[] = {"GET", "HEAD", "POST"};
  pst_info_facts_t f = facts_default();
  for (size_t m = 0; m < PST_ARRAY_SIZE(methods); m++) {
    int done = 0;
    for (long n = 0; !done; n++) {
      assert_true(n < 10000);
      pst_buf_t out = {0};
      assert_int_equal(pst_buf_append(&out, "kept", 4), 0);
      failed_alloc = 0;
      fail_at = n;
      int rc = pst_info_respond(methods[m], "application/json", &f, &out);
      fail_at = -1;
      if (failed_alloc) {
        assert_int_equal(rc, -ENOMEM);
        assert_int_equal(out.len, 4);
        assert_memory_equal(pst_buf_head(&out), "kept", 4);
      } else {
        assert_int_equal(rc, 0);
        done = 1;
      }
      pst_buf_free(&out);
    }
  }
}

/* Every fact unknown: no crash, nulls in JSON, "none" in HTML. */
static void test_no_facts(void **state) {
  pst_info_facts_t f = {0};
  pst_buf_t out = {0};
  resp_t r;
  one("GET", "application/json", &f, &out, &r);
  assert_true(body_has(&r, "{\"listener\":null,\"client\":null,\"sni\":null,"));
  assert_true(body_has(&r, "\"chain\":[]}"));
  pst_buf_free(&out);
  one("GET", NULL, NULL, &out, &r);
  assert_true(body_has(&r, "no certificate"));
  assert_true(body_has(&r, "<span class=\"none\">none</span>"));
  pst_buf_free(&out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_html),      cmocka_unit_test(test_get_json),
      cmocka_unit_test(test_escaping),      cmocka_unit_test(test_render),
      cmocka_unit_test(test_head),          cmocka_unit_test(test_405),
      cmocka_unit_test(test_response_head), cmocka_unit_test(test_appends),
      cmocka_unit_test(test_nomem),         cmocka_unit_test(test_no_facts),
  };
  return cmocka_run_group_tests_name("info", tests, NULL, NULL);
}
