/* postern: internals shared by src/h2.c (the HTTP/2 front end: the nghttp2
 * session, its callbacks, responses and output) and src/h2_req.c (the
 * per-stream record and the request it assembles from a header block). Not a
 * public header: nothing outside these two files uses it. */
#ifndef POSTERN_H2_INT_H
#define POSTERN_H2_INT_H

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "postern/buf.h"
#include "postern/config-t.h"
#include "postern/app-t.h"
#include "postern/http-t.h"
#include "postern/stream.h"

#define H2_ID_WINDOW 1024 /* client stream ids remembered below the highest */

typedef struct h2_front_s h2_front_t;

/* Why a request cannot be forwarded; found while its fields arrive and
 * answered once the header block is complete. */
typedef enum {
  H2_REQ_OK = 0,
  H2_REQ_TOO_LARGE = 1, /* header list over max_header_bytes: 431 */
  H2_REQ_MALFORMED = 2, /* Host differs from :authority, a :scheme other than http(s)
                         * (RFC 9113 8.3.1), CONNECT: stream error */
  H2_REQ_NOMEM = 3,     /* RST_STREAM INTERNAL_ERROR */
} h2_req_error_t;

/* One request stream: created on its first HEADERS frame, freed when
 * nghttp2 closes the stream (or with the front end). */
typedef struct h2_stream_s {
  h2_front_t *h2;
  struct h2_stream_s *prev, *next;
  int32_t id;
  pst_stream_t *s;                 /* the exchange with the backend, NULL before and after */
  pst_http_request_t *req;         /* being built until the header block ends */
  char *method, *path, *authority; /* kept for the access log: owned until the request
                                    * takes them (names_moved), then in names */
  pst_buf_t names;                 /* copies of the three for the log, once moved */
  pst_buf_t cookie;                /* cookie crumbs joined with "; " (RFC 9113 8.2.3) */
  size_t field_bytes;              /* header list size so far (RFC 9113 6.5.2) */
  h2_req_error_t error;
  pst_buf_t out;      /* response body bytes waiting for the data provider */
  size_t unconsumed;  /* request DATA given to the stream, not yet consumed */
  uint64_t remaining; /* response body bytes still due (content-length) */
  int status;         /* response status submitted, 0 until then */
  uint64_t bytes_in, bytes_out, t_start_ns;
  unsigned has_authority : 1;
  unsigned names_moved : 1;   /* req owns the strings; method, path, authority point into names */
  unsigned has_length : 1;    /* content-length in the request */
  unsigned head_done : 1;     /* the request header block is complete */
  unsigned req_done : 1;      /* END_STREAM from the client */
  unsigned head_request : 1;  /* HEAD: no response body (RFC 9110 9.3.2) */
  unsigned expect : 1;        /* expect: 100-continue */
  unsigned continued : 1;     /* a 100 (Continue) went to the client */
  unsigned head_sent : 1;     /* the final response head was submitted */
  unsigned body_ok : 1;       /* the response may have content (not HEAD, 204, 304) */
  unsigned by_length : 1;     /* the response body is delimited by content-length */
  unsigned out_eof : 1;       /* no more response body will be appended */
  unsigned deferred : 1;      /* the data provider returned NGHTTP2_ERR_DEFERRED */
  unsigned paused : 1;        /* pst_stream_pause(s, 1) is in effect */
  unsigned start_pending : 1; /* the head is complete and its exchange not started: it
                               * waits for the first DATA, END_STREAM, or the end of the
                               * bytes fed (h2_start_pending) */
  unsigned resp_done : 1;     /* the response's last frame (END_STREAM) went out */
  unsigned detached : 1;      /* nghttp2 closed the stream after the whole response was
                               * here; waiting for the exchange's on_end */
} h2_stream_t;

