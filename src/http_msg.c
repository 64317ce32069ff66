/* postern: HTTP messages shared by the HTTP/1.1 and HTTP/2 sides: header
 * lists, the hop-by-hop table, the strict HTTP/1.1 head check that every
 * llhttp user runs before llhttp (see h1_parse.c for why), and writing heads
 * for backends (always HTTP/1.1) and for HTTP/1.x clients.
 *
 * The writers trust the message structs for meaning but not for bytes: a CR,
 * LF or NUL in any string would let one side's field become another header
 * or another request on the wire (header injection, request smuggling), so
 * every string is checked before it is written and the write is refused. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/common.h"
#include "postern/fl.h"
#include "postern/http.h"

/* Appends a string literal, its length counted by the compiler. */
#define APPEND_LIT(b, lit) pst_buf_append((b), (lit), sizeof(lit) - 1)

/* ---- header lists ------------------------------------------------------ */

/* See http.h. Copies exactly n bytes (not stopping at a NUL, unlike
 * strndup) so that a field's length stays what the parser measured. */
char *pst_http_dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p == NULL) return NULL;
  if (n > 0) memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* Header arrays start at HEADERS_MIN fields, which holds most messages'
 * heads; arrays of that size are kept per worker thread (fl.h), larger
 * ones grow with realloc. */
#define HEADERS_MIN 16
static _Thread_local pst_fl_t headers_fl = PST_FL_INIT(HEADERS_MIN * sizeof(pst_header_t));

/* Appends copies of name and value to h, which owns them. The name keeps
 * its case, which an HTTP/1.1 peer on the other side sees as sent (field
 * names are case-insensitive, RFC 9110 5.1; the h2 front end lower-cases
 * them, RFC 9113 8.2.1). Name and value share one allocation (the value
 * right after the name's NUL), freed through the name. Returns 0 or
 * -ENOMEM (h unchanged). */
int pst_headers_add(pst_headers_t *h, const char *name, size_t name_len, const char *value,
                    size_t value_len) {
  if (h->n == h->cap) {
    pst_header_t *v;
    size_t cap = h->cap ? h->cap * 2 : HEADERS_MIN;
    if (cap > SIZE_MAX / sizeof(*h->v)) return -ENOMEM;
    if (h->cap == 0) {
      v = pst_fl_get(&headers_fl);
    } else if (h->cap == HEADERS_MIN) {
      v = malloc(cap * sizeof(*v));
      if (v != NULL) {
        memcpy(v, h->v, h->n * sizeof(*v));
        pst_fl_put(&headers_fl, h->v);
      }
    } else {
      v = realloc(h->v, cap * sizeof(*v));
    }
    if (v == NULL) return -ENOMEM;
    h->v = v;
    h->cap = cap;
  }
  if (name_len > SIZE_MAX - 2 - value_len) return -ENOMEM;
  char *n = malloc(name_len + value_len + 2);
  if (n == NULL) return -ENOMEM;
  if (name_len > 0) memcpy(n, name, name_len);
  n[name_len] = '\0';
  char *val = n + name_len + 1;
  if (value_len > 0) memcpy(val, value, value_len);
  val[value_len] = '\0';
  h->v[h->n++] =
      (pst_header_t){.name = n, .value = val, .name_len = name_len, .value_len = value_len};
  h->bytes += name_len + value_len;
  return 0;
}

/* First value of name (any case) in h, owned by h; NULL when absent. */
const char *pst_headers_get(const pst_headers_t *h, const char *name) {
  size_t len = strlen(name);
  for (size_t i = 0; i < h->n; i++) {
    if (h->v[i].name_len == len && strncasecmp(h->v[i].name, name, len) == 0) return h->v[i].value;
  }
  return NULL;
}

/* Removes and frees every field called name (any case); returns how many. */
size_t pst_headers_del(pst_headers_t *h, const char *name, size_t name_len) {
  size_t j = 0, removed = 0;
  for (size_t i = 0; i < h->n; i++) {
    pst_header_t *f = &h->v[i];
    if (f->name_len == name_len && strncasecmp(f->name, name, name_len) == 0) {
      h->bytes -= f->name_len + f->value_len;
      free(f->name); /* and the value with it (pst_headers_add) */
      removed++;
      continue;
    }
    h->v[j++] = *f;
  }
  h->n = j;
  return removed;
}

