/* postern: growable byte buffer. */
#include "postern/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/fl.h"

/* Buffers start at 1 KiB and double, and most are emptied (freed) within a
 * request: blocks of 1 to 16 KiB are kept per worker thread (fl.h) rather
 * than returned to malloc each time. Larger ones use malloc directly. */
#define BUF_MIN 1024u
#define BUF_CLASSES 5 /* 1, 2, 4, 8, 16 KiB */
static _Thread_local pst_fl_t buf_fl[BUF_CLASSES] = {
    PST_FL_INIT(1024), PST_FL_INIT(2048), PST_FL_INIT(4096), PST_FL_INIT(8192), PST_FL_INIT(16384)};

/* The list for blocks of cap bytes, or NULL when cap is not a class size. */
static pst_fl_t *buf_class(size_t cap) {
  for (unsigned i = 0; i < BUF_CLASSES; i++) {
    if (cap == (size_t)BUF_MIN << i) return &buf_fl[i];
  }
  return NULL;
}

static int buf_reserve(pst_buf_t *b, size_t n) {
  if (b->off + b->len + n <= b->cap) return 0;
  /* Reuse the consumed front before growing. */
  if (b->off > 0) {
    memmove(b->data, b->data + b->off, b->len);
    b->off = 0;
    if (b->len + n <= b->cap) return 0;
  }
  size_t cap = b->cap ? b->cap : BUF_MIN;
  while (cap < b->len + n) {
    if (cap > ((size_t)-1) / 2) return -ENOMEM;
    cap *= 2;
  }
  pst_fl_t *to = buf_class(cap);
  char *p;
  if (to != NULL) {
    /* Every block of a class size is exactly that size (malloc'd as such
     * here), so it can go to and come from that class's list. */
    p = pst_fl_get(to);
    if (p == NULL) return -ENOMEM;
    if (b->data != NULL) {
      memcpy(p, b->data, b->len);
      pst_fl_put(buf_class(b->cap), b->data);
    }
  } else {
    p = realloc(b->data, cap);
    if (p == NULL) return -ENOMEM;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

int pst_buf_append(pst_buf_t *b, const void *p, size_t n) {
  if (n == 0) return 0;
  int rc = buf_reserve(b, n);
  if (rc != 0) return rc;
  memcpy(b->data + b->off + b->len, p, n);
  b->len += n;
  return 0;
}

/* Room reserved before formatting: most pieces (a request line, a header)
 * fit, so the text is formatted once rather than measured first. */
#define PRINTF_GUESS 256

int pst_buf_printf(pst_buf_t *b, const char *fmt, ...) {
  int rc = buf_reserve(b, PRINTF_GUESS);
  if (rc != 0) return rc;
  size_t room = b->cap - b->off - b->len;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->data + b->off + b->len, room, fmt, ap);
  va_end(ap);
  if (n < 0) return -EINVAL;
  if ((size_t)n >= room) {
    rc = buf_reserve(b, (size_t)n + 1);
    if (rc != 0) return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->off + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  b->len += (size_t)n;
  return 0;
}

void pst_buf_consume(pst_buf_t *b, size_t n) {
  if (n >= b->len) {
    pst_buf_free(b);
    return;
  }
  b->off += n;
  b->len -= n;
}

void pst_buf_free(pst_buf_t *b) {
  pst_fl_t *fl = b->data != NULL ? buf_class(b->cap) : NULL;
  if (fl != NULL)
    pst_fl_put(fl, b->data);
  else
    free(b->data);
  b->data = NULL;
  b->len = b->off = b->cap = 0;
}
