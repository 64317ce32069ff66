/* postern: the scaffolding of the unit tests that drive real connections
 * of src/conn.c in one process and one loop (test_conn_io.c, whose header
 * says what it is; test_conn_alloc.c): a worker set up by hand on the
 * test's loop, two listeners, a generation built from a YAML file, and
 * wolfSSL clients over uv_tcp_t sockets of the same loop.
 *
 * Include it once per test binary, after <cmocka.h>. A binary that
 * injects allocation failures (http_test_util.h) includes that first: the
 * clients' own work then runs with injection paused (TEST_SIDE,
 * loop_test_util.h), so that only what postern allocates can fail. */
#ifndef POSTERN_TEST_CONN_TEST_UTIL_H
#define POSTERN_TEST_CONN_TEST_UTIL_H

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
/* wolfSSL's test certificates, compiled in. The header defines many arrays
 * this file does not use. */
#define USE_CERT_BUFFERS_256
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-const-variable"
#pragma GCC diagnostic ignored "-Wunused-variable"
#include <wolfssl/certs_test.h>
#pragma GCC diagnostic pop

#include "../../src/conn_int.h"
#include "postern/access_log.h"
#include "postern/buf.h"
#include "postern/cert.h"
#include "postern/common.h"
#include "postern/config.h"
#include "postern/conn.h"
#include "postern/gen.h"
#include "postern/log.h"
#include "postern/pool.h"
#include "postern/tls.h"

#include "loop_test_util.h"

/* The server name the test certificate carries (its CN; it has no SAN). */
#define SNI "www.wolfssl.com"

/* ---- files: certificate, key, CA, configuration ---------------------------- */

static char dir[] = "/tmp/postern-test-conn-io-XXXXXX";
static char cert_path[256], key_path[256], ca_path[256], cfg_path[256];
static time_t gen_now; /* inside the certificate's validity */

static inline int write_pem(const char *path, const unsigned char *der, int der_len, int type) {
  unsigned char pem[8192];
  int n = wc_DerToPem(der, (unsigned)der_len, pem, sizeof(pem), type);
  if (n <= 0) return -1;
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  int ok = fwrite(pem, 1, (size_t)n, f) == (size_t)n;
  return fclose(f) == 0 && ok ? 0 : -1;
}

static inline int group_setup(void **state) {
  /* As src/main.c: a write to a client that has gone fails with EPIPE. */
  signal(SIGPIPE, SIG_IGN);
  if (pst_tls_global_init() != 0 || mkdtemp(dir) == NULL) return -1;
  snprintf(cert_path, sizeof(cert_path), "%s/server.pem", dir);
  snprintf(key_path, sizeof(key_path), "%s/server.key", dir);
  snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
  snprintf(cfg_path, sizeof(cfg_path), "%s/postern.yaml", dir);
  if (write_pem(cert_path, serv_ecc_der_256, sizeof_serv_ecc_der_256, CERT_TYPE) != 0 ||
      write_pem(key_path, ecc_key_der_256, sizeof_ecc_key_der_256, ECC_PRIVATEKEY_TYPE) != 0 ||
      write_pem(ca_path, ca_ecc_cert_der_256, sizeof_ca_ecc_cert_der_256, CERT_TYPE) != 0) {
    return -1;
  }
  /* The middle of the leaf's validity, read from the leaf itself. */
  pst_cert_t *cert = NULL;
  pst_cert_load(cert_path, key_path, NULL, time(NULL), 0, &cert);
  if (cert == NULL || cert->chain_len == 0) return -1;
  gen_now = cert->chain[0].not_before + (cert->chain[0].not_after - cert->chain[0].not_before) / 2;
  pst_cert_free(cert);
  /* Quiet unless POSTERN_TEST_LOG is set: then the connection lines (info:
   * why each connection ended, what a failing test needs) and the
   * certificate's "no subjectAltName" warning of every generation. */
  pst_log_set_level(getenv("POSTERN_TEST_LOG") ? PST_LOG_DEBUG : PST_LOG_ERROR);
  return 0;
}

static inline int group_teardown(void **state) {
  unlink(cert_path);
  unlink(key_path);
  unlink(ca_path);
  unlink(cfg_path);
  rmdir(dir);
  pst_tls_global_cleanup();
  return 0;
}

/* Timeouts of a test's listeners (config durations). */
typedef struct {
  const char *handshake;
  const char *idle;
} timeouts_t;

