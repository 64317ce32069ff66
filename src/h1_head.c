/* postern: HTTP/1.1 heads, for the parsers in h1_parse.c.
 *
 * Header fields are collected here because llhttp only reports them in
 * pieces; framing, Host, Connection, Upgrade and Expect are interpreted here
 * (RFC 9112 and RFC 9110) rather than trusted to llhttp's looser rules. When
 * llhttp reaches the end of a head, pst_h1_request_head() or
 * pst_h1_response_head() validates it and builds the pst_http_request_t or
 * pst_http_response_t that the parser hands over. Refusals are recorded in
 * the parser state (reject) and turned into the feed's failure by
 * h1_parse.c. */
#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "h1_int.h"
#include "postern/common.h"
#include "postern/http.h"

/* ---- helpers ------------------------------------------------------------- */

static void buf_clear(pst_buf_t *b) {
  b->len = 0;
  b->off = 0;
}

/* Appends a NUL after the bytes (not counted) so they can be used as a C
 * string. Returns a pointer to them, or NULL when out of memory. */
static const char *buf_cstr(pst_buf_t *b) {
  if (pst_buf_append(b, "", 1) != 0) return NULL;
  b->len--;
  return pst_buf_head(b);
}

/* Records a refusal found in a callback; returns what makes llhttp stop. */
static int reject(h1_t *h, int err, int status, const char *why) {
  h->cb_err = err;
  h->cb_status = status;
  h->why = why;
  return -1;
}

/* ---- list fields ---------------------------------------------------------- */

/* Next non-empty element of a comma-separated list (RFC 9110 5.6.1), OWS
 * trimmed. Returns 0 at the end. */
static int list_next(const char **p, const char *end, const char **tok, size_t *len) {
  while (*p < end) {
    const char *s = *p, *e = memchr(s, ',', (size_t)(end - s));
    if (e == NULL) e = end;
    *p = e < end ? e + 1 : end;
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (e > s) {
      *tok = s;
      *len = (size_t)(e - s);
      return 1;
    }
  }
  return 0;
}

static int tok_is(const char *tok, size_t len, const char *word) {
  return strlen(word) == len && strncasecmp(tok, word, len) == 0;
}

static int list_has(const pst_buf_t *b, const char *word) {
  const char *p = pst_buf_head(b), *end = p + b->len, *tok;
  size_t len;
  while (b->len > 0 && list_next(&p, end, &tok, &len)) {
    if (tok_is(tok, len, word)) return 1;
  }
  return 0;
}

static int list_append(pst_buf_t *b, const char *v, size_t n) {
  if (b->len > 0 && pst_buf_append(b, ", ", 2) != 0) return -ENOMEM;
  return pst_buf_append(b, v, n);
}

/* Removes the fields a Connection field names (RFC 9110 7.6.1) and notes the
 * options postern itself reads. */
static void connection_options(h1_t *h, int *close, int *keep_alive, int *upgrade) {
  const char *p = pst_buf_head(&h->conn), *end = p + h->conn.len, *tok;
  size_t len;
  *close = *keep_alive = *upgrade = 0;
  while (h->conn.len > 0 && list_next(&p, end, &tok, &len)) {
    if (tok_is(tok, len, "close")) {
      *close = 1;
    } else if (tok_is(tok, len, "keep-alive")) {
      *keep_alive = 1;
    } else if (tok_is(tok, len, "upgrade")) {
      *upgrade = 1;
    } else {
      pst_headers_del(&h->headers, tok, len);
    }
  }
}

/* ---- field collection ----------------------------------------------------- */

/* Expect (RFC 9110 10.1.1): 100-continue is the only expectation defined. */
static void expect_field(h1_t *h, const char *v, size_t n) {
  const char *end = v + n, *tok;
  size_t len;
  while (list_next(&v, end, &tok, &len)) {
    if (tok_is(tok, len, "100-continue")) {
      h->expect_continue = 1;
    } else {
      h->expect_other = 1;
    }
  }
}

/* Files one complete field: framing and connection fields are kept aside,
 * the others go to the header list. See h1_int.h. */
