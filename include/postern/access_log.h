/* postern: the access log of http mode: one line per request, off by
 * default, to stderr or a file (listener key access_log).
 *
 * Lines never block a worker's loop on the file: each worker appends them
 * to a buffer per log file, and the loop hands what gathered to libuv's
 * file-system threads once per turn (pst_access_log_flush), one write
 * in flight per file and worker. What a file cannot take fast enough is
 * bounded (PST_ACCESS_LOG_BUFFER per file and worker) and dropped, counted
 * (pst_access_log_dropped) and reported once per minute at most. */
#ifndef POSTERN_ACCESS_LOG_H
#define POSTERN_ACCESS_LOG_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "postern/app-t.h"
#include "postern/config-t.h"
#include "postern/http-t.h"

/* Lines waiting for one file in one worker, at most. */
#define PST_ACCESS_LOG_BUFFER (1024 * 1024)

/* An open log file, shared (refcounted) by the generation that opened it
 * and by the writers with lines for it; closed with the last reference. */
typedef struct pst_access_file_s pst_access_file_t;

/* One worker's writer. */
typedef struct pst_access_log_s pst_access_log_t;

/* Opens the access log named by a listener's access_log key: "stderr" is
 * fd 2 (never closed), a path is opened for appending (created 0640, and
 * given to the owner of pst_access_file_set_owner when postern made it as
 * root), or, when a file of another generation has it open already, shared
 * (a reload keeps writing where the running generation writes; SIGUSR1
 * reopens). In check mode (pst_access_file_check_mode) a missing file is
 * not created: *out is NULL and the result says whether the effective user
 * could create it (write and search on its directory).
 * *out gets the file (one reference) or NULL when path is NULL (no log).
 * Returns 0, or -errno (then *out is NULL). */
int pst_access_file_open(const char *path, pst_access_file_t **out);

/* `postern -t`: from now on pst_access_file_open creates no file (a check
 * run as root would otherwise leave root's files where the user must
 * write). Main thread, before any generation is built. */
void pst_access_file_check_mode(void);

/* Started as root with user:: files pst_access_file_open creates while
 * still root are given to uid:gid (fchown), so that a reopen after the
 * drop (SIGUSR1) can open them; files that exist are left as they are.
 * Main thread, before any generation is built. */
void pst_access_file_set_owner(uid_t uid, gid_t gid);

/* Reopens every access log file by its path (SIGUSR1, after logrotate
 * renamed them): the new file takes the old one's descriptor number
 * (dup3), so writers never notice and no line is lost; lines written before
 * land in the renamed file, lines after in the new one. Blocks on open(2):
 * run it off the event loops (the main loop hands it to the thread pool).
 * Thread-safe. *reopened gets how many were reopened.
 * Returns 0, or the first failure as -errno with its path and cause in err
 * (a file that cannot be reopened keeps writing to the one it had). */
int pst_access_file_reopen_all(unsigned *reopened, char *err, size_t errlen);

/* SIGUSR1, logrotate's convention: pst_access_file_reopen_all on loop's
 * thread pool (open(2) may block; no loop waits for it), the outcome logged
 * when it ends. A request while one runs makes one more run after it, so
 * a rename that happened during the run is not missed. Main loop only; at
 * shutdown, pst_access_reopen_stop. */
void pst_access_reopen_request(uv_loop_t *loop);

/* No further reopen starts (one running finishes). Main loop only. */
void pst_access_reopen_stop(void);

/* Takes or drops a reference; the last drop closes the file. Thread-safe.
 * NULL allowed. */
pst_access_file_t *pst_access_file_ref(pst_access_file_t *f);
void pst_access_file_unref(pst_access_file_t *f);

/* Creates a worker's writer on loop. Returns NULL when out of memory. */
pst_access_log_t *pst_access_log_new(uv_loop_t *loop);

/* Queues one line for a finished request of the connection h: time,
 * client, SNI, protocol ("h2", "http/1.1"), method, authority, path,
 * status, request and response body bytes, duration since t_start_ns
 * (uv_hrtime), backend. Does nothing when the listener has no access log.
 * req may be NULL (a request refused before it was parsed). */
void pst_access_log(const pst_host_t *h, const char *proto, const pst_http_request_t *req,
                    int status, uint64_t bytes_in, uint64_t bytes_out, uint64_t t_start_ns);

/* A JSON access log line is at most this long (a longer one is dropped
 * rather than cut into invalid JSON). */
#define PST_ACCESS_LINE_MAX 8192

/* Formats one access log line (as pst_access_log describes) into line
 * (size bytes), text or JSON (docs/config.md names the fields), ending with
 * a newline. ms is the request's duration. Returns the length, -ENOSPC when
 * a JSON line does not fit (a text line is cut instead), or -EINVAL when
 * formatting failed. Exposed for tests. */
int pst_access_log_format(char *line, size_t size, pst_log_format_t format, const pst_host_t *h,
                          const char *proto, const pst_http_request_t *req, int status,
                          uint64_t bytes_in, uint64_t bytes_out, double ms);

/* Starts writing what gathered, for every file without a write in flight.
 * The worker calls it once per loop turn. */
void pst_access_log_flush(pst_access_log_t *al);

/* Lines this writer had to drop since it was created. */
uint64_t pst_access_log_dropped(const pst_access_log_t *al);

/* Frees the writer once its loop has ended (no write in flight; lines still
 * queued are written synchronously first). NULL allowed. */
void pst_access_log_free(pst_access_log_t *al);

#endif
