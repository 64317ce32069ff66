/* postern: what a connection does after its handshake: tcp mode relays the
 * decrypted stream to a backend; builtin:info answers itself. */
#ifndef POSTERN_RELAY_H
#define POSTERN_RELAY_H

#include "postern/conn-t.h"

/* Unsent bytes on one side above which the other side is no longer read,
 * and below which reading resumes. */
#define PST_HIGH_WATER (256 * 1024)
#define PST_LOW_WATER (64 * 1024)

/* Called once the handshake is complete: picks the backend by SNI (routes)
 * and connects to it, or starts the builtin responder. May close conn. */
void pst_relay_start(pst_conn_t *conn);

/* Early data was accepted while the handshake runs (conn->early, see
 * conn-t.h). In tcp mode with tcp_early_data: forward, starts the backend
 * connect at once (the state stays PST_CONN_HANDSHAKE) and writes the early
 * bytes as soon as it is connected; otherwise they wait for the handshake
 * and pst_relay_from_client hands them on first. May close conn. */
void pst_relay_early(pst_conn_t *conn);

/* Decrypts what the client sent and hands it on, until wolfSSL needs more
 * bytes or the backend has too much unsent. May close conn. */
void pst_relay_from_client(pst_conn_t *conn);

/* The client finished sending (TCP FIN or close_notify): half-close the
 * backend once what is queued for it is written. Idempotent. */
void pst_relay_client_eof(pst_conn_t *conn);

/* A write on stream s completed: resume reading the other side when s has
 * drained below the low-water mark. */
void pst_relay_on_drain(pst_conn_t *conn, uv_stream_t *s);

#endif
