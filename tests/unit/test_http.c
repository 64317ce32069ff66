/* Unit tests for src/http_msg.c: header lists, the hop-by-hop table, and
 * the writers (request heads for backends with the forwarding headers,
 * response heads for HTTP/1.x clients, chunks, error responses), including
 * refused injections and allocation failures. The parsers are tested in
 * test_h1_parse.c. */
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

/* ---- helpers ------------------------------------------------------------- */

static void add(pst_headers_t *h, const char *name, const char *value) {
  assert_int_equal(pst_headers_add(h, name, strlen(name), value, strlen(value)), 0);
}

static void set(char **field, const char *s) {
  free(*field);
  *field = s != NULL ? strdup(s) : NULL;
  if (s != NULL) assert_non_null(*field);
}

static pst_http_request_t request(const char *method, const char *target, const char *authority) {
  pst_http_request_t r = {0};
  set(&r.method, method);
  set(&r.target, target);
  set(&r.authority, authority);
  r.http_minor = 1;
  r.keep_alive = 1;
  return r;
}

/* ---- header lists ----------------------------------------------------------- */

static void test_headers(void **state) {
  pst_headers_t h = {0};
  add(&h, "Content-Type", "text/plain");
  add(&h, "X-A", "1");
  add(&h, "x-a", "2");
  add(&h, "Set-Cookie", "a=b");
  assert_int_equal(h.n, 4);
  /* Names keep their case; lookups ignore it (RFC 9110 5.1). */
  assert_string_equal(h.v[0].name, "Content-Type");
  assert_string_equal(h.v[1].name, "X-A");
  assert_int_equal(h.bytes, strlen("Content-Typetext/plainX-A1x-a2Set-Cookiea=b"));
  assert_string_equal(pst_headers_get(&h, "x-a"), "1");
  assert_string_equal(pst_headers_get(&h, "content-type"), "text/plain");
  assert_null(pst_headers_get(&h, "x-b"));
  /* Values may hold NUL-free bytes of any kind; lengths are kept. */
  assert_int_equal(pst_headers_add(&h, "X-Bin", 5, "a\xff", 2), 0);
  assert_int_equal(h.v[4].value_len, 2);
  assert_int_equal(pst_headers_del(&h, "X-A", 3), 2);
  assert_int_equal(h.n, 3);
  assert_string_equal(h.v[0].name, "Content-Type");
  assert_string_equal(h.v[1].name, "Set-Cookie");
  assert_string_equal(h.v[2].name, "X-Bin");
  assert_int_equal(h.bytes, strlen("Content-Typetext/plainSet-Cookiea=bX-Bin") + 2);
  assert_int_equal(pst_headers_del(&h, "nothing", 7), 0);
  for (int i = 0; i < 100; i++) add(&h, "x-many", "v");
  assert_int_equal(h.n, 103);
  pst_headers_free(&h);
  assert_int_equal(h.n, 0);
  assert_null(h.v);
  pst_headers_free(&h); /* twice is fine */
  pst_http_request_free(NULL);
  pst_http_response_free(NULL);
}

static void test_tables(void **state) {
  static const char *const hop[] = {"connection",        "Keep-Alive", "PROXY-CONNECTION", "te",
                                    "transfer-encoding", "upgrade",    "trailer"};
  for (size_t i = 0; i < PST_ARRAY_SIZE(hop); i++) {
    assert_true(pst_http_hop_by_hop(hop[i], strlen(hop[i])));
  }
  assert_false(pst_http_hop_by_hop("host", 4));
  assert_false(pst_http_hop_by_hop("content-length", 14));
  assert_false(pst_http_hop_by_hop("tex", 3));
  assert_false(pst_http_hop_by_hop("t", 1));
  assert_false(pst_http_hop_by_hop("connections", 11));
  assert_string_equal(pst_http_reason(200), "OK");
  assert_string_equal(pst_http_reason(431), "Request Header Fields Too Large");
  assert_string_equal(pst_http_reason(502), "Bad Gateway");
  assert_string_equal(pst_http_reason(504), "Gateway Timeout");
  assert_string_equal(pst_http_reason(505), "HTTP Version Not Supported");
  assert_string_equal(pst_http_reason(799), "");
}

