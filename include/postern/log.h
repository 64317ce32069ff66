/* postern: leveled logging to stderr, safe from any thread. */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include "postern/config-t.h"

/* Sets the most verbose level that is printed (default PST_LOG_INFO). */
void pst_log_set_level(pst_log_level_t level);

/* Returns nonzero when messages at level are printed: callers use it to skip
 * building expensive log lines. */
int pst_log_enabled(pst_log_level_t level);

/* Prints one line "TIME LEVEL message" to stderr, written with a single
 * write(2) so lines of different threads never interleave. */
void pst_log(pst_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pst_log_error(...) pst_log(PST_LOG_ERROR, __VA_ARGS__)
#define pst_log_warn(...) pst_log(PST_LOG_WARN, __VA_ARGS__)
#define pst_log_info(...) pst_log(PST_LOG_INFO, __VA_ARGS__)
#define pst_log_debug(...)                                                   \
  do {                                                                       \
    if (pst_log_enabled(PST_LOG_DEBUG)) pst_log(PST_LOG_DEBUG, __VA_ARGS__); \
  } while (0)

#endif
