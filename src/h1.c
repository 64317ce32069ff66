/* postern: the HTTP/1.1 front end (see h1.h). One exchange at a time: a
 * pipelined request is parsed only once the response before it is
 * complete, so responses go out in order without holding several of them.
 *
 * What postern holds for one client is bounded on both sides. Pipelined
 * bytes waiting for their turn: at most about one head (max_header_bytes)
 * and a TLS record, then the client is not read. Output: a response body
 * stops reading its backend above PST_CLIENT_HIGH_WATER (h1_on_body), and
 * above the same mark no next request is started and the client is not read
 * (h1_resume), until the client has taken its output down to
 * PST_CLIENT_LOW_WATER (the drain callback). Without the second rule a
 * client that pipelines requests and never reads would have every response
 * queued for it, one after the other, without end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/h1.h"

#include "postern/access_log.h"
#include "postern/common.h"
#include "postern/http.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/pool.h"
#include "postern/stream.h"

typedef struct {
  pst_app_t base;
  /* Made when request bytes come and freed between exchanges (h1_process):
   * an idle keep-alive connection holds none (bench/README.md: ~800 bytes
   * each). */
  pst_h1_req_parser_t *parser;
  pst_buf_t in;             /* decrypted bytes not parsed yet (the next requests) */
  pst_stream_t *stream;     /* the exchange in progress, or NULL */
  int minor;                /* the current request's HTTP minor version */
  int keep_alive;           /* the client keeps the connection after this exchange */
  int head_request;         /* HEAD: the response has no body */
  int chunked;              /* the response body is chunk-encoded by postern */
  int request_done;         /* the current request has been read whole */
  int tunnel;               /* after a 101: raw bytes both ways */
  int closing;              /* end the connection after the current exchange */
  int eof;                  /* the client finished sending */
  int processing;           /* inside h1_process: no recursion */
  int out_wait;             /* the next request waits for the client to read its output */
  pst_http_request_t *held; /* an early-data request waiting for the handshake */
} h1_front_t;

static void h1_process(h1_front_t *f);

static h1_front_t *F(pst_app_t *base) { return (h1_front_t *)base; }

/* The connection services h1 uses most (app-t.h). */
static int h1_send(h1_front_t *f, const char *data, size_t len) {
  return f->base.host->ops->send(f->base.host, data, len);
}

static void h1_end(h1_front_t *f) { f->base.host->ops->end(f->base.host); }

static void h1_pause(h1_front_t *f, int pause) { f->base.host->ops->pause(f->base.host, pause); }

/* Whether the client's output is over the high-water mark (app-t.h): a
 * client that does not read gets nothing more started for it. */
static int h1_out_full(const h1_front_t *f) {
  const pst_host_t *h = f->base.host;
  return h->ops->queued(h) > PST_CLIENT_HIGH_WATER;
}

/* Stops reading the client and starting requests until its output drains
 * below the low-water mark (h1_client_drain). */
static void h1_wait_output(h1_front_t *f) {
  f->out_wait = 1;
  h1_pause(f, 1);
}

/* Between exchanges: reads the client again and parses the next request,
 * unless the client's output is over the high-water mark, in which case the
 * next request waits, unread, for the drain callback. */
static void h1_resume(h1_front_t *f) {
  if (h1_out_full(f)) {
    h1_wait_output(f);
    return;
  }
  f->out_wait = 0;
  h1_pause(f, 0);
  h1_process(f);
}

/* Sends a short response made by postern and, when close is set, ends the
 * connection after it. */
static void h1_error(h1_front_t *f, int status, const char *body, int close) {
  pst_buf_t out = {0};
  pst_metrics_http_generated(f->base.host->lc->metrics_slot, status);
  if (pst_http_error_write(&out, status, body, close) == 0) {
    h1_send(f, pst_buf_head(&out), out.len);
  }
  pst_buf_free(&out);
  if (close) {
    f->closing = 1;
    h1_end(f);
  }
}

/* One request ended with status sent to the client: its access log line
 * and its count (metrics.h), once per request. */
static void h1_log(const pst_host_t *h, const pst_http_request_t *req, int status,
                   uint64_t bytes_in, uint64_t bytes_out, uint64_t t_start_ns) {
  pst_metrics_http_request(h->lc->metrics_slot, PST_MPROTO_H1, status);
  pst_access_log(h, "http/1.1", req, status, bytes_in, bytes_out, t_start_ns);
}

/* The exchange is over: log it, free it, and go on with the next request
 * or end the connection. */