/* Frees every field; h is empty and reusable afterwards. */
void pst_headers_free(pst_headers_t *h) {
  for (size_t i = 0; i < h->n; i++) free(h->v[i].name); /* and the value (pst_headers_add) */
  if (h->cap == HEADERS_MIN)
    pst_fl_put(&headers_fl, h->v);
  else
    free(h->v);
  *h = (pst_headers_t){0};
}

/* Frees r's members (not r itself) and zeroes it; NULL allowed. */
void pst_http_request_free(pst_http_request_t *r) {
  if (r == NULL) return;
  free(r->method);
  free(r->target);
  free(r->authority);
  free(r->upgrade_proto);
  pst_headers_free(&r->headers);
  *r = (pst_http_request_t){0};
}

/* Request structs are allocated and freed once per request: kept per
 * worker thread (fl.h). */
static _Thread_local pst_fl_t request_fl = PST_FL_INIT(sizeof(pst_http_request_t));

pst_http_request_t *pst_http_request_new(void) { return pst_fl_get0(&request_fl); }

void pst_http_request_del(pst_http_request_t *r) {
  if (r == NULL) return;
  pst_http_request_free(r);
  pst_fl_put(&request_fl, r);
}

/* Frees r's members (not r itself) and zeroes it; NULL allowed. */
void pst_http_response_free(pst_http_response_t *r) {
  if (r == NULL) return;
  free(r->reason);
  free(r->upgrade_proto);
  pst_headers_free(&r->headers);
  *r = (pst_http_response_t){0};
}

/* ---- request targets ----------------------------------------------------- */

/* RFC 3986 2.2, 2.3: the characters a URI is written with (unreserved,
 * reserved, and the "%" of pct-encoded), less "#": a fragment is never
 * part of a target (RFC 9110 7.1). What is left out (controls, space, DEL,
 * 0x80-0xFF, and " < > \ ^ ` { | }) has no meaning in a URI, and
 * recipients that repair it each in their own way (percent-encoding it,
 * cutting at it, taking "\" for "/") would each see another target. A
 * stray "%" is let through: its meaning is the backend's to decide. */
static int target_byte(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c != '\0' && strchr("-._~:/?[]@!$&'()*+,;=%", c) != NULL;
}

/* See http.h. Both front ends forward a request-target only in these two
 * forms (the HTTP/1.1 parser first turns absolute-form into origin-form). */
int pst_http_target_ok(const char *t, size_t n, int options) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    if (!target_byte((unsigned char)t[i])) return 0;
  }
  if (t[0] == '/') return 1;
  /* RFC 9112 3.2.4: asterisk-form is for OPTIONS only. */
  return n == 1 && t[0] == '*' && options;
}

/* ---- tables -------------------------------------------------------------- */

/* RFC 9110 7.6.1 names Connection, Proxy-Connection, Keep-Alive, TE,
 * Transfer-Encoding and Upgrade; Trailer goes too because postern drops
 * trailers, so announcing them would promise fields that never come. */
int pst_http_hop_by_hop(const char *name, size_t len) {
  static const char *const names[] = {"connection",        "keep-alive", "proxy-connection", "te",
                                      "transfer-encoding", "upgrade",    "trailer"};
  for (size_t i = 0; i < PST_ARRAY_SIZE(names); i++) {
    if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0) return 1;
  }
  return 0;
}