/* ---- request heads --------------------------------------------------------- */

static void test_request_xff(void **state) {
  pst_http_request_t r = request("GET", "/p?q", "example.com");
  add(&r.headers, "user-agent", "ua");
  add(&r.headers, "x-forwarded-for", "203.0.113.7");
  add(&r.headers, "x-forwarded-proto", "http");     /* spoofed */
  add(&r.headers, "x-forwarded-host", "evil.test"); /* spoofed */
  add(&r.headers, "accept", "*/*");
  add(&r.headers, "X-Forwarded-For", "198.51.100.2, 10.0.0.1");
  add(&r.headers, "connection", "close");      /* hop-by-hop left by a caller */
  add(&r.headers, "host", "other.example");    /* authority wins */
  add(&r.headers, "early-data", "1");          /* never from the client */
  add(&r.headers, "forwarded", "for=1.2.3.4"); /* the other scheme: untouched */
  pst_forward_info_t fwd = {.client_ip = "192.0.2.1", .mode = PST_FORWARDED_XFF};
  pst_buf_t out = {0};
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_string_equal(buf_str(&out),
                      "GET /p?q HTTP/1.1\r\n"
                      "Host: example.com\r\n"
                      "user-agent: ua\r\n"
                      "accept: */*\r\n"
                      "forwarded: for=1.2.3.4\r\n"
                      "X-Forwarded-For: 203.0.113.7, 198.51.100.2, 10.0.0.1, 192.0.2.1\r\n"
                      "X-Forwarded-Proto: https\r\n"
                      "X-Forwarded-Host: example.com\r\n"
                      "\r\n");
  pst_buf_free(&out);
  /* No received XFF; IPv6 client as is; early data. */
  pst_headers_free(&r.headers);
  fwd = (pst_forward_info_t){.client_ip = "2001:db8::1", .early_data = 1};
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_string_equal(buf_str(&out),
                      "GET /p?q HTTP/1.1\r\n"
                      "Host: example.com\r\n"
                      "X-Forwarded-For: 2001:db8::1\r\n"
                      "X-Forwarded-Proto: https\r\n"
                      "X-Forwarded-Host: example.com\r\n"
                      "Early-Data: 1\r\n"
                      "\r\n");
  pst_buf_free(&out);
  /* The output is appended to what the buffer holds. */
  assert_int_equal(pst_buf_append(&out, "prev", 4), 0);
  set(&r.authority, NULL);
  add(&r.headers, "host", "from-host:81");
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_int_equal(strncmp(buf_str(&out), "prevGET /p?q HTTP/1.1\r\nHost: from-host:81\r\n", 43),
                   0);
  assert_non_null(strstr(buf_str(&out), "X-Forwarded-Host: from-host:81\r\n"));
  pst_buf_free(&out);
  /* Neither authority nor host: an empty Host (RFC 9112 3.2), no XFH. */
  pst_headers_free(&r.headers);
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_non_null(strstr(buf_str(&out), "\r\nHost: \r\n"));
  assert_null(strstr(buf_str(&out), "X-Forwarded-Host"));
  pst_buf_free(&out);
  pst_http_request_free(&r);
}

