/* postern: HTTP/2 request streams (RFC 9113 8.1, 8.2, 8.3), for the front end
 * in h2.c.
 *
 * Each request stream has a record (h2_stream_t, h2_int.h) from its first
 * HEADERS frame until nghttp2 closes it. While the header block arrives, the
 * record collects the pseudo-fields, checks Host against :authority, joins
 * the cookie crumbs and fills the header list of the request; once the block
 * is complete, pst_h2_build_request() turns that into the pst_http_request_t
 * that stream.c forwards as HTTP/1.1. Nothing here does I/O or calls
 * nghttp2. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "h2_int.h"
#include "postern/common.h"
#include "postern/fl.h"
#include "postern/http.h"

/* ---- helpers ---------------------------------------------------------- */

static int name_is(const uint8_t *name, size_t len, const char *lit) {
  return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

/* ---- per-stream data ---------------------------------------------------- */

/* A record per request stream: kept per worker thread (fl.h). */
static _Thread_local pst_fl_t h2_stream_fl = PST_FL_INIT(sizeof(h2_stream_t));

/* See h2_int.h. The record is created on the request's first HEADERS frame
 * (h2_on_begin_headers) and freed when nghttp2 closes the stream, or with
 * the front end. */
h2_stream_t *pst_h2_stream_new(h2_front_t *h2, int32_t id) {
  h2_stream_t *st = pst_fl_get0(&h2_stream_fl);
  if (st == NULL) return NULL;
  st->req = pst_http_request_new();
  if (st->req == NULL) {
    pst_fl_put(&h2_stream_fl, st);
    return NULL;
  }
  st->h2 = h2;
  st->id = id;
  st->t_start_ns = uv_hrtime();
  st->next = h2->streams;
  if (h2->streams != NULL) h2->streams->prev = st;
  h2->streams = st;
  h2->n_streams++;
  return st;
}

/* Frees st->req (when it is still there: the exchange takes it over) and
 * sets it to NULL. */
static void h2_stream_free_req(h2_stream_t *st) {
  if (st->req == NULL) return;
  pst_http_request_del(st->req);
  st->req = NULL;
}

/* Unlinks and frees st; its exchange must be gone already. */
void pst_h2_stream_del(h2_front_t *h2, h2_stream_t *st) {
  *(st->prev != NULL ? &st->prev->next : &h2->streams) = st->next;
  if (st->next != NULL) st->next->prev = st->prev;
  h2->n_streams--;
  if (st->detached) h2->n_detached--;
  if (st->start_pending) h2->n_pending--;
  h2_stream_free_req(st);
  if (!st->names_moved) {
    free(st->method);
    free(st->path);
    free(st->authority);
  }
  pst_buf_free(&st->names);
  pst_buf_free(&st->cookie);
  h2->out_total -= st->out.len; /* see h2_out_count */
  pst_buf_free(&st->out);
  pst_fl_put(&h2_stream_fl, st);
}

/* ---- requests --------------------------------------------------------- */

/* Whether two authorities name the same origin, ignoring case and https's
 * default port. */
static int same_authority(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 4 && strcmp(a + la - 4, ":443") == 0) la -= 4;
  if (lb > 4 && strcmp(b + lb - 4, ":443") == 0) lb -= 4;
  return la == lb && strncasecmp(a, b, la) == 0;
}

/* Takes one request field. nghttp2 has validated it (RFC 9113 8.2, 8.3):
 * lower-case name, no CR/LF/NUL, pseudo-fields first, connection-specific
 * fields refused. Returns 0 or -ENOMEM. See h2_int.h. */
