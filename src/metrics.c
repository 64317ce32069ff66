/* postern: process-wide counters (see metrics.h). */
#include "postern/metrics.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <stdio.h>

#include "postern/common.h"
#include "postern/log.h"

static atomic_uint_fast64_t metrics[PST_M__COUNT];

static const char *const metric_help[PST_M__COUNT] = {
#define PST_METRIC_HELP(id, key, help) help,
    PST_METRICS(PST_METRIC_HELP)
#undef PST_METRIC_HELP
};

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

/* Appends s with every character of esc preceded by a backslash and a
 * newline written as "\\n" (the exposition format's escapes). */
static int metrics_escape(pst_buf_t *out, const char *s, const char *esc) {
  for (const char *p = s; *p != '\0';) {
    size_t run = strcspn(p, esc);
    if (run > 0 && pst_buf_append(out, p, run) != 0) return -ENOMEM;
    p += run;
    if (*p == '\0') break;
    if (pst_buf_append(out, *p == '\n' ? "\\n" : (char[2]){'\\', *p}, 2) != 0) return -ENOMEM;
    p++;
  }
  return 0;
}

int pst_metrics_head(pst_buf_t *out, const char *name, const char *type, const char *help) {
  if (pst_buf_printf(out, "# HELP %s ", name) != 0) return -ENOMEM;
  if (metrics_escape(out, help, "\\\n") != 0) return -ENOMEM;
  return pst_buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

int pst_metrics_label(pst_buf_t *out, const char *value) {
  return metrics_escape(out, value, "\\\"\n");
}

int pst_metrics_render(pst_buf_t *out) {
  char name[128];
  for (size_t i = 0; i < PST_M__COUNT; i++) {
    snprintf(name, sizeof(name), "postern_%s_total", metric_names[i]);
    if (pst_metrics_head(out, name, "counter", metric_help[i]) != 0) return -ENOMEM;
    if (pst_buf_printf(out, "%s %llu\n", name,
                       (unsigned long long)pst_metric_get((pst_metric_t)i)) != 0) {
      return -ENOMEM;
    }
  }
  return 0;
}