static const timeouts_t long_timeouts = {"5s", "5s"};
#define SHORT_MS 150
#define SHORT_TIMEOUT "150ms"
static const timeouts_t short_handshake = {SHORT_TIMEOUT, "5s"};
static const timeouts_t short_idle = {"5s", SHORT_TIMEOUT};

/* Listener 0 (LN_TCP): tcp mode to the test backend; REFUSED_SNI goes to a
 * port that refuses connections. Listener 1 (LN_HTTP): http mode; SNI goes
 * to builtin:info, other names to the test backend. The listen addresses
 * are only parsed: the test's own sockets accept. */
enum { LN_TCP = 0, LN_HTTP = 1, LN_COUNT = 2 };
#define REFUSED_SNI "refused.test"

static inline pst_gen_t *build_gen(int backend_port, int refused_port, const timeouts_t *t) {
  FILE *f = fopen(cfg_path, "w");
  assert_non_null(f);
  const char *tls =
      "    tls:\n"
      "      certificates:\n"
      "        - {cert: \"%s\", key: \"%s\"}\n"
      "      ca_file: \"%s\"\n"
      "    timeouts: {handshake: %s, idle: %s}\n";
  fprintf(f,
          "workers: 1\n"
          "expiry_warn_days: 0\n"
          "listeners:\n"
          "  - name: relay\n"
          "    listen: \"127.0.0.1:1\"\n"
          "    mode: tcp\n"
          "    backend: \"127.0.0.1:%d\"\n"
          "    routes:\n"
          "      - names: [" REFUSED_SNI
          "]\n"
          "        backend: \"127.0.0.1:%d\"\n",
          backend_port, refused_port);
  fprintf(f, tls, cert_path, key_path, ca_path, t->handshake, t->idle);
  fprintf(f,
          "  - name: web\n"
          "    listen: \"127.0.0.1:2\"\n"
          "    mode: http\n"
          "    alpn: [h2, http/1.1]\n"
          "    backend: \"127.0.0.1:%d\"\n"
          "    routes:\n"
          "      - names: [\"" SNI
          "\"]\n"
          "        backend: \"builtin:info\"\n",
          backend_port);
  fprintf(f, tls, cert_path, key_path, ca_path, t->handshake, t->idle);
  assert_int_equal(fclose(f), 0);

  char err[1024];
  pst_config_t *cfg = NULL;
  int rc = pst_config_load(cfg_path, &cfg, err, sizeof(err));
  if (rc != 0) fail_msg("config: %s", err);
  pst_gen_t *gen = NULL;
  unsigned errors = 0;
  rc = pst_gen_build(cfg, 1, gen_now, NULL, &gen, &errors);
  if (rc != 0) fail_msg("pst_gen_build: %s (%u errors)", pst_strerror(rc), errors);
  return gen;
}

/* ---- the worker ---------------------------------------------------------------- */

static tb_t tb;
static pst_wlistener_t *wls[LN_COUNT];
static pst_wlistener_t *wl_list[LN_COUNT];
static int ports[LN_COUNT];
static int listeners_open;
static int gone;      /* conn_gone calls */
static int accept_rc; /* the last pst_conn_accept's return */
static int refused_fd, refused_port;
static char *bulk_up, *bulk_down; /* test_tcp_backpressure's, freed by teardown */

/* What the observer saw of each connection (by id) before it was freed. */
#define MAX_IDS 32
static struct {
  int seen;
  pst_conn_state_t state; /* the furthest state */
  int err;                /* conn->err once CLOSING */
  uint64_t t_accept;      /* loop time of the accept */
  uint64_t t_closing;     /* loop time it was first seen CLOSING */
  size_t max_held;        /* the most client output it held at the end of a loop turn */
  int corked;             /* its session ticket waited for an answer (conn->cork) */
} seen[MAX_IDS];

/* Client output the connection holds: plaintext, ciphertext, libuv's write
 * queue (conn.c's conn_queued). */
static inline size_t conn_held(const pst_conn_t *conn) {
  return conn->early_out.len + conn->pout.len + conn->cout.len +
         uv_stream_get_write_queue_size((const uv_stream_t *)&conn->client.tcp);
}

static uv_check_t observer;

/* Runs after each loop turn's I/O callbacks and before its close
 * callbacks, which free connections: sees every connection that closes
 * from a timer, a read, a write or a flush in CLOSING with its error. */
