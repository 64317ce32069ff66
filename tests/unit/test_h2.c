/* Unit tests for the HTTP/2 front end (src/h2.c). A real nghttp2 client
 * session talks to the front end, created with pst_h2_app_new on a fake
 * connection: a pst_host_t of the test's own whose services (pst_host_ops_t)
 * capture the output, "queued" until the test's client reads it. The
 * stream API (pst_stream_*) and the access log (pst_access_log) are faked
 * too: requests are recorded and the test plays the backend by calling the
 * stream ops. The Makefile links this test with h2.c and the objects it
 * needs, without stream.o, pool.o and access_log.o (TEST_h2_OBJS), so a
 * fake that duplicates a real definition is a link error, not a choice made
 * by link order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "postern/access_log.h"
#include "postern/app-t.h"
#include "postern/common.h"
#include "postern/h2.h"
#include "postern/http.h"
#include "postern/info.h"
#include "postern/stream.h"

#define MAX_STREAMS 512
#define KIB 1024

/* ---- fake connection ---------------------------------------------------- */

typedef struct {
  char method[16], path[64];
  int status;
  uint64_t bytes_in, bytes_out;
} log_entry_t;

static struct {
  pst_host_t host;
  pst_listener_conf_t conf;
  pst_backend_conf_t backend;
  pst_app_t *front;
  pst_buf_t out; /* sent to the client, not yet read by it */
  int reading;   /* the test client reads what is sent */
  size_t sends, max_send, sent;
  int ended, closed, close_err;
  int in_head, heads_begun; /* the head service: a header block under way, and how many began */
  int paused, touches, waiting;
  log_entry_t log[MAX_STREAMS];
  size_t n_log;
} g;

static int host_send(pst_host_t *h, const char *data, size_t len) {
  assert_ptr_equal(h, &g.host);
  assert_true(len > 0 && len <= 16384); /* one TLS record at most */
  if (g.closed) return PST_ESHUTDOWN;
  g.sends++;
  g.sent += len;
  if (len > g.max_send) g.max_send = len;
  assert_int_equal(pst_buf_append(&g.out, data, len), 0);
  return 0;
}

static size_t host_queued(const pst_host_t *h) {
  assert_ptr_equal(h, &g.host);
  return g.out.len;
}

static void host_pause(pst_host_t *h, int pause) {
  assert_ptr_equal(h, &g.host);
  g.paused = !!pause;
}

static void host_end(pst_host_t *h) {
  assert_ptr_equal(h, &g.host);
  g.ended++;
}

static void host_close(pst_host_t *h, int err, const char *reason) {
  assert_ptr_equal(h, &g.host);
  assert_non_null(reason);
  g.closed++;
  g.close_err = err;
}

/* Formats into one static buffer, as the real one reuses one per connection
 * (PST_CONN_WHY_LEN bytes). */
__attribute__((format(printf, 2, 3))) static const char *host_why(pst_host_t *h, const char *fmt,
                                                                  ...) {
  static char why[160];
  assert_ptr_equal(h, &g.host);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  return why;
}

static pst_host_phase_t host_phase(const pst_host_t *h) {
  assert_ptr_equal(h, &g.host);
  return g.closed ? PST_HOST_CLOSING : PST_HOST_OPEN;
}

static void host_touch(pst_host_t *h) {
  assert_ptr_equal(h, &g.host);
  g.touches++;
}

static void host_waiting(pst_host_t *h, int delta) {
  assert_ptr_equal(h, &g.host);
  g.waiting += delta;
  assert_true(g.waiting >= 0);
}

static void host_head(pst_host_t *h, int started) {
  assert_ptr_equal(h, &g.host);
  if (started && !g.in_head) g.heads_begun++;
  g.in_head = !!started;
}

static void host_facts(pst_host_t *h, pst_info_facts_t *f) {
  assert_ptr_equal(h, &g.host);
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
  assert_ptr_equal(h, &g.host);
  assert_string_equal(proto, "h2");
  assert_true(g.n_log < MAX_STREAMS);
  log_entry_t *e = &g.log[g.n_log++];
  snprintf(e->method, sizeof(e->method), "%s", req->method);
  snprintf(e->path, sizeof(e->path), "%s", req->target);
  e->status = status;
  e->bytes_in = bytes_in;
  e->bytes_out = bytes_out;
}

/* ---- fake streams: the test is the backend ----------------------------- */

typedef struct {
  pst_stream_t pub;
  pst_buf_t body; /* request body received */
  size_t queued;  /* body not yet "written to the backend" */
  int body_end, freed, pauses, resumes;
} fstream_t;

static fstream_t *fs[MAX_STREAMS];
static size_t n_fs;
static int start_fails;

pst_stream_t *pst_stream_start(pst_host_t *host, const pst_stream_ops_t *ops, void *front,
                               int32_t h2_id, pst_http_request_t *req) {
  assert_ptr_equal(host, &g.host);
  if (start_fails) {
    pst_http_request_free(req);
    free(req);
    return NULL;
  }
  assert_true(n_fs < MAX_STREAMS);
  fstream_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->pub.host = host;
  f->pub.ops = ops;
  f->pub.front = front;
  f->pub.h2_id = h2_id;
  f->pub.req = req;
  f->pub.req_done = req->body == PST_BODY_NONE;
  fs[n_fs++] = f;
  return &f->pub;
}

int pst_stream_body(pst_stream_t *s, const char *data, size_t len) {
  fstream_t *f = (fstream_t *)s;
  assert_false(f->freed);
  assert_false(f->body_end);
  assert_int_equal(pst_buf_append(&f->body, data, len), 0);
  f->queued += len;
  return 0;
}

int pst_stream_body_end(pst_stream_t *s) {
  fstream_t *f = (fstream_t *)s;
  assert_false(f->freed);
  f->body_end = 1;
  return 0;
}

size_t pst_stream_queued(const pst_stream_t *s) { return ((const fstream_t *)s)->queued; }

void pst_stream_pause(pst_stream_t *s, int pause) {
  fstream_t *f = (fstream_t *)s;
  assert_false(f->freed);
  assert_int_not_equal(s->resp_paused, !!pause); /* pause and resume alternate */
  s->resp_paused = !!pause;
  if (pause)
    f->pauses++;
  else
    f->resumes++;
}

int pst_stream_tunnel_write(pst_stream_t *s, const char *data, size_t len) { return PST_EPROTO; }

void pst_stream_free(pst_stream_t *s) {
  if (s == NULL) return;
  fstream_t *f = (fstream_t *)s;
  assert_false(f->freed); /* exactly once */
  f->freed = 1;
}

/* The backend's side, as stream.c would deliver it. */
static fstream_t *stream_for(int32_t id) {
  for (size_t i = 0; i < n_fs; i++) {
    if (fs[i]->pub.h2_id == id) return fs[i];
  }
  fail_msg("no stream started for h2 stream %d", id);
  return NULL;
}

static int be_head(fstream_t *f, int status, pst_body_kind_t body, uint64_t len, ...) {
  assert_false(f->freed);
  pst_http_response_t *r = calloc(1, sizeof(*r));
  assert_non_null(r);
  r->status = status;
  r->body = body;
  r->content_length = len;
  va_list ap;
  va_start(ap, len);
  for (const char *n; (n = va_arg(ap, const char *)) != NULL;) {
    const char *v = va_arg(ap, const char *);
    assert_int_equal(pst_headers_add(&r->headers, n, strlen(n), v, strlen(v)), 0);
  }
  va_end(ap);
  if (status >= 200) {
    f->pub.head_sent = 1;
    f->pub.status = status;
  }
  return f->pub.ops->on_head(&f->pub, r);
}

static void be_body(fstream_t *f, const char *data, size_t len) {
  assert_false(f->freed);
  assert_int_equal(f->pub.ops->on_body(&f->pub, data, len), 0);
}

