/* postern: one HTTP exchange in http mode (see stream.h): the request
 * written to a leased backend connection as HTTP/1.1, the response parsed
 * and handed to the front end, errors turned into 502/504 or a cut. */
#include "postern/stream.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/balance.h"
#include "postern/common.h"
#include "postern/fl.h"
#include "postern/http.h"
#include "postern/info.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/pool.h"
#include "postern/sni.h"

/* Stream fields only stream.c uses, kept out of the public struct. */
typedef struct {
  pst_stream_t pub;
  pst_h1_resp_parser_t *parser;
  pst_buf_t head; /* the request head as written, kept for one retry */
  int reused;     /* the backend connection came from the pool */
  int got_bytes;  /* the backend has sent something for this exchange */
  int resp_done;  /* the response is complete */
  int busy;       /* inside a callback into the front end */
  int freed;      /* pst_stream_free ran while busy */
  int resp_keep_alive;
  int front_err;   /* what the front end's on_head or on_body refused with */
  int misdirected; /* answered 421 by postern itself (stream_misdirected) */
  pst_pick_t pick; /* the backend set's server leased now (balance.h) */
} stream_t;

/* Where a request postern answers itself goes: an in-process connection
 * (pool.h), which hands back the answer as a backend's response, so that
 * both front ends treat it like any other (access log, keep-alive, h2
 * framing). Only its kind is read. */
static const pst_backend_conf_t stream_local_backend = {.kind = PST_BACKEND_BUILTIN_INFO,
                                                        .addr.text = "postern"};

static const pst_bconn_events_t stream_bconn_events;

static stream_t *S(pst_stream_t *s) { return (stream_t *)s; }

/* The one place a stream changes state. It tells the connection how many
 * of its streams wait for a response head, during which its idle timeout
 * gives way to timeouts.backend_response. A finished stream never starts
 * again. */
static void stream_set_state(pst_stream_t *s, pst_stream_state_t state) {
  assert(s->state != PST_STREAM_DONE || state == PST_STREAM_DONE);
  if (s->state == PST_STREAM_WAITING && state != PST_STREAM_WAITING)
    s->host->ops->waiting(s->host, -1);
  if (state == PST_STREAM_WAITING && s->state != PST_STREAM_WAITING)
    s->host->ops->waiting(s->host, 1);
  s->state = state;
}

static const pst_listener_conf_t *stream_conf(const pst_stream_t *s) { return s->host->lc; }

/* An exchange record per request: kept per worker thread (fl.h). */
static _Thread_local pst_fl_t stream_fl = PST_FL_INIT(sizeof(stream_t));

static void stream_destroy(stream_t *st) {
  pst_stream_t *s = &st->pub;
  assert(s->state != PST_STREAM_WAITING); /* the connection's count stays right */
  s->host->ops->touch(s->host);           /* idle from the end of the exchange */
  if (s->bconn != NULL) pst_bconn_release(s->bconn, 0);
  pst_balance_done(&st->pick);
  pst_h1_resp_parser_free(st->parser);
  pst_buf_free(&st->head);
  pst_buf_free(&s->pending);
  pst_http_request_del(s->req);
  pst_fl_put(&stream_fl, st);
}

/* Ends the exchange with an error; the front end decides what the client
 * sees. The backend connection is not reusable. */
static void stream_fail(stream_t *st, int status, const char *why) {
  pst_stream_t *s = &st->pub;
  if (s->state == PST_STREAM_DONE) return;
  stream_set_state(s, PST_STREAM_DONE);
  if (s->bconn != NULL) {
    pst_bconn_release(s->bconn, 0);
    s->bconn = NULL;
  }
  pst_balance_done(&st->pick);
  pst_log_debug("conn %llu: stream %d: %s", (unsigned long long)s->host->id, s->h2_id, why);
  st->busy++;
  s->ops->on_error(s, s->head_sent ? 0 : status, why);
  st->busy--;
}