static inline void observe(uv_check_t *c) {
  for (pst_conn_t *conn = tw.conns; conn != NULL; conn = conn->next) {
    if (conn->host.id >= MAX_IDS) continue;
    seen[conn->host.id].seen = 1;
    if (conn->state == PST_CONN_CLOSING && seen[conn->host.id].state != PST_CONN_CLOSING) {
      seen[conn->host.id].t_closing = uv_now(loop);
    }
    if (conn->state > seen[conn->host.id].state) seen[conn->host.id].state = conn->state;
    if (conn->state == PST_CONN_CLOSING) seen[conn->host.id].err = conn->err;
    if (conn_held(conn) > seen[conn->host.id].max_held)
      seen[conn->host.id].max_held = conn_held(conn);
    if (conn->cork) seen[conn->host.id].corked = 1;
  }
}

/* worker->conn_gone: what src/worker.c counts. */
static inline void test_conn_gone(pst_worker_t *worker, pst_wlistener_t *wl) {
  assert_ptr_equal(worker, &tw);
  assert_true(worker->n_conns > 0 && wl->n_conns > 0);
  worker->n_conns--;
  wl->n_conns--;
  gone++;
}

static inline void on_flush_prepare(uv_prepare_t *p) {
  pst_conn_flush_all(&tw);
  pst_access_log_flush(tw.access_log);
}

static inline void on_listener_connection(uv_stream_t *s, int status) {
  pst_wlistener_t *wl = PST_CONTAINER_OF(s, pst_wlistener_t, handle);
  assert_int_equal(status, 0);
  uint64_t id = tw.next_conn_id + 1;
  accept_rc = pst_conn_accept(&tw, wl);
  if (id < MAX_IDS) seen[id].t_accept = uv_now(loop);
}

static inline void on_listener_close(uv_handle_t *h) { listeners_open--; }

static inline void listener_start(size_t i) {
  pst_wlistener_t *wl = calloc(1, sizeof(*wl));
  assert_non_null(wl);
  wls[i] = wl;
  wl_list[i] = wl;
  wl->worker = &tw;
  wl->index = i;
  wl->fd = -1;
  assert_int_equal(uv_tcp_init(loop, &wl->handle), 0);
  listeners_open++;
  wl->open = 1;
  wl->listed = 1;
  struct sockaddr_in sin;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
  assert_int_equal(uv_tcp_bind(&wl->handle, (struct sockaddr *)&sin, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&wl->handle, 16, on_listener_connection), 0);
  int len = sizeof(sin);
  assert_int_equal(uv_tcp_getsockname(&wl->handle, (struct sockaddr *)&sin, &len), 0);
  ports[i] = ntohs(sin.sin_port);
}

/* ---- clients --------------------------------------------------------------------- */

/* A TLS client on the test's loop: wolfSSL reads from `in` (what the socket
 * received) and writes to `out` (written to the socket after each step). */
typedef struct {
  uv_tcp_t tcp;
  uv_connect_t creq;
  WOLFSSL *ssl; /* NULL: a client that sends raw bytes only */
  pst_buf_t in, out;
  pst_buf_t plain;           /* what postern sent, decrypted */
  size_t raw;                /* bytes received in all */
  int hold;                  /* keep what is due in out: client_write_part or a flush sends it */
  const char *with_finished; /* sent in the same write as the client's Finished */
  size_t written;            /* bytes written in all */
  int used;                  /* started, not freed */
  int open;                  /* handle not closed yet (close callback not run) */
  int hs_done;               /* wolfSSL_connect completed */
  int hs_err;                /* its error, when it failed */
  int notify;                /* close_notify received */
  int tls_err;               /* wolfSSL_read failed otherwise */
  int eof;                   /* TCP FIN received */
  int read_err;              /* another read error */
} client_t;

#define MAX_CLIENTS 4
static client_t clients[MAX_CLIENTS];
static WOLFSSL_CTX *cctx;
static WOLFSSL_SESSION *resume; /* offered by the next TLS client, when set */

static inline int client_io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  client_t *c = ctx;
  if (c->in.len == 0) return c->eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
  size_t n = c->in.len < (size_t)sz ? c->in.len : (size_t)sz;
  memcpy(buf, pst_buf_head(&c->in), n);
  pst_buf_consume(&c->in, n);
  return (int)n;
}

