/* postern: unit tests that drive real connections of src/conn.c, in one
 * process and one loop, below the integration tests: a worker set up by
 * hand on the test's loop (as src/worker.c does: read slab, plaintext
 * buffer, pools, access log writer, the prepare handle that flushes every
 * connection once per loop turn), two listeners of its own on 127.0.0.1
 * whose connection callback calls pst_conn_accept, a generation built from
 * a YAML file as src/main.c builds it (pst_config_load + pst_gen_build),
 * the backend of loop_test_util.h, and clients that are wolfSSL sessions
 * over uv_tcp_t sockets of the same loop, fed from buffers as postern feeds
 * its own sessions.
 *
 * Covered: the tcp relay end to end (handshake, bytes both ways, the
 * client's close_notify half-closing the backend, the backend's FIN
 * becoming close_notify and FIN, the connection freed and counted out);
 * the client's TCP FIN without close_notify; bulk both ways with a client
 * that stops reading (backpressure: what the connection holds stays
 * bounded, every byte arrives); a client's reset; a route whose backend
 * refuses; http mode with builtin:info (a 200 page naming the server name,
 * then a JSON answer on the same connection); a request sent with the
 * client's Finished (the ticket waits for the answer, then resumes a
 * second connection); HTTP/2 by ALPN and its GOAWAY at shutdown; the
 * handshake timeout for a silent client and for half a ClientHello; bytes
 * that are no ClientHello; the idle timeout of the tcp relay, which
 * traffic pushes back; pst_conn_shutdown_all (an idle HTTP/1.1 connection
 * ends at once with close_notify, one with a request in flight after its
 * response, which says Connection: close; the tcp relay and a handshake go
 * on) and pst_conn_close_all (the rest: close_notify where the handshake
 * is done); a handshake that completes while the worker drains.
 *
 * What each connection did is read by an observer (a uv_check handle)
 * from its private structure (conn_int.h) at the end of every loop turn,
 * before close callbacks free it: its furthest state, its error, when it
 * began closing, the most output it held.
 *
 * The certificate is wolfSSL's ECC test server certificate (certs_test.h),
 * written as PEM with its CA (ca_file) into a mkdtemp directory. It has
 * expired (wolfSSL's test certificates live two years), so the generation
 * is built at a time inside its validity: the `now` of pst_gen_build.
 * No process is started. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

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

static int write_pem(const char *path, const unsigned char *der, int der_len, int type) {
  unsigned char pem[8192];
  int n = wc_DerToPem(der, (unsigned)der_len, pem, sizeof(pem), type);
  if (n <= 0) return -1;
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  int ok = fwrite(pem, 1, (size_t)n, f) == (size_t)n;
  return fclose(f) == 0 && ok ? 0 : -1;
}

static int group_setup(void **state) {
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

static int group_teardown(void **state) {
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

static pst_gen_t *build_gen(int backend_port, int refused_port, const timeouts_t *t) {
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
static size_t conn_held(const pst_conn_t *conn) {
  return conn->early_out.len + conn->pout.len + conn->cout.len +
         uv_stream_get_write_queue_size((const uv_stream_t *)&conn->client.tcp);
}

static uv_check_t observer;

/* Runs after each loop turn's I/O callbacks and before its close
 * callbacks, which free connections: sees every connection that closes
 * from a timer, a read, a write or a flush in CLOSING with its error. */
