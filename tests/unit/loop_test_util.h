/* Helpers shared by the unit tests that run a libuv loop (test_pool.c,
 * test_stream.c, test_tcp.c):
 * - a loop set up as a worker's: its data is a pst_worker_t whose read slab
 *   pst_uv_alloc_slab hands out;
 * - waits bounded by a deadline: WAIT_FOR fails the test when its condition
 *   does not hold within WAIT_MS;
 * - backends the test serves itself on 127.0.0.1, in the same loop
 *   (loopback inside the process, no other process): a listener whose
 *   connections record what they receive and can answer HTTP/1.1, a port
 *   that refuses connections, and one whose accept queue is full, where a
 *   connect neither completes nor fails.
 *
 * Include it once per test binary, after <cmocka.h>. */
#ifndef POSTERN_TESTS_LOOP_TEST_UTIL_H
#define POSTERN_TESTS_LOOP_TEST_UTIL_H

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "postern/buf.h"
#include "postern/config-t.h"
#include "postern/worker-t.h"

/* How long any wait may take before the test fails. Every wait here ends in
 * a few milliseconds when the code works. */
#define WAIT_MS 2000

/* ---- the loop -------------------------------------------------------------- */

static pst_worker_t tw; /* only loop and slab are used */
static uv_loop_t *loop;
static uv_timer_t deadline;
/* While a wait runs, the loop wakes at least every millisecond to check
 * its condition: a condition made true by a timer callback, before the
 * loop polls, would otherwise be seen only when the poll ends. */
static uv_timer_t tick;
static int deadline_hit;

static inline void loop_setup(void) {
  memset(&tw, 0, sizeof(tw));
  assert_int_equal(uv_loop_init(&tw.loop), 0);
  tw.loop.data = &tw;
  tw.slab = malloc(PST_READ_SLAB);
  assert_non_null(tw.slab);
  loop = &tw.loop;
  assert_int_equal(uv_timer_init(loop, &deadline), 0);
  assert_int_equal(uv_timer_init(loop, &tick), 0);
  deadline_hit = 0;
}

static inline void loop_close_leftover(uv_handle_t *h, void *arg) {
  if (uv_is_closing(h)) return;
  print_error("handle left open: %s\n", uv_handle_type_name(uv_handle_get_type(h)));
  (*(int *)arg)++;
  uv_close(h, NULL);
}

/* Closes the deadline and runs the loop until every handle has closed. A
 * handle the test left open is reported and closed, and fails the test
 * (its owner's memory then leaks: the test failed anyway). */
