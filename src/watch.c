/* postern: `watch: true`, reloading by itself when a file the configuration
 * depends on changes. See include/postern/watch.h for what is watched and
 * why directories rather than files.
 *
 * Runs on the main loop only. inotify(7) gives one event per write, rename
 * or attribute change, many for one logical update (a certificate and its
 * key written one after the other, a Secret volume's symlink swap, an
 * editor's save); events only (re)start a debounce timer, and the files are
 * compared with what was loaded when it fires. */
#include "postern/watch.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "postern/common.h"
#include "postern/log.h"

/* Every change of a directory entry, and the directory itself going away. */
#define WATCH_MASK                                                                                \
  (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | \
   IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
/* Symlinks followed per path, as the kernel's own limit is 40 and real
 * setups (Kubernetes: two; certbot: two) use few. */
#define WATCH_MAX_LINKS 8
/* A file rewritten without pause still reloads after this many debounce
 * periods. */
#define WATCH_MAX_WAIT_FACTOR 10

/* ---- file identities ---- */

void pst_file_id_get(const char *path, pst_file_id_t *id) {
  struct stat st;
  memset(id, 0, sizeof(*id));
  if (stat(path, &st) != 0) {
    id->err = errno;
    return;
  }
  id->dev = st.st_dev;
  id->ino = st.st_ino;
  id->size = st.st_size;
  id->mtime = st.st_mtim;
  id->ctime = st.st_ctim;
}

int pst_file_id_equal(const pst_file_id_t *a, const pst_file_id_t *b) {
  if (a->err != 0 || b->err != 0) return a->err == b->err;
  return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
         a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
         a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* FNV-1a: the slot of a path in f->slots. */
static size_t files_hash(const char *path) {
  size_t h = (size_t)14695981039346656037ULL;
  for (const unsigned char *p = (const unsigned char *)path; *p != '\0'; p++) {
    h ^= *p;
    h *= (size_t)1099511628211ULL;
  }
  return h;
}

/* The slot that holds path, or the empty slot where it would go. */
static size_t *files_slot(const pst_watch_files_t *f, const char *path) {
  assert(f->n_slots > 0 && (f->n_slots & (f->n_slots - 1)) == 0);
  size_t mask = f->n_slots - 1;
  for (size_t i = files_hash(path) & mask;; i = (i + 1) & mask) {
    size_t *slot = &f->slots[i];
    if (*slot == 0 || strcmp(f->paths[*slot - 1], path) == 0) return slot;
  }
}

/* Room for one more path: the arrays, and the hash kept at most half full.
 * Returns 0 or -ENOMEM (f unchanged but for spare capacity). */
static int files_reserve(pst_watch_files_t *f) {
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 16;
    char **paths = realloc(f->paths, cap * sizeof(*paths));
    if (paths == NULL) return -ENOMEM;
    f->paths = paths;
    pst_file_id_t *ids = realloc(f->ids, cap * sizeof(*ids));
    if (ids == NULL) return -ENOMEM;
    f->ids = ids;
    f->cap = cap;
  }
  if ((f->n + 1) * 2 <= f->n_slots) return 0;
  size_t n_slots = f->n_slots ? f->n_slots * 2 : 64;
  size_t *slots = calloc(n_slots, sizeof(*slots));
  if (slots == NULL) return -ENOMEM;
  free(f->slots);
  f->slots = slots;
  f->n_slots = n_slots;
  for (size_t i = 0; i < f->n; i++) *files_slot(f, f->paths[i]) = i + 1;
  return 0;
}

int pst_watch_files_add(pst_watch_files_t *f, const char *path, const pst_file_id_t *id) {
  if (f->n_slots > 0 && *files_slot(f, path) != 0) return 0;
  int rc = files_reserve(f);
  if (rc != 0) return rc;
  char *copy = strdup(path);
  if (copy == NULL) return -ENOMEM;
  if (id != NULL) {
    f->ids[f->n] = *id;
  } else {
    pst_file_id_get(path, &f->ids[f->n]);
  }
  f->paths[f->n++] = copy;
  *files_slot(f, copy) = f->n;
  return 0;
}

int pst_watch_files_add_config(pst_watch_files_t *f, const pst_config_t *cfg) {
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const pst_listener_conf_t *lc = &cfg->listeners[i];
    for (size_t j = 0; j < lc->n_certs; j++) {
      int rc = pst_watch_files_add(f, lc->certs[j].cert, NULL);
      if (rc == 0) rc = pst_watch_files_add(f, lc->certs[j].key, NULL);
      if (rc == 0 && lc->certs[j].ocsp != NULL)
        rc = pst_watch_files_add(f, lc->certs[j].ocsp, NULL);
      if (rc == 0 && lc->certs[j].ocsp == NULL && lc->ocsp_dir != NULL) {
        /* <ocsp_dir>/<cert file name>.ocsp (gen.c), which may not exist yet. */
        const char *base = strrchr(lc->certs[j].cert, '/');
        base = base != NULL ? base + 1 : lc->certs[j].cert;
        char path[4096];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s.ocsp", lc->ocsp_dir, base) < sizeof(path))
          rc = pst_watch_files_add(f, path, NULL);
      }
      if (rc != 0) return rc;
    }
    const char *more[] = {lc->ca_file, lc->ticket_keys, lc->client_ca_file, lc->intermediates};
    for (size_t k = 0; k < PST_ARRAY_SIZE(more); k++) {
      int rc = more[k] != NULL ? pst_watch_files_add(f, more[k], NULL) : 0;
      if (rc != 0) return rc;
    }
  }
  return 0;
}

