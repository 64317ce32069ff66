/* postern: the HTTP/2 front end (RFC 9113; see h2.h).
 *
 * An nghttp2 server session is fed the decrypted client bytes (feed) and its
 * output is pulled with nghttp2_session_mem_send into one buffer that goes to
 * the connection in pieces of up to 16 KiB, one TLS record each: the engine
 * does no I/O. Every request stream becomes a pst_stream_t (stream.h)
 * forwarded as HTTP/1.1.
 *
 * Memory stays bounded both ways without buffering whole messages:
 * - request bodies: windows are not updated automatically
 *   (nghttp2_option_set_no_auto_window_update); DATA given to a stream is
 *   consumed (nghttp2_session_consume, hence WINDOW_UPDATE) only once the
 *   stream's queue to the backend is short, so a slow backend slows the
 *   client down (RFC 9113 5.2) and a stream holds at most its 256 KiB window;
 * - response bodies wait in a per-stream buffer that nghttp2's data provider
 *   drains as the client's windows and socket allow. A stream stops reading
 *   its backend (pst_stream_pause) once it holds more than twice what its
 *   windows let it send (at least H2_OUT_MIN, at most H2_OUT_HIGH), and
 *   every stream holds at most H2_OUT_MIN while the connection's streams
 *   together hold more than H2_CONN_OUT_HIGH (h2_out_limit): a client that
 *   keeps its windows closed or stops reading costs at most that, plus one
 *   backend read (PST_READ_SLAB) per stream.
 *
 * Re-entry: nghttp2 callbacks only call pst_stream_* (which never call back
 * synchronously); output is pulled only from the entry points (front ops and
 * stream ops). A depth counter keeps the struct alive should destroy ever
 * run while one of them is on the stack.
 *
 * The per-stream record and the request it assembles from a header block
 * are in h2_req.c; h2_int.h holds the types the two files share. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nghttp2/nghttp2.h>

#include "h2_int.h"
#include "postern/access_log.h"
#include "postern/common.h"
#include "postern/h2.h"
#include "postern/http.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/pool.h"
#include "postern/stream.h"

#define H2_RECORD 16384               /* output piece: one full TLS record (RFC 8446 5.1) */
#define H2_STREAM_WINDOW (256 * 1024) /* SETTINGS_INITIAL_WINDOW_SIZE: request body per stream */
#define H2_MAX_SETTINGS 32            /* entries accepted in one SETTINGS frame */
#define H2_FIELD_OVERHEAD 32          /* per field in the header list size (RFC 9113 6.5.2) */
/* A stream's response body waiting for the client's windows and socket (its
 * out buffer): see h2_out_limit. */
#define H2_OUT_MIN (16 * 1024)         /* what a stream may always hold: one DATA frame */
#define H2_OUT_HIGH (256 * 1024)       /* the most one stream holds, whatever its windows */
#define H2_CONN_OUT_HIGH (1024 * 1024) /* all streams: above it each holds H2_OUT_MIN */
#define H2_CONN_OUT_LOW (512 * 1024)   /* ... until they are back under this */

static void h2_flush(h2_front_t *h2);

/* ---- helpers ---------------------------------------------------------- */

static nghttp2_nv nv(const char *name, const char *value) {
  return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                      NGHTTP2_NV_FLAG_NONE};
}

/* RFC 9110 6.6.1: an origin server with a clock sends Date; postern is the
 * origin of the responses it makes itself. */
