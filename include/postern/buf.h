/* postern: a growable byte buffer. */
#ifndef POSTERN_BUF_H
#define POSTERN_BUF_H

#include <stddef.h>

typedef struct {
  char *data; /* NULL while empty and never allocated */
  size_t len; /* bytes in use, from data[off] */
  size_t off; /* bytes already consumed at the front */
  size_t cap;
} pst_buf_t;

/* Appends n bytes. Returns 0 or -ENOMEM (buffer unchanged). */
int pst_buf_append(pst_buf_t *b, const void *p, size_t n);

/* Appends printf-formatted text. Returns 0 or -ENOMEM. */
int pst_buf_printf(pst_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Pointer to the first unconsumed byte. For a buffer never allocated (len
 * 0) it points at an empty byte of its own rather than computing NULL + 0:
 * adding even 0 to a null pointer is undefined in C, here and in every
 * caller's `head + len`, and clang's UBSan reports it (found by the conn
 * fuzz target). Nothing may be written through it. */
static inline char *pst_buf_head(const pst_buf_t *b) {
  static char empty[1];
  return b->data != NULL ? b->data + b->off : empty;
}

/* Marks n bytes at the front consumed; releases the memory when it empties,
 * so an idle connection holds no buffer. */
void pst_buf_consume(pst_buf_t *b, size_t n);

/* Frees the memory; the buffer is empty and reusable afterwards. */
void pst_buf_free(pst_buf_t *b);

#endif
