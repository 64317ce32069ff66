/* postern: active health checks of the backend sets' servers, from one
 * thread of their own per process (not every worker checking every
 * server): a TCP connect, or an HTTP/1.1 GET of health.path whose status
 * is 2xx or 3xx, every health.interval with jitter, bounded by
 * health.timeout. A server goes down after fall failures in a row and
 * comes back after rise successes; the change is logged once with its
 * cause and published in the server registry (balance.h), which every
 * worker reads. The servers checked are those of the live generations: a
 * reload adds and drops them, and an unchanged server keeps its state. */
#ifndef POSTERN_HEALTH_H
#define POSTERN_HEALTH_H

/* Starts the checker thread. Call once, after privileges are dropped (the
 * thread inherits the capability sets, priv.h). Returns 0 or a negative
 * libuv error (postern runs on without active checks: servers stay up). */
int pst_health_start(void);

/* Stops the checker thread and frees what it holds; checks in flight are
 * abandoned. Nothing when it was not started. */
void pst_health_stop(void);

#endif
