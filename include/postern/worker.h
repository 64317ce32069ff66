/* postern: worker threads, each with its own event loop and listeners. */
#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include "postern/worker-t.h"

/* Creates, binds and listens on one SO_REUSEPORT socket for addr.
 * Returns the file descriptor (>= 0) or -errno. */
int pst_listen_socket(const pst_addr_t *addr);

/* Checks that no socket listens on addr yet, by binding (not listening) a
 * socket without SO_REUSEPORT there and closing it. SO_REUSEPORT lets any
 * process of the same user join a port and take a share of its
 * connections; a second postern started by mistake on a running one's
 * address must fail instead, so every listening address is probed before
 * postern binds its own sockets (at start, and for a reload's new
 * listeners). Between the probe and the bind two posterns starting at the
 * same instant could still both pass: the probe catches the running owner,
 * which is the mistake seen in practice. Returns 0 (free, or port 0),
 * -EADDRINUSE when something listens there, or another -errno. */
int pst_listen_probe(const pst_addr_t *addr);

/* Starts worker id on its own thread, serving gen (the worker takes its own
 * reference) on the given listening sockets (one per listener of gen).
 * The sockets are taken over in every case: closed on failure, and each
 * entry of listen_fds is set to -1. Returns 0, -ENOMEM or a negative libuv
 * error; on failure the worker owns nothing. */
int pst_worker_start(pst_worker_t *worker, unsigned id, pst_gen_t *gen, int *listen_fds);

/* Prepares, on the main thread, the switch of one worker to gen (a reload).
 * keep[i], for each listener i of gen, is the index of the worker's current
 * listener with the same address, whose socket and handle are kept, or -1
 * for a new listener whose bound, listening socket is fds[i] (fds[i] is not
 * read where keep[i] >= 0). Takes a reference on gen.
 * Returns the switch, which owns the fds of new listeners, or NULL when out
 * of memory (then nothing is taken: the fds are still the caller's). */
pst_worker_switch_t *pst_worker_switch_new(pst_gen_t *gen, const long *keep, const int *fds);

/* Frees a switch that was not handed to a worker: closes its sockets and
 * drops its reference. NULL is allowed. */
void pst_worker_switch_free(pst_worker_switch_t *sw);

/* Hands sw (taken over) to a running worker. The worker applies it on its own
 * thread (new connections get sw->gen; kept listeners never stop accepting;
 * removed ones stop, their connections drain), or drops it if it is already
 * draining, and then calls done(arg) on its thread. One switch at a time per
 * worker: wait for done before the next. Main thread only, while the worker
 * runs (before pst_worker_stop). */
void pst_worker_switch(pst_worker_t *worker, pst_worker_switch_t *sw, void (*done)(void *arg),
                       void *arg);

/* Asks the worker to stop gracefully: close its listeners, let connections
 * finish for up to the generation's shutdown_timeout, then close the rest.
 * Thread-safe and idempotent. */
void pst_worker_stop(pst_worker_t *worker);

/* The worker's open connections, as last counted on its thread (a relaxed
 * read: good for a status line, not for decisions). Thread-safe. */
unsigned pst_worker_open_conns(const pst_worker_t *worker);

/* Waits for the worker's thread to end and frees what it owns. */
void pst_worker_join(pst_worker_t *worker);

#endif
