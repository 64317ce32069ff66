/* postern: backend connections, for every application. A lessee (an HTTP
 * exchange, stream.h, or the tcp relay, tcp.h) leases one connection for
 * its use and hears about it through pst_bconn_events_t:
 * - a kept-alive TCP connection from the worker's pool, or a fresh one
 *   (http mode: reusable after a complete exchange, RFC 9112 9.3);
 * - a fresh TCP connection that is never pooled (the tcp relay);
 * - an in-process connection to builtin:info, which answers one request
 *   with an HTTP/1.1 response read back like a real backend's.
 * Connect timeouts, write backpressure and half-close live here once.
 * A connection to a server of a set with tls: (config-t.h) carries TLS
 * (pool_tls.c) and its lessee sees plaintext all the same: on_connect comes
 * once the handshake is done and the certificate verified (a failure of
 * either is on_connect with a negative status, logged with its cause here),
 * on_read delivers decrypted bytes, pst_bconn_write encrypts (bytes written
 * before on_connect, a PROXY header, go in the clear ahead of the
 * ClientHello), pst_bconn_shutdown sends close_notify first. Such
 * connections are pooled apart from plain ones and from other tls settings.
 * A pool set belongs to one worker: no locks. */
#ifndef POSTERN_POOL_H
#define POSTERN_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "postern/app-t.h"
#include "postern/buf.h"
#include "postern/config-t.h"

/* Bytes written to a backend connection and not yet taken by its kernel
 * above which a lessee stops reading what it forwards (its client), and
 * below which on_drain tells it to go on. */
#define PST_BACKEND_HIGH_WATER (256 * 1024)
#define PST_BACKEND_LOW_WATER (64 * 1024)

typedef struct pst_bconn_s pst_bconn_t;
typedef struct pst_pools_s pst_pools_t;

/* What a leased connection reports to its lessee. No event runs from inside
 * a pst_bconn_* or pst_pool_* call. */
typedef struct {
  /* A fresh connection is established (status 0) or failed (negative). */
  void (*on_connect)(void *arg, int status);
  /* Bytes (n > 0), UV_EOF, or a negative read error. */
  void (*on_read)(void *arg, const char *data, ssize_t n);
  /* The write queue went below PST_BACKEND_LOW_WATER after a write that
   * had to wait, or emptied: more bytes may be written. */
  void (*on_drain)(void *arg);
  /* The timer armed with pst_bconn_timer (or the connect timeout) fired. */
  void (*on_timer)(void *arg);
  /* A write failed (the connection is unusable). */
  void (*on_write_error)(void *arg, int status);
  /* Optional: the half-close asked with pst_bconn_shutdown completed
   * (status 0) or failed. */
  void (*on_shutdown)(void *arg, int status);
} pst_bconn_events_t;

/* How a connection is leased. */
typedef enum {
  PST_LEASE_POOLED = 0, /* an idle pooled connection if there is one, else a new one */
  PST_LEASE_FRESH = 1,  /* a new connection, which may go to the pool afterwards */
  PST_LEASE_ONCE = 2,   /* a new connection, closed at release (the tcp relay) */
} pst_lease_t;

/* Creates a worker's pool set on loop. Returns NULL when out of memory. */
pst_pools_t *pst_pools_new(uv_loop_t *loop);

/* Closes every idle connection and makes later releases close instead of
 * pooling: for a worker that is shutting down. Leased connections go on. */
void pst_pools_shutdown(pst_pools_t *pools);

/* Closes the idle connections of every pool whose server address keep
 * refuses (returns 0 for): a reload removed that server. Leased connections
 * finish their exchange and close at release like any other. */
void pst_pools_sweep(pst_pools_t *pools, int (*keep)(const pst_addr_t *addr, void *arg), void *arg);

/* Frees the pool set once pst_pools_shutdown ran and every connection it
 * made has closed (pst_pools_open() == 0). NULL allowed. */
void pst_pools_free(pst_pools_t *pools);

