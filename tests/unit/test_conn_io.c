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

#include "conn_test_util.h"

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