int pst_h1_field_done(h1_t *h) {
  const char *name = pst_buf_head(&h->name), *v = pst_buf_head(&h->value);
  size_t nlen = h->name.len, vlen = h->value.len;
  int rc = 0;
  /* llhttp skips OWS before a value but keeps it after (RFC 9112 5). */
  while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
  while (vlen > 0 && (v[0] == ' ' || v[0] == '\t')) {
    v++;
    vlen--;
  }
  if (++h->fields > PST_HTTP_MAX_FIELDS) {
    return reject(h, PST_ELIMIT, 431, "too many header fields");
  }
  if (tok_is(name, nlen, "content-length") || tok_is(name, nlen, "keep-alive") ||
      tok_is(name, nlen, "proxy-connection") || tok_is(name, nlen, "te") ||
      tok_is(name, nlen, "trailer")) {
    /* llhttp parses Content-Length; the others are hop-by-hop. */
  } else if (tok_is(name, nlen, "transfer-encoding")) {
    h->te_seen = 1;
    rc = list_append(&h->te, v, vlen);
  } else if (tok_is(name, nlen, "connection")) {
    rc = list_append(&h->conn, v, vlen);
  } else if (tok_is(name, nlen, "upgrade")) {
    rc = list_append(&h->upgrade, v, vlen);
  } else if (h->is_request && tok_is(name, nlen, "host")) {
    if (h->host_n++ == 0 && (h->host = pst_http_dup_n(v, vlen)) == NULL) rc = -ENOMEM;
  } else if (h->is_request && tok_is(name, nlen, "expect")) {
    expect_field(h, v, vlen);
  } else {
    rc = pst_headers_add(&h->headers, name, nlen, v, vlen);
  }
  buf_clear(&h->name);
  buf_clear(&h->value);
  return rc == 0 ? 0 : pst_h1_nomem(h);
}

/* ---- request heads -------------------------------------------------------- */

/* Whether s is a valid Host value or absolute-form authority without
 * userinfo: uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2). See
 * http.h. */
int pst_http_authority_ok(const char *s, size_t n) {
  size_t i = 0;
  if (n > 0 && s[0] == '[') {
    const char *e = memchr(s, ']', n);
    if (e == NULL || e == s + 1) return 0;
    for (i = 1; s + i < e; i++) {
      if (pst_h1_hexval((unsigned char)s[i]) < 0 && s[i] != ':' && s[i] != '.') return 0;
    }
    i++;
  } else {
    for (; i < n && s[i] != ':'; i++) {
      unsigned char c = (unsigned char)s[i];
      if (c == '%') {
        if (i + 2 >= n || pst_h1_hexval((unsigned char)s[i + 1]) < 0 ||
            pst_h1_hexval((unsigned char)s[i + 2]) < 0) {
          return 0;
        }
        i += 2;
      } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   strchr("-._~!$&'()*+,;=", c) != NULL)) {
        return 0;
      }
    }
    if (i == 0 && i < n) return 0; /* a port without a host */
  }
  if (i == n) return 1;
  if (s[i] != ':') return 0;
  for (i++; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
  }
  return 1;
}

/* Sets r->target, and r->authority for absolute-form (RFC 9112 3.2). */
static int request_target(h1_t *h, pst_http_request_t *r) {
  const char *t = buf_cstr(&h->line);
  if (t == NULL) return pst_h1_nomem(h);
  size_t n = h->line.len;
  if (n > 0 && (t[0] == '/' || (n == 1 && t[0] == '*'))) {
    /* origin-form or asterisk-form: the rules both front ends share. */
    if (!pst_http_target_ok(t, n, h->ll.method == HTTP_OPTIONS)) {
      return reject(h, PST_EPROTO, 400, t[0] == '*' ? "'*' target" : "bad request target");
    }
    r->target = pst_http_dup_n(t, n);
    return r->target != NULL ? 0 : pst_h1_nomem(h);
  }
  /* absolute-form (RFC 9112 3.2.2): the authority replaces Host; only the
   * http and https schemes make sense here. */
  const char *a = strstr(t, "://");
  if (a == NULL || !(tok_is(t, (size_t)(a - t), "http") || tok_is(t, (size_t)(a - t), "https"))) {
    return reject(h, PST_EPROTO, 400, "bad request target");
  }
  a += 3;
  size_t alen = strcspn(a, "/?");
  if (alen == 0 || !pst_http_authority_ok(a, alen)) {
    return reject(h, PST_EPROTO, 400, "bad authority in the request target");
  }
  const char *path = a + alen;
  size_t plen = strlen(path);
  r->authority = pst_http_dup_n(a, alen);
  r->target = malloc(plen + 2);
  if (r->authority == NULL || r->target == NULL) return pst_h1_nomem(h);
  /* An empty path is "/" (RFC 9112 3.2.1). */
  snprintf(r->target, plen + 2, "%s%s", path[0] == '/' ? "" : "/", path);
  if (!pst_http_target_ok(r->target, strlen(r->target), 0)) {
    return reject(h, PST_EPROTO, 400, "bad request target");
  }
  return 0;
}

