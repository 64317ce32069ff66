/* postern: unit tests for 0-RTT early data on one connection (src/early.c),
 * with TLS 1.3 handshakes in memory: a wolfSSL client and a wolfSSL server
 * set up as postern sets up its listeners (tls.c: max_early_data on the
 * context, tickets sent by pst_early_finish, sealed by ticket.c), whose
 * records go through buffers, the server driven as conn.c drives it
 * (pst_early_hello on the raw bytes, pst_early_read while early data is
 * read, then wolfSSL_accept and pst_early_finish). Covered: a ClientHello
 * without early data; an incomplete one, with and without the client's
 * end; bytes that are no ClientHello; early data accepted, with its bytes
 * taken; the same ClientHello again (a replay); early data refused by
 * policy, under TLS 1.2 only, and by wolfSSL refusing the ticket (the
 * strike register claim is given back); the status names. */
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
/* wolfSSL's test certificates, compiled in: no files, no openssl process.
 * The header defines many arrays this file does not use. */
#define USE_CERT_BUFFERS_256
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-const-variable"
#pragma GCC diagnostic ignored "-Wunused-variable"
#include <wolfssl/certs_test.h>
#pragma GCC diagnostic pop

#include "postern/buf.h"
#include "postern/common.h"
#include "postern/early.h"
#include "postern/metrics.h"
#include "postern/replay.h"
#include "postern/ticket.h"
#include "postern/tls.h"

#define TICKET_LIFETIME_MS 3600000

/* ---- in-memory TLS ------------------------------------------------------------ */

/* Reads from a buffer: the bytes are consumed. */
static int mem_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  pst_buf_t *b = ctx;
  if (b->len == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
  size_t n = b->len < (size_t)sz ? b->len : (size_t)sz;
  memcpy(buf, pst_buf_head(b), n);
  pst_buf_consume(b, n);
  return (int)n;
}

static int mem_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  if (pst_buf_append(ctx, buf, (size_t)sz) != 0) return WOLFSSL_CBIO_ERR_GENERAL;
  return sz;
}

/* The server side of a listener, as tls.c makes it. */
typedef struct {
  WOLFSSL_CTX *ctx;
  pst_ticket_src_t *tickets;
} server_t;

static WOLFSSL_CTX *cctx;
/* srv: early_data: accept. reject_srv: early_data: reject, with the same
 * ticket keys. other_srv and reject_other_srv: accept and reject, with
 * another ticket key ring, which cannot open srv's tickets. */
static server_t srv, reject_srv, other_srv, reject_other_srv;
static pst_listener_conf_t lc;
static char plain[PST_RECORD_MAX];

static void server_init(server_t *s, uint64_t rotation_ms, unsigned max_early_data) {
  s->ctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
  assert_non_null(s->ctx);
  assert_int_equal(wolfSSL_CTX_use_certificate_buffer(
                       s->ctx, serv_ecc_der_256, sizeof_serv_ecc_der_256, WOLFSSL_FILETYPE_ASN1),
                   WOLFSSL_SUCCESS);
  assert_int_equal(wolfSSL_CTX_use_PrivateKey_buffer(s->ctx, ecc_key_der_256,
                                                     sizeof_ecc_key_der_256, WOLFSSL_FILETYPE_ASN1),
                   WOLFSSL_SUCCESS);
  assert_int_equal(wolfSSL_CTX_set1_curves_list(s->ctx, "X25519:P-256"), WOLFSSL_SUCCESS);
  wolfSSL_CTX_set_verify(s->ctx, WOLFSSL_VERIFY_NONE, NULL);
  wolfSSL_CTX_set_group_messages(s->ctx);
  /* tls_early_settings: the policy's max_early_data, 0 under reject. */
  assert_int_equal(wolfSSL_CTX_set_max_early_data(s->ctx, max_early_data), WOLFSSL_SUCCESS);
  assert_int_equal(wolfSSL_CTX_set_num_tickets(s->ctx, 0), WOLFSSL_SUCCESS);
  char err[256];
  assert_int_equal(
      pst_ticket_src_get(NULL, rotation_ms, TICKET_LIFETIME_MS, &s->tickets, err, sizeof(err)), 0);
  assert_int_equal(pst_ticket_install(s->ctx, s->tickets, TICKET_LIFETIME_MS), 0);
  wolfSSL_CTX_SetIORecv(s->ctx, mem_recv);
  wolfSSL_CTX_SetIOSend(s->ctx, mem_send);
}