static void http_date(char *out, size_t n) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(out, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void h2_enter(h2_front_t *h2) { h2->depth++; }

static void h2_free(h2_front_t *h2);

static void h2_leave(h2_front_t *h2) {
  if (--h2->depth == 0 && h2->destroyed) h2_free(h2);
}

/* Ends the connection after a failure of ours or of nghttp2. */
static void h2_fail(h2_front_t *h2, int err, const char *reason) {
  if (h2->ended) return;
  h2->ended = 1;
  h2->base.host->ops->close(h2->base.host, err, reason);
}

/* Gives back request-body flow-control credit: the bytes have left postern
 * (or never will go anywhere), so the client may send as many again. */
static void h2_consume(h2_front_t *h2, h2_stream_t *st) {
  if (st->unconsumed == 0) return;
  int rv = nghttp2_session_consume(h2->session, st->id, st->unconsumed);
  st->unconsumed = 0;
  if (rv != 0) {
    pst_log_debug("conn %llu: h2 stream %d: consume: %s", (unsigned long long)h2->base.host->id,
                  st->id, nghttp2_strerror(rv));
  }
}

static void h2_rst(h2_front_t *h2, h2_stream_t *st, uint32_t code) {
  nghttp2_submit_rst_stream(h2->session, NGHTTP2_FLAG_NONE, st->id, code);
}

/* ACCESS LOG HOOK: one line per request whose head was complete, when the
 * stream ends (normally, reset, or with the connection). Only method,
 * authority and target are read from the request. */
static void h2_log(h2_front_t *h2, h2_stream_t *st) {
  if (!st->head_done) return;
  pst_http_request_t r = {.method = st->method, .target = st->path, .authority = st->authority};
  pst_metrics_http_request(h2->base.host->lc->metrics_slot, PST_MPROTO_H2, st->status);
  pst_access_log(h2->base.host, "h2", &r, st->status, st->bytes_in, st->bytes_out, st->t_start_ns);
}

/* ---- response buffers --------------------------------------------------- */

/* How many response bytes st may hold before it stops reading its backend:
 * twice what it could send now (the smaller of its stream window and the
 * connection window, RFC 9113 6.9), so that a WINDOW_UPDATE finds the next
 * bytes waiting; at least H2_OUT_MIN, so that a stream whose window is
 * closed still makes progress once it opens; at most H2_OUT_HIGH, for a
 * client that advertises huge windows and does not read. While the
 * connection's streams hold more than H2_CONN_OUT_HIGH together (many
 * streams, or a client not reading its socket), every stream is held to
 * H2_OUT_MIN: none is starved, and the connection's total stays near
 * H2_CONN_OUT_HIGH plus H2_OUT_MIN per stream. */
static size_t h2_out_limit(h2_front_t *h2, const h2_stream_t *st) {
  if (h2->out_pressed) return H2_OUT_MIN;
  int64_t ws = nghttp2_session_get_stream_remote_window_size(h2->session, st->id);
  int64_t wc = nghttp2_session_get_remote_window_size(h2->session);
  int64_t w = ws < wc ? ws : wc;
  uint64_t lim = w > 0 ? (uint64_t)w * 2 : 0;
  return lim < H2_OUT_MIN ? H2_OUT_MIN : lim > H2_OUT_HIGH ? H2_OUT_HIGH : (size_t)lim;
}

/* Stops reading st's backend when st holds more than its limit, and reads
 * it again once st is under half of it (the limit of the moment: windows
 * move). */
static void h2_out_check(h2_front_t *h2, h2_stream_t *st) {
  if (st->s == NULL) return;
  size_t lim = h2_out_limit(h2, st);
  if (!st->paused && st->out.len > lim) {
    st->paused = 1;
    pst_stream_pause(st->s, 1);
  } else if (st->paused && st->out.len <= lim / 2) {
    st->paused = 0;
    pst_stream_pause(st->s, 0);
  }
}

/* Keeps the connection's total (h2->out_total) as st->out grows by added
 * bytes and shrinks by taken ones, and the connection's pressure with it:
 * once under H2_CONN_OUT_LOW again, the streams it held back are
 * checked. */
static void h2_out_count(h2_front_t *h2, size_t added, size_t taken) {
  assert(h2->out_total + added >= taken);
  h2->out_total = h2->out_total + added - taken;
  if (!h2->out_pressed && h2->out_total > H2_CONN_OUT_HIGH) {
    h2->out_pressed = 1;
  } else if (h2->out_pressed && h2->out_total < H2_CONN_OUT_LOW) {
    h2->out_pressed = 0;
    for (h2_stream_t *st = h2->streams; st != NULL; st = st->next) {
      if (st->paused) h2_out_check(h2, st);
    }
  }
}

/* Empties st's response buffer. */
static void h2_out_free(h2_front_t *h2, h2_stream_t *st) {
  size_t n = st->out.len;
  pst_buf_free(&st->out);
  h2_out_count(h2, 0, n);
}

/* ---- responses -------------------------------------------------------- */

/* nghttp2 pulls response body bytes (RFC 9113 6.1) as flow control allows. */
static ssize_t h2_read_body(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user) {
  h2_stream_t *st = source->ptr;
  size_t n = st->out.len < length ? st->out.len : length;
  if (n > 0) {
    memcpy(buf, pst_buf_head(&st->out), n);
    pst_buf_consume(&st->out, n);
    st->bytes_out += n;
    h2_out_count(st->h2, 0, n);
  }
  h2_out_check(st->h2, st);
  if (st->out.len == 0 && st->out_eof) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
  }
  if (n == 0) {
    st->deferred = 1; /* nghttp2_session_resume_data when bytes arrive */
    return NGHTTP2_ERR_DEFERRED;
  }
  return (ssize_t)n;
}

static void h2_resume(h2_front_t *h2, h2_stream_t *st) {
  if (!st->deferred) return;
  st->deferred = 0;
  nghttp2_session_resume_data(h2->session, st->id);
}

/* Submits a response made by postern: status, content-type and the body
 * (taken over, emptied). Returns 0 or a negative error (nothing
 * submitted). */
static int h2_respond(h2_front_t *h2, h2_stream_t *st, int status, const char *ctype,
                      pst_buf_t *body) {
  char code[8], clen[24], date[40];
  nghttp2_nv nva[6];
  size_t n = 0;
  snprintf(code, sizeof(code), "%d", status);
  snprintf(clen, sizeof(clen), "%zu", body->len);
  http_date(date, sizeof(date));
  nva[n++] = nv(":status", code);
  nva[n++] = nv("content-type", ctype);
  nva[n++] = nv("content-length", clen);
  nva[n++] = nv("cache-control", "no-store");
  nva[n++] = nv("server", "postern");
  nva[n++] = nv("date", date);
  h2_out_free(h2, st);
  if (st->head_request) {
    pst_buf_free(body); /* RFC 9110 9.3.2: the length is told, the content not sent */
  } else {
    st->out = *body;
    *body = (pst_buf_t){0};
    h2_out_count(h2, st->out.len, 0);
  }
  st->out_eof = 1;
  nghttp2_data_provider prd = {.source.ptr = st, .read_callback = h2_read_body};
  int rv = nghttp2_submit_response(h2->session, st->id, nva, n, st->out.len > 0 ? &prd : NULL);
  if (rv != 0) {
    h2_out_free(h2, st);
    return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : PST_EPROTO;
  }
  st->head_sent = 1;
  st->status = status;
  return 0;
}

