/* postern: the admin endpoint (see include/postern/admin.h): its listening
 * socket, its connections and their requests, on the main loop.
 *
 * Every answer is made at once, on the loop, when its request's head has
 * been parsed: there is nothing to wait for. So a connection is a small
 * loop of its own: read, feed the parser, answer each complete request in
 * order (pipelined ones included), until the client's output passes a
 * high-water mark; then reading stops until the writes drain. What one
 * connection holds is bounded by its input buffer (ADMIN_IN_SIZE), the
 * parser's 8 KiB head limit and the high-water mark plus one answer. */
#include "postern/admin.h"

#include <assert.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin_int.h"
#include "postern/common.h"
#include "postern/config.h"
#include "postern/gen.h"
#include "postern/http.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/reload.h"

#define ADMIN_MAX_HEAD 8192          /* request line and fields, up to the blank line */
#define ADMIN_IN_SIZE 16384          /* bytes read and not yet parsed (pipelined requests) */
#define ADMIN_IDLE_MS 30000          /* between requests */
#define ADMIN_REQUEST_MS 10000       /* a request's first byte to its answer's last */
#define ADMIN_HIGH_WATER (256 << 10) /* answers not yet written: stop reading past it */
#define ADMIN_BACKLOG 64
#define ADMIN_FULL_LOG_MS 60000 /* "too many admin connections" at most once a minute */

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_TYPE "text/plain; charset=utf-8"

typedef enum {
  ACONN_OPEN = 0,    /* reading requests and answering each in order */
  ACONN_CLOSING = 1, /* the last answer is queued: FIN after it, input read and dropped */
  ACONN_CLOSED = 2,  /* uv_close called on both handles; freed when both callbacks ran */
} aconn_state_t;

typedef struct aconn_s {
  pst_admin_t *admin;
  struct aconn_s *prev, *next; /* admin->conns, oldest first */
  uv_tcp_t tcp;
  uv_timer_t timer; /* idle, request or closing deadline */
  uv_shutdown_t shutdown;
  pst_h1_req_parser_t *parser;
  aconn_state_t state;
  int handles;     /* handles not yet closed back: freed at 0 */
  int writes;      /* uv_write requests in flight */
  int reading;     /* uv_read_start in effect */
  int in_request;  /* part of a request has arrived, its answer not made yet */
  int busy;        /* the timer runs ADMIN_REQUEST_MS (else ADMIN_IDLE_MS); -1 unarmed */
  int ended;       /* the parser's on_end ran during this feed */
  int close_after; /* the answer just made ends the connection */
  int eof;         /* the client ended its side */
  int shut;        /* our FIN is out (the shutdown's callback ran) */
  uint64_t since;  /* uv_hrtime() when it became idle, or its request or answer began */
  size_t in_len;
  char in[ADMIN_IN_SIZE];
} aconn_t;

typedef struct {
  uv_write_t req;
  aconn_t *c;
  pst_buf_t buf;
} awrite_t;

/* One listening socket; allocated on its own so that a reload can open the
 * new one before the old one's close callback has run. */
typedef struct {
  uv_tcp_t tcp;
  pst_admin_t *admin;
} alistener_t;

struct pst_admin_s {
  uv_loop_t *loop; /* NULL until pst_admin_start */
  int fd;          /* bound, listening, not yet in a handle; or -1 */
  int on;          /* an admin.listen is served (or about to be) */
  pst_addr_t addr; /* its address, when on */
  alistener_t *listener;
  aconn_t *conns, *conns_last;
  unsigned n_conns;
  int ready;
  int was_ready; /* ready was set once: not ready now means shutting down */
  int closed;    /* pst_admin_close ran */
  unsigned n_workers;
  pst_gen_t *gen;       /* one reference, until the reload takes over */
  pst_reload_t *reload; /* NULL until pst_admin_set_reload */
  double start_time;
  uint64_t full_logged_ms;
};

/* ---- the listening socket ---- */

/* Binds addr and listens, without SO_REUSEPORT (admin.h). Returns the
 * descriptor or -errno. */