static void stream_complete(stream_t *st) {
  pst_stream_t *s = &st->pub;
  if (s->state == PST_STREAM_DONE) return;
  stream_set_state(s, PST_STREAM_DONE);
  if (s->bconn != NULL) {
    /* Reusable only when both messages are complete (RFC 9112 9.3). */
    pst_bconn_release(s->bconn, st->resp_keep_alive && s->req_done && s->pending.len == 0 &&
                                    pst_balance_keep(&st->pick));
    s->bconn = NULL;
  }
  pst_balance_done(&st->pick);
  st->busy++;
  s->ops->on_end(s);
  st->busy--;
}

/* Frees a stream whose front end asked for it during a callback. Returns 1
 * when the stream is gone and the caller must not touch it. */
static int stream_settle(stream_t *st) {
  if (st->busy > 0 || !st->freed) return 0;
  stream_destroy(st);
  return 1;
}

/* ---- response parser callbacks ---- */

static int stream_on_head(void *arg, pst_http_response_t *resp) {
  stream_t *st = arg;
  pst_stream_t *s = &st->pub;
  if (st->freed || s->state == PST_STREAM_DONE) {
    pst_http_response_free(resp);
    free(resp);
    return PST_ESHUTDOWN; /* the front end let go of the stream: stop parsing */
  }
  if (resp->status >= 100 && resp->status < 200 && resp->status != 101) {
    /* 100 Continue and 103 Early Hints go to the front end as they are. */
    st->busy++;
    int rc = s->ops->on_head(s, resp);
    st->busy--;
    if (rc != 0) st->front_err = rc;
    return rc;
  }
  pst_bconn_timer(s->bconn, 0);                  /* the head came within backend_response */
  pst_balance_response(&st->pick, resp->status); /* a 5xx counts toward passive ejection */
  if (resp->status == 101) {
    if (!s->req->upgrade) {
      pst_http_response_free(resp);
      free(resp);
      return PST_EPROTO; /* 101 to a request that did not ask for it */
    }
    stream_set_state(s, PST_STREAM_TUNNEL);
  } else {
    stream_set_state(s, PST_STREAM_RECEIVING);
  }
  s->status = resp->status;
  s->head_sent = 1;
  st->resp_keep_alive = resp->keep_alive;
  st->busy++;
  int rc = s->ops->on_head(s, resp);
  st->busy--;
  if (rc != 0) st->front_err = rc;
  return rc;
}

static int stream_on_body(void *arg, const char *data, size_t len) {
  stream_t *st = arg;
  pst_stream_t *s = &st->pub;
  if (st->freed || s->state == PST_STREAM_DONE) return PST_ESHUTDOWN;
  s->host->ops->touch(s->host); /* traffic: not idle */
  s->bytes_out += len;
  st->busy++;
  int rc = s->ops->on_body(s, data, len);
  st->busy--;
  if (rc != 0) st->front_err = rc;
  return rc;
}

static int stream_on_end(void *arg) {
  stream_t *st = arg;
  st->resp_done = 1;
  return 0;
}

static const pst_h1_resp_callbacks_t stream_parser_callbacks = {
    .on_head = stream_on_head,
    .on_body = stream_on_body,
    .on_end = stream_on_end,
};

/* ---- backend connection events ---- */

/* builtin:info, an in-process backend: its answer to the request, parsed
 * back like any backend's. Request body bytes have nowhere to go. */
static int stream_ask_info(stream_t *st) {
  pst_stream_t *s = &st->pub;
  pst_info_facts_t facts;
  pst_buf_t answer = {0}, accept = {0};
  s->host->ops->facts(s->host, &facts);
  /* Several Accept fields form one list (RFC 9110 5.3). */
  const pst_headers_t *hs = &s->req->headers;
  int rc = 0;
  for (size_t i = 0; i < hs->n && rc == 0; i++) {
    if (hs->v[i].name_len != 6 || strcasecmp(hs->v[i].name, "accept") != 0) continue;
    if (accept.len > 0) rc = pst_buf_append(&accept, ", ", 2);
    if (rc == 0) rc = pst_buf_append(&accept, hs->v[i].value, hs->v[i].value_len);
  }
  if (rc == 0) rc = pst_buf_append(&accept, "", 1); /* NUL-ended */
  if (rc == 0) rc = pst_info_respond(s->req->method, pst_buf_head(&accept), &facts, &answer);
  if (rc == 0) rc = pst_bconn_local_answer(s->bconn, &answer);
  pst_buf_free(&accept);
  pst_buf_free(&answer);
  pst_buf_free(&s->pending);
  return rc;
}

