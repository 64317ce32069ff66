/* postern: HTTP/1.1 request and response parsers on top of llhttp.
 *
 * llhttp runs with no lenient flag, but the Debian build (8.1.0) is not
 * compiled with LLHTTP_STRICT_MODE, and in that mode it accepts things that
 * let two parsers disagree on where a message ends: a bare LF or a CR
 * followed by any byte as a line end (even after a chunk size), obs-fold,
 * whitespace before a colon, an empty field name, HTAB or doubled SP in the
 * request line. So every byte of a head, chunk line and trailer section is
 * first checked by our own scanners, and llhttp is fed only what they
 * passed: a malformed message is refused before any of it reaches a
 * callback. The scanners also find where a head or a chunked body ends; if
 * llhttp ever stops elsewhere, the message is refused too.
 *
 * llhttp is paused at the end of every head (so the head can be validated
 * and handed over with an exact byte count) and at the end of every message
 * (so that one request or response is handled per feed cycle). Header fields
 * are collected here because llhttp only reports them in pieces; framing,
 * Host, Connection, Upgrade and Expect are interpreted here (RFC 9112 and
 * RFC 9110) rather than trusted to llhttp's looser rules. */
#include <errno.h>
#include <llhttp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/common.h"
#include "postern/http.h"

/* A chunk-size line with its extensions is ignored, not stored, but it must
 * end: past this, 400 (an endless extension would hold a connection). */
#define CHUNK_LINE_MAX 4096

/* ---- chunked framing scan ------------------------------------------------ */

typedef enum {
  CK_SIZE0 = 0, /* at the start of a chunk-size line: a hex digit must come */
  CK_SIZE,      /* in the chunk size */
  CK_EXT,       /* in chunk extensions, ignored up to the CR */
  CK_SIZE_LF,   /* after the CR ending a chunk-size line */
  CK_DATA,      /* in chunk data, `left` bytes to go */
  CK_DATA_CR,   /* after chunk data: CR must come */
  CK_DATA_LF,   /* after that CR: LF must come */
  CK_TRAILER,   /* after the last chunk: trailer section, checked like a head */
} ck_state_t;

typedef struct {
  ck_state_t state;
  uint64_t left;        /* chunk size, then data bytes still to skip */
  size_t line;          /* bytes in the current chunk-size line */
  size_t trailer_bytes; /* bytes of the trailer section so far */
  pst_h1_scan_t trailer;
  const char *why; /* NULL or why the framing is refused */
  int limit;       /* why is a size limit (431), not a syntax error */
  int done;        /* the trailer section ended: the message is complete */
} chunk_scan_t;

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* One byte of a chunk-size line (RFC 9112 7.1). Returns NULL or why not. */
static const char *chunk_line_byte(chunk_scan_t *s, unsigned char c) {
  int v = hexval(c);
  if (++s->line > CHUNK_LINE_MAX) return "chunk line too long";
  switch (s->state) {
    case CK_SIZE0:
      if (v < 0) return "bad chunk size";
      s->left = (uint64_t)v;
      s->state = CK_SIZE;
      return NULL;
    case CK_SIZE:
      if (v >= 0) {
        if (s->left > (UINT64_MAX >> 4)) return "chunk size too large";
        s->left = s->left * 16 + (uint64_t)v;
      } else if (c == ';' || c == ' ' || c == '\t') {
        s->state = CK_EXT; /* llhttp checks the extension syntax */
      } else if (c == '\r') {
        s->state = CK_SIZE_LF;
      } else {
        return "bad chunk size";
      }
      return NULL;
    case CK_EXT:
      if (c == '\r') {
        s->state = CK_SIZE_LF;
      } else if (c == '\n' || (c < 0x20 && c != '\t') || c == 0x7f) {
        return "bad chunk extension";
      }
      return NULL;
    default: /* CK_SIZE_LF */
      if (c != '\n') return "CR not followed by LF";
      s->line = 0;
      if (s->left > 0) {
        s->state = CK_DATA;
      } else {
        s->state = CK_TRAILER;
        pst_h1_scan_init_trailers(&s->trailer);
      }
      return NULL;
  }
}