static void server_free(server_t *s) {
  wolfSSL_CTX_free(s->ctx);
  pst_ticket_src_put(s->tickets);
  memset(s, 0, sizeof(*s));
}

static int group_setup(void **state) {
  assert_int_equal(pst_tls_global_init(), 0);
  server_init(&srv, 3600000, 16384);
  server_init(&reject_srv, 3600000, 0); /* the same ring as srv's */
  server_init(&other_srv, 1800000, 16384);
  server_init(&reject_other_srv, 1800000, 0);
  cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
  assert_non_null(cctx);
  wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_NONE, NULL);
  /* A key share the server takes: no HelloRetryRequest (early.c). */
  int groups[] = {WOLFSSL_ECC_X25519};
  assert_int_equal(wolfSSL_CTX_set_groups(cctx, groups, 1), WOLFSSL_SUCCESS);
  wolfSSL_CTX_SetIORecv(cctx, mem_recv);
  wolfSSL_CTX_SetIOSend(cctx, mem_send);
  return 0;
}

static int group_teardown(void **state) {
  wolfSSL_CTX_free(cctx);
  server_free(&srv);
  server_free(&reject_srv);
  server_free(&other_srv);
  server_free(&reject_other_srv);
  pst_tls_global_cleanup();
  return 0;
}

static int setup(void **state) {
  memset(&lc, 0, sizeof(lc));
  lc.name = "test";
  lc.versions = PST_TLS13;
  lc.groups[0] = WOLFSSL_ECC_X25519; /* tls.groups' default */
  lc.groups[1] = WOLFSSL_ECC_SECP256R1;
  lc.groups[2] = WOLFSSL_ECC_SECP384R1;
  lc.n_groups = 3;
  lc.session_tickets = 1;
  lc.early_data = PST_EARLY_DATA_ACCEPT;
  lc.max_early_data = 16384;
  lc.ticket_lifetime_ms = TICKET_LIFETIME_MS;
  return 0;
}

/* One connection: both ends, the bytes between them, the server's 0-RTT
 * state. */
typedef struct {
  WOLFSSL *c, *s;
  pst_buf_t to_server; /* the client's bytes the server has not read: conn's input */
  pst_buf_t to_client; /* the server's flight */
  pst_early_t e;
  int cdone, sdone;
} hs_t;

static void hs_init(hs_t *h, const server_t *server, WOLFSSL_SESSION *sess) {
  memset(h, 0, sizeof(*h));
  h->c = wolfSSL_new(cctx);
  h->s = wolfSSL_new(server->ctx);
  assert_non_null(h->c);
  assert_non_null(h->s);
  wolfSSL_SetIOReadCtx(h->c, &h->to_client);
  wolfSSL_SetIOWriteCtx(h->c, &h->to_server);
  wolfSSL_SetIOReadCtx(h->s, &h->to_server);
  wolfSSL_SetIOWriteCtx(h->s, &h->to_client);
  if (sess != NULL) assert_int_equal(wolfSSL_set_session(h->c, sess), WOLFSSL_SUCCESS);
}

static void hs_free(hs_t *h) {
  wolfSSL_free(h->c);
  wolfSSL_free(h->s);
  pst_buf_free(&h->to_server);
  pst_buf_free(&h->to_client);
  pst_early_free(&h->e);
}

/* The server's handshake step, as conn_handshake takes it. Returns 1 while
 * it waits for the client, 0 once complete. */
