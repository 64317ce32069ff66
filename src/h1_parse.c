/* postern: HTTP/1.1 request and response parsers on top of llhttp.
 *
 * llhttp runs with one lenient flag only (see the end of this comment), but
 * the Debian build (8.1.0) is not compiled with LLHTTP_STRICT_MODE, and in
 * that mode it accepts things that let two parsers disagree on where a
 * message ends: a bare LF or a CR followed by any byte as a line end (even
 * after a chunk size), obs-fold, whitespace before a colon, an empty field
 * name, HTAB or doubled SP in the request line. So every byte of a head,
 * chunk line and trailer section is first checked by our own scanners, and
 * llhttp is fed only what they passed: a malformed message is refused
 * before any of it reaches a callback. The scanners also find where a head
 * or a chunked body ends; if llhttp ever stops elsewhere, the message is
 * refused too.
 *
 * llhttp is paused at the end of every head (so the head can be validated
 * and handed over with an exact byte count) and at the end of every message
 * (so that one request or response is handled per feed cycle). Header fields
 * are collected in h1_head.c because llhttp only reports them in pieces;
 * framing, Host, Connection, Upgrade and Expect are interpreted there
 * (RFC 9112 and RFC 9110) rather than trusted to llhttp's looser rules.
 * h1_int.h holds the parser state the two files share.
 *
 * Where llhttp 8.1 is stricter than the RFCs, it is kept out of the
 * decision rather than obeyed. Chunk extensions are checked here and never
 * shown to it (chunk_hidden). Transfer-Encoding is read by h1_head.c, with
 * empty list elements ignored as RFC 9110 5.6.1 asks ("chunked,"), so
 * llhttp's own check of it is turned off (its lenient Transfer-Encoding
 * flag) and h1_head.c tells it the body is chunked; Content-Length with
 * Transfer-Encoding is still refused by both. */
#include <errno.h>
#include <llhttp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h1_int.h"
#include "postern/common.h"
#include "postern/http.h"

/* A chunk-size line with its extensions is ignored, not stored, but it must
 * end: past this, 400 (an endless extension would hold a connection). */
#define CHUNK_LINE_MAX 4096

/* ---- chunked framing scan ------------------------------------------------ */

/* See h1_int.h. */
int pst_h1_hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* One byte of chunk extensions (RFC 9112 7.1.1; the grammar is in
 * h1_int.h). postern checks them and drops them: llhttp 8.1 refuses BWS
 * around ";" and "=", a quoted-pair, and an extension after a valued one,
 * all valid, so it never sees them (chunk_hidden). Returns NULL or why the
 * byte is refused. */
static const char *chunk_ext_byte(h1_chunk_scan_t *s, unsigned char c) {
  int ws = c == ' ' || c == '\t';
  switch (s->ext) {
    case EXT_BWS:
      if (c == ';') s->ext = EXT_NAME0;
      return c == ';' || ws ? NULL : "bad chunk extension";
    case EXT_NAME0:
      if (pst_http_tchar(c)) s->ext = EXT_NAME;
      return pst_http_tchar(c) || ws ? NULL : "bad chunk extension";
    case EXT_NAME_BWS:
      if (c == '=') s->ext = EXT_VAL0;
      if (c == ';') s->ext = EXT_NAME0;
      return c == '=' || c == ';' || ws ? NULL : "bad chunk extension";
    case EXT_VAL0:
      if (c == '"') s->ext = EXT_QUOTED;
      if (pst_http_tchar(c)) s->ext = EXT_TOKEN;
      return c == '"' || pst_http_tchar(c) || ws ? NULL : "bad chunk extension";
    case EXT_QUOTED:
      /* qdtext: HTAB, SP, VCHAR but '"' and '\\', obs-text (RFC 9110 5.6.4). */
      if (c == '"') s->ext = EXT_END;
      if (c == '\\') s->ext = EXT_QPAIR;
      return (c >= 0x20 || c == '\t') && c != 0x7f ? NULL : "bad chunk extension";
    case EXT_QPAIR:
      s->ext = EXT_QUOTED;
      return (c >= 0x20 || c == '\t') && c != 0x7f ? NULL : "bad chunk extension";
    default: /* EXT_NAME, EXT_TOKEN, EXT_END: the item may end here */
      if (c == '\r') {
        s->state = CK_SIZE_LF;
      } else if (c == ';') {
        s->ext = EXT_NAME0;
      } else if (ws) {
        s->ext = s->ext == EXT_NAME ? EXT_NAME_BWS : EXT_BWS;
      } else if (s->ext == EXT_NAME && c == '=') {
        s->ext = EXT_VAL0;
      } else if (s->ext == EXT_END || !pst_http_tchar(c)) {
        return "bad chunk extension";
      }
      return NULL;
  }
}