/* Like pst_h1_head_scan() for a chunked body: returns the bytes consumed,
 * stopping after the end of the message (s->done) or at a bad byte (s->why,
 * the return value is its offset). */
static size_t chunk_scan(chunk_scan_t *s, const char *p, size_t n, size_t max_trailer) {
  size_t i = 0;
  while (i < n && !s->done && s->why == NULL) {
    unsigned char c = (unsigned char)p[i];
    if (s->state == CK_DATA) {
      size_t k = n - i;
      if (k > s->left) k = (size_t)s->left;
      s->left -= k;
      i += k;
      if (s->left == 0) s->state = CK_DATA_CR;
    } else if (s->state == CK_DATA_CR || s->state == CK_DATA_LF) {
      if (c != (s->state == CK_DATA_CR ? '\r' : '\n')) {
        s->why = "chunk data not followed by CRLF";
        return i;
      }
      s->state = s->state == CK_DATA_CR ? CK_DATA_LF : CK_SIZE0;
      i++;
    } else if (s->state == CK_TRAILER) {
      /* At most one byte past the limit is scanned; the refusal then
       * points before that byte, so llhttp never sees the message end. */
      size_t room = max_trailer + 1 - s->trailer_bytes;
      size_t k = pst_h1_head_scan(&s->trailer, p + i, n - i < room ? n - i : room);
      s->trailer_bytes += k;
      if (s->trailer.why != NULL) {
        s->why = s->trailer.why;
        return i + k;
      }
      i += k;
      if (s->trailer_bytes > max_trailer) {
        s->why = "trailer section too large";
        s->limit = 1;
        return i - 1;
      }
      s->done = s->trailer.done;
    } else {
      s->why = chunk_line_byte(s, c);
      if (s->why != NULL) return i;
      i++;
    }
  }
  return i;
}

/* ---- parser state -------------------------------------------------------- */

typedef enum {
  PH_HEAD = 0, /* reading a head (or waiting for the first byte of one) */
  PH_BODY,     /* the head was handed over; reading the body */
  PH_CLOSED,   /* the last message on this connection ended: discard the rest */
  PH_UPGRADED, /* a 101 ended HTTP on this connection: consume nothing */
  PH_FAILED,   /* refused: every feed returns err */
} phase_t;

typedef enum {
  PAUSE_NONE = 0,
  PAUSE_HEAD, /* on_headers_complete: a head is ready to hand over */
  PAUSE_END,  /* on_message_complete */
  PAUSE_USER, /* a user callback returned nonzero */
} pause_t;

typedef struct {
  llhttp_t ll;
  llhttp_settings_t settings; /* must outlive ll (llhttp_init) */
  int is_request;
  size_t max_head;
  void *arg;
  int (*on_req_head)(void *arg, pst_http_request_t *req);
  int (*on_resp_head)(void *arg, pst_http_response_t *resp);
  int (*on_body)(void *arg, const char *data, size_t len);
  int (*on_end)(void *arg);

  phase_t phase;
  pause_t pause;         /* set by the callback that paused llhttp */
  int ll_paused;         /* llhttp is paused: resume before the next execute */
  int end_pending;       /* the message ended but its end was not handled yet */
  int user_rc;           /* what a user callback returned */
  int err, status;       /* the failure, once PH_FAILED */
  int cb_err, cb_status; /* a failure found inside a llhttp callback */
  const char *why;
  int nomem;

  /* Strict checks and limits of the current message. */
  pst_h1_scan_t scan;
  size_t head_bytes;
  chunk_scan_t ck;
  int chunked;
  int keep_alive;
  pst_body_kind_t body;
  int expect_head; /* response parser: the request was HEAD */
  int after_1xx;   /* response parser: a 1xx came, the final head is due */

  /* The head being collected (reset at message begin). */
  pst_buf_t name, value, line; /* line: request target or reason phrase */
  pst_headers_t headers;
  pst_buf_t te, conn, upgrade; /* list fields, combined with ", " */
  char *host;
  unsigned host_n, fields;
  int te_seen, expect_continue, expect_other;
  pst_http_request_t *req; /* built, not yet handed over */
  pst_http_response_t *resp;
} h1_t;