static int admin_socket(const pst_addr_t *addr) {
  int family = addr->ss.ss_family;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
      bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0 ||
      listen(fd, ADMIN_BACKLOG) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

static void admin_bind_error(const pst_config_t *cfg, int err, const char *after) {
  pst_log_error(
      "%s:%d:%d: admin.listen: cannot listen on %s: %s%s%s", cfg->path, cfg->admin_listen_mark.line,
      cfg->admin_listen_mark.column, cfg->admin_listen.text, pst_strerror(err),
      err == -EADDRINUSE ? " (another process listens there: is postern already running?)" : "",
      after);
}

static void aconn_on_connection(uv_stream_t *server, int status);
static void aconn_read_start(aconn_t *c);

static void alistener_on_close(uv_handle_t *h) {
  free(PST_CONTAINER_OF((uv_tcp_t *)h, alistener_t, tcp));
}

/* Puts a->fd in a listener handle on a->loop. Returns 0 or a negative
 * libuv error (the descriptor is closed then, and the endpoint off). */
static int admin_listen(pst_admin_t *a) {
  assert(a->loop != NULL && a->fd >= 0 && a->listener == NULL);
  alistener_t *l = calloc(1, sizeof(*l));
  int rc = l == NULL ? UV_ENOMEM : uv_tcp_init(a->loop, &l->tcp);
  if (rc != 0) {
    free(l);
  } else {
    l->admin = a;
    rc = uv_tcp_open(&l->tcp, a->fd);
    if (rc == 0) {
      a->fd = -1; /* the handle's now: closed with it */
      rc = uv_listen((uv_stream_t *)&l->tcp, ADMIN_BACKLOG, aconn_on_connection);
    }
    if (rc == 0) {
      a->listener = l;
      return 0;
    }
    uv_close((uv_handle_t *)&l->tcp, alistener_on_close);
  }
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
  a->on = 0;
  pst_log_error("admin endpoint: cannot serve: %s", uv_strerror(rc));
  return rc;
}

static void admin_unlisten(pst_admin_t *a) {
  if (a->listener != NULL) uv_close((uv_handle_t *)&a->listener->tcp, alistener_on_close);
  a->listener = NULL;
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
}

/* ---- one connection ---- */

static void aconn_on_handle_close(uv_handle_t *h) {
  aconn_t *c = h->data;
  if (--c->handles > 0) return;
  pst_h1_req_parser_free(c->parser);
  free(c);
}

/* The one way a connection ends: both handles closed (pending writes and
 * the shutdown are cancelled: their callbacks run before the close
 * callbacks), the structure freed when both close callbacks have run. */
static void aconn_close(aconn_t *c) {
  if (c->state == ACONN_CLOSED) return;
  pst_admin_t *a = c->admin;
  c->state = ACONN_CLOSED;
  if (c->prev != NULL) c->prev->next = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  if (a->conns == c) a->conns = c->next;
  if (a->conns_last == c) a->conns_last = c->prev;
  assert(a->n_conns > 0);
  a->n_conns--;
  uv_close((uv_handle_t *)&c->timer, aconn_on_handle_close);
  uv_close((uv_handle_t *)&c->tcp, aconn_on_handle_close);
}

static void aconn_on_timeout(uv_timer_t *t) { aconn_close(t->data); }

/* Keeps the timer in step with what the connection does: between requests
 * ADMIN_IDLE_MS from the last answer; from a request's first byte until its
 * answer is written, ADMIN_REQUEST_MS in all. */
static void aconn_arm(aconn_t *c) {
  if (c->state != ACONN_OPEN) return;
  int busy = c->in_request || c->writes > 0;
  if (busy && c->busy != 1) {
    uv_timer_start(&c->timer, aconn_on_timeout, ADMIN_REQUEST_MS, 0);
    c->since = uv_hrtime();
  } else if (!busy && c->busy != 0) {
    uv_timer_start(&c->timer, aconn_on_timeout, ADMIN_IDLE_MS, 0);
    c->since = uv_hrtime();
  }
  c->busy = busy;
}

static void aconn_on_shutdown(uv_shutdown_t *req, int status) {
  aconn_t *c = req->data;
  if (c->state == ACONN_CLOSED) return;
  /* Our FIN is out after the last answer: the client's end, or the
   * closing deadline, ends the connection. */
  c->shut = 1;
  if (status != 0 || c->eof) aconn_close(c);
}

/* The answer just queued is the last: FIN once it is written (uv_shutdown
 * waits for the writes), and the client's further bytes are read and
 * dropped, so that they do not turn the close into a reset that could
 * destroy the answer before the client reads it (RFC 9112 9.6). */
static void aconn_finish(aconn_t *c) {
  if (c->state != ACONN_OPEN) return;
  c->state = ACONN_CLOSING;
  c->in_len = 0;
  uv_timer_start(&c->timer, aconn_on_timeout, ADMIN_REQUEST_MS, 0);
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, aconn_on_shutdown) != 0) {
    aconn_close(c);
    return;
  }
  if (!c->eof) aconn_read_start(c);
}