/* The answer to a misdirected request (RFC 9110 15.5.20): the client may
 * send it again on a connection of its own for that host. */
static int stream_answer_misdirected(stream_t *st) {
  pst_stream_t *s = &st->pub;
  pst_buf_t answer = {0};
  int rc = pst_http_error_write(&answer, 421,
                                "421 Misdirected Request: this connection's server name routes "
                                "elsewhere; use a connection for this host\n",
                                0);
  if (rc == 0) rc = pst_bconn_local_answer(s->bconn, &answer);
  if (rc == 0) pst_metrics_http_generated(s->host->lc->metrics_slot, 421);
  pst_buf_free(&answer);
  pst_buf_free(&s->pending);
  return rc;
}

static int stream_send_head(stream_t *st) {
  pst_stream_t *s = &st->pub;
  if (pst_bconn_is_local(s->bconn)) {
    int rc = st->misdirected ? stream_answer_misdirected(st) : stream_ask_info(st);
    if (rc != 0) return rc;
    stream_set_state(s, s->req_done ? PST_STREAM_WAITING : PST_STREAM_SENDING);
    return 0;
  }
  int rc = pst_bconn_write(s->bconn, pst_buf_head(&st->head), st->head.len);
  if (rc == 0 && s->pending.len > 0) {
    rc = pst_bconn_write(s->bconn, pst_buf_head(&s->pending), s->pending.len);
    pst_buf_consume(&s->pending, s->pending.len);
  }
  if (rc != 0) return rc;
  stream_set_state(s, s->req_done ? PST_STREAM_WAITING : PST_STREAM_SENDING);
  if (s->req_done) pst_bconn_timer(s->bconn, stream_conf(s)->backend_response_timeout_ms);
  pst_bconn_read(s->bconn, !s->resp_paused);
  return 0;
}

/* A backend with proxy_protocol: each new server connection starts with a
 * PROXY header saying who the client is, so it serves this client
 * connection only (pool.h: owner, the connection's id) and goes to no other
 * client through the pool. Returns the owner, 0 for a shared connection. */
static uint64_t stream_owner(const pst_stream_t *s, const pst_backend_conf_t *bc) {
  return bc->kind == PST_BACKEND_ADDR && bc->proxy_protocol != PST_PROXY_NONE ? s->host->id : 0;
}

/* Leases a connection to bc (a server of the backend set, builtin:info or
 * the in-process 421) for the stream_t arg; fresh: not a pooled one (a
 * retry). A pst_balance_lease_fn. Returns 0 or a negative error. */
static int stream_lease_to(void *arg, const pst_backend_conf_t *bc, int fresh) {
  stream_t *st = arg;
  pst_stream_t *s = &st->pub;
  int err = 0;
  uint64_t owner = stream_owner(s, bc);
  s->bconn = pst_pool_lease_owned(s->host->pools, stream_conf(s), bc,
                                  fresh ? PST_LEASE_FRESH : PST_LEASE_POOLED, owner,
                                  &stream_bconn_events, st, &st->reused, &err);
  if (s->bconn == NULL) return err;
  st->got_bytes = 0;
  if (!st->reused) {
    /* The connect's share of timeouts.backend_connect (balance.h). */
    pst_bconn_timer(s->bconn,
                    pst_balance_connect_ms(&st->pick, stream_conf(s)->backend_connect_timeout_ms));
    /* stream_bconn_on_connect goes on */
    int rc = owner != 0 ? pst_bconn_write_proxy(s->bconn, s->host, bc->proxy_protocol) : 0;
    if (rc != 0) {
      /* A failed lease holds nothing: the next server's lease (balance.h)
       * takes s->bconn. */
      pst_bconn_release(s->bconn, 0);
      s->bconn = NULL;
    }
    return rc;
  }
  int rc = stream_send_head(st);
  if (rc != 0 && !fresh) {
    /* The pooled connection died before taking a byte: nothing was sent,
     * so any request may go on a fresh one. */
    pst_bconn_release(s->bconn, 0);
    s->bconn = NULL;
    return stream_lease_to(st, bc, 1);
  }
  return rc;
}

