/* postern: backend connections for http mode and the per-worker keep-alive
 * pool they return to. A pool belongs to one worker (no locks) and holds
 * idle connections per backend address, newest first. */
#ifndef POSTERN_POOL_H
#define POSTERN_POOL_H

#include <stddef.h>
#include <sys/types.h>

#include "postern/config-t.h"
#include "postern/worker-t.h"

typedef struct pst_bconn_s pst_bconn_t;

/* What a leased connection reports to its lessee (a stream). */
typedef struct {
  /* A fresh connection is established (status 0) or failed (negative). */
  void (*on_connect)(void *arg, int status);
  /* Bytes (n > 0), UV_EOF, or a negative read error. */
  void (*on_read)(void *arg, const char *data, ssize_t n);
  /* The write queue went below PST_LOW_WATER after being above it, or
   * emptied: more request bytes may be written. */
  void (*on_drain)(void *arg);
  /* The timer armed with pst_bconn_timer fired. */
  void (*on_timer)(void *arg);
  /* A write failed (the connection is unusable). */
  void (*on_write_error)(void *arg, int status);
} pst_bconn_events_t;

/* Leases a connection to addr for one exchange: an idle pooled one (unless
 * fresh is set), which *reused reports and which is ready at once; or a new
 * one, connecting, which reports on_connect (a connect timeout of
 * lc->backend_connect_timeout_ms is armed: on_timer). Events go to ev/arg
 * until pst_bconn_release. Returns NULL when out of memory or when the
 * socket cannot even be created (*err says why). */
pst_bconn_t *pst_pool_lease(pst_worker_t *worker, const pst_listener_conf_t *lc,
                            const pst_addr_t *addr, int fresh, const pst_bconn_events_t *ev,
                            void *arg, int *reused, int *err);

/* Writes bytes (copied when the socket does not take them at once).
 * Returns 0 or a negative libuv error. */
int pst_bconn_write(pst_bconn_t *b, const char *data, size_t len);

/* Bytes written but not yet taken by the kernel. */
size_t pst_bconn_queued(const pst_bconn_t *b);

/* Starts or stops reading (response backpressure). */
void pst_bconn_read(pst_bconn_t *b, int on);

/* Arms the connection's timer for ms (0 stops it). */
void pst_bconn_timer(pst_bconn_t *b, uint64_t ms);

/* Half-closes the write side once queued bytes are written (a tunnel whose
 * client finished). */
void pst_bconn_shutdown(pst_bconn_t *b);

/* Ends the lease: no event reaches the lessee any more. A reusable
 * connection (response complete, keep-alive, nothing unread) goes back to
 * the pool if it has room; anything else is closed. */
void pst_bconn_release(pst_bconn_t *b, int reusable);

/* Closes every idle connection of the worker and makes later releases close
 * instead of pooling: for a worker that is shutting down. */
void pst_pool_shutdown(pst_worker_t *worker);

/* Number of connections (idle and leased) the worker has open, for tests
 * and logs. */
unsigned pst_pool_open_count(const pst_worker_t *worker);

#endif
