/* postern: the admin endpoint (`admin: listen:`): plain HTTP/1.1 on a socket
 * of its own, served on the main thread's event loop, never on a worker, so
 * that a scrape costs the workers nothing but the relaxed loads of their
 * counters.
 *
 *   GET /metrics   the Prometheus text exposition (format 0.0.4): every
 *                  counter family (pst_metrics_render), then the gauges of
 *                  docs/metrics.md's "Admin endpoint gauges"
 *   GET /healthz   200 while the process runs
 *   GET /readyz    200 once every listener accepts and the first generation
 *                  serves; 503 from the first moment of a graceful shutdown
 *
 * GET and HEAD only (anything else 405 with Allow), any other path 404.
 * Requests are parsed by postern's strict HTTP/1.1 request parser (http.h)
 * with an 8 KiB head limit (431, or 414 for the request line, then close);
 * keep-alive and pipelining are supported, answers in order; at most
 * PST_ADMIN_MAX_CONNS connections (the one idle longest makes room for a
 * new one, else the one whose request has taken longest); an idle
 * connection closes after 30 s, and a request must arrive whole and its
 * answer be read within 10 s. */
#ifndef POSTERN_ADMIN_H
#define POSTERN_ADMIN_H

#include <uv.h>

#include "postern/config-t.h"
#include "postern/gen-t.h"
#include "postern/reload.h"

#define PST_ADMIN_MAX_CONNS 64

typedef struct pst_admin_s pst_admin_t;

/* Creates the admin endpoint of cfg and, when cfg has admin.listen, binds
 * its socket and listens now: at start-up, before privileges are dropped,
 * like the listeners (a port below 1024 needs root or
 * CAP_NET_BIND_SERVICE). The socket has no SO_REUSEPORT: another process
 * on the address makes this fail. A failure is logged with admin.listen's
 * file:line:column. Returns 0 and *out (free with pst_admin_free), -ENOMEM,
 * or the bind's negative errno. */
int pst_admin_new(const pst_config_t *cfg, pst_admin_t **out);

/* Starts serving on loop (the main loop) for n_workers workers. gen is the
 * running generation (a reference is taken and kept until
 * pst_admin_set_reload). Not ready until pst_admin_set_ready. Returns 0 or
 * a negative libuv error (logged; the endpoint then stays off). */
int pst_admin_start(pst_admin_t *a, uv_loop_t *loop, pst_gen_t *gen, unsigned n_workers);

/* From now on the running generation, its number and the last reload are
 * r's (reload.h getters), and r's switches reach pst_admin_on_reload.
 * Main loop only. */
void pst_admin_set_reload(pst_admin_t *a, pst_reload_t *r);

/* /readyz answers 200 when ready, 503 when not. Set once the workers serve
 * the first generation; cleared at the first moment of a graceful shutdown,
 * before the workers are told to stop (never set again). Main loop only. */
void pst_admin_set_ready(pst_admin_t *a, int ready);

/* A reload committed gen (reload.h's pst_reload_on_switched; arg is the
 * pst_admin_t). When admin.listen changed, the endpoint moves: the new
 * address is bound first, then the old listening socket is closed (open
 * admin connections finish on it); removed, it closes; added, it opens.
 * When the new address cannot be bound the old socket stays and the error
 * is logged with admin.listen's place. Main loop only. */
void pst_admin_on_reload(void *arg, const pst_gen_t *gen);

/* Closes the listening socket and every admin connection (the process is
 * ending). Idempotent. Main loop only. */
void pst_admin_close(pst_admin_t *a);

/* Frees a, once the main loop has ended (every close callback ran). NULL is
 * allowed. */
void pst_admin_free(pst_admin_t *a);

#endif