static void aconn_process(aconn_t *c);

static void aconn_on_write(uv_write_t *req, int status) {
  awrite_t *w = PST_CONTAINER_OF(req, awrite_t, req);
  aconn_t *c = w->c;
  pst_buf_free(&w->buf);
  free(w);
  c->writes--;
  if (c->state != ACONN_OPEN) return; /* closing: the shutdown follows the writes */
  if (status != 0) {
    aconn_close(c);
    return;
  }
  /* Under half the mark again: take the pipelined requests read meanwhile,
   * then read on. */
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < ADMIN_HIGH_WATER / 2) {
    aconn_process(c);
  }
  aconn_arm(c);
}

/* Queues out's bytes (taken over: out is empty afterwards). Returns 0 or a
 * negative error, after which the connection is closed. */
static int aconn_write(aconn_t *c, pst_buf_t *out) {
  awrite_t *w = calloc(1, sizeof(*w));
  if (w == NULL) {
    pst_buf_free(out);
    aconn_close(c);
    return -ENOMEM;
  }
  w->c = c;
  w->buf = *out;
  memset(out, 0, sizeof(*out));
  uv_buf_t b = uv_buf_init(pst_buf_head(&w->buf), (unsigned)w->buf.len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, aconn_on_write);
  if (rc != 0) {
    pst_buf_free(&w->buf);
    free(w);
    aconn_close(c);
    return rc;
  }
  c->writes++;
  return 0;
}

/* What /metrics shows besides the counters, from the running generation. */
static void admin_view(const pst_admin_t *a, pst_admin_view_t *v) {
  memset(v, 0, sizeof(*v));
  if (a->reload != NULL) {
    v->gen = pst_reload_gen(a->reload);
    v->generation = pst_reload_generation(a->reload);
    v->last_reload = pst_reload_last_time(a->reload);
    v->last_reload_ok = pst_reload_last_ok(a->reload);
  } else {
    v->gen = a->gen;
    v->generation = a->gen->number;
    v->last_reload = (time_t)a->start_time;
    v->last_reload_ok = 1;
  }
  v->n_workers = a->n_workers;
  v->ready = a->ready;
  v->start_time = a->start_time;
  v->now = time(NULL);
}

/* The body of GET target (its path: the query is ignored) into body, with
 * its status and type. Returns 0 or -ENOMEM. */
static int admin_resource(const pst_admin_t *a, const char *target, pst_buf_t *body, int *status,
                          const char **type) {
  size_t n = strcspn(target, "?");
  *type = TEXT_TYPE;
  *status = 200;
  if (n == 8 && memcmp(target, "/metrics", 8) == 0) {
    pst_admin_view_t v;
    admin_view(a, &v);
    *type = METRICS_TYPE;
    if (pst_metrics_render(body) != 0 || pst_admin_render(body, &v) != 0) return -ENOMEM;
    return 0;
  }
  if (n == 8 && memcmp(target, "/healthz", 8) == 0) return pst_buf_printf(body, "ok\n");
  if (n == 7 && memcmp(target, "/readyz", 7) == 0) {
    if (a->ready) return pst_buf_printf(body, "ready\n");
    *status = 503;
    return pst_buf_printf(body, a->was_ready ? "not ready: shutting down\n" : "not ready\n");
  }
  *status = 404;
  return pst_buf_printf(body,
                        "404 Not Found: the admin endpoint serves /metrics, /healthz and "
                        "/readyz\n");
}

