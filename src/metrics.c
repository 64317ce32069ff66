/* postern: process-wide counters (see metrics.h). */
#include "postern/metrics.h"

#include <stdatomic.h>
#include <stdio.h>

#include "postern/common.h"
#include "postern/log.h"

static atomic_uint_fast64_t metrics[PST_M__COUNT];

static const char *const metric_names[PST_M__COUNT] = {
#define PST_METRIC_NAME(id, key, help) key,
    PST_METRICS(PST_METRIC_NAME)
#undef PST_METRIC_NAME
};

void pst_metric_inc(pst_metric_t m) { pst_metric_add(m, 1); }

void pst_metric_add(pst_metric_t m, uint64_t n) {
  if ((unsigned)m >= PST_M__COUNT) return;
  atomic_fetch_add_explicit(&metrics[m], n, memory_order_relaxed);
}

uint64_t pst_metric_get(pst_metric_t m) {
  if ((unsigned)m >= PST_M__COUNT) return 0;
  return atomic_load_explicit(&metrics[m], memory_order_relaxed);
}

const char *pst_metric_name(pst_metric_t m) {
  return (unsigned)m < PST_M__COUNT ? metric_names[m] : "?";
}

void pst_metrics_reset(void) {
  for (size_t i = 0; i < PST_M__COUNT; i++) {
    atomic_store_explicit(&metrics[i], 0, memory_order_relaxed);
  }
}

void pst_metrics_log(void) {
  char line[1024];
  size_t off = 0;
  for (size_t i = 0; i < PST_M__COUNT && off < sizeof(line); i++) {
    int n = snprintf(line + off, sizeof(line) - off, "%s%s=%llu", i == 0 ? "" : " ",
                     metric_names[i], (unsigned long long)pst_metric_get((pst_metric_t)i));
    if (n < 0) break;
    off += (size_t)n;
  }
  pst_log_info("counters: %s", line);
}