/* RFC 9440: a client's own Client-Cert fields never pass; postern's do. */
static void test_request_client_cert(void **state) {
  pst_http_request_t r = request("GET", "/", "example.com");
  add(&r.headers, "client-cert", ":Zm9v:");
  add(&r.headers, "Client-Cert-Chain", ":YmFy:");
  pst_forward_info_t fwd = {.client_ip = "192.0.2.1"};
  pst_buf_t out = {0};
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_null(strstr(buf_str(&out), "Zm9v"));
  assert_null(strstr(buf_str(&out), "YmFy"));
  pst_buf_free(&out);
  fwd.client_cert = ":AAEC:";
  fwd.client_cert_chain = ":AwQF:, :BgcI:";
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_non_null(strstr(buf_str(&out), "\r\nClient-Cert: :AAEC:\r\n"));
  assert_non_null(strstr(buf_str(&out), "\r\nClient-Cert-Chain: :AwQF:, :BgcI:\r\n"));
  assert_null(strstr(buf_str(&out), "Zm9v"));
  pst_buf_free(&out);
  /* A value that could end the field is refused, never written. */
  fwd.client_cert = ":AA\r\nX: y:";
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), PST_EPROTO);
  assert_int_equal(out.len, 0);
  pst_buf_free(&out);
  pst_http_request_free(&r);
}

static void test_request_rfc7239(void **state) {
  pst_http_request_t r = request("GET", "/", "example.com:8443");
  add(&r.headers, "Forwarded", "for=198.51.100.17;proto=http");
  add(&r.headers, "x-forwarded-for", "1.1.1.1"); /* the other scheme: untouched */
  add(&r.headers, "forwarded", "for=\"[2001:db8::2]:4711\"");
  pst_forward_info_t fwd = {.client_ip = "2001:db8::1", .mode = PST_FORWARDED_RFC7239};
  pst_buf_t out = {0};
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_string_equal(buf_str(&out),
                      "GET / HTTP/1.1\r\n"
                      "Host: example.com:8443\r\n"
                      "x-forwarded-for: 1.1.1.1\r\n"
                      "Forwarded: for=198.51.100.17;proto=http, for=\"[2001:db8::2]:4711\", "
                      "for=\"[2001:db8::1]\";proto=https;host=\"example.com:8443\"\r\n"
                      "\r\n");
  pst_buf_free(&out);
  /* IPv4 and a host that is a token stay unquoted. */
  pst_headers_free(&r.headers);
  set(&r.authority, "example.com");
  fwd.client_ip = "192.0.2.60";
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_non_null(
      strstr(buf_str(&out), "\r\nForwarded: for=192.0.2.60;proto=https;host=example.com\r\n"));
  pst_buf_free(&out);
  fwd.client_ip = NULL;
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_non_null(
      strstr(buf_str(&out), "\r\nForwarded: for=unknown;proto=https;host=example.com\r\n"));
  pst_buf_free(&out);
  pst_http_request_free(&r);
}

static void test_request_framing(void **state) {
  pst_forward_info_t fwd = {.client_ip = "192.0.2.1"};
  pst_buf_t out = {0};
  pst_http_request_t r = request("POST", "/up", "h");
  /* An h2 request body of unknown length: chunked. */
  r.body = PST_BODY_STREAM;
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_non_null(strstr(buf_str(&out), "\r\nTransfer-Encoding: chunked\r\n\r\n"));
  assert_null(strstr(buf_str(&out), "Content-Length"));
  pst_buf_free(&out);
  r.body = PST_BODY_CHUNKED;
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_non_null(strstr(buf_str(&out), "\r\nTransfer-Encoding: chunked\r\n\r\n"));
  pst_buf_free(&out);
  r.body = PST_BODY_LENGTH;
  r.content_length = 1073741824ULL * 5;
  add(&r.headers, "content-length", "1"); /* stale: never written */
  add(&r.headers, "transfer-encoding", "gzip");
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_non_null(strstr(buf_str(&out), "\r\nContent-Length: 5368709120\r\n\r\n"));
  assert_null(strstr(buf_str(&out), "ransfer"));
  assert_null(strstr(buf_str(&out), "ontent-Length: 1\r"));
  pst_buf_free(&out);
  /* No body: POST gets Content-Length: 0, GET nothing. */
  r.body = PST_BODY_NONE;
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_non_null(strstr(buf_str(&out), "\r\nContent-Length: 0\r\n\r\n"));
  pst_buf_free(&out);
  set(&r.method, "GET");
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_null(strstr(buf_str(&out), "Content-Length"));
  pst_buf_free(&out);
  pst_http_request_free(&r);
}

