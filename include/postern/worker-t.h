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

/* One listening socket of one worker (SO_REUSEPORT: each worker has its own).
 * Allocated on its own, because a listener that a reload keeps moves to
 * another index, and one that a reload removes must outlive its open
 * connections (each points at it). Freed on the worker thread once it is out
 * of the worker's list, its handle's close callback has run, and its last
 * connection is gone. */
typedef struct {
  pst_worker_t *worker;
  size_t index; /* listener index in worker->gen, while in worker->listeners */
  uv_tcp_t handle;
  int fd;           /* the bound socket until the worker opens the handle on it, then -1 */
  unsigned n_conns; /* open connections accepted here */
  int paused;       /* at max_connections: one accepted socket waits in libuv */
  int open;         /* handle initialised and not yet closed */
  int closing;      /* uv_close called, close callback not run yet */
  int listed;       /* in worker->listeners */
  /* The connections accepted here that may be closed to make room for a
   * new client at max_connections, the one that has waited longest on its
   * client first (conn.c: pst_conn_evict). */
  pst_conn_t *evict_first, *evict_last;
  uint64_t full_warned_ms; /* loop time of the last "at max_connections" warning */
  /* Overload (worker.c: wl_take). Connections accepted here whose
   * handshake (PROXY header included) has not finished: counted up at
   * accept and down when the connection leaves the handshake, to open or to
   * close (conn.c: pst_conn_set_state). */
  unsigned n_handshakes;
  pst_conn_t *hs_first, *hs_last; /* those handshakes, oldest first (conn_evict.c) */
  int held; /* the turn's accept batch was full, or no reset budget left: one socket waits in libuv
             */
  unsigned backlog;     /* the listen(2) backlog the socket has now */
  unsigned shed_budget; /* resets it may send now (worker.c: wl_shed) */
  /* Set by the worker while it sheds (connections may have waited in the
   * listen queue until their client gave up): pst_conn_accept then checks
   * whether the client is still there before any TLS work. */
  int check_gone;
  uint64_t shed_warned_ms; /* loop time of the last "shedding" warning */
  uint64_t shed_since;     /* connections shed since that warning */
} pst_wlistener_t;

/* A new generation for one worker, prepared by the reload on the main
 * thread (pst_worker_switch_new) and applied on the worker's thread. */
typedef struct {
  pst_gen_t *gen;     /* one reference, handed to the worker */
  size_t n_listeners; /* gen->cfg->n_listeners */
  /* For each listener of gen: the index of the worker's listener it keeps
   * (same address: same socket, no window of refused connections), or -1
   * for a new one, whose structure list[i] holds with its bound socket. */
  long *keep;
  /* Becomes the worker's listener list: new listeners made by
   * pst_worker_switch_new, NULL where keep[i] >= 0 until the worker fills
   * in its own. */
  pst_wlistener_t **list;
  void (*done)(void *arg); /* runs on the worker thread once applied or dropped */
  void *done_arg;
} pst_worker_switch_t;

typedef enum {
  PST_WORKER_RUNNING = 0,  /* accepting and serving */
  PST_WORKER_DRAINING = 1, /* listeners closed; open connections finishing */
  PST_WORKER_STOPPED = 2,  /* everything closed; the loop is about to end */
} pst_worker_state_t;

struct pst_worker_s {
  unsigned id;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wakeup;      /* the main thread's requests (stop, switch) */
  uv_timer_t drain_timer; /* shutdown_timeout while draining */
  uv_timer_t trim_timer;  /* gives memory back once the worker has been quiet a while */
  uv_timer_t held_timer;  /* wakes the loop while a listener holds a connection back (worker.c) */
  unsigned peak_conns;    /* most connections at once since memory was last given back */
  pst_worker_state_t state;
  atomic_int stop_requested;
  _Atomic(pst_worker_switch_t *) pending_switch; /* posted by the reload, taken on wakeup */
  pst_gen_t *gen;                                /* the current generation (one reference) */
  pst_wlistener_t **listeners;                   /* one per listener of gen, in its order */
  size_t n_listeners;
  pst_conn_t *conns; /* open connections, doubly linked */
  unsigned n_conns;
  atomic_uint open_conns; /* n_conns, mirrored for the main thread (pst_worker_open_conns) */
  uint64_t next_conn_id;
  struct pst_pools_s *pools;           /* backend connections, kept-alive ones pooled (pool.h) */
  struct pst_access_log_s *access_log; /* the access log writer (access_log.h) */
  /* The shared 0-RTT strike register's client (replay_redis.h): follows
   * the live generation's early_data_replay. */
  struct pst_replay_redis_s *replay_redis;
  /* Called by a connection when it is freed (conn.c calls no worker
   * function: the worker is above it): updates counts, resumes a paused
   * listener, and finishes a drain when it was the last one. */
  void (*conn_gone)(pst_worker_t *worker, pst_wlistener_t *wl);
  pst_conn_t *flush_list;     /* connections with client output due this loop turn (conn.c) */
  uv_prepare_t flush_prepare; /* writes it out before the loop polls again */
  unsigned turn_accepted;     /* connections taken this loop turn, all listeners (worker.c) */
  char *slab;                 /* PST_READ_SLAB bytes: where reads land */
  char *plain;                /* PST_RECORD_MAX bytes: decrypted records */
  void (*on_exit)(pst_worker_t *worker, void *arg); /* runs on the worker thread at the end */
  void *on_exit_arg;
};

#endif
