/* postern: the http-mode access log (see access_log.h). */
#include "postern/access_log.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "postern/buf.h"
#include "postern/common.h"
#include "postern/log.h"
#include "postern/priv.h"

/* Drops are reported at most this often, per worker. */
#define ALOG_WARN_MS 60000

struct pst_access_file_s {
  atomic_uint refs;
  int fd;     /* stays the same number for the file's life: a reopen dup3()s over it */
  char *path; /* NULL for stderr */
  struct pst_access_file_s *next; /* in open_files, while path != NULL */
};

/* Every open log file with a path: a new generation naming the same path
 * shares the open file (so a reload after the drop to an unprivileged user
 * need not open it again), and SIGUSR1 reopens them all
 * (pst_access_file_reopen_all). Taken only when a generation is built or
 * freed and at a reopen: never per line. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static pst_access_file_t *open_files;

/* The lines one worker has for one file. */
typedef struct alog_out_s {
  struct alog_out_s *next;
  pst_access_log_t *al;
  pst_access_file_t *file; /* one reference while the entry exists */
  pst_buf_t pending;       /* lines gathered since the last write started */
  pst_buf_t writing;       /* the bytes of the write in flight */
  uv_fs_t req;
  int busy; /* a write is in flight */
} alog_out_t;

struct pst_access_log_s {
  uv_loop_t *loop;
  alog_out_t *outs;
  uint64_t dropped;
  uint64_t warned_ms;      /* loop time of the last drop warning */
  uint64_t dropped_warned; /* drops already reported */
};

/* What pst_access_file_open does with a missing file (set once on the
 * main thread before any generation is built, read-only afterwards). */
static int alog_no_create;         /* postern -t: never create */
static uid_t alog_uid = (uid_t)-1; /* the owner of files created as root, */
static gid_t alog_gid = (gid_t)-1; /* or -1: left as created */

void pst_access_file_check_mode(void) { alog_no_create = 1; }

void pst_access_file_set_owner(uid_t uid, gid_t gid) {
  alog_uid = uid;
  alog_gid = gid;
}

/* ---- files ---- */

/* Whether the effective user may create a file in path's directory
 * (write and search). Returns 0 or -errno. */
static int alog_can_create(const char *path) {
  char dir[PATH_MAX];
  pst_priv_dir_of(path, dir, sizeof(dir));
  return faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) == 0 ? 0 : -errno;
}

/* open(2) for a log file, never blocking: O_NONBLOCK, so that a FIFO
 * without a reader fails (ENXIO) instead of holding up a start, a reload or
 * postern -t, then fstat(2): anything but a regular file is refused (a
 * FIFO with a reader, a device). O_NONBLOCK is cleared again: it means
 * nothing for a regular file, but the descriptor is written by libuv's
 * threads, which expect blocking writes. Returns a descriptor or -errno
 * (PST_ENOTFILE for a file of another type). */
static int alog_open_file(const char *path, int flags, mode_t mode) {
  int fd = open(path, flags | O_NONBLOCK, mode);
  if (fd < 0) return errno == ENXIO ? PST_ENOTFILE : -errno;
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) != 0) {
    rc = -errno;
  } else if (!S_ISREG(st.st_mode)) {
    rc = PST_ENOTFILE;
  } else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
    rc = -errno;
  }
  if (rc == 0) return fd;
  close(fd);
  return rc;
}

/* Opens path for appending into *fd. In check mode a missing file is not
 * created: *fd is -1 and the result says whether it could be. Returns 0 or
 * -errno. */