struct pst_h1_req_parser_s {
  h1_t h;
};

struct pst_h1_resp_parser_s {
  h1_t h;
};

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

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p == NULL) return NULL;
  if (n > 0) memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* Frees what the current head collected. */
static void head_reset(h1_t *h) {
  pst_buf_free(&h->name);
  pst_buf_free(&h->value);
  pst_buf_free(&h->line);
  pst_buf_free(&h->te);
  pst_buf_free(&h->conn);
  pst_buf_free(&h->upgrade);
  pst_headers_free(&h->headers);
  free(h->host);
  h->host = NULL;
  h->host_n = h->fields = 0;
  h->te_seen = h->expect_continue = h->expect_other = 0;
}

static void pending_free(h1_t *h) {
  pst_http_request_free(h->req);
  free(h->req);
  h->req = NULL;
  pst_http_response_free(h->resp);
  free(h->resp);
  h->resp = NULL;
}

/* Ready for the next message's head. */
static void next_message(h1_t *h) {
  pst_h1_scan_init(&h->scan, h->is_request);
  h->head_bytes = 0;
  h->chunked = 0;
  h->ck = (chunk_scan_t){0};
  h->phase = PH_HEAD;
  h->body = PST_BODY_NONE;
  h->keep_alive = 0;
}

/* Records a refusal found in a callback; returns what makes llhttp stop. */
static int reject(h1_t *h, int err, int status, const char *why) {
  h->cb_err = err;
  h->cb_status = status;
  h->why = why;
  return -1;
}

static int nomem(h1_t *h) {
  h->nomem = 1;
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

static int h1_on_message_begin(llhttp_t *ll) {
  h1_t *h = ll->data;
  head_reset(h);
  return 0;
}

static int h1_on_line(llhttp_t *ll, const char *at, size_t n) {
  h1_t *h = ll->data;
  return pst_buf_append(&h->line, at, n) == 0 ? 0 : nomem(h);
}

/* Field pieces: the pre-scan and the head limit bound what accumulates.
 * Trailer fields (after the head) are dropped. */
static int h1_on_field(llhttp_t *ll, const char *at, size_t n) {
  h1_t *h = ll->data;
  if (h->phase != PH_HEAD) return 0;
  return pst_buf_append(&h->name, at, n) == 0 ? 0 : nomem(h);
}

static int h1_on_value(llhttp_t *ll, const char *at, size_t n) {
  h1_t *h = ll->data;
  if (h->phase != PH_HEAD) return 0;
  return pst_buf_append(&h->value, at, n) == 0 ? 0 : nomem(h);
}

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
 * the others go to the header list. */
static int field_done(h1_t *h) {
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
    if (h->host_n++ == 0 && (h->host = dup_n(v, vlen)) == NULL) rc = -ENOMEM;
  } else if (h->is_request && tok_is(name, nlen, "expect")) {
    expect_field(h, v, vlen);
  } else {
    rc = pst_headers_add(&h->headers, name, nlen, v, vlen);
  }
  buf_clear(&h->name);
  buf_clear(&h->value);
  return rc == 0 ? 0 : nomem(h);
}

static int h1_on_value_complete(llhttp_t *ll) {
  h1_t *h = ll->data;
  if (h->phase != PH_HEAD) {
    return 0;
  }
  return field_done(h);
}

/* ---- request heads -------------------------------------------------------- */

/* Whether s is a valid Host value or absolute-form authority without
 * userinfo: uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2). */