/* Standard reason phrase of status (static), "" when unknown. */
const char *pst_http_reason(int status) {
  static const struct {
    int status;
    const char *reason;
  } reasons[] = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {103, "Early Hints"},
      {200, "OK"},
      {201, "Created"},
      {202, "Accepted"},
      {203, "Non-Authoritative Information"},
      {204, "No Content"},
      {205, "Reset Content"},
      {206, "Partial Content"},
      {300, "Multiple Choices"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {303, "See Other"},
      {304, "Not Modified"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {406, "Not Acceptable"},
      {408, "Request Timeout"},
      {409, "Conflict"},
      {410, "Gone"},
      {411, "Length Required"},
      {412, "Precondition Failed"},
      {413, "Content Too Large"},
      {414, "URI Too Long"},
      {415, "Unsupported Media Type"},
      {416, "Range Not Satisfiable"},
      {417, "Expectation Failed"},
      {421, "Misdirected Request"},
      {422, "Unprocessable Content"},
      {425, "Too Early"},
      {426, "Upgrade Required"},
      {428, "Precondition Required"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"},
  };
  for (size_t i = 0; i < PST_ARRAY_SIZE(reasons); i++) {
    if (reasons[i].status == status) return reasons[i].reason;
  }
  return "";
}

/* ---- strict head scan ----------------------------------------------------- */

enum { EOL_MID = 0, EOL_CR = 1, EOL_START = 2 };

/* Prepares s for a new head (request: 1 for a request head). */
void pst_h1_scan_init(pst_h1_scan_t *s, int request) {
  *s = (pst_h1_scan_t){.request = request ? 1 : 0, .eol = EOL_START};
}

/* A trailer section is a head without its start line: at a line start, in
 * the field lines, so that an empty line ends it at once. */
void pst_h1_scan_init_trailers(pst_h1_scan_t *s) {
  *s = (pst_h1_scan_t){.eol = EOL_START, .line = 1, .started = 1, .in_name = 1};
}

/* The part of pst_h1_head_scan() for one byte that is not a line end.
 * Returns NULL or why the byte is refused. */
static const char *scan_byte(pst_h1_scan_t *s, unsigned char c) {
  /* RFC 9110 5.5: field values are VCHAR, obs-text, SP and HTAB; the start
   * line has no controls either (RFC 9112 3, 4). */
  if ((c < 0x20 && c != '\t') || c == 0x7f) return "control character in the head";
  if (s->eol == EOL_START) {
    if (c == ' ' || c == '\t') {
      return s->started ? "obsolete line folding" : "whitespace before the start line";
    }
    if (s->line > 0 && c == ':') return "empty field name";
    s->started = 1;
  }
  s->eol = EOL_MID;
  if (s->line == 0) {
    /* RFC 9112 3: method SP request-target SP HTTP-version, single SPs. */
    if (s->request && (c == '\t' || (c == ' ' && s->prev_sp))) {
      return "extra whitespace in the request line";
    }
    s->prev_sp = c == ' ';
  } else if (s->in_name) {
    if (c == ':') {
      s->in_name = 0;
    } else if (c == ' ' || c == '\t') {
      return "whitespace before a field's colon"; /* RFC 9112 5.1: MUST 400 */
    }
  }
  return NULL;
}

/* Checks n bytes of a head (see http.h): returns the bytes consumed,
 * stopping after the head's blank line (s->done) or at the first bad byte
 * (s->why). p is borrowed. */
size_t pst_h1_head_scan(pst_h1_scan_t *s, const char *p, size_t n) {
  if (s->why != NULL || s->done) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (s->eol == EOL_CR) {
      /* RFC 9112 2.2 lets a recipient take a bare CR or LF as a line end;
       * a proxy that does so can be told one thing while its backend hears
       * another, so only CRLF ends a line here. */
      if (c != '\n') {
        s->why = "CR not followed by LF";
        return i;
      }
      s->eol = EOL_START;
      if (s->blank && !s->started) continue; /* empty lines before the start line */
      if (s->blank) {
        s->done = 1;
        return i + 1;
      }
      s->line = 1;
      s->in_name = 1;
      continue;
    }
    if (c == '\r') {
      if (s->eol != EOL_START && s->line > 0 && s->in_name) {
        s->why = "field line without a colon";
        return i;
      }
      s->blank = s->eol == EOL_START;
      s->eol = EOL_CR;
      continue;
    }
    if (c == '\n') {
      s->why = "LF not preceded by CR";
      return i;
    }
    s->why = scan_byte(s, c);
    if (s->why != NULL) return i;
  }
  return n;
}

/* ---- writing helpers ------------------------------------------------------ */

/* Whether n bytes can be written inside a field line: no CR, LF or NUL. */
static int text_ok(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  }
  return 1;
}

static int str_ok(const char *s) { return s == NULL || text_ok(s, strlen(s)); }

