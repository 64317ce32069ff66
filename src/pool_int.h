/* postern: the pool module's inside, shared by pool.c (connections, the
 * keep-alive pool) and pool_tls.c (the TLS layer of a backend set with
 * tls:). Not a header for other modules. */
#ifndef POSTERN_POOL_INT_H
#define POSTERN_POOL_INT_H

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "postern/pool.h"

typedef struct pst_btls_s pst_btls_t;

typedef enum {
  BCONN_CONNECTING = 0, /* connect in flight (in-process: the first turn), leased */
  BCONN_LEASED = 1,     /* connected, serving its lessee */
  BCONN_IDLE = 2,       /* connected, in the pool, reading to notice a close */
  BCONN_CLOSING = 3,    /* uv_close called on its handles */
} bconn_state_t;

/* The demand on one pool (pool_size.c): its connections in use, and the
 * highest that count reached in the current window and in the one before
 * (a window is backend_pool.idle long). */
typedef struct {
  unsigned busy;            /* connecting or leased (not PST_LEASE_ONCE) */
  unsigned peak[2];         /* [0]: the current window's peak of busy, [1]: the previous one's */
  uint64_t window_start_ms; /* uv_now() when the current window began */
} pool_demand_t;

/* What pst_pool_keep decided for a released connection. */
typedef enum {
  POOL_KEEP = 0,          /* it goes to the idle list */
  POOL_FULL_MAX_IDLE = 1, /* backend_pool.max_idle reached */
  POOL_FULL_PEAK = 2,     /* as many idle as the recent peak in use */
  POOL_FULL_MEMORY = 3,   /* the worker's idle connections reached max_idle_mib */
} pool_keep_t;

/* Idle connections to one backend address, newest first: the one most
 * likely still alive. */
typedef struct pool_s {
  struct pool_s *next;
  pst_addr_t addr;
  char *tls_key; /* the tls: settings its connections were made under (pool_tls.c), or NULL */
  pst_bconn_t *idle;
  unsigned n_idle;
  unsigned n_idle_owned; /* of n_idle, those of one client connection (owner) */
  pool_demand_t demand;  /* of the shared connections (owner 0) */
  /* The last session of this server (TLS 1.3 ticket or 1.2 session), for
   * the next connection to resume (RFC 8446 2.2): one per server per worker,
   * so no lock. NULL: none yet, or a set without tls. */
  WOLFSSL_SESSION *session;
} pool_t;

struct pst_pools_s {
  uv_loop_t *loop;
  pool_t *list;
  unsigned open;     /* connections not yet freed */
  size_t idle_bytes; /* estimated cost of every pool's idle connections (pst_pool_idle_cost) */
  int closed;        /* pst_pools_shutdown ran: releases close */
};

/* One backend connection. Every tcp relay connection holds one for its
 * whole life (bench: RSS per idle TLS connection), so what only some
 * connections need is allocated when needed: the timer (a once-only lease
 * drops it once connected), the in-process answer; and the connect and
 * shutdown requests share their memory (a shutdown asked while connecting
 * waits for the connect). */
struct pst_bconn_s {
  pst_pools_t *pools;
  pool_t *pool; /* NULL for in-process connections */
  const pst_bconn_events_t *ev;
  void *arg;
  pst_bconn_t *next, *prev; /* the pool's idle list */
  uv_timer_t *timer;        /* made when first armed (data: this), or NULL */
  pst_buf_t *answer;        /* in-process: the response still to deliver, or NULL */
  pst_btls_t *tls;          /* a set with tls: its TLS layer (pool_tls.c), or NULL */
  uint64_t idle_ms;
  uint64_t owner; /* pst_pool_lease_owned: the one client connection it serves, or 0 */
  unsigned max_idle;
  unsigned max_idle_mib; /* the lessee's backend_pool.max_idle_mib (0: no bound) */
  bconn_state_t state;
  pst_lease_t how;
  unsigned metrics_slot; /* the lessee's listener (metrics.h) */
  unsigned
      handles : 2; /* handles whose close callback has not run (closing): tcp, timer, tls kick */
  unsigned reading : 1;      /* uv_read_start is in effect */
  unsigned want_read : 1;    /* the lessee asked to read */
  unsigned local : 1;        /* in-process (builtin:info) */
  unsigned shut_pending : 1; /* a shutdown waits for the connect */
  union {
    uv_connect_t connect;
    uv_shutdown_t shutdown;
  } req;
  uv_tcp_t tcp; /* not initialised for in-process connections */
};

/* ---- pool_size.c: how many idle connections a pool keeps ---- */

/* Moves d's windows on to now_ms (window_ms long, 0 taken as 1) and
 * records d->busy in the current window's peak. Call it whenever busy
 * changes or a decision is due. */