/* The first lease: the balancer picks the server (balance.h); a connect
 * refused at once (no route, say) goes on to another within retries. */
static int stream_lease(stream_t *st) {
  pst_stream_t *s = &st->pub;
  if (st->misdirected) return stream_lease_to(st, &stream_local_backend, 0);
  const pst_backend_conf_t *bc = pst_balance_pick(s->host->backend, s->host->peer_ip, &st->pick);
  return pst_balance_lease(&st->pick, bc, 0, stream_conf(s)->backend_connect_timeout_ms,
                           stream_lease_to, st);
}

/* The one retry mechanism: after a connect failure (avoid_current: another
 * server, within backends' retries and the connect timeout), or after a
 * connection that closed without a response byte (stream_retryable). The
 * request head is kept and sent again; body bytes that waited for the
 * connect are still pending. Returns 1 when a new lease is under way, 0
 * when no retry is left (the caller fails the stream). */
static int stream_retry(stream_t *st, int avoid_current, const char *why) {
  pst_stream_t *s = &st->pub;
  const pst_backend_conf_t *bc =
      pst_balance_next(&st->pick, avoid_current, stream_conf(s)->backend_connect_timeout_ms);
  if (bc == NULL && !avoid_current && st->pick.set == NULL && !st->misdirected) {
    bc = s->host->backend; /* a backend without a set: the same address again */
  }
  if (bc == NULL) return 0;
  if (s->bconn != NULL) {
    pst_bconn_release(s->bconn, 0);
    s->bconn = NULL;
  }
  pst_log_debug("conn %llu: stream %d: %s: retrying on %s", (unsigned long long)s->host->id,
                s->h2_id, why, bc->addr.text);
  stream_set_state(s, PST_STREAM_CONNECTING); /* a fresh connection, connecting */
  return pst_balance_lease(&st->pick, bc, 1, stream_conf(s)->backend_connect_timeout_ms,
                           stream_lease_to, st) == 0;
}

static void stream_bconn_on_connect(void *arg, int status) {
  stream_t *st = arg;
  pst_stream_t *s = &st->pub;
  pst_balance_connected(&st->pick, status);
  if (status < 0) {
    char why[300];
    snprintf(why, sizeof(why), "backend %s: server %s: connect failed: %s",
             s->host->backend->addr.text, pst_balance_server(&st->pick), pst_strerror(status));
    pst_log_warn("conn %llu: %s", (unsigned long long)s->host->id, why);
    if (!stream_retry(st, 1, "connect failed")) stream_fail(st, 502, "backend connect failed");
    stream_settle(st);
    return;
  }
  int rc = stream_send_head(st);
  if (rc != 0) {
    stream_fail(st, 502, "backend write failed");
    stream_settle(st);
    return;
  }
  /* Body bytes that waited for the connection may all have been taken by
   * the socket at once, and then no write callback will say so: tell the
   * front end now that it may send more (an h2 client's window waits on it). */
  if (s->state == PST_STREAM_SENDING && pst_stream_queued(s) < PST_BACKEND_LOW_WATER) {
    st->busy++;
    s->ops->on_drain(s);
    st->busy--;
    stream_settle(st);
  }
}