/* One byte of a chunk-size line (RFC 9112 7.1). Returns NULL or why not. */
static const char *chunk_line_byte(h1_chunk_scan_t *s, unsigned char c) {
  int v = pst_h1_hexval(c);
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
        s->state = CK_EXT;
        s->ext = c == ';' ? EXT_NAME0 : EXT_BWS;
      } else if (c == '\r') {
        s->state = CK_SIZE_LF;
      } else {
        return "bad chunk size";
      }
      return NULL;
    case CK_EXT: return chunk_ext_byte(s, c);
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

/* Whether byte c, met in state s, is kept from llhttp: the chunk
 * extensions, from the BWS or ";" after the size up to the CR before LF.
 * llhttp sees "size CRLF" and parses the rest of the framing as usual. */
static int chunk_hidden(const h1_chunk_scan_t *s, unsigned char c) {
  if (s->state == CK_SIZE) return c == ';' || c == ' ' || c == '\t';
  return s->state == CK_EXT && c != '\r';
}

/* Like pst_h1_head_scan() for a chunked body: returns the bytes consumed,
 * stopping after the end of the message (s->done), at a bad byte (s->why,
 * the return value is its offset), or where the bytes change from shown to
 * llhttp to kept from it or back (*hidden says which the bytes returned
 * are: see chunk_hidden). */