/* Answers with a short text/plain error, or resets the stream when even
 * that is impossible. */
static void h2_respond_error(h2_front_t *h2, h2_stream_t *st, int status) {
  const char *what = status == 502   ? "backend unreachable"
                     : status == 504 ? "no response from the backend in time"
                     : status == 431 ? "request header fields too large"
                                     : NULL;
  pst_buf_t body = {0};
  int rc = pst_buf_printf(&body, "%d %s%s%s\n", status, pst_http_reason(status), what ? ": " : "",
                          what ? what : "");
  if (rc == 0) rc = h2_respond(h2, st, status, "text/plain; charset=utf-8", &body);
  pst_buf_free(&body);
  if (rc == 0)
    pst_metrics_http_generated(h2->base.host->lc->metrics_slot, status);
  else
    h2_rst(h2, st, NGHTTP2_INTERNAL_ERROR);
}

/* Response fields that must not cross to HTTP/2 (RFC 9113 8.2.2), and the
 * framing field, rebuilt from the response's framing. own_length: the
 * response has no content but describes the representation's length (the
 * answer to HEAD, or a 304), which the parser left as a plain
 * content-length field: that one is kept (RFC 9110 9.3.2, 8.6). */
static int h2_drop_response_field(const pst_header_t *h, int own_length) {
  if (h->name_len == 0 || h->name[0] == ':') return 1;
  if (h->name_len == 14 && strcmp(h->name, "content-length") == 0) return !own_length;
  return pst_http_hop_by_hop(h->name, h->name_len);
}

/* Response fields passed to nghttp2 from a stack array (h2_submit_head). */
#define H2_NVA_STACK 32

/* Submits the backend's final response head. Returns 0 or a negative
 * error. */
static int h2_submit_head(h2_front_t *h2, h2_stream_t *st, pst_http_response_t *resp) {
  char code[8], clen[24];
  int status = resp->status;
  /* A typical head fits the array on the stack; nghttp2 copies the fields,
   * so the array lives only for this call. */
  nghttp2_nv stack_nva[H2_NVA_STACK];
  nghttp2_nv *nva = stack_nva;
  if (resp->headers.n + 2 > H2_NVA_STACK) {
    nva = calloc(resp->headers.n + 2, sizeof(*nva));
    if (nva == NULL) return -ENOMEM;
  }
  size_t n = 0;
  snprintf(code, sizeof(code), "%03d", status);
  nva[n++] = nv(":status", code);
  int own_length = resp->body == PST_BODY_NONE && (st->head_request || status == 304);
  for (size_t i = 0; i < resp->headers.n; i++) {
    pst_header_t *h = &resp->headers.v[i];
    /* RFC 9113 8.2.1: field names are lower case on h2. */
    for (size_t j = 0; j < h->name_len; j++) {
      if (h->name[j] >= 'A' && h->name[j] <= 'Z') h->name[j] = (char)(h->name[j] + 32);
    }
    if (h2_drop_response_field(h, own_length)) continue;
    nva[n++] = (nghttp2_nv){.name = (uint8_t *)h->name,
                            .value = (uint8_t *)h->value,
                            .namelen = h->name_len,
                            .valuelen = h->value_len,
                            .flags = NGHTTP2_NV_FLAG_NONE};
  }
  /* RFC 9110 8.6: no Content-Length in a 204. */
  if (resp->body == PST_BODY_LENGTH && status != 204) {
    snprintf(clen, sizeof(clen), "%llu", (unsigned long long)resp->content_length);
    nva[n++] = nv("content-length", clen);
  }
  /* When the whole body is known to be here (none, or content-length
   * reached), END_STREAM goes with the last frame; otherwise it waits for
   * on_end (an empty DATA frame). */
  st->body_ok = !st->head_request && status != 204 && status != 304 && resp->body != PST_BODY_NONE;
  st->by_length = resp->body == PST_BODY_LENGTH;
  st->remaining = st->by_length ? resp->content_length : 0;
  if (st->by_length && st->remaining == 0) st->body_ok = 0;
  st->out_eof = !st->body_ok;
  nghttp2_data_provider prd = {.source.ptr = st, .read_callback = h2_read_body};
  int rv = nghttp2_submit_response(h2->session, st->id, nva, n, st->body_ok ? &prd : NULL);
  if (nva != stack_nva) free(nva); /* nghttp2 copied the fields */
  if (rv != 0) {
    st->out_eof = 0;
    return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : PST_EPROTO;
  }
  st->head_sent = 1;
  st->status = status;
  return 0;
}

/* ---- stream ops: the backend's side of an exchange ---------------------- */

static int h2_s_on_head(pst_stream_t *s, pst_http_response_t *resp) {
  h2_stream_t *st = s->front;
  h2_front_t *h2 = st->h2;
  int rc = 0;
  h2_enter(h2);
  if (resp->status >= 100 && resp->status < 200 && resp->status != 101) {
    /* Interim responses are not needed by h2 clients, except 100 when the
     * client waits for it before sending its body (RFC 9110 10.1.1). */
    if (resp->status == 100 && st->expect && !st->continued && !st->head_sent) {
      nghttp2_nv hundred = nv(":status", "100");
      st->continued = 1;
      nghttp2_submit_headers(h2->session, NGHTTP2_FLAG_NONE, st->id, NULL, &hundred, 1, NULL);
    }
  } else if (resp->status == 101 || st->head_sent) {
    rc = PST_EPROTO; /* no upgrade on h2 (RFC 9113 8.6) */
  } else {
    rc = h2_submit_head(h2, st, resp);
  }
  pst_http_response_free(resp);
  free(resp);
  h2_flush(h2); /* st may be gone from here on */
  h2_leave(h2);
  return rc;
}