static void test_request_expect_upgrade(void **state) {
  pst_forward_info_t fwd = {.client_ip = "192.0.2.1"};
  pst_buf_t out = {0};
  pst_http_request_t r = request("PUT", "/f", "h");
  r.body = PST_BODY_LENGTH;
  r.content_length = 10;
  r.expect_continue = 1;
  add(&r.headers, "expect", "100-continue"); /* left by a caller: not doubled */
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_string_equal(buf_str(&out),
                      "PUT /f HTTP/1.1\r\nHost: h\r\n"
                      "X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\n"
                      "X-Forwarded-Host: h\r\nContent-Length: 10\r\n"
                      "Expect: 100-continue\r\n\r\n");
  pst_buf_free(&out);
  pst_http_request_free(&r);
  r = request("GET", "/chat", "h");
  r.upgrade = 1;
  set(&r.upgrade_proto, "websocket");
  add(&r.headers, "sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
  add(&r.headers, "upgrade", "websocket"); /* left by a caller: not doubled */
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_string_equal(buf_str(&out),
                      "GET /chat HTTP/1.1\r\nHost: h\r\n"
                      "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\n"
                      "X-Forwarded-Host: h\r\n"
                      "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  pst_buf_free(&out);
  pst_http_request_free(&r);
}

static void test_request_injection(void **state) {
  pst_forward_info_t fwd = {.client_ip = "192.0.2.1"};
  pst_buf_t out = {0};
  assert_int_equal(pst_buf_append(&out, "keep", 4), 0);
  static const struct {
    const char *method, *target, *authority, *name, *value, *ip;
  } bad[] = {
      {"GET", "/", "h", "x", "a\r\nX-Injected: 1", "192.0.2.1"},
      {"GET", "/", "h", "x\r\ny", "v", "192.0.2.1"},
      {"GET", "/", "h", "x:y", "v", "192.0.2.1"},
      {"GET", "/", "h", "", "v", "192.0.2.1"},
      {"GET", "/ HTTP/1.1\r\nX: y", "h", "x", "v", "192.0.2.1"},
      {"GET", "/a b", "h", "x", "v", "192.0.2.1"},
      {"G T", "/", "h", "x", "v", "192.0.2.1"},
      {"", "/", "h", "x", "v", "192.0.2.1"},
      {"GET", "/", "h\r\nX: y", "x", "v", "192.0.2.1"},
      {"GET", "/", "h", "x", "v", "1.2.3.4\r\nX: y"},
  };
  for (size_t i = 0; i < PST_ARRAY_SIZE(bad); i++) {
    pst_http_request_t r = request(bad[i].method, bad[i].target, bad[i].authority);
    add(&r.headers, bad[i].name, bad[i].value);
    fwd.client_ip = bad[i].ip;
    assert_int_equal(pst_http_request_write(&r, &fwd, &out), PST_EPROTO);
    assert_int_equal(out.len, 4);
    pst_http_request_free(&r);
  }
  pst_http_request_t r = request("GET", "/", "h");
  r.upgrade = 1; /* without a protocol */
  fwd.client_ip = "192.0.2.1";
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), PST_EPROTO);
  set(&r.upgrade_proto, "ws\r\nX: 1");
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), PST_EPROTO);
  set(&r.upgrade_proto, "a, b");
  assert_int_equal(pst_http_request_write(&r, &fwd, &out), 0);
  assert_non_null(strstr(buf_str(&out), "\r\nUpgrade: a, b\r\n"));
  pst_http_request_free(&r);
  pst_buf_free(&out);
}

/* ---- response heads --------------------------------------------------------- */