void pst_watch_files_free(pst_watch_files_t *f) {
  for (size_t i = 0; i < f->n; i++) free(f->paths[i]);
  free(f->paths);
  free(f->ids);
  free(f->slots);
  memset(f, 0, sizeof(*f));
}

/* ---- where changes come from ---- */

typedef struct {
  pst_watch_target_t *t;
  size_t n;
  int oom;
} targets_t;

static void targets_add(targets_t *ts, const char *dir, size_t dir_len, const char *name) {
  if (ts->oom || name[0] == '\0') return;
  for (size_t i = 0; i < ts->n; i++) {
    if (strlen(ts->t[i].dir) == dir_len && strncmp(ts->t[i].dir, dir, dir_len) == 0 &&
        strcmp(ts->t[i].name, name) == 0) {
      return;
    }
  }
  pst_watch_target_t *t = realloc(ts->t, (ts->n + 1) * sizeof(*t));
  if (t == NULL) {
    ts->oom = 1;
    return;
  }
  ts->t = t;
  char *d = strndup(dir, dir_len), *nm = strdup(name);
  if (d == NULL || nm == NULL) {
    free(d);
    free(nm);
    ts->oom = 1;
    return;
  }
  ts->t[ts->n++] = (pst_watch_target_t){d, nm};
}

/* Splits path (no trailing '/') into its directory ("." for none, "/" for
 * the root) and its last component. */
static const char *split(const char *path, char *dir, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) {
    snprintf(dir, cap, ".");
    return path;
  }
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  snprintf(dir, cap, "%.*s", (int)n, path);
  return slash + 1;
}

static void resolve(targets_t *ts, const char *path_in, int depth) {
  char path[PATH_MAX], dir[PATH_MAX], link[PATH_MAX], next[PATH_MAX];
  if (depth > WATCH_MAX_LINKS || snprintf(path, sizeof(path), "%s", path_in) >= (int)sizeof(path))
    return;
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/') path[--len] = '\0';
  const char *name = split(path, dir, sizeof(dir));
  targets_add(ts, dir, strlen(dir), name);
  /* Symlinked directories on the way ("/secret/..data/tls.crt"): a swap of
   * one of them changes the file as surely as a write. */
  size_t dir_len = strcmp(dir, ".") == 0 ? 0 : strlen(dir);
  for (size_t i = 1; i <= dir_len; i++) {
    if (i < dir_len && dir[i] != '/') continue;
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof(prefix), "%.*s", (int)i, dir);
    struct stat pst;
    if (lstat(prefix, &pst) == 0 && S_ISLNK(pst.st_mode)) resolve(ts, prefix, depth + 1);
  }
  struct stat st;
  if (lstat(path, &st) != 0 || !S_ISLNK(st.st_mode)) return;
  ssize_t n = readlink(path, link, sizeof(link) - 1);
  if (n <= 0) return;
  link[n] = '\0';
  if (link[0] == '/' || strcmp(dir, ".") == 0) {
    snprintf(next, sizeof(next), "%s", link);
  } else if (snprintf(next, sizeof(next), "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, link) >=
             (int)sizeof(next)) {
    return;
  }
  resolve(ts, next, depth + 1);
}