static size_t chunk_scan(h1_chunk_scan_t *s, const char *p, size_t n, size_t max_trailer,
                         int *hidden) {
  size_t i = 0;
  *hidden = n > 0 && chunk_hidden(s, (unsigned char)p[0]);
  while (i < n && !s->done && s->why == NULL) {
    unsigned char c = (unsigned char)p[i];
    if (chunk_hidden(s, c) != *hidden) break;
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

struct pst_h1_req_parser_s {
  h1_t h;
};

struct pst_h1_resp_parser_s {
  h1_t h;
};

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
  h->ck = (h1_chunk_scan_t){0};
  h->phase = PH_HEAD;
  h->body = PST_BODY_NONE;
  h->keep_alive = 0;
}

/* Records an allocation failure in a callback; returns what makes llhttp
 * stop. See h1_int.h. */
int pst_h1_nomem(h1_t *h) {
  h->nomem = 1;
  return -1;
}

/* ---- field collection ----------------------------------------------------- */

static int h1_on_message_begin(llhttp_t *ll) {
  h1_t *h = ll->data;
  head_reset(h);
  return 0;
}

static int h1_on_line(llhttp_t *ll, const char *at, size_t n) {
  h1_t *h = ll->data;
  return pst_buf_append(&h->line, at, n) == 0 ? 0 : pst_h1_nomem(h);
}

/* Field pieces: the pre-scan and the head limit bound what accumulates.
 * Trailer fields (after the head) are dropped. */
static int h1_on_field(llhttp_t *ll, const char *at, size_t n) {
  h1_t *h = ll->data;
  if (h->phase != PH_HEAD) return 0;
  return pst_buf_append(&h->name, at, n) == 0 ? 0 : pst_h1_nomem(h);
}

static int h1_on_value(llhttp_t *ll, const char *at, size_t n) {
  h1_t *h = ll->data;
  if (h->phase != PH_HEAD) return 0;
  return pst_buf_append(&h->value, at, n) == 0 ? 0 : pst_h1_nomem(h);
}

static int h1_on_value_complete(llhttp_t *ll) {
  h1_t *h = ll->data;
  if (h->phase != PH_HEAD) {
    return 0;
  }
  return pst_h1_field_done(h);
}

/* ---- llhttp callbacks ----------------------------------------------------- */

static int h1_on_headers_complete(llhttp_t *ll) {
  h1_t *h = ll->data;
  return h->is_request ? pst_h1_request_head(h) : pst_h1_response_head(h);
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
  /* h1_head.c decides the framing from Transfer-Encoding (see the top). */
  llhttp_set_lenient_transfer_encoding(&h->ll, 1);
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

/* Hands the built head over (a NULL callback frees it). The caller has set
 * the phase already: the callee owns the head from the call on, so nothing
 * may be read from it afterwards. */
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

/* The status that answers a size limit met by the scans: 414 when a
 * request head passes its limit inside the request line (RFC 9110 15.5.15:
 * the target is what is too long), 431 for the rest of a request head or a
 * trailer section (RFC 6585 5), 502 for a response. */
static int limit_status(const h1_t *h, const pst_h1_scan_t *at) {
  if (!h->is_request) return 502;
  return h->phase == PH_HEAD && at->line == 0 ? 414 : 431;
}

/* How many of n bytes to give llhttp now, after the strict scans; a
 * refusal found by them is returned through bad and limit (the status to
 * answer for a size limit, 0 for a syntax error). In a head, *after is the
 * head scan's state past the bytes returned. *hidden is set when the bytes
 * are chunk extensions, consumed without llhttp (chunk_hidden). */
static size_t prescan(h1_t *h, const char *data, size_t n, const char **bad, int *limit,
                      pst_h1_scan_t *after, int *hidden) {
  *bad = NULL;
  *limit = 0;
  *hidden = 0;
  if (h->phase == PH_HEAD) {
    pst_h1_scan_t s = h->scan;
    size_t room = h->max_head + 1 - h->head_bytes;
    if (n > room) n = room;
    size_t k = pst_h1_head_scan(&s, data, n);
    *after = s;
    if (s.why != NULL) {
      *bad = s.why;
      return k;
    }
    if (h->head_bytes + k > h->max_head) {
      /* One byte over: llhttp gets the bytes before it, which cannot hold
       * the end of the head, and then the refusal stands. */
      *after = h->scan;
      pst_h1_head_scan(after, data, k - 1);
      *limit = limit_status(h, after);
      *bad = *limit == 414 ? "request line too long" : "head too large";
      return k - 1;
    }
    return k;
  }
  if (h->phase == PH_BODY && h->chunked) {
    h1_chunk_scan_t c = h->ck;
    size_t k = chunk_scan(&c, data, n, h->max_head, hidden);
    *bad = c.why;
    *limit = c.limit ? limit_status(h, &h->scan) : 0;
    return k;
  }
  return n;
}

/* Advances the strict scans over the n bytes llhttp used, of the scanned
 * ones prescan returned (after: the head scan's state past them). */
static void commit_scan(h1_t *h, h1_phase_t phase, const char *data, size_t n, size_t scanned,
                        const pst_h1_scan_t *after) {
  int hidden;
  if (phase == PH_HEAD) {
    /* Usually llhttp takes all of them (it pauses right after the head):
     * the head need not be scanned again. */
    if (n == scanned && after->why == NULL)
      h->scan = *after;
    else
      pst_h1_head_scan(&h->scan, data, n);
    h->head_bytes += n;
  } else if (phase == PH_BODY && h->chunked) {
    chunk_scan(&h->ck, data, n, h->max_head, &hidden);
  }
}

/* What to do after llhttp paused. Returns 1 to go on parsing, else 0 and
 * the feed's return value in *rc. */
static int on_pause(h1_t *h, h1_phase_t phase, int *rc) {
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
    int limit, hidden;
    h1_phase_t phase = h->phase;
    pst_h1_scan_t after;
    size_t n = prescan(h, data, len, &bad, &limit, &after, &hidden);
    if (hidden) {
      /* Chunk extensions: checked by the scan, consumed, never parsed. */
      commit_scan(h, phase, data, n, n, &after);
      data += n;
      len -= n;
      *consumed += n;
      if (bad != NULL) return fail(h, PST_EPROTO, h->is_request ? 400 : 502, bad);
      if (len == 0) return 0;
      continue;
    }
    h->pause = PAUSE_NONE;
    llhttp_errno_t e = llhttp_execute(&h->ll, data, n);
    size_t used = e == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&h->ll) - data);
    if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) return fail_llhttp(h, e);
    commit_scan(h, phase, data, used, n, &after);
    data += used;
    len -= used;
    *consumed += used;
    if (e == HPE_OK) {
      if (bad != NULL) {
        return limit ? fail(h, PST_ELIMIT, limit, bad)
                     : fail(h, PST_EPROTO, h->is_request ? 400 : 502, bad);
      }
      if (len == 0) return 0;
      /* The scan stopped before chunk extensions: they go round the parser. */
      if (phase == PH_BODY && h->chunked && chunk_hidden(&h->ck, (unsigned char)data[0])) continue;
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

int pst_h1_req_parser_idle(const pst_h1_req_parser_t *p) {
  return p->h.phase == PH_HEAD && p->h.head_bytes == 0 && p->h.req == NULL;
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