static int h2_s_on_body(pst_stream_t *s, const char *data, size_t len) {
  h2_stream_t *st = s->front;
  h2_front_t *h2 = st->h2;
  if (!st->body_ok || st->out_eof || st->detached) return 0; /* HEAD, 204, 304 */
  if (st->by_length && len > st->remaining) len = (size_t)st->remaining;
  if (pst_buf_append(&st->out, data, len) != 0) return -ENOMEM;
  h2_out_count(h2, len, 0);
  /* The last byte of a known length ends the stream with it, not after. */
  if (st->by_length && (st->remaining -= len) == 0) st->out_eof = 1;
  h2_enter(h2);
  h2_resume(h2, st);
  h2_out_check(h2, st); /* the client slower than the backend: stop reading it */
  h2_flush(h2);
  h2_leave(h2);
  return 0;
}

/* The exchange is over (on_end: status -1; on_error: 0 or the status to
 * answer): free it and finish the client's side of the stream. */
static void h2_exchange_over(pst_stream_t *s, int status) {
  h2_stream_t *st = s->front;
  h2_front_t *h2 = st->h2;
  h2_enter(h2);
  st->s = NULL;
  pst_stream_free(s); /* the rest of the response body is in st->out */
  if (st->detached) {
    /* nghttp2 closed the stream already: the client has the response. */
    h2_log(h2, st);
    pst_h2_stream_del(h2, st);
  } else {
    if (status < 0 && st->head_sent) {
      st->out_eof = 1;
      h2_resume(h2, st);
    } else if (status > 0 && !st->head_sent) {
      h2_respond_error(h2, st, status);
    } else {
      /* The response was under way: the client must see it cut short. */
      h2_rst(h2, st, NGHTTP2_INTERNAL_ERROR);
    }
    h2_consume(h2, st); /* request bytes the backend will never take */
  }
  h2_flush(h2); /* st may be gone from here on */
  h2_leave(h2);
}

static void h2_s_on_end(pst_stream_t *s) { h2_exchange_over(s, -1); }

static void h2_s_on_error(pst_stream_t *s, int status, const char *why) {
  h2_stream_t *st = s->front;
  pst_log_debug("conn %llu: h2 stream %d: %s", (unsigned long long)s->host->id, st->id,
                why ? why : "failed");
  h2_exchange_over(s, status);
}

static void h2_s_on_drain(pst_stream_t *s) {
  h2_stream_t *st = s->front;
  h2_front_t *h2 = st->h2;
  if (st->detached) return;
  h2_enter(h2);
  h2_consume(h2, st);
  h2_flush(h2);
  h2_leave(h2);
}

static const pst_stream_ops_t h2_stream_ops = {
    .on_head = h2_s_on_head,
    .on_body = h2_s_on_body,
    .on_end = h2_s_on_end,
    .on_error = h2_s_on_error,
    .on_drain = h2_s_on_drain,
};

/* ---- requests --------------------------------------------------------- */

/* Starts the exchange of st, whose request (st->req) is complete up to its
 * body. */
static void h2_start(h2_front_t *h2, h2_stream_t *st) {
  if (st->start_pending) {
    st->start_pending = 0;
    h2->n_pending--;
  }
  pst_http_request_t *req = st->req;
  st->req = NULL;
  st->s = pst_stream_start(h2->base.host, &h2_stream_ops, st, st->id, req);
  if (st->s == NULL) h2_respond_error(h2, st, 502); /* no backend connection could be had */
}

/* Starts the exchanges still waiting at the end of the bytes fed: their
 * streams were not reset by what came after their heads. Not once the
 * connection is ending. */
static void h2_start_pending(h2_front_t *h2) {
  h2_stream_t *next;
  for (h2_stream_t *st = h2->streams; st != NULL && h2->n_pending > 0; st = next) {
    next = st->next;
    /* nghttp2 wants no more input once it has ended the session itself
     * (a connection error, its own reset limit). */
    if (h2->ended || h2->calm || !nghttp2_session_want_read(h2->session)) return;
    if (st->start_pending) h2_start(h2, st);
  }
}

/* The request header block is complete (RFC 9113 8.1): answer it here or
 * start its exchange. */