int pst_watch_targets(const char *path, pst_watch_target_t **out, size_t *n) {
  targets_t ts = {NULL, 0, 0};
  resolve(&ts, path, 0);
  if (ts.oom) {
    pst_watch_targets_free(ts.t, ts.n);
    return -ENOMEM;
  }
  *out = ts.t;
  *n = ts.n;
  return 0;
}

void pst_watch_targets_free(pst_watch_target_t *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(t[i].dir);
    free(t[i].name);
  }
  free(t);
}

/* ---- the watcher ---- */

/* One inotify watch: a directory and the entry names in it that matter. */
typedef struct {
  int wd;
  char **names;
  size_t n_names;
} watch_dir_t;

struct pst_watch_s {
  uv_loop_t *loop;
  int fd; /* inotify */
  uv_poll_t poll;
  uv_timer_t timer;
  int open_handles; /* freed when both close callbacks have run */
  uint64_t debounce_ms;
  int pending;       /* an event came; the timer runs */
  uint64_t first_ms; /* loop time of the first event since the last check */
  pst_watch_cb cb;
  void *arg;
  pst_watch_files_t files; /* what was loaded, with identities */
  watch_dir_t *dirs;
  size_t n_dirs;
};

static void dirs_free(watch_dir_t *dirs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < dirs[i].n_names; j++) free(dirs[i].names[j]);
    free(dirs[i].names);
  }
  free(dirs);
}

static watch_dir_t *dirs_find(watch_dir_t *dirs, size_t n, int wd) {
  for (size_t i = 0; i < n; i++) {
    if (dirs[i].wd == wd) return &dirs[i];
  }
  return NULL;
}

/* Adds name under wd to the table (one entry per wd: two paths to the same
 * directory share it). Returns 0 or -ENOMEM. */
static int dirs_add(watch_dir_t **dirs, size_t *n, int wd, const char *name) {
  watch_dir_t *d = dirs_find(*dirs, *n, wd);
  if (d == NULL) {
    watch_dir_t *p = realloc(*dirs, (*n + 1) * sizeof(*p));
    if (p == NULL) return -ENOMEM;
    *dirs = p;
    d = &p[(*n)++];
    *d = (watch_dir_t){wd, NULL, 0};
  }
  for (size_t i = 0; i < d->n_names; i++) {
    if (strcmp(d->names[i], name) == 0) return 0;
  }
  char **names = realloc(d->names, (d->n_names + 1) * sizeof(*names));
  if (names == NULL) return -ENOMEM;
  d->names = names;
  if ((d->names[d->n_names] = strdup(name)) == NULL) return -ENOMEM;
  d->n_names++;
  return 0;
}

/* Watches target's directory; when it does not exist (yet), its parent for
 * the directory's own name, so that creating it is noticed. */
static int watch_target(pst_watch_t *w, watch_dir_t **dirs, size_t *n,
                        const pst_watch_target_t *t) {
  int wd = inotify_add_watch(w->fd, t->dir, WATCH_MASK);
  if (wd >= 0) return dirs_add(dirs, n, wd, t->name);
  if (errno == ENOENT || errno == ENOTDIR) {
    char parent[PATH_MAX];
    const char *name = split(t->dir, parent, sizeof(parent));
    wd = inotify_add_watch(w->fd, parent, WATCH_MASK);
    if (wd >= 0) return dirs_add(dirs, n, wd, name);
  }
  pst_log_debug("watch: cannot watch %s: %s", t->dir, strerror(errno));
  return 0;
}

/* Resolves every file again (a symlink may point elsewhere now) and makes
 * the inotify watches match; watches no longer needed are removed. */
static void watch_rebuild(pst_watch_t *w) {
  watch_dir_t *dirs = NULL;
  size_t n = 0;
  int rc = 0;
  for (size_t i = 0; i < w->files.n && rc == 0; i++) {
    pst_watch_target_t *t = NULL;
    size_t nt = 0;
    rc = pst_watch_targets(w->files.paths[i], &t, &nt);
    for (size_t j = 0; j < nt && rc == 0; j++) rc = watch_target(w, &dirs, &n, &t[j]);
    if (t != NULL) pst_watch_targets_free(t, nt);
  }
  if (rc != 0) pst_log_warn("watch: out of memory: some files are not watched");
  for (size_t i = 0; i < w->n_dirs; i++) {
    if (dirs_find(dirs, n, w->dirs[i].wd) == NULL) inotify_rm_watch(w->fd, w->dirs[i].wd);
  }
  dirs_free(w->dirs, w->n_dirs);
  w->dirs = dirs;
  w->n_dirs = n;
}