/* Whether the request may be sent again: no response byte came back, it
 * has no body (only the head is kept), and either the pooled connection
 * was stale (it says nothing of the request: once) or the method is safe
 * (RFC 9110 9.2.1: GET, HEAD, OPTIONS, TRACE), so that a server that saw
 * it and died cannot have acted on it. */
static int stream_retryable(const stream_t *st, int *stale) {
  const pst_http_request_t *r = st->pub.req;
  int no_body = r->body == PST_BODY_NONE || (r->body == PST_BODY_LENGTH && r->content_length == 0);
  if (st->got_bytes || !no_body || st->misdirected) return 0;
  int safe = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0 ||
             strcmp(r->method, "OPTIONS") == 0 || strcmp(r->method, "TRACE") == 0;
  *stale = st->reused && !st->pub.retried;
  return safe;
}

static void stream_backend_closed(stream_t *st, ssize_t n) {
  pst_stream_t *s = &st->pub;
  int stale = 0;
  if (stream_retryable(st, &stale)) {
    /* A stale pooled connection: the same server, fresh; a server that
     * closed a fresh one on the request: another server. */
    s->retried = s->retried || stale;
    if (stream_retry(st, !stale, "backend closed without a response")) return;
  }
  if (n == UV_EOF && pst_h1_resp_finish(st->parser) == 0) {
    if (st->resp_done || s->state == PST_STREAM_TUNNEL) {
      st->resp_keep_alive = 0;
      stream_complete(st);
      return;
    }
  }
  stream_fail(st, 502, n == UV_EOF ? "backend closed the connection" : "backend read failed");
}

static void stream_bconn_on_read(void *arg, const char *data, ssize_t n) {
  stream_t *st = arg;
  pst_stream_t *s = &st->pub;
  if (n < 0) {
    stream_backend_closed(st, n);
    stream_settle(st);
    return;
  }
  st->got_bytes = 1;
  if (s->state == PST_STREAM_TUNNEL) {
    stream_on_body(st, data, (size_t)n);
    stream_settle(st);
    return;
  }
  size_t off = 0;
  while (off < (size_t)n && s->state != PST_STREAM_DONE && !st->freed) {
    size_t used = 0;
    int rc = pst_h1_resp_feed(st->parser, data + off, (size_t)n - off, &used);
    off += used;
    if (rc != 0) {
      /* A refusal of the front end (its client is gone, say) is not the
       * backend's fault. */
      if (!st->freed) {
        stream_fail(st, 502,
                    st->front_err != 0 ? "the client side refused the response"
                                       : "invalid response from the backend");
      }
      break;
    }
    if (s->state == PST_STREAM_TUNNEL) {
      /* Bytes after a 101 head belong to the tunnel. */
      if (off < (size_t)n && !st->freed) stream_on_body(st, data + off, (size_t)n - off);
      break;
    }
    if (st->resp_done) {
      if (off < (size_t)n) st->resp_keep_alive = 0; /* bytes nobody asked for */
      stream_complete(st);
      break;
    }
    if (used == 0) break;
  }
  stream_settle(st);
}

static void stream_bconn_on_drain(void *arg) {
  stream_t *st = arg;
  pst_stream_t *s = &st->pub;
  if (s->state != PST_STREAM_SENDING && s->state != PST_STREAM_TUNNEL) return;
  st->busy++;
  s->ops->on_drain(s);
  st->busy--;
  stream_settle(st);
}

static void stream_bconn_on_timer(void *arg) {
  stream_t *st = arg;
  pst_stream_t *s = &st->pub;
  if (s->state == PST_STREAM_CONNECTING) {
    pst_balance_connected(&st->pick, UV_ETIMEDOUT);
    pst_log_warn("conn %llu: backend %s: server %s: connect timeout",
                 (unsigned long long)s->host->id, s->host->backend->addr.text,
                 pst_balance_server(&st->pick));
    if (!stream_retry(st, 1, "connect timeout")) stream_fail(st, 502, "backend connect timeout");
  } else {
    pst_metrics_backend_timeout(s->host->lc->metrics_slot, PST_MPHASE_RESPONSE);
    stream_fail(st, 504, "no response head within timeouts.backend_response");
  }
  stream_settle(st);
}

