/* postern: unit tests for the TLS layer of backend connections
 * (src/pool_tls.c), on a loop of the test's own against a backend it serves
 * itself (loop_test_util.h) with a wolfSSL server fed from that backend's
 * buffers: the lessee sees plaintext after a verified handshake; a kept-alive
 * TLS connection is pooled and reused without a new handshake; a new
 * connection resumes the server's session; a name the certificate does not
 * carry fails the connect; records that arrive while the lessee pauses wait
 * and come after it resumes; close_notify goes with the half-close. The PKI
 * is made at run time by conf/mkpki.sh (run from the repository's root). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "postern/common.h"
#include "postern/pool.h"
#include "postern/tls.h"

#include "loop_test_util.h"

static char pki[256];

typedef struct {
  pst_bconn_t *b;
  int connects;
  int connect_status;
  pst_buf_t got;
  int eof;
  int read_err;
  int reads;
  int pause_after_first; /* pst_bconn_read(b, 0) from inside the first on_read */
  int shutdowns;
} lessee_t;

static lessee_t L;
static pst_listener_conf_t lc;
static pst_pools_t *pools;
static tb_t tb;
static pst_backend_set_conf_t set;
static pst_backend_conf_t bc;

/* The server side: one WOLFSSL per backend connection. */
static WOLFSSL_CTX *sctx;
static WOLFSSL *srv[TB_MAX_CONNS];
static int srv_handshakes, srv_resumed, srv_close_notify;
static int srv_records; /* "pong" records sent per "ping" (the pause test sends 3) */

static void on_connect(void *arg, int status) {
  lessee_t *l = arg;
  l->connects++;
  l->connect_status = status;
}

static void on_read(void *arg, const char *data, ssize_t n) {
  lessee_t *l = arg;
  l->reads++;
  if (n > 0) {
    assert_int_equal(pst_buf_append(&l->got, data, (size_t)n), 0);
  } else if (n == UV_EOF) {
    l->eof++;
  } else {
    l->read_err = (int)n;
  }
  if (l->pause_after_first && l->reads == 1) pst_bconn_read(l->b, 0);
}

static void on_drain(void *arg) {}
static void on_timer(void *arg) {}
static void on_write_error(void *arg, int status) {}
static void on_shutdown(void *arg, int status) { ((lessee_t *)arg)->shutdowns++; }

static const pst_bconn_events_t events = {
    .on_connect = on_connect,
    .on_read = on_read,
    .on_drain = on_drain,
    .on_timer = on_timer,
    .on_write_error = on_write_error,
    .on_shutdown = on_shutdown,
};

static int srv_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  tb_conn_t *c = ctx;
  if (c->in.len == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
  size_t n = (size_t)sz < c->in.len ? (size_t)sz : c->in.len;
  memcpy(buf, pst_buf_head(&c->in), n);
  pst_buf_consume(&c->in, n);
  return (int)n;
}

static int srv_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  tb_write(ctx, buf, (size_t)sz);
  return sz;
}

/* tb's on_data: the server's handshake, then each "ping" answered with
 * srv_records records "pong". */
static void srv_on_data(tb_conn_t *c) {
  WOLFSSL *s = srv[c->index];
  if (s == NULL) {
    s = srv[c->index] = wolfSSL_new(sctx);
    assert_non_null(s);
    wolfSSL_SSLSetIORecv(s, srv_recv);
    wolfSSL_SSLSetIOSend(s, srv_send);
    wolfSSL_SetIOReadCtx(s, c);
    wolfSSL_SetIOWriteCtx(s, c);
  }
  if (!wolfSSL_is_init_finished(s)) {
    if (wolfSSL_accept(s) != WOLFSSL_SUCCESS) return;
    srv_handshakes++;
    if (wolfSSL_session_reused(s)) srv_resumed++;
  }
  char buf[256];
  int n;
  while ((n = wolfSSL_read(s, buf, sizeof(buf))) > 0) {
    for (int i = 0; i < srv_records; i++) wolfSSL_write(s, "pong", 4);
  }
  if (wolfSSL_get_error(s, n) == WOLFSSL_ERROR_ZERO_RETURN) srv_close_notify++;
}

static int group_setup(void **state) {
  snprintf(pki, sizeof(pki), "/tmp/pst-pool-tls-%d", (int)getpid());
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "conf/mkpki.sh %s >/dev/null 2>&1", pki);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(pst_tls_global_init(), 0);
  return 0;
}

static int group_teardown(void **state) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", pki);
  assert_int_equal(system(cmd), 0);
  pst_tls_global_cleanup();
  return 0;
}

