/* postern: per-thread free lists of equal-sized blocks, so that what each
 * request allocates and frees (stream records, request structs, buffers of
 * the common sizes) is taken from and returned to a short list rather than
 * malloc. Each list is thread-local (a worker's own: nothing is shared) and
 * bounded (fl-t.h): above the bound a block goes back to free(), and a
 * thread's lists are emptied when it exits.
 *
 * Built with AddressSanitizer (or -DPST_FL_OFF) the lists hold nothing:
 * get is malloc and put is free, so a use after free is still caught. */
#ifndef POSTERN_FL_H
#define POSTERN_FL_H

#include <stddef.h>

#include "postern/fl-t.h"

/* A block of fl->size bytes, uninitialized: the list's first, or malloc's.
 * Returns NULL when out of memory. The caller owns it and gives it back with
 * pst_fl_put() on the same list (or free()). */
void *pst_fl_get(pst_fl_t *fl);

/* As pst_fl_get(), zeroed. */
void *pst_fl_get0(pst_fl_t *fl);

/* Takes back p (NULL allowed), a block of exactly fl->size bytes from
 * pst_fl_get() on a list of that size or from malloc(fl->size): kept when
 * the list has room, freed otherwise. */
void pst_fl_put(pst_fl_t *fl, void *p);

/* Frees every block fl holds. */
void pst_fl_drain(pst_fl_t *fl);

#endif
