/* postern: worker thread types. */
#ifndef POSTERN_WORKER_T_H
#define POSTERN_WORKER_T_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "postern/gen-t.h"

typedef struct pst_conn_s pst_conn_t;
typedef struct pst_worker_s pst_worker_t;

/* Size of the per-worker read buffer every socket read lands in. */
#define PST_READ_SLAB (64 * 1024)
/* Largest TLS plaintext record (RFC 8446 5.1). */
#define PST_RECORD_MAX (16 * 1024)

/* One listening socket of one worker (SO_REUSEPORT: each worker has its own). */
typedef struct {
  pst_worker_t *worker;
  size_t index;     /* listener index in the generation */
  uv_tcp_t handle;
  unsigned n_conns; /* open connections accepted here */
  int paused;       /* at max_connections: one accepted socket waits in libuv */
  int open;         /* handle initialised and not yet closed */
} pst_wlistener_t;

typedef enum {
  PST_WORKER_RUNNING = 0,  /* accepting and serving */
  PST_WORKER_DRAINING = 1, /* listeners closed; open connections finishing */
  PST_WORKER_STOPPED = 2,  /* everything closed; the loop is about to end */
} pst_worker_state_t;

struct pst_worker_s {
  unsigned id;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wakeup;        /* the main thread's requests (stop) */
  uv_timer_t drain_timer;   /* shutdown_timeout while draining */
  pst_worker_state_t state;
  atomic_int stop_requested;
  pst_gen_t *gen;           /* the current generation (one reference) */
  pst_wlistener_t *listeners;
  size_t n_listeners;
  int *listen_fds;          /* made and bound by the main thread, one per listener */
  pst_conn_t *conns;        /* open connections, doubly linked */
  unsigned n_conns;
  uint64_t next_conn_id;
  char *slab;               /* PST_READ_SLAB bytes: where reads land */
  char *plain;              /* PST_RECORD_MAX bytes: decrypted records */
  void (*on_exit)(pst_worker_t *worker, void *arg); /* runs on the worker thread at the end */
  void *on_exit_arg;
};

#endif
