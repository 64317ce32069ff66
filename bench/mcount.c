/* mcount: an LD_PRELOAD malloc census for bench/README.md's "Where an idle
 * connection's bytes are". It counts every live allocation of the process
 * by call site (the first frames of its backtrace) and, on SIGRTMIN+5,
 * a thread of its own writes the census to $MCOUNT_OUT (default /tmp/mcount.<pid>): per site,
 * live blocks, requested bytes, the chunk bytes glibc really holds for them
 * (malloc_usable_size + 8 for the chunk header), and the frames as
 * "object+offset" for addr2line. Sending the signal twice (before and after
 * N idle connections are up) and subtracting gives the bytes per
 * connection of each site. A measuring tool only: not built into postern.
 *
 *   cc -O2 -shared -fPIC -o build/bench/mcount.so bench/mcount.c -ldl
 *   LD_PRELOAD=build/bench/mcount.so build/postern -c conf.yaml
 *   kill -s $(( $(kill -l RTMIN) + 5 )) PID
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

#define FRAMES 6
#define SITES (1u << 16)
#define PTRS (1u << 22)

typedef struct {
  void *pc[FRAMES];
  int n;
  long blocks, bytes, chunk;
} site_t;

typedef struct {
  void *p;
  uint32_t site;
  uint32_t size;
} ptr_t;

static site_t *sites;
static ptr_t *ptrs;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int busy;
static int ready;

static uint64_t hash_ptr(void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

static uint32_t site_of(void **pc, int n) {
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < n; i++) h = (h ^ (uintptr_t)pc[i]) * 1099511628211ULL;
  for (uint32_t i = 0; i < SITES; i++) {
    site_t *s = &sites[(h + i) & (SITES - 1)];
    if (s->n == 0) {
      memcpy(s->pc, pc, sizeof(void *) * (size_t)n);
      s->n = n;
      return (uint32_t)((h + i) & (SITES - 1));
    }
    if (s->n == n && memcmp(s->pc, pc, sizeof(void *) * (size_t)n) == 0) {
      return (uint32_t)((h + i) & (SITES - 1));
    }
  }
  return 0;
}

/* Tombstone-free open addressing: deletion shifts back (linear probing). */
static void ptr_add(void *p, uint32_t site, size_t size) {
  uint64_t i = hash_ptr(p) & (PTRS - 1);
  while (ptrs[i].p != NULL) i = (i + 1) & (PTRS - 1);
  ptrs[i] = (ptr_t){p, site, (uint32_t)size};
  site_t *s = &sites[site];
  s->blocks++;
  s->bytes += (long)size;
  s->chunk += (long)malloc_usable_size(p) + 8;
}

static void ptr_del(void *p) {
  uint64_t i = hash_ptr(p) & (PTRS - 1);
  while (ptrs[i].p != p) {
    if (ptrs[i].p == NULL) return;
    i = (i + 1) & (PTRS - 1);
  }
  site_t *s = &sites[ptrs[i].site];
  s->blocks--;
  s->bytes -= ptrs[i].size;
  s->chunk -= (long)malloc_usable_size(p) + 8;
  ptrs[i].p = NULL;
  uint64_t j = i;
  for (;;) {
    j = (j + 1) & (PTRS - 1);
    if (ptrs[j].p == NULL) break;
    uint64_t k = hash_ptr(ptrs[j].p) & (PTRS - 1);
    if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
      ptrs[i] = ptrs[j];
      ptrs[j].p = NULL;
      i = j;
    }
  }
}

static void note_alloc(void *p, size_t size) {
  if (!ready || p == NULL || busy) return;
  busy = 1;
  void *pc[FRAMES + 2];
  int n = backtrace(pc, FRAMES + 2);
  n = n > 2 ? n - 2 : 0; /* skip note_alloc and the wrapper */
  pthread_mutex_lock(&lock);
  ptr_add(p, site_of(pc + 2, n), size);
  pthread_mutex_unlock(&lock);
  busy = 0;
}

/* busy: a free from inside this census (the dumper's own stdio, the
 * unwinder) is of a block it never counted, and must not take the lock the
 * dumper holds. */
static void note_free(void *p) {
  if (!ready || p == NULL || busy) return;
  pthread_mutex_lock(&lock);
  ptr_del(p);
  pthread_mutex_unlock(&lock);
}

static void dump(void) {
  char path[256];
  const char *out = getenv("MCOUNT_OUT");
  static int seq;
  snprintf(path, sizeof(path), "%s.%d", out ? out : "/tmp/mcount", seq++);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  busy = 1;
  pthread_mutex_lock(&lock);
  for (uint32_t i = 0; i < SITES; i++) {
    site_t *s = &sites[i];
    if (s->n == 0 || s->blocks == 0) continue;
    dprintf(fd, "%ld %ld %ld", s->blocks, s->bytes, s->chunk);
    for (int f = 0; f < s->n; f++) {
      Dl_info di;
      if (dladdr(s->pc[f], &di) && di.dli_fname != NULL) {
        dprintf(fd, " %s+0x%lx", di.dli_fname,
                (unsigned long)((char *)s->pc[f] - (char *)di.dli_fbase) - 1);
      } else {
        dprintf(fd, " ?%p", s->pc[f]);
      }
    }
    dprintf(fd, "\n");
  }
  struct mallinfo2 mi = mallinfo2();
  dprintf(fd, "# arena %zu hblkhd %zu uordblks %zu fordblks %zu keepcost %zu\n", mi.arena,
          mi.hblkhd, mi.uordblks, mi.fordblks, mi.keepcost);
  pthread_mutex_unlock(&lock);
  busy = 0;
  close(fd);
}

/* The signal only raises a flag: the census is written by a thread of its
 * own, never inside a handler that may have interrupted malloc's locks. */
static volatile sig_atomic_t wanted;

static void on_signal(int sig) {
  (void)sig;
  wanted = 1;
}

static void *dumper(void *arg) {
  (void)arg;
  busy = 1;
  for (;;) {
    usleep(50 * 1000);
    if (wanted) {
      wanted = 0;
      dump();
    }
  }
  return NULL;
}

__attribute__((constructor)) static void init(void) {
  busy = 1;
  void *pc[2];
  backtrace(pc, 2); /* loads libgcc_s now, not inside a malloc */
  sites = __libc_calloc(SITES, sizeof(site_t));
  ptrs = __libc_calloc(PTRS, sizeof(ptr_t));
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGRTMIN + 5, &sa, NULL);
  pthread_t t;
  pthread_create(&t, NULL, dumper, NULL);
  busy = 0;
  ready = sites != NULL && ptrs != NULL;
}

void *malloc(size_t n) {
  void *p = __libc_malloc(n);
  note_alloc(p, n);
  return p;
}

void *calloc(size_t a, size_t b) {
  void *p = __libc_calloc(a, b);
  note_alloc(p, a * b);
  return p;
}

void *realloc(void *old, size_t n) {
  if (old != NULL) note_free(old);
  void *p = __libc_realloc(old, n);
  if (p == NULL && old != NULL && n != 0) {
    note_alloc(old, malloc_usable_size(old)); /* still live */
    return NULL;
  }
  note_alloc(p, n);
  return p;
}

void free(void *p) {
  note_free(p);
  __libc_free(p);
}

void *memalign(size_t a, size_t n) {
  void *p = __libc_memalign(a, n);
  note_alloc(p, n);
  return p;
}

int posix_memalign(void **out, size_t a, size_t n) {
  void *p = __libc_memalign(a, n);
  if (p == NULL) return 12;
  note_alloc(p, n);
  *out = p;
  return 0;
}

void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