static void be_end(fstream_t *f) {
  assert_false(f->freed);
  f->pub.state = PST_STREAM_DONE;
  f->pub.ops->on_end(&f->pub);
  assert_true(f->freed);
}

static void be_error(fstream_t *f, int status) {
  assert_false(f->freed);
  f->pub.state = PST_STREAM_DONE;
  f->pub.ops->on_error(&f->pub, status, "test");
  assert_true(f->freed);
}

/* ---- the test's HTTP/2 client ------------------------------------------ */

typedef struct {
  int status, interim, end, closed;
  uint32_t close_code, rst_code;
  int rst;
  char fields[2048]; /* "name: value\n" for every response field */
  pst_buf_t body;
} cstream_t;

static struct {
  nghttp2_session *s;
  cstream_t st[MAX_STREAMS];
  int goaway;
  uint32_t goaway_code;
  int32_t goaway_last;
} cli;

static cstream_t *cs(int32_t id) {
  assert_true(id > 0 && id % 2 == 1 && (id - 1) / 2 < MAX_STREAMS);
  return &cli.st[(id - 1) / 2];
}

static int cli_on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                         size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags,
                         void *user) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  cstream_t *c = cs(frame->hd.stream_id);
  if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
    int st = atoi((const char *)value);
    if (st < 200)
      c->interim = st;
    else
      c->status = st;
    return 0;
  }
  size_t used = strlen(c->fields);
  snprintf(c->fields + used, sizeof(c->fields) - used, "%.*s: %.*s\n", (int)nlen, name, (int)vlen,
           value);
  return 0;
}

static int cli_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                       size_t len, void *user) {
  assert_int_equal(pst_buf_append(&cs(id)->body, data, len), 0);
  return 0;
}

static int cli_on_frame(nghttp2_session *s, const nghttp2_frame *frame, void *user) {
  switch (frame->hd.type) {
    case NGHTTP2_GOAWAY:
      cli.goaway++;
      cli.goaway_code = frame->goaway.error_code;
      cli.goaway_last = frame->goaway.last_stream_id;
      break;
    case NGHTTP2_RST_STREAM:
      cs(frame->hd.stream_id)->rst = 1;
      cs(frame->hd.stream_id)->rst_code = frame->rst_stream.error_code;
      break;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) cs(frame->hd.stream_id)->end = 1;
      break;
  }
  return 0;
}

static int cli_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *user) {
  cs(id)->closed = 1;
  cs(id)->close_code = code;
  return 0;
}

/* Moves bytes both ways until neither side has anything more to say. */
static void pump(void) {
  for (int round = 0; round < 100000; round++) {
    int progress = 0;
    const uint8_t *p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(cli.s, &p)) > 0) {
      progress = 1;
      if (g.front != NULL && !g.closed) g.front->ops->feed(g.front, (const char *)p, (size_t)n);
    }
    assert_true(n >= 0);
    if (g.reading && g.out.len > 0) {
      ssize_t r = nghttp2_session_mem_recv(cli.s, (const uint8_t *)pst_buf_head(&g.out), g.out.len);
      assert_int_equal(r, (ssize_t)g.out.len);
      pst_buf_consume(&g.out, g.out.len);
      progress = 1;
      if (g.front != NULL) g.front->ops->drain(g.front);
    }
    if (!progress) return;
  }
  fail_msg("pump did not settle");
}

/* Feeds raw bytes to the front end, as a misbehaving client would. */
static int feed_raw(const void *p, size_t n) { return g.front->ops->feed(g.front, p, n); }

static void frame_hd(uint8_t *b, size_t len, uint8_t type, uint8_t flags, uint32_t id) {
  b[0] = (uint8_t)(len >> 16);
  b[1] = (uint8_t)(len >> 8);
  b[2] = (uint8_t)len;
  b[3] = type;
  b[4] = flags;
  b[5] = (uint8_t)(id >> 24);
  b[6] = (uint8_t)(id >> 16);
  b[7] = (uint8_t)(id >> 8);
  b[8] = (uint8_t)id;
}

/* A request body served from memory; DEFERRED until the test allows more. */
typedef struct {
  const char *data;
  size_t len, off, allowed;
  int eof_ok;
} body_src_t;

static ssize_t cli_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                             uint32_t *flags, nghttp2_data_source *src, void *user) {
  body_src_t *b = src->ptr;
  size_t left = b->allowed - b->off;
  size_t n = left < length ? left : length;
  memcpy(buf, b->data + b->off, n);
  b->off += n;
  if (b->off == b->len && b->eof_ok) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
  }
  if (n == 0) return NGHTTP2_ERR_DEFERRED;
  return (ssize_t)n;
}

#define NV(n, v) \
  { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }

/* Submits a request: method, path, authority (NULL: none), then extra
 * name/value pairs up to NULL. */
static int32_t request(const char *method, const char *path, const char *authority,
                       body_src_t *body, ...) {
  nghttp2_nv nva[32];
  size_t n = 0;
  nva[n++] = (nghttp2_nv)NV(":method", method);
  if (path != NULL) nva[n++] = (nghttp2_nv)NV(":path", path);
  if (path != NULL) nva[n++] = (nghttp2_nv)NV(":scheme", "https");
  if (authority != NULL) nva[n++] = (nghttp2_nv)NV(":authority", authority);
  va_list ap;
  va_start(ap, body);
  for (const char *name; (name = va_arg(ap, const char *)) != NULL;) {
    const char *v = va_arg(ap, const char *);
    nva[n++] =
        (nghttp2_nv){(uint8_t *)name, (uint8_t *)v, strlen(name), strlen(v), NGHTTP2_NV_FLAG_NONE};
  }
  va_end(ap);
  nghttp2_data_provider prd = {.source.ptr = body, .read_callback = cli_read_body};
  int32_t id = nghttp2_submit_request(cli.s, NULL, nva, n, body ? &prd : NULL, NULL);
  assert_true(id > 0);
  return id;
}

/* ---- setup ------------------------------------------------------------- */

typedef struct {
  size_t max_header_bytes;
  unsigned streams, reset_rate, reset_burst;
  int info;
  uint32_t client_window; /* client's SETTINGS_INITIAL_WINDOW_SIZE, 0: default */
  int zero_window;        /* client's SETTINGS_INITIAL_WINDOW_SIZE is 0 */
  int no_pump;            /* leave the prefaces unexchanged */
} opts_t;

static void start(opts_t o) {
  memset(&g, 0, sizeof(g));
  memset(&cli, 0, sizeof(cli));
  n_fs = 0;
  start_fails = 0;
  g.conf.name = "main";
  g.conf.mode = PST_MODE_HTTP;
  g.conf.max_header_bytes = o.max_header_bytes ? o.max_header_bytes : 32768;
  g.conf.h2_max_concurrent_streams = o.streams ? o.streams : 128;
  g.conf.h2_stream_reset_rate = o.reset_rate ? o.reset_rate : 100;
  g.conf.h2_stream_reset_burst = o.reset_burst ? o.reset_burst : 200;
  g.backend.kind = o.info ? PST_BACKEND_BUILTIN_INFO : PST_BACKEND_ADDR;
  g.host = (pst_host_t){
      .ops = &host_ops,
      .id = 1,
      .lc = &g.conf,
      .backend = &g.backend,
      .peer = "192.0.2.1:50000",
      .peer_ip = "192.0.2.1",
      .sni = "example.com",
  };
  g.reading = 1;

  g.front = pst_h2_app_new(&g.host);
  assert_non_null(g.front);
  assert_true(g.out.len > 0); /* SETTINGS went out at once */

  nghttp2_session_callbacks *cb;
  assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
  nghttp2_session_callbacks_set_on_header_callback(cb, cli_on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cli_on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cli_on_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, cli_on_close);
  assert_int_equal(nghttp2_session_client_new(&cli.s, cb, NULL), 0);
  nghttp2_session_callbacks_del(cb);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, o.zero_window ? 0
                                                                        : o.client_window
                                                                            ? o.client_window
                                                                            : 65535}};
  assert_int_equal(nghttp2_submit_settings(cli.s, NGHTTP2_FLAG_NONE, iv, 1), 0);
  if (o.client_window) {
    assert_int_equal(
        nghttp2_session_set_local_window_size(cli.s, NGHTTP2_FLAG_NONE, 0, 64 * 1024 * 1024), 0);
  }
  if (!o.no_pump) pump();
}