static void h2_request_head(h2_front_t *h2, h2_stream_t *st, int end_stream) {
  st->head_done = 1;
  st->req_done = end_stream;
  if (st->error == H2_REQ_TOO_LARGE) {
    h2_respond_error(h2, st, 431);
    return;
  }
  if (st->error == H2_REQ_NOMEM) {
    h2_rst(h2, st, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  if (st->error == H2_REQ_MALFORMED || st->method == NULL || st->path == NULL ||
      strcmp(st->method, "CONNECT") == 0 ||
      !pst_http_target_ok(st->path, strlen(st->path), strcmp(st->method, "OPTIONS") == 0)) {
    /* A malformed request is a stream error (RFC 9113 8.1.1); postern is no
     * forward proxy, so CONNECT (RFC 9113 8.5) ends the same way. :path
     * becomes the request-target of an HTTP/1.1 request line, so it must
     * be one the HTTP/1.1 front end would take (RFC 9113 8.3.1: origin-form,
     * or "*" for OPTIONS); nghttp2's own check of it is looser. */
    h2_rst(h2, st, NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  if (pst_h2_build_request(st, end_stream) != 0) {
    h2_rst(h2, st, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  st->head_request = strcmp(st->method, "HEAD") == 0;
  if (end_stream || st->expect) {
    /* Complete, or its client waits for 100 (Continue) before the body. */
    h2_start(h2, st);
    return;
  }
  /* A body follows. What comes with the head may still make it malformed
   * (DATA beyond its content-length: RFC 9113 8.1.1), and nghttp2 then
   * resets the stream: the backend connection waits for the first DATA
   * (which nghttp2 checked), END_STREAM, or the end of the bytes at hand,
   * so that such a stream sent in one piece never costs one. */
  st->start_pending = 1;
  h2->n_pending++;
}

/* END_STREAM from the client: the request body is complete. */
static void h2_request_end(h2_front_t *h2, h2_stream_t *st) {
  if (st->req_done) return;
  st->req_done = 1;
  if (st->start_pending) h2_start(h2, st);
  if (st->s != NULL) pst_stream_body_end(st->s);
  /* No more DATA can come on this stream, so its window no longer matters;
   * what it holds of the connection's window is given back now (the bytes
   * are in the stream's queue, at most one window). */
  h2_consume(h2, st);
}

/* ---- nghttp2 callbacks ------------------------------------------------ */

/* Every frame's header, before its payload: the connection's budgets
 * (h2_limits.c). */
static int h2_on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user) {
  PST_UNUSED(session);
  pst_h2_limit_frame(user, hd);
  return 0;
}

static int h2_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
  h2_front_t *h2 = user;
  /* A header block (a request's, or trailers) is a request head: it must
   * arrive whole within timeouts.request_head (slowloris). Blocks cannot
   * interleave (RFC 9113 4.3), so one deadline per connection serves. */
  if (frame->hd.type == NGHTTP2_HEADERS) h2->base.host->ops->head(h2->base.host, 1);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (h2->n_streams - h2->n_detached >= h2->max_streams) {
    /* RFC 9113 5.1.2: over the advertised limit; REFUSED_STREAM tells the
     * client the request was not processed and may be retried (8.7). The
     * rest of its header block is decoded (HPACK state) and ignored. */
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  h2_stream_t *st = pst_h2_stream_new(h2, frame->hd.stream_id);
  if (st == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
  nghttp2_session_set_stream_user_data(session, st->id, st);
  return 0;
}

static int h2_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                        size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user) {
  h2_front_t *h2 = user;
  /* Trailers (HCAT_HEADERS) are dropped: HTTP/1.1 backends get a chunked
   * body without them. */
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  h2_stream_t *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (st == NULL || st->error == H2_REQ_TOO_LARGE || st->error == H2_REQ_NOMEM) return 0;
  /* The limit we advertised in SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113
   * 6.5.2), counted the same way; past it the fields are dropped as they
   * arrive and the request gets 431. */
  st->field_bytes += nlen + vlen + H2_FIELD_OVERHEAD;
  if (st->field_bytes > h2->conf->max_header_bytes) {
    st->error = H2_REQ_TOO_LARGE;
    pst_headers_free(&st->req->headers);
    pst_buf_free(&st->cookie);
    return 0;
  }
  if (pst_h2_add_field(st, name, nlen, value, vlen) != 0) st->error = H2_REQ_NOMEM;
  return 0;
}

static int h2_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
  h2_front_t *h2 = user;
  if (frame->hd.type == NGHTTP2_HEADERS) h2->base.host->ops->head(h2->base.host, 0);
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  h2_stream_t *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (st == NULL) return 0;
  int end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    h2_request_head(h2, st, end_stream);
  } else if (end_stream) {
    h2_request_end(h2, st);
  }
  return 0;
}

static int h2_on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id,
                            const uint8_t *data, size_t len, void *user) {
  h2_front_t *h2 = user;
  h2_stream_t *st = nghttp2_session_get_stream_user_data(session, id);
  if (st != NULL) st->bytes_in += len;
  if (st != NULL && st->start_pending) h2_start(h2, st); /* nghttp2 let these bytes pass */
  if (st == NULL || st->s == NULL || pst_stream_body(st->s, (const char *)data, len) != 0) {
    /* Nobody will forward these bytes (answered locally, exchange over or
     * failed): their credit goes back at once. */
    nghttp2_session_consume(session, id, len);
    return 0;
  }
  st->unconsumed += len;
  /* A short queue to the backend takes more at once; a long one waits for
   * on_drain, which holds the client back (RFC 9113 5.2.2). */
  if (pst_stream_queued(st->s) < PST_BACKEND_LOW_WATER) h2_consume(h2, st);
  return 0;
}

/* RFC 9113 8.1: once the response is complete, a client still sending its
 * request is asked to stop, without error. */
static int h2_on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
  if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    return 0;
  }
  h2_stream_t *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (st == NULL) return 0;
  st->resp_done = 1;
  if (!st->req_done) h2_rst(user, st, NGHTTP2_NO_ERROR);
  return 0;
}