static int authority_ok(const char *s, size_t n) {
  size_t i = 0;
  if (n > 0 && s[0] == '[') {
    const char *e = memchr(s, ']', n);
    if (e == NULL || e == s + 1) return 0;
    for (i = 1; s + i < e; i++) {
      if (hexval((unsigned char)s[i]) < 0 && s[i] != ':' && s[i] != '.') return 0;
    }
    i++;
  } else {
    for (; i < n && s[i] != ':'; i++) {
      unsigned char c = (unsigned char)s[i];
      if (c == '%') {
        if (i + 2 >= n || hexval((unsigned char)s[i + 1]) < 0 ||
            hexval((unsigned char)s[i + 2]) < 0) {
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
  if (t == NULL) return nomem(h);
  size_t n = h->line.len;
  if (n == 0 || memchr(t, '#', n) != NULL) return reject(h, PST_EPROTO, 400, "bad request target");
  if (t[0] == '/') {
    r->target = dup_n(t, n);
    return r->target != NULL ? 0 : nomem(h);
  }
  if (n == 1 && t[0] == '*') {
    /* RFC 9112 3.2.4: asterisk-form is for OPTIONS only. */
    if (h->ll.method != HTTP_OPTIONS) return reject(h, PST_EPROTO, 400, "'*' target");
    r->target = dup_n(t, 1);
    return r->target != NULL ? 0 : nomem(h);
  }
  /* absolute-form (RFC 9112 3.2.2): the authority replaces Host; only the
   * http and https schemes make sense here. */
  const char *a = strstr(t, "://");
  if (a == NULL || !(tok_is(t, (size_t)(a - t), "http") || tok_is(t, (size_t)(a - t), "https"))) {
    return reject(h, PST_EPROTO, 400, "bad request target");
  }
  a += 3;
  size_t alen = strcspn(a, "/?");
  if (alen == 0 || !authority_ok(a, alen)) {
    return reject(h, PST_EPROTO, 400, "bad authority in the request target");
  }
  const char *path = a + alen;
  size_t plen = strlen(path);
  r->authority = dup_n(a, alen);
  r->target = malloc(plen + 2);
  if (r->authority == NULL || r->target == NULL) return nomem(h);
  /* An empty path is "/" (RFC 9112 3.2.1). */
  snprintf(r->target, plen + 2, "%s%s", path[0] == '/' ? "" : "/", path);
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
  } else if (h->ll.flags & F_CONTENT_LENGTH) {
    r->body = PST_BODY_LENGTH;
    r->content_length = h->ll.content_length;
  }
  return 0;
}

/* Validates the request head and builds h->req. Returns llhttp's answer. */
static int request_head(h1_t *h) {
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
  if (r == NULL) return nomem(h);
  r->http_minor = ll->http_minor;
  if ((rc = request_target(h, r)) != 0) return rc;
  /* RFC 9112 3.2: exactly one valid Host on 1.1. */
  if (h->host_n > 1) return reject(h, PST_EPROTO, 400, "several Host fields");
  if (h->host_n == 0 && ll->http_minor == 1) return reject(h, PST_EPROTO, 400, "missing Host");
  if (h->host != NULL && !authority_ok(h->host, strlen(h->host))) {
    return reject(h, PST_EPROTO, 400, "invalid Host");
  }
  if (r->authority == NULL) {
    r->authority = h->host != NULL ? h->host : dup_n("", 0);
    h->host = NULL;
    if (r->authority == NULL) return nomem(h);
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
    r->upgrade_proto = dup_n(pst_buf_head(&h->upgrade), h->upgrade.len);
    if (r->upgrade_proto == NULL) return nomem(h);
  }
  r->method = dup_n(llhttp_method_name((llhttp_method_t)ll->method),
                    strlen(llhttp_method_name((llhttp_method_t)ll->method)));
  if (r->method == NULL) return nomem(h);
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
      if (pst_headers_add(&r->headers, "content-length", 14, v, (size_t)n) != 0) return nomem(h);
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
    if (ll->http_minor == 0 || count != 1 || chunked != 1) {
      return reject(h, PST_EPROTO, 502, "unsupported Transfer-Encoding");
    }
    r->body = PST_BODY_CHUNKED;
  } else if (ll->flags & F_CONTENT_LENGTH) {
    r->body = PST_BODY_LENGTH;
    r->content_length = ll->content_length;
  } else {
    r->body = PST_BODY_UNTIL_CLOSE; /* RFC 9112 6.3 item 8 */
  }
  return 0;
}

/* Validates the response head and builds h->resp. Returns llhttp's answer:
 * 1 (no body: message complete follows at once) or HPE_PAUSED. */
static int response_head(h1_t *h) {
  llhttp_t *ll = &h->ll;
  int status = ll->status_code, close, ka, conn_upgrade, rc;
  if (ll->http_major != 1 || ll->http_minor > 1) {
    return reject(h, PST_EPROTO, 502, "response version not supported");
  }
  if (status < 100 || status > 599) return reject(h, PST_EPROTO, 502, "bad status code");
  pst_http_response_t *r = h->resp = calloc(1, sizeof(*r));
  if (r == NULL) return nomem(h);
  r->status = status;
  r->reason = dup_n(pst_buf_head(&h->line), h->line.len);
  if (r->reason == NULL) return nomem(h);
  connection_options(h, &close, &ka, &conn_upgrade);
  r->headers = h->headers;
  h->headers = (pst_headers_t){0};
  if (status == 101) {
    /* RFC 9110 15.2.2: a 101 names the protocol in Upgrade. */
    if (h->upgrade.len == 0) return reject(h, PST_EPROTO, 502, "101 without Upgrade");
    r->upgrade = 1;
    r->upgrade_proto = dup_n(pst_buf_head(&h->upgrade), h->upgrade.len);
    if (r->upgrade_proto == NULL) return nomem(h);
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

/* ---- llhttp callbacks ----------------------------------------------------- */

static int h1_on_headers_complete(llhttp_t *ll) {
  h1_t *h = ll->data;
  return h->is_request ? request_head(h) : response_head(h);
}

static int h1_on_body(llhttp_t *ll, const char *at, size_t n) {
  h1_t *h = ll->data;
  if (h->on_body == NULL || n == 0) return 0;
  int rc = h->on_body(h->arg, at, n);
  if (rc == 0) return 0;
  /* llhttp resumes after this span: nothing is delivered twice. */
  h->user_rc = rc;
  h->pause = PAUSE_USER;
  return HPE_PAUSED;
}

static int h1_on_message_complete(llhttp_t *ll) {
  h1_t *h = ll->data;
  h->pause = PAUSE_END;
  return HPE_PAUSED;
}

static void h1_init(h1_t *h, int is_request, size_t max_head, void *arg) {
  h->is_request = is_request;
  h->max_head = max_head;
  h->arg = arg;
  llhttp_settings_init(&h->settings);
  h->settings.on_message_begin = h1_on_message_begin;
  if (is_request) {
    h->settings.on_url = h1_on_line;
  } else {
    h->settings.on_status = h1_on_line;
  }
  h->settings.on_header_field = h1_on_field;
  h->settings.on_header_value = h1_on_value;
  h->settings.on_header_value_complete = h1_on_value_complete;
  h->settings.on_headers_complete = h1_on_headers_complete;
  h->settings.on_body = h1_on_body;
  h->settings.on_message_complete = h1_on_message_complete;
  llhttp_init(&h->ll, is_request ? HTTP_REQUEST : HTTP_RESPONSE, &h->settings);
  h->ll.data = h;
  next_message(h);
}

static void h1_free(h1_t *h) {
  head_reset(h);
  pending_free(h);
}

/* ---- the feed loop -------------------------------------------------------- */

/* Marks the parser failed; returns err. */
static int fail(h1_t *h, int err, int status, const char *why) {
  h->phase = PH_FAILED;
  h->err = err;
  h->status = status;
  h->why = why;
  pending_free(h);
  head_reset(h);
  return err;
}

/* Maps a llhttp error (or a refusal from our callbacks) to a failure. */
static int fail_llhttp(h1_t *h, llhttp_errno_t e) {
  if (h->nomem) return fail(h, -ENOMEM, 500, "out of memory");
  if (h->cb_err != 0) return fail(h, h->cb_err, h->cb_status, h->why);
  const char *why = llhttp_get_error_reason(&h->ll);
  if (!h->is_request) return fail(h, PST_EPROTO, 502, why);
  /* llhttp has stored the version when it finds it unknown (HTTP/1.2,
   * HTTP/3.0); other version errors are syntax. PRI is the h2 preface. */
  if ((e == HPE_INVALID_VERSION && (h->ll.http_major != 1 || h->ll.http_minor > 1)) ||
      e == HPE_PAUSED_H2_UPGRADE) {
    return fail(h, PST_EPROTO, 505, "HTTP version not supported");
  }
  return fail(h, PST_EPROTO, 400, why != NULL ? why : "malformed request");
}

/* Hands the built head over. Sets the body phase first: the callee owns the
 * head as soon as it is called. */
static int deliver_head(h1_t *h) {
  if (h->req != NULL) {
    pst_http_request_t *r = h->req;
    h->req = NULL;
    if (h->on_req_head == NULL) {
      pst_http_request_free(r);
      free(r);
      return 0;
    }
    return h->on_req_head(h->arg, r);
  }
  if (h->resp != NULL) {
    pst_http_response_t *r = h->resp;
    h->resp = NULL;
    if (h->on_resp_head == NULL) {
      pst_http_response_free(r);
      free(r);
      return 0;
    }
    return h->on_resp_head(h->arg, r);
  }
  return 0;
}

/* The message ended and its head was handed over. For a 1xx, sets *go_on
 * (the final response follows); otherwise runs on_end and returns its
 * value, ready for the next message. */
static int end_message(h1_t *h, int *go_on) {
  int keep = h->keep_alive;
  h->end_pending = 0;
  *go_on = 0;
  if (!h->is_request && h->ll.status_code < 200) {
    h->after_1xx = 1;
    next_message(h);
    *go_on = 1;
    return 0;
  }
  h->expect_head = 0;
  h->after_1xx = 0;
  next_message(h);
  if (!keep) h->phase = PH_CLOSED;
  return h->on_end != NULL ? h->on_end(h->arg) : 0;
}

/* How many of n bytes to give llhttp now, after the strict scans; a
 * refusal found by them is returned through bad and limit. */
static size_t prescan(h1_t *h, const char *data, size_t n, const char **bad, int *limit) {
  *bad = NULL;
  *limit = 0;
  if (h->phase == PH_HEAD) {
    pst_h1_scan_t s = h->scan;
    size_t room = h->max_head + 1 - h->head_bytes;
    if (n > room) n = room;
    size_t k = pst_h1_head_scan(&s, data, n);
    if (s.why != NULL) {
      *bad = s.why;
      return k;
    }
    if (h->head_bytes + k > h->max_head) {
      /* One byte over: llhttp gets the bytes before it, which cannot hold
       * the end of the head, and then the refusal stands. */
      *bad = "head too large";
      *limit = 1;
      return k - 1;
    }
    return k;
  }
  if (h->phase == PH_BODY && h->chunked) {
    chunk_scan_t c = h->ck;
    size_t k = chunk_scan(&c, data, n, h->max_head);
    *bad = c.why;
    *limit = c.limit;
    return k;
  }
  return n;
}

/* Advances the strict scans over the n bytes llhttp used. */
static void commit_scan(h1_t *h, phase_t phase, const char *data, size_t n) {
  if (phase == PH_HEAD) {
    pst_h1_head_scan(&h->scan, data, n);
    h->head_bytes += n;
  } else if (phase == PH_BODY && h->chunked) {
    chunk_scan(&h->ck, data, n, h->max_head);
  }
}

/* What to do after llhttp paused. Returns 1 to go on parsing, else 0 and
 * the feed's return value in *rc. */
static int on_pause(h1_t *h, phase_t phase, int *rc) {
  int go_on = 0;
  *rc = 0;
  switch (h->pause) {
    case PAUSE_USER: *rc = h->user_rc; return 0;
    case PAUSE_HEAD:
      if (!h->scan.done) break;
      h->phase = PH_BODY;
      h->chunked = h->body == PST_BODY_CHUNKED;
      if (!h->is_request && h->resp != NULL && h->resp->upgrade) h->phase = PH_UPGRADED;
      *rc = deliver_head(h);
      if (h->phase == PH_UPGRADED) {
        /* A 101 ends the exchange: on_end follows its head, now or at the
         * next feed when on_head asked to stop. */
        if (*rc != 0) h->end_pending = 1;
        if (*rc == 0) *rc = h->on_end != NULL ? h->on_end(h->arg) : 0;
        return 0;
      }
      return *rc == 0;
    case PAUSE_END:
      if ((phase == PH_HEAD && !h->scan.done) || (phase == PH_BODY && h->chunked && !h->ck.done)) {
        break;
      }
      *rc = deliver_head(h); /* heads without body are handed over here */
      if (*rc != 0) {
        h->end_pending = 1;
        return 0;
      }
      *rc = end_message(h, &go_on);
      return go_on;
    default: break;
  }
  *rc = fail(h, PST_EPROTO, h->is_request ? 400 : 502, "llhttp and the framing checks disagree");
  return 0;
}

static int h1_feed(h1_t *h, const char *data, size_t len, size_t *consumed) {
  int rc = 0, go_on = 1;
  *consumed = 0;
  if (h->phase == PH_FAILED) return h->err;
  if (h->phase == PH_UPGRADED) {
    if (!h->end_pending) return 0;
    h->end_pending = 0;
    return h->on_end != NULL ? h->on_end(h->arg) : 0;
  }
  if (h->phase == PH_CLOSED) {
    *consumed = len; /* RFC 9112 9.6: nothing after the last message */
    return 0;
  }
  if (h->end_pending) {
    rc = end_message(h, &go_on);
    if (!go_on || h->phase == PH_CLOSED) return rc;
  }
  if (h->ll_paused) {
    llhttp_resume(&h->ll);
    h->ll_paused = 0;
  }
  for (;;) {
    const char *bad;
    int limit;
    phase_t phase = h->phase;
    size_t n = prescan(h, data, len, &bad, &limit);
    h->pause = PAUSE_NONE;
    llhttp_errno_t e = llhttp_execute(&h->ll, data, n);
    size_t used = e == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&h->ll) - data);
    if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) return fail_llhttp(h, e);
    commit_scan(h, phase, data, used);
    data += used;
    len -= used;
    *consumed += used;
    if (e == HPE_OK) {
      if (bad != NULL) {
        return limit ? fail(h, PST_ELIMIT, h->is_request ? 431 : 502, bad)
                     : fail(h, PST_EPROTO, h->is_request ? 400 : 502, bad);
      }
      if (len == 0) return 0;
      /* The scans saw the end of a head or body here; llhttp did not. The
       * HTTP/2 preface ("PRI * HTTP/2.0") is one such head: llhttp waits
       * for the "SM" line after it. */
      if (h->is_request && (h->ll.http_major != 1 || h->ll.http_minor > 1)) {
        return fail(h, PST_EPROTO, 505, "HTTP version not supported");
      }
      return fail(h, PST_EPROTO, h->is_request ? 400 : 502,
                  "llhttp and the framing checks disagree");
    }
    if (e == HPE_PAUSED_UPGRADE) {
      /* After an upgrade request the backend may still answer without
       * switching; until then the connection speaks HTTP/1.1. */
      llhttp_resume_after_upgrade(&h->ll);
      continue;
    }
    h->ll_paused = 1;
    if (!on_pause(h, phase, &rc)) return rc;
    llhttp_resume(&h->ll);
    h->ll_paused = 0;
  }
}

/* ---- public API ----------------------------------------------------------- */

/* Returns a request parser owned by the caller (free with
 * pst_h1_req_parser_free), or NULL when out of memory. cb is copied. */
pst_h1_req_parser_t *pst_h1_req_parser_new(const pst_h1_req_callbacks_t *cb, void *arg,
                                           size_t max_head_bytes) {
  pst_h1_req_parser_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  h1_init(&p->h, 1, max_head_bytes, arg);
  p->h.on_req_head = cb->on_head;
  p->h.on_body = cb->on_body;
  p->h.on_end = cb->on_end;
  return p;
}

/* Parses up to one request from len bytes (borrowed); see http.h for the
 * return values, *consumed and *status (either may be NULL). */
int pst_h1_req_feed(pst_h1_req_parser_t *p, const char *data, size_t len, size_t *consumed,
                    int *status) {
  size_t used_local;
  int rc = h1_feed(&p->h, data, len, consumed != NULL ? consumed : &used_local);
  if (status != NULL) *status = rc < 0 ? p->h.status : 0;
  return rc;
}

/* Static text saying why the parser failed, or NULL. */
const char *pst_h1_req_why(const pst_h1_req_parser_t *p) {
  return p->h.phase == PH_FAILED ? p->h.why : NULL;
}

/* Frees the parser and any head not handed over; NULL allowed. */
void pst_h1_req_parser_free(pst_h1_req_parser_t *p) {
  if (p == NULL) return;
  h1_free(&p->h);
  free(p);
}

/* Returns a response parser owned by the caller (free with
 * pst_h1_resp_parser_free), or NULL when out of memory. cb is copied. */
pst_h1_resp_parser_t *pst_h1_resp_parser_new(const pst_h1_resp_callbacks_t *cb, void *arg,
                                             size_t max_head_bytes) {
  pst_h1_resp_parser_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  h1_init(&p->h, 0, max_head_bytes, arg);
  p->h.on_resp_head = cb->on_head;
  p->h.on_body = cb->on_body;
  p->h.on_end = cb->on_end;
  return p;
}

/* Notes the method of the request whose response comes next (borrowed). */
void pst_h1_resp_expect(pst_h1_resp_parser_t *p, const char *method) {
  p->h.expect_head = method != NULL && strcmp(method, "HEAD") == 0;
}

/* Parses up to one response from len bytes (borrowed); see http.h. */
int pst_h1_resp_feed(pst_h1_resp_parser_t *p, const char *data, size_t len, size_t *consumed) {
  size_t used_local;
  return h1_feed(&p->h, data, len, consumed != NULL ? consumed : &used_local);
}

/* The backend closed: ends a body delimited by close (on_end's value),
 * 0 when idle, PST_EPROTO when a response was cut short. */
int pst_h1_resp_finish(pst_h1_resp_parser_t *p) {
  h1_t *h = &p->h;
  int go_on;
  switch (h->phase) {
    case PH_FAILED: return h->err;
    case PH_UPGRADED:
    case PH_CLOSED: return 0;
    case PH_BODY:
      if (h->body != PST_BODY_UNTIL_CLOSE) break;
      next_message(h);
      h->phase = PH_CLOSED;
      return h->on_end != NULL ? h->on_end(h->arg) : 0;
    case PH_HEAD:
      if (h->end_pending) {
        int rc = end_message(h, &go_on);
        if (!go_on) {
          h->phase = PH_CLOSED;
          return rc;
        }
      }
      /* Closing between responses is how an idle keep-alive connection ends;
       * after a 1xx or inside a head, the response was cut short. */
      if (h->head_bytes == 0 && !h->after_1xx) {
        h->phase = PH_CLOSED;
        return 0;
      }
      break;
  }
  return fail(h, PST_EPROTO, 502, "response cut short");
}

/* Static text saying why the parser failed, or NULL. */
const char *pst_h1_resp_why(const pst_h1_resp_parser_t *p) {
  return p->h.phase == PH_FAILED ? p->h.why : NULL;
}

/* Frees the parser and any head not handed over; NULL allowed. */
void pst_h1_resp_parser_free(pst_h1_resp_parser_t *p) {
  if (p == NULL) return;
  h1_free(&p->h);
  free(p);
}