static void h1_finish(h1_front_t *f) {
  pst_stream_t *s = f->stream;
  f->stream = NULL;
  if (s != NULL) {
    h1_log(f->base.host, s->req, s->status, s->bytes_in, s->bytes_out, s->t_start_ns);
    pst_stream_free(s);
  }
  f->tunnel = 0;
  if (f->closing || !f->keep_alive || !f->request_done || (f->eof && f->in.len == 0)) {
    /* An unread request body cannot be skipped safely: close. */
    f->closing = 1;
    h1_end(f);
    return;
  }
  f->request_done = 0;
  h1_resume(f);
  /* The client half-closed after pipelining: end once all are answered. */
  if (f->eof && f->stream == NULL && f->in.len == 0) h1_end(f);
}

/* ---- the stream's callbacks ---- */

static int h1_on_head(pst_stream_t *s, pst_http_response_t *resp) {
  h1_front_t *f = s->front;
  pst_buf_t out = {0};
  int final = resp->status >= 200 || resp->status == 101;
  if (!final && f->minor == 0) {
    /* RFC 9110 15.2: no 1xx to an HTTP/1.0 client. */
    pst_http_response_free(resp);
    free(resp);
    return 0;
  }
  if (final && pst_http_response_needs_close(resp, f->minor, f->head_request)) f->keep_alive = 0;
  if (f->closing) f->keep_alive = 0;
  int rc = pst_http_response_write(resp, f->minor, f->keep_alive, f->head_request, &out,
                                   final ? &f->chunked : &(int){0});
  if (rc == 0) rc = h1_send(f, pst_buf_head(&out), out.len);
  pst_buf_free(&out);
  if (rc == 0 && resp->status == 101) {
    /* RFC 9110 15.2.2: from here on the connection carries the upgraded
     * protocol; what the client sent after its request goes through. */
    f->tunnel = 1;
    f->keep_alive = 0;
  }
  pst_http_response_free(resp);
  free(resp);
  return rc;
}

static int h1_on_body(pst_stream_t *s, const char *data, size_t len) {
  h1_front_t *f = s->front;
  int rc;
  if (f->chunked && !f->tunnel) {
    pst_buf_t out = {0};
    rc = pst_http_chunk(&out, data, len);
    if (rc == 0) rc = h1_send(f, pst_buf_head(&out), out.len);
    pst_buf_free(&out);
  } else {
    rc = h1_send(f, data, len);
  }
  /* A slow client: stop reading the backend until it drains. */
  if (rc == 0 && f->base.host->ops->queued(f->base.host) > PST_CLIENT_HIGH_WATER)
    pst_stream_pause(s, 1);
  return rc;
}

static void h1_on_end(pst_stream_t *s) {
  h1_front_t *f = s->front;
  if (f->chunked && !f->tunnel && !f->head_request) {
    pst_buf_t out = {0};
    if (pst_http_chunk(&out, NULL, 0) == 0) h1_send(f, pst_buf_head(&out), out.len);
    pst_buf_free(&out);
  }
  if (f->tunnel) f->closing = 1;
  h1_finish(f);
}

static void h1_on_error(pst_stream_t *s, int status, const char *why) {
  h1_front_t *f = s->front;
  if (status == 0) {
    /* The response was under way: closing without the rest is how an
     * HTTP/1.1 client learns it was cut (RFC 9112 8). */
    h1_log(f->base.host, s->req, s->status, s->bytes_in, s->bytes_out, s->t_start_ns);
    pst_host_t *h = f->base.host;
    h->ops->close(h, PST_EBACKEND, h->ops->why(h, "backend failed mid-response: %s", why));
    return; /* the stream is freed with the front end */
  }
  char body[160];
  snprintf(body, sizeof(body), "%d %s: %s\n", status, pst_http_reason(status), why);
  s->status = status;
  h1_error(f, status, body, !f->request_done || !f->keep_alive);
  h1_finish(f); /* logs and frees the stream; ends the connection if closing */
}

static void h1_on_drain(pst_stream_t *s) {
  h1_front_t *f = s->front;
  f->base.host->ops->pause(f->base.host, 0);
  h1_process(f);
}

static const pst_stream_ops_t h1_stream_ops = {
    .on_head = h1_on_head,
    .on_body = h1_on_body,
    .on_end = h1_on_end,
    .on_error = h1_on_error,
    .on_drain = h1_on_drain,
};

/* ---- the request parser's callbacks ---- */

/* RFC 8470 3: a request in 0-RTT early data may be replayed by an attacker;
 * only one that is safe to repeat goes to the backend before the handshake
 * completes (with Early-Data: 1, stream.c). */
static int h1_early_safe(const pst_http_request_t *req) {
  int no_body =
      req->body == PST_BODY_NONE || (req->body == PST_BODY_LENGTH && req->content_length == 0);
  return no_body && !req->upgrade &&
         (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0 ||
          strcmp(req->method, "OPTIONS") == 0);
}

