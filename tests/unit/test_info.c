/* Unit tests for the builtin:info responder (src/info.c): request parsing,
 * pipelining, keep-alive, limits, and the HTML and JSON pages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/common.h"
#include "postern/info.h"

/* 2026-01-01 00:00:00 UTC and 2030-06-15 12:30:45 UTC. */
#define T_LEAF ((time_t)1767225600)
#define T_CA ((time_t)1907757045)

static pst_cert_info_t chain[2];

static pst_info_facts_t facts_default(void) {
  chain[0] = (pst_cert_info_t){.subject = "CN=info.test", .issuer = "CN=Test CA",
                               .serial_hex = "0A1B2C", .not_after = T_LEAF};
  chain[1] = (pst_cert_info_t){.subject = "CN=Test CA", .issuer = "CN=Test CA",
                               .serial_hex = "01", .not_after = T_CA};
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

static int feed_str(pst_info_t *info, const char *s, const pst_info_facts_t *f, pst_buf_t *out) {
  return pst_info_feed(info, s, strlen(s), f, out);
}

/* Feeds one request in one piece and parses the single response. */
static int one(const char *req, const pst_info_facts_t *f, int head_only, pst_buf_t *out,
               resp_t *r) {
  pst_info_t *info = pst_info_new();
  assert_non_null(info);
  int rc = feed_str(info, req, f, out);
  size_t used = parse_resp(pst_buf_head(out), out->len, head_only, r);
  assert_int_equal(used, out->len); /* exactly one response */
  pst_info_free(info);
  return rc;
}

static void test_get_html(void **state) {
  pst_info_facts_t f = facts_default();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(one("GET / HTTP/1.1\r\nHost: info.test\r\n\r\n", &f, 0, &out, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(hdr(&r, "Content-Type"), "text/html; charset=utf-8");
  assert_string_equal(hdr(&r, "Cache-Control"), "no-store");
  assert_string_equal(hdr(&r, "Server"), "postern");
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
}

static const char *const json_keys[] = {
    "\"listener\":", "\"client\":", "\"sni\":",        "\"alpn\":",
    "\"version\":",  "\"cipher\":", "\"group\":",      "\"resumed\":",
    "\"early_data\":", "\"handshake_ms\":", "\"chain\":[",
};

static void test_get_json(void **state) {
  pst_info_facts_t f = facts_default();
  f.sni = NULL;
  f.alpn = NULL;
  f.resumed = 1;
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(one("GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html;q=0.9, "
                       "Application/JSON\r\n\r\n",
                       &f, 0, &out, &r),
                   0);
  assert_int_equal(r.status, 200);
  assert_string_equal(hdr(&r, "Content-Type"), "application/json");
  assert_string_equal(hdr(&r, "Vary"), "Accept");
  assert_int_equal(r.content_length, out.len - r.head_len);
  for (size_t i = 0; i < PST_ARRAY_SIZE(json_keys); i++) {
    assert_true(body_has(&r, json_keys[i]));
  }
  assert_true(body_has(&r, "{\"listener\":\"main\",\"client\":\"127.0.0.1:51234\","));
  assert_true(body_has(&r, "\"sni\":null,\"alpn\":null,\"version\":\"TLSv1.3\""));
  assert_true(body_has(&r, "\"resumed\":true,\"early_data\":\"not sent\""));
  assert_true(body_has(&r, "\"handshake_ms\":12.35,"));
  assert_true(body_has(&r, "\"chain\":[{\"subject\":\"CN=info.test\",\"issuer\":"
                           "\"CN=Test CA\",\"serial\":\"0A1B2C\",\"not_after\":"
                           "\"2026-01-01 00:00:00 UTC\"},{\"subject\":\"CN=Test CA\","));
  assert_true(body_has(&r, "\"not_after\":\"2030-06-15 12:30:45 UTC\"}]}"));
  pst_buf_free(&out);
}

/* A name that merely starts with "Accept" is not Accept. */
static void test_accept_prefix_is_not_accept(void **state) {
  pst_info_facts_t f = facts_default();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(one("GET / HTTP/1.1\r\nAccept-Language: application/json\r\n"
                       "X-Accept: application/json\r\n\r\n",
                       &f, 0, &out, &r),
                   0);
  assert_string_equal(hdr(&r, "Content-Type"), "text/html; charset=utf-8");
  pst_buf_free(&out);

  /* The second of two Accept lines may be the one that asks for JSON, and
   * the name is case-insensitive. */
  assert_int_equal(one("GET / HTTP/1.1\r\nAccept: text/html\r\naCCePT: application/json\r\n\r\n",
                       &f, 0, &out, &r),
                   0);
  assert_string_equal(hdr(&r, "Content-Type"), "application/json");
  pst_buf_free(&out);
}

static void test_escaping(void **state) {
  pst_info_facts_t f = facts_default();
  f.sni = "evil\"<script>alert('x')</script>&\\";
  f.listener = "ctl\x01\n";
  f.client = "bad\xff" "utf8";
  pst_buf_t out = {0};
  resp_t r;

  one("GET / HTTP/1.1\r\nAccept: application/json\r\n\r\n", &f, 0, &out, &r);
  assert_true(body_has(&r, "\"sni\":\"evil\\\"<script>alert('x')</script>&\\\\\""));
  assert_true(body_has(&r, "\"listener\":\"ctl\\u0001\\u000a\""));
  assert_true(body_has(&r, "\"client\":\"bad\\ufffdutf8\""));
  pst_buf_free(&out);

  one("GET / HTTP/1.1\r\n\r\n", &f, 0, &out, &r);
  assert_false(body_has(&r, "<script>"));
  assert_true(body_has(&r, "evil&quot;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;\\"));
  assert_true(body_has(&r, "bad\xEF\xBF\xBDutf8"));
  assert_false(body_has(&r, "\x01"));
  pst_buf_free(&out);
}

static void test_head(void **state) {
  pst_info_facts_t f = facts_default();
  pst_buf_t get = {0}, head = {0};
  resp_t rg, rh;
  assert_int_equal(one("GET / HTTP/1.1\r\n\r\n", &f, 0, &get, &rg), 0);
  assert_int_equal(one("HEAD / HTTP/1.1\r\n\r\n", &f, 1, &head, &rh), 0);
  assert_int_equal(rh.status, 200);
  assert_int_equal(rh.content_length, rg.content_length);
  assert_int_equal(head.len, rh.head_len); /* no body at all */
  assert_string_equal(hdr(&rh, "Content-Type"), "text/html; charset=utf-8");
  pst_buf_free(&get);
  pst_buf_free(&head);
}

static void test_post_405_keeps_alive(void **state) {
  pst_info_facts_t f = facts_default();
  pst_info_t *info = pst_info_new();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(feed_str(info, "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", &f, &out), 0);
  assert_int_equal(out.len, 0); /* the body is not complete yet */
  assert_int_equal(feed_str(info, "cde", &f, &out), 0);
  size_t used = parse_resp(pst_buf_head(&out), out.len, 0, &r);
  assert_int_equal(used, out.len);
  assert_int_equal(r.status, 405);
  assert_string_equal(hdr(&r, "Allow"), "GET, HEAD");
  assert_string_equal(hdr(&r, "Content-Type"), "text/plain; charset=utf-8");
  assert_null(hdr(&r, "Connection"));
  assert_true(r.body_len > 0);
  pst_buf_consume(&out, used);

  /* A chunked body is discarded too, and the connection still serves GET. */
  assert_int_equal(feed_str(info, "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
                            &f, &out),
                   0);
  used = parse_resp(pst_buf_head(&out), out.len, 0, &r);
  assert_int_equal(r.status, 405);
  used += parse_resp(pst_buf_head(&out) + used, out.len - used, 0, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(used, out.len);
  pst_buf_free(&out);
  pst_info_free(info);
}

static void test_connect_closes(void **state) {
  pst_info_facts_t f = facts_default();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(one("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\ntunnel", &f,
                       0, &out, &r),
                   1);
  assert_int_equal(r.status, 405);
  assert_string_equal(hdr(&r, "Connection"), "close");
  pst_buf_free(&out);
}

static void test_pipelined(void **state) {
  pst_info_facts_t f = facts_default();
  pst_info_t *info = pst_info_new();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(feed_str(info, "GET / HTTP/1.1\r\nAccept: application/json\r\n\r\n"
                                  "HEAD / HTTP/1.1\r\n\r\nGET /second HTTP/1.1\r\n\r\n",
                            &f, &out),
                   0);
  size_t used = parse_resp(pst_buf_head(&out), out.len, 0, &r);
  assert_string_equal(hdr(&r, "Content-Type"), "application/json");
  assert_int_equal(r.body[0], '{');
  used += parse_resp(pst_buf_head(&out) + used, out.len - used, 1, &r);
  assert_string_equal(hdr(&r, "Content-Type"), "text/html; charset=utf-8");
  used += parse_resp(pst_buf_head(&out) + used, out.len - used, 0, &r);
  assert_string_equal(hdr(&r, "Content-Type"), "text/html; charset=utf-8");
  assert_true(body_has(&r, "<!DOCTYPE html>"));
  assert_int_equal(used, out.len);
  pst_buf_free(&out);
  pst_info_free(info);
}

static void test_byte_by_byte(void **state) {
  static const char req[] = "GET /x HTTP/1.1\r\nHost: info.test\r\nAcc"
                            "ept: text/plain, applic"
                            "ation/json\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
  pst_info_facts_t f = facts_default();
  pst_info_t *info = pst_info_new();
  pst_buf_t out = {0};
  resp_t r;
  for (size_t i = 0; i + 1 < sizeof(req); i++) {
    assert_int_equal(pst_info_feed(info, req + i, 1, &f, &out), 0);
    if (i + 2 < sizeof(req)) assert_int_equal(out.len, 0);
  }
  size_t used = parse_resp(pst_buf_head(&out), out.len, 0, &r);
  assert_int_equal(used, out.len);
  assert_int_equal(r.status, 200);
  assert_string_equal(hdr(&r, "Content-Type"), "application/json");
  pst_buf_free(&out);
  /* An empty feed does nothing. */
  assert_int_equal(pst_info_feed(info, NULL, 0, &f, &out), 0);
  assert_int_equal(out.len, 0);
  pst_info_free(info);
}

static void test_connection_close(void **state) {
  pst_info_facts_t f = facts_default();
  pst_info_t *info = pst_info_new();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(feed_str(info, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
                                  "GET / HTTP/1.1\r\n\r\n",
                            &f, &out),
                   1);
  size_t used = parse_resp(pst_buf_head(&out), out.len, 0, &r);
  assert_int_equal(used, out.len); /* the second request is not answered */
  assert_int_equal(r.status, 200);
  assert_string_equal(hdr(&r, "Connection"), "close");
  /* Once closing, later bytes are ignored. */
  assert_int_equal(feed_str(info, "GET / HTTP/1.1\r\n\r\n", &f, &out), 1);
  assert_int_equal(used, out.len);
  pst_buf_free(&out);
  pst_info_free(info);
}

static void test_http10(void **state) {
  pst_info_facts_t f = facts_default();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(one("GET / HTTP/1.0\r\n\r\n", &f, 0, &out, &r), 1);
  assert_int_equal(r.status, 200);
  assert_string_equal(hdr(&r, "Connection"), "close");
  pst_buf_free(&out);
  /* A 1.0 client that asks for keep-alive gets it, and is told so. */
  assert_int_equal(one("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &f, 0, &out, &r),
                   0);
  assert_string_equal(hdr(&r, "Connection"), "keep-alive");
  pst_buf_free(&out);
}

static void test_http2_version_505(void **state) {
  pst_info_facts_t f = facts_default();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(one("GET / HTTP/2.0\r\n\r\n", &f, 0, &out, &r), 1);
  assert_int_equal(r.status, 505);
  pst_buf_free(&out);
}

/* An Upgrade request is answered normally and the connection stays HTTP/1.1
 * (RFC 9110 7.8). */
static void test_upgrade_ignored(void **state) {
  pst_info_facts_t f = facts_default();
  pst_info_t *info = pst_info_new();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(feed_str(info, "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: "
                                  "websocket\r\n\r\nGET / HTTP/1.1\r\n\r\n",
                            &f, &out),
                   0);
  size_t used = parse_resp(pst_buf_head(&out), out.len, 0, &r);
  assert_int_equal(r.status, 200);
  used += parse_resp(pst_buf_head(&out) + used, out.len - used, 0, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(used, out.len);
  pst_buf_free(&out);
  pst_info_free(info);
}

static void check_malformed(const char *req, size_t len) {
  pst_info_facts_t f = facts_default();
  pst_info_t *info = pst_info_new();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(pst_info_feed(info, req, len, &f, &out), PST_EPROTO);
  size_t used = parse_resp(pst_buf_head(&out), out.len, 0, &r);
  assert_int_equal(used, out.len);
  assert_int_equal(r.status, 400);
  assert_string_equal(hdr(&r, "Connection"), "close");
  assert_string_equal(hdr(&r, "Content-Type"), "text/plain; charset=utf-8");
  /* Sticky: nothing more is parsed or answered. */
  assert_int_equal(feed_str(info, "GET / HTTP/1.1\r\n\r\n", &f, &out), PST_EPROTO);
  assert_int_equal(used, out.len);
  pst_buf_free(&out);
  pst_info_free(info);
}

static void test_malformed(void **state) {
  static const char *const reqs[] = {
      /* RFC 9112 6.3: both framings at once is a smuggling attempt. */
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET / HTTP/1.1\nHost: a\n\n",           /* bare LF */
      "GET / HTTP/1.1\n\n",                    /* bare LF llhttp 8 lets through */
      "GET / HTTP/1.1\r\nHost: a\r\n\n",       /* bare LF as the blank line */
      "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",     /* bare CR */
      "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", /* obs-fold (RFC 9112 5.2) */
      "GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n", /* control byte in a name */
      "GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", /* DEL in a value */
      "GET / HTTP/1.1\r\nHost : a\r\n\r\n",    /* space before the colon */
      "GET  / HTTP/1.1\r\n\r\n",               /* doubled SP in the request line (RFC 9112 3) */
      "GET /\tHTTP/1.1\r\n\r\n",               /* HTAB in the request line */
      "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
      "BREW / HTTP/1.1\r\n\r\n",
      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* TLS on the plaintext side */
  };
  for (size_t i = 0; i < PST_ARRAY_SIZE(reqs); i++) {
    check_malformed(reqs[i], strlen(reqs[i]));
  }
  /* The error comes after the answers to the requests before it. */
  pst_info_facts_t f = facts_default();
  pst_info_t *info = pst_info_new();
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(feed_str(info, "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\nX: y\n\n", &f, &out),
                   PST_EPROTO);
  size_t used = parse_resp(pst_buf_head(&out), out.len, 0, &r);
  assert_int_equal(r.status, 200);
  used += parse_resp(pst_buf_head(&out) + used, out.len - used, 0, &r);
  assert_int_equal(r.status, 400);
  assert_int_equal(used, out.len);
  pst_buf_free(&out);
  pst_info_free(info);
}

/* Builds "GET / HTTP/1.1\r\nX-Pad: aaa...\r\n\r\n" of exactly total bytes. */
static char *head_of(size_t total) {
  static const char pre[] = "GET / HTTP/1.1\r\nX-Pad: ", post[] = "\r\n\r\n";
  size_t fixed = sizeof(pre) - 1 + sizeof(post) - 1;
  assert_true(total > fixed);
  char *s = malloc(total + 1);
  assert_non_null(s);
  memcpy(s, pre, sizeof(pre) - 1);
  memset(s + sizeof(pre) - 1, 'a', total - fixed);
  memcpy(s + total - (sizeof(post) - 1), post, sizeof(post));
  return s;
}

static void test_head_limit(void **state) {
  pst_info_facts_t f = facts_default();
  pst_buf_t out = {0};
  resp_t r;

  /* 8192 bytes of head are fine, twice in a row on one connection. */
  char *ok = head_of(8192);
  pst_info_t *info = pst_info_new();
  assert_int_equal(feed_str(info, ok, &f, &out), 0);
  assert_int_equal(feed_str(info, ok, &f, &out), 0);
  size_t used = parse_resp(pst_buf_head(&out), out.len, 0, &r);
  assert_int_equal(r.status, 200);
  used += parse_resp(pst_buf_head(&out) + used, out.len - used, 0, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(used, out.len);
  pst_buf_free(&out);
  pst_info_free(info);
  free(ok);

  /* One byte more is 431, whether fed at once or in pieces. */
  char *big = head_of(8193);
  assert_int_equal(one(big, &f, 0, &out, &r), 1);
  assert_int_equal(r.status, 431);
  assert_string_equal(hdr(&r, "Connection"), "close");
  pst_buf_free(&out);
  info = pst_info_new();
  int rc = 0;
  for (size_t i = 0; i < 8193 && rc == 0; i += 100) {
    rc = pst_info_feed(info, big + i, 8193 - i < 100 ? 8193 - i : 100, &f, &out);
  }
  assert_int_equal(rc, 1);
  assert_int_equal(parse_resp(pst_buf_head(&out), out.len, 0, &r), out.len);
  assert_int_equal(r.status, 431);
  pst_buf_free(&out);
  pst_info_free(info);
  free(big);

  /* A huge Accept value in one feed stops at the limit too. */
  size_t n = 1 << 20;
  char *huge = malloc(n);
  assert_non_null(huge);
  memcpy(huge, "GET / HTTP/1.1\r\nAccept: ", 24);
  memset(huge + 24, 'a', n - 24);
  info = pst_info_new();
  assert_int_equal(pst_info_feed(info, huge, n, &f, &out), 1);
  assert_int_equal(parse_resp(pst_buf_head(&out), out.len, 0, &r), out.len);
  assert_int_equal(r.status, 431);
  pst_buf_free(&out);
  pst_info_free(info);
  free(huge);
}

/* Every fact unknown: no crash, nulls in JSON, "none" in HTML. */
static void test_no_facts(void **state) {
  pst_info_facts_t f = {0};
  pst_buf_t out = {0};
  resp_t r;
  assert_int_equal(one("GET / HTTP/1.1\r\nAccept: application/json\r\n\r\n", &f, 0, &out, &r), 0);
  assert_true(body_has(&r, "{\"listener\":null,\"client\":null,\"sni\":null,"));
  assert_true(body_has(&r, "\"chain\":[]}"));
  pst_buf_free(&out);
  assert_int_equal(one("GET / HTTP/1.1\r\n\r\n", NULL, 0, &out, &r), 0);
  assert_true(body_has(&r, "no certificate"));
  pst_buf_free(&out);
  pst_info_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_html),
      cmocka_unit_test(test_get_json),
      cmocka_unit_test(test_accept_prefix_is_not_accept),
      cmocka_unit_test(test_escaping),
      cmocka_unit_test(test_head),
      cmocka_unit_test(test_post_405_keeps_alive),
      cmocka_unit_test(test_connect_closes),
      cmocka_unit_test(test_pipelined),
      cmocka_unit_test(test_byte_by_byte),
      cmocka_unit_test(test_connection_close),
      cmocka_unit_test(test_http10),
      cmocka_unit_test(test_http2_version_505),
      cmocka_unit_test(test_upgrade_ignored),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_head_limit),
      cmocka_unit_test(test_no_facts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