/* Chooses the body framing of a request (RFC 9112 6.1, 6.3). */
static int request_framing(h1_t *h, pst_http_request_t *r) {
  if (h->te_seen) {
    const char *p = pst_buf_head(&h->te), *end = p + h->te.len, *tok, *last = NULL;
    size_t len, last_len = 0, count = 0, chunked = 0;
    if (h->ll.http_minor == 0) {
      /* RFC 9112 6.1: faulty framing; a proxy cannot fix it safely. */
      return reject(h, PST_EPROTO, 400, "Transfer-Encoding in an HTTP/1.0 request");
    }
    if (h->ll.flags & F_CONTENT_LENGTH) {
      /* RFC 9112 6.1, 6.3 item 3: the classic smuggling form. llhttp
       * refuses it too; this does not depend on it. */
      return reject(h, PST_EPROTO, 400, "Content-Length with Transfer-Encoding");
    }
    /* Empty elements are not counted (RFC 9110 5.6.1): "chunked," is
     * chunked. */
    while (h->te.len > 0 && list_next(&p, end, &tok, &len)) {
      count++;
      chunked += tok_is(tok, len, "chunked");
      last = tok;
      last_len = len;
    }
    /* RFC 9112 6.3 item 4: chunked not last -> 400; chunked twice is
     * forbidden (6.1); other codings are not implemented here -> 501. */
    if (last == NULL || !tok_is(last, last_len, "chunked") || chunked > 1) {
      return reject(h, PST_EPROTO, 400, "bad Transfer-Encoding");
    }
    if (count > 1) return reject(h, PST_EPROTO, 501, "transfer coding not implemented");
    r->body = PST_BODY_CHUNKED;
    /* llhttp, lenient about Transfer-Encoding (h1_parse.c), frames the
     * body by this flag: our reading of the field decides. */
    h->ll.flags |= F_CHUNKED;
  } else if (h->ll.flags & F_CONTENT_LENGTH) {
    r->body = PST_BODY_LENGTH;
    r->content_length = h->ll.content_length;
  }
  return 0;
}

/* Validates the request head and builds h->req. Returns llhttp's answer. See
 * h1_int.h. */
int pst_h1_request_head(h1_t *h) {
  llhttp_t *ll = &h->ll;
  int close, ka, conn_upgrade, rc;
  /* RFC 9110 15.6.6: only HTTP/1.0 and 1.1 are spoken here. */
  if (ll->http_major != 1 || ll->http_minor > 1) {
    return reject(h, PST_EPROTO, 505, "HTTP version not supported");
  }
  /* postern is a gateway, not a forward proxy: no tunnels (RFC 9110 9.3.6;
   * 501 rather than 405, which would have to list the backend's methods). */
  if (ll->method == HTTP_CONNECT) return reject(h, PST_EPROTO, 501, "CONNECT not supported");
  pst_http_request_t *r = h->req = calloc(1, sizeof(*r));
  if (r == NULL) return pst_h1_nomem(h);
  r->http_minor = ll->http_minor;
  if ((rc = request_target(h, r)) != 0) return rc;
  /* RFC 9112 3.2: exactly one valid Host on 1.1. */
  if (h->host_n > 1) return reject(h, PST_EPROTO, 400, "several Host fields");
  if (h->host_n == 0 && ll->http_minor == 1) return reject(h, PST_EPROTO, 400, "missing Host");
  if (h->host != NULL && !pst_http_authority_ok(h->host, strlen(h->host))) {
    return reject(h, PST_EPROTO, 400, "invalid Host");
  }
  if (r->authority == NULL && h->host != NULL && h->host[0] == '\0') {
    /* RFC 9110 4.2.2: an https URI with an empty host is invalid, and the
     * target URI here is https (RFC 9112 3.3). */
    return reject(h, PST_EPROTO, 400, "empty Host");
  }
  if (r->authority == NULL) {
    /* HTTP/1.0 without Host: the front end names the server (h1.c). */
    r->authority = h->host != NULL ? h->host : pst_http_dup_n("", 0);
    h->host = NULL;
    if (r->authority == NULL) return pst_h1_nomem(h);
  }
  if ((rc = request_framing(h, r)) != 0) return rc;
  if (h->expect_other) return reject(h, PST_EPROTO, 417, "unsupported expectation");
  /* RFC 9110 10.1.1: ignored on 1.0 and without content. */
  r->expect_continue =
      h->expect_continue && ll->http_minor == 1 &&
      (r->body == PST_BODY_CHUNKED || (r->body == PST_BODY_LENGTH && r->content_length > 0));
  connection_options(h, &close, &ka, &conn_upgrade);
  /* RFC 9110 7.8: Upgrade is ignored on 1.0. h2c is refused: a tunnel to a
   * backend speaking HTTP/2 would carry requests postern never sees
   * ("h2c smuggling"), and RFC 9113 3.1 deprecates it anyway. */
  if (conn_upgrade && ll->http_minor == 1 && h->upgrade.len > 0 && !list_has(&h->upgrade, "h2c")) {
    r->upgrade = 1;
    r->upgrade_proto = pst_http_dup_n(pst_buf_head(&h->upgrade), h->upgrade.len);
    if (r->upgrade_proto == NULL) return pst_h1_nomem(h);
  }
  r->method = pst_http_dup_n(llhttp_method_name((llhttp_method_t)ll->method),
                             strlen(llhttp_method_name((llhttp_method_t)ll->method)));
  if (r->method == NULL) return pst_h1_nomem(h);
  r->keep_alive = llhttp_should_keep_alive(ll) ? 1 : 0;
  r->headers = h->headers;
  h->headers = (pst_headers_t){0};
  h->keep_alive = r->keep_alive;
  h->body = r->body;
  h->pause = PAUSE_HEAD;
  return HPE_PAUSED;
}