static inline int client_io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  client_t *c = ctx;
  if (pst_buf_append(&c->out, buf, (size_t)sz) != 0) return WOLFSSL_CBIO_ERR_GENERAL;
  return sz;
}

static inline void client_on_write(uv_write_t *req, int status) { free(req); }

/* Writes the first n bytes queued in out. */
static inline void client_write_part(client_t *c, size_t n) {
  assert_true(n <= c->out.len);
  if (n > 0 && c->open && !uv_is_closing((uv_handle_t *)&c->tcp)) {
    tb_wreq_t *w = malloc(sizeof(*w) + n);
    assert_non_null(w);
    memcpy(w->data, pst_buf_head(&c->out), n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    assert_int_equal(uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, client_on_write), 0);
    c->written += n;
  }
  pst_buf_consume(&c->out, n);
}

/* Writes what wolfSSL (or the test) queued in out, unless held. */
static inline void client_flush(client_t *c) {
  if (!c->hold) client_write_part(c, c->out.len);
}

/* Runs the handshake, then reads every record there is. */
static inline void client_pump(client_t *c) {
  if (c->ssl == NULL) return;
  if (!c->hs_done && !c->hs_err) {
    int rc = wolfSSL_connect(c->ssl);
    if (rc == WOLFSSL_SUCCESS) {
      c->hs_done = 1;
      if (c->with_finished != NULL) {
        int len = (int)strlen(c->with_finished);
        assert_int_equal(wolfSSL_write(c->ssl, c->with_finished, len), len);
      }
    } else {
      int e = wolfSSL_get_error(c->ssl, rc);
      if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE) c->hs_err = e;
    }
  }
  while (c->hs_done && !c->notify && !c->tls_err) {
    char buf[4096];
    int n = wolfSSL_read(c->ssl, buf, sizeof(buf));
    if (n > 0) {
      assert_int_equal(pst_buf_append(&c->plain, buf, (size_t)n), 0);
      continue;
    }
    int e = wolfSSL_get_error(c->ssl, n);
    if (e == WOLFSSL_ERROR_ZERO_RETURN) {
      c->notify = 1;
    } else if (e != WOLFSSL_ERROR_WANT_READ || c->eof) {
      c->tls_err = e;
    }
    break;
  }
  client_flush(c);
}

static inline void client_on_read_now(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  client_t *c = s->data;
  if (n > 0) {
    c->raw += (size_t)n;
    assert_int_equal(pst_buf_append(&c->in, buf->base, (size_t)n), 0);
  } else if (n < 0) {
    if (n == UV_EOF)
      c->eof = 1;
    else
      c->read_err = (int)n;
    uv_read_stop(s);
  }
  free(buf->base);
  if (n != 0) client_pump(c);
}

static inline void client_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  TEST_SIDE(client_on_read_now(s, n, buf));
}

static inline void client_on_connect_now(uv_connect_t *req, int status) {
  client_t *c = req->data;
  assert_int_equal(status, 0);
  assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, tb_alloc, client_on_read), 0);
  client_pump(c); /* the ClientHello */
}

static inline void client_on_connect(uv_connect_t *req, int status) {
  TEST_SIDE(client_on_connect_now(req, status));
}

static inline void client_on_close(uv_handle_t *h) {
  client_t *c = h->data;
  c->open = 0;
}

/* Connects a client to listener ln. sni and alpn (wolfSSL's comma-separated
 * list) may be NULL; tls 0 makes a client that sends nothing by itself. */