static int alog_open_path(const char *path, int *fd) {
  int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY;
  int r;
  *fd = -1;
  if (alog_no_create) {
    r = alog_open_file(path, flags, 0);
    if (r == -ENOENT) return alog_can_create(path);
  } else if (alog_uid == (uid_t)-1 || geteuid() != 0) {
    r = alog_open_file(path, flags | O_CREAT, 0640);
  } else {
    /* Root, about to become user: a file made now is given to that user,
     * so that a reopen after the drop (SIGUSR1) can open it. O_EXCL tells
     * a file made here from one that was there (left as it is). */
    r = -EAGAIN;
    for (int tries = 0; tries < 2 && r == -EAGAIN; tries++) {
      r = alog_open_file(path, flags | O_CREAT | O_EXCL, 0640);
      if (r >= 0 && fchown(r, alog_uid, alog_gid) != 0) {
        int e = -errno;
        close(r);
        return e;
      }
      if (r != -EEXIST) break;
      r = alog_open_file(path, flags, 0);
      if (r == -ENOENT) r = -EAGAIN; /* removed between the two opens: again */
    }
  }
  if (r < 0) return r;
  *fd = r;
  return 0;
}

/* Takes a reference on f unless its last one is being dropped (refs 0, not
 * yet unlinked from open_files). Returns 1 when taken. Under open_lock. */
static int alog_try_ref(pst_access_file_t *f) {
  unsigned refs = atomic_load(&f->refs);
  while (refs > 0 && !atomic_compare_exchange_weak(&f->refs, &refs, refs + 1)) {
  }
  return refs > 0;
}

/* The open file for path, with one more reference, or NULL. A file whose
 * last reference is being dropped (refs 0, not yet unlinked) is skipped. */
static pst_access_file_t *alog_find(const char *path) {
  for (pst_access_file_t *f = open_files; f != NULL; f = f->next) {
    if (strcmp(f->path, path) == 0 && alog_try_ref(f)) return f;
  }
  return NULL;
}

int pst_access_file_open(const char *path, pst_access_file_t **out) {
  *out = NULL;
  if (path == NULL) return 0;
  pst_access_file_t *f = calloc(1, sizeof(*f));
  if (f == NULL) return -ENOMEM;
  atomic_init(&f->refs, 1);
  f->fd = STDERR_FILENO;
  if (strcmp(path, "stderr") == 0) {
    *out = f;
    return 0;
  }
  /* Shared when another generation has it open already. */
  pthread_mutex_lock(&open_lock);
  pst_access_file_t *have = alog_find(path);
  pthread_mutex_unlock(&open_lock);
  if (have != NULL) {
    free(f);
    *out = have;
    return 0;
  }
  /* Opened without the lock: open(2) may block (a slow or remote disk), and
   * a worker dropping a generation's file takes the lock meanwhile. */
  int fd = -1;
  f->path = strdup(path);
  int rc = f->path == NULL ? -ENOMEM : alog_open_path(path, &fd);
  if (rc != 0 || fd < 0) { /* fd < 0 alone: check mode, no file yet */
    free(f->path);
    free(f);
    return rc;
  }
  f->fd = fd;
  /* Another thread may have opened the same path meanwhile (a reload's
   * build beside a start's is not possible today, but the registry must
   * hold one file per path): the first one in wins. */
  pthread_mutex_lock(&open_lock);
  have = alog_find(path);
  if (have == NULL) {
    f->next = open_files;
    open_files = f;
  }
  pthread_mutex_unlock(&open_lock);
  if (have != NULL) {
    close(fd);
    free(f->path);
    free(f);
    f = have;
  }
  *out = f;
  return 0;
}

pst_access_file_t *pst_access_file_ref(pst_access_file_t *f) {
  if (f != NULL) atomic_fetch_add(&f->refs, 1);
  return f;
}

void pst_access_file_unref(pst_access_file_t *f) {
  if (f == NULL) return;
  unsigned prev = atomic_fetch_sub(&f->refs, 1);
  assert(prev > 0);
  if (prev != 1) return;
  if (f->path != NULL) {
    pthread_mutex_lock(&open_lock);
    for (pst_access_file_t **p = &open_files; *p != NULL; p = &(*p)->next) {
      if (*p == f) {
        *p = f->next;
        break;
      }
    }
    pthread_mutex_unlock(&open_lock);
    close(f->fd);
  }
  free(f->path);
  free(f);
}