/* A token for a request line: non-empty, no whitespace or line breaks. */
static int word_ok(const char *s) {
  if (s == NULL || s[0] == '\0') return 0;
  for (const char *c = s; *c != '\0'; c++) {
    if (*c == ' ' || *c == '\t' || *c == '\r' || *c == '\n') return 0;
  }
  return 1;
}

static int name_is(const pst_header_t *f, const char *name) {
  return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

static int headers_ok(const pst_headers_t *h) {
  for (size_t i = 0; i < h->n; i++) {
    const pst_header_t *f = &h->v[i];
    if (f->name_len == 0 || !text_ok(f->name, f->name_len) || !text_ok(f->value, f->value_len) ||
        memchr(f->name, ':', f->name_len) != NULL || memchr(f->name, ' ', f->name_len) != NULL) {
      return 0;
    }
  }
  return 1;
}

static int field(pst_buf_t *out, const pst_header_t *f) {
  int rc = pst_buf_append(out, f->name, f->name_len);
  if (rc == 0) rc = APPEND_LIT(out, ": ");
  if (rc == 0) rc = pst_buf_append(out, f->value, f->value_len);
  if (rc == 0) rc = APPEND_LIT(out, "\r\n");
  return rc;
}

/* Appends the strings given, up to a NULL: the head writers' pieces are
 * plain text, and appending them costs a fraction of formatting them. */
static int append_all(pst_buf_t *out, ...) {
  va_list ap;
  va_start(ap, out);
  int rc = 0;
  for (const char *p = va_arg(ap, const char *); rc == 0 && p != NULL;
       p = va_arg(ap, const char *)) {
    rc = pst_buf_append(out, p, strlen(p));
  }
  va_end(ap);
  return rc;
}

/* Appends "Content-Length: n\r\n". */
static int content_length(pst_buf_t *out, uint64_t n) {
  char digits[24];
  size_t i = sizeof(digits);
  do {
    digits[--i] = (char)('0' + n % 10);
    n /= 10;
  } while (n > 0);
  int rc = APPEND_LIT(out, "Content-Length: ");
  if (rc == 0) rc = pst_buf_append(out, digits + i, sizeof(digits) - i);
  if (rc == 0) rc = APPEND_LIT(out, "\r\n");
  return rc;
}

/* Appends "name: v1, v2, ..., extra\r\n" from every field called name, then
 * extra (NULL: none), the combination RFC 9110 5.3 allows for list fields. */
static int merged(pst_buf_t *out, const pst_headers_t *h, const char *name, const char *extra) {
  int rc = pst_buf_append(out, name, strlen(name));
  if (rc == 0) rc = APPEND_LIT(out, ": ");
  const char *sep = "";
  for (size_t i = 0; rc == 0 && i < h->n; i++) {
    if (!name_is(&h->v[i], name) || h->v[i].value_len == 0) continue;
    rc = pst_buf_append(out, sep, strlen(sep));
    if (rc == 0) rc = pst_buf_append(out, h->v[i].value, h->v[i].value_len);
    sep = ", ";
  }
  if (rc == 0 && extra != NULL) rc = pst_buf_append(out, sep, strlen(sep));
  if (rc == 0 && extra != NULL) rc = pst_buf_append(out, extra, strlen(extra));
  if (rc == 0) rc = APPEND_LIT(out, "\r\n");
  return rc;
}

/* Whether c may appear in a token (RFC 9110 5.6.2). See http.h. */
int pst_http_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Appends s as an RFC 7239 value: a token as is, anything else quoted
 * (RFC 9110 5.6.4), with quote and backslash escaped. */
static int fwd_value(pst_buf_t *out, const char *s) {
  int token = s[0] != '\0';
  for (const char *c = s; *c != '\0'; c++) token = token && pst_http_tchar((unsigned char)*c);
  if (token) return pst_buf_append(out, s, strlen(s));
  int rc = APPEND_LIT(out, "\"");
  for (const char *c = s; rc == 0 && *c != '\0'; c++) {
    if (*c == '"' || *c == '\\') rc = APPEND_LIT(out, "\\");
    if (rc == 0) rc = pst_buf_append(out, c, 1);
  }
  if (rc == 0) rc = APPEND_LIT(out, "\"");
  return rc;
}

/* Appends the Forwarded field: received elements, then ours (RFC 7239 4
 * and 5). An IPv6 address is a node name with brackets, so it must be
 * quoted: for="[2001:db8::1]" (RFC 7239 6). */
static int forwarded(pst_buf_t *out, const pst_headers_t *h, const char *ip,
                     const char *authority) {
  int rc = APPEND_LIT(out, "Forwarded: ");
  const char *sep = "";
  for (size_t i = 0; rc == 0 && i < h->n; i++) {
    if (!name_is(&h->v[i], "forwarded") || h->v[i].value_len == 0) continue;
    rc = pst_buf_append(out, sep, strlen(sep));
    if (rc == 0) rc = pst_buf_append(out, h->v[i].value, h->v[i].value_len);
    sep = ", ";
  }
  if (rc == 0) rc = append_all(out, sep, "for=", NULL);
  if (rc == 0 && ip == NULL) rc = APPEND_LIT(out, "unknown");
  if (rc == 0 && ip != NULL && strchr(ip, ':') != NULL)
    rc = append_all(out, "\"[", ip, "]\"", NULL);
  if (rc == 0 && ip != NULL && strchr(ip, ':') == NULL) rc = fwd_value(out, ip);
  if (rc == 0) rc = APPEND_LIT(out, ";proto=https");
  if (rc == 0 && authority[0] != '\0') {
    rc = APPEND_LIT(out, ";host=");
    if (rc == 0) rc = fwd_value(out, authority);
  }
  if (rc == 0) rc = APPEND_LIT(out, "\r\n");
  return rc;
}

/* Whether the request writer replaces or drops a received field. */
static int request_skips(const pst_header_t *f, pst_forwarded_t mode) {
  /* Client-Cert and Client-Cert-Chain: only postern may say what
   * certificate the client presented (RFC 9440 4: a proxy removes them
   * from requests before adding its own). */
  static const char *const always[] = {"host",       "content-length", "expect",
                                       "early-data", "client-cert",    "client-cert-chain"};
  for (size_t i = 0; i < PST_ARRAY_SIZE(always); i++) {
    if (name_is(f, always[i])) return 1;
  }
  if (pst_http_hop_by_hop(f->name, f->name_len)) return 1;
  if (mode == PST_FORWARDED_RFC7239) return name_is(f, "forwarded");
  return name_is(f, "x-forwarded-for") || name_is(f, "x-forwarded-proto") ||
         name_is(f, "x-forwarded-host");
}

/* RFC 9110 8.6: a user agent should send Content-Length for a method that
 * gives content a meaning even when it is empty; many servers answer 411
 * otherwise. */
static int wants_zero_length(const char *method) {
  return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
}

static int request_framing(pst_buf_t *out, const pst_http_request_t *req) {
  switch (req->body) {
    case PST_BODY_LENGTH: return content_length(out, req->content_length);
    case PST_BODY_CHUNKED:
    case PST_BODY_STREAM: return APPEND_LIT(out, "Transfer-Encoding: chunked\r\n");
    case PST_BODY_UNTIL_CLOSE: /* not a request framing; never produced */ return PST_EPROTO;
    case PST_BODY_NONE:
    default: return wants_zero_length(req->method) ? APPEND_LIT(out, "Content-Length: 0\r\n") : 0;
  }
}

static int request_check(const pst_http_request_t *req, const char *authority) {
  if (!word_ok(req->method) || !word_ok(req->target) || !str_ok(authority) ||
      !headers_ok(&req->headers)) {
    return PST_EPROTO;
  }
  /* The Upgrade value may be a list ("a, b"), so spaces are fine there. */
  if (req->upgrade && (req->upgrade_proto == NULL || req->upgrade_proto[0] == '\0' ||
                       !str_ok(req->upgrade_proto))) {
    return PST_EPROTO;
  }
  return 0;
}

/* Appends req's head for a backend to out (see http.h for every field).
 * req and fwd are borrowed. Returns 0, -ENOMEM or PST_EPROTO; out is
 * unchanged on error. */
int pst_http_request_write(const pst_http_request_t *req, const pst_forward_info_t *fwd,
                           pst_buf_t *out) {
  const char *authority = req->authority;
  if (authority == NULL) authority = pst_headers_get(&req->headers, "host");
  if (authority == NULL) authority = "";
  int rc = request_check(req, authority);
  if (rc != 0 || (fwd->client_ip != NULL && !word_ok(fwd->client_ip)) ||
      !str_ok(fwd->client_cert) || !str_ok(fwd->client_cert_chain)) {
    return PST_EPROTO;
  }
  size_t saved = out->len;
  rc = append_all(out, req->method, " ", req->target, " HTTP/1.1\r\nHost: ", authority, "\r\n",
                  NULL);
  for (size_t i = 0; rc == 0 && i < req->headers.n; i++) {
    if (!request_skips(&req->headers.v[i], fwd->mode)) rc = field(out, &req->headers.v[i]);
  }
  if (rc == 0 && fwd->mode == PST_FORWARDED_RFC7239) {
    rc = forwarded(out, &req->headers, fwd->client_ip, authority);
  } else if (rc == 0) {
    /* The received chain is kept and the peer postern saw is appended: only
     * that last entry is known to be true. Proto and Host are postern's own
     * facts, so whatever the client claimed is replaced. */
    rc = merged(out, &req->headers, "X-Forwarded-For",
                fwd->client_ip != NULL ? fwd->client_ip : "unknown");
    if (rc == 0) rc = APPEND_LIT(out, "X-Forwarded-Proto: https\r\n");
    if (rc == 0 && authority[0] != '\0')
      rc = append_all(out, "X-Forwarded-Host: ", authority, "\r\n", NULL);
  }
  if (rc == 0 && fwd->early_data) rc = APPEND_LIT(out, "Early-Data: 1\r\n");
  if (rc == 0 && fwd->client_cert != NULL) {
    rc = append_all(out, "Client-Cert: ", fwd->client_cert, "\r\n", NULL);
  }
  if (rc == 0 && fwd->client_cert_chain != NULL) {
    rc = append_all(out, "Client-Cert-Chain: ", fwd->client_cert_chain, "\r\n", NULL);
  }
  if (rc == 0) rc = request_framing(out, req);
  if (rc == 0 && req->upgrade) {
    rc = append_all(out, "Connection: upgrade\r\nUpgrade: ", req->upgrade_proto, "\r\n", NULL);
  }
  if (rc == 0 && req->expect_continue) rc = APPEND_LIT(out, "Expect: 100-continue\r\n");
  if (rc == 0) rc = APPEND_LIT(out, "\r\n");
  /* Appends never drop the first `saved` bytes, so this undoes them. */
  if (rc != 0) out->len = saved;
  return rc;
}

/* ---- responses ------------------------------------------------------------ */

/* 1xx, 204 and 304 never have content (RFC 9110 6.4.1). */
static int status_bodiless(int status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

static int unknown_length(pst_body_kind_t body) {
  return body == PST_BODY_CHUNKED || body == PST_BODY_STREAM || body == PST_BODY_UNTIL_CLOSE;
}

/* 1 when the body can only end by closing the client connection. */
int pst_http_response_needs_close(const pst_http_response_t *resp, int client_minor,
                                  int head_request) {
  /* RFC 9112 6.1: no Transfer-Encoding towards an HTTP/1.0 client. */
  return !head_request && !status_bodiless(resp->status) && client_minor == 0 &&
         unknown_length(resp->body);
}

/* Whether the response keeps a content-length field of its own: HEAD and
 * 304 responses may describe the representation they did not send. */
static int keeps_own_length(const pst_http_response_t *resp, int head_request) {
  return resp->status == 304 || (head_request && resp->body == PST_BODY_NONE);
}

/* Appends the framing fields; sets *chunked. */
static int response_framing(pst_buf_t *out, const pst_http_response_t *resp, int client_minor,
                            int head_request, int *chunked) {
  *chunked = 0;
  if (resp->status == 204 || resp->status == 304 || resp->status < 200) return 0;
  if (head_request) {
    /* RFC 9110 9.3.2: the same fields as for GET, but never a body. */
    if (resp->body == PST_BODY_LENGTH) {
      return content_length(out, resp->content_length);
    }
    return 0;
  }
  switch (resp->body) {
    case PST_BODY_LENGTH: return content_length(out, resp->content_length);
    case PST_BODY_CHUNKED:
    case PST_BODY_STREAM:
    case PST_BODY_UNTIL_CLOSE:
      if (client_minor == 0) return 0; /* delimited by close */
      *chunked = 1;
      return APPEND_LIT(out, "Transfer-Encoding: chunked\r\n");
    case PST_BODY_NONE:
    default: return APPEND_LIT(out, "Content-Length: 0\r\n");
  }
}

/* Appends resp's head for an HTTP/1.x client to out and sets *chunked
 * (see http.h). resp is borrowed. Returns 0, -ENOMEM or PST_EPROTO; out is
 * unchanged on error. */
int pst_http_response_write(const pst_http_response_t *resp, int client_minor, int keep_alive,
                            int head_request, pst_buf_t *out, int *chunked) {
  int status = resp->status;
  const char *reason =
      resp->reason != NULL && resp->reason[0] != '\0' ? resp->reason : pst_http_reason(status);
  *chunked = 0;
  if (status < 100 || status > 999 || !str_ok(reason) || !headers_ok(&resp->headers) ||
      (status == 101 && (resp->upgrade_proto == NULL || !str_ok(resp->upgrade_proto)))) {
    return PST_EPROTO;
  }
  int own_length = keeps_own_length(resp, head_request);
  size_t saved = out->len;
  /* status is 100..999 (checked above): three digits. */
  char code[5] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                  (char)('0' + status % 10), ' ', '\0'};
  int rc = append_all(out, "HTTP/1.1 ", code, reason, "\r\n", NULL);
  for (size_t i = 0; rc == 0 && i < resp->headers.n; i++) {
    const pst_header_t *f = &resp->headers.v[i];
    if (pst_http_hop_by_hop(f->name, f->name_len)) continue;
    if (name_is(f, "content-length") && !own_length) continue;
    rc = field(out, f);
  }
  if (rc == 0 && status == 101) {
    rc = append_all(out, "Connection: upgrade\r\nUpgrade: ", resp->upgrade_proto, "\r\n", NULL);
  } else if (rc == 0 && status >= 200) {
    rc = response_framing(out, resp, client_minor, head_request, chunked);
    int close = !keep_alive || pst_http_response_needs_close(resp, client_minor, head_request);
    if (rc == 0 && close) rc = APPEND_LIT(out, "Connection: close\r\n");
    if (rc == 0 && !close && client_minor == 0) rc = APPEND_LIT(out, "Connection: keep-alive\r\n");
  }
  if (rc == 0) rc = APPEND_LIT(out, "\r\n");
  if (rc != 0) {
    out->len = saved;
    *chunked = 0;
  }
  return rc;
}

/* Appends one chunk of len bytes (len 0: the last chunk). Returns 0 or
 * -ENOMEM (out unchanged). */
int pst_http_chunk(pst_buf_t *out, const char *data, size_t len) {
  size_t saved = out->len;
  int rc = len == 0 ? APPEND_LIT(out, "0\r\n\r\n") : pst_buf_printf(out, "%zx\r\n", len);
  if (rc == 0 && len > 0) rc = pst_buf_append(out, data, len);
  if (rc == 0 && len > 0) rc = APPEND_LIT(out, "\r\n");
  if (rc != 0) out->len = saved;
  return rc;
}

/* Appends a complete text/plain response generated by postern (body NULL:
 * the status line's text). Returns 0 or -ENOMEM (out unchanged). */
int pst_http_error_write(pst_buf_t *out, int status, const char *body, int close) {
  const char *reason = pst_http_reason(status);
  char dflt[96];
  if (body == NULL) {
    snprintf(dflt, sizeof(dflt), "%d %s\n", status, reason);
    body = dflt;
  }
  size_t saved = out->len;
  size_t n = strlen(body);
  int rc = pst_buf_printf(out,
                          "HTTP/1.1 %d %s\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n"
                          "Content-Length: %zu\r\n"
                          "%s\r\n",
                          status, reason, n, close ? "Connection: close\r\n" : "");
  if (rc == 0) rc = pst_buf_append(out, body, n);
  if (rc != 0) out->len = saved;
  return rc;
}