static int h2_on_stream_close(nghttp2_session *session, int32_t id, uint32_t code, void *user) {
  h2_front_t *h2 = user;
  h2_stream_t *st = nghttp2_session_get_stream_user_data(session, id);
  /* No record: refused over the stream limit, or out of memory. */
  if (st == NULL || !st->resp_done) pst_h2_count_early_end(h2);
  if (st == NULL) return 0;
  if (st->unconsumed > 0) nghttp2_session_consume_connection(session, st->unconsumed);
  st->unconsumed = 0;
  nghttp2_session_set_stream_user_data(session, id, NULL);
  if (st->s != NULL && st->out_eof) {
    /* The whole response reached us (the backend's on_end follows from
     * the same read): let the exchange end normally, so that its backend
     * connection goes back to the pool. */
    st->detached = 1;
    h2->n_detached++;
    return 0;
  }
  if (st->s != NULL) {
    /* Reset by the client (RST_STREAM) or by us: abort the exchange; its
     * backend connection is closed, not reused. */
    pst_stream_free(st->s);
    st->s = NULL;
  }
  h2_log(h2, st);
  pst_h2_stream_del(h2, st);
  return 0;
}

/* A header block nghttp2 refused (a stream error) is over too. */
static int h2_on_invalid_frame(nghttp2_session *session, const nghttp2_frame *frame, int code,
                               void *user) {
  h2_front_t *h2 = user;
  if (frame->hd.type == NGHTTP2_HEADERS) h2->base.host->ops->head(h2->base.host, 0);
  return 0;
}

static int h2_on_error(nghttp2_session *session, int code, const char *msg, size_t len,
                       void *user) {
  h2_front_t *h2 = user;
  pst_log_debug("conn %llu: h2: %.*s", (unsigned long long)h2->base.host->id, (int)len, msg);
  return 0;
}

/* ---- output ----------------------------------------------------------- */

/* After the client's end no WINDOW_UPDATE can come (RFC 9113 6.9): a
 * stream whose response body waits for window space never completes.
 * True when every stream left is such a stream, so that a client that
 * shrank its windows and left does not hold the connection until the idle
 * timeout. A stream still waiting for its backend is not stuck yet. */
static int h2_stuck_after_eof(h2_front_t *h2) {
  if (!h2->client_eof || h2->n_streams == 0) return 0;
  int32_t conn_window = nghttp2_session_get_remote_window_size(h2->session);
  for (h2_stream_t *st = h2->streams; st != NULL; st = st->next) {
    if (st->detached || st->out.len == 0) return 0;
    if (conn_window > 0 && nghttp2_session_get_stream_remote_window_size(h2->session, st->id) > 0)
      return 0;
  }
  return 1;
}

/* The connection is done once nghttp2 wants neither to read nor to write
 * (GOAWAY exchanged, or sent and every stream closed), or once the client
 * has finished sending and no stream is left that can still complete. */
static void h2_check_end(h2_front_t *h2) {
  if (h2->ended || h2->destroyed || h2->wbuf.len > 0) return;
  if (nghttp2_session_want_write(h2->session)) return;
  if (nghttp2_session_want_read(h2->session) && !(h2->client_eof && h2->n_streams == 0) &&
      !h2_stuck_after_eof(h2)) {
    return;
  }
  h2->ended = 1;
  h2->base.host->ops->end(h2->base.host);
}

/* The stream limit. nghttp2 answers a client that opens more streams than
 * an acknowledged SETTINGS_MAX_CONCURRENT_STREAMS with a connection error
 * (GOAWAY PROTOCOL_ERROR; RFC 9113 5.4 allows it), and offers no way to ask
 * for the stream error of 5.1.2 instead, which lets an eager client keep its
 * other streams. So the session itself is given a higher limit
 * (h2_session_limit), the value in our first SETTINGS frame is lowered to
 * the configured one on its way out, and h2_on_begin_headers refuses the
 * streams in between with RST_STREAM REFUSED_STREAM. A client that goes on
 * past nghttp2's limit too still gets GOAWAY. */
static uint32_t h2_session_limit(uint32_t max) {
  uint64_t v = (uint64_t)max + (max < 100 ? 100 : max);
  return v > INT32_MAX ? INT32_MAX : (uint32_t)v;
}

/* Rewrites SETTINGS_MAX_CONCURRENT_STREAMS in the SETTINGS frame at p (the
 * first bytes the session ever produces: the server preface, RFC 9113 3.4). */
static void h2_patch_settings(h2_front_t *h2, uint8_t *p, size_t n) {
  h2->patch_settings = 0;
  size_t len = n >= 9 ? ((size_t)p[0] << 16) | ((size_t)p[1] << 8) | p[2] : 0;
  if (n < 9 || p[3] != NGHTTP2_SETTINGS || (p[4] & NGHTTP2_FLAG_ACK) || 9 + len > n) {
    pst_log_warn("conn %llu: h2: the server preface is not a SETTINGS frame",
                 (unsigned long long)h2->base.host->id);
    return;
  }
  for (uint8_t *e = p + 9; e + 6 <= p + 9 + len; e += 6) {
    if (((e[0] << 8) | e[1]) != NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) continue;
    e[2] = (uint8_t)(h2->max_streams >> 24);
    e[3] = (uint8_t)(h2->max_streams >> 16);
    e[4] = (uint8_t)(h2->max_streams >> 8);
    e[5] = (uint8_t)h2->max_streams;
  }
}

