/* postern: leveled logging to stderr, safe from any thread. */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stddef.h>

#include "postern/config-t.h"

/* Sets the most verbose level that is printed (default PST_LOG_INFO). */
void pst_log_set_level(pst_log_level_t level);

/* Sets how lines are written (log_format; default PST_LOG_TEXT): the error
 * log here and the access log (access_log.h). Thread-safe. */
void pst_log_set_format(pst_log_format_t format);

/* The current log_format. Thread-safe. */
pst_log_format_t pst_log_format(void);

/* Writes s into out (len bytes, NUL-terminated) as the inside of a JSON
 * string (RFC 8259 7): '"' and '\' escaped, control bytes as \n, \r, \t
 * or \u00XX, and every byte outside printable ASCII (0x7f and up) as
 * \u00XX too, one escape per byte, so that a line stays valid JSON
 * whatever bytes a client put in its server name or request target. A value
 * too long is cut before an escape, never inside one. NULL becomes "".
 * Returns out. */
const char *pst_json_escape(const char *s, char *out, size_t len);

/* How long pst_json_escape's output for s is when nothing is cut (without
 * the NUL): a caller with a budget checks the room first. NULL is 0. */
size_t pst_json_escaped_len(const char *s);

/* The time now as RFC 3339 UTC with milliseconds ("2026-12-03T12:00:00.123Z")
 * into out (at least 25 bytes). Returns out. */
const char *pst_log_time(char *out, size_t len);

/* Returns nonzero when messages at level are printed: callers use it to skip
 * building expensive log lines. */
int pst_log_enabled(pst_log_level_t level);

/* Prints one line to stderr, "TIME LEVEL message" or with log_format json
 * {"time":"...","level":"info","msg":"..."}, written with a single write(2)
 * so lines of different threads never interleave. */
void pst_log(pst_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pst_log_error(...) pst_log(PST_LOG_ERROR, __VA_ARGS__)
#define pst_log_warn(...) pst_log(PST_LOG_WARN, __VA_ARGS__)
#define pst_log_info(...) pst_log(PST_LOG_INFO, __VA_ARGS__)
#define pst_log_debug(...)                                                   \
  do {                                                                       \
    if (pst_log_enabled(PST_LOG_DEBUG)) pst_log(PST_LOG_DEBUG, __VA_ARGS__); \
  } while (0)

#endif
