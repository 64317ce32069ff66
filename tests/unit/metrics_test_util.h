/* postern unit tests: reading the exposition pst_metrics_render writes
 * (test_metrics.c, test_conn_metrics.c). */
#ifndef POSTERN_METRICS_TEST_UTIL_H
#define POSTERN_METRICS_TEST_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "postern/buf.h"
#include "postern/metrics.h"

/* The exposition, NUL-terminated; free() it. */
static inline char *render(void) {
  pst_buf_t b = {0};
  assert_int_equal(pst_metrics_render(&b), 0);
  char *s = malloc(b.len + 1);
  assert_non_null(s);
  memcpy(s, pst_buf_head(&b), b.len);
  s[b.len] = '\0';
  pst_buf_free(&b);
  return s;
}

/* The value of the sample line that starts with series followed by a space
 * ("name{labels}"), or -1 when there is none. */
static inline double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p != NULL && *p != '\0';) {
    if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    p = strchr(p, '\n');
    if (p != NULL) p++;
  }
  return -1;
}

#endif
