/* postern: `watch: true`: notice when a file the configuration depends on
 * changes (the config itself, certificates, keys, ca_file, the ticket key
 * file) and ask for a reload, once the writes have settled.
 *
 * inotify watches the directory holding each file rather than the file, so
 * that a file replaced by rename (editors, cert-manager, certbot) or reached
 * through a swapped symlink (Kubernetes Secret volumes: tls.crt ->
 * ..data/tls.crt, ..data -> ..2024_01_01_..., swapped by renaming a new
 * ..data over the old one) is seen as well as one written in place. Events
 * only start a debounce timer; when it fires, each file's identity (device,
 * inode, size, times) is compared with the one recorded when it was last
 * loaded, and a reload is asked for only when one differs. */
#ifndef POSTERN_WATCH_H
#define POSTERN_WATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <uv.h>

#include "postern/config-t.h"

/* What a file looked like at one moment (stat(2), following symlinks). */
typedef struct {
  int err; /* 0, or the errno of a failed stat (ENOENT: missing) */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  struct timespec ctime;
} pst_file_id_t;

/* Reads path's identity into *id (id->err set on failure; never fails). */
void pst_file_id_get(const char *path, pst_file_id_t *id);

/* Nonzero when a and b describe the same file with the same contents as far
 * as stat can tell (two failures with the same errno are equal). */
int pst_file_id_equal(const pst_file_id_t *a, const pst_file_id_t *b);

/* The files a configuration depends on, with their identities taken before
 * they were read. */
typedef struct {
  char **paths;
  pst_file_id_t *ids;
  size_t n;
  size_t cap; /* of paths and ids */
  /* Open-addressing hash of paths: slot = 1 + index into paths, 0 = empty.
   * A configuration with 10,000 certificates names 20,000 files: a linear
   * search per added path made every reload spend seconds in strcmp. */
  size_t *slots;
  size_t n_slots; /* 0 or a power of two, at least twice n */
} pst_watch_files_t;

/* Adds path (copied) with identity *id, or with its identity taken now when
 * id is NULL, unless path is already listed. Returns 0 or -ENOMEM. */
int pst_watch_files_add(pst_watch_files_t *f, const char *path, const pst_file_id_t *id);

/* Adds every file cfg names: each certificate and key, each ca_file and
 * each ticket_keys file.
 * The config file itself is added by the caller, before it is read.
 * Returns 0 or -ENOMEM. */
int pst_watch_files_add_config(pst_watch_files_t *f, const pst_config_t *cfg);

/* Frees the lists; *f is empty and reusable afterwards. */
void pst_watch_files_free(pst_watch_files_t *f);

/* A directory to watch and the name in it whose changes matter. */
typedef struct {
  char *dir;
  char *name;
} pst_watch_target_t;

/* Where changes to path can come from: path's own directory entry, and for
 * every symlink met while resolving path (the path itself, or any directory
 * on the way), the symlink's entry in its directory and the entries of what
 * it points to, up to 8 links deep. Relative paths stay relative (to the
 * working directory). Returns 0 with a new array in *out (free with
 * pst_watch_targets_free) and its length in *n, or -ENOMEM. */
int pst_watch_targets(const char *path, pst_watch_target_t **out, size_t *n);

void pst_watch_targets_free(pst_watch_target_t *t, size_t n);

typedef struct pst_watch_s pst_watch_t;

/* Called on the loop's thread with the first file found changed. */
typedef void (*pst_watch_cb)(void *arg, const char *path);

/* Starts watching nothing yet, on loop (the main loop, never a worker's).
 * Changes are reported debounce_ms after the last event (and at the latest
 * ten times that after the first one, so that a file rewritten without end
 * still reloads). Returns 0 and *out, or -errno (inotify_init1) or -ENOMEM. */
int pst_watch_new(uv_loop_t *loop, uint64_t debounce_ms, pst_watch_cb cb, void *arg,
                  pst_watch_t **out);

/* Replaces the watched files and their recorded identities with *files,
 * which is taken over (*files is left empty), and sets the debounce time.
 * Directories that cannot be watched are skipped (logged at debug); a change
 * there is then noticed only with the next event elsewhere. */
void pst_watch_set(pst_watch_t *w, pst_watch_files_t *files, uint64_t debounce_ms);

/* Stops watching and frees w once its handles are closed. */
void pst_watch_close(pst_watch_t *w);

#endif