static void watch_on_timer(uv_timer_t *t) {
  pst_watch_t *w = PST_CONTAINER_OF(t, pst_watch_t, timer);
  w->pending = 0;
  watch_rebuild(w);
  for (size_t i = 0; i < w->files.n; i++) {
    pst_file_id_t now;
    pst_file_id_get(w->files.paths[i], &now);
    if (!pst_file_id_equal(&now, &w->files.ids[i])) {
      w->cb(w->arg, w->files.paths[i]);
      return;
    }
  }
  pst_log_debug("watch: files touched but unchanged: no reload");
}

/* Debounce (trailing): each event pushes the check back, up to a bound. */
static void watch_schedule(pst_watch_t *w) {
  uint64_t now = uv_now(w->loop);
  if (!w->pending) {
    w->pending = 1;
    w->first_ms = now;
  }
  uint64_t delay = w->debounce_ms;
  uint64_t latest = w->first_ms + w->debounce_ms * WATCH_MAX_WAIT_FACTOR;
  if (now + delay > latest) delay = latest > now ? latest - now : 0;
  uv_timer_start(&w->timer, watch_on_timer, delay, 0);
}

static void watch_on_event(uv_poll_t *p, int status, int events) {
  pst_watch_t *w = PST_CONTAINER_OF(p, pst_watch_t, poll);
  char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
  int relevant = 0;
  for (;;) {
    ssize_t n = read(w->fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (char *q = buf; q < buf + n;) {
      const struct inotify_event *ev = (const struct inotify_event *)q;
      q += sizeof(*ev) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        relevant = 1; /* events were lost: check everything */
        continue;
      }
      watch_dir_t *d = dirs_find(w->dirs, w->n_dirs, ev->wd);
      if (d == NULL) continue; /* a watch removed since */
      if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
        relevant = 1; /* the directory went away: the next check watches anew */
        continue;
      }
      for (size_t i = 0; ev->len > 0 && i < d->n_names && !relevant; i++) {
        if (strcmp(d->names[i], ev->name) == 0) relevant = 1;
      }
    }
  }
  if (relevant) watch_schedule(w);
}

int pst_watch_new(uv_loop_t *loop, uint64_t debounce_ms, pst_watch_cb cb, void *arg,
                  pst_watch_t **out) {
  pst_watch_t *w = calloc(1, sizeof(*w));
  if (w == NULL) return -ENOMEM;
  w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd < 0) {
    int rc = -errno;
    free(w);
    return rc;
  }
  w->loop = loop;
  w->debounce_ms = debounce_ms;
  w->cb = cb;
  w->arg = arg;
  int rc = uv_poll_init(loop, &w->poll, w->fd);
  if (rc != 0) {
    close(w->fd);
    free(w);
    return rc;
  }
  uv_timer_init(loop, &w->timer);
  w->open_handles = 2;
  uv_poll_start(&w->poll, UV_READABLE, watch_on_event);
  *out = w;
  return 0;
}

void pst_watch_set(pst_watch_t *w, pst_watch_files_t *files, uint64_t debounce_ms) {
  pst_watch_files_free(&w->files);
  w->files = *files;
  memset(files, 0, sizeof(*files));
  w->debounce_ms = debounce_ms;
  watch_rebuild(w);
}

static void watch_on_close(uv_handle_t *h) {
  pst_watch_t *w = h->data;
  if (--w->open_handles > 0) return;
  close(w->fd);
  dirs_free(w->dirs, w->n_dirs);
  pst_watch_files_free(&w->files);
  free(w);
}

void pst_watch_close(pst_watch_t *w) {
  if (w == NULL) return;
  w->poll.data = w;
  w->timer.data = w;
  uv_close((uv_handle_t *)&w->poll, watch_on_close);
  uv_close((uv_handle_t *)&w->timer, watch_on_close);
}
