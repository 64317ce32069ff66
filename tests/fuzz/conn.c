/* postern fuzz target: a whole server-side connection (src/conn.c and what
 * it runs: TLS through wolfSSL, then the HTTP/1.1 or HTTP/2 front end, the
 * streams and the in-process builtin:info backend) fed the client's
 * plaintext after a real handshake. The input is what the client sends once
 * the handshake is done: an in-memory wolfSSL client encrypts it and sends
 * it over a loopback socket to a connection accepted by pst_conn_accept on
 * a worker set up by hand as tests/unit/test_conn_io.c does (read slab,
 * plaintext buffer, pools, access log writer, the prepare handle that
 * flushes connections once per loop turn). The client reads and drops
 * whatever postern answers, so output never backs up.
 *
 * Input: one control byte, then the plaintext. The control byte picks the
 * ALPN the client offers (bit 0: h2, whose preface the harness sends first,
 * else http/1.1), the size of the pieces the plaintext is sent in (TLS
 * records; bits 1-4 times 64, 0: records of up to 16 KiB), how the client
 * ends (bit 5: close_notify before its FIN), and whether the input goes as
 * 0-RTT early data (bit 6: up to 4 KiB of it, in a connection resuming a
 * session a first connection got, the rest after the handshake).
 *
 * Every input gets a fresh connection and a fresh handshake, so that no
 * input depends on the ones before it (the connection's state would
 * otherwise carry over: a parser that refused, a GOAWAY). The worker, the
 * listener and the generation are made once per process. Each connection
 * must end by itself once its client has gone; the loop runs without
 * waiting (UV_RUN_NOWAIT), so timers never fire and runs are repeatable.
 *
 * The certificate is wolfSSL's ECC test certificate, written with its key
 * and CA into a mkdtemp directory under /tmp, removed at exit; the
 * generation is built at a time inside its validity. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
/* wolfSSL's test certificates, compiled in; the header defines many arrays
 * this file does not use. */
#define USE_CERT_BUFFERS_256
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-const-variable"
#pragma GCC diagnostic ignored "-Wunused-variable"
#include <wolfssl/certs_test.h>
#pragma GCC diagnostic pop

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
#include "postern/worker-t.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The server name the test certificate carries (its CN). */
#define PST_FUZZ_SNI "www.wolfssl.com"
/* Loop turns without progress after which a step is taken as settled. */
#define PST_FUZZ_IDLE_TURNS 4
/* Loop turns a step may take at most. */
#define PST_FUZZ_MAX_TURNS 20000

/* The most 0-RTT data the client sends (max_early_data is 16 KiB). */
#define PST_FUZZ_EARLY_MAX 4096
/* How long a connection may take to close: past its close timers. */
#define PST_FUZZ_DEADLINE_MS 15000

static char pst_fuzz_dir[] = "/tmp/postern-fuzz-conn-XXXXXX";
static char pst_fuzz_paths[5][96]; /* cert, key, CA, config, ticket keys */

static pst_worker_t w;
static pst_wlistener_t wl;
static pst_wlistener_t *wl_list[1];
static int port;
static WOLFSSL_CTX *cctx;

/* ---- the process-wide part ---- */

static void pst_fuzz_cleanup(void) {
  for (int i = 0; i < 5; i++) unlink(pst_fuzz_paths[i]);
  rmdir(pst_fuzz_dir);
}

static void pst_fuzz_pem(const char *path, const unsigned char *der, int der_len, int type) {
  unsigned char pem[8192];
  int n = wc_DerToPem(der, (unsigned)der_len, pem, sizeof(pem), type);
  FILE *f = n > 0 ? fopen(path, "w") : NULL;
  if (f == NULL || fwrite(pem, 1, (size_t)n, f) != (size_t)n || fclose(f) != 0) abort();
}

