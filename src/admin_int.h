/* postern: what the admin module's files share (admin.c serves the
 * endpoint, admin_render.c writes the gauges of /metrics). Private to
 * src/admin*.c. */
#ifndef POSTERN_ADMIN_INT_H
#define POSTERN_ADMIN_INT_H

#include <stdint.h>
#include <time.h>

#include "postern/buf.h"
#include "postern/gen-t.h"

/* What a scrape shows besides the counters, gathered on the main loop at
 * the moment of the request. Everything borrowed for the call. */
typedef struct {
  const pst_gen_t *gen; /* the running generation */
  uint64_t generation;  /* its number */
  time_t last_reload;   /* when the last reload attempt ended (start-up before any) */
  int last_reload_ok;   /* whether it succeeded */
  unsigned n_workers;   /* worker threads serving */
  int ready;            /* what /readyz answers (1: 200) */
  double start_time;    /* process_start_time_seconds */
  time_t now;           /* the time of the scrape */
} pst_admin_view_t;

/* Appends the admin endpoint's gauge families (docs/metrics.md, "Admin
 * endpoint gauges") for v to out, each written with pst_metrics_head and
 * pst_metrics_label: configuration, certificates, ticket keys, process_*,
 * build info, workers and readiness. Reads /proc/self (a few small reads,
 * which never block on procfs) and takes each ticket key source's lock for
 * a copy of its key dates. Returns 0 or -ENOMEM (out may hold part of the
 * text). */
int pst_admin_render(pst_buf_t *out, const pst_admin_view_t *v);

/* The process's start time in seconds since the epoch, from its start in
 * clock ticks after boot (/proc/self/stat, field 22) and the boot time
 * (/proc/stat btime), as client_golang computes process_start_time_seconds.
 * The time now when /proc cannot tell. Blocking procfs reads: call it once,
 * at start-up. */
double pst_admin_process_start(void);

#endif