static int server_step(hs_t *h) {
  pst_early_t *e = &h->e;
  if (e->phase == PST_EARLY_HELLO &&
      pst_early_hello(e, h->s, &lc, NULL, pst_buf_head(&h->to_server), h->to_server.len, 0, 1,
                      "127.0.0.1:1") > 0) {
    return 1;
  }
  if (e->phase == PST_EARLY_READING) {
    int rc = pst_early_read(e, h->s, plain, &h->to_client);
    assert_true(rc >= 0);
    if (rc > 0) return 1;
  }
  int rc;
  for (int i = 0; i < 2; i++) {
    rc = wolfSSL_accept(h->s);
    if (rc != WOLFSSL_SUCCESS || wolfSSL_is_init_finished(h->s)) break;
  }
  if (rc != WOLFSSL_SUCCESS) {
    assert_int_equal(wolfSSL_get_error(h->s, rc), WOLFSSL_ERROR_WANT_READ);
    return 1;
  }
  if (!wolfSSL_is_init_finished(h->s)) return 1;
  assert_int_equal(pst_early_finish(e, h->s, &lc), 0);
  return 0;
}

/* Runs the handshake to its end on both sides; then the client reads the
 * server's ticket. Returns the client's session (for resumption). */
static WOLFSSL_SESSION *hs_run(hs_t *h) {
  for (int i = 0; i < 20 && !(h->cdone && h->sdone); i++) {
    if (!h->cdone) {
      int rc = wolfSSL_connect(h->c);
      h->cdone = rc == WOLFSSL_SUCCESS;
      if (!h->cdone) assert_int_equal(wolfSSL_get_error(h->c, rc), WOLFSSL_ERROR_WANT_READ);
    }
    if (!h->sdone) h->sdone = server_step(h) == 0;
  }
  assert_true(h->cdone && h->sdone);
  char buf[16];
  int rc = wolfSSL_read(h->c, buf, sizeof(buf)); /* takes the NewSessionTicket */
  assert_int_equal(rc, WOLFSSL_FATAL_ERROR);
  assert_int_equal(wolfSSL_get_error(h->c, rc), WOLFSSL_ERROR_WANT_READ);
  WOLFSSL_SESSION *sess = wolfSSL_get1_session(h->c);
  assert_non_null(sess);
  return sess;
}

/* A full handshake with srv: a session whose ticket allows early data. */
static WOLFSSL_SESSION *full_handshake(void) {
  hs_t h;
  hs_init(&h, &srv, NULL);
  WOLFSSL_SESSION *sess = hs_run(&h);
  assert_int_equal(h.e.status, PST_EARLY_NOT_SENT);
  assert_false(wolfSSL_session_reused(h.s));
  hs_free(&h);
  return sess;
}

/* Starts a resumption offering sess and sending data as 0-RTT early data:
 * the ClientHello and the early data are in h->to_server. */
static void hs_start_early(hs_t *h, const server_t *server, WOLFSSL_SESSION *sess,
                           const char *data) {
  hs_init(h, server, sess);
  int written = 0;
  int rc = wolfSSL_write_early_data(h->c, data, (int)strlen(data), &written);
  assert_int_equal(rc, (int)strlen(data));
  assert_int_equal(written, (int)strlen(data));
  assert_true(h->to_server.len > 0);
}

/* The early data outcome's count, summed over listeners and threads. */
static uint64_t early_count(pst_mearly_t o) {
  pst_metrics_summary_t s;
  pst_metrics_summary(&s);
  return s.early[o];
}

static uint64_t metric_delta(pst_mearly_t o, uint64_t before) { return early_count(o) - before; }

/* ---- ClientHellos without early data ---------------------------------------- */

/* A ClientHello without early data: decided at once (not sent), wolfSSL
 * goes on through wolfSSL_accept. */