static pst_gen_t *pst_fuzz_gen(void) {
  const char *cert = pst_fuzz_paths[0], *key = pst_fuzz_paths[1], *ca = pst_fuzz_paths[2];
  pst_fuzz_pem(cert, serv_ecc_der_256, sizeof_serv_ecc_der_256, CERT_TYPE);
  pst_fuzz_pem(key, ecc_key_der_256, sizeof_ecc_key_der_256, ECC_PRIVATEKEY_TYPE);
  pst_fuzz_pem(ca, ca_ecc_cert_der_256, sizeof_ca_ecc_cert_der_256, CERT_TYPE);
  /* The middle of the leaf's validity: wolfSSL's test certificates expire. */
  FILE *f;
  pst_cert_t *c = NULL;
  pst_cert_load(cert, key, NULL, time(NULL), 0, &c);
  if (c == NULL || c->chain_len == 0) abort();
  time_t now = c->chain[0].not_before + (c->chain[0].not_after - c->chain[0].not_before) / 2;
  pst_cert_free(c);
  /* The ticket key of the ticket target (bytes 0..79), so that a ticket
   * this target's client receives is one the ticket target can open
   * (POSTERN_FUZZ_TICKET_OUT). */
  f = fopen(pst_fuzz_paths[4], "w");
  if (f == NULL) abort();
  fprintf(f,
          "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"
          "P0BBQkNERUZH"
          "SElKS0xNTk8=\n");
  if (fclose(f) != 0 || chmod(pst_fuzz_paths[4], 0600) != 0) abort();
  /* builtin:info answers every request in-process; other.test routes to a
   * backend that is never connected to: a request naming it gets 421. */
  f = fopen(pst_fuzz_paths[3], "w");
  if (f == NULL) abort();
  fprintf(f,
          "workers: 1\n"
          "expiry_warn_days: 0\n"
          "listeners:\n"
          "  - name: web\n"
          "    listen: \"127.0.0.1:1\"\n"
          "    mode: http\n"
          "    alpn: [h2, http/1.1]\n"
          "    backend: \"builtin:info\"\n"
          "    routes:\n"
          "      - names: [other.test]\n"
          "        backend: \"127.0.0.1:1\"\n"
          "    limits: {max_header_bytes: 4096}\n"
          "    h2: {max_concurrent_streams: 16}\n"
          "    tls:\n"
          "      certificates:\n"
          "        - {cert: \"%s\", key: \"%s\"}\n"
          "      ca_file: \"%s\"\n"
          "      ticket_keys: \"%s\"\n"
          "      early_data: accept\n",
          cert, key, ca, pst_fuzz_paths[4]);
  if (fclose(f) != 0) abort();
  char err[1024];
  pst_config_t *cfg = NULL;
  if (pst_config_load(pst_fuzz_paths[3], &cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "conn: %s\n", err);
    abort();
  }
  pst_gen_t *gen = NULL;
  if (pst_gen_build(cfg, 1, now, NULL, &gen, NULL) != 0) abort();
  return gen;
}

static void pst_fuzz_conn_gone(pst_worker_t *worker, pst_wlistener_t *l) {
  worker->n_conns--;
  l->n_conns--;
}

static void pst_fuzz_on_prepare(uv_prepare_t *p) {
  pst_conn_flush_all(&w);
  pst_access_log_flush(w.access_log);
}

static void pst_fuzz_on_connection(uv_stream_t *s, int status) {
  if (status == 0) pst_conn_accept(&w, &wl);
}