static int h1_start(h1_front_t *f, pst_http_request_t *req);

static int h1_req_head(void *arg, pst_http_request_t *req) {
  h1_front_t *f = arg;
  f->base.host->ops->head(f->base.host, 0); /* the head is complete */
  if (f->base.host->ops->phase(f->base.host) == PST_HOST_EARLY && !h1_early_safe(req)) {
    f->held = req; /* h1_handshake_done starts it */
    return 1;      /* pause the parser here */
  }
  return h1_start(f, req);
}

/* An HTTP/1.0 request may come without Host; its target URI then has the
 * server's own name as its authority (RFC 9112 3.3). It goes to the backend
 * as HTTP/1.1, where Host is required and an empty one is refused by strict
 * servers (nginx answers 400), so postern names the server: the name the
 * client asked for in SNI, else the backend's address. Returns 0 or
 * -ENOMEM (req unchanged). */
static int h1_default_authority(h1_front_t *f, pst_http_request_t *req) {
  const pst_host_t *h = f->base.host;
  const char *name = NULL;
  if (req->authority != NULL && req->authority[0] != '\0') return 0;
  if (h->sni != NULL && h->sni[0] != '\0' && pst_http_authority_ok(h->sni, strlen(h->sni))) {
    name = h->sni;
  } else if (h->backend != NULL && h->backend->kind == PST_BACKEND_ADDR &&
             pst_http_authority_ok(h->backend->addr.text, strlen(h->backend->addr.text))) {
    name = h->backend->addr.text;
  }
  if (name == NULL || name[0] == '\0') return 0; /* nothing better than empty */
  char *copy = pst_http_dup_n(name, strlen(name));
  if (copy == NULL) return -ENOMEM;
  free(req->authority);
  req->authority = copy;
  return 0;
}

static int h1_start(h1_front_t *f, pst_http_request_t *req) {
  if (h1_default_authority(f, req) != 0) {
    pst_http_request_free(req);
    free(req);
    h1_log(f->base.host, NULL, 500, 0, 0, uv_hrtime());
    h1_error(f, 500, NULL, 1);
    return PST_EBACKEND; /* answered; the feed stops as after a 502 */
  }
  f->minor = req->http_minor;
  f->keep_alive = req->keep_alive;
  f->head_request = strcmp(req->method, "HEAD") == 0;
  f->chunked = 0;
  f->request_done = 0;
  uint64_t t0 = uv_hrtime();
  f->stream = pst_stream_start(f->base.host, &h1_stream_ops, f, 0, req);
  if (f->stream == NULL) {
    h1_log(f->base.host, NULL, 502, 0, 0, t0);
    h1_error(f, 502, "502 Bad Gateway: the backend cannot be reached\n", 1);
    return PST_EBACKEND;
  }
  return 0;
}

static int h1_req_body(void *arg, const char *data, size_t len) {
  h1_front_t *f = arg;
  if (f->stream == NULL) return 0;
  int rc = pst_stream_body(f->stream, data, len);
  if (rc != 0) {
    h1_on_error(f->stream, f->stream->head_sent ? 0 : 502, "backend write failed");
    return PST_EBACKEND;
  }
  return 0;
}

static int h1_req_end(void *arg) {
  h1_front_t *f = arg;
  f->request_done = 1;
  if (f->stream != NULL && pst_stream_body_end(f->stream) != 0) {
    h1_on_error(f->stream, f->stream->head_sent ? 0 : 502, "backend write failed");
    return PST_EBACKEND;
  }
  return 0;
}

static const pst_h1_req_callbacks_t h1_req_callbacks = {
    .on_head = h1_req_head,
    .on_body = h1_req_body,
    .on_end = h1_req_end,
};

/* ---- processing what the client sent ---- */

/* Runs the parser over buffered bytes as far as the current exchange
 * allows. */