static void test_no_early_data(void **state) {
  hs_t h;
  hs_init(&h, &srv, NULL);
  assert_int_equal(wolfSSL_connect(h.c), WOLFSSL_FATAL_ERROR); /* the ClientHello is out */
  assert_true(h.to_server.len > 0);
  assert_int_equal(pst_early_hello(&h.e, h.s, &lc, NULL, pst_buf_head(&h.to_server),
                                   h.to_server.len, 0, 1, "127.0.0.1:1"),
                   0);
  assert_int_equal(h.e.phase, PST_EARLY_DONE);
  assert_int_equal(h.e.status, PST_EARLY_NOT_SENT);
  assert_false(h.e.claimed);
  assert_int_equal(h.e.data.len, 0);
  /* The handshake completes from there. */
  WOLFSSL_SESSION *sess = hs_run(&h);
  assert_int_equal(h.e.status, PST_EARLY_NOT_SENT);
  assert_int_equal(h.e.bytes, 0);
  wolfSSL_SESSION_free(sess);
  hs_free(&h);
}

/* Part of a ClientHello: wait for more (1), unless the client has closed:
 * then it is decided (0), and wolfSSL will judge the bytes. */
static void test_incomplete_hello(void **state) {
  hs_t h;
  hs_init(&h, &srv, NULL);
  assert_int_equal(wolfSSL_connect(h.c), WOLFSSL_FATAL_ERROR);
  const char *ch = pst_buf_head(&h.to_server);
  size_t len = h.to_server.len;
  size_t cuts[] = {1, 5, 10, len / 2, len - 1};
  for (size_t i = 0; i < PST_ARRAY_SIZE(cuts); i++) {
    pst_early_t e = {0};
    assert_int_equal(pst_early_hello(&e, h.s, &lc, NULL, ch, cuts[i], 0, 1, "p"), 1);
    assert_int_equal(e.phase, PST_EARLY_HELLO);
    assert_int_equal(pst_early_hello(&e, h.s, &lc, NULL, ch, cuts[i], 1, 1, "p"), 0);
    assert_int_equal(e.phase, PST_EARLY_DONE);
    assert_int_equal(e.status, PST_EARLY_NOT_SENT);
  }
  pst_early_t e = {0};
  assert_int_equal(pst_early_hello(&e, h.s, &lc, NULL, ch, 0, 0, 1, "p"), 1);
  assert_int_equal(pst_early_hello(&e, h.s, &lc, NULL, ch, len, 0, 1, "p"), 0);
  assert_int_equal(e.status, PST_EARLY_NOT_SENT);
  hs_free(&h);
}

/* Bytes that are no ClientHello are decided at once: wolfSSL says what is
 * wrong with them. */
static void test_not_a_hello(void **state) {
  static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  pst_early_t e = {0};
  assert_int_equal(pst_early_hello(&e, NULL, &lc, NULL, http, sizeof(http) - 1, 0, 1, "p"), 0);
  assert_int_equal(e.phase, PST_EARLY_DONE);
  assert_int_equal(e.status, PST_EARLY_NOT_SENT);
}

/* ---- 0-RTT ----------------------------------------------------------------- */

/* Early data accepted: its bytes are read while the handshake runs, the
 * status is settled, and pst_early_take hands them over. The same
 * ClientHello again is a replay: refused, and its handshake goes on with
 * the early data skipped. */
