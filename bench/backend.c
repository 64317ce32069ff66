/* bench/backend.c: the origin server every proxy in the bench talks to.
 *
 * A single-threaded libuv responder that answers every request with the same
 * small 200, so that it is never what limits a measurement:
 *   - HTTP/1.1 (RFC 9112): each complete request head (requests without a
 *     body, as the bench sends) gets a fixed response with Content-Length;
 *     pipelined requests are answered in order in one write; the connection
 *     stays open (keep-alive) unless the request says "Connection: close",
 *     in which case the response says so too and the backend closes after
 *     writing it (RFC 9112 9.6).
 *   - HTTP/2 with prior knowledge (h2c, RFC 9113 3.3): a connection that
 *     starts with the client preface is handed to an nghttp2 server session;
 *     every request stream gets the same 200 and body. This lets the bench
 *     measure h2 keep-alive traffic through a TLS proxy in tcp mode.
 *
 * Usage: backend [--port N] [--body BYTES] [--listeners K]
 *   Listens on 127.0.0.1:N (0 or absent: a free port) and prints
 *   "listening PORT" on stdout once ready. Runs until SIGTERM or SIGINT.
 *   With --listeners K it also listens on K-1 more free ports, printing a
 *   "listening PORT" line for each: the same process serving as K servers
 *   of a backend set, so that a bench comparing one server with several
 *   changes nothing on the client's CPU but the number of addresses.
 *   On SIGUSR1 it prints "accepted N": the connections accepted so far on
 *   all its ports, so that the bench can count a proxy's backend connects
 *   (bench/keepalive.py: connects per 1,000 requests).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>
#include <uv.h>

#define READ_SLAB (64 * 1024)
#define MAX_PENDING (64 * 1024) /* an unfinished request head larger than this is an error */
#define MAX_PIPELINE 64         /* responses gathered into one write */

#define CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr) - offsetof(type, field)))

typedef struct {
  uv_tcp_t tcp;
  nghttp2_session *h2; /* NULL until the h2 preface is seen */
  char *pending;       /* the start of a request head not complete yet */
  size_t pending_len;
  int closing;   /* close once the queued writes are done */
  int writes;    /* uv_write requests in flight */
  int sniffed;   /* the protocol is known (h1 or h2) */
  int started;   /* bytes came: a PROXY header can only be first */
  size_t nreq;   /* requests answered, for the h1 "Connection: close" rule */
} bconn_t;

typedef struct {
  uv_write_t req;
  bconn_t *conn;
  char *owned; /* copied bytes to free, or NULL for the static responses */
} bwrite_t;

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sig_term, sig_int, sig_usr1;
static unsigned long long accepted; /* connections accepted, all ports */
static char slab[READ_SLAB];

static char *body;
static size_t body_len = 64;
static char *resp_keep, *resp_close; /* full HTTP/1.1 responses */
static size_t resp_keep_len, resp_close_len;
static char body_len_text[24];

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---- connection lifetime ---- */

static void conn_on_close(uv_handle_t *h) {
  bconn_t *c = CONTAINER_OF(h, bconn_t, tcp);
  if (c->h2 != NULL) nghttp2_session_del(c->h2);
  free(c->pending);
  free(c);
}

static void conn_close(bconn_t *c) {
  if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
  uv_close((uv_handle_t *)&c->tcp, conn_on_close);
}

static void conn_on_write(uv_write_t *req, int status) {
  bwrite_t *w = CONTAINER_OF(req, bwrite_t, req);
  bconn_t *c = w->conn;
  free(w->owned);
  free(w);
  c->writes--;
  if (status < 0 || (c->closing && c->writes == 0)) conn_close(c);
}

/* Queues bufs for writing; owned (may be NULL) is freed when done. Returns 0
 * or a libuv error (the connection is then closed by the caller). */
static int conn_write(bconn_t *c, uv_buf_t *bufs, unsigned n, char *owned) {
  bwrite_t *w = malloc(sizeof(*w));
  if (w == NULL) {
    free(owned);
    return UV_ENOMEM;
  }
  w->conn = c;
  w->owned = owned;
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, conn_on_write);
  if (rc != 0) {
    free(owned);
    free(w);
    return rc;
  }
  c->writes++;
  return 0;
}

/* ---- HTTP/1.1 ---- */

/* Case-insensitive search for needle in the n bytes at hay. */
static int contains_ci(const char *hay, size_t n, const char *needle) {
  size_t m = strlen(needle);
  for (size_t i = 0; i + m <= n; i++) {
    if (strncasecmp(hay + i, needle, m) == 0) return 1;
  }
  return 0;
}

/* Answers every complete request head in data; keeps an incomplete tail.
 * Returns 0, or -1 when the connection must be dropped. */