static void h1_process_once(h1_front_t *f) {
  pst_host_t *h = f->base.host;
  while (f->in.len > 0 && h->ops->phase(h) != PST_HOST_CLOSING && !f->closing) {
    if (f->tunnel) {
      if (f->stream != NULL && pst_stream_queued(f->stream) > PST_BACKEND_HIGH_WATER) {
        h->ops->pause(h, 1); /* resumed by h1_on_drain */
        break;
      }
      if (f->stream == NULL ||
          pst_stream_tunnel_write(f->stream, pst_buf_head(&f->in), f->in.len) != 0) {
        h->ops->close(h, PST_EBACKEND, "tunnel write failed");
        return;
      }
      pst_buf_consume(&f->in, f->in.len);
      break;
    }
    if (f->held != NULL) break;                      /* waits for the handshake */
    if (f->stream != NULL && f->request_done) break; /* the next request waits its turn */
    if (f->stream == NULL && (f->out_wait || h1_out_full(f))) {
      h1_wait_output(f); /* the next request waits for the client to read */
      break;
    }
    if (f->stream != NULL && pst_stream_queued(f->stream) > PST_BACKEND_HIGH_WATER) {
      h->ops->pause(h, 1); /* resumed by h1_on_drain */
      break;
    }
    if (f->parser == NULL && (f->parser = pst_h1_req_parser_new(&h1_req_callbacks, f,
                                                                h->lc->max_header_bytes)) == NULL) {
      h->ops->close(h, -ENOMEM, "out of memory");
      return;
    }
    if (f->stream == NULL) h->ops->head(h, 1); /* a request head arrives: timeouts.request_head */
    size_t used = 0;
    int status = 400;
    int rc = pst_h1_req_feed(f->parser, pst_buf_head(&f->in), f->in.len, &used, &status);
    pst_buf_consume(&f->in, used);
    if (rc < 0 && rc != PST_EBACKEND) {
      h1_log(h, f->stream ? f->stream->req : NULL, status, 0, 0,
             f->stream ? f->stream->t_start_ns : uv_hrtime());
      if (f->stream != NULL) {
        pst_stream_free(f->stream);
        f->stream = NULL;
      }
      char body[256];
      snprintf(body, sizeof(body), "%d %s: %s\n", status, pst_http_reason(status),
               pst_h1_req_why(f->parser));
      h1_error(f, status, body, 1);
      return;
    }
    if (rc != 0 || used == 0) break;
  }
  /* Pipelined bytes wait while a response goes out: bound them. */
  if (f->in.len > h->lc->max_header_bytes + PST_RECORD_MAX) h->ops->pause(h, 1);
}

static void h1_process(h1_front_t *f) {
  if (f->processing) return;
  f->processing = 1;
  h1_process_once(f);
  f->processing = 0;
  /* Idle between exchanges: the parser goes until the next request. */
  if (f->stream == NULL && f->in.len == 0 && f->held == NULL && f->parser != NULL &&
      pst_h1_req_parser_idle(f->parser)) {
    pst_h1_req_parser_free(f->parser);
    f->parser = NULL;
  }
}

/* ---- front end operations ---- */

static int h1_feed(pst_app_t *base, const char *data, size_t len) {
  h1_front_t *f = F(base);
  if (f->closing) return 0; /* the rest is ignored: the connection is ending */
  if (pst_buf_append(&f->in, data, len) != 0) return -ENOMEM;
  h1_process(f);
  return 0;
}

static void h1_client_eof(pst_app_t *base) {
  h1_front_t *f = F(base);
  f->eof = 1;
  if (f->tunnel && f->stream != NULL) pst_stream_tunnel_shutdown(f->stream);
  if (f->stream == NULL && f->in.len == 0) base->host->ops->end(base->host);
  /* else: the response in progress finishes, then h1_finish ends. */
}

static void h1_client_drain(pst_app_t *base) {
  h1_front_t *f = F(base);
  if (f->stream != NULL) pst_stream_pause(f->stream, 0);
  if (f->out_wait && f->stream == NULL && !f->closing) h1_resume(f);
}

static void h1_shutdown(pst_app_t *base) {
  h1_front_t *f = F(base);
  f->closing = 1;
  if (f->stream == NULL) base->host->ops->end(base->host);
}

static void h1_handshake_done(pst_app_t *base) {
  h1_front_t *f = F(base);
  if (f->held == NULL) return;
  pst_http_request_t *req = f->held;
  f->held = NULL;
  if (h1_start(f, req) != 0) return;
  h1_process(f); /* the held request's body and what follows */
}

static void h1_destroy(pst_app_t *base) {
  h1_front_t *f = F(base);
  if (f->held != NULL) {
    pst_http_request_free(f->held);
    free(f->held);
  }
  pst_stream_free(f->stream);
  pst_h1_req_parser_free(f->parser);
  pst_buf_free(&f->in);
  free(f);
}

static const pst_app_ops_t h1_front_ops = {
    .feed = h1_feed,
    .client_eof = h1_client_eof,
    .drain = h1_client_drain,
    .shutdown = h1_shutdown,
    .destroy = h1_destroy,
    .handshake_done = h1_handshake_done,
};

pst_app_t *pst_h1_app_new(pst_host_t *host) {
  h1_front_t *f = calloc(1, sizeof(*f));
  if (f == NULL) return NULL;
  f->base.ops = &h1_front_ops;
  f->base.host = host; /* the parser comes with the first request bytes */
  return &f->base;
}