/* Makes and queues the answer to req. Returns 0 or a negative error (the
 * connection is closed then). */
static int aconn_answer(aconn_t *c, const pst_http_request_t *req) {
  int get = strcmp(req->method, "GET") == 0, head = strcmp(req->method, "HEAD") == 0;
  pst_buf_t body = {0}, out = {0};
  const char *type = TEXT_TYPE, *allow = "";
  int status, rc;
  /* A body is not read: the connection ends after the answer. */
  c->close_after = !req->keep_alive || req->body != PST_BODY_NONE;
  if (!get && !head) {
    status = 405;
    allow = "Allow: GET, HEAD\r\n";
    rc = pst_buf_printf(&body, "405 Method Not Allowed: the admin endpoint answers GET and HEAD\n");
  } else {
    rc = admin_resource(c->admin, req->target, &body, &status, &type);
  }
  if (rc != 0) {
    pst_buf_free(&body);
    c->close_after = 1;
    if (pst_http_error_write(&out, 500, NULL, 1) != 0) {
      aconn_close(c);
      return -ENOMEM;
    }
    return aconn_write(c, &out);
  }
  const char *conn = c->close_after         ? "Connection: close\r\n"
                     : req->http_minor == 0 ? "Connection: keep-alive\r\n"
                                            : "";
  /* HEAD: the fields GET would have, Content-Length included, no body
   * (RFC 9110 9.3.2). */
  rc = pst_buf_printf(&out,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\n%s%s\r\n",
                      status, pst_http_reason(status), type, body.len, allow, conn);
  if (rc == 0 && !head && body.len > 0) rc = pst_buf_append(&out, pst_buf_head(&body), body.len);
  pst_buf_free(&body);
  if (rc != 0) {
    pst_buf_free(&out);
    aconn_close(c);
    return -ENOMEM;
  }
  return aconn_write(c, &out);
}

static int aconn_on_head(void *arg, pst_http_request_t *req) {
  aconn_t *c = arg;
  int rc = aconn_answer(c, req);
  pst_http_request_free(req);
  free(req);
  c->in_request = 0;
  c->busy = -1; /* each answer gets ADMIN_REQUEST_MS to be read */
  /* Nonzero stops the parser: nothing after this request is read. */
  return rc != 0 || c->close_after ? 1 : 0;
}

static int aconn_on_end(void *arg) {
  aconn_t *c = arg;
  c->ended = 1;
  return 0;
}

static const pst_h1_req_callbacks_t aconn_parser_cb = {
    .on_head = aconn_on_head,
    .on_body = NULL,
    .on_end = aconn_on_end,
};

/* The parser refused the request: the status it chose (400, 414, 431,
 * 501, 505...), then the end (RFC 9112 9.6: the framing is lost). */
static void aconn_refuse(aconn_t *c, int status) {
  pst_buf_t out = {0};
  const char *why = pst_h1_req_why(c->parser);
  pst_log_debug("admin: request refused with %d: %s", status, why != NULL ? why : "?");
  if (pst_http_error_write(&out, status > 0 ? status : 400, NULL, 1) != 0 ||
      aconn_write(c, &out) != 0) {
    pst_buf_free(&out);
    aconn_close(c);
    return;
  }
  aconn_finish(c);
}

/* Parses what was read and answers each complete request in order, while
 * the answers not yet written stay under the high-water mark. */