void pst_pool_demand_note(pool_demand_t *d, uint64_t now_ms, uint64_t window_ms);

/* A lease passed over held idle connections (FRESH): records busy + held
 * in the current window's peak, after pst_pool_demand_note. */
void pst_pool_demand_held(pool_demand_t *d, unsigned held);

/* The idle connections d's pool may keep: the higher of the two windows'
 * peaks of connections in use. */
unsigned pst_pool_demand_target(const pool_demand_t *d);

/* Estimated memory (user and kernel bytes) of one idle connection, with
 * a TLS session when tls is nonzero: what max_idle_mib counts. */
size_t pst_pool_idle_cost(int tls);

/* Whether a released connection (cost bytes) joins a pool holding n_idle
 * idle connections, while the worker's pools hold idle_bytes: below
 * max_idle, below the demand's target, and within budget bytes. Returns
 * POOL_KEEP or the bound that refused it. */
pool_keep_t pst_pool_keep(const pool_demand_t *d, unsigned n_idle, unsigned max_idle,
                          size_t idle_bytes, size_t cost, size_t budget);

/* ---- pool.c, for pool_tls.c ---- */

/* A connection's connect is over: with status 0 it becomes LEASED (the
 * connect timer stops) and the lessee hears on_connect; a negative status
 * is a connect failure (counted). For a set with tls: called when the
 * handshake ends, not when TCP connects. */
void pst_pool_connected(pst_bconn_t *b, int status);

/* Writes bytes to b's socket as they are (ciphertext, or a PROXY header).
 * Returns 0 or a negative libuv error. */
int pst_pool_write_raw(pst_bconn_t *b, const char *data, size_t len);

/* Starts reading b's socket. Returns 0 or a negative libuv error. */
int pst_pool_start_read(pst_bconn_t *b);

/* Closes b (any state but CLOSING): its handles, then its memory. */
void pst_pool_close(pst_bconn_t *b);

/* ---- pool_tls.c ---- */

/* Room for a pool key: verify, server name and the CA file's path. */
#define PST_POOL_TLS_KEY_MAX 4400

/* The key of the pool a connection to a server of set goes to: the tls:
 * settings written as text in buf (NULL for a set without tls), so that
 * connections made under other settings are never shared. */
const char *pst_pool_tls_key(const pst_backend_set_conf_t *set, char *buf, size_t len);

/* Gives b, leased to server bc of a set with tls, its TLS layer: a WOLFSSL
 * of the set's context (which it keeps alive), with SNI, the name checked,
 * ALPN http/1.1 unless once (the tcp relay), and pool's session to resume.
 * Returns 0 or -ENOMEM/PST_ETLS. */
int pst_pool_tls_new(pst_bconn_t *b, const pst_backend_conf_t *bc, int once);

/* TCP is connected: starts reading and sends the ClientHello. Returns 0
 * (the handshake goes on; pst_pool_connected ends it) or a negative error. */
int pst_pool_tls_start(pst_bconn_t *b);

/* What the socket read (n > 0 bytes, or UV_EOF / an error), in any state
 * but CLOSING: the handshake, records for the lessee, or an idle
 * connection's news (a ticket keeps it; anything else closes it). */
void pst_pool_tls_on_read(pst_bconn_t *b, const char *data, ssize_t n);

/* Encrypts and writes the lessee's bytes. Returns 0 or a negative error. */
int pst_pool_tls_write(pst_bconn_t *b, const char *data, size_t len);

/* Sends close_notify (RFC 8446 6.1) before the TCP half-close. */
void pst_pool_tls_shutdown(pst_bconn_t *b);

/* The lessee reads again: records held back are delivered on the next
 * loop turn. */
void pst_pool_tls_resume(pst_bconn_t *b);

/* Nonzero when b may go back to the pool (handshake done, nothing held,
 * no close_notify either way). */
int pst_pool_tls_reusable(const pst_bconn_t *b);

/* b is closing: keeps its session for the next connection, sends
 * close_notify when the connection is healthy, closes the layer's handle
 * (returns how many handles it closed: their callback is pool.c's). */
unsigned pst_pool_tls_close(pst_bconn_t *b, uv_close_cb cb);

/* Nonzero when h is the TLS layer's own handle (not to be freed). */
int pst_pool_tls_owns(const pst_bconn_t *b, const uv_handle_t *h);

/* Frees b's TLS layer (its WOLFSSL drops the context's reference). */
void pst_pool_tls_free(pst_bconn_t *b);

/* Keeps the session of b's handshake in its pool for the next one. */
void pst_pool_tls_keep_session(pst_bconn_t *b);

#endif