struct h2_front_s {
  pst_app_t base;
  nghttp2_session *session;
  const pst_listener_conf_t *conf;
  h2_stream_t *streams; /* every open stream, and the detached ones */
  size_t n_streams;
  size_t n_detached;
  size_t n_pending; /* streams with start_pending set */
  /* Streams ended before their response, whoever ended them: a token
   * bucket in thousandths of a stream (h2_count_early_end). */
  uint64_t early_tokens;
  uint64_t early_at;              /* when it was last refilled, in ms (uv_hrtime) */
  uint32_t max_streams;           /* SETTINGS_MAX_CONCURRENT_STREAMS as the client sees it */
  uint32_t priority_budget;       /* PRIORITY frames still allowed (h2_count_priority) */
  int64_t last_id;                /* highest client stream id seen in a HEADERS frame, -1: none */
  uint8_t used[H2_ID_WINDOW / 8]; /* which of the ids below last_id the client used */
  pst_buf_t wbuf;                 /* output pulled from nghttp2, not yet handed to the host */
  size_t out_total;               /* response bytes every stream's out buffer holds */
  int depth;                      /* entry points on the stack */
  unsigned destroyed : 1;         /* destroy ran: free once depth is 0 */
  unsigned ended : 1;             /* the host's end or close was called: no more output */
  unsigned client_eof : 1;
  unsigned out_pressed : 1;    /* out_total went over H2_CONN_OUT_HIGH, not yet under LOW */
  unsigned goaway : 1;         /* shutdown submitted GOAWAY */
  unsigned patch_settings : 1; /* our first SETTINGS frame is still to go out */
  unsigned calm : 1; /* GOAWAY ENHANCE_YOUR_CALM: too many streams ended early, or PRIORITY
                      * frames */
};

/* ---- allocator (h2_mem.c) ------------------------------------------------ */

/* The allocator every front-end session uses (nghttp2_session_server_new3):
 * small blocks from per-thread free lists (fl.h). Static; never NULL. */
nghttp2_mem *pst_h2_mem(void);

/* ---- abuse budgets (h2_limits.c) ---------------------------------------- */

/* PRIORITY frames a connection may send (h2_count_priority): a burst, and
 * more for each stream it opens, up to a ceiling. */
#define H2_PRIORITY_BURST 1000
#define H2_PRIORITY_PER_STREAM 4
#define H2_PRIORITY_MAX 10000

/* Checks the header of every frame the client sends, before its payload
 * (nghttp2's on_begin_frame): a HEADERS frame on a stream id the client
 * skipped is a connection error, and PRIORITY frames draw on the
 * connection's budget. Ends the session (GOAWAY) when either is broken. */
void pst_h2_limit_frame(h2_front_t *h2, const nghttp2_frame_hd *hd);

/* A stream ended before its response was complete, whoever ended it: one
 * token of the listener's h2.stream_reset_rate/_burst budget, or GOAWAY
 * ENHANCE_YOUR_CALM when there is none left. */
void pst_h2_count_early_end(h2_front_t *h2);

/* ---- per-stream data (h2_req.c) ------------------------------------------ */

/* Allocates the record of client stream id, with an empty request to fill
 * (st->req), and links it into h2's list. Returns it, owned by h2 until
 * pst_h2_stream_del(), or NULL when out of memory. */
h2_stream_t *pst_h2_stream_new(h2_front_t *h2, int32_t id);

/* Unlinks st from h2's list and frees it with all it holds; its exchange
 * (st->s) must be gone already. */
void pst_h2_stream_del(h2_front_t *h2, h2_stream_t *st);

/* ---- request assembly (h2_req.c) ----------------------------------------- */

/* Takes one field of a request header block into st: pseudo-fields into
 * method, path and authority, Host checked against :authority (a mismatch
 * sets st->error to H2_REQ_MALFORMED), cookie crumbs joined (RFC 9113
 * 8.2.3), the rest into st->req's header list. nghttp2 has validated the
 * field (RFC 9113 8.2, 8.3). Returns 0 or -ENOMEM. name and value are
 * borrowed (copied when kept). */
int pst_h2_add_field(h2_stream_t *st, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen);

/* Completes st->req from the fields collected (method, target, authority,
 * the joined cookie, framing from END_STREAM and content-length). Returns 0
 * or -ENOMEM; st->req stays owned by st either way. */
int pst_h2_build_request(h2_stream_t *st, int end_stream);

#endif
