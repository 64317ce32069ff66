/* postern: the reload transaction (SIGHUP, or `watch: true`).
 *
 * A reload reads the configuration file again and builds a whole new
 * generation off the event loops (libuv's thread pool), with every check
 * `postern -t` runs. Only when that succeeds does it bind the sockets of new
 * listeners (on the main thread), and only when every bind succeeds does it
 * commit: each worker is handed the new generation and switches at once.
 * Anything that fails before the commit leaves the running generation
 * untouched: the cause is logged with its file:line and a counter counts the
 * failure. A request that comes while a reload runs is queued: one more
 * reload follows (several requests meanwhile make one). */
#ifndef POSTERN_RELOAD_H
#define POSTERN_RELOAD_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "postern/gen-t.h"
#include "postern/worker-t.h"

typedef struct pst_reload_s pst_reload_t;

/* Sets up reloads on loop (the main loop) for the running workers.
 * config_path is the file given with -c (copied). gen is the running
 * generation: the caller's reference is taken over. workers (n_workers of
 * them, all started) must outlive the reload. Starts watching files when
 * gen's configuration says `watch: true`, and the daily expiry warning.
 * Returns 0 and *out, or -ENOMEM (then gen's reference is still the
 * caller's). */
int pst_reload_start(uv_loop_t *loop, const char *config_path, pst_gen_t *gen,
                     pst_worker_t *workers, unsigned n_workers, pst_reload_t **out);

/* Asks for a reload; why ("SIGHUP", "watch: FILE changed") goes in the log.
 * Starts one now, or queues one more after the reload in progress, or does
 * nothing once stopped. Main loop only. */
void pst_reload_request(pst_reload_t *r, const char *why);

/* The running generation (borrowed: valid until the next reload commits).
 * Main loop only. */
pst_gen_t *pst_reload_gen(const pst_reload_t *r);

/* The number of the running generation (1 at start, +1 per reload that
 * commits). Main loop only. */
uint64_t pst_reload_generation(const pst_reload_t *r);

/* When the last reload attempt ended (wall clock; the start-up load's time
 * before any reload), and whether it succeeded (1, also before any reload;
 * 0 after a refused one). Main loop only. */
time_t pst_reload_last_time(const pst_reload_t *r);
int pst_reload_last_ok(const pst_reload_t *r);

/* Sets the function called on the main loop once every worker serves a
 * newly committed generation (after each reload that succeeds), with arg
 * and that generation (borrowed, valid until the next reload commits): the
 * admin endpoint follows its admin: key there. NULL fn: none. Main loop
 * only. */
void pst_reload_on_switched(pst_reload_t *r, void (*fn)(void *arg, const pst_gen_t *gen),
                            void *arg);

/* Tells the service manager (notify.h) that postern is ready, with the
 * running generation in the status line ("serving 2 listeners, generation
 * 3"). Called at start-up once the workers serve, and by every reload that
 * commits. Main loop only. */
void pst_reload_notify_ready(const pst_reload_t *r);

/* Shutting down: no more reloads; a queued one is dropped and one being
 * built is discarded when it ends (the workers drain meanwhile). Closes the
 * reload's handles so the main loop can end. Idempotent. Main loop only. */
void pst_reload_stop(pst_reload_t *r);

/* Frees everything, the generation reference included. Only after the main
 * loop has ended and every worker has been joined. NULL is allowed. */
void pst_reload_free(pst_reload_t *r);

/* ---- pure parts, exposed for tests ---- */

/* Matches each listener of new_cfg with the listener of old_cfg that listens
 * on the same address (family, address and port): such a listener keeps its
 * sockets across the reload. keep[i] receives the index in old_cfg or -1
 * (a new listener). Returns how many are kept. */
size_t pst_reload_match(const pst_config_t *old_cfg, const pst_config_t *new_cfg, long *keep);

/* Writes what changed from old to new into buf (len bytes, NUL-terminated,
 * cut with "..." when too long), for the "reload ok" log line: listeners
 * added and removed, and for each kept one (keep from pst_reload_match) its
 * certificates replaced, added and removed, with serial numbers, and the
 * names of its settings that changed; then top-level settings. "nothing
 * changed" when nothing did. Returns buf. */
const char *pst_reload_describe(const pst_gen_t *old_gen, const pst_gen_t *new_gen,
                                const long *keep, char *buf, size_t len);

#endif
