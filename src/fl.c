/* postern: per-thread free lists (fl.h). */
#include "postern/fl.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Off under AddressSanitizer, so that a block used after it was freed is
 * reported rather than handed to the next user; PST_FL_ON overrides that
 * (the unit test of the lists themselves), PST_FL_OFF turns them off in any
 * build. */
#if defined(__SANITIZE_ADDRESS__)
#define FL_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FL_OFF 1
#endif
#endif
#if defined(PST_FL_ON)
#undef FL_OFF
#endif
#if defined(PST_FL_OFF)
#undef FL_OFF
#define FL_OFF 1
#endif

#ifndef FL_OFF
/* The lists a thread has put blocks in, emptied by a thread-specific key's
 * destructor when the thread exits (a worker stopped by a reload), so that
 * the blocks are not lost with the thread's storage. */
#define FL_THREAD_LISTS 32
static _Thread_local pst_fl_t *thread_lists[FL_THREAD_LISTS];
static _Thread_local unsigned n_thread_lists;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void fl_thread_exit(void *unused) {
  (void)unused;
  for (unsigned i = 0; i < n_thread_lists; i++) {
    pst_fl_drain(thread_lists[i]);
    thread_lists[i]->listed = 0;
  }
  n_thread_lists = 0;
}

static void fl_make_key(void) {
  if (pthread_key_create(&exit_key, fl_thread_exit) != 0) exit_key = (pthread_key_t)-1;
}

/* Enters fl in the thread's drain list. Returns 0, or -ENOSPC when it
 * cannot be drained at thread exit (the caller frees the block instead). */
static int fl_enlist(pst_fl_t *fl) {
  pthread_once(&exit_once, fl_make_key);
  if (exit_key == (pthread_key_t)-1 || n_thread_lists == FL_THREAD_LISTS) return -ENOSPC;
  if (n_thread_lists == 0 && pthread_setspecific(exit_key, (void *)1) != 0) return -ENOSPC;
  thread_lists[n_thread_lists++] = fl;
  fl->listed = 1;
  return 0;
}
#endif

void *pst_fl_get(pst_fl_t *fl) {
  assert(fl->size >= sizeof(void *));
  void *p = fl->head;
  if (p == NULL) return malloc(fl->size);
  memcpy(&fl->head, p, sizeof(void *));
  fl->n--;
  return p;
}

void *pst_fl_get0(pst_fl_t *fl) {
  if (fl->head == NULL) return calloc(1, fl->size);
  void *p = pst_fl_get(fl);
  memset(p, 0, fl->size);
  return p;
}

void pst_fl_put(pst_fl_t *fl, void *p) {
  if (p == NULL) return;
#ifdef FL_OFF
  free(p);
#else
  if (fl->n >= fl->max || (!fl->listed && fl_enlist(fl) != 0)) {
    free(p);
    return;
  }
  memcpy(p, &fl->head, sizeof(void *));
  fl->head = p;
  fl->n++;
#endif
}

void pst_fl_drain(pst_fl_t *fl) {
  while (fl->head != NULL) {
    void *p = fl->head;
    memcpy(&fl->head, p, sizeof(void *));
    free(p);
  }
  fl->n = 0;
}