static void stream_bconn_on_write_error(void *arg, int status) {
  stream_t *st = arg;
  stream_fail(st, 502, "backend write failed");
  stream_settle(st);
}

static const pst_bconn_events_t stream_bconn_events = {
    .on_connect = stream_bconn_on_connect,
    .on_read = stream_bconn_on_read,
    .on_drain = stream_bconn_on_drain,
    .on_timer = stream_bconn_on_timer,
    .on_write_error = stream_bconn_on_write_error,
};

/* ---- the front end's calls ---- */

/* Whether two routes lead to the same place. */
static int same_backend(const pst_backend_conf_t *a, const pst_backend_conf_t *b) {
  if (a == b) return 1;
  if (a->kind != b->kind) return 0;
  if (a->kind == PST_BACKEND_BUILTIN_INFO) return 1;
  if (a->set != NULL && b->set != NULL && (!a->set->inline_set || !b->set->inline_set)) {
    return a->set == b->set;
  }
  return a->addr.len == b->addr.len && memcmp(&a->addr.ss, &b->addr.ss, a->addr.len) == 0;
}

/* RFC 9110 15.5.20, RFC 9113 9.1.1: a client may reuse a connection for
 * every host its certificate covers (a wildcard, several names), but
 * postern routes a connection by its server name (SNI) alone. A request
 * whose host routes to another backend than the connection's is answered
 * 421 Misdirected Request, so that the client opens a connection of its
 * own for that host instead of reaching the wrong backend. The port of the
 * authority is not compared: one listener serves one port. An empty
 * authority (HTTP/1.0 without Host) names no host and is not refused. */
static int stream_misdirected(const pst_host_t *host, const pst_http_request_t *req) {
  if (host->routes == NULL || req->authority == NULL || req->authority[0] == '\0') return 0;
  const char *a = req->authority;
  size_t n;
  if (a[0] == '[') {
    const char *e = strchr(a, ']'); /* an IP literal (RFC 3986 3.2.2) */
    n = e != NULL ? (size_t)(e - a) + 1 : strlen(a);
  } else {
    n = strcspn(a, ":");
  }
  const pst_backend_conf_t *want = pst_sni_route(host->routes, host->lc, a, n);
  return !same_backend(want, host->backend);
}

pst_stream_t *pst_stream_start(pst_host_t *host, const pst_stream_ops_t *ops, void *front,
                               int32_t h2_id, pst_http_request_t *req) {
  stream_t *st = pst_fl_get0(&stream_fl);
  if (st == NULL) goto nomem;
  pst_stream_t *s = &st->pub;
  s->host = host;
  s->ops = ops;
  s->front = front;
  s->h2_id = h2_id;
  s->req = req;
  s->t_start_ns = uv_hrtime();
  s->early_data = host->ops->phase(host) == PST_HOST_EARLY;
  s->state = PST_STREAM_CONNECTING;
  s->req_done = req->body == PST_BODY_NONE;
  st->parser =
      pst_h1_resp_parser_new(&stream_parser_callbacks, st, stream_conf(s)->max_header_bytes);
  if (st->parser == NULL) goto nomem;
  pst_h1_resp_expect(st->parser, req->method);
  pst_forward_info_t fwd = {
      .client_ip = host->peer_ip,
      .mode = stream_conf(s)->forwarded,
      /* Started before the handshake completed: the request came as 0-RTT
       * early data and may be a replay (RFC 8470 5.1). */
      .early_data = s->early_data,
  };
  const pst_client_cert_t *cc =
      host->ops->client_cert != NULL ? host->ops->client_cert(host) : NULL;
  if (cc != NULL) { /* tls.client_auth.forward: headers, RFC 9440 */
    fwd.client_cert = cc->header;
    fwd.client_cert_chain = cc->chain_header;
  }
  if (pst_http_request_write(req, &fwd, &st->head) != 0) goto nomem;
  st->misdirected = stream_misdirected(host, req);
  if (st->misdirected) {
    pst_log_debug(
        "conn %llu: stream %d: the request's host routes elsewhere than the "
        "connection's server name: 421",
        (unsigned long long)host->id, h2_id);
  }
  if (stream_lease(st) != 0) goto nomem;
  return s;
nomem:
  if (st != NULL) {
    st->pub.req = NULL;
    stream_destroy(st);
  }
  pst_http_request_del(req);
  return NULL;
}