/* Pulls nghttp2's output and hands it to the connection in pieces of up to
 * H2_RECORD bytes, so that many small frames share one TLS record and a
 * DATA frame fills one. Stops above PST_CLIENT_HIGH_WATER: drain resumes. */
static void h2_flush(h2_front_t *h2) {
  pst_host_t *h = h2->base.host;
  while (!h2->ended && !h2->destroyed) {
    if (h->ops->queued(h) > PST_CLIENT_HIGH_WATER) return;
    int more = 1;
    while (more && h2->wbuf.len < H2_RECORD) {
      const uint8_t *p;
      ssize_t n = nghttp2_session_mem_send(h2->session, &p);
      if (n < 0) {
        h2_fail(h2, n == NGHTTP2_ERR_NOMEM ? -ENOMEM : PST_EPROTO,
                h->ops->why(h, "h2: %s", nghttp2_strerror((int)n)));
        return;
      }
      if (n == 0) {
        more = 0;
      } else if (pst_buf_append(&h2->wbuf, p, (size_t)n) != 0) {
        h2_fail(h2, -ENOMEM, "out of memory");
        return;
      } else if (h2->patch_settings) {
        h2_patch_settings(h2, (uint8_t *)pst_buf_head(&h2->wbuf), h2->wbuf.len);
      }
    }
    if (h2->wbuf.len == 0) break;
    size_t len = h2->wbuf.len < H2_RECORD ? h2->wbuf.len : H2_RECORD;
    int rc = h->ops->send(h, pst_buf_head(&h2->wbuf), len);
    if (rc != 0) {
      h2->ended = 1; /* the connection is closing already */
      return;
    }
    pst_buf_consume(&h2->wbuf, len);
  }
  h2_check_end(h2);
}

/* ---- front end ops ---------------------------------------------------- */

static int h2_feed(pst_app_t *f, const char *data, size_t len) {
  h2_front_t *h2 = (h2_front_t *)f;
  if (h2->ended) return 0; /* ending: what the client still sends is dropped */
  int rc = 0;
  h2_enter(h2);
  ssize_t n = nghttp2_session_mem_recv(h2->session, (const uint8_t *)data, len);
  if (n < 0) {
    /* Fatal: not HTTP/2 at all (bad preface, RFC 9113 3.4), a flood of
     * frames needing an answer (NGHTTP2_ERR_FLOODED: PING or SETTINGS),
     * or out of memory. Protocol errors that GOAWAY can report are
     * handled inside nghttp2 and come out through h2_flush. */
    pst_host_t *h = f->host;
    rc = n == NGHTTP2_ERR_NOMEM ? -ENOMEM : PST_EPROTO;
    const char *why = h->ops->why(h, "h2: %s", nghttp2_strerror((int)n));
    pst_log_debug("conn %llu: %s", (unsigned long long)h->id, why);
    h2_fail(h2, rc, why);
  } else {
    /* The RST_STREAM frames nghttp2 queued for malformed streams go out
     * first, closing those streams; the heads left start then. */
    h2_flush(h2);
    if (h2->n_pending > 0) {
      h2_start_pending(h2);
      h2_flush(h2);
    }
  }
  h2_leave(h2);
  return rc;
}

static void h2_client_drain(pst_app_t *f) {
  h2_front_t *h2 = (h2_front_t *)f;
  h2_enter(h2);
  h2_flush(h2);
  h2_leave(h2);
}

static void h2_client_eof(pst_app_t *f) {
  h2_front_t *h2 = (h2_front_t *)f;
  h2_enter(h2);
  h2->client_eof = 1;
  /* Requests still being sent can never complete; the ones complete get
   * their responses, then the connection ends (h2_check_end). */
  for (h2_stream_t *st = h2->streams; st != NULL; st = st->next) {
    if (!st->req_done && !st->detached) h2_rst(h2, st, NGHTTP2_CANCEL);
  }
  h2_flush(h2);
  h2_leave(h2);
}

static void h2_shutdown(pst_app_t *f) {
  h2_front_t *h2 = (h2_front_t *)f;
  h2_enter(h2);
  if (!h2->goaway && !h2->ended) {
    /* RFC 9113 6.8: streams up to the last one processed go on; later ones
     * are refused. nghttp2 ends the session once they are done. */
    h2->goaway = 1;
    nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h2->session), NGHTTP2_NO_ERROR,
                          NULL, 0);
  }
  h2_flush(h2);
  h2_leave(h2);
}

static void h2_free(h2_front_t *h2) {
  nghttp2_session_del(h2->session); /* calls no callback */
  while (h2->streams != NULL) pst_h2_stream_del(h2, h2->streams);
  pst_buf_free(&h2->wbuf);
  free(h2);
}

static void h2_destroy(pst_app_t *f) {
  h2_front_t *h2 = (h2_front_t *)f;
  if (h2->destroyed) return;
  h2->destroyed = 1;
  h2->ended = 1;
  for (h2_stream_t *st = h2->streams; st != NULL; st = st->next) {
    if (st->s != NULL) {
      pst_stream_free(st->s);
      st->s = NULL;
    }
    h2_log(h2, st); /* cut by the connection's end */
  }
  if (h2->depth == 0) h2_free(h2);
}