static void test_accept_then_replay(void **state) {
  WOLFSSL_SESSION *sess = full_handshake();
  uint64_t accepted = early_count(PST_MEARLY_ACCEPTED);
  uint64_t replayed = early_count(PST_MEARLY_REPLAYED);
  hs_t h;
  static const char req[] = "GET /early HTTP/1.1\r\nHost: x\r\n\r\n";
  hs_start_early(&h, &srv, sess, req);
  pst_buf_t hello = {0}; /* what an attacker records */
  assert_int_equal(pst_buf_append(&hello, pst_buf_head(&h.to_server), h.to_server.len), 0);

  /* The ClientHello and the early data are there: accepted for reading,
   * and the register holds the claim. */
  assert_int_equal(server_step(&h), 1);
  assert_int_equal(h.e.phase, PST_EARLY_READING);
  assert_true(h.e.claimed);
  assert_true(h.e.decided); /* the server's flight is out: the PSK was accepted */
  assert_int_equal(h.e.status, PST_EARLY_ACCEPTED);
  assert_int_equal(h.e.data.len, sizeof(req) - 1);
  assert_memory_equal(pst_buf_head(&h.e.data), req, sizeof(req) - 1);
  assert_true(h.to_client.len > 0);

  WOLFSSL_SESSION *next = hs_run(&h);
  assert_int_equal(h.e.phase, PST_EARLY_DONE);
  assert_int_equal(h.e.status, PST_EARLY_ACCEPTED);
  assert_true(wolfSSL_session_reused(h.s));
  assert_int_equal(h.e.bytes, sizeof(req) - 1);
  assert_int_equal(metric_delta(PST_MEARLY_ACCEPTED, accepted), 1);
  assert_string_equal(pst_early_status_name(h.e.status), "accepted");

  pst_buf_t out = {0};
  pst_early_take(&h.e, &out);
  assert_int_equal(out.len, sizeof(req) - 1);
  assert_memory_equal(pst_buf_head(&out), req, sizeof(req) - 1);
  assert_int_equal(h.e.data.len, 0);
  assert_null(h.e.data.data);
  pst_buf_free(&out);
  pst_early_take(&h.e, &out); /* nothing more */
  assert_int_equal(out.len, 0);
  assert_true(h.e.claimed); /* accepted: the claim stays */
  hs_free(&h);

  /* The recorded ClientHello and early data, sent again. */
  hs_init(&h, &srv, NULL);
  assert_int_equal(pst_buf_append(&h.to_server, pst_buf_head(&hello), hello.len), 0);
  assert_int_equal(server_step(&h), 1);
  assert_int_equal(h.e.phase, PST_EARLY_DONE);
  assert_int_equal(h.e.status, PST_EARLY_REPLAYED);
  assert_false(h.e.claimed);
  assert_int_equal(h.e.data.len, 0);
  assert_int_equal(metric_delta(PST_MEARLY_REPLAYED, replayed), 1);
  assert_string_equal(pst_early_status_name(h.e.status), "rejected");
  /* wolfSSL_accept took the ClientHello, answered it and skipped the
   * early data: it waits for the client's Finished, which never comes. */
  assert_true(h.to_client.len > 0);
  assert_int_equal(h.to_server.len, 0);
  hs_free(&h);

  pst_buf_free(&hello);
  wolfSSL_SESSION_free(next);
  wolfSSL_SESSION_free(sess);
}

/* early_data: reject, and a client whose ticket (from a postern that
 * accepted early data: a fleet, or a reload that changed the policy)
 * offers it anyway. The context advertises 0, so the connection raises its
 * limit to skip the early data (RFC 8446 4.2.10), and the handshake
 * completes at 1-RTT instead of failing: resumed when the ticket is good
 * (wolfSSL then takes the ticket's limit anyway), and, the case that needs
 * the raise, a full handshake when the ticket is refused. The client sends
 * its data again afterwards. */
static void rejected_by_policy(const server_t *server, int resumed) {
  WOLFSSL_SESSION *sess = full_handshake();
  lc.early_data = PST_EARLY_DATA_REJECT;
  uint64_t rejected = early_count(PST_MEARLY_REJECTED);
  hs_t h;
  hs_start_early(&h, server, sess, "skip me");
  assert_int_equal(server_step(&h), 1);
  assert_int_equal(h.e.status, PST_EARLY_REJECTED);
  assert_false(h.e.claimed);
  WOLFSSL_SESSION *next = hs_run(&h);
  assert_int_equal(h.e.status, PST_EARLY_REJECTED);
  assert_int_equal(h.e.data.len, 0);
  assert_int_equal(h.e.bytes, 0);
  assert_int_equal(wolfSSL_session_reused(h.s), resumed);
  assert_int_equal(wolfSSL_get_early_data_status(h.c), WOLFSSL_EARLY_DATA_REJECTED);
  assert_int_equal(metric_delta(PST_MEARLY_REJECTED, rejected), 1);
  assert_int_equal(wolfSSL_write(h.c, "skip me", 7), 7);
  char buf[16];
  assert_int_equal(wolfSSL_read(h.s, buf, sizeof(buf)), 7);
  assert_memory_equal(buf, "skip me", 7);
  hs_free(&h);
  wolfSSL_SESSION_free(next);
  wolfSSL_SESSION_free(sess);
}

