/* postern: one proxied connection: the TLS client side, the backend side,
 * and the one path that closes both. */
#ifndef POSTERN_CONN_H
#define POSTERN_CONN_H

#include "postern/worker-t.h"

/* Accepts a pending connection from wl and starts its TLS handshake.
 * Returns 0, or a negative error after which nothing was created (the
 * pending socket is accepted and closed so the listener goes on). */
int pst_conn_accept(pst_worker_t *worker, pst_wlistener_t *wl);

/* Closes conn: err 0 for a normal end, or why it ended. The only way a
 * connection ends; safe to call more than once and from any callback. When
 * the handshake is complete and the client side healthy, a close_notify and
 * pending bytes are flushed to the client first (bounded by a short timer).
 * Memory is freed once every handle's close callback has run. */
void pst_conn_close(pst_conn_t *conn, int err, const char *reason);

/* Like pst_conn_close, for a failure of the client socket itself: nothing
 * is flushed to it. */
void pst_conn_client_failed(pst_conn_t *conn, int err, const char *reason);

/* Formats a close reason built at run time into conn's reason buffer
 * (PST_CONN_WHY_LEN bytes, allocated on first use and freed with conn; a
 * later call overwrites it) and returns it, for pst_conn_close. Never NULL:
 * without memory for the buffer, a fixed text saying so. */
const char *pst_conn_why(pst_conn_t *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The functions below are shared by conn.c and relay.c only. */
#include "postern/conn-t.h"

/* Writes len bytes to s: at once when the socket takes them, else copied
 * into a write request. Returns 0 or a negative libuv error. */
int pst_conn_write(pst_conn_t *conn, uv_stream_t *s, const char *data, size_t len);

/* Hands the ciphertext wolfSSL produced to the client socket now (and ends
 * a cork: see conn-t.h). Returns 0 or a negative libuv error (the caller
 * closes). */
int pst_conn_flush_client(pst_conn_t *conn);

/* Ends the client's side: close_notify (RFC 8446 6.1) after what is
 * queued, then a TCP shutdown whose completion runs cb. Sets client.shut.
 * Returns 0 or a negative libuv error (cb will not run; the caller closes). */
int pst_conn_shut_client(pst_conn_t *conn, uv_shutdown_cb cb);

/* Encrypts the plaintext pst_conn_send queued (pout) into cout, where the
 * next flush finds it. Returns 0, or PST_ETLS after which the connection is
 * closing. */
int pst_conn_encrypt_pending(pst_conn_t *conn);

/* Puts conn on its worker's list of connections with client output due:
 * pst_conn_flush_all writes it before the loop polls again. */
void pst_conn_want_flush(pst_conn_t *conn);

/* Writes out every listed connection's output: runs from the worker's
 * prepare handle, once per loop turn, after all callbacks of the turn. */
void pst_conn_flush_all(pst_worker_t *worker);

/* Starts (on != 0) or stops reading the client. Returns 0 or a libuv error. */
int pst_conn_read_client(pst_conn_t *conn, int on);

/* Runs the handshake and relays what the client sent, then keeps leftover
 * ciphertext and flushes output. May close the connection. */
void pst_conn_pump(pst_conn_t *conn);

/* Continues wolfSSL_accept; on completion records SNI and handshake time and
 * calls pst_relay_start. May close the connection. */
void pst_conn_handshake(pst_conn_t *conn);

/* Records the protocol ALPN selected (known once the ClientHello has been
 * processed) in conn->alpn. */
void pst_conn_record_alpn(pst_conn_t *conn);

/* Changes state, asserting the move is legal, and arms the state's timer. */
void pst_conn_set_state(pst_conn_t *conn, pst_conn_state_t state);

/* Closes every handle now (the last close callback frees conn). */
void pst_conn_close_handles(pst_conn_t *conn);

/* libuv callbacks shared with relay.c. */
void pst_conn_on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

#endif
