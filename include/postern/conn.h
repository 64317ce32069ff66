/* postern: one client connection: the client socket, the TLS session, the
 * timers, the one output path to the client, the one close path, and the
 * application it hands its bytes to after the handshake (app-t.h). The
 * worker calls the functions below; the application reaches the connection
 * only through pst_host_t. */
#ifndef POSTERN_CONN_H
#define POSTERN_CONN_H

#include <stddef.h>

#include "postern/worker-t.h"

/* Accepts a pending connection from wl and starts its TLS handshake.
 * Returns 0, or a negative error after which nothing was created (the
 * pending socket is accepted and closed so the listener goes on). */
int pst_conn_accept(pst_worker_t *worker, pst_wlistener_t *wl);

/* Closes conn: err 0 for a normal end, or why it ended (0 or a negative
 * errno-style code). reason is only read during the call (it is logged
 * then), so a stack buffer or pst_conn_why's text is fine. The only way a
 * connection ends; safe to call more than once and from any callback. When
 * the handshake is complete and the client side healthy, a close_notify and
 * pending bytes are flushed to the client first (bounded by a short timer).
 * Memory is freed once every handle's close callback has run. */
void pst_conn_close(pst_conn_t *conn, int err, const char *reason);

/* Formats a close reason built at run time into conn's reason buffer
 * (PST_CONN_WHY_LEN bytes, allocated on first use and freed with conn; a
 * later call overwrites it) and returns it, for pst_conn_close. Never NULL:
 * without memory for the buffer, a fixed text saying so. */
const char *pst_conn_why(pst_conn_t *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes out every listed connection's client output: runs from the
 * worker's prepare handle, once per loop turn, after all callbacks of the
 * turn. */
void pst_conn_flush_all(pst_worker_t *worker);

/* The worker drains for shutdown: every open connection's application stops
 * taking new work (h2 GOAWAY, h1 Connection: close) and ends when done. */
void pst_conn_shutdown_all(pst_worker_t *worker);

/* wl is at max_connections and a new client waits: closes the connection
 * of wl that has waited longest on its client (since its accept for a
 * handshake, since the start of an incomplete request head, or since its
 * last traffic), so that clients which hold connections without using
 * them (slowloris) cannot lock new ones out. Connections with a request
 * waiting for its response head are never chosen. The slot is free once the
 * connection is freed (worker->conn_gone). Returns 0 when one was closed,
 * -EBUSY when none may be. */
int pst_conn_evict(pst_wlistener_t *wl);

/* wl is at max_handshakes_in_flight and a new client waits: closes the
 * handshake of wl accepted longest ago when that was at least min_age_ms
 * ago, so that clients which start handshakes and never finish them
 * cannot hold the bound (and lock new clients out) for the whole handshake
 * timeout; young handshakes are the worker's own backlog under a flood and
 * are left to finish. O(1): the oldest is the first of wl's handshakes.
 * Returns 0 when one was closed (the bound counts it no more at once),
 * -EBUSY otherwise. */
int pst_conn_evict_handshake(pst_wlistener_t *wl, uint64_t min_age_ms);

/* Closes every connection of the worker now (shutdown_timeout reached). */
void pst_conn_close_all(pst_worker_t *worker, int err, const char *reason);

#endif
