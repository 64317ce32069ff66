/* postern: the shared 0-RTT strike register in Redis (early_data_replay:
 * store: redis; RFC 8446 8: servers that share ticket keys must share
 * anti-replay state, or they have none against a replay to another one).
 *
 * One client per worker, on the worker's loop (hiredis' libuv adapter), one
 * connection to Redis, pipelined. A ClientHello that passed the local
 * register (replay.h) claims its key with one atomic command,
 *   SET <key_prefix><32 hex digits> 1 NX PX <PST_REPLAY_REDIS_WINDOW_MS>,
 * and its early data is accepted only on "OK"; a nil answer means another
 * instance (or this one) claimed it first: a replay.
 *
 * Fail closed: an error reply, no answer within the timeout, no connection,
 * or max_in_flight commands already waiting each mean "unavailable", and
 * early data is rejected (never accepted unchecked); the handshake itself
 * goes on at 1-RTT. Each is counted (metrics.h) and warned about at most
 * once per 10 s per worker, with the count.
 *
 * Commands answered in order: Redis answers a connection's commands in the
 * order they were sent, so the pending claims are a FIFO ring of
 * max_in_flight records; a claim whose timeout passed stays in the ring
 * (it is still in flight) until its answer or the connection's end. A
 * connection whose oldest command has waited PST_REPLAY_REDIS_STUCK_MS is
 * dropped and made again (backoff), so a Redis that stopped answering does
 * not hold the ring full. Single-threaded: every call on the worker's
 * thread. */
#ifndef POSTERN_REPLAY_REDIS_H
#define POSTERN_REPLAY_REDIS_H

#include <stdint.h>
#include <uv.h>

#include "postern/config-t.h"
#include "postern/replay.h"

/* How long Redis keeps a claim: the ticket-age tolerance of wolfSSL (a
 * recorded ClientHello is accepted for at most 12 s after it was first
 * seen: replay.h) plus the local register's freshness window. Redis counts
 * it on its own clock, so the instances' clocks do not matter. */
#define PST_REPLAY_REDIS_AGE_TOLERANCE_MS 12000
#define PST_REPLAY_REDIS_WINDOW_MS (PST_REPLAY_REDIS_AGE_TOLERANCE_MS + PST_REPLAY_WINDOW_MS)
/* The oldest command waiting this long: the connection is dropped. */
#define PST_REPLAY_REDIS_STUCK_MS 2000
/* Reconnect backoff: from BACKOFF_MIN, doubling, capped, each jittered to
 * a random point between half and all of it. */
#define PST_REPLAY_REDIS_BACKOFF_MIN_MS 50
#define PST_REPLAY_REDIS_BACKOFF_MAX_MS 2000
/* A connect (and AUTH) taking longer than this is abandoned. */
#define PST_REPLAY_REDIS_CONNECT_MS 1000

/* A claim's outcomes, given to the callback. */
#define PST_REPLAY_REDIS_CLAIMED 0 /* "OK": the early data may be accepted */
/* PST_REPLAY_SEEN (replay.h): nil, the key was claimed before (a replay);
 * negative: unavailable (-ETIMEDOUT, -ENOTCONN, -EIO for an error reply). */

typedef struct pst_replay_redis_s pst_replay_redis_t;
typedef struct pst_replay_redis_req_s pst_replay_redis_req_t;

/* Told once what became of a claim, on the worker's thread, never from
 * inside pst_replay_redis_claim. result: PST_REPLAY_REDIS_CLAIMED,
 * PST_REPLAY_SEEN, or a negative error (fail closed). */
typedef void (*pst_replay_redis_cb)(void *arg, int result);

/* Makes worker worker_id's client on loop, unconfigured (no connection).
 * Returns it (free with pst_replay_redis_free once closed) or NULL when
 * out of memory. */
pst_replay_redis_t *pst_replay_redis_new(uv_loop_t *loop, unsigned worker_id);

/* Follows the live generation's early_data_replay (copied: the generation
 * may go first). The same store as now: nothing changes; another address,
 * password, prefix, timeout or bound: the connection is dropped (claims in
 * flight are told -ENOTCONN) and made again to the new one; store: local:
 * no connection. Returns 0 or -ENOMEM (the client then stays unconfigured:
 * every claim fails closed). */
int pst_replay_redis_configure(pst_replay_redis_t *r, const pst_replay_store_conf_t *conf);

/* Claims key for a connection accepted under a generation whose store is
 * conf. On 0, cb(arg, result) is called later exactly once, within
 * conf->timeout_ms, unless pst_replay_redis_cancel(*req) comes first.
 * Otherwise cb is never called and the claim failed closed (already
 * counted and warned about): -ENOTCONN (no connection to Redis yet, or the
 * worker's client follows a generation with another store), -EBUSY
 * (max_in_flight commands waiting), -ENOMEM. */
int pst_replay_redis_claim(pst_replay_redis_t *r, const pst_replay_store_conf_t *conf,
                           const uint8_t key[PST_REPLAY_KEY_LEN], pst_replay_redis_cb cb, void *arg,
                           pst_replay_redis_req_t **req);

/* The connection that made req closes: cb will not be called. The record
 * stays in flight (owned by the client) until Redis answers. */
void pst_replay_redis_cancel(pst_replay_redis_req_t *req);

/* Commands sent and not yet answered (the ring's fill), for tests and
 * logs. */
unsigned pst_replay_redis_in_flight(const pst_replay_redis_t *r);

/* Drops the connection (claims in flight told -ENOTCONN) and closes the
 * client's handles: the loop can end. The worker's drain calls it. */
void pst_replay_redis_close(pst_replay_redis_t *r);

/* Frees a closed client once its loop has run the close callbacks. NULL is
 * allowed. */
void pst_replay_redis_free(pst_replay_redis_t *r);

#endif
