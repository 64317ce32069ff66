/* Helpers shared by the HTTP unit tests (test_h1_parse.c, test_http.c,
 * test_info.c): allocation failure injection and a buffer's bytes as a C
 * string.
 *
 * Include it once per test binary, after <cmocka.h>: it defines malloc,
 * calloc and realloc for the whole binary. */
#ifndef POSTERN_TESTS_HTTP_TEST_UTIL_H
#define POSTERN_TESTS_HTTP_TEST_UTIL_H

#include <stddef.h>

#include "postern/buf.h"

/* ---- allocation failure injection ----------------------------------------
 * malloc, calloc and realloc are replaced for the whole test binary; while
 * fail_at >= 0 the fail_at-th allocation from now fails, and failed_alloc
 * records that one did. Under ASan the real functions are its interceptors
 * (malloc is a weak alias of them). */
#if defined(__SANITIZE_ADDRESS__)
void *__interceptor_malloc(size_t n);
void *__interceptor_calloc(size_t n, size_t m);
void *__interceptor_realloc(void *p, size_t n);
#define REAL_MALLOC __interceptor_malloc
#define REAL_CALLOC __interceptor_calloc
#define REAL_REALLOC __interceptor_realloc
#else
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t m);
void *__libc_realloc(void *p, size_t n);
#define REAL_MALLOC __libc_malloc
#define REAL_CALLOC __libc_calloc
#define REAL_REALLOC __libc_realloc
#endif

#define PST_TEST_ALLOC_INJECTION 1
static long fail_at = -1;
static int failed_alloc;
static int alloc_paused; /* > 0: nothing fails, nothing is counted */

static inline int alloc_fails(void) {
  if (fail_at < 0 || alloc_paused > 0) return 0;
  if (fail_at-- > 0) return 0;
  failed_alloc = 1;
  return 1;
}

void *malloc(size_t n) { return alloc_fails() ? NULL : REAL_MALLOC(n); }
void *calloc(size_t n, size_t m) { return alloc_fails() ? NULL : REAL_CALLOC(n, m); }
void *realloc(void *p, size_t n) { return alloc_fails() ? NULL : REAL_REALLOC(p, n); }

/* ---- buffers ------------------------------------------------------------- */

/* The buffer's bytes as a C string (a NUL is appended, not counted): valid
 * until the buffer changes. */
static inline const char *buf_str(pst_buf_t *b) {
  assert_int_equal(pst_buf_append(b, "", 1), 0);
  b->len--;
  return pst_buf_head(b);
}

#endif