static inline client_t *client_start(int ln, int tls, const char *sni, const char *alpn) {
  client_t *c = NULL;
  for (int i = 0; i < MAX_CLIENTS && c == NULL; i++) {
    if (!clients[i].used) c = &clients[i];
  }
  assert_non_null(c);
  memset(c, 0, sizeof(*c));
  c->used = 1;
  if (tls) {
    c->ssl = wolfSSL_new(cctx);
    assert_non_null(c->ssl);
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    if (sni != NULL) {
      assert_int_equal(
          wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, sni, (unsigned short)strlen(sni)),
          WOLFSSL_SUCCESS);
    }
    if (resume != NULL) assert_int_equal(wolfSSL_set_session(c->ssl, resume), WOLFSSL_SUCCESS);
    if (alpn != NULL) {
      char list[64];
      snprintf(list, sizeof(list), "%s", alpn);
      assert_int_equal(
          wolfSSL_UseALPN(c->ssl, list, (unsigned)strlen(list), WOLFSSL_ALPN_CONTINUE_ON_MISMATCH),
          WOLFSSL_SUCCESS);
    }
  }
  /* A small receive buffer, set before the connect so that the window
   * it advertises stays small: bytes postern writes to a client that does
   * not read soon stay in postern (test_tcp_backpressure). */
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  int rcvbuf = 64 * 1024;
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
  assert_int_equal(uv_tcp_init(loop, &c->tcp), 0);
  assert_int_equal(uv_tcp_open(&c->tcp, fd), 0);
  c->tcp.data = c;
  c->open = 1;
  c->creq.data = c;
  struct sockaddr_in sin;
  assert_int_equal(uv_ip4_addr("127.0.0.1", ports[ln], &sin), 0);
  assert_int_equal(uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&sin, client_on_connect),
                   0);
  return c;
}

static inline void client_send_len(client_t *c, const char *data, size_t len) {
  assert_int_equal(wolfSSL_write(c->ssl, data, (int)len), (int)len);
  client_flush(c);
}

static inline void client_send(client_t *c, const char *data) {
  client_send_len(c, data, strlen(data));
}

/* Sends bytes as they are, outside TLS. */
static inline void client_send_raw(client_t *c, const char *data) {
  assert_int_equal(pst_buf_append(&c->out, data, strlen(data)), 0);
  client_flush(c);
}

/* Stops or resumes reading the socket: the kernel's buffers fill, and
 * postern's writes to the client stop being taken. */
static inline void client_read(client_t *c, int on) {
  if (on) {
    assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, tb_alloc, client_on_read), 0);
  } else {
    assert_int_equal(uv_read_stop((uv_stream_t *)&c->tcp), 0);
  }
}

/* Sends close_notify (RFC 8446 6.1) and nothing else: the TCP connection
 * stays open both ways. */
static inline void client_close_notify(client_t *c) {
  int rc = wolfSSL_shutdown(c->ssl);
  assert_true(rc == WOLFSSL_SHUTDOWN_NOT_DONE || rc == WOLFSSL_SUCCESS);
  client_flush(c);
}

static inline void client_on_shutdown(uv_shutdown_t *req, int status) { free(req); }

/* Sends a TCP FIN. */
static inline void client_fin(client_t *c) {
  uv_shutdown_t *req = malloc(sizeof(*req));
  assert_non_null(req);
  assert_int_equal(uv_shutdown(req, (uv_stream_t *)&c->tcp, client_on_shutdown), 0);
}

/* Closes the socket; the memory goes once the close callback ran. */
static inline void client_close(client_t *c) {
  if (c->open && !uv_is_closing((uv_handle_t *)&c->tcp)) {
    uv_close((uv_handle_t *)&c->tcp, client_on_close);
  }
}

static inline void client_free(client_t *c) {
  if (!c->used) return;
  client_close(c);
  WAIT_QUIETLY(!c->open);
  wolfSSL_free(c->ssl);
  pst_buf_free(&c->in);
  pst_buf_free(&c->out);
  pst_buf_free(&c->plain);
  c->used = 0;
}

/* The client's plaintext holds text. */
static inline int client_got(const client_t *c, const char *text) {
  return c->plain.len > 0 && memmem(pst_buf_head(&c->plain), c->plain.len, text, strlen(text));
}

/* A complete HTTP/1.1 response with a Content-Length is at the front of the
 * client's plaintext: its length, else 0. */
static inline size_t http_response_len(const client_t *c) {
  const char *p = pst_buf_head(&c->plain);
  const char *end = c->plain.len > 0 ? memmem(p, c->plain.len, "\r\n\r\n", 4) : NULL;
  if (end == NULL) return 0;
  size_t head = (size_t)(end - p) + 4;
  const char *cl = memmem(p, head, "\r\nContent-Length: ", 18);
  assert_non_null(cl);
  size_t len = head + strtoul(cl + 18, NULL, 10);
  return c->plain.len >= len ? len : 0;
}

/* Takes the complete response at the front of the plaintext, as a string
 * (free it). */
