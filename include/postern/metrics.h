/* postern: process-wide counters. Each is one relaxed atomic, bumped from
 * any thread; they are read only for the summary logged at shutdown (and a
 * scrape endpoint, later). Per-worker counters would avoid sharing a cache
 * line, but every counter here is bumped at most once or twice per
 * connection, next to a TLS handshake that costs ~1000 times more. */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include <stdint.h>

#include "postern/buf.h"

/* X(name, "log key", "what it counts"). To add a counter, add a line here:
 * the enum, the names and the shutdown line follow. */
#define PST_METRICS(X)                                                                 \
  X(HANDSHAKES, "handshakes", "TLS handshakes completed")                              \
  X(RESUMED, "resumed", "handshakes that resumed a session (ticket, RFC 8446 2.2)")    \
  X(EARLY_ACCEPTED, "early_data_accepted", "0-RTT early data accepted (RFC 8446 2.3)") \
  X(EARLY_REJECTED, "early_data_rejected",                                             \
    "early data offered and rejected: policy, not resumed, or strike register full")   \
  X(EARLY_REPLAYED, "early_data_replayed",                                             \
    "early data rejected because the ClientHello was seen before (a replay)")          \
  X(RELOADS, "reloads", "reloads that switched to a new generation")                   \
  X(RELOADS_FAILED, "reloads_failed",                                                  \
    "reloads refused (bad file, certificate, port): the old generation kept serving")  \
  X(HTTP_REQUESTS, "http_requests", "http mode requests received")                     \
  X(HTTP_400, "http_400", "requests refused as malformed or smuggling-prone (400)")    \
  X(HTTP_431, "http_431", "requests refused for a head over max_header_bytes (431)")   \
  X(HTTP_502, "http_502", "requests answered 502: backend unreachable or broken")      \
  X(HTTP_504, "http_504", "requests answered 504: no response head in time")           \
  X(BACKEND_RETRIES, "backend_retries",                                                \
    "requests or connections retried on another server (or a fresh connection)")       \
  X(BACKEND_EJECTIONS, "backend_ejections",                                            \
    "servers ejected for passive.cooldown after live failures in a row")

typedef enum {
#define PST_METRIC_ENUM(id, key, help) PST_M_##id,
  PST_METRICS(PST_METRIC_ENUM)
#undef PST_METRIC_ENUM
      PST_M__COUNT
} pst_metric_t;

/* Adds 1 to counter m. Thread-safe, lock-free. */
void pst_metric_inc(pst_metric_t m);

/* Adds n to counter m. Thread-safe, lock-free. */
void pst_metric_add(pst_metric_t m, uint64_t n);

/* The current value of counter m. */
uint64_t pst_metric_get(pst_metric_t m);

/* The log key of counter m ("resumed"), a static string. */
const char *pst_metric_name(pst_metric_t m);

/* Resets every counter to 0 (tests only: counters are never reset while
 * postern runs). */
void pst_metrics_reset(void);

/* The Prometheus text exposition (format 0.0.4) of every counter family,
 * summed over the workers, appended to out. Families other modules render
 * themselves (the admin endpoint's gauges, the backends' health) use the two
 * writers below, so that every family is written the same way. Returns 0 or
 * -ENOMEM (out may hold part of the text). */
int pst_metrics_render(pst_buf_t *out);

/* Appends a family's "# HELP name help" and "# TYPE name type" lines
 * (type: "counter", "gauge" or "histogram"); help is escaped as the format
 * asks (backslash, newline). Returns 0 or -ENOMEM. */
int pst_metrics_head(pst_buf_t *out, const char *name, const char *type, const char *help);

/* Appends value as a label value: the characters between the quotes of
 * name="value", with backslash, double quote and newline escaped. Returns 0
 * or -ENOMEM. */
int pst_metrics_label(pst_buf_t *out, const char *value);

/* Logs every counter on one info line: "counters: handshakes=N resumed=N ...". */
void pst_metrics_log(void);

#endif