static pst_http_response_t response(int status, const char *reason, pst_body_kind_t body) {
  pst_http_response_t r = {.status = status, .body = body, .keep_alive = 1};
  set(&r.reason, reason);
  return r;
}

static void test_response_11(void **state) {
  pst_buf_t out = {0};
  int chunked = -1;
  pst_http_response_t r = response(200, "OK", PST_BODY_LENGTH);
  r.content_length = 12;
  add(&r.headers, "content-type", "text/html");
  add(&r.headers, "set-cookie", "a=1");
  add(&r.headers, "set-cookie", "b=2");
  add(&r.headers, "keep-alive", "timeout=5"); /* hop-by-hop left by a caller */
  assert_int_equal(pst_http_response_write(&r, 1, 1, 0, &out, &chunked), 0);
  assert_string_equal(buf_str(&out),
                      "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n"
                      "set-cookie: a=1\r\nset-cookie: b=2\r\n"
                      "Content-Length: 12\r\n\r\n");
  assert_int_equal(chunked, 0);
  pst_buf_free(&out);
  /* Chunked, stream and until-close bodies are chunked for 1.1. */
  pst_body_kind_t kinds[] = {PST_BODY_CHUNKED, PST_BODY_STREAM, PST_BODY_UNTIL_CLOSE};
  for (size_t i = 0; i < PST_ARRAY_SIZE(kinds); i++) {
    r.body = kinds[i];
    assert_int_equal(pst_http_response_write(&r, 1, 1, 0, &out, &chunked), 0);
    assert_int_equal(chunked, 1);
    assert_non_null(strstr(buf_str(&out), "\r\nTransfer-Encoding: chunked\r\n\r\n"));
    assert_null(strstr(buf_str(&out), "Content-Length"));
    assert_null(strstr(buf_str(&out), "Connection"));
    assert_false(pst_http_response_needs_close(&r, 1, 0));
    pst_buf_free(&out);
  }
  /* Not keeping the connection; a reason from the table. */
  pst_headers_free(&r.headers);
  set(&r.reason, NULL);
  r.status = 404;
  r.body = PST_BODY_NONE;
  assert_int_equal(pst_http_response_write(&r, 1, 0, 0, &out, &chunked), 0);
  assert_string_equal(buf_str(&out),
                      "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n");
  assert_int_equal(chunked, 0);
  pst_buf_free(&out);
  r.status = 299; /* unknown: empty phrase, still valid (RFC 9112 4) */
  assert_int_equal(pst_http_response_write(&r, 1, 1, 0, &out, &chunked), 0);
  assert_int_equal(strncmp(buf_str(&out), "HTTP/1.1 299 \r\n", 15), 0);
  pst_buf_free(&out);
  pst_http_response_free(&r);
}

