/* postern: choosing a server of a backend set (config-t.h,
 * pst_backend_set_conf_t) for each lease, and the process-wide registry of
 * servers that holds what every worker knows of their health.
 *
 * Each worker balances on its own: smooth weighted round robin and least
 * connections keep per-thread state in the set's runtime, touched only by
 * that thread, so the request path takes no lock. Health is shared: each
 * server's entry in the registry (keyed by backend name + server address,
 * so that a reload keeps the state of unchanged servers) holds relaxed
 * atomics written by the health checker (health.h) and by any worker that
 * sees live failures (passive ejection).
 *
 * A lease picks a server: pst_balance_pick() returns the per-server backend
 * (an address the pool leases and keys its idle connections by) and fills a
 * pst_pick_t that the lessee keeps; pst_balance_connected(),
 * pst_balance_response() and pst_balance_done() report back; a failure is
 * retried on another server with pst_balance_next(). */
#ifndef POSTERN_BALANCE_H
#define POSTERN_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "postern/buf.h"
#include "postern/config-t.h"

/* Servers one request may try: the first and up to retries (at most 10)
 * others. */
#define PST_BALANCE_MAX_TRIES 11

typedef struct pst_bset_s pst_bset_t;
typedef struct pst_srv_s pst_srv_t;

/* One lessee's choice. Zero it (or let pst_balance_pick fill it) before
 * the first pick; it holds no memory. */
typedef struct {
  pst_bset_t *set;   /* NULL: no set to balance (builtin:info, a hand-made backend) */
  int idx;           /* the server leased now, or -1 */
  unsigned attempts; /* servers leased so far for this request */
  uint64_t start_ms; /* when the first was picked (the connect budget) */
  int tried[PST_BALANCE_MAX_TRIES];
  unsigned n_tried;
  unsigned active : 1; /* idx counts in the worker's connections in use */
  unsigned key_set : 1;
  uint64_t key; /* client_ip: the client address's hash */
} pst_pick_t;

/* Why a server is reported failed (for the log line of an ejection). */
typedef enum {
  PST_FAIL_CONNECT = 0, /* a connect failed, was refused or timed out */
  PST_FAIL_5XX = 1,     /* a response with a 5xx status */
} pst_fail_t;

/* Builds the runtime of every set of cfg (its servers' registry entries,
 * the consistent-hash ring) and hangs it on each set's rt. Called once per
 * generation, before any worker sees cfg, off the event loops. Returns 0 or
 * -ENOMEM (then every rt is NULL again). */
int pst_balance_attach(pst_config_t *cfg);

/* Frees what pst_balance_attach built, once no worker uses cfg: registry
 * entries no other generation holds stop being checked (their state is kept
 * for a later generation that names them again). NULL allowed. */
void pst_balance_detach(pst_config_t *cfg);

/* Picks a server for a new request or connection to bc, whose client is
 * client_ip (the text of its address; used by client_ip balancing; NULL
 * allowed). Servers up come first; when none is up every server is tried
 * anyway (a stale check never fails closed). Returns the backend to lease:
 * one server's (a pointer into the set's runtime, valid as long as the
 * generation), or bc itself when bc has no balanced set (pick->set NULL).
 * Never NULL. */
const pst_backend_conf_t *pst_balance_pick(const pst_backend_conf_t *bc, const char *client_ip,
                                           pst_pick_t *pick);

/* Picks another server after a failure of the current one (which is done
 * with: pst_balance_done is implied), within the set's retries and
 * budget_ms since the first pick. avoid_current: do not pick the same
 * server again (its connect failed); 0 for a stale pooled connection,
 * which says nothing about the server. Returns the backend to lease, or
 * NULL when no retry is left (budget, retries, or every server tried). */
const pst_backend_conf_t *pst_balance_next(pst_pick_t *pick, int avoid_current, uint64_t budget_ms);

/* Starts a connection to bc with lease(arg, bc, retry): 0 when under way,
 * else a negative error, and then the lessee holds no connection. retry says whether bc is a retry
 * (it then counts in postern_backend_retries_total, and the lessee takes a fresh connection). */