static void pst_fuzz_init(void) {
  signal(SIGPIPE, SIG_IGN); /* as src/main.c */
  pst_log_set_level(getenv("POSTERN_FUZZ_VERBOSE") ? PST_LOG_DEBUG : PST_LOG_ERROR);
  if (pst_tls_global_init() != 0 || mkdtemp(pst_fuzz_dir) == NULL) abort();
  static const char *const names[5] = {"server.pem", "server.key", "ca.pem", "postern.yaml",
                                       "tickets.keys"};
  for (int i = 0; i < 5; i++) {
    snprintf(pst_fuzz_paths[i], sizeof(pst_fuzz_paths[i]), "%s/%s", pst_fuzz_dir, names[i]);
  }
  atexit(pst_fuzz_cleanup);
  /* What pst_worker_start sets up. */
  if (uv_loop_init(&w.loop) != 0) abort();
  w.loop.data = &w;
  w.state = PST_WORKER_RUNNING;
  w.gen = pst_fuzz_gen();
  w.slab = malloc(PST_READ_SLAB);
  w.plain = malloc(PST_RECORD_MAX);
  w.pools = pst_pools_new(&w.loop);
  w.access_log = pst_access_log_new(&w.loop);
  if (w.slab == NULL || w.plain == NULL || w.pools == NULL || w.access_log == NULL) abort();
  w.conn_gone = pst_fuzz_conn_gone;
  if (uv_prepare_init(&w.loop, &w.flush_prepare) != 0 ||
      uv_prepare_start(&w.flush_prepare, pst_fuzz_on_prepare) != 0) {
    abort();
  }
  wl.worker = &w;
  wl.fd = -1;
  wl.open = 1;
  wl.listed = 1;
  struct sockaddr_in sin;
  int len = sizeof(sin);
  if (uv_tcp_init(&w.loop, &wl.handle) != 0 || uv_ip4_addr("127.0.0.1", 0, &sin) != 0 ||
      uv_tcp_bind(&wl.handle, (struct sockaddr *)&sin, 0) != 0 ||
      uv_listen((uv_stream_t *)&wl.handle, 16, pst_fuzz_on_connection) != 0 ||
      uv_tcp_getsockname(&wl.handle, (struct sockaddr *)&sin, &len) != 0) {
    abort();
  }
  port = ntohs(sin.sin_port);
  wl_list[0] = &wl;
  w.listeners = wl_list;
  w.n_listeners = 1;

  cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
  if (cctx == NULL) abort();
  wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_NONE, NULL);
  int groups[] = {WOLFSSL_ECC_X25519};
  if (wolfSSL_CTX_set_groups(cctx, groups, 1) != WOLFSSL_SUCCESS) abort();
}

/* ---- the client: wolfSSL over buffers, the buffers over a socket ---- */

typedef struct {
  int fd;
  WOLFSSL *ssl;
  pst_buf_t in, out;
  int eof, failed;
  int early;   /* sent 0-RTT data */
  int hs_done; /* wolfSSL_connect succeeded (is_init_finished is already true once
                * 0-RTT data went out) */
  /* The client may read. wolfSSL 5.5.4's client fails wolfSSL_read (error
   * -1, then a fatal alert) after a handshake in which it sent 0-RTT data,
   * until a wolfSSL_write resets its early-data state: as far as we can
   * tell ReceiveData's check of ssl->earlyData, which wolfSSL PR 7102
   * limited to the server side. */
  int can_read;
} pst_fuzz_client_t;

static int pst_fuzz_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  pst_fuzz_client_t *c = ctx;
  if (c->in.len == 0) return c->eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
  size_t n = c->in.len < (size_t)sz ? c->in.len : (size_t)sz;
  memcpy(buf, pst_buf_head(&c->in), n);
  pst_buf_consume(&c->in, n);
  return (int)n;
}

static int pst_fuzz_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  pst_fuzz_client_t *c = ctx;
  if (pst_buf_append(&c->out, buf, (size_t)sz) != 0) return WOLFSSL_CBIO_ERR_GENERAL;
  return sz;
}

/* Moves bytes between the socket and the client's buffers. Returns whether
 * any moved. */
static int pst_fuzz_client_io(pst_fuzz_client_t *c) {
  int moved = 0;
  while (c->out.len > 0 && !c->failed) {
    ssize_t n = send(c->fd, pst_buf_head(&c->out), c->out.len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN) c->failed = 1; /* postern closed: what is left goes nowhere */
      if (c->failed) pst_buf_consume(&c->out, c->out.len);
      break;
    }
    pst_buf_consume(&c->out, (size_t)n);
    moved = 1;
  }
  while (!c->eof) {
    char buf[16384];
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      c->eof = 1;
      moved = 1;
      break;
    }
    if (pst_buf_append(&c->in, buf, (size_t)n) != 0) abort();
    moved = 1;
  }
  return moved;
}