static inline void loop_teardown(void) {
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_close((uv_handle_t *)&tick, NULL);
  int left = 0;
  uv_walk(loop, loop_close_leftover, &left);
  uv_run(loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(loop);
  free(tw.slab);
  tw.slab = NULL;
  assert_int_equal(left, 0);
  assert_int_equal(rc, 0);
}

static inline void deadline_fired(uv_timer_t *t) { deadline_hit = 1; }
static inline void tick_fired(uv_timer_t *t) {}

static inline void wait_start(uint64_t ms) {
  deadline_hit = 0;
  uv_timer_start(&deadline, deadline_fired, ms, 0);
  uv_timer_start(&tick, tick_fired, 1, 1);
}

static inline void wait_stop(void) {
  uv_timer_stop(&deadline);
  uv_timer_stop(&tick);
}

/* Runs the loop until expr holds; fails the test after WAIT_MS. */
#define WAIT_FOR(expr)                                                                      \
  do {                                                                                      \
    wait_start(WAIT_MS);                                                                    \
    while (!(expr)) {                                                                       \
      if (deadline_hit) {                                                                   \
        wait_stop();                                                                        \
        fail_msg("%s:%d: still false after %d ms: %s", __FILE__, __LINE__, WAIT_MS, #expr); \
      }                                                                                     \
      uv_run(loop, UV_RUN_ONCE);                                                            \
    }                                                                                       \
    wait_stop();                                                                            \
  } while (0)

/* Like WAIT_FOR, without failing: for teardowns, which go on cleaning up
 * after a test that failed half-way. */
#define WAIT_QUIETLY(expr)                                      \
  do {                                                          \
    wait_start(WAIT_MS);                                        \
    while (!(expr) && !deadline_hit) uv_run(loop, UV_RUN_ONCE); \
    wait_stop();                                                \
  } while (0)

/* Runs the loop for ms: for what must not happen meanwhile. */
static inline void run_for(uint64_t ms) {
  wait_start(ms);
  while (!deadline_hit) uv_run(loop, UV_RUN_ONCE);
  wait_stop();
}

/* Runs n loop turns without waiting for I/O. */
static inline void turns(int n) {
  for (int i = 0; i < n; i++) uv_run(loop, UV_RUN_NOWAIT);
}

/* ---- addresses ------------------------------------------------------------- */

static inline void addr_loopback(pst_addr_t *a, int port) {
  memset(a, 0, sizeof(*a));
  struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
  assert_int_equal(uv_ip4_addr("127.0.0.1", port, sin), 0);
  a->len = sizeof(*sin);
  snprintf(a->text, sizeof(a->text), "127.0.0.1:%d", port);
}

static inline void backend_at(pst_backend_conf_t *bc, int port) {
  memset(bc, 0, sizeof(*bc));
  bc->kind = PST_BACKEND_ADDR;
  addr_loopback(&bc->addr, port);
}

static inline void backend_info(pst_backend_conf_t *bc) {
  memset(bc, 0, sizeof(*bc));
  bc->kind = PST_BACKEND_BUILTIN_INFO;
  snprintf(bc->addr.text, sizeof(bc->addr.text), "builtin:info");
}

static inline int socket_port(int fd) {
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
  return ntohs(sin.sin_port);
}

static inline int socket_loopback(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sin;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  return fd;
}

/* A socket bound to a loopback port and not listening: a connect to *port
 * is refused (ECONNREFUSED), and no one else can take the port while the
 * socket is open. Returns the socket, for close(2). */
static inline int refusing_port(int *port) {
  int fd = socket_loopback();
  *port = socket_port(fd);
  return fd;
}

/* A listener with a backlog of 0 whose accept queue holds one connection
 * nobody accepts (*filler): Linux then drops the SYN of every other
 * connect (tcp_conn_request: sk_acceptq_is_full), which neither completes
 * nor fails for as long as a connect timeout needs. Returns the listener;
 * close both sockets afterwards. */
static inline int full_listener(int *port, int *filler) {
  int fd = socket_loopback();
  assert_int_equal(listen(fd, 0), 0);
  *port = socket_port(fd);
  *filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(*filler >= 0);
  struct sockaddr_in sin;
  assert_int_equal(uv_ip4_addr("127.0.0.1", *port, &sin), 0);
  assert_int_equal(connect(*filler, (struct sockaddr *)&sin, sizeof(sin)), 0);
  return fd;
}

/* ---- a backend served by the test ------------------------------------------ */

#define TB_MAX_CONNS 8

typedef struct tb_s tb_t;

typedef struct {
  uv_tcp_t tcp;
  tb_t *tb;
  int index;    /* in tb->conns */
  pst_buf_t in; /* bytes received and not taken by tb_http (unless tb->discard) */
  size_t got;   /* bytes received in all */
  int eof;      /* the peer ended its side: read UV_EOF */
  int read_err; /* another read error */
  int reading;
  int closed;   /* uv_close called */
  int requests; /* requests tb_http took */
} tb_conn_t;

struct tb_s {
  uv_tcp_t listener;
  int port;
  int open; /* handles whose close callback has not run, the listener's included */
  tb_conn_t *conns[TB_MAX_CONNS]; /* in accept order; NULL once closed */
  int n_conns;                    /* accepted in all */
  int no_read;                    /* connections are not read once accepted (tb_read starts) */
  int discard;                    /* count received bytes without keeping them */
  void (*on_data)(tb_conn_t *c);  /* after bytes or the end arrive (tb_http for HTTP) */
  /* For tb_http: one complete request, also copied to last_request. */
  void (*on_request)(tb_conn_t *c, const char *req, size_t len);
  char last_request[4096];
  int requests; /* requests taken on every connection */
};

static inline void tb_conn_on_close(uv_handle_t *h) {
  tb_conn_t *c = h->data;
  c->tb->conns[c->index] = NULL;
  c->tb->open--;
  pst_buf_free(&c->in);
  free(c);
}

static inline void tb_close_conn(tb_conn_t *c) {
  if (c == NULL || c->closed) return;
  c->closed = 1;
  uv_close((uv_handle_t *)&c->tcp, tb_conn_on_close);
}

/* With allocation failure injection (http_test_util.h, included first),
 * what the test's own peers (this backend, conn_test_util.h's clients) do in
 * their callbacks runs with it paused: only postern's allocations fail. */
#ifdef PST_TEST_ALLOC_INJECTION
#define TEST_SIDE(call) \
  do {                  \
    alloc_paused++;     \
    call;               \
    alloc_paused--;     \
  } while (0)
#else
#define TEST_SIDE(call) call
#endif

static inline void tb_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  TEST_SIDE(*buf = uv_buf_init(malloc(65536), 65536));
}

static inline void tb_on_read_now(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  tb_conn_t *c = s->data;
  if (n > 0) {
    c->got += (size_t)n;
    if (!c->tb->discard) assert_int_equal(pst_buf_append(&c->in, buf->base, (size_t)n), 0);
  } else if (n < 0) {
    c->eof = n == UV_EOF;
    c->read_err = n == UV_EOF ? 0 : (int)n;
    uv_read_stop(s);
    c->reading = 0;
  }
  free(buf->base);
  if (n != 0 && c->tb->on_data != NULL && !c->closed) c->tb->on_data(c);
}

static inline void tb_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  TEST_SIDE(tb_on_read_now(s, n, buf));
}