static void test_rejected_by_policy(void **state) { rejected_by_policy(&reject_srv, 1); }

static void test_rejected_by_policy_ticket_refused(void **state) {
  rejected_by_policy(&reject_other_srv, 0);
}

/* A listener without TLS 1.3 has no early data to think about. */
static void test_tls12_listener(void **state) {
  WOLFSSL_SESSION *sess = full_handshake();
  hs_t h;
  hs_start_early(&h, &srv, sess, "x");
  lc.versions = PST_TLS12;
  assert_int_equal(
      pst_early_hello(&h.e, h.s, &lc, NULL, pst_buf_head(&h.to_server), h.to_server.len, 0, 1, "p"),
      0);
  assert_int_equal(h.e.status, PST_EARLY_NOT_SENT);
  hs_free(&h);
  wolfSSL_SESSION_free(sess);
}

/* wolfSSL refuses the ticket (sealed under keys this server does not
 * have): a full handshake, the early data skipped, rejected, and the
 * strike register claim given back. */
static void test_ticket_refused(void **state) {
  WOLFSSL_SESSION *sess = full_handshake();
  pst_replay_t *reg = pst_replay_global();
  assert_non_null(reg);
  size_t held = pst_replay_count(reg, pst_ticket_now_ms());
  hs_t h;
  hs_start_early(&h, &other_srv, sess, "refused");
  assert_int_equal(server_step(&h), 1);
  assert_true(h.e.decided);
  assert_int_equal(h.e.status, PST_EARLY_REJECTED);
  assert_false(h.e.claimed);
  assert_int_equal(pst_replay_count(reg, pst_ticket_now_ms()), held);
  WOLFSSL_SESSION *next = hs_run(&h);
  assert_false(wolfSSL_session_reused(h.s));
  assert_int_equal(h.e.status, PST_EARLY_REJECTED);
  assert_int_equal(h.e.data.len, 0);
  hs_free(&h);
  wolfSSL_SESSION_free(next);
  wolfSSL_SESSION_free(sess);
}

/* ---- names and buffers -------------------------------------------------------- */

static void test_status_names(void **state) {
  assert_string_equal(pst_early_status_name(PST_EARLY_NOT_SENT), "not sent");
  assert_string_equal(pst_early_status_name(PST_EARLY_REJECTED), "rejected");
  assert_string_equal(pst_early_status_name(PST_EARLY_REPLAYED), "rejected");
  assert_string_equal(pst_early_status_name(PST_EARLY_ACCEPTED), "accepted");
  assert_string_equal(pst_early_status_name((pst_early_status_t)42), "not sent");
}

static void test_take(void **state) {
  pst_early_t e = {0};
  pst_buf_t out = {0};
  pst_early_take(&e, &out);
  assert_int_equal(out.len, 0);
  assert_int_equal(pst_buf_append(&e.data, "abc", 3), 0);
  pst_early_take(&e, &out);
  assert_int_equal(out.len, 3);
  assert_memory_equal(pst_buf_head(&out), "abc", 3);
  assert_int_equal(e.data.len, 0);
  assert_null(e.data.data);
  pst_early_free(&e); /* nothing left to free */
  pst_buf_free(&out);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, NULL)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_no_early_data),      T(test_incomplete_hello),
      T(test_not_a_hello),        T(test_accept_then_replay),
      T(test_rejected_by_policy), T(test_rejected_by_policy_ticket_refused),
      T(test_tls12_listener),     T(test_ticket_refused),
      T(test_status_names),       T(test_take),
  };
  return cmocka_run_group_tests_name("early", tests, group_setup, group_teardown);
}