/* Connections (idle, leased and closing) the set has open. */
unsigned pst_pools_open(const pst_pools_t *pools);

/* Leases a connection to backend bc for one use. For an address: an idle
 * pooled one (how == PST_LEASE_POOLED and there is one), which *reused
 * reports and which is ready at once; or a new one, connecting, which
 * reports on_connect (a connect timeout of lc->backend_connect_timeout_ms is
 * armed: on_timer). For builtin:info: an in-process connection, which
 * reports on_connect(0) on the next loop turn and then waits for
 * pst_bconn_info_request. Events go to ev/arg until pst_bconn_release.
 * Returns NULL when out of memory or when the socket cannot even be created;
 * *err says why (negative). */
pst_bconn_t *pst_pool_lease(pst_pools_t *pools, const pst_listener_conf_t *lc,
                            const pst_backend_conf_t *bc, pst_lease_t how,
                            const pst_bconn_events_t *ev, void *arg, int *reused, int *err);

/* pst_pool_lease for a connection that belongs to one client connection:
 * owner (nonzero; the client connection's id, unique within the worker,
 * whose pools these are) tags a new connection, and a pooled one is taken
 * only from those with the same tag. A connection whose first bytes told
 * the server who the client is (a PROXY header, proxy.h) thus never
 * carries another client's requests. owner 0 is pst_pool_lease. */
pst_bconn_t *pst_pool_lease_owned(pst_pools_t *pools, const pst_listener_conf_t *lc,
                                  const pst_backend_conf_t *bc, pst_lease_t how, uint64_t owner,
                                  const pst_bconn_events_t *ev, void *arg, int *reused, int *err);

/* Closes the idle connections tagged with owner (its client connection is
 * closing: nobody else may use them). */
void pst_pools_drop_owner(pst_pools_t *pools, uint64_t owner);

/* Nonzero for an in-process (builtin:info) connection. */
int pst_bconn_is_local(const pst_bconn_t *b);

/* For an in-process connection: the lessee's request. response holds a
 * complete HTTP/1.1 response (pst_info_respond), taken over (emptied); it
 * reaches the lessee through on_read on the next loop turn, followed by
 * UV_EOF. Returns 0 or -ENOMEM. */
int pst_bconn_local_answer(pst_bconn_t *b, pst_buf_t *response);

/* Writes bytes (copied when the socket does not take them at once; while
 * connecting they wait for the connection). Returns 0 or a negative libuv
 * error. Not for in-process connections. */
int pst_bconn_write(pst_bconn_t *b, const char *data, size_t len);

/* Writes host's PROXY header of version (app-t.h: proxy_header) as the
 * first bytes of the new connection b: the one way the tcp relay and HTTP
 * streams tell a server with proxy_protocol who the client is. Returns 0 or
 * a negative error (the caller drops b). */
int pst_bconn_write_proxy(pst_bconn_t *b, pst_host_t *host, pst_proxy_t version);

/* Bytes written but not yet taken by the kernel. */
size_t pst_bconn_queued(const pst_bconn_t *b);

/* Starts or stops reading (response backpressure). Reading starts by itself
 * once a connect completes if it was asked for while connecting. An
 * in-process connection holds its answer back the same way. */
void pst_bconn_read(pst_bconn_t *b, int on);

/* Arms the connection's timer for ms (0 stops it). */
void pst_bconn_timer(pst_bconn_t *b, uint64_t ms);

/* Half-closes the write side once queued bytes are written; on_shutdown
 * reports the outcome. Returns 0 or a negative libuv error. */
int pst_bconn_shutdown(pst_bconn_t *b);

/* Ends the lease: no event reaches the lessee any more. A reusable
 * connection (response complete, keep-alive, nothing unread, leased as
 * POOLED or FRESH) goes back to the pool if it has room; anything else is
 * closed. NULL allowed. */
void pst_bconn_release(pst_bconn_t *b, int reusable);

#endif