/* Starts or stops reading c. */
static inline void tb_read(tb_conn_t *c, int on) {
  if (c->reading == !!on || c->eof || c->read_err) return;
  if (!on) uv_read_stop((uv_stream_t *)&c->tcp);
  if (on) assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, tb_alloc, tb_on_read), 0);
  c->reading = !!on;
}

static inline void tb_on_connection_now(uv_stream_t *l, int status) {
  tb_t *tb = l->data;
  assert_int_equal(status, 0);
  assert_true(tb->n_conns < TB_MAX_CONNS);
  tb_conn_t *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->tb = tb;
  c->index = tb->n_conns++;
  assert_int_equal(uv_tcp_init(loop, &c->tcp), 0);
  c->tcp.data = c;
  tb->open++;
  tb->conns[c->index] = c;
  assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
  if (!tb->no_read) tb_read(c, 1);
}

static inline void tb_on_connection(uv_stream_t *l, int status) {
  TEST_SIDE(tb_on_connection_now(l, status));
}

/* Listens on 127.0.0.1 on a free port (tb->port). */
static inline void tb_start(tb_t *tb) {
  memset(tb, 0, sizeof(*tb));
  assert_int_equal(uv_tcp_init(loop, &tb->listener), 0);
  tb->listener.data = tb;
  tb->open = 1;
  struct sockaddr_in sin;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
  assert_int_equal(uv_tcp_bind(&tb->listener, (struct sockaddr *)&sin, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&tb->listener, 16, tb_on_connection), 0);
  int len = sizeof(sin);
  assert_int_equal(uv_tcp_getsockname(&tb->listener, (struct sockaddr *)&sin, &len), 0);
  tb->port = ntohs(sin.sin_port);
}

static inline void tb_listener_on_close(uv_handle_t *h) {
  tb_t *tb = h->data;
  tb->open--;
}

/* Closes the listener and every connection, and waits for them. Does
 * nothing when tb is not running (zeroed, or stopped already). */
static inline void tb_stop(tb_t *tb) {
  if (tb->open == 0) return;
  for (int i = 0; i < TB_MAX_CONNS; i++) tb_close_conn(tb->conns[i]);
  if (!uv_is_closing((uv_handle_t *)&tb->listener)) {
    uv_close((uv_handle_t *)&tb->listener, tb_listener_on_close);
  }
  WAIT_QUIETLY(tb->open == 0);
  assert_int_equal(tb->open, 0);
}

typedef struct {
  uv_write_t req;
  char data[];
} tb_wreq_t;

static inline void tb_on_write(uv_write_t *req, int status) { free(req); }

/* Queues len bytes (copied) to the peer of c. */
static inline void tb_write(tb_conn_t *c, const char *data, size_t len) {
  tb_wreq_t *w = malloc(sizeof(*w) + len);
  assert_non_null(w);
  memcpy(w->data, data, len);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  assert_int_equal(uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, tb_on_write), 0);
}

static inline void tb_write_str(tb_conn_t *c, const char *s) { tb_write(c, s, strlen(s)); }

static inline void tb_on_shutdown(uv_shutdown_t *req, int status) { free(req); }

/* Ends c's sending side once what is queued is written (FIN). */
static inline void tb_shutdown(tb_conn_t *c) {
  uv_shutdown_t *req = malloc(sizeof(*req));
  assert_non_null(req);
  assert_int_equal(uv_shutdown(req, (uv_stream_t *)&c->tcp, tb_on_shutdown), 0);
}

/* An on_data handler: takes each complete request (a head and its body:
 * Content-Length, or chunked up to the first last-chunk, which is enough
 * for the bodies tests send) from c->in, copies it to tb->last_request and
 * hands it to tb->on_request, which answers. */
static inline void tb_http(tb_conn_t *c) {
  tb_t *tb = c->tb;
  while (!c->closed && c->in.len > 0) {
    const char *p = pst_buf_head(&c->in);
    const char *end = memmem(p, c->in.len, "\r\n\r\n", 4);
    if (end == NULL) return;
    size_t head = (size_t)(end - p) + 4, len = head;
    const char *cl = memmem(p, head, "\r\nContent-Length: ", 18);
    if (cl != NULL) len += strtoul(cl + 18, NULL, 10);
    static const char te[] = "\r\nTransfer-Encoding: chunked\r\n", end0[] = "\r\n0\r\n\r\n";
    if (memmem(p, head, te, sizeof(te) - 1) != NULL) {
      const char *last = memmem(p + head - 2, c->in.len - head + 2, end0, sizeof(end0) - 1);
      if (last == NULL) return;
      len = (size_t)(last - p) + sizeof(end0) - 1;
    }
    if (c->in.len < len) return;
    assert_true(len < sizeof(tb->last_request));
    memcpy(tb->last_request, p, len);
    tb->last_request[len] = '\0';
    pst_buf_consume(&c->in, len);
    c->requests++;
    tb->requests++;
    if (tb->on_request != NULL) tb->on_request(c, tb->last_request, len);
  }
}

#endif
