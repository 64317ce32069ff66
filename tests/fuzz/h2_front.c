/* postern fuzz target: the HTTP/2 front end (src/h2.c, src/h2_req.c) fed a
 * client's raw bytes through nghttp2, as the application of a fake
 * connection (no socket, no TLS), the way tests/unit/test_h2.c runs it: a
 * pst_host_t of the harness's own whose send takes the front end's output
 * (read at once by the "client", so output never backs up), and fakes of
 * the stream API (pst_stream_*) and of the access log, so the harness plays
 * the backend. The Makefile links h2.c's objects without stream.o, pool.o
 * and access_log.o (FUZZ_h2_front_OBJS).
 *
 * Input: one control byte, then the client's bytes after its preface, which
 * the harness sends first so that every input reaches frames. They are fed
 * in pieces (the control byte's low nibble, times 16; 0: all at once); after
 * each piece the backend answers the streams started so far as the control
 * byte's high nibble says (a head with or without a body, an interim 103
 * first, a 502, or nothing). At the end the client's side ends (every other
 * input) and the connection closes, which must free every stream.
 *
 * h2.c's reset budget reads the clock (uv_hrtime): this binary's uv_hrtime
 * is a counter that starts again with every input, so that a run does not
 * depend on how fast it goes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/access_log.h"
#include "postern/app-t.h"
#include "postern/buf.h"
#include "postern/common.h"
#include "postern/h2.h"
#include "postern/http.h"
#include "postern/log.h"
#include "postern/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PST_FUZZ_STREAMS 1024

/* ---- the clock ---- */

static uint64_t pst_fuzz_now_ns;

uint64_t uv_hrtime(void) {
  pst_fuzz_now_ns += 1000000; /* a millisecond per reading */
  return pst_fuzz_now_ns;
}

/* ---- the fake connection ---- */

static struct {
  pst_host_t host;
  pst_listener_conf_t conf;
  pst_backend_conf_t backend;
  pst_app_t *front;
  size_t out; /* bytes sent to the client */
  int closed;
} g;

static int host_send(pst_host_t *h, const char *data, size_t len) {
  if (len == 0 || len > 16384) abort(); /* one TLS record at most */
  if (g.closed) return PST_ESHUTDOWN;
  g.out += len;
  return 0;
}

static size_t host_queued(const pst_host_t *h) { return 0; }
static void host_pause(pst_host_t *h, int pause) {}
static void host_end(pst_host_t *h) {}

static void host_close(pst_host_t *h, int err, const char *reason) {
  if (reason == NULL) abort();
  g.closed = 1;
}

__attribute__((format(printf, 2, 3))) static const char *host_why(pst_host_t *h, const char *fmt,
                                                                  ...) {
  static char why[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  return why;
}

static pst_host_phase_t host_phase(const pst_host_t *h) {
  return g.closed ? PST_HOST_CLOSING : PST_HOST_OPEN;
}

static void host_touch(pst_host_t *h) {}
static void host_waiting(pst_host_t *h, int delta) {}
static void host_head(pst_host_t *h, int started) {}

static void host_facts(pst_host_t *h, pst_info_facts_t *f) {
  memset(f, 0, sizeof(*f));
  f->listener = "main";
  f->client = "192.0.2.1:50000";
  f->alpn = "h2";
  f->version = "TLSv1.3";
}

static const pst_host_ops_t host_ops = {
    .send = host_send,
    .queued = host_queued,
    .pause = host_pause,
    .end = host_end,
    .close = host_close,
    .why = host_why,
    .phase = host_phase,
    .touch = host_touch,
    .waiting = host_waiting,
    .facts = host_facts,
    .head = host_head,
};

void pst_access_log(const pst_host_t *h, const char *proto, const pst_http_request_t *req,
                    int status, uint64_t bytes_in, uint64_t bytes_out, uint64_t t_start_ns) {
  if (h != &g.host || req == NULL || req->method == NULL || req->target == NULL) abort();
}

/* ---- fake streams: the harness is the backend ---- */

typedef struct {
  pst_stream_t pub;
  int answered; /* 0: nothing yet, 1: interim sent, 2: final head sent */
} pst_fuzz_stream_t;

static pst_fuzz_stream_t *streams[PST_FUZZ_STREAMS];
static size_t n_streams, n_started;

pst_stream_t *pst_stream_start(pst_host_t *host, const pst_stream_ops_t *ops, void *front,
                               int32_t h2_id, pst_http_request_t *req) {
  if (host != &g.host || req == NULL) abort();
  pst_fuzz_stream_t *f = n_streams < PST_FUZZ_STREAMS ? calloc(1, sizeof(*f)) : NULL;
  if (f == NULL) {
    pst_http_request_free(req);
    free(req);
    return NULL;
  }
  f->pub.host = host;
  f->pub.ops = ops;
  f->pub.front = front;
  f->pub.h2_id = h2_id;
  f->pub.req = req;
  f->pub.req_done = req->body == PST_BODY_NONE;
  streams[n_streams++] = f;
  n_started++;
  return &f->pub;
}

int pst_stream_body(pst_stream_t *s, const char *data, size_t len) {
  if (s->req_done) abort(); /* no body after its end */
  s->bytes_in += len;
  return 0;
}

int pst_stream_body_end(pst_stream_t *s) {
  s->req_done = 1;
  return 0;
}

size_t pst_stream_queued(const pst_stream_t *s) { return 0; }

void pst_stream_pause(pst_stream_t *s, int pause) {
  if (s->resp_paused == !!pause) abort(); /* pause and resume alternate */
  s->resp_paused = !!pause;
}

int pst_stream_tunnel_write(pst_stream_t *s, const char *data, size_t len) { return PST_EPROTO; }

void pst_stream_free(pst_stream_t *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < n_streams; i++) {
    if (&streams[i]->pub != s) continue;
    pst_http_request_free(s->req);
    free(s->req);
    free(streams[i]);
    streams[i] = streams[--n_streams];
    return;
  }
  abort(); /* freed twice, or never started */
}

