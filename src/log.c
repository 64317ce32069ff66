/* postern: leveled logging to stderr. */
#include "postern/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = PST_LOG_INFO;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void pst_log_set_level(pst_log_level_t level) { atomic_store(&log_level, (int)level); }

int pst_log_enabled(pst_log_level_t level) { return (int)level <= atomic_load(&log_level); }

void pst_log(pst_log_level_t level, const char *fmt, ...) {
  if (!pst_log_enabled(level)) return;
  char line[2048];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ", (long)(tv.tv_usec / 1000),
                        level_names[level]);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
  va_end(ap);
  if (m < 0) m = 0;
  n += (size_t)m;
  if (n > sizeof(line) - 2) n = sizeof(line) - 2; /* truncated: keep the newline */
  line[n++] = '\n';
  /* One write(2) per line: lines of different workers never interleave. */
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
}