static void test_response_10(void **state) {
  pst_buf_t out = {0};
  int chunked = -1;
  pst_http_response_t r = response(200, "OK", PST_BODY_LENGTH);
  r.content_length = 3;
  /* A 1.0 client that asked to keep the connection. */
  assert_int_equal(pst_http_response_write(&r, 0, 1, 0, &out, &chunked), 0);
  assert_string_equal(buf_str(&out),
                      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                      "Connection: keep-alive\r\n\r\n");
  pst_buf_free(&out);
  assert_int_equal(pst_http_response_write(&r, 0, 0, 0, &out, &chunked), 0);
  assert_string_equal(buf_str(&out),
                      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                      "Connection: close\r\n\r\n");
  pst_buf_free(&out);
  /* No chunked coding for 1.0: the body ends with the connection. */
  pst_body_kind_t kinds[] = {PST_BODY_CHUNKED, PST_BODY_STREAM, PST_BODY_UNTIL_CLOSE};
  for (size_t i = 0; i < PST_ARRAY_SIZE(kinds); i++) {
    r.body = kinds[i];
    assert_true(pst_http_response_needs_close(&r, 0, 0));
    assert_int_equal(pst_http_response_write(&r, 0, 1, 0, &out, &chunked), 0);
    assert_string_equal(buf_str(&out), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    assert_int_equal(chunked, 0);
    pst_buf_free(&out);
  }
  /* ... except when there is no body. */
  assert_false(pst_http_response_needs_close(&r, 0, 1));
  r.status = 304;
  assert_false(pst_http_response_needs_close(&r, 0, 0));
  pst_http_response_free(&r);
}

static void test_response_bodiless(void **state) {
  pst_buf_t out = {0};
  int chunked = -1;
  /* HEAD: the length of what GET would send, no body, no chunking. */
  pst_http_response_t r = response(200, "OK", PST_BODY_LENGTH);
  r.content_length = 1234;
  assert_int_equal(pst_http_response_write(&r, 1, 1, 1, &out, &chunked), 0);
  assert_string_equal(buf_str(&out), "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
  pst_buf_free(&out);
  r.body = PST_BODY_CHUNKED;
  assert_int_equal(pst_http_response_write(&r, 1, 1, 1, &out, &chunked), 0);
  assert_string_equal(buf_str(&out), "HTTP/1.1 200 OK\r\n\r\n");
  assert_int_equal(chunked, 0);
  pst_buf_free(&out);
  /* As the HEAD parser delivers it: NONE with its own content-length. */
  r.body = PST_BODY_NONE;
  add(&r.headers, "content-length", "1234");
  assert_int_equal(pst_http_response_write(&r, 1, 1, 1, &out, &chunked), 0);
  assert_string_equal(buf_str(&out), "HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n");
  pst_buf_free(&out);
  /* 304 keeps its content-length field; no framing. */
  r.status = 304;
  set(&r.reason, "Not Modified");
  assert_int_equal(pst_http_response_write(&r, 1, 1, 0, &out, &chunked), 0);
  assert_string_equal(buf_str(&out), "HTTP/1.1 304 Not Modified\r\ncontent-length: 1234\r\n\r\n");
  pst_buf_free(&out);
  /* 204: never a Content-Length (RFC 9110 8.6). */
  r.status = 204;
  set(&r.reason, "No Content");
  assert_int_equal(pst_http_response_write(&r, 1, 0, 0, &out, &chunked), 0);
  assert_string_equal(buf_str(&out), "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
  pst_buf_free(&out);
  pst_http_response_free(&r);
}

static void test_response_1xx(void **state) {
  pst_buf_t out = {0};
  int chunked = -1;
  pst_http_response_t r = response(103, "Early Hints", PST_BODY_NONE);
  add(&r.headers, "link", "</style.css>; rel=preload; as=style");
  assert_int_equal(pst_http_response_write(&r, 1, 0, 0, &out, &chunked), 0);
  assert_string_equal(buf_str(&out),
                      "HTTP/1.1 103 Early Hints\r\n"
                      "link: </style.css>; rel=preload; as=style\r\n\r\n");
  pst_buf_free(&out);
  pst_http_response_free(&r);
  r = response(100, NULL, PST_BODY_NONE);
  assert_int_equal(pst_http_response_write(&r, 1, 1, 0, &out, &chunked), 0);
  assert_string_equal(buf_str(&out), "HTTP/1.1 100 Continue\r\n\r\n");
  pst_buf_free(&out);
  pst_http_response_free(&r);
  r = response(101, "Switching Protocols", PST_BODY_NONE);
  r.upgrade = 1;
  r.keep_alive = 0;
  set(&r.upgrade_proto, "websocket");
  add(&r.headers, "sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert_int_equal(pst_http_response_write(&r, 1, 0, 0, &out, &chunked), 0);
  assert_string_equal(buf_str(&out),
                      "HTTP/1.1 101 Switching Protocols\r\n"
                      "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                      "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  pst_buf_free(&out);
  /* A 101 must name its protocol; bad bytes are refused, out unchanged. */
  set(&r.upgrade_proto, NULL);
  assert_int_equal(pst_http_response_write(&r, 1, 0, 0, &out, &chunked), PST_EPROTO);
  set(&r.upgrade_proto, "websocket");
  set(&r.reason, "OK\r\nX: y");
  assert_int_equal(pst_http_response_write(&r, 1, 0, 0, &out, &chunked), PST_EPROTO);
  set(&r.reason, "OK");
  add(&r.headers, "x", "a\nb");
  assert_int_equal(pst_http_response_write(&r, 1, 0, 0, &out, &chunked), PST_EPROTO);
  assert_int_equal(out.len, 0);
  pst_http_response_free(&r);
}

/* ---- chunks and errors ----------------------------------------------------- */

static void test_chunk(void **state) {
  pst_buf_t out = {0};
  assert_int_equal(pst_http_chunk(&out, "hello", 5), 0);
  assert_int_equal(pst_http_chunk(&out, NULL, 0), 0);
  assert_string_equal(buf_str(&out), "5\r\nhello\r\n0\r\n\r\n");
  pst_buf_free(&out);
  char big[300];
  memset(big, 'z', sizeof(big));
  assert_int_equal(pst_http_chunk(&out, big, sizeof(big)), 0);
  assert_int_equal(out.len, 5 + 300 + 2);
  assert_int_equal(memcmp(pst_buf_head(&out), "12c\r\nzzz", 8), 0);
  assert_int_equal(memcmp(pst_buf_head(&out) + 305, "\r\n", 2), 0);
  pst_buf_free(&out);
}

static void test_error_write(void **state) {
  pst_buf_t out = {0};
  assert_int_equal(pst_http_error_write(&out, 502, "backend unreachable\n", 1), 0);
  assert_string_equal(buf_str(&out),
                      "HTTP/1.1 502 Bad Gateway\r\n"
                      "Content-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: 20\r\n"
                      "Connection: close\r\n"
                      "\r\n"
                      "backend unreachable\n");
  pst_buf_free(&out);
  assert_int_equal(pst_http_error_write(&out, 504, "", 0), 0);
  assert_string_equal(buf_str(&out),
                      "HTTP/1.1 504 Gateway Timeout\r\n"
                      "Content-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: 0\r\n\r\n");
  pst_buf_free(&out);
  assert_int_equal(pst_http_error_write(&out, 431, NULL, 1), 0);
  assert_string_equal(buf_str(&out),
                      "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                      "Content-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: 36\r\n"
                      "Connection: close\r\n"
                      "\r\n"
                      "431 Request Header Fields Too Large\n");
  pst_buf_free(&out);
}

/* ---- allocation failures ---------------------------------------------------- */

/* Runs every writer with the n-th allocation failing: each must return
 * -ENOMEM and leave out as it was, or succeed. Returns whether an
 * allocation failed. */
static int writers_once(long n) {
  pst_http_request_t r = request("POST", "/x", "h");
  add(&r.headers, "x-forwarded-for", "1.2.3.4");
  add(&r.headers, "forwarded", "for=1.2.3.4");
  /* Long enough that the output buffer grows several times. */
  char longv[3000];
  memset(longv, 'v', sizeof(longv) - 1);
  longv[sizeof(longv) - 1] = '\0';
  add(&r.headers, "a", longv);
  r.body = PST_BODY_LENGTH;
  r.content_length = 3;
  pst_http_response_t resp = response(200, "OK", PST_BODY_CHUNKED);
  add(&resp.headers, "content-type", "text/plain");
  pst_forward_info_t fwd[2] = {{.client_ip = "::1", .mode = PST_FORWARDED_XFF},
                               {.client_ip = "::1", .mode = PST_FORWARDED_RFC7239}};
  pst_buf_t out = {0};
  int chunked, rc[6];
  failed_alloc = 0;
  fail_at = n;
  rc[0] = pst_http_request_write(&r, &fwd[0], &out);
  rc[1] = pst_http_request_write(&r, &fwd[1], &out);
  rc[2] = pst_http_response_write(&resp, 1, 1, 0, &out, &chunked);
  rc[3] = pst_http_chunk(&out, "abc", 3);
  rc[4] = pst_http_error_write(&out, 502, "x", 1);
  pst_headers_t h = {0};
  rc[5] = pst_headers_add(&h, "Name", 4, "value", 5);
  fail_at = -1;
  size_t expect = 0;
  for (int i = 0; i < 6; i++) {
    if (rc[i] != 0) assert_int_equal(rc[i], -ENOMEM);
  }
  /* Every success appended a whole message: count them. */
  const char *s = out.len > 0 ? buf_str(&out) : "";
  expect += rc[0] == 0 ? 1 : 0;
  expect += rc[1] == 0 ? 1 : 0;
  expect += rc[2] == 0 ? 1 : 0;
  expect += rc[4] == 0 ? 1 : 0;
  size_t heads = 0;
  for (const char *p = s; (p = strstr(p, "\r\n\r\n")) != NULL; p += 4) heads++;
  assert_int_equal(heads, expect);
  assert_int_equal(strstr(s, "3\r\nabc\r\n") != NULL, rc[3] == 0);
  assert_int_equal(h.n, rc[5] == 0 ? 1 : 0);
  pst_headers_free(&h);
  pst_buf_free(&out);
  pst_http_request_free(&r);
  pst_http_response_free(&resp);
  return failed_alloc;
}

/* pst_http_target_ok: origin-form and asterisk-form of RFC 3986
 * characters, the one check both front ends run on a target. */
static void test_target(void **state) {
  static const char *const good[] = {
      "/", "/a/b?c=d", "/a[1]?x[]=1&y=%41", "/%zz", "/@:!$&'()*+,;=-._~", "/?/?",
  };
  static const char *const bad[] = {
      "",       "a",      "http://h/", "/a#b",  "/a b", "/a\tb", "/a\x7f", "/caf\xc3\xa9",
      "/a\x80", "/a\xff", "/a\"b",     "/a<b",  "/a>b", "/a{b",  "/a}b",   "/a|b",
      "/a^b",   "/a\\b",  "/a`b",      "/a\rb", "**",
  };
  for (size_t i = 0; i < PST_ARRAY_SIZE(good); i++) {
    if (!pst_http_target_ok(good[i], strlen(good[i]), 0)) fail_msg("refused %s", good[i]);
  }
  for (size_t i = 0; i < PST_ARRAY_SIZE(bad); i++) {
    if (pst_http_target_ok(bad[i], strlen(bad[i]), 1)) fail_msg("accepted %s", bad[i]);
  }
  assert_false(pst_http_target_ok("/a\0b", 4, 0)); /* a NUL inside */
  assert_true(pst_http_target_ok("*", 1, 1));      /* OPTIONS only (RFC 9112 3.2.4) */
  assert_false(pst_http_target_ok("*", 1, 0));
}

static void test_oom(void **state) {
  long n = 0;
  while (writers_once(n)) n++;
  assert_true(n >= 5); /* buffer growth (3), a header field and its list (2) */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_headers),
      cmocka_unit_test(test_tables),
      cmocka_unit_test(test_request_xff),
      cmocka_unit_test(test_request_client_cert),
      cmocka_unit_test(test_request_rfc7239),
      cmocka_unit_test(test_request_framing),
      cmocka_unit_test(test_request_expect_upgrade),
      cmocka_unit_test(test_request_injection),
      cmocka_unit_test(test_response_11),
      cmocka_unit_test(test_response_10),
      cmocka_unit_test(test_response_bodiless),
      cmocka_unit_test(test_response_1xx),
      cmocka_unit_test(test_chunk),
      cmocka_unit_test(test_error_write),
      cmocka_unit_test(test_target),
      cmocka_unit_test(test_oom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