static int teardown(void **state) {
  if (g.front != NULL) g.front->ops->destroy(g.front);
  g.front = NULL;
  for (size_t i = 0; i < n_fs; i++) {
    assert_true(fs[i]->freed); /* destroy aborts whatever is left */
    pst_http_request_free(fs[i]->pub.req);
    free(fs[i]->pub.req);
    pst_buf_free(&fs[i]->body);
    free(fs[i]);
  }
  n_fs = 0;
  for (size_t i = 0; i < MAX_STREAMS; i++) pst_buf_free(&cli.st[i].body);
  nghttp2_session_del(cli.s);
  cli.s = NULL;
  pst_buf_free(&g.out);
  return 0;
}

static int has_field(const cstream_t *c, const char *line) {
  return strstr(c->fields, line) != NULL;
}

/* ---- tests ------------------------------------------------------------- */

static void test_settings(void **state) {
  start((opts_t){.max_header_bytes = 16000, .streams = 77});
  assert_int_equal(
      nghttp2_session_get_remote_settings(cli.s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 77);
  assert_int_equal(nghttp2_session_get_remote_settings(cli.s, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE),
                   256 * KIB);
  assert_int_equal(
      nghttp2_session_get_remote_settings(cli.s, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE), 16000);
  /* The connection window covers every stream's window. */
  assert_int_equal(nghttp2_session_get_remote_window_size(cli.s), 77 * 256 * KIB);
  assert_int_equal(g.ended + g.closed, 0);
}

static void test_get(void **state) {
  start((opts_t){0});
  int32_t id = request("GET", "/a?b=1", "example.com", NULL, "user-agent", "t/1", "accept", "*/*",
                       "te", "trailers", NULL);
  pump();
  assert_int_equal(n_fs, 1);
  /* The header block was a request head, and it is complete
   * (timeouts.request_head no longer runs). */
  assert_int_equal(g.heads_begun, 1);
  assert_false(g.in_head);
  fstream_t *f = stream_for(id);
  const pst_http_request_t *r = f->pub.req;
  assert_string_equal(r->method, "GET");
  assert_string_equal(r->target, "/a?b=1");
  assert_string_equal(r->authority, "example.com");
  assert_int_equal(r->body, PST_BODY_NONE);
  assert_string_equal(pst_headers_get(&r->headers, "user-agent"), "t/1");
  assert_string_equal(pst_headers_get(&r->headers, "accept"), "*/*");
  assert_null(pst_headers_get(&r->headers, "te"));
  assert_null(pst_headers_get(&r->headers, "host"));
  for (size_t i = 0; i < r->headers.n; i++) assert_true(r->headers.v[i].name[0] != ':');

  assert_int_equal(be_head(f, 200, PST_BODY_LENGTH, 5, "Content-Type", "text/plain", "Keep-Alive",
                           "timeout=5", "X-Custom", "1", NULL),
                   0);
  be_body(f, "hello", 5);
  be_end(f);
  pump();
  cstream_t *c = cs(id);
  assert_int_equal(c->status, 200);
  assert_true(has_field(c, "content-type: text/plain\n"));
  assert_true(has_field(c, "x-custom: 1\n"));
  assert_true(has_field(c, "content-length: 5\n"));
  assert_false(has_field(c, "keep-alive"));
  assert_int_equal(c->body.len, 5);
  assert_memory_equal(pst_buf_head(&c->body), "hello", 5);
  assert_true(c->end && c->closed);
  assert_int_equal(c->close_code, NGHTTP2_NO_ERROR);
  assert_int_equal(g.n_log, 1);
  assert_string_equal(g.log[0].method, "GET");
  assert_string_equal(g.log[0].path, "/a?b=1");
  assert_int_equal(g.log[0].status, 200);
  assert_int_equal(g.log[0].bytes_out, 5);
  assert_int_equal(g.ended + g.closed, 0);
}

static void test_cookies_and_authority(void **state) {
  start((opts_t){0});
  int32_t a = request("GET", "/", "www.example.com", NULL, "cookie", "a=1", "x-y", "z", "cookie",
                      "b=2", "cookie", "c=3", NULL);
  int32_t b = request("GET", "/h", NULL, NULL, "host", "host.example", NULL);
  int32_t c = request("GET", "/m", "one.example", NULL, "host", "two.example", NULL);
  int32_t d =
      request("GET", "/u", "user@three.example:8443", NULL, "host", "Three.example:8443", NULL);
  pump();
  const pst_http_request_t *r = stream_for(a)->pub.req;
  assert_string_equal(pst_headers_get(&r->headers, "cookie"), "a=1; b=2; c=3");
  assert_string_equal(r->authority, "www.example.com");
  r = stream_for(b)->pub.req;
  assert_string_equal(r->authority, "host.example");
  assert_null(pst_headers_get(&r->headers, "host"));
  r = stream_for(d)->pub.req;
  assert_string_equal(r->authority, "three.example:8443");
  /* Host naming another origin than :authority: malformed (RFC 9113 8.3.1). */
  assert_int_equal(n_fs, 3);
  assert_true(cs(c)->closed);
  assert_int_equal(cs(c)->close_code, NGHTTP2_PROTOCOL_ERROR);
}

static void test_100_streams(void **state) {
  start((opts_t){0});
  int32_t ids[100];
  for (int i = 0; i < 100; i++) {
    char path[32];
    snprintf(path, sizeof(path), "/s/%d", i);
    ids[i] = request("GET", path, "example.com", NULL, NULL);
  }
  pump();
  assert_int_equal(n_fs, 100);
  /* Answered in reverse order: no stream waits for another. */
  for (int i = 99; i >= 0; i--) {
    fstream_t *f = stream_for(ids[i]);
    char body[32];
    int n = snprintf(body, sizeof(body), "response %d", i);
    assert_int_equal(be_head(f, 200, PST_BODY_STREAM, 0, NULL), 0);
    be_body(f, body, (size_t)n);
    be_end(f);
  }
  pump();
  for (int i = 0; i < 100; i++) {
    cstream_t *c = cs(ids[i]);
    char body[32];
    int n = snprintf(body, sizeof(body), "response %d", i);
    assert_int_equal(c->status, 200);
    assert_int_equal(c->body.len, (size_t)n);
    assert_memory_equal(pst_buf_head(&c->body), body, (size_t)n);
    assert_true(c->end);
  }
  assert_int_equal(g.n_log, 100);
}

static void test_request_body_flow_control(void **state) {
  start((opts_t){0});
  static char data[300 * KIB];
  for (size_t i = 0; i < sizeof(data); i++) data[i] = (char)('a' + i % 26);
  body_src_t src = {.data = data, .len = sizeof(data), .allowed = 200 * KIB, .eof_ok = 1};
  char clen[16];
  snprintf(clen, sizeof(clen), "%zu", sizeof(data));
  int32_t id = request("POST", "/up", "example.com", &src, "content-length", clen, NULL);
  pump();
  fstream_t *f = stream_for(id);
  assert_int_equal(f->pub.req->body, PST_BODY_LENGTH);
  assert_int_equal(f->pub.req->content_length, sizeof(data));
  assert_null(pst_headers_get(&f->pub.req->headers, "content-length"));
  assert_int_equal(f->body.len, 200 * KIB);
  assert_false(f->body_end);
  /* The backend has not taken the bytes: no credit came back beyond what
   * arrived while its queue was short, so the client's window shrank. */
  int32_t win = nghttp2_session_get_stream_remote_window_size(cli.s, id);
  assert_int_equal(win, 256 * KIB - 200 * KIB);
  /* The client cannot send past the window. */
  src.allowed = src.len;
  nghttp2_session_resume_data(cli.s, id);
  pump();
  assert_int_equal(f->body.len, 256 * KIB);
  assert_int_equal(nghttp2_session_get_stream_remote_window_size(cli.s, id), 0);
  /* The backend took everything: on_drain gives the window back. */
  f->queued = 0;
  f->pub.ops->on_drain(&f->pub);
  pump();
  assert_int_equal(f->body.len, sizeof(data));
  assert_memory_equal(pst_buf_head(&f->body), data, sizeof(data));
  assert_true(f->body_end);
  assert_true(cs(id)->end == 0);
  assert_int_equal(be_head(f, 201, PST_BODY_LENGTH, 0, NULL), 0);
  be_end(f);
  pump();
  assert_int_equal(cs(id)->status, 201);
  assert_true(cs(id)->end);
  assert_int_equal(g.log[0].bytes_in, sizeof(data));
  /* 300 KiB went through a 256 KiB stream window: the credit came back. */
}

static void test_request_body_without_length(void **state) {
  start((opts_t){0});
  body_src_t src = {.data = "0123456789", .len = 10, .allowed = 10, .eof_ok = 1};
  int32_t id = request("PUT", "/x", "example.com", &src, NULL);
  pump();
  fstream_t *f = stream_for(id);
  assert_int_equal(f->pub.req->body, PST_BODY_STREAM);
  assert_int_equal(f->body.len, 10);
  assert_true(f->body_end);
}

static void test_response_backpressure(void **state) {
  start((opts_t){.client_window = 16 * 1024 * 1024});
  int32_t id = request("GET", "/big", "example.com", NULL, NULL);
  pump();
  fstream_t *f = stream_for(id);
  assert_int_equal(be_head(f, 200, PST_BODY_STREAM, 0, NULL), 0);
  pump();
  /* A client that does not read: postern holds about two high-water marks
   * (socket + stream buffer), then stops reading the backend. */
  g.reading = 0;
  static char chunk[64 * KIB];
  size_t total = 0;
  unsigned char k = 0;
  while (!f->pub.resp_paused) {
    for (size_t i = 0; i < sizeof(chunk); i++) chunk[i] = (char)(k + i);
    k++;
    be_body(f, chunk, sizeof(chunk));
    total += sizeof(chunk);
    assert_true(total < 1024 * KIB);
  }
  assert_true(total > PST_CLIENT_HIGH_WATER);
  assert_int_equal(f->pauses, 1);
  /* The client reads: the buffer drains and the backend is read again. */
  g.reading = 1;
  pump();
  assert_int_equal(f->resumes, 1);
  assert_false(f->pub.resp_paused);
  for (int j = 0; j < 8; j++) {
    for (size_t i = 0; i < sizeof(chunk); i++) chunk[i] = (char)(k + i);
    k++;
    be_body(f, chunk, sizeof(chunk));
    total += sizeof(chunk);
    pump();
  }
  be_end(f);
  pump();
  cstream_t *c = cs(id);
  assert_true(c->end);
  assert_int_equal(c->body.len, total);
  for (size_t off = 0, j = 0; off < total; off += sizeof(chunk), j++) {
    assert_int_equal((unsigned char)pst_buf_head(&c->body)[off], (unsigned char)j);
  }
  /* Output went out in full records, not one per frame. */
  assert_true(g.max_send == 16384);
  assert_true(g.sends <= g.sent / 16384 + 16);
}

static char pattern_buf[64 * KIB];

/* Fills pattern_buf with bytes that start at k (mod 256). */
static const char *pattern(unsigned char k) {
  for (size_t i = 0; i < sizeof(pattern_buf); i++) pattern_buf[i] = (char)(k + i);
  return pattern_buf;
}

/* A client that keeps its windows at zero: the stream stops reading its
 * backend once it holds more than H2_OUT_MIN (16 KiB), not 256 KiB; a
 * WINDOW_UPDATE lets the bytes go and the backend is read again. */
static void test_zero_window_bounded(void **state) {
  start((opts_t){.zero_window = 1});
  int32_t id = request("GET", "/big", "example.com", NULL, NULL);
  pump();
  fstream_t *f = stream_for(id);
  assert_int_equal(be_head(f, 200, PST_BODY_STREAM, 0, NULL), 0);
  pump();
  assert_int_equal(cs(id)->status, 200); /* HEADERS are not flow-controlled */
  be_body(f, pattern(0), 8 * KIB);
  assert_int_equal(f->pauses, 0);
  be_body(f, pattern(0), 12 * KIB);
  assert_int_equal(f->pauses, 1); /* 20 KiB held: over 16 KiB */
  pump();
  assert_int_equal(cs(id)->body.len, 0);
  /* The window opens: the 20 KiB go, and the backend is read again. */
  assert_int_equal(nghttp2_submit_window_update(cli.s, NGHTTP2_FLAG_NONE, id, 64 * KIB), 0);
  assert_int_equal(nghttp2_submit_window_update(cli.s, NGHTTP2_FLAG_NONE, 0, 64 * KIB), 0);
  pump();
  assert_int_equal(cs(id)->body.len, 20 * KIB);
  assert_int_equal(f->resumes, 1);
  assert_false(f->pub.resp_paused);
  /* From here the client's nghttp2 session keeps the windows open itself
   * (its automatic WINDOW_UPDATE): the rest flows. */
  be_body(f, pattern(1), 64 * KIB);
  pump();
  be_end(f);
  pump();
  assert_true(cs(id)->end);
  assert_int_equal(cs(id)->body.len, 84 * KIB);
}

/* A client with huge windows that stops reading: once the streams hold
 * more than H2_CONN_OUT_HIGH (1 MiB) together, each stream stops at 16 KiB,
 * however many there are; when the client reads again every stream that
 * was held back reads its backend again and every byte arrives. */
static void test_connection_buffer_bounded(void **state) {
  enum { N = 40 };
  start((opts_t){.client_window = 16 * 1024 * 1024});
  int32_t ids[N];
  fstream_t *f[N];
  size_t fed[N];
  for (int i = 0; i < N; i++) ids[i] = request("GET", "/big", "example.com", NULL, NULL);
  pump();
  for (int i = 0; i < N; i++) {
    f[i] = stream_for(ids[i]);
    assert_int_equal(be_head(f[i], 200, PST_BODY_STREAM, 0, NULL), 0);
    fed[i] = 0;
  }
  pump();
  g.reading = 0;
  /* Each stream is fed while it reads its backend (up to 1 MiB). */
  for (int i = 0; i < N; i++) {
    while (!f[i]->pub.resp_paused && fed[i] < 1024 * KIB) {
      be_body(f[i], pattern((unsigned char)(fed[i] / sizeof(pattern_buf))), sizeof(pattern_buf));
      fed[i] += sizeof(pattern_buf);
    }
    assert_true(f[i]->pub.resp_paused);
  }
  size_t total = 0;
  for (int i = 0; i < N; i++) total += fed[i];
  /* The socket's share (PST_CLIENT_HIGH_WATER and a record), about 1 MiB
   * in the streams, then one 64 KiB read per stream. */
  assert_true(total < PST_CLIENT_HIGH_WATER + 1024 * KIB + 320 * KIB + N * 64 * KIB);
  assert_true(fed[N - 1] == 64 * KIB); /* the last streams stopped at once */
  g.reading = 1;
  pump();
  for (int i = 0; i < N; i++) {
    assert_false(f[i]->pub.resp_paused);
    be_end(f[i]);
  }
  pump();
  for (int i = 0; i < N; i++) {
    assert_true(cs(ids[i])->end);
    assert_int_equal(cs(ids[i])->body.len, fed[i]);
  }
}

static void test_error_before_head(void **state) {
  start((opts_t){0});
  int32_t a = request("GET", "/a", "example.com", NULL, NULL);
  int32_t b = request("GET", "/b", "example.com", NULL, NULL);
  pump();
  be_error(stream_for(a), 502);
  be_error(stream_for(b), 504);
  pump();
  assert_int_equal(cs(a)->status, 502);
  assert_true(cs(a)->end);
  assert_true(cs(a)->body.len > 0);
  assert_memory_equal(pst_buf_head(&cs(a)->body), "502 Bad Gateway: backend unreachable\n",
                      cs(a)->body.len);
  assert_true(has_field(cs(a), "content-type: text/plain"));
  assert_int_equal(cs(b)->status, 504);
  assert_int_equal(g.log[0].status + g.log[1].status, 502 + 504);
}

static void test_error_after_head(void **state) {
  start((opts_t){0});
  int32_t id = request("GET", "/a", "example.com", NULL, NULL);
  pump();
  fstream_t *f = stream_for(id);
  assert_int_equal(be_head(f, 200, PST_BODY_LENGTH, 100, NULL), 0);
  be_body(f, "part", 4);
  pump();
  be_error(f, 0);
  pump();
  assert_int_equal(cs(id)->status, 200);
  assert_true(cs(id)->rst);
  assert_int_equal(cs(id)->rst_code, NGHTTP2_INTERNAL_ERROR);
  assert_false(cs(id)->end);
  /* The connection goes on. */
  int32_t id2 = request("GET", "/b", "example.com", NULL, NULL);
  pump();
  assert_int_equal(be_head(stream_for(id2), 204, PST_BODY_NONE, 0, NULL), 0);
  be_end(stream_for(id2));
  pump();
  assert_int_equal(cs(id2)->status, 204);
  assert_true(cs(id2)->end);
}

static void test_start_failure_502(void **state) {
  start((opts_t){0});
  start_fails = 1;
  int32_t id = request("GET", "/a", "example.com", NULL, NULL);
  pump();
  assert_int_equal(cs(id)->status, 502);
  assert_true(cs(id)->end);
}

static void test_data_on_stream_0(void **state) {
  start((opts_t){0});
  uint8_t frame[9 + 5];
  frame_hd(frame, 5, NGHTTP2_DATA, 0, 0);
  memcpy(frame + 9, "hello", 5);
  feed_raw(frame, sizeof(frame));
  pump();
  assert_int_equal(cli.goaway, 1);
  assert_int_equal(cli.goaway_code, NGHTTP2_PROTOCOL_ERROR);
  assert_int_equal(g.ended, 1); /* nothing left to read or write */
}

static void test_stream_limit(void **state) {
  /* The client sends six requests before it has seen SETTINGS. */
  start((opts_t){.streams = 4, .no_pump = 1});
  int32_t ids[6];
  for (int i = 0; i < 6; i++) ids[i] = request("GET", "/", "example.com", NULL, NULL);
  pump();
  assert_int_equal(n_fs, 4);
  int refused = 0;
  for (int i = 0; i < 6; i++) {
    if (cs(ids[i])->closed) {
      assert_int_equal(cs(ids[i])->close_code, NGHTTP2_REFUSED_STREAM);
      refused++;
    }
  }
  assert_int_equal(refused, 2);
  assert_int_equal(cli.goaway, 0);
}

static void test_header_list_too_large(void **state) {
  start((opts_t){.max_header_bytes = 1024});
  char big[2000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  int32_t id = request("GET", "/big", "example.com", NULL, "x-big", big, NULL);
  pump();
  assert_int_equal(n_fs, 0);
  assert_int_equal(cs(id)->status, 431);
  assert_true(cs(id)->end);
  assert_int_equal(g.log[0].status, 431);
  /* The connection still serves. */
  int32_t id2 = request("GET", "/ok", "example.com", NULL, "x-small", "y", NULL);
  pump();
  assert_int_equal(n_fs, 1);
  stream_for(id2);
}

static void test_rapid_reset(void **state) {
  start((opts_t){.reset_burst = 10, .reset_rate = 1});
  for (int i = 0; i < 40 && cli.goaway == 0; i++) {
    int32_t id = request("GET", "/", "example.com", NULL, NULL);
    pump();
    nghttp2_submit_rst_stream(cli.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    pump();
  }
  assert_int_equal(cli.goaway, 1);
  assert_true(n_fs >= 10 && n_fs <= 13);
  /* Every exchange the client reset was aborted. */
  for (size_t i = 0; i < n_fs; i++) assert_true(fs[i]->freed);
}

/* Like pump, but what the client has to send goes to the front end in one
 * piece, as one read of a client that writes its frames at once. */
static void pump_joined(void) {
  pst_buf_t all = {0};
  const uint8_t *p;
  ssize_t n;
  while ((n = nghttp2_session_mem_send(cli.s, &p)) > 0) {
    assert_int_equal(pst_buf_append(&all, p, (size_t)n), 0);
  }
  assert_true(n >= 0);
  if (all.len > 0 && !g.closed) g.front->ops->feed(g.front, pst_buf_head(&all), all.len);
  pst_buf_free(&all);
  pump();
}

/* "MadeYouReset": a POST declaring content-length: 1, then 2 bytes of DATA,
 * which nghttp2 answers with RST_STREAM itself. Sent in one piece, the
 * stream is never started (no backend connection); either way the stream
 * ended before its response and counts against the reset budget, which
 * ends in GOAWAY ENHANCE_YOUR_CALM. */
static void made_you_reset(int joined) {
  start((opts_t){.reset_burst = 20, .reset_rate = 1});
  static body_src_t bodies[100];
  int i;
  for (i = 0; i < 100 && cli.goaway == 0; i++) {
    bodies[i] = (body_src_t){.data = "xx", .len = 2, .allowed = 2, .eof_ok = 1};
    int32_t id = request("POST", "/upload", "example.com", &bodies[i], "content-length", "1", NULL);
    if (joined)
      pump_joined();
    else
      pump();
    if (cli.goaway == 0) {
      assert_true(cs(id)->rst);
      assert_int_equal(cs(id)->rst_code, NGHTTP2_PROTOCOL_ERROR);
    }
  }
  assert_int_equal(cli.goaway, 1);
  assert_int_equal(cli.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
  assert_true(i >= 20 && i <= 23);
  if (joined) assert_int_equal(n_fs, 0); /* no backend connection for any of them */
  for (size_t k = 0; k < n_fs; k++) assert_true(fs[k]->freed);
}

static void test_made_you_reset_joined(void **state) { made_you_reset(1); }

static void test_made_you_reset_split(void **state) { made_you_reset(0); }

/* Streams that end with their response, even with a request body still
 * due (RST_STREAM NO_ERROR, RFC 9113 8.1), cost nothing of the budget. */
static void test_answered_streams_not_counted(void **state) {
  start((opts_t){.reset_burst = 5, .reset_rate = 1});
  for (int i = 0; i < 30; i++) {
    static body_src_t b;
    b = (body_src_t){.data = "abc", .len = 3, .allowed = 0};
    int32_t id = request("POST", "/u", "example.com", &b, NULL);
    pump();
    fstream_t *f = stream_for(id);
    assert_int_equal(be_head(f, 413, PST_BODY_LENGTH, 0, NULL), 0);
    be_end(f);
    pump();
    assert_int_equal(cs(id)->status, 413);
    assert_true(cs(id)->end);
  }
  assert_int_equal(cli.goaway, 0);
}

static void test_shutdown(void **state) {
  start((opts_t){0});
  int32_t id = request("GET", "/slow", "example.com", NULL, NULL);
  pump();
  fstream_t *f = stream_for(id);
  g.front->ops->shutdown(g.front);
  pump();
  assert_int_equal(cli.goaway, 1);
  assert_int_equal(cli.goaway_code, NGHTTP2_NO_ERROR);
  assert_int_equal(cli.goaway_last, id);
  assert_int_equal(g.ended, 0); /* the stream in flight goes on */
  assert_int_equal(be_head(f, 200, PST_BODY_STREAM, 0, NULL), 0);
  be_body(f, "done", 4);
  be_end(f);
  pump();
  assert_true(cs(id)->end);
  assert_int_equal(cs(id)->body.len, 4);
  assert_int_equal(g.ended, 1);
}

static void test_shutdown_idle(void **state) {
  start((opts_t){0});
  g.front->ops->shutdown(g.front);
  pump();
  assert_int_equal(cli.goaway, 1);
  assert_int_equal(cli.goaway_last, 0);
  assert_int_equal(g.ended, 1);
}

static void test_client_eof(void **state) {
  start((opts_t){0});
  int32_t done = request("GET", "/done", "example.com", NULL, NULL);
  body_src_t src = {.data = "abc", .len = 3, .allowed = 1, .eof_ok = 1};
  int32_t partial = request("POST", "/partial", "example.com", &src, NULL);
  pump();
  fstream_t *fd = stream_for(done), *fp = stream_for(partial);
  g.front->ops->client_eof(g.front);
  pump();
  /* The request that cannot complete is cancelled; the other finishes. */
  assert_true(fp->freed);
  assert_true(cs(partial)->rst);
  assert_int_equal(cs(partial)->rst_code, NGHTTP2_CANCEL);
  assert_false(fd->freed);
  assert_int_equal(g.ended, 0);
  assert_int_equal(be_head(fd, 200, PST_BODY_NONE, 0, NULL), 0);
  be_end(fd);
  pump();
  assert_int_equal(cs(done)->status, 200);
  assert_int_equal(g.ended, 1);
}

static void test_client_eof_idle(void **state) {
  start((opts_t){0});
  g.front->ops->client_eof(g.front);
  assert_int_equal(g.ended, 1);
}

static void test_destroy_aborts_streams(void **state) {
  start((opts_t){0});
  for (int i = 0; i < 3; i++) request("GET", "/", "example.com", NULL, NULL);
  pump();
  assert_int_equal(n_fs, 3);
  be_head(fs[0], 200, PST_BODY_STREAM, 0, NULL);
  be_body(fs[0], "x", 1);
  /* teardown destroys the front end: each stream is freed once, logged. */
  g.front->ops->destroy(g.front);
  g.front = NULL;
  for (size_t i = 0; i < n_fs; i++) assert_true(fs[i]->freed);
  assert_int_equal(g.n_log, 3);
}

static void test_connect_refused(void **state) {
  start((opts_t){0});
  int32_t id = request("CONNECT", NULL, "example.com:443", NULL, NULL);
  pump();
  assert_int_equal(n_fs, 0);
  assert_true(cs(id)->closed);
  assert_int_equal(cs(id)->close_code, NGHTTP2_PROTOCOL_ERROR);
}

static void test_head_and_304(void **state) {
  start((opts_t){0});
  int32_t h = request("HEAD", "/h", "example.com", NULL, NULL);
  int32_t n = request("GET", "/n", "example.com", NULL, NULL);
  pump();
  assert_int_equal(be_head(stream_for(h), 200, PST_BODY_LENGTH, 1000, NULL), 0);
  be_end(stream_for(h));
  assert_int_equal(be_head(stream_for(n), 304, PST_BODY_NONE, 0, "ETag", "\"x\"", NULL), 0);
  be_end(stream_for(n));
  pump();
  assert_int_equal(cs(h)->status, 200);
  assert_true(has_field(cs(h), "content-length: 1000\n"));
  assert_int_equal(cs(h)->body.len, 0);
  assert_true(cs(h)->end);
  assert_int_equal(cs(n)->status, 304);
  assert_true(has_field(cs(n), "etag: \"x\"\n"));
  assert_true(cs(n)->end);
}

/* What stream.c really hands over for HEAD and 304: no body, and the
 * length the response described as a plain field (http.h), which must
 * reach the client (RFC 9110 9.3.2, 8.6); a GET's framing field is
 * rebuilt, never passed on. */
static void test_head_keeps_own_length(void **state) {
  start((opts_t){0});
  int32_t h = request("HEAD", "/h", "example.com", NULL, NULL);
  int32_t n = request("GET", "/n", "example.com", NULL, NULL);
  pump();
  assert_int_equal(be_head(stream_for(h), 200, PST_BODY_NONE, 0, "content-length", "12345", NULL),
                   0);
  be_end(stream_for(h));
  assert_int_equal(be_head(stream_for(n), 304, PST_BODY_NONE, 0, "content-length", "77", NULL), 0);
  be_end(stream_for(n));
  pump();
  assert_int_equal(cs(h)->status, 200);
  assert_true(has_field(cs(h), "content-length: 12345\n"));
  assert_int_equal(cs(h)->body.len, 0);
  assert_true(cs(h)->end);
  assert_int_equal(cs(n)->status, 304);
  assert_true(has_field(cs(n), "content-length: 77\n"));
  assert_true(cs(n)->end);
}

/* Submits a GET whose :scheme and :path are given as they are. */
static int32_t request_raw(const char *method, const char *scheme, const char *path) {
  nghttp2_nv nva[] = {NV(":method", method), NV(":scheme", scheme), NV(":path", path),
                      NV(":authority", "example.com")};
  int32_t id = nghttp2_submit_request(cli.s, NULL, nva, PST_ARRAY_SIZE(nva), NULL, NULL);
  assert_true(id > 0);
  return id;
}

/* RFC 9113 8.3.1: only http and https; :path as the HTTP/1.1 front end
 * would take it in a request line (http.h, pst_http_target_ok). */
static void test_scheme_and_path_checked(void **state) {
  start((opts_t){0});
  static const struct {
    const char *method, *scheme, *path;
    int ok;
  } cases[] = {
      {"GET", "ftp", "/x", 0},
      {"GET", "foo", "http://evil.test/admin", 0},
      {"GET", "foo", "*", 0},
      {"GET", "foo", "admin", 0},
      {"GET", "https", "/a|b", 0},
      {"GET", "https", "/caf\xc3\xa9", 0},
      {"GET", "https", "/a{b}", 0},
      {"GET", "https", "/a#b", 0},
      {"GET", "https", "/a\\b", 0},
      {"GET", "HTTPS", "/upper-scheme", 1},
      {"GET", "http", "/a[1]?b=%41&c=@:!$'()*+,;=", 1},
      {"OPTIONS", "https", "*", 1},
  };
  int32_t ids[PST_ARRAY_SIZE(cases)];
  size_t started = 0;
  for (size_t i = 0; i < PST_ARRAY_SIZE(cases); i++) {
    ids[i] = request_raw(cases[i].method, cases[i].scheme, cases[i].path);
    pump();
    if (!cases[i].ok) {
      if (!cs(ids[i])->rst || cs(ids[i])->rst_code != NGHTTP2_PROTOCOL_ERROR) {
        fail_msg("%s %s %s: expected RST_STREAM PROTOCOL_ERROR", cases[i].method, cases[i].scheme,
                 cases[i].path);
      }
      assert_int_equal(n_fs, started);
    } else {
      if (n_fs != started + 1) fail_msg("%s %s: not forwarded", cases[i].scheme, cases[i].path);
      assert_string_equal(fs[started]->pub.req->target, cases[i].path);
      started++;
    }
  }
  assert_int_equal(cli.goaway, 0);
}

static void test_early_response_stops_upload(void **state) {
  start((opts_t){0});
  static char data[100 * KIB];
  body_src_t src = {.data = data, .len = sizeof(data), .allowed = 10 * KIB, .eof_ok = 1};
  int32_t id = request("POST", "/up", "example.com", &src, NULL);
  pump();
  fstream_t *f = stream_for(id);
  assert_int_equal(be_head(f, 413, PST_BODY_LENGTH, 3, NULL), 0);
  be_body(f, "no\n", 3);
  be_end(f);
  pump();
  assert_int_equal(cs(id)->status, 413);
  assert_true(cs(id)->end);
  assert_int_equal(cs(id)->body.len, 3);
  /* RFC 9113 8.1: RST_STREAM NO_ERROR after the complete response. */
  assert_true(cs(id)->rst);
  assert_int_equal(cs(id)->rst_code, NGHTTP2_NO_ERROR);
}

static void test_expect_continue(void **state) {
  start((opts_t){0});
  body_src_t src = {.data = "abc", .len = 3, .allowed = 0, .eof_ok = 1};
  int32_t id = request("POST", "/e", "example.com", &src, "expect", "100-continue", NULL);
  pump();
  fstream_t *f = stream_for(id);
  assert_true(f->pub.req->expect_continue);
  assert_null(pst_headers_get(&f->pub.req->headers, "expect"));
  assert_int_equal(be_head(f, 100, PST_BODY_NONE, 0, NULL), 0);
  assert_int_equal(be_head(f, 103, PST_BODY_NONE, 0, "link", "</a>", NULL), 0);
  pump();
  assert_int_equal(cs(id)->interim, 100);
  assert_int_equal(cs(id)->status, 0);
  src.allowed = 3;
  nghttp2_session_resume_data(cli.s, id);
  pump();
  assert_int_equal(f->body.len, 3);
  assert_int_equal(be_head(f, 200, PST_BODY_NONE, 0, NULL), 0);
  be_end(f);
  pump();
  assert_int_equal(cs(id)->status, 200);
  assert_false(has_field(cs(id), "link"));
}

static void test_client_reset_aborts_stream(void **state) {
  start((opts_t){0});
  int32_t id = request("GET", "/", "example.com", NULL, NULL);
  pump();
  fstream_t *f = stream_for(id);
  nghttp2_submit_rst_stream(cli.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  pump();
  assert_true(f->freed);
  assert_int_equal(g.n_log, 1);
  assert_int_equal(g.log[0].status, 0);
}

/* A route to builtin:info is no business of the front end: its requests
 * are started as streams like any other, and the answer comes from the
 * backend module (the in-process backend, tested in test_pool.c and
 * test_stream.c) through the stream ops. */
static void test_builtin_info(void **state) {
  start((opts_t){.info = 1});
  int32_t j = request("GET", "/", "info.test", NULL, "accept", "application/json", NULL);
  int32_t hd = request("HEAD", "/", "info.test", NULL, NULL);
  body_src_t src = {.data = "x", .len = 1, .allowed = 1, .eof_ok = 1};
  int32_t p = request("POST", "/", "info.test", &src, NULL);
  pump();
  assert_int_equal(n_fs, 3);
  /* Nothing answered by the front end itself. */
  assert_int_equal(cs(j)->status + cs(hd)->status + cs(p)->status, 0);
  assert_int_equal(g.n_log, 0);

  fstream_t *fj = stream_for(j), *fh = stream_for(hd), *fp = stream_for(p);
  assert_ptr_equal(fj->pub.host, &g.host);
  assert_int_equal(fj->pub.host->backend->kind, PST_BACKEND_BUILTIN_INFO);
  assert_string_equal(fj->pub.req->method, "GET");
  assert_string_equal(fj->pub.req->target, "/");
  assert_string_equal(fj->pub.req->authority, "info.test");
  assert_string_equal(pst_headers_get(&fj->pub.req->headers, "accept"), "application/json");
  assert_int_equal(fj->pub.req->body, PST_BODY_NONE);
  assert_string_equal(fh->pub.req->method, "HEAD");
  assert_string_equal(fp->pub.req->method, "POST");
  /* The body goes to the stream too; what becomes of it is the backend's. */
  assert_int_equal(fp->body.len, 1);
  assert_true(fp->body_end);

  /* The backend's answers reach the client like any backend's. */
  assert_int_equal(be_head(fj, 200, PST_BODY_LENGTH, 2, "Content-Type", "application/json", NULL),
                   0);
  be_body(fj, "{}", 2);
  be_end(fj);
  assert_int_equal(be_head(fh, 200, PST_BODY_LENGTH, 1000, NULL), 0);
  be_end(fh);
  assert_int_equal(be_head(fp, 405, PST_BODY_LENGTH, 0, "Allow", "GET, HEAD", NULL), 0);
  be_end(fp);
  pump();
  assert_int_equal(cs(j)->status, 200);
  assert_true(has_field(cs(j), "content-type: application/json\n"));
  assert_int_equal(cs(j)->body.len, 2);
  assert_true(cs(j)->end);
  assert_int_equal(cs(hd)->status, 200);
  assert_int_equal(cs(hd)->body.len, 0);
  assert_true(cs(hd)->end);
  assert_int_equal(cs(p)->status, 405);
  assert_true(has_field(cs(p), "allow: GET, HEAD\n"));
  assert_int_equal(g.n_log, 3);
  assert_int_equal(g.ended + g.closed, 0);
}

static void test_ping_flood(void **state) {
  start((opts_t){0});
  g.reading = 0; /* the flooder does not read its ACKs */
  uint8_t ping[17];
  frame_hd(ping, 8, NGHTTP2_PING, 0, 0);
  memset(ping + 9, 7, 8);
  int rc = 0;
  for (int i = 0; i < 100000 && rc == 0; i++) rc = feed_raw(ping, sizeof(ping));
  assert_int_not_equal(rc, 0);
  assert_int_equal(g.closed, 1);
  assert_true(g.out.len < 2 * PST_CLIENT_HIGH_WATER);
}

/* A request header block using only the static table and literals that
 * are not indexed, so it leaves the server's HPACK state alone. */
static size_t raw_request(uint8_t *f, uint32_t id, uint8_t flags) {
  static const uint8_t block[] = {0x82, 0x84, 0x87, 0x01, 0x01, 'a'}; /* GET / https a */
  frame_hd(f, sizeof(block), NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | flags, id);
  memcpy(f + 9, block, sizeof(block));
  return 9 + sizeof(block);
}

static void test_stream_id_backwards(void **state) {
  start((opts_t){0});
  int32_t id = request("GET", "/", "example.com", NULL, NULL);
  pump();
  uint8_t f[64];
  feed_raw(f, raw_request(f, 7, NGHTTP2_FLAG_END_STREAM));
  pump();
  assert_int_equal(n_fs, 2);
  assert_int_equal(cli.goaway, 0);
  /* Stream 5 was skipped, hence closed, when 7 opened (RFC 9113 5.1.1). */
  feed_raw(f, raw_request(f, 5, NGHTTP2_FLAG_END_STREAM));
  pump();
  assert_int_equal(cli.goaway, 1);
  assert_int_equal(cli.goaway_code, NGHTTP2_PROTOCOL_ERROR);
  assert_int_equal(cli.goaway_last, 7);
  assert_int_equal(n_fs, 2);
  assert_int_equal(id, 1);
}

/* Trailers racing our RST_STREAM on a stream that existed are no error. */
static void test_trailers_after_reset(void **state) {
  start((opts_t){.max_header_bytes = 1024});
  char big[2000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  body_src_t src = {.data = "abc", .len = 3, .allowed = 0, .eof_ok = 1};
  int32_t id = request("POST", "/", "example.com", &src, "x-big", big, NULL);
  pump();
  assert_int_equal(cs(id)->status, 431);
  assert_true(cs(id)->rst); /* RST_STREAM NO_ERROR after the 431 */
  static const uint8_t trailer[] = {0x00, 0x01, 'x', 0x01, 'y'};
  uint8_t f[9 + sizeof(trailer)];
  frame_hd(f, sizeof(trailer), NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM,
           (uint32_t)id);
  memcpy(f + 9, trailer, sizeof(trailer));
  assert_int_equal(feed_raw(f, sizeof(f)), 0);
  pump();
  assert_int_equal(cli.goaway, 0);
  assert_int_equal(g.closed + g.ended, 0);
}

/* Finds the first frame of type on stream id in what the front end sent
 * and the test client has not read. Returns its payload, or NULL. */
static const uint8_t *find_frame(uint8_t type, uint32_t id) {
  const uint8_t *p = (const uint8_t *)pst_buf_head(&g.out);
  size_t n = g.out.len;
  while (n >= 9) {
    size_t len = ((size_t)p[0] << 16) | ((size_t)p[1] << 8) | p[2];
    uint32_t sid =
        ((uint32_t)(p[5] & 0x7f) << 24) | ((uint32_t)p[6] << 16) | ((uint32_t)p[7] << 8) | p[8];
    assert_true(9 + len <= n);
    if (p[3] == type && sid == id) return p + 9;
    p += 9 + len;
    n -= 9 + len;
  }
  return NULL;
}

/* A client that ignores the acknowledged limit: the extra stream is
 * refused, the connection goes on (RFC 9113 5.1.2). */
static void test_stream_limit_after_ack(void **state) {
  start((opts_t){.streams = 4});
  assert_int_equal(
      nghttp2_session_get_remote_settings(cli.s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 4);
  g.reading = 0; /* the raw streams are unknown to the test client */
  uint8_t f[64];
  for (uint32_t id = 1; id <= 9; id += 2) feed_raw(f, raw_request(f, id, NGHTTP2_FLAG_END_STREAM));
  assert_int_equal(n_fs, 4);
  const uint8_t *rst = find_frame(NGHTTP2_RST_STREAM, 9);
  assert_non_null(rst);
  assert_int_equal(rst[3], NGHTTP2_REFUSED_STREAM);
  assert_null(find_frame(NGHTTP2_GOAWAY, 0));
  /* Once a stream is done, a new one is taken. */
  assert_int_equal(be_head(stream_for(1), 204, PST_BODY_NONE, 0, NULL), 0);
  be_end(stream_for(1));
  feed_raw(f, raw_request(f, 11, NGHTTP2_FLAG_END_STREAM));
  assert_int_equal(n_fs, 5);
  assert_null(find_frame(NGHTTP2_RST_STREAM, 11));
  assert_int_equal(g.closed + g.ended, 0);
}

/* CVE-2024-28182: a header block continued without end is cut off. */
static void test_continuation_flood(void **state) {
  start((opts_t){0});
  /* :method GET, :path /, :scheme https (static table), :authority a. */
  static const uint8_t block[] = {0x82, 0x84, 0x87, 0x41, 0x01, 'a'};
  static const uint8_t field[] = {0x00, 0x01, 'x', 0x01, 'y'}; /* x: y, not indexed */
  uint8_t f[9 + sizeof(block)];
  frame_hd(f, sizeof(block), NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1);
  memcpy(f + 9, block, sizeof(block));
  int rc = feed_raw(f, sizeof(f));
  for (int i = 0; i < 100 && rc == 0; i++) {
    uint8_t c[9 + sizeof(field)];
    frame_hd(c, sizeof(field), NGHTTP2_CONTINUATION, 0, 1);
    memcpy(c + 9, field, sizeof(field));
    rc = feed_raw(c, sizeof(c));
  }
  assert_int_not_equal(rc, 0);
  assert_int_equal(g.closed, 1);
  assert_int_equal(n_fs, 0);
}

/* A SETTINGS frame with more entries than nghttp2_option_set_max_settings. */
static void test_settings_too_many_entries(void **state) {
  start((opts_t){0});
  uint8_t f[9 + 40 * 6];
  frame_hd(f, 40 * 6, NGHTTP2_SETTINGS, 0, 0);
  for (int i = 0; i < 40; i++) {
    uint8_t *e = f + 9 + i * 6;
    e[0] = 0;
    e[1] = NGHTTP2_SETTINGS_ENABLE_PUSH;
    e[2] = e[3] = e[4] = e[5] = 0;
  }
  feed_raw(f, sizeof(f));
  pump();
  assert_int_equal(cli.goaway, 1);
  assert_int_equal(cli.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
  assert_int_equal(g.ended + g.closed, 1);
}

static void test_bad_preface(void **state) {
  start((opts_t){.no_pump = 1});
  const char *h1 = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_not_equal(feed_raw(h1, strlen(h1)), 0);
  assert_int_equal(g.closed, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_settings, teardown),
      cmocka_unit_test_teardown(test_get, teardown),
      cmocka_unit_test_teardown(test_cookies_and_authority, teardown),
      cmocka_unit_test_teardown(test_100_streams, teardown),
      cmocka_unit_test_teardown(test_request_body_flow_control, teardown),
      cmocka_unit_test_teardown(test_request_body_without_length, teardown),
      cmocka_unit_test_teardown(test_response_backpressure, teardown),
      cmocka_unit_test_teardown(test_zero_window_bounded, teardown),
      cmocka_unit_test_teardown(test_connection_buffer_bounded, teardown),
      cmocka_unit_test_teardown(test_error_before_head, teardown),
      cmocka_unit_test_teardown(test_error_after_head, teardown),
      cmocka_unit_test_teardown(test_start_failure_502, teardown),
      cmocka_unit_test_teardown(test_data_on_stream_0, teardown),
      cmocka_unit_test_teardown(test_stream_limit, teardown),
      cmocka_unit_test_teardown(test_header_list_too_large, teardown),
      cmocka_unit_test_teardown(test_rapid_reset, teardown),
      cmocka_unit_test_teardown(test_made_you_reset_joined, teardown),
      cmocka_unit_test_teardown(test_made_you_reset_split, teardown),
      cmocka_unit_test_teardown(test_answered_streams_not_counted, teardown),
      cmocka_unit_test_teardown(test_shutdown, teardown),
      cmocka_unit_test_teardown(test_shutdown_idle, teardown),
      cmocka_unit_test_teardown(test_client_eof, teardown),
      cmocka_unit_test_teardown(test_client_eof_idle, teardown),
      cmocka_unit_test_teardown(test_destroy_aborts_streams, teardown),
      cmocka_unit_test_teardown(test_connect_refused, teardown),
      cmocka_unit_test_teardown(test_head_and_304, teardown),
      cmocka_unit_test_teardown(test_scheme_and_path_checked, teardown),
      cmocka_unit_test_teardown(test_head_keeps_own_length, teardown),
      cmocka_unit_test_teardown(test_early_response_stops_upload, teardown),
      cmocka_unit_test_teardown(test_expect_continue, teardown),
      cmocka_unit_test_teardown(test_client_reset_aborts_stream, teardown),
      cmocka_unit_test_teardown(test_builtin_info, teardown),
      cmocka_unit_test_teardown(test_ping_flood, teardown),
      cmocka_unit_test_teardown(test_stream_id_backwards, teardown),
      cmocka_unit_test_teardown(test_trailers_after_reset, teardown),
      cmocka_unit_test_teardown(test_stream_limit_after_ack, teardown),
      cmocka_unit_test_teardown(test_continuation_flood, teardown),
      cmocka_unit_test_teardown(test_settings_too_many_entries, teardown),
      cmocka_unit_test_teardown(test_bad_preface, teardown),
  };
  return cmocka_run_group_tests_name("h2", tests, NULL, NULL);
}