/* ---- response heads ------------------------------------------------------- */

/* Chooses the body framing of a response (RFC 9112 6.3). */
static int response_framing(h1_t *h, pst_http_response_t *r, int bodiless) {
  llhttp_t *ll = &h->ll;
  if (bodiless) {
    /* HEAD and 304 may describe the representation's length (RFC 9110
     * 8.6): that is a plain field then, not framing. */
    if ((ll->flags & F_CONTENT_LENGTH) && r->status >= 200 && r->status != 204) {
      char v[24];
      int n = snprintf(v, sizeof(v), "%llu", (unsigned long long)ll->content_length);
      if (pst_headers_add(&r->headers, "content-length", 14, v, (size_t)n) != 0) {
        return pst_h1_nomem(h);
      }
    }
    r->body = PST_BODY_NONE;
  } else if (h->te_seen) {
    /* Only chunked can be passed on: another coding would reach the client
     * without its Transfer-Encoding (a hop-by-hop field). */
    const char *p = pst_buf_head(&h->te), *end = p + h->te.len, *tok;
    size_t len, count = 0, chunked = 0;
    while (h->te.len > 0 && list_next(&p, end, &tok, &len)) {
      count++;
      chunked += tok_is(tok, len, "chunked");
    }
    if (ll->http_minor == 0 || count != 1 || chunked != 1 || (ll->flags & F_CONTENT_LENGTH)) {
      return reject(h, PST_EPROTO, 502, "unsupported Transfer-Encoding");
    }
    r->body = PST_BODY_CHUNKED;
    ll->flags |= F_CHUNKED; /* as for requests */
  } else if (ll->flags & F_CONTENT_LENGTH) {
    r->body = PST_BODY_LENGTH;
    r->content_length = ll->content_length;
  } else {
    r->body = PST_BODY_UNTIL_CLOSE; /* RFC 9112 6.3 item 8 */
  }
  return 0;
}

/* Validates the response head and builds h->resp. Returns llhttp's answer:
 * 1 (no body: message complete follows at once) or HPE_PAUSED. See
 * h1_int.h. */
int pst_h1_response_head(h1_t *h) {
  llhttp_t *ll = &h->ll;
  int status = ll->status_code, close, ka, conn_upgrade, rc;
  if (ll->http_major != 1 || ll->http_minor > 1) {
    return reject(h, PST_EPROTO, 502, "response version not supported");
  }
  if (status < 100 || status > 599) return reject(h, PST_EPROTO, 502, "bad status code");
  pst_http_response_t *r = h->resp = calloc(1, sizeof(*r));
  if (r == NULL) return pst_h1_nomem(h);
  r->status = status;
  r->reason = pst_http_dup_n(pst_buf_head(&h->line), h->line.len);
  if (r->reason == NULL) return pst_h1_nomem(h);
  connection_options(h, &close, &ka, &conn_upgrade);
  r->headers = h->headers;
  h->headers = (pst_headers_t){0};
  if (status == 101) {
    /* RFC 9110 15.2.2: a 101 names the protocol in Upgrade. */
    if (h->upgrade.len == 0) return reject(h, PST_EPROTO, 502, "101 without Upgrade");
    r->upgrade = 1;
    r->upgrade_proto = pst_http_dup_n(pst_buf_head(&h->upgrade), h->upgrade.len);
    if (r->upgrade_proto == NULL) return pst_h1_nomem(h);
    h->pause = PAUSE_HEAD;
    return HPE_PAUSED;
  }
  /* RFC 9110 6.4.1: no content in 1xx, 204, 304, or a response to HEAD. */
  int bodiless = status < 200 || status == 204 || status == 304 || h->expect_head;
  if ((rc = response_framing(h, r, bodiless)) != 0) return rc;
  r->keep_alive = (ll->http_minor == 1 ? !close : ka) && r->body != PST_BODY_UNTIL_CLOSE;
  h->keep_alive = r->keep_alive;
  h->body = r->body;
  if (bodiless) return 1;
  h->pause = PAUSE_HEAD;
  return HPE_PAUSED;
}