static int h1_feed(bconn_t *c, const char *data, size_t len) {
  uv_buf_t bufs[MAX_PIPELINE];
  unsigned n = 0;
  size_t off = 0;
  while (off < len && !c->closing) {
    const char *end = memmem(data + off, len - off, "\r\n\r\n", 4);
    if (end == NULL) break;
    size_t head_len = (size_t)(end - (data + off)) + 4;
    /* "Connection: close" (RFC 9112 9.6): answer, then close. */
    if (contains_ci(data + off, head_len, "\nconnection: close")) {
      bufs[n++] = uv_buf_init(resp_close, (unsigned)resp_close_len);
      c->closing = 1;
    } else {
      bufs[n++] = uv_buf_init(resp_keep, (unsigned)resp_keep_len);
    }
    c->nreq++;
    off += head_len;
    if (n == MAX_PIPELINE) {
      if (conn_write(c, bufs, n, NULL) != 0) return -1;
      n = 0;
    }
  }
  if (n > 0 && conn_write(c, bufs, n, NULL) != 0) return -1;
  if (c->closing) return 0; /* anything after a "close" request is ignored */
  size_t rest = len - off;
  if (rest > 0) {
    if (rest > MAX_PENDING) return -1;
    char *p = malloc(rest);
    if (p == NULL) return -1;
    memcpy(p, data + off, rest);
    c->pending = p;
    c->pending_len = rest;
  }
  return 0;
}

/* ---- HTTP/2 (h2c with prior knowledge) ---- */

static ssize_t h2_read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user) {
  size_t *sent = src->ptr;
  size_t left = body_len - *sent;
  size_t n = left < length ? left : length;
  memcpy(buf, body + *sent, n);
  *sent += n;
  if (*sent == body_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    free(sent);
  }
  return (ssize_t)n;
}

static int h2_respond(nghttp2_session *s, int32_t stream_id) {
  nghttp2_nv hdrs[] = {
      {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"content-length", (uint8_t *)body_len_text, 14, strlen(body_len_text),
       NGHTTP2_NV_FLAG_NONE},
  };
  size_t *sent = calloc(1, sizeof(*sent));
  if (sent == NULL) return NGHTTP2_ERR_CALLBACK_FAILURE;
  nghttp2_data_provider prd = {.source = {.ptr = sent}, .read_callback = h2_read_body};
  int rc = nghttp2_submit_response(s, stream_id, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), &prd);
  if (rc != 0) {
    free(sent);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

/* A request is complete when its END_STREAM arrives, on HEADERS (a GET) or
 * on the last DATA frame. */
static int h2_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user) {
  if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
      (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    return h2_respond(s, f->hd.stream_id);
  }
  return 0;
}

static nghttp2_session_callbacks *h2_callbacks;

static int h2_start(bconn_t *c) {
  if (nghttp2_session_server_new(&c->h2, h2_callbacks, c) != 0) return -1;
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 256}};
  return nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1) == 0 ? 0 : -1;
}

/* Sends everything nghttp2 has queued, in one write. */
static int h2_flush(bconn_t *c) {
  char *out = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(c->h2, &data);
    if (n < 0) {
      free(out);
      return -1;
    }
    if (n == 0) break;
    if (len + (size_t)n > cap) {
      cap = (len + (size_t)n) * 2;
      char *p = realloc(out, cap);
      if (p == NULL) {
        free(out);
        return -1;
      }
      out = p;
    }
    memcpy(out + len, data, (size_t)n);
    len += (size_t)n;
  }
  if (len == 0) {
    free(out);
  } else {
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    if (conn_write(c, &b, 1, out) != 0) return -1;
  }
  if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
    c->closing = 1;
    if (c->writes == 0) conn_close(c);
  }
  return 0;
}

static int h2_feed(bconn_t *c, const char *data, size_t len) {
  ssize_t n = nghttp2_session_mem_recv(c->h2, (const uint8_t *)data, len);
  if (n < 0) return -1;
  return h2_flush(c);
}

/* ---- reading ---- */

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  *buf = uv_buf_init(slab, sizeof(slab));
}