static void aconn_process(aconn_t *c) {
  while (c->state == ACONN_OPEN && c->in_len > 0 &&
         uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < ADMIN_HIGH_WATER) {
    size_t used = 0;
    int status = 0;
    c->ended = 0;
    int rc = pst_h1_req_feed(c->parser, c->in, c->in_len, &used, &status);
    if (c->state == ACONN_CLOSED) return;
    assert(used <= c->in_len);
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    if (rc < 0) {
      aconn_refuse(c, status);
      return;
    }
    if (rc > 0) { /* the answer ends the connection */
      aconn_finish(c);
      return;
    }
    if (!c->ended && used > 0) c->in_request = 1; /* a head in progress */
    if (!c->ended) break;                         /* everything read was used */
  }
  if (c->state != ACONN_OPEN) return;
  if (c->in_len > 0) {
    uv_read_stop((uv_stream_t *)&c->tcp); /* answers pile up: the client does not read */
    c->reading = 0;
  } else {
    aconn_read_start(c);
  }
  aconn_arm(c);
}

static void aconn_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  aconn_t *c = h->data;
  PST_UNUSED(suggested);
  if (c->state != ACONN_OPEN) c->in_len = 0; /* closing: read to drop */
  *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - c->in_len));
}

static void aconn_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  aconn_t *c = s->data;
  PST_UNUSED(buf);
  if (n == 0 || c->state == ACONN_CLOSED) return;
  if (n < 0) {
    c->eof = 1;
    uv_read_stop(s);
    c->reading = 0;
    /* The client ended its side: answers still being written go out (a
     * client may half-close after its last request), then the connection
     * ends; closing, the end waits for our FIN to be out. */
    if (n != UV_EOF) {
      aconn_close(c);
    } else if (c->state == ACONN_OPEN) {
      if (c->writes > 0) {
        aconn_finish(c);
      } else {
        aconn_close(c);
      }
    } else if (c->shut) {
      aconn_close(c);
    }
    return;
  }
  if (c->state != ACONN_OPEN) return; /* dropped */
  c->in_len += (size_t)n;
  aconn_process(c);
}

static void aconn_read_start(aconn_t *c) {
  if (c->reading || c->eof || c->state == ACONN_CLOSED) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, aconn_on_alloc, aconn_on_read) != 0) {
    aconn_close(c);
    return;
  }
  c->reading = 1;
}

/* At PST_ADMIN_MAX_CONNS a connection makes room for the new one: one
 * already closing, else the one idle longest, else the one whose request
 * (or answer) has taken longest. Never refusing the newcomer keeps a probe
 * (a kubelet's /readyz, a scrape: each done in milliseconds) from being
 * locked out by 64 connections that trickle their heads: the trickler is
 * the one that waited longest. Returns 1 when the one closed was busy. */
static int admin_make_room(pst_admin_t *a) {
  aconn_t *idle = NULL, *busy = NULL;
  for (aconn_t *c = a->conns; c != NULL; c = c->next) {
    if (c->state != ACONN_OPEN) {
      aconn_close(c);
      return 0;
    }
    aconn_t **pick = c->busy == 1 ? &busy : &idle;
    if (*pick == NULL || c->since < (*pick)->since) *pick = c;
  }
  assert(idle != NULL || busy != NULL);
  aconn_close(idle != NULL ? idle : busy);
  return idle == NULL;
}

static void aconn_on_refused_close(uv_handle_t *h) { free(h->data); }

static void aconn_on_connection(uv_stream_t *server, int status) {
  alistener_t *l = PST_CONTAINER_OF((uv_tcp_t *)server, alistener_t, tcp);
  pst_admin_t *a = l->admin;
  if (status != 0) {
    pst_log_warn("admin endpoint: accept failed: %s", uv_strerror(status));
    return;
  }
  aconn_t *c = calloc(1, sizeof(*c));
  if (c == NULL || uv_tcp_init(a->loop, &c->tcp) != 0) {
    free(c);
    return; /* the connection waits in the kernel's queue for the next try */
  }
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, aconn_on_refused_close);
    return;
  }
  if (a->n_conns >= PST_ADMIN_MAX_CONNS && admin_make_room(a) == 1) {
    uint64_t now = uv_now(a->loop);
    if (a->full_logged_ms == 0 || now - a->full_logged_ms >= ADMIN_FULL_LOG_MS) {
      a->full_logged_ms = now;
      pst_log_warn(
          "admin endpoint: %d connections, each in a request: the slowest was closed "
          "for a new one (logged once a minute)",
          PST_ADMIN_MAX_CONNS);
    }
  }
  c->admin = a;
  c->handles = 2;
  c->busy = -1;
  c->timer.data = c;
  uv_timer_init(a->loop, &c->timer);
  c->parser = pst_h1_req_parser_new(&aconn_parser_cb, c, ADMIN_MAX_HEAD);
  c->prev = a->conns_last;
  if (a->conns_last != NULL) a->conns_last->next = c;
  a->conns_last = c;
  if (a->conns == NULL) a->conns = c;
  a->n_conns++;
  if (c->parser == NULL) {
    aconn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  aconn_read_start(c);
  aconn_arm(c);
}