static int setup(void **state) {
  loop_setup();
  memset(&lc, 0, sizeof(lc));
  lc.name = "test";
  lc.backend_connect_timeout_ms = 1000;
  lc.pool_max_idle = 8;
  lc.pool_idle_ms = 60000;
  pst_buf_free(&L.got);
  memset(&L, 0, sizeof(L));
  memset(srv, 0, sizeof(srv));
  srv_handshakes = srv_resumed = srv_close_notify = 0;
  srv_records = 1;
  pools = pst_pools_new(loop);
  assert_non_null(pools);

  char chain[300], key[300], root[300];
  snprintf(chain, sizeof(chain), "%s/localhost.chain.pem", pki);
  snprintf(key, sizeof(key), "%s/localhost.key.pem", pki);
  snprintf(root, sizeof(root), "%s/root.pem", pki);
  sctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
  assert_non_null(sctx);
  assert_int_equal(wolfSSL_CTX_use_certificate_chain_file(sctx, chain), WOLFSSL_SUCCESS);
  assert_int_equal(wolfSSL_CTX_use_PrivateKey_file(sctx, key, WOLFSSL_FILETYPE_PEM),
                   WOLFSSL_SUCCESS);

  tb_start(&tb);
  tb.on_data = srv_on_data;
  memset(&set, 0, sizeof(set));
  set.tls = 1;
  set.tls_verify = 1;
  set.tls_ca_file = strdup(root);
  set.tls_server_name = strdup("localhost");
  char err[600];
  assert_int_equal(pst_tls_backend_init(&set, err, sizeof(err)), 0);
  backend_at(&bc, tb.port);
  bc.set = &set;
  return 0;
}

static int teardown(void **state) {
  if (L.b != NULL) pst_bconn_release(L.b, 0);
  L.b = NULL;
  pst_pools_shutdown(pools);
  WAIT_QUIETLY(pst_pools_open(pools) == 0);
  unsigned open = pst_pools_open(pools);
  if (open == 0) pst_pools_free(pools);
  tb_stop(&tb);
  for (int i = 0; i < TB_MAX_CONNS; i++) wolfSSL_free(srv[i]);
  wolfSSL_CTX_free(sctx);
  pst_tls_backend_free(&set);
  free(set.tls_ca_file);
  free(set.tls_server_name);
  pst_buf_free(&L.got);
  loop_teardown();
  assert_int_equal(open, 0);
  return 0;
}

static pst_bconn_t *lease(pst_lease_t how, int *reused) {
  int err = 1;
  L.b = pst_pool_lease(pools, &lc, &bc, how, &events, &L, reused, &err);
  assert_non_null(L.b);
  return L.b;
}

/* One "ping" and its answer on L.b. */
static void exchange(void) {
  size_t before = L.got.len;
  assert_int_equal(pst_bconn_write(L.b, "ping", 4), 0);
  pst_bconn_read(L.b, 1);
  WAIT_FOR(L.got.len >= before + 4 * (size_t)srv_records);
  assert_memory_equal(pst_buf_head(&L.got) + before, "pong", 4);
}

static void test_handshake_then_plaintext_and_pool(void **state) {
  int reused;
  lease(PST_LEASE_FRESH, &reused);
  assert_int_equal(reused, 0);
  WAIT_FOR(L.connects == 1);
  assert_int_equal(L.connect_status, 0); /* verified: root, name localhost */
  exchange();
  assert_int_equal(srv_handshakes, 1);
  pst_bconn_release(L.b, 1); /* kept alive, pooled */
  L.b = NULL;
  turns(3);
  lease(PST_LEASE_POOLED, &reused);
  assert_int_equal(reused, 1); /* no handshake: ready at once */
  exchange();
  assert_int_equal(tb.n_conns, 1);
  assert_int_equal(srv_handshakes, 1);
}

static void test_session_resumed(void **state) {
  int reused;
  lease(PST_LEASE_ONCE, &reused);
  WAIT_FOR(L.connects == 1);
  exchange(); /* the ticket comes before the answer */
  pst_bconn_release(L.b, 0);
  L.b = NULL;
  L.connects = 0;
  lease(PST_LEASE_ONCE, &reused);
  WAIT_FOR(L.connects == 1);
  assert_int_equal(L.connect_status, 0);
  exchange();
  assert_int_equal(srv_handshakes, 2);
  assert_int_equal(srv_resumed, 1);
}

static void test_name_mismatch_fails_connect(void **state) {
  free(set.tls_server_name);
  set.tls_server_name = strdup("example.test"); /* the server is localhost */
  int reused;
  lease(PST_LEASE_FRESH, &reused);
  WAIT_FOR(L.connects == 1);
  assert_int_equal(L.connect_status, PST_ETLS);
  assert_int_equal(L.got.len, 0);
}

static void test_records_held_while_paused(void **state) {
  int reused;
  lease(PST_LEASE_FRESH, &reused);
  WAIT_FOR(L.connects == 1);
  L.pause_after_first = 1;
  srv_records = 3;
  assert_int_equal(pst_bconn_write(L.b, "ping", 4), 0);
  pst_bconn_read(L.b, 1);
  WAIT_FOR(L.reads >= 1);
  run_for(50);
  int reads = L.reads;
  assert_true(L.got.len < 12); /* paused: the rest waits */
  pst_bconn_read(L.b, 1);
  assert_int_equal(L.reads, reads); /* no event inside pst_bconn_read */
  WAIT_FOR(L.got.len == 12);
  assert_memory_equal(pst_buf_head(&L.got), "pongpongpong", 12);
}

static void test_shutdown_sends_close_notify(void **state) {
  int reused;
  lease(PST_LEASE_ONCE, &reused);
  assert_int_equal(pst_bconn_shutdown(L.b), 0); /* asked while connecting: after the handshake */
  pst_bconn_read(L.b, 1);
  WAIT_FOR(L.connects == 1 && L.shutdowns == 1);
  WAIT_FOR(srv_close_notify == 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_handshake_then_plaintext_and_pool), T(test_session_resumed),
      T(test_name_mismatch_fails_connect),       T(test_records_held_while_paused),
      T(test_shutdown_sends_close_notify),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