static int conn_feed(bconn_t *c, const char *data, size_t len) {
  if (!c->sniffed) {
    size_t m = len < sizeof(h2_preface) - 1 ? len : sizeof(h2_preface) - 1;
    if (memcmp(data, h2_preface, m) != 0) {
      c->sniffed = 1; /* HTTP/1.1 */
    } else if (m == sizeof(h2_preface) - 1) {
      c->sniffed = 1;
      if (h2_start(c) != 0) return -1;
    } else {
      /* A prefix of the preface: wait for the rest. */
      char *p = malloc(len);
      if (p == NULL) return -1;
      memcpy(p, data, len);
      c->pending = p;
      c->pending_len = len;
      return 0;
    }
  }
  if (c->h2 != NULL) return h2_feed(c, data, len);
  return h1_feed(c, data, len);
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  bconn_t *c = CONTAINER_OF(s, bconn_t, tcp);
  if (nread == 0) return;
  if (nread < 0 || c->closing) {
    /* EOF or error from the proxy: nothing more to answer. Responses still
     * being written go out first (a half-closed peer can still read). */
    uv_read_stop(s);
    c->closing = 1;
    if (c->writes == 0 || nread != UV_EOF) conn_close(c);
    return;
  }
  const char *data = buf->base;
  size_t n = (size_t)nread;
  if (!c->started) {
    /* A PROXY header (HAProxy's proxy-protocol.txt) from a proxy with
     * proxy_protocol: skipped, so that the bench can measure what sending
     * one costs. It comes whole in the first read on loopback. */
    static const char v2_sig[12] = "\r\n\r\n\0\r\nQUIT\n";
    size_t skip = 0;
    if (n >= 16 && memcmp(data, v2_sig, 12) == 0) {
      skip = 16 + ((size_t)(unsigned char)data[14] << 8 | (unsigned char)data[15]);
    } else if (n >= 6 && memcmp(data, "PROXY ", 6) == 0) {
      const char *eol = memchr(data, '\n', n);
      if (eol != NULL) skip = (size_t)(eol - data) + 1;
    }
    c->started = 1;
    if (skip > n) skip = n;
    data += skip;
    n -= skip;
    if (n == 0) return;
  }
  int rc;
  if (c->pending != NULL) {
    /* Rare: a request head split over reads. Join and parse the whole. */
    size_t total = c->pending_len + n;
    char *joined = malloc(total);
    if (joined == NULL) {
      conn_close(c);
      return;
    }
    memcpy(joined, c->pending, c->pending_len);
    memcpy(joined + c->pending_len, data, n);
    free(c->pending);
    c->pending = NULL;
    c->pending_len = 0;
    rc = conn_feed(c, joined, total);
    free(joined);
  } else {
    rc = conn_feed(c, data, n);
  }
  if (rc != 0) {
    conn_close(c);
    return;
  }
  if (c->closing) uv_read_stop(s);
}

static void server_on_connection(uv_stream_t *srv, int status) {
  if (status < 0) return;
  bconn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return;
  uv_tcp_init(loop, &c->tcp);
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  accepted++;
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read) != 0) conn_close(c);
}

static void on_signal(uv_signal_t *s, int signum) {
  if (signum == SIGUSR1) {
    printf("accepted %llu\n", accepted);
    fflush(stdout);
    return;
  }
  uv_stop(loop);
}

static void make_responses(void) {
  body = malloc(body_len + 1);
  if (body == NULL) abort();
  for (size_t i = 0; i < body_len; i++) body[i] = (char)('a' + i % 26);
  if (body_len > 0) body[body_len - 1] = '\n';
  snprintf(body_len_text, sizeof(body_len_text), "%zu", body_len);
  const char *fmt = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n";
  char head[256];
  for (int i = 0; i < 2; i++) {
    int n = snprintf(head, sizeof(head), fmt, body_len, i ? "Connection: close\r\n" : "");
    char *r = malloc((size_t)n + body_len);
    if (r == NULL) abort();
    memcpy(r, head, (size_t)n);
    memcpy(r + n, body, body_len);
    if (i) {
      resp_close = r;
      resp_close_len = (size_t)n + body_len;
    } else {
      resp_keep = r;
      resp_keep_len = (size_t)n + body_len;
    }
  }
}

#define MAX_LISTENERS 8
static uv_tcp_t more_servers[MAX_LISTENERS - 1];

/* Listens on 127.0.0.1:port (0: a free one) with handle h and prints the
 * "listening PORT" line. Returns 0 or a libuv error. */
static int listen_on(uv_tcp_t *h, int port) {
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_init(loop, h);
  int rc = uv_tcp_bind(h, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)h, 4096, server_on_connection);
  if (rc != 0) {
    fprintf(stderr, "backend: cannot listen on 127.0.0.1:%d: %s\n", port, uv_strerror(rc));
    return rc;
  }
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  uv_tcp_getsockname(h, (struct sockaddr *)&ss, &len);
  printf("listening %d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  int port = 0, listeners = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--body") == 0 && i + 1 < argc) {
      body_len = (size_t)strtoul(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--listeners") == 0 && i + 1 < argc) {
      listeners = atoi(argv[++i]);
      if (listeners < 1 || listeners > MAX_LISTENERS) listeners = 0;
    } else {
      listeners = 0;
    }
    if (listeners == 0) {
      fprintf(stderr, "usage: %s [--port N] [--body BYTES] [--listeners 1..%d]\n", argv[0],
              MAX_LISTENERS);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  make_responses();
  nghttp2_session_callbacks_new(&h2_callbacks);
  nghttp2_session_callbacks_set_on_frame_recv_callback(h2_callbacks, h2_on_frame_recv);

  loop = uv_default_loop();
  if (listen_on(&server, port) != 0) return 1;
  for (int i = 1; i < listeners; i++) {
    if (listen_on(&more_servers[i - 1], 0) != 0) return 1;
  }

  uv_signal_init(loop, &sig_term);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_init(loop, &sig_int);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  uv_signal_init(loop, &sig_usr1);
  uv_signal_start(&sig_usr1, on_signal, SIGUSR1);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