static pst_fuzz_stream_t *pst_fuzz_find(int32_t id) {
  for (size_t i = 0; i < n_streams; i++) {
    if (streams[i]->pub.h2_id == id) return streams[i];
  }
  return NULL;
}

/* A response head as stream.c hands it over: framing already parsed. */
static int pst_fuzz_head(pst_fuzz_stream_t *f, int status, pst_body_kind_t body, uint64_t len) {
  pst_http_response_t *r = calloc(1, sizeof(*r));
  if (r == NULL) abort();
  r->status = status;
  r->body = body;
  r->content_length = len;
  r->keep_alive = 1;
  if (pst_headers_add(&r->headers, "content-type", 12, "text/plain", 10) != 0) abort();
  if (status >= 200) {
    f->pub.head_sent = 1;
    f->pub.status = status;
    f->pub.state = PST_STREAM_RECEIVING;
  }
  return f->pub.ops->on_head(&f->pub, r);
}

/* The backend answers stream id as how says; the stream may be freed by
 * any callback, so it is looked up again after each. */
static void pst_fuzz_answer(int32_t id, unsigned how) {
  static const char body[] = "0123456789abcdef0123456789abcdef";
  pst_fuzz_stream_t *f = pst_fuzz_find(id);
  if (f == NULL || how == 0) return;
  if (how == 7) {
    f->pub.state = PST_STREAM_DONE;
    f->pub.ops->on_error(&f->pub, f->pub.head_sent ? 0 : 502, "fuzz");
    return;
  }
  if (f->answered == 0 && how >= 4) {
    f->answered = 1;
    if (pst_fuzz_head(f, 103, PST_BODY_NONE, 0) != 0) return;
    if ((f = pst_fuzz_find(id)) == NULL) return;
  }
  if (f->answered < 2) {
    static const int statuses[4] = {200, 204, 404, 500};
    static const pst_body_kind_t kinds[4] = {PST_BODY_LENGTH, PST_BODY_NONE, PST_BODY_CHUNKED,
                                             PST_BODY_UNTIL_CLOSE};
    f->answered = 2;
    pst_body_kind_t kind = kinds[how & 3];
    if (pst_fuzz_head(f, statuses[how & 3], kind, kind == PST_BODY_LENGTH ? 32 : 0) != 0) return;
    if ((f = pst_fuzz_find(id)) == NULL) return;
    if (kind != PST_BODY_NONE && !f->pub.resp_paused) {
      if (f->pub.ops->on_body(&f->pub, body, 32) != 0) return;
      if ((f = pst_fuzz_find(id)) == NULL) return;
    }
  }
  if (!f->pub.req_done || f->pub.resp_paused) return; /* the end waits */
  f->pub.state = PST_STREAM_DONE;
  f->pub.ops->on_end(&f->pub);
}

static void pst_fuzz_backend(unsigned how) {
  int32_t ids[PST_FUZZ_STREAMS];
  size_t n = n_streams;
  for (size_t i = 0; i < n; i++) ids[i] = streams[i]->pub.h2_id;
  for (size_t i = 0; i < n && !g.closed; i++) pst_fuzz_answer(ids[i], (how + (unsigned)i) & 7);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  if (size < 1) return 0;
  pst_log_set_level(PST_LOG_ERROR);
  memset(&g, 0, sizeof(g));
  n_streams = n_started = 0;
  pst_fuzz_now_ns = 1000000000;
  size_t piece = (size_t)(data[0] & 15) * 16;
  unsigned how = data[0] >> 4;
  g.conf.name = "main";
  g.conf.mode = PST_MODE_HTTP;
  g.conf.max_header_bytes = 8192;
  g.conf.h2_max_concurrent_streams = 16;
  g.conf.h2_stream_reset_rate = 100;
  g.conf.h2_stream_reset_burst = 20;
  g.backend.kind = PST_BACKEND_ADDR;
  g.host = (pst_host_t){
      .ops = &host_ops,
      .id = 1,
      .lc = &g.conf,
      .backend = &g.backend,
      .peer = "192.0.2.1:50000",
      .peer_ip = "192.0.2.1",
      .sni = "example.com",
  };
  g.front = pst_h2_app_new(&g.host);
  if (g.front == NULL) return 0;
  g.front->ops->feed(g.front, preface, sizeof(preface) - 1);
  const char *in = (const char *)data + 1;
  size_t len = size - 1, off = 0;
  while (off < len && !g.closed) {
    size_t n = piece == 0 || piece > len - off ? len - off : piece;
    int rc = g.front->ops->feed(g.front, in + off, n);
    off += n;
    if (rc != 0) break;
    g.front->ops->drain(g.front);
    pst_fuzz_backend(how);
  }
  if (!g.closed && (how & 1)) {
    g.front->ops->client_eof(g.front);
    pst_fuzz_backend(how + 1);
  }
  if (g.front->ops->closing != NULL) {
    g.closed = 1;
    g.front->ops->closing(g.front);
  }
  g.closed = 1;
  g.front->ops->destroy(g.front);
  if (n_streams != 0) abort(); /* destroy frees every stream */
  /* POSTERN_FUZZ_VERBOSE=1: what an input reached, to check a seed. */
  if (getenv("POSTERN_FUZZ_VERBOSE") != NULL) {
    fprintf(stderr, "h2_front: %zu streams started, %zu bytes sent, %s\n", n_started, g.out,
            g.closed ? "closed" : "open");
  }
  return 0;
}