static int stream_write(stream_t *st, const char *data, size_t len) {
  pst_stream_t *s = &st->pub;
  if (s->bconn != NULL && pst_bconn_is_local(s->bconn)) return 0; /* builtin:info takes no body */
  if (s->bconn != NULL && s->state != PST_STREAM_CONNECTING) {
    return pst_bconn_write(s->bconn, data, len);
  }
  return pst_buf_append(&s->pending, data, len);
}

int pst_stream_body(pst_stream_t *s, const char *data, size_t len) {
  stream_t *st = S(s);
  if (s->state == PST_STREAM_DONE || len == 0) return 0;
  s->host->ops->touch(s->host);
  s->bytes_in += len;
  if (s->req->body != PST_BODY_CHUNKED && s->req->body != PST_BODY_STREAM) {
    return stream_write(st, data, len);
  }
  /* The request goes to the backend chunked (RFC 9112 7.1). */
  pst_buf_t chunk = {0};
  int rc = pst_http_chunk(&chunk, data, len);
  if (rc == 0) rc = stream_write(st, pst_buf_head(&chunk), chunk.len);
  pst_buf_free(&chunk);
  return rc;
}

int pst_stream_body_end(pst_stream_t *s) {
  stream_t *st = S(s);
  if (s->state == PST_STREAM_DONE || s->req_done) return 0;
  s->req_done = 1;
  int rc = 0;
  if (s->req->body == PST_BODY_CHUNKED || s->req->body == PST_BODY_STREAM) {
    pst_buf_t last = {0};
    rc = pst_http_chunk(&last, NULL, 0);
    if (rc == 0) rc = stream_write(st, pst_buf_head(&last), last.len);
    pst_buf_free(&last);
  }
  if (s->state == PST_STREAM_SENDING) {
    stream_set_state(s, PST_STREAM_WAITING);
    pst_bconn_timer(s->bconn, stream_conf(s)->backend_response_timeout_ms);
  }
  return rc;
}

size_t pst_stream_queued(const pst_stream_t *s) {
  size_t n = s->pending.len;
  if (s->bconn != NULL && s->state != PST_STREAM_CONNECTING) n += pst_bconn_queued(s->bconn);
  return n;
}

void pst_stream_pause(pst_stream_t *s, int pause) {
  s->resp_paused = !!pause;
  if (s->bconn != NULL && s->state != PST_STREAM_CONNECTING && s->state != PST_STREAM_DONE) {
    pst_bconn_read(s->bconn, !pause);
  }
}

int pst_stream_tunnel_write(pst_stream_t *s, const char *data, size_t len) {
  if (s->state != PST_STREAM_TUNNEL || s->bconn == NULL) return PST_EPROTO;
  s->host->ops->touch(s->host);
  s->bytes_in += len;
  return pst_bconn_write(s->bconn, data, len);
}

void pst_stream_free(pst_stream_t *s) {
  if (s == NULL) return;
  stream_t *st = S(s);
  stream_set_state(s, PST_STREAM_DONE);
  if (s->bconn != NULL) {
    pst_bconn_release(s->bconn, 0);
    s->bconn = NULL;
  }
  pst_balance_done(&st->pick);
  if (st->busy > 0) {
    st->freed = 1; /* freed when the callback returns */
    return;
  }
  stream_destroy(st);
}

void pst_stream_tunnel_shutdown(pst_stream_t *s) {
  if (s->state == PST_STREAM_TUNNEL && s->bconn != NULL) pst_bconn_shutdown(s->bconn);
}