static void observe(uv_check_t *c) {
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
static void test_conn_gone(pst_worker_t *worker, pst_wlistener_t *wl) {
  assert_ptr_equal(worker, &tw);
  assert_true(worker->n_conns > 0 && wl->n_conns > 0);
  worker->n_conns--;
  wl->n_conns--;
  gone++;
}

static void on_flush_prepare(uv_prepare_t *p) {
  pst_conn_flush_all(&tw);
  pst_access_log_flush(tw.access_log);
}

static void on_listener_connection(uv_stream_t *s, int status) {
  pst_wlistener_t *wl = PST_CONTAINER_OF(s, pst_wlistener_t, handle);
  assert_int_equal(status, 0);
  uint64_t id = tw.next_conn_id + 1;
  accept_rc = pst_conn_accept(&tw, wl);
  if (id < MAX_IDS) seen[id].t_accept = uv_now(loop);
}

static void on_listener_close(uv_handle_t *h) { listeners_open--; }

static void listener_start(size_t i) {
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

static int client_io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  client_t *c = ctx;
  if (c->in.len == 0) return c->eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
  size_t n = c->in.len < (size_t)sz ? c->in.len : (size_t)sz;
  memcpy(buf, pst_buf_head(&c->in), n);
  pst_buf_consume(&c->in, n);
  return (int)n;
}

static int client_io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  client_t *c = ctx;
  if (pst_buf_append(&c->out, buf, (size_t)sz) != 0) return WOLFSSL_CBIO_ERR_GENERAL;
  return sz;
}

static void client_on_write(uv_write_t *req, int status) { free(req); }

/* Writes the first n bytes queued in out. */
static void client_write_part(client_t *c, size_t n) {
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
static void client_flush(client_t *c) {
  if (!c->hold) client_write_part(c, c->out.len);
}

/* Runs the handshake, then reads every record there is. */
static void client_pump(client_t *c) {
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

static void client_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
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

static void client_on_connect(uv_connect_t *req, int status) {
  client_t *c = req->data;
  assert_int_equal(status, 0);
  assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, tb_alloc, client_on_read), 0);
  client_pump(c); /* the ClientHello */
}

static void client_on_close(uv_handle_t *h) {
  client_t *c = h->data;
  c->open = 0;
}

/* Connects a client to listener ln. sni and alpn (wolfSSL's comma-separated
 * list) may be NULL; tls 0 makes a client that sends nothing by itself. */
static client_t *client_start(int ln, int tls, const char *sni, const char *alpn) {
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

static void client_send_len(client_t *c, const char *data, size_t len) {
  assert_int_equal(wolfSSL_write(c->ssl, data, (int)len), (int)len);
  client_flush(c);
}

static void client_send(client_t *c, const char *data) { client_send_len(c, data, strlen(data)); }

/* Sends bytes as they are, outside TLS. */
static void client_send_raw(client_t *c, const char *data) {
  assert_int_equal(pst_buf_append(&c->out, data, strlen(data)), 0);
  client_flush(c);
}

/* Stops or resumes reading the socket: the kernel's buffers fill, and
 * postern's writes to the client stop being taken. */
static void client_read(client_t *c, int on) {
  if (on) {
    assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, tb_alloc, client_on_read), 0);
  } else {
    assert_int_equal(uv_read_stop((uv_stream_t *)&c->tcp), 0);
  }
}

/* Sends close_notify (RFC 8446 6.1) and nothing else: the TCP connection
 * stays open both ways. */
static void client_close_notify(client_t *c) {
  int rc = wolfSSL_shutdown(c->ssl);
  assert_true(rc == WOLFSSL_SHUTDOWN_NOT_DONE || rc == WOLFSSL_SUCCESS);
  client_flush(c);
}

static void client_on_shutdown(uv_shutdown_t *req, int status) { free(req); }

/* Sends a TCP FIN. */
static void client_fin(client_t *c) {
  uv_shutdown_t *req = malloc(sizeof(*req));
  assert_non_null(req);
  assert_int_equal(uv_shutdown(req, (uv_stream_t *)&c->tcp, client_on_shutdown), 0);
}

/* Closes the socket; the memory goes once the close callback ran. */
static void client_close(client_t *c) {
  if (c->open && !uv_is_closing((uv_handle_t *)&c->tcp)) {
    uv_close((uv_handle_t *)&c->tcp, client_on_close);
  }
}