/* Reads and drops what postern sent, as far as it goes. */
static void pst_fuzz_client_drain(pst_fuzz_client_t *c) {
  char buf[4096];
  int n = 0;
  while (c->in.len > 0 && (n = wolfSSL_read(c->ssl, buf, sizeof(buf))) > 0) continue;
  if (n < 0 && getenv("POSTERN_FUZZ_VERBOSE") != NULL) {
    int e = wolfSSL_get_error(c->ssl, n);
    char es[80];
    if (e != WOLFSSL_ERROR_WANT_READ)
      fprintf(stderr, "conn: client read: %d %d %s\n", n, e,
              wolfSSL_ERR_error_string((unsigned long)e, es));
  }
}

/* Runs the loop and the client until nothing moves for a few turns, or
 * until done() holds. */
static void pst_fuzz_settle(pst_fuzz_client_t *c, int (*done)(pst_fuzz_client_t *)) {
  int idle = 0;
  for (int turn = 0; turn < PST_FUZZ_MAX_TURNS && idle < PST_FUZZ_IDLE_TURNS; turn++) {
    if (done != NULL && done(c)) return;
    uv_run(&w.loop, UV_RUN_NOWAIT);
    int moved = pst_fuzz_client_io(c);
    if (c->hs_done && c->can_read) pst_fuzz_client_drain(c);
    moved |= pst_fuzz_client_io(c);
    idle = moved ? 0 : idle + 1;
  }
}

/* POSTERN_FUZZ_TICKET_OUT=FILE: writes the session ticket the client got
 * as a seed of the ticket target (mode 0: key name | IV | MAC | body), from
 * wolfSSL 5.5.4's ticket layout: key name (16) | IV (16) | length (2) |
 * encrypted state | MAC (the last 32 bytes). */
static void pst_fuzz_dump_ticket(WOLFSSL *ssl) {
  const char *path = getenv("POSTERN_FUZZ_TICKET_OUT");
  unsigned char t[2048];
  word32 len = sizeof(t);
  if (path == NULL || wolfSSL_get_SessionTicket(ssl, t, &len) != WOLFSSL_SUCCESS || len < 66) {
    return;
  }
  size_t body = (size_t)t[32] << 8 | t[33];
  if (34 + body + 32 > len) return;
  FILE *f = fopen(path, "w");
  if (f == NULL) return;
  fputc(0, f);
  fwrite(t, 1, 32, f);            /* key name, IV */
  fwrite(t + len - 32, 1, 32, f); /* MAC */
  fwrite(t + 34, 1, body, f);
  fclose(f);
}

/* POSTERN_FUZZ_HELLO_OUT=FILE: writes the ClientHello of a client that
 * resumes the session ssl got, with 0-RTT data (pre_shared_key, binder,
 * early_data), as a seed of the hello target. */
static void pst_fuzz_dump_hello(WOLFSSL *ssl) {
  static const char early[] = "GET / HTTP/1.1\r\nHost: www.wolfssl.com\r\n\r\n";
  const char *path = getenv("POSTERN_FUZZ_HELLO_OUT");
  WOLFSSL_SESSION *sess = path != NULL ? wolfSSL_get1_session(ssl) : NULL;
  if (sess == NULL) return;
  pst_fuzz_client_t c = {.fd = -1};
  c.ssl = wolfSSL_new(cctx);
  if (c.ssl != NULL) {
    wolfSSL_SSLSetIORecv(c.ssl, pst_fuzz_recv);
    wolfSSL_SSLSetIOSend(c.ssl, pst_fuzz_send);
    wolfSSL_SetIOReadCtx(c.ssl, &c);
    wolfSSL_SetIOWriteCtx(c.ssl, &c);
    wolfSSL_UseSNI(c.ssl, WOLFSSL_SNI_HOST_NAME, PST_FUZZ_SNI, sizeof(PST_FUZZ_SNI) - 1);
    int written = 0;
    wolfSSL_set_session(c.ssl, sess);
    wolfSSL_write_early_data(c.ssl, early, sizeof(early) - 1, &written);
    FILE *f = fopen(path, "w");
    if (f != NULL) {
      fwrite(pst_buf_head(&c.out), 1, c.out.len, f);
      fclose(f);
    }
    wolfSSL_free(c.ssl);
  }
  pst_buf_free(&c.out);
  pst_buf_free(&c.in);
  wolfSSL_SESSION_free(sess);
}

