/* postern: worker threads, each with its own event loop and listeners. */
#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include "postern/worker-t.h"

/* Creates, binds and listens on one SO_REUSEPORT socket for addr.
 * Returns the file descriptor (>= 0) or -errno. */
int pst_listen_socket(const pst_addr_t *addr);

/* Starts worker id on its own thread, serving gen (the worker takes its own
 * reference) on the given listening sockets (one per listener of gen, taken
 * over by the worker). Returns 0 or a negative libuv error; on failure the
 * worker owns nothing and the fds are still the caller's. */
int pst_worker_start(pst_worker_t *worker, unsigned id, pst_gen_t *gen, int *listen_fds);

/* Asks the worker to stop gracefully: close its listeners, let connections
 * finish for up to the generation's shutdown_timeout, then close the rest.
 * Thread-safe and idempotent. */
void pst_worker_stop(pst_worker_t *worker);

/* Waits for the worker's thread to end and frees what it owns. */
void pst_worker_join(pst_worker_t *worker);

/* Called by a connection when it is freed: updates counts, resumes a paused
 * listener, and finishes a drain when it was the last one. */
void pst_worker_conn_gone(pst_worker_t *worker, pst_wlistener_t *wl, pst_conn_t *conn);

#endif
