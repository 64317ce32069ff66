/* postern: nghttp2's allocator for the HTTP/2 front end (h2.c).
 *
 * nghttp2 allocates and frees a few small objects per request stream (the
 * stream, the frames queued for it, copies of the response fields). They
 * come from per-thread free lists (fl.h) of a few size classes here rather
 * than from malloc each time. nghttp2 frees without saying the size, so
 * every block starts with a header naming its class. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "h2_int.h"
#include "postern/fl.h"

/* The header before each block nghttp2 sees: 16 bytes, so that the block
 * keeps malloc's alignment. */
typedef union {
  size_t cap; /* bytes nghttp2 may use */
  max_align_t align;
} h2_mem_head_t;

#define H2_MEM_CLASSES 5 /* 64, 128, 256, 512, 1024 bytes with the header */
#define H2_MEM_MIN 64u

static _Thread_local pst_fl_t h2_mem_fl[H2_MEM_CLASSES] = {
    PST_FL_INIT(64), PST_FL_INIT(128), PST_FL_INIT(256), PST_FL_INIT(512), PST_FL_INIT(1024)};

/* The class of a block of total bytes (header included), or -1 above. */
static int h2_mem_class(size_t total) {
  size_t c = H2_MEM_MIN;
  for (int i = 0; i < H2_MEM_CLASSES; i++, c *= 2) {
    if (total <= c) return i;
  }
  return -1;
}

static void *h2_mem_malloc(size_t size, void *ud) {
  (void)ud;
  if (size > SIZE_MAX - sizeof(h2_mem_head_t)) return NULL;
  size_t total = size + sizeof(h2_mem_head_t);
  int k = h2_mem_class(total);
  h2_mem_head_t *h;
  if (k >= 0) {
    h = pst_fl_get(&h2_mem_fl[k]);
    total = (size_t)H2_MEM_MIN << k;
  } else {
    h = malloc(total);
  }
  if (h == NULL) return NULL;
  h->cap = total - sizeof(*h);
  return h + 1;
}

static void h2_mem_free(void *p, void *ud) {
  (void)ud;
  if (p == NULL) return;
  h2_mem_head_t *h = (h2_mem_head_t *)p - 1;
  int k = h2_mem_class(h->cap + sizeof(*h));
  /* A class block's cap is exactly its class size less the header; a larger
   * block (from malloc) never matches a class size. */
  if (k >= 0 && h->cap + sizeof(*h) == (size_t)H2_MEM_MIN << k)
    pst_fl_put(&h2_mem_fl[k], h);
  else
    free(h);
}

static void *h2_mem_calloc(size_t n, size_t size, void *ud) {
  if (size != 0 && n > SIZE_MAX / size) return NULL;
  void *p = h2_mem_malloc(n * size, ud);
  if (p != NULL) memset(p, 0, n * size);
  return p;
}

static void *h2_mem_realloc(void *p, size_t size, void *ud) {
  if (p == NULL) return h2_mem_malloc(size, ud);
  h2_mem_head_t *h = (h2_mem_head_t *)p - 1;
  if (size <= h->cap) return p;
  void *q = h2_mem_malloc(size, ud);
  if (q == NULL) return NULL;
  memcpy(q, p, h->cap);
  h2_mem_free(p, ud);
  return q;
}

static const nghttp2_mem h2_mem = {
    .mem_user_data = NULL,
    .malloc = h2_mem_malloc,
    .free = h2_mem_free,
    .calloc = h2_mem_calloc,
    .realloc = h2_mem_realloc,
};

/* See h2_int.h. */
nghttp2_mem *pst_h2_mem(void) { return (nghttp2_mem *)&h2_mem; }