int pst_h2_add_field(h2_stream_t *st, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen) {
  if (name_is(name, nlen, ":scheme")) {
    /* RFC 9113 8.3.1: postern serves http and https URIs only; nghttp2
     * checks :path only for those, and an HTTP/1.1 request line has no
     * place for a scheme. Once checked, :scheme is dropped: every request
     * reached postern over TLS, which the backend learns from
     * X-Forwarded-Proto. */
    if (!((vlen == 4 && strncasecmp((const char *)value, "http", 4) == 0) ||
          (vlen == 5 && strncasecmp((const char *)value, "https", 5) == 0))) {
      st->error = H2_REQ_MALFORMED;
    }
    return 0;
  }
  if (nlen > 0 && name[0] == ':') {
    /* nghttp2 refuses :protocol; the others are kept. */
    char **dst = name_is(name, nlen, ":method")      ? &st->method
                 : name_is(name, nlen, ":path")      ? &st->path
                 : name_is(name, nlen, ":authority") ? &st->authority
                                                     : NULL;
    if (dst == NULL) return 0;
    const uint8_t *at = dst == &st->authority ? memchr(value, '@', vlen) : NULL;
    if (at != NULL) { /* RFC 9113 8.3.1: no userinfo; dropped should one come */
      vlen -= (size_t)(at + 1 - value);
      value = at + 1;
    }
    st->has_authority |= dst == &st->authority;
    free(*dst);
    *dst = pst_http_dup_n((const char *)value, vlen);
    return *dst != NULL ? 0 : -ENOMEM;
  }
  if (name_is(name, nlen, "host")) {
    /* Host is rebuilt from the authority when the request is written. */
    if (!st->has_authority) {
      if (st->authority != NULL) return 0; /* nghttp2 refuses a second Host */
      st->authority = pst_http_dup_n((const char *)value, vlen);
      return st->authority != NULL ? 0 : -ENOMEM;
    }
    char *host = pst_http_dup_n((const char *)value, vlen);
    if (host == NULL) return -ENOMEM;
    if (!same_authority(host, st->authority)) st->error = H2_REQ_MALFORMED;
    free(host);
    return 0;
  }
  if (name_is(name, nlen, "cookie")) {
    /* RFC 9113 8.2.3: crumbs are joined into one field for HTTP/1.1. */
    if (st->cookie.len > 0 && pst_buf_append(&st->cookie, "; ", 2) != 0) return -ENOMEM;
    return pst_buf_append(&st->cookie, value, vlen);
  }
  if (name_is(name, nlen, "content-length")) {
    /* nghttp2 checked that it is a number and will check it against the
     * DATA received (RFC 9113 8.1.1). */
    st->has_length = 1;
    st->req->content_length = strtoull((const char *)value, NULL, 10);
    return 0;
  }
  if (name_is(name, nlen, "expect")) {
    if (vlen == 12 && strncasecmp((const char *)value, "100-continue", 12) == 0) st->expect = 1;
    return 0;
  }
  if (pst_http_hop_by_hop((const char *)name, nlen)) return 0; /* te: trailers */
  return pst_headers_add(&st->req->headers, (const char *)name, nlen, (const char *)value, vlen);
}

/* Moves what the header block said into st->req. Returns 0 or -ENOMEM. See
 * h2_int.h. */
int pst_h2_build_request(h2_stream_t *st, int end_stream) {
  pst_http_request_t *req = st->req;
  if (st->cookie.len > 0 &&
      pst_headers_add(&req->headers, "cookie", 6, pst_buf_head(&st->cookie), st->cookie.len) != 0) {
    return -ENOMEM;
  }
  pst_buf_free(&st->cookie);
  /* The request takes the strings; st keeps copies for the access log in
   * one buffer (from the worker's free list, buf.c) rather than three more
   * allocations. */
  assert(!st->names_moved && st->method != NULL && st->path != NULL);
  size_t ml = strlen(st->method) + 1, pl = strlen(st->path) + 1;
  size_t al = st->authority != NULL ? strlen(st->authority) + 1 : 0;
  if (pst_buf_append(&st->names, st->method, ml) != 0 ||
      pst_buf_append(&st->names, st->path, pl) != 0 ||
      (al > 0 && pst_buf_append(&st->names, st->authority, al) != 0)) {
    return -ENOMEM;
  }
  char *authority = st->authority != NULL ? st->authority : pst_http_dup_n("", 0);
  if (authority == NULL) return -ENOMEM;
  req->method = st->method;
  req->target = st->path;
  req->authority = authority;
  char *copy = pst_buf_head(&st->names);
  st->method = copy;
  st->path = copy + ml;
  st->authority = al > 0 ? copy + ml + pl : NULL;
  st->names_moved = 1;
  req->http_minor = 1;
  req->keep_alive = 1;
  req->expect_continue = st->expect;
  /* RFC 9113 8.1: END_STREAM on HEADERS means no content; otherwise DATA
   * frames carry it, with or without a declared length. */
  req->body = end_stream ? PST_BODY_NONE : st->has_length ? PST_BODY_LENGTH : PST_BODY_STREAM;
  if (req->body != PST_BODY_LENGTH) req->content_length = 0;
  return 0;
}