static void pst_fuzz_deadline(uv_timer_t *t) { *(int *)t->data = 1; }

static int pst_fuzz_handshaken(pst_fuzz_client_t *c) {
  if (c->hs_done) return 1;
  if (c->failed || c->eof) abort(); /* postern refused a plain handshake */
  int rc = wolfSSL_connect(c->ssl);
  if (rc == WOLFSSL_SUCCESS) {
    c->hs_done = 1;
    c->can_read = !c->early;
  } else {
    int e = wolfSSL_get_error(c->ssl, rc);
    if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE) abort();
  }
  pst_fuzz_client_io(c);
  return c->hs_done;
}

/* Connects a new client offering alpn, resuming sess when not NULL. */
static void pst_fuzz_client_open(pst_fuzz_client_t *c, const char *alpn, WOLFSSL_SESSION *sess) {
  memset(c, 0, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sin;
  if (c->fd < 0 || uv_ip4_addr("127.0.0.1", port, &sin) != 0 ||
      connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
      fcntl(c->fd, F_SETFL, O_NONBLOCK) != 0) {
    abort();
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->ssl = wolfSSL_new(cctx);
  if (c->ssl == NULL) abort();
  wolfSSL_SSLSetIORecv(c->ssl, pst_fuzz_recv);
  wolfSSL_SSLSetIOSend(c->ssl, pst_fuzz_send);
  wolfSSL_SetIOReadCtx(c->ssl, c);
  wolfSSL_SetIOWriteCtx(c->ssl, c);
  char list[16];
  snprintf(list, sizeof(list), "%s", alpn);
  if (wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, PST_FUZZ_SNI, sizeof(PST_FUZZ_SNI) - 1) !=
          WOLFSSL_SUCCESS ||
      wolfSSL_UseALPN(c->ssl, list, (unsigned)strlen(list), WOLFSSL_ALPN_FAILED_ON_MISMATCH) !=
          WOLFSSL_SUCCESS ||
      (sess != NULL && wolfSSL_set_session(c->ssl, sess) != WOLFSSL_SUCCESS)) {
    abort();
  }
}

/* The client goes (close_notify first when notify): the connection must
 * end, and is freed. */
static void pst_fuzz_client_close(pst_fuzz_client_t *c, int notify) {
  if (notify && !c->failed && !c->eof) {
    wolfSSL_shutdown(c->ssl);
    pst_fuzz_client_io(c);
  }
  close(c->fd);
  c->fd = -1;
  for (int turn = 0; turn < PST_FUZZ_MAX_TURNS && w.n_conns > 0; turn++) {
    uv_run(&w.loop, UV_RUN_NOWAIT);
  }
  /* A connection may outlive its client legitimately: a client's FIN may be
   * a half-close, and HTTP/2 answers the complete requests of a client that
   * ended its side, waiting for a window the client alone can open, with
   * nothing to write that would fail. The idle timeout ends it then, which
   * the harness does at once, as the worker's shutdown would
   * (pst_conn_close_all), rather than wait. The close itself may wait for
   * one of its timers (the bounded flush of a close): the loop then waits
   * too, up to a deadline far past every timer of the configuration. */
  if (w.n_conns > 0) pst_conn_close_all(&w, PST_ESHUTDOWN, "fuzz: its client went");
  for (int turn = 0; turn < PST_FUZZ_MAX_TURNS && w.n_conns > 0; turn++) {
    uv_run(&w.loop, UV_RUN_NOWAIT);
  }
  if (w.n_conns > 0) {
    uint64_t t0 = uv_hrtime();
    uv_timer_t deadline;
    int hit = 0;
    uv_timer_init(&w.loop, &deadline);
    deadline.data = &hit;
    uv_timer_start(&deadline, pst_fuzz_deadline, PST_FUZZ_DEADLINE_MS, 0);
    while (w.n_conns > 0 && !hit) uv_run(&w.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&w.loop, UV_RUN_NOWAIT);
    if (getenv("POSTERN_FUZZ_VERBOSE") != NULL) {
      fprintf(stderr, "conn: ended %llu ms after its client\n",
              (unsigned long long)((uv_hrtime() - t0) / 1000000));
    }
  }
  if (w.n_conns > 0) {
    fprintf(stderr, "conn: the connection outlived its close by %d ms\n", PST_FUZZ_DEADLINE_MS);
    abort();
  }
  pst_fuzz_dump_ticket(c->ssl);
  pst_fuzz_dump_hello(c->ssl);
  wolfSSL_free(c->ssl);
  pst_buf_free(&c->in);
  pst_buf_free(&c->out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  if (cctx == NULL) pst_fuzz_init();
  if (size < 1) return 0;
  int h2 = data[0] & 1;
  size_t piece = (size_t)((data[0] >> 1) & 15) * 64;
  int notify = (data[0] >> 5) & 1;
  int early = (data[0] >> 6) & 1;
  if (piece == 0) piece = 16384;
  const char *alpn = h2 ? "h2" : "http/1.1";
  /* What the client sends: the h2 preface, then the input. */
  pst_buf_t plain = {0};
  if ((h2 && pst_buf_append(&plain, preface, sizeof(preface) - 1) != 0) ||
      pst_buf_append(&plain, data + 1, size - 1) != 0) {
    abort();
  }
  const char *in = pst_buf_head(&plain);
  size_t len = plain.len, off = 0;

  pst_fuzz_client_t c;
  WOLFSSL_SESSION *sess = NULL;
  if (early) {
    /* A first connection for a ticket, then the input as 0-RTT data of a
     * second one resuming with it (RFC 8446 2.3): a fresh ticket every
     * time, so that the strike register (replay.c) answers alike. */
    pst_fuzz_client_open(&c, alpn, NULL);
    pst_fuzz_settle(&c, pst_fuzz_handshaken);
    if (!c.hs_done) abort();
    pst_fuzz_settle(&c, NULL); /* the NewSessionTicket */
    sess = wolfSSL_get1_session(c.ssl);
    pst_fuzz_client_close(&c, 1);
  }
  pst_fuzz_client_open(&c, alpn, sess);
  if (sess != NULL) {
    int n = (int)(len < PST_FUZZ_EARLY_MAX ? len : PST_FUZZ_EARLY_MAX), sent = 0;
    c.early = 1;
    if (wolfSSL_write_early_data(c.ssl, in, n, &sent) > 0 && sent > 0) off = (size_t)sent;
    pst_fuzz_client_io(&c);
  }
  pst_fuzz_settle(&c, pst_fuzz_handshaken);
  if (!c.hs_done) abort(); /* the handshake did not finish */
  while (off < len && !c.failed && !c.eof) {
    size_t n = len - off < piece ? len - off : piece;
    if (wolfSSL_write(c.ssl, in + off, (int)n) != (int)n) break;
    c.can_read = 1;
    off += n;
    pst_fuzz_settle(&c, NULL);
  }
  pst_fuzz_settle(&c, NULL);
  pst_fuzz_client_close(&c, notify);
  wolfSSL_SESSION_free(sess);
  pst_buf_free(&plain);
  return 0;
}