static void client_free(client_t *c) {
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
static int client_got(const client_t *c, const char *text) {
  return c->plain.len > 0 && memmem(pst_buf_head(&c->plain), c->plain.len, text, strlen(text));
}

/* A complete HTTP/1.1 response with a Content-Length is at the front of the
 * client's plaintext: its length, else 0. */
static size_t http_response_len(const client_t *c) {
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
static char *http_take_response(client_t *c) {
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

static pst_conn_t *conn_by_id(uint64_t id) {
  for (pst_conn_t *c = tw.conns; c != NULL; c = c->next) {
    if (c->host.id == id) return c;
  }
  return NULL;
}

static int setup(void **state) {
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
static int teardown(void **state) {
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
static pst_conn_t *handshake(client_t *c) {
  WAIT_FOR(c->hs_done || c->hs_err);
  assert_int_equal(c->hs_err, 0);
  WAIT_FOR(tw.conns != NULL && tw.conns->state == PST_CONN_OPEN);
  return tw.conns; /* the newest */
}

/* ---- tcp mode ------------------------------------------------------------------- */

/* The relay from end to end: the handshake, bytes both ways, the client's
 * close_notify half-closing the backend while the backend still answers,
 * the backend's FIN becoming close_notify and FIN to the client, and the
 * connection freed, counted out of the worker and its listener. */
static void test_tcp_relay(void **state) {
  client_t *c = client_start(LN_TCP, 1, SNI, NULL);
  WAIT_FOR(tw.n_conns == 1);
  assert_int_equal(accept_rc, 0);
  assert_int_equal(wls[LN_TCP]->n_conns, 1);
  pst_conn_t *conn = handshake(c);
  assert_string_equal(conn->host.sni, SNI);
  assert_string_equal(conn->host.peer_ip, "127.0.0.1");
  assert_int_equal(conn->host.backend->kind, PST_BACKEND_ADDR);
  assert_string_equal(conn->version, "TLSv1.3");
  uint64_t id = conn->host.id;

  client_send(c, "hello, backend");
  WAIT_FOR(tb.n_conns == 1 && tb.conns[0] != NULL && tb.conns[0]->in.len == 14);
  tb_conn_t *b = tb.conns[0];
  assert_memory_equal(pst_buf_head(&b->in), "hello, backend", 14);
  tb_write_str(b, "hello, client");
  WAIT_FOR(client_got(c, "hello, client"));

  /* close_notify: the backend's side is shut, the other way still works. */
  client_close_notify(c);
  WAIT_FOR(b->eof);
  assert_int_equal(b->in.len, 14);
  assert_int_equal(tw.n_conns, 1);
  assert_false(c->notify);
  tb_write_str(b, "after your close_notify");
  WAIT_FOR(client_got(c, "after your close_notify"));
  assert_false(c->notify || c->eof);

  /* The backend's FIN: close_notify, FIN, and the connection is done. */
  tb_shutdown(b);
  WAIT_FOR(c->notify && c->eof);
  WAIT_FOR(gone == 1);
  assert_int_equal(tw.n_conns, 0);
  assert_int_equal(wls[LN_TCP]->n_conns, 0);
  assert_null(tw.conns);
  assert_null(tw.flush_list);
  assert_true(seen[id].seen);
  assert_int_equal(seen[id].err, 0);
  assert_int_equal(c->tls_err, 0);
  client_free(c);
}

/* A TCP FIN without close_notify is the client's end too (conn.c reads it
 * as the end of the stream): the backend is half-closed, and the backend's
 * own end still reaches the client as close_notify. */
static void test_tcp_client_fin(void **state) {
  client_t *c = client_start(LN_TCP, 1, SNI, NULL);
  pst_conn_t *conn = handshake(c);
  uint64_t id = conn->host.id;
  client_send(c, "x");
  WAIT_FOR(tb.n_conns == 1 && tb.conns[0] != NULL && tb.conns[0]->in.len == 1);
  tb_conn_t *b = tb.conns[0];
  client_fin(c);
  WAIT_FOR(b->eof);
  tb_write_str(b, "bye");
  tb_shutdown(b);
  WAIT_FOR(c->notify && c->eof);
  assert_true(client_got(c, "bye"));
  WAIT_FOR(gone == 1);
  assert_int_equal(seen[id].err, 0);
  assert_int_equal(wls[LN_TCP]->n_conns, 0);
  client_free(c);
}

/* Bytes that cannot be told apart: a pattern with a period that is no
 * power of two, so a lost or repeated piece shows. */
static char *pattern(size_t len, unsigned seed) {
  char *p = malloc(len);
  assert_non_null(p);
  for (size_t i = 0; i < len; i++) p[i] = (char)((i * 7 + seed) % 251);
  return p;
}

#define BULK_UP (1024 * 1024)
#define BULK_DOWN (2 * 1024 * 1024)

/* Bulk both ways: 1 MiB from the client, 2 MiB from the backend to a
 * client that stops reading. While it does not read, what the connection
 * holds for it stays under the high-water mark plus one read from the
 * backend (the relay stops reading the backend, whose writes then wait in
 * its own queue); once it reads again, every byte arrives, in order. */
static void test_tcp_backpressure(void **state) {
  client_t *c = client_start(LN_TCP, 1, SNI, NULL);
  pst_conn_t *conn = handshake(c);
  uint64_t id = conn->host.id;
  char *up = bulk_up = pattern(BULK_UP, 1), *down = bulk_down = pattern(BULK_DOWN, 2);
  client_send_len(c, up, BULK_UP);
  WAIT_FOR(tb.n_conns == 1 && tb.conns[0] != NULL && tb.conns[0]->got == BULK_UP);
  tb_conn_t *b = tb.conns[0];
  assert_memory_equal(pst_buf_head(&b->in), up, BULK_UP);

  /* The client stops reading: once its receive buffer and postern's send
   * buffer are full, postern's writes to it wait in its queue, and the
   * relay must stop reading the backend. The observer tracks the most the
   * connection held at any loop turn. A small send buffer on postern's
   * side (the kernel would grow it to megabytes) makes that happen after
   * little data. */
  uv_os_fd_t cfd;
  assert_int_equal(uv_fileno((uv_handle_t *)&conn->client.tcp, &cfd), 0);
  int sndbuf = 32 * 1024;
  assert_int_equal(setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
  client_read(c, 0);
  tb_write(b, down, BULK_DOWN);
  WAIT_FOR(conn_held(conn) > PST_CLIENT_LOW_WATER);
  run_for(50);
  assert_true(conn_held(conn) > PST_CLIENT_LOW_WATER); /* still blocked */
  assert_true(c->plain.len < BULK_DOWN);

  client_read(c, 1);
  WAIT_FOR(c->plain.len == BULK_DOWN);
  assert_memory_equal(pst_buf_head(&c->plain), down, BULK_DOWN);
  /* At most one read from the backend (the read slab) past the mark, and
   * the TLS records' overhead. */
  assert_true(seen[id].max_held <= PST_CLIENT_HIGH_WATER + PST_READ_SLAB + 4096);
  assert_int_equal(tw.n_conns, 1);
  assert_int_equal(conn->bytes_in, BULK_UP);
  assert_int_equal(conn->bytes_out, BULK_DOWN);

  tb_shutdown(b);
  WAIT_FOR(c->notify && c->eof);
  client_close_notify(c);
  WAIT_FOR(gone == 1);
  assert_int_equal(seen[id].err, 0);
  client_free(c);
}

/* A client that resets its TCP connection: the connection closes at once
 * (a client failure: nothing is flushed to it) and so does its backend
 * connection. */
static void test_tcp_client_reset(void **state) {
  client_t *c = client_start(LN_TCP, 1, SNI, NULL);
  pst_conn_t *conn = handshake(c);
  uint64_t id = conn->host.id;
  client_send(c, "x");
  WAIT_FOR(tb.n_conns == 1 && tb.conns[0] != NULL && tb.conns[0]->in.len == 1);
  tb_conn_t *b = tb.conns[0];
  assert_int_equal(uv_tcp_close_reset(&c->tcp, client_on_close), 0);
  WAIT_FOR(gone == 1);
  WAIT_FOR(b->eof || b->read_err);
  assert_int_equal(seen[id].err, UV_ECONNRESET);
  client_free(c);
}

/* The route's backend refuses the connection: the handshake completes
 * first (the route is known only then), then the connection ends with
 * close_notify, saying why. */
static void test_tcp_backend_refused(void **state) {
  client_t *c = client_start(LN_TCP, 1, REFUSED_SNI, NULL);
  WAIT_FOR(c->hs_done || c->hs_err);
  assert_int_equal(c->hs_err, 0);
  WAIT_FOR(c->notify && c->eof);
  WAIT_FOR(gone == 1);
  assert_int_equal(seen[1].state, PST_CONN_CLOSING);
  assert_int_equal(seen[1].err, UV_ECONNREFUSED);
  assert_int_equal(c->tls_err, 0);
  assert_int_equal(tb.n_conns, 0);
  client_free(c);
}

/* ---- http mode ------------------------------------------------------------------- */

/* HTTP/1.1 by ALPN to builtin:info: a 200 page naming the server name (the
 * client sent it in capitals: postern keeps it lower-cased) and the
 * protocol; then, on the same connection, the JSON answer. The client's
 * close_notify ends the connection with postern's. */
static void test_http_info(void **state) {
  client_t *c = client_start(LN_HTTP, 1, "WWW.WolfSSL.com", "h3,http/1.1");
  pst_conn_t *conn = handshake(c);
  uint64_t id = conn->host.id;
  assert_string_equal(conn->alpn, "http/1.1");
  assert_string_equal(conn->host.sni, SNI);
  assert_int_equal(conn->host.backend->kind, PST_BACKEND_BUILTIN_INFO);

  client_send(c, "GET / HTTP/1.1\r\nHost: " SNI "\r\n\r\n");
  char *r = http_take_response(c);
  assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
  assert_non_null(strstr(r, "Content-Type: text/html"));
  assert_non_null(strstr(r, "<th scope=\"row\">Server name (SNI)</th><td>" SNI "</td>"));
  assert_non_null(strstr(r, "<th scope=\"row\">ALPN protocol</th><td>http/1.1</td>"));
  assert_non_null(strstr(r, "<th scope=\"row\">Listener</th><td>web</td>"));
  free(r);

  client_send(c, "GET /json HTTP/1.1\r\nHost: " SNI "\r\nAccept: application/json\r\n\r\n");
  r = http_take_response(c);
  assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
  assert_non_null(strstr(r, "\"sni\":\"" SNI "\""));
  assert_non_null(strstr(r, "\"version\":\"TLSv1.3\""));
  free(r);
  assert_int_equal(c->plain.len, 0);

  client_close_notify(c);
  WAIT_FOR(c->notify && c->eof);
  WAIT_FOR(gone == 1);
  assert_int_equal(seen[id].err, 0);
  assert_int_equal(wls[LN_HTTP]->n_conns, 0);
  client_free(c);
}

/* The types of the HTTP/2 frames at the front of the client's plaintext
 * (RFC 9113 4.1), in order, as a string of type numbers + 'a' ("e" for
 * SETTINGS 4, "h" for GOAWAY 7); a partial frame at the end is left out. */
static void h2_frame_types(const client_t *c, char *out, size_t outlen) {
  const unsigned char *p = (const unsigned char *)pst_buf_head(&c->plain);
  size_t len = c->plain.len, o = 0;
  while (len >= 9 && o + 1 < outlen) {
    size_t flen = ((size_t)p[0] << 16) | ((size_t)p[1] << 8) | p[2];
    if (len < 9 + flen) break;
    out[o++] = (char)('a' + p[3]);
    p += 9 + flen;
    len -= 9 + flen;
  }
  out[o] = '\0';
}

static int h2_got_frame(const client_t *c, char type) {
  char types[64];
  h2_frame_types(c, types, sizeof(types));
  return strchr(types, type) != NULL;
}

/* ALPN h2 picks the HTTP/2 front end, whose SETTINGS leave at once; the
 * worker's shutdown makes it send GOAWAY and, no stream being open, end
 * the connection with close_notify. */
static void test_http2_shutdown(void **state) {
  client_t *c = client_start(LN_HTTP, 1, SNI, "h2,http/1.1");
  pst_conn_t *conn = handshake(c);
  uint64_t id = conn->host.id;
  assert_string_equal(conn->alpn, "h2");
  WAIT_FOR(h2_got_frame(c, 'a' + 4));
  char types[64];
  h2_frame_types(c, types, sizeof(types));
  assert_int_equal(types[0], 'a' + 4); /* the server preface is SETTINGS (RFC 9113 3.4) */
  /* The client preface and an empty SETTINGS. */
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
  client_send_len(c, preface, sizeof(preface) - 1);
  run_for(20);
  assert_int_equal(tw.n_conns, 1);

  pst_conn_shutdown_all(&tw);
  WAIT_FOR(h2_got_frame(c, 'a' + 7));
  WAIT_FOR(c->notify && c->eof);
  WAIT_FOR(gone == 1);
  assert_int_equal(seen[id].err, 0);
  client_free(c);
}

/* The client's first request leaves with its Finished, in one write: the
 * session ticket waits for the answer (conn_int.h: cork), then both
 * arrive, and the ticket resumes a second connection. */
static void test_http_request_with_finished(void **state) {
  client_t *c = client_start(LN_HTTP, 1, SNI, "http/1.1");
  c->with_finished = "GET / HTTP/1.1\r\nHost: " SNI "\r\n\r\n";
  pst_conn_t *conn = handshake(c);
  char *r = http_take_response(c);
  assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
  assert_non_null(strstr(r, "Session resumed</th><td>no</td>"));
  free(r);
  assert_true(seen[conn->host.id].corked);
  assert_int_equal(conn->cork, 0);
  WOLFSSL_SESSION *sess = wolfSSL_get1_session(c->ssl);
  assert_non_null(sess);
  assert_true(wolfSSL_SESSION_has_ticket(sess));
  client_close_notify(c);
  WAIT_FOR(c->notify && c->eof && gone == 1);
  client_free(c);

  resume = sess;
  c = client_start(LN_HTTP, 1, SNI, "http/1.1");
  resume = NULL;
  handshake(c);
  assert_true(wolfSSL_session_reused(c->ssl));
  client_send(c, "GET / HTTP/1.1\r\nHost: " SNI "\r\n\r\n");
  r = http_take_response(c);
  assert_non_null(strstr(r, "Session resumed</th><td>yes</td>"));
  free(r);
  wolfSSL_SESSION_free(sess);
  client_close_notify(c);
  WAIT_FOR(c->notify && c->eof && gone == 2);
  client_free(c);
}

/* ---- timeouts ---------------------------------------------------------------------- */

/* A client that sends nothing is closed at timeouts.handshake (150 ms
 * after the accept): not before, and with a plain TCP close (no handshake:
 * nothing to say in TLS). So is one that sends half a ClientHello. */
static void test_handshake_timeout(void **state) {
  client_t *silent = client_start(LN_TCP, 0, NULL, NULL);
  client_t *partial = client_start(LN_TCP, 1, SNI, NULL);
  partial->hold = 1;
  WAIT_FOR(tw.n_conns == 2 && partial->out.len > 40); /* a ClientHello is some 200 bytes */
  client_write_part(partial, 40);
  run_for(SHORT_MS / 3);
  assert_int_equal(tw.n_conns, 2);
  assert_int_equal(gone, 0);
  WAIT_FOR(silent->eof && partial->eof);
  WAIT_FOR(gone == 2);
  assert_int_equal(silent->raw, 0);
  assert_int_equal(partial->raw, 0);
  assert_false(partial->hs_done);
  for (int id = 1; id <= 2; id++) {
    assert_true(seen[id].seen);
    assert_int_equal(seen[id].state, PST_CONN_CLOSING);
    assert_int_equal(seen[id].err, PST_ETIMEDOUT);
    assert_true(seen[id].t_closing - seen[id].t_accept >= SHORT_MS);
  }
  assert_int_equal(wls[LN_TCP]->n_conns, 0);
  assert_int_equal(tb.n_conns, 0); /* no backend before the handshake */
  client_free(silent);
  client_free(partial);
}

/* timeouts.idle (150 ms) in tcp mode: traffic pushes the deadline back; a
 * quiet relay is closed at the deadline, healthy: close_notify and FIN to
 * the client, and its backend connection closed. */
static void test_idle_timeout(void **state) {
  client_t *c = client_start(LN_TCP, 1, SNI, NULL);
  pst_conn_t *conn = handshake(c);
  uint64_t id = conn->host.id;
  WAIT_FOR(tb.n_conns == 1);
  tb_conn_t *b = tb.conns[0];
  run_for(SHORT_MS / 2);
  client_send(c, "ping");
  WAIT_FOR(b->in.len == 4);
  uint64_t t_ping = conn->t_last_ms;
  run_for(SHORT_MS * 2 / 3); /* past the first deadline, before the second */
  assert_int_equal(tw.n_conns, 1);
  assert_false(c->notify || c->eof);
  WAIT_FOR(c->notify && c->eof);
  WAIT_FOR(gone == 1);
  WAIT_FOR(b->eof);
  assert_int_equal(seen[id].err, PST_ETIMEDOUT);
  assert_true(seen[id].t_closing - t_ping >= SHORT_MS);
  assert_int_equal(c->tls_err, 0);
  client_free(c);
}

/* Bytes that are no ClientHello: the handshake fails at once, with the
 * alert wolfSSL sends, and the connection closes (PST_ETLS) without waiting
 * for the handshake timeout. */
static void test_handshake_failure(void **state) {
  client_t *c = client_start(LN_HTTP, 0, NULL, NULL);
  WAIT_FOR(tw.n_conns == 1);
  client_send_raw(c, "GET / HTTP/1.1\r\nHost: " SNI "\r\n\r\n");
  WAIT_FOR(c->eof || c->read_err);
  WAIT_FOR(gone == 1);
  assert_int_equal(seen[1].err, PST_ETLS);
  assert_true(seen[1].t_closing - seen[1].t_accept < 1000);
  /* An alert record, if anything (RFC 8446 6): content type 21. */
  if (c->in.len > 0) assert_int_equal(pst_buf_head(&c->in)[0], 21);
  client_free(c);
}

/* ---- shutdown ----------------------------------------------------------------------- */

static void answer_later(tb_conn_t *c, const char *req, size_t len) {}

/* pst_conn_shutdown_all: an idle HTTP/1.1 connection ends at once with
 * close_notify; one whose request is at the backend ends after its
 * response, which says Connection: close; the tcp relay (a byte stream
 * has no point to stop at) and a connection still in its handshake go on.
 * pst_conn_close_all then closes those: close_notify where the handshake
 * is done, a plain close where it is not, and the relay's backend
 * connection with it. */
static void test_shutdown_all(void **state) {
  tb.on_data = tb_http;
  tb.on_request = answer_later;
  client_t *relay = client_start(LN_TCP, 1, SNI, NULL);
  handshake(relay);
  client_send(relay, "r");
  WAIT_FOR(tb.n_conns == 1 && tb.conns[0] != NULL && tb.conns[0]->in.len == 1);
  tb_conn_t *relay_b = tb.conns[0];

  client_t *idle = client_start(LN_HTTP, 1, SNI, "http/1.1");
  handshake(idle);
  client_t *busy = client_start(LN_HTTP, 1, "backend.test", "http/1.1");
  pst_conn_t *busy_conn = handshake(busy);
  assert_int_equal(busy_conn->host.backend->kind, PST_BACKEND_ADDR);
  client_send(busy, "GET /slow HTTP/1.1\r\nHost: backend.test\r\n\r\n");
  WAIT_FOR(tb.requests == 1);
  tb_conn_t *http_b = NULL;
  for (int i = 0; i < TB_MAX_CONNS; i++) {
    if (tb.conns[i] != NULL && tb.conns[i]->requests == 1) http_b = tb.conns[i];
  }
  assert_non_null(http_b);

  client_t *shaking = client_start(LN_HTTP, 0, NULL, NULL);
  WAIT_FOR(tw.n_conns == 4);
  assert_int_equal(gone, 0);

  pst_conn_shutdown_all(&tw);
  WAIT_FOR(idle->notify && idle->eof);
  WAIT_FOR(gone == 1);
  run_for(30);
  assert_int_equal(tw.n_conns, 3);
  assert_false(busy->notify || relay->notify || shaking->eof);

  /* The request in flight is answered, then that connection ends. */
  tb_write_str(http_b, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
  char *r = http_take_response(busy);
  assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
  assert_non_null(strstr(r, "Connection: close\r\n"));
  assert_non_null(strstr(r, "\r\n\r\nslow"));
  free(r);
  WAIT_FOR(busy->notify && busy->eof);
  WAIT_FOR(gone == 2);
  run_for(30);
  assert_int_equal(tw.n_conns, 2);
  assert_false(relay->notify || shaking->eof);
  assert_int_equal(wls[LN_HTTP]->n_conns, 1);
  assert_int_equal(wls[LN_TCP]->n_conns, 1);

  pst_conn_close_all(&tw, PST_ESHUTDOWN, "shutdown timeout");
  WAIT_FOR(relay->notify && relay->eof && shaking->eof);
  WAIT_FOR(gone == 4);
  WAIT_FOR(relay_b->eof);
  assert_int_equal(shaking->raw, 0);
  assert_int_equal(wls[LN_HTTP]->n_conns, 0);
  assert_int_equal(wls[LN_TCP]->n_conns, 0);
  for (int id = 1; id <= 4; id++) assert_true(seen[id].seen);
  assert_int_equal(seen[2].err, 0); /* idle: "done" */
  assert_int_equal(seen[3].err, 0); /* busy: "done" */
  assert_int_equal(seen[1].err, PST_ESHUTDOWN);
  assert_int_equal(seen[4].err, PST_ESHUTDOWN);
  assert_null(conn_by_id(1));
  client_free(relay);
  client_free(idle);
  client_free(busy);
  client_free(shaking);
}

/* The worker drains (src/worker.c: worker_drain sets DRAINING, then calls
 * pst_conn_shutdown_all) while a client is in the middle of its
 * handshake. Once the handshake completes, its application takes no new
 * work either and the connection ends by itself, as the ones that were
 * open do: at once (conn.c: conn_open_draining; an HTTP/1.1 front end with
 * no exchange ends), or, were a request taken, after one answer that says
 * Connection: close. Never a keep-alive connection that only
 * pst_conn_close_all (shutdown_timeout) would end. */
static void test_shutdown_during_handshake(void **state) {
  client_t *c = client_start(LN_HTTP, 1, SNI, "http/1.1");
  c->hold = 1; /* the ClientHello waits */
  WAIT_FOR(tw.n_conns == 1 && c->out.len > 0);
  tw.state = PST_WORKER_DRAINING;
  pst_conn_shutdown_all(&tw);
  c->hold = 0;
  client_flush(c);
  WAIT_FOR(c->hs_done || c->hs_err);
  assert_int_equal(c->hs_err, 0);
  client_send(c, "GET / HTTP/1.1\r\nHost: " SNI "\r\n\r\n");
  WAIT_FOR(c->notify || http_response_len(c) > 0);
  if (http_response_len(c) > 0) {
    char *r = http_take_response(c);
    int says_close = strstr(r, "Connection: close\r\n") != NULL;
    free(r);
    assert_true(says_close);
  }
  WAIT_FOR(c->notify && c->eof);
  WAIT_FOR(gone == 1);
  client_free(c);
}

#define T(f, t) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, (void *)(t))

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_tcp_relay, &long_timeouts),
      T(test_tcp_client_fin, &long_timeouts),
      T(test_tcp_backpressure, &long_timeouts),
      T(test_tcp_client_reset, &long_timeouts),
      T(test_tcp_backend_refused, &long_timeouts),
      T(test_http_info, &long_timeouts),
      T(test_http_request_with_finished, &long_timeouts),
      T(test_http2_shutdown, &long_timeouts),
      T(test_handshake_timeout, &short_handshake),
      T(test_handshake_failure, &long_timeouts),
      T(test_idle_timeout, &short_idle),
      T(test_shutdown_all, &long_timeouts),
      T(test_shutdown_during_handshake, &long_timeouts),
  };
  return cmocka_run_group_tests_name("conn_io", tests, group_setup, group_teardown);
}