static inline char *http_take_response(client_t *c) {
  WAIT_FOR(http_response_len(c) > 0);
  size_t len = http_response_len(c);
  char *r = malloc(len + 1);
  assert_non_null(r);
  memcpy(r, pst_buf_head(&c->plain), len);
  r[len] = '\0';
  pst_buf_consume(&c->plain, len);
  return r;
}

/* ---- fixture -------------------------------------------------------------------- */

static inline pst_conn_t *conn_by_id(uint64_t id) {
  for (pst_conn_t *c = tw.conns; c != NULL; c = c->next) {
    if (c->host.id == id) return c;
  }
  return NULL;
}

static inline int setup(void **state) {
  const timeouts_t *t = *state != NULL ? *state : &long_timeouts;
  loop_setup();
  memset(seen, 0, sizeof(seen));
  memset(clients, 0, sizeof(clients));
  gone = 0;
  accept_rc = 0;
  tb_start(&tb);
  /* What pst_worker_start sets up, on the test's loop. */
  tw.state = PST_WORKER_RUNNING;
  refused_fd = refusing_port(&refused_port);
  tw.gen = build_gen(tb.port, refused_port, t);
  tw.plain = malloc(PST_RECORD_MAX);
  assert_non_null(tw.plain);
  tw.pools = pst_pools_new(loop);
  tw.access_log = pst_access_log_new(loop);
  assert_non_null(tw.pools);
  assert_non_null(tw.access_log);
  tw.conn_gone = test_conn_gone;
  assert_int_equal(uv_prepare_init(loop, &tw.flush_prepare), 0);
  assert_int_equal(uv_prepare_start(&tw.flush_prepare, on_flush_prepare), 0);
  uv_unref((uv_handle_t *)&tw.flush_prepare);
  assert_int_equal(uv_check_init(loop, &observer), 0);
  assert_int_equal(uv_check_start(&observer, observe), 0);
  uv_unref((uv_handle_t *)&observer);
  for (size_t i = 0; i < LN_COUNT; i++) listener_start(i);
  tw.listeners = wl_list;
  tw.n_listeners = LN_COUNT;

  cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
  assert_non_null(cctx);
  wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_NONE, NULL);
  int groups[] = {WOLFSSL_ECC_X25519};
  assert_int_equal(wolfSSL_CTX_set_groups(cctx, groups, 1), WOLFSSL_SUCCESS);
  wolfSSL_CTX_SetIORecv(cctx, client_io_recv);
  wolfSSL_CTX_SetIOSend(cctx, client_io_send);
  return 0;
}

/* Also cleans up after a test that failed half-way: what it left open is
 * closed first, then every handle, then the worker's parts. */
static inline int teardown(void **state) {
  for (int i = 0; i < MAX_CLIENTS; i++) client_free(&clients[i]);
  pst_conn_close_all(&tw, PST_ESHUTDOWN, "test teardown");
  WAIT_QUIETLY(tw.n_conns == 0);
  for (size_t i = 0; i < LN_COUNT; i++) {
    wls[i]->open = 0;
    uv_close((uv_handle_t *)&wls[i]->handle, on_listener_close);
  }
  uv_close((uv_handle_t *)&tw.flush_prepare, NULL);
  uv_close((uv_handle_t *)&observer, NULL);
  pst_pools_shutdown(tw.pools);
  tb_stop(&tb);
  WAIT_QUIETLY(listeners_open == 0 && pst_pools_open(tw.pools) == 0);
  unsigned n_conns = tw.n_conns, pools_open = pst_pools_open(tw.pools);
  loop_teardown();
  if (pools_open == 0) pst_pools_free(tw.pools);
  pst_access_log_free(tw.access_log);
  free(tw.plain);
  for (size_t i = 0; i < LN_COUNT; i++) free(wls[i]);
  free(bulk_up);
  free(bulk_down);
  bulk_up = bulk_down = NULL;
  close(refused_fd);
  pst_gen_unref(tw.gen);
  wolfSSL_CTX_free(cctx);
  cctx = NULL;
  assert_int_equal(n_conns, 0);
  assert_int_equal(pools_open, 0);
  return 0;
}

/* Waits for the handshake of c, on both ends; returns the connection. */
static inline pst_conn_t *handshake(client_t *c) {
  WAIT_FOR(c->hs_done || c->hs_err);
  assert_int_equal(c->hs_err, 0);
  WAIT_FOR(tw.conns != NULL && tw.conns->state == PST_CONN_OPEN);
  return tw.conns; /* the newest */
}

#endif