/* ---- the module's face ---- */

int pst_admin_new(const pst_config_t *cfg, pst_admin_t **out) {
  pst_admin_t *a = calloc(1, sizeof(*a));
  if (a == NULL) return -ENOMEM;
  a->fd = -1;
  a->start_time = pst_admin_process_start();
  if (cfg->admin_on) {
    a->fd = admin_socket(&cfg->admin_listen);
    if (a->fd < 0) {
      int err = a->fd;
      admin_bind_error(cfg, err, "");
      free(a);
      return err;
    }
    a->on = 1;
    a->addr = cfg->admin_listen;
  }
  *out = a;
  return 0;
}

int pst_admin_start(pst_admin_t *a, uv_loop_t *loop, pst_gen_t *gen, unsigned n_workers) {
  a->loop = loop;
  a->gen = pst_gen_ref(gen);
  a->n_workers = n_workers;
  if (!a->on) return 0;
  int rc = admin_listen(a);
  if (rc == 0)
    pst_log_info("admin endpoint on http://%s/ (/metrics, /healthz, /readyz)", a->addr.text);
  return rc;
}

void pst_admin_set_reload(pst_admin_t *a, pst_reload_t *r) {
  a->reload = r;
  pst_gen_unref(a->gen);
  a->gen = NULL;
}

void pst_admin_set_ready(pst_admin_t *a, int ready) {
  if (a->closed) return;
  a->ready = ready;
  if (ready) a->was_ready = 1;
}

void pst_admin_on_reload(void *arg, const pst_gen_t *gen) {
  pst_admin_t *a = arg;
  const pst_config_t *cfg = gen->cfg;
  if (a->closed || a->loop == NULL) return;
  if (cfg->admin_on == a->on && (!a->on || pst_addr_equal(&cfg->admin_listen, &a->addr))) return;
  if (!cfg->admin_on) {
    pst_log_info("admin endpoint on %s closed: admin.listen was removed", a->addr.text);
    admin_unlisten(a);
    a->on = 0;
    return;
  }
  /* The new socket first: when it cannot be bound the old one serves on. */
  int fd = admin_socket(&cfg->admin_listen);
  if (fd < 0) {
    admin_bind_error(cfg, fd, a->on ? "; the admin endpoint stays where it was" : "; it stays off");
    return;
  }
  char was[sizeof(a->addr.text)];
  snprintf(was, sizeof(was), "%s", a->on ? a->addr.text : "off");
  admin_unlisten(a);
  a->fd = fd;
  a->on = 1;
  a->addr = cfg->admin_listen;
  if (admin_listen(a) == 0) {
    pst_log_info("admin endpoint moved to http://%s/ (was %s)", a->addr.text, was);
  }
}

void pst_admin_close(pst_admin_t *a) {
  if (a == NULL || a->closed) return;
  a->closed = 1;
  a->ready = 0;
  admin_unlisten(a);
  while (a->conns != NULL) aconn_close(a->conns);
}

void pst_admin_free(pst_admin_t *a) {
  if (a == NULL) return;
  assert(a->conns == NULL && a->listener == NULL);
  if (a->fd >= 0) close(a->fd);
  pst_gen_unref(a->gen);
  free(a);
}