/* Opens f's path again and puts it under f's descriptor number. Returns 0
 * or -errno. */
static int alog_reopen(pst_access_file_t *f) {
  int fd;
  int rc = alog_open_path(f->path, &fd);
  if (rc != 0) return rc;
  /* dup3 puts the new file under the old number in one step: a write in
   * flight on a file-system thread lands whole in the old file or whole in
   * the new one, and nothing holding the number ever sees it closed. */
  rc = dup3(fd, f->fd, O_CLOEXEC) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

int pst_access_file_reopen_all(unsigned *reopened, char *err, size_t errlen) {
  *reopened = 0;
  if (errlen > 0) err[0] = '\0';
  /* The files are taken (one reference each) under the lock and opened
   * without it: an open(2) that blocks (a slow or remote disk) must not
   * hold up a worker dropping a generation's file meanwhile. */
  pthread_mutex_lock(&open_lock);
  size_t n = 0;
  for (pst_access_file_t *f = open_files; f != NULL; f = f->next) n++;
  pst_access_file_t **files = calloc(n + 1, sizeof(*files));
  size_t k = 0;
  for (pst_access_file_t *f = open_files; files != NULL && f != NULL; f = f->next) {
    if (alog_try_ref(f)) files[k++] = f; /* else being closed: nothing to reopen */
  }
  pthread_mutex_unlock(&open_lock);
  if (files == NULL) return -ENOMEM;
  int first = 0;
  for (size_t i = 0; i < k; i++) {
    int rc = alog_reopen(files[i]);
    if (rc == 0) {
      (*reopened)++;
    } else if (first == 0) {
      first = rc;
      snprintf(err, errlen, "%s: %s%s (its lines still go to the file it had open)", files[i]->path,
               strerror(-rc), pst_priv_hint(rc, "writable"));
    }
    pst_access_file_unref(files[i]);
  }
  free(files);
  return first;
}

/* ---- SIGUSR1 (main loop only) ---- */

typedef enum {
  REOPEN_IDLE = 0,    /* nothing runs */
  REOPEN_RUNNING = 1, /* a reopen runs on the thread pool */
  REOPEN_AGAIN = 2,   /* it runs, and another request came meanwhile */
  REOPEN_STOPPED = 3  /* shutting down: no new run */
} reopen_state_t;

static struct {
  uv_work_t work;
  reopen_state_t state;
  char err[512];
  unsigned reopened;
  int rc;
} reopen;

static void reopen_work(uv_work_t *req) {
  (void)req;
  reopen.rc = pst_access_file_reopen_all(&reopen.reopened, reopen.err, sizeof(reopen.err));
}

static void reopen_done(uv_work_t *req, int status) {
  int again = reopen.state == REOPEN_AGAIN;
  if (reopen.state != REOPEN_STOPPED) reopen.state = REOPEN_IDLE;
  if (status != 0) return; /* cancelled: shutting down */
  if (reopen.rc != 0) {
    pst_log_error("SIGUSR1: cannot reopen an access log: %s", reopen.err);
  } else {
    pst_log_info("SIGUSR1: %u access log file%s reopened", reopen.reopened,
                 reopen.reopened == 1 ? "" : "s");
  }
  if (again) pst_access_reopen_request(req->loop);
}

void pst_access_reopen_request(uv_loop_t *loop) {
  switch (reopen.state) {
    case REOPEN_STOPPED: return;
    case REOPEN_RUNNING:
    case REOPEN_AGAIN: reopen.state = REOPEN_AGAIN; return;
    case REOPEN_IDLE: break;
  }
  int rc = uv_queue_work(loop, &reopen.work, reopen_work, reopen_done);
  if (rc != 0) {
    pst_log_error("SIGUSR1: cannot reopen the access logs: %s", uv_strerror(rc));
    return;
  }
  reopen.state = REOPEN_RUNNING;
}

void pst_access_reopen_stop(void) { reopen.state = REOPEN_STOPPED; }

/* ---- writers ---- */

pst_access_log_t *pst_access_log_new(uv_loop_t *loop) {
  pst_access_log_t *al = calloc(1, sizeof(*al));
  if (al != NULL) al->loop = loop;
  return al;
}

uint64_t pst_access_log_dropped(const pst_access_log_t *al) { return al->dropped; }

static void alog_out_free(alog_out_t *o) {
  pst_access_log_t *al = o->al;
  for (alog_out_t **p = &al->outs; *p != NULL; p = &(*p)->next) {
    if (*p == o) {
      *p = o->next;
      break;
    }
  }
  pst_buf_free(&o->pending);
  pst_buf_free(&o->writing);
  pst_access_file_unref(o->file);
  free(o);
}

static void alog_write(alog_out_t *o);

/* The lines in b, for the drop count when a write of b fails. */
static uint64_t alog_lines(pst_buf_t *b) {
  uint64_t n = 0;
  const char *p = pst_buf_head(b);
  for (size_t i = 0; i < b->len; i++) n += p[i] == '\n';
  return n;
}

static void alog_on_write(uv_fs_t *req) {
  alog_out_t *o = PST_CONTAINER_OF(req, alog_out_t, req);
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  o->busy = 0;
  if (n > 0 && (size_t)n < o->writing.len) {
    pst_buf_consume(&o->writing, (size_t)n); /* a short write: the rest goes next */
  } else {
    /* Written, or failed: a log file that fails (disk full) loses those
     * lines rather than holding the worker's memory; each one counts. */
    if (n <= 0) o->al->dropped += alog_lines(&o->writing);
    pst_buf_free(&o->writing);
  }
  alog_write(o);
}

/* Starts the next write of o, or frees o when it has nothing left: a
 * generation's file is closed once its last lines are out. */
static void alog_write(alog_out_t *o) {
  if (o->busy) return;
  if (o->writing.len == 0) {
    if (o->pending.len == 0) {
      alog_out_free(o);
      return;
    }
    o->writing = o->pending;
    memset(&o->pending, 0, sizeof(o->pending));
  }
  uv_buf_t b = uv_buf_init(pst_buf_head(&o->writing), (unsigned)o->writing.len);
  int rc = uv_fs_write(o->al->loop, &o->req, o->file->fd, &b, 1, -1, alog_on_write);
  if (rc != 0) {
    o->al->dropped += alog_lines(&o->writing);
    pst_buf_free(&o->writing);
    return;
  }
  o->busy = 1;
}

void pst_access_log_flush(pst_access_log_t *al) {
  alog_out_t *next;
  for (alog_out_t *o = al->outs; o != NULL; o = next) {
    next = o->next;
    if (!o->busy && o->pending.len > 0) alog_write(o);
  }
  if (al->dropped > al->dropped_warned) {
    uint64_t now = uv_now(al->loop);
    if (al->warned_ms == 0 || now - al->warned_ms >= ALOG_WARN_MS) {
      pst_log_warn("access log: %llu lines dropped: the log file does not keep up",
                   (unsigned long long)(al->dropped - al->dropped_warned));
      al->warned_ms = now;
      al->dropped_warned = al->dropped;
    }
  }
}

void pst_access_log_free(pst_access_log_t *al) {
  if (al == NULL) return;
  while (al->outs != NULL) {
    alog_out_t *o = al->outs;
    assert(!o->busy);
    /* The loop has ended: the last lines go synchronously. */
    pst_buf_t *bufs[2] = {&o->writing, &o->pending};
    for (int i = 0; i < 2; i++) {
      if (bufs[i]->len > 0 && write(o->file->fd, pst_buf_head(bufs[i]), bufs[i]->len) < 0) {
        al->dropped += alog_lines(bufs[i]);
      }
    }
    alog_out_free(o);
  }
  if (al->dropped > al->dropped_warned) {
    pst_log_warn("access log: %llu lines dropped: the log file did not keep up",
                 (unsigned long long)(al->dropped - al->dropped_warned));
  }
  free(al);
}

/* The entry for file f, made when missing. NULL when out of memory. */
static alog_out_t *alog_out(pst_access_log_t *al, pst_access_file_t *f) {
  for (alog_out_t *o = al->outs; o != NULL; o = o->next) {
    if (o->file == f) return o;
  }
  alog_out_t *o = calloc(1, sizeof(*o));
  if (o == NULL) return NULL;
  o->al = al;
  o->file = pst_access_file_ref(f);
  o->next = al->outs;
  al->outs = o;
  return o;
}

/* ---- lines ---- */

/* Copies s into out, replacing bytes that could break the line (spaces,
 * quotes, controls) so that every field stays one token. Every field that
 * comes from a client goes through it: the request's method, authority and
 * target, and also the peer and the server name, which the connection
 * already keeps printable (conn.c), so that this line does not depend on
 * it. */
static const char *token(const char *s, char *out, size_t len) {
  if (s == NULL || *s == '\0') return "-";
  size_t i = 0;
  for (; s[i] != '\0' && i + 1 < len; i++) {
    unsigned char c = (unsigned char)s[i];
    out[i] = (c <= 0x20 || c >= 0x7f || c == '"') ? '_' : (char)c;
  }
  out[i] = '\0';
  return out;
}

/* The connection's verified client certificate, or NULL (also for hosts
 * without the op, as tests make them). */
static const pst_client_cert_t *alog_client_cert(const pst_host_t *h) {
  return h->ops != NULL && h->ops->client_cert != NULL ? h->ops->client_cert(h) : NULL;
}

/* The text line: space-separated tokens. */
static int alog_text(char *line, size_t size, const pst_host_t *h, const char *proto,
                     const pst_http_request_t *req, int status, uint64_t bytes_in,
                     uint64_t bytes_out, double ms) {
  char ts[40], peer[64], sni[256], method[32], authority[256], path[1024], subject[256];
  /* The verified client certificate's subject (tls.client_auth), last and
   * only when there is one, so that other lines keep their tokens. */
  const pst_client_cert_t *c = alog_client_cert(h);
  const char *cc = c != NULL ? c->subject : NULL;
  return snprintf(
      line, size, "%s %s sni=%s %s %s %s %s %d in=%llu out=%llu ms=%.1f backend=%s%s%s\n",
      pst_log_time(ts, sizeof(ts)), token(h->peer, peer, sizeof(peer)),
      token(h->sni, sni, sizeof(sni)), proto,
      token(req ? req->method : NULL, method, sizeof(method)),
      token(req ? req->authority : NULL, authority, sizeof(authority)),
      token(req ? req->target : NULL, path, sizeof(path)), status, (unsigned long long)bytes_in,
      (unsigned long long)bytes_out, ms, h->backend != NULL ? h->backend->addr.text : "-",
      cc ? " client_cert=" : "", cc ? token(cc, subject, sizeof(subject)) : "");
}

/* A JSON line being written into a fixed buffer: every field goes in whole
 * or the line is over its budget, and then dropped, never cut. */
typedef struct {
  char *p;
  size_t size;
  size_t len;
  int over; /* something did not fit: the line is not written */
} jline_t;

static void jl_raw(jline_t *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jl_raw(jline_t *j, const char *fmt, ...) {
  if (j->over) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(j->p + j->len, j->size - j->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= j->size - j->len) {
    j->over = 1;
    return;
  }
  j->len += (size_t)n;
}

/* s as a JSON string, escaped straight into the line; null when nullable
 * and s is absent or empty (no server name, a request refused before it was
 * parsed). */
static void jl_str(jline_t *j, const char *s, int nullable) {
  if (nullable && (s == NULL || s[0] == '\0')) {
    jl_raw(j, "null");
    return;
  }
  if (j->over) return;
  size_t need = pst_json_escaped_len(s);
  if (j->len + need + 2 >= j->size) { /* two quotes, and the NUL */
    j->over = 1;
    return;
  }
  j->p[j->len++] = '"';
  pst_json_escape(s, j->p + j->len, need + 1);
  j->len += need;
  j->p[j->len++] = '"';
  j->p[j->len] = '\0';
}

/* The JSON line: one object, the fields of docs/config.md. Returns its
 * length, or -ENOSPC when it does not fit in size bytes. */
static int alog_json(char *line, size_t size, const pst_host_t *h, const char *proto,
                     const pst_http_request_t *req, int status, uint64_t bytes_in,
                     uint64_t bytes_out, double ms) {
  char ts[40];
  jline_t j = {line, size, 0, 0};
  jl_raw(&j, "{\"time\":\"%s\",\"listener\":", pst_log_time(ts, sizeof(ts)));
  jl_str(&j, h->lc != NULL ? h->lc->name : "", 0);
  jl_raw(&j, ",\"conn\":%llu,\"peer\":", (unsigned long long)h->id);
  jl_str(&j, h->peer, 0);
  jl_raw(&j, ",\"sni\":");
  jl_str(&j, h->sni, 1);
  jl_raw(&j, ",\"proto\":\"%s\",\"method\":", proto);
  jl_str(&j, req ? req->method : NULL, 1);
  jl_raw(&j, ",\"authority\":");
  jl_str(&j, req ? req->authority : NULL, 1);
  jl_raw(&j, ",\"path\":");
  jl_str(&j, req ? req->target : NULL, 1);
  jl_raw(&j,
         ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.1f,\"backend\":",
         status, (unsigned long long)bytes_in, (unsigned long long)bytes_out, ms);
  jl_str(&j, h->backend != NULL ? h->backend->addr.text : "", 0);
  const pst_client_cert_t *cc = alog_client_cert(h);
  if (cc != NULL) {
    jl_raw(&j, ",\"client_cert\":");
    jl_str(&j, cc->subject, 0);
  }
  jl_raw(&j, "}\n");
  return j.over || j.len > INT_MAX ? -ENOSPC : (int)j.len;
}

int pst_access_log_format(char *line, size_t size, pst_log_format_t format, const pst_host_t *h,
                          const char *proto, const pst_http_request_t *req, int status,
                          uint64_t bytes_in, uint64_t bytes_out, double ms) {
  if (format == PST_LOG_JSON)
    return alog_json(line, size, h, proto, req, status, bytes_in, bytes_out, ms);
  int len = alog_text(line, size, h, proto, req, status, bytes_in, bytes_out, ms);
  if (len < 0) return -EINVAL; /* snprintf failed */
  if ((size_t)len >= size) {   /* cut, keeping the newline: its tokens stay tokens */
    len = (int)size - 1;
    line[len - 1] = '\n';
  }
  return len;
}

void pst_access_log(const pst_host_t *h, const char *proto, const pst_http_request_t *req,
                    int status, uint64_t bytes_in, uint64_t bytes_out, uint64_t t_start_ns) {
  if (h->access_file == NULL || h->access_log == NULL) return;
  pst_access_log_t *al = h->access_log;
  alog_out_t *o = alog_out(al, h->access_file);
  if (o == NULL) {
    al->dropped++;
    return;
  }
  char line[PST_ACCESS_LINE_MAX];
  int len = pst_access_log_format(line, sizeof(line), pst_log_format(), h, proto, req, status,
                                  bytes_in, bytes_out, (double)(uv_hrtime() - t_start_ns) / 1e6);
  if (len < 0) { /* a JSON line too long: dropped whole, counted */
    al->dropped++;
    return;
  }
  if (o->pending.len + (size_t)len > PST_ACCESS_LOG_BUFFER ||
      pst_buf_append(&o->pending, line, (size_t)len) != 0) {
    al->dropped++;
  }
}