typedef int (*pst_balance_lease_fn)(void *arg, const pst_backend_conf_t *bc, int retry);

/* The one lease loop of every application: leases bc through lease and,
 * while a lease fails at once (a connect refused before it started: no
 * route, no memory for a socket), reports the failure to the balancer
 * (passive ejection) and leases the next server of the set, within its
 * retries and budget_ms (pst_balance_next). -ENOMEM ends the loop: another
 * server would not help. retry: whether bc itself is a retry. Returns 0
 * when a lease is under way, else the last lease's error. */
int pst_balance_lease(pst_pick_t *pick, const pst_backend_conf_t *bc, int retry, uint64_t budget_ms,
                      pst_balance_lease_fn lease, void *arg);

/* The connect timeout of the connection just leased to the current server:
 * what is left of budget_ms (timeouts.backend_connect, counted from the
 * first pick) shared among the attempts still possible, so that a server
 * that does not answer (a black hole) leaves time to try another. A set of
 * one server, or a lease without a set, gets the whole budget. */
uint64_t pst_balance_connect_ms(const pst_pick_t *pick, uint64_t budget_ms);

/* The current server's connect completed (status 0) or failed (negative):
 * consecutive failures seen by any worker eject it for passive.cooldown. */
void pst_balance_connected(pst_pick_t *pick, int status);

/* The current server answered with HTTP status code status: a 5xx counts
 * as a failure (passive ejection), anything else ends a run of failures. */
void pst_balance_response(pst_pick_t *pick, int status);

/* The lease of the current server ended (least connections counts it no
 * longer). Idempotent. */
void pst_balance_done(pst_pick_t *pick);

/* Whether the current server's connection may go back to the pool: 0 when
 * the newest generation no longer names the server (a reload removed it:
 * its connections close once their exchange is done). 1 without a set. */
int pst_balance_keep(const pst_pick_t *pick);

/* The text of the current server's address ("10.0.0.11:8080"), or "" when
 * the pick has none. For log lines. */
const char *pst_balance_server(const pst_pick_t *pick);

/* Whether addr is a server of a set of cfg (a pst_config_t *): for
 * pst_pools_sweep, which closes idle connections to servers a reload
 * removed. */
int pst_balance_addr_used(const pst_addr_t *addr, void *cfg);

/* ---- the registry, for the health checker and the metrics ---- */

/* What the health checker needs of one server, copied under the registry's
 * lock. */
typedef struct {
  pst_srv_t *srv;
  char backend[80];
  char server[128];
  pst_addr_t addr;
  pst_check_t check;
  char path[1028];
  uint64_t interval_ms, timeout_ms;
  unsigned rise, fall;
  pst_proxy_t proxy_protocol; /* the set's: a check starts with a PROXY header too */
  /* An http check of a set with tls: speaks TLS: the set's context (the
   * registry holds a reference; a checker that keeps it past the callback
   * takes its own with wolfSSL_CTX_up_ref), the name checked, verify. */
  struct WOLFSSL_CTX *tls_ctx;
  char tls_name[256];
  int tls_verify;
} pst_srv_check_t;

/* Calls fn for every registry entry in use by a generation, under the
 * registry's lock (fn must not call back into this module). */
void pst_balance_each(void (*fn)(const pst_srv_check_t *c, void *arg), void *arg);

/* The health checker's verdict on srv: up (1) or down (0). Logs the change
 * with cause and counts it when it is one; ignored when the newest
 * generation no longer checks srv (it is up then). */
void pst_balance_set_up(pst_srv_t *srv, int up, const char *backend, const char *server,
                        const char *cause);

/* Appends the gauges postern_backend_server_up{backend,server} (1 when up
 * and not ejected) and the counters
 * postern_backend_server_state_changes_total{backend,server} of every
 * server in use, in the Prometheus text format 0.0.4. Returns 0 or -ENOMEM
 * (out may hold part of the text). */
int pst_health_render(pst_buf_t *out);

/* Whether a server of a set is usable now: up and not ejected (tests and
 * builtin:info). */
int pst_balance_usable(const pst_backend_set_conf_t *set, size_t i);

#endif
