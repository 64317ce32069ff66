/* postern: a free list of equal-sized blocks (types; fl.h has the functions). */
#ifndef POSTERN_FL_T_H
#define POSTERN_FL_T_H

#include <stddef.h>

/* One thread's cache of blocks of exactly `size` bytes, each from
 * malloc(size): a block may come from malloc and go to the list, or come
 * from the list and go to free(), so the list and plain malloc/free of the
 * same size mix freely. Declare it _Thread_local with PST_FL_INIT. */
typedef struct pst_fl_s {
  size_t size;         /* bytes of every block */
  unsigned max;        /* blocks kept at most; the rest go back to free() */
  unsigned n;          /* blocks held now */
  void *head;          /* the first held block; its first bytes link the next */
  unsigned listed : 1; /* in the thread's drain list (fl.c) */
} pst_fl_t;

/* Bytes a list keeps at most (the count bound below is reached first for
 * small blocks): enough for the blocks of ~2,000 streams in flight to come
 * and go without malloc (bench/README.md, keep-alive). A worker has about
 * fifteen lists, most of them small-block ones, so what it keeps idle after
 * such a peak is a few MiB at most, which glibc's heap would mostly have
 * kept too. */
#define PST_FL_KEEP_BYTES (1024u * 1024u)
#define PST_FL_KEEP_MAX 2048u

/* Initializer for a list of blocks of sz bytes (sz >= sizeof(void *)). */
#define PST_FL_INIT(sz)                                                                       \
  {                                                                                           \
    .size = (sz),                                                                             \
    .max = PST_FL_KEEP_BYTES / (sz) > PST_FL_KEEP_MAX ? PST_FL_KEEP_MAX                       \
                                                      : (unsigned)(PST_FL_KEEP_BYTES / (sz)), \
  }

#endif
