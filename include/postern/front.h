/* postern: HTTP front ends (http mode). After the TLS handshake, a
 * connection in http mode hands the decrypted bytes to a front end: HTTP/2
 * (nghttp2) when ALPN chose h2, HTTP/1.1 (llhttp) otherwise. The front end
 * turns requests into streams (stream.h) and writes responses back through
 * the connection services below. */
#ifndef POSTERN_FRONT_H
#define POSTERN_FRONT_H

#include <stddef.h>

#include "postern/conn-t.h"
#include "postern/info.h"

typedef struct pst_front_s pst_front_t;

typedef struct {
  /* Decrypted bytes from the client. Returns 0, or a negative error after
   * which the connection closes (the front end has logged why, or passed a
   * reason to pst_conn_close itself: then the state is CLOSING). */
  int (*feed)(pst_front_t *f, const char *data, size_t len);
  /* The client has finished sending (close_notify or TCP FIN). */
  void (*client_eof)(pst_front_t *f);
  /* The client socket drained below the low-water mark: produce more output
   * (h2: nghttp2_session_mem_send; resume paused streams). */
  void (*client_drain)(pst_front_t *f);
  /* The worker is draining for shutdown: take no new requests (h2: GOAWAY,
   * RFC 9113 6.8; h1: Connection: close on the current response), let the
   * in-flight ones finish, then end the connection with pst_conn_end. */
  void (*shutdown)(pst_front_t *f);
  /* The connection is closing: abort every stream (pst_stream_free) and free
   * the front end. No connection service may be called from here. */
  void (*destroy)(pst_front_t *f);
  /* Optional (NULL: not needed). A front end created during the handshake
   * to take 0-RTT early data (RFC 8470) learns that the handshake is now
   * complete: requests it held back may go to the backend. */
  void (*handshake_done)(pst_front_t *f);
} pst_front_ops_t;

struct pst_front_s {
  const pst_front_ops_t *ops;
  pst_conn_t *conn;
};

/* Creates the front end for a connection whose handshake negotiated h2
 * (RFC 9113 3.2) / anything else. Returns NULL when out of memory. The h2
 * front end sends its SETTINGS at once. */
pst_front_t *pst_h2_front_new(pst_conn_t *conn);
pst_front_t *pst_h1_front_new(pst_conn_t *conn);

/* ---- connection services for front ends (implemented in relay.c) ---- */

/* Queues len bytes to the client: they are copied, and encrypted and
 * written once per loop turn together with everything else due to the
 * client (pst_conn_flush_all), so that many small pieces make few TLS
 * records and one write(2). During the handshake (a response to an
 * early-data request) they go out as 0.5-RTT data or wait until it
 * completes (relay.c). Returns 0, PST_ESHUTDOWN when the connection is
 * closing or its client side already shut (nothing sent, nothing changed),
 * or another negative error after which the connection is already closing.
 * Write errors found later close the connection then. */
int pst_conn_send(pst_conn_t *conn, const char *data, size_t len);

/* Bytes queued to the client and not yet written by the kernel: a front end
 * stops producing output above PST_HIGH_WATER and waits for client_drain. */
size_t pst_conn_client_queued(const pst_conn_t *conn);

/* Stops (pause != 0) or resumes reading the client: backpressure while a
 * request body cannot be forwarded. */
void pst_conn_client_pause(pst_conn_t *conn, int pause);

/* Ends the connection gracefully once everything queued is written:
 * close_notify, then close (RFC 8446 6.1). */
void pst_conn_end(pst_conn_t *conn);

/* The client's IP address as text, without port or brackets ("127.0.0.1",
 * "::1"), for X-Forwarded-For and Forwarded. */
const char *pst_conn_client_ip(const pst_conn_t *conn);

/* The backend the connection's routes chose (SNI), or the listener's. */
const pst_backend_conf_t *pst_conn_backend(const pst_conn_t *conn);

/* Fills the builtin:info facts about conn's handshake. Pointers stay valid
 * while conn lives. */
void pst_conn_info_facts(pst_conn_t *conn, pst_info_facts_t *f);

#endif