static const pst_app_ops_t h2_front_ops = {
    .feed = h2_feed,
    .client_eof = h2_client_eof,
    .drain = h2_client_drain,
    .shutdown = h2_shutdown,
    .destroy = h2_destroy,
};

/* Session options: flow control by hand, and the limits against the known
 * HTTP/2 attacks. */
static nghttp2_option *h2_options(const pst_listener_conf_t *conf) {
  nghttp2_option *opt;
  if (nghttp2_option_new(&opt) != 0) return NULL;
  nghttp2_option_set_no_auto_window_update(opt, 1);
  /* CVE-2023-44487 (rapid reset): RST_STREAMs beyond this token bucket get
   * GOAWAY. */
  nghttp2_option_set_stream_reset_rate_limit(opt, conf->h2_stream_reset_burst,
                                             conf->h2_stream_reset_rate);
  /* CVE-2024-28182: a header block may not go on forever; allow enough
   * CONTINUATION frames for max_header_bytes in full 16 KiB frames. */
  size_t cont = conf->max_header_bytes / 16384 * 2 + 2;
  nghttp2_option_set_max_continuations(opt, cont < 8 ? 8 : cont);
  nghttp2_option_set_max_settings(opt, H2_MAX_SETTINGS);
  /* PING and SETTINGS floods (CVE-2019-9512, -9515): nghttp2's default
   * max_outbound_ack (1000 unsent ACKs) ends the session with
   * NGHTTP2_ERR_FLOODED; kept as it is. */
  return opt;
}

static nghttp2_session_callbacks *h2_callbacks(void) {
  nghttp2_session_callbacks *cb;
  if (nghttp2_session_callbacks_new(&cb) != 0) return NULL;
  nghttp2_session_callbacks_set_on_begin_frame_callback(cb, h2_on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h2_on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_on_frame_recv);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, h2_on_invalid_frame);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, h2_on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_on_stream_close);
  nghttp2_session_callbacks_set_error_callback2(cb, h2_on_error);
  return cb;
}

/* See h2.h. host is borrowed for the front end's life. */
pst_app_t *pst_h2_app_new(pst_host_t *host) {
  const pst_listener_conf_t *conf = host->lc;
  h2_front_t *h2 = calloc(1, sizeof(*h2));
  if (h2 == NULL) return NULL;
  h2->base.ops = &h2_front_ops;
  h2->base.host = host;
  h2->conf = conf;
  h2->last_id = -1;
  h2->priority_budget = H2_PRIORITY_BURST;
  h2->max_streams = conf->h2_max_concurrent_streams;
  h2->patch_settings = 1;
  h2->early_tokens = (uint64_t)conf->h2_stream_reset_burst * 1000;
  h2->early_at = uv_hrtime() / 1000000;
  nghttp2_session_callbacks *cb = h2_callbacks();
  nghttp2_option *opt = h2_options(conf);
  int rv = cb != NULL && opt != NULL
               ? nghttp2_session_server_new3(&h2->session, cb, h2, opt, pst_h2_mem())
               : NGHTTP2_ERR_NOMEM;
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) goto fail_h2;

  uint32_t max_list =
      conf->max_header_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)conf->max_header_bytes;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h2_session_limit(h2->max_streams)},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, max_list},
  };
  /* No SETTINGS_NO_RFC7540_PRIORITIES (RFC 9218 2.1): with it, nghttp2 1.52
   * skips PRIORITY frames unread and forgets a stream the moment it closes,
   * so a stream depending on itself (RFC 9113 5.3.1) or a PRIORITY on
   * stream 0 (6.3) draws no PROTOCOL_ERROR, and DATA or HEADERS on a stream
   * the client closed draws no STREAM_CLOSED (5.1) because it cannot be told
   * from one we reset (whose late frames must be ignored). What the setting
   * saved, measured on 1.52: 224 bytes per stream nghttp2 keeps, closed ones
   * up to the session's stream limit and idle ones (named by PRIORITY) up to
   * 100, all freed as new streams come; and about 90 ns of nghttp2's time
   * per request. Bounded per connection, like the streams themselves; the
   * PRIORITY frames that now cost work have their own budget
   * (h2_limits.c). */
  /* The connection window (RFC 9113 6.9.2: 65,535 until raised) holds every
   * stream's window: each stream is bounded on its own, and one stalled
   * upload must not stall the others. */
  uint64_t win = (uint64_t)H2_STREAM_WINDOW * (h2->max_streams > 0 ? h2->max_streams : 1);
  if (win > NGHTTP2_MAX_WINDOW_SIZE) win = NGHTTP2_MAX_WINDOW_SIZE;
  if (nghttp2_submit_settings(h2->session, NGHTTP2_FLAG_NONE, iv, PST_ARRAY_SIZE(iv)) != 0 ||
      nghttp2_session_set_local_window_size(h2->session, NGHTTP2_FLAG_NONE, 0, (int32_t)win) != 0) {
    goto fail_session;
  }
  /* Server connection preface (RFC 9113 3.4): our SETTINGS go out now. A
   * failed send leaves the connection closing; it destroys us later. */
  h2_enter(h2);
  h2_flush(h2);
  h2->depth--;
  return &h2->base;

fail_session:
  nghttp2_session_del(h2->session);
fail_h2:
  free(h2);
  return NULL;
}
