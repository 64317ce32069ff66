/* postern: the http-mode access log: one line per request, off by default,
 * to stderr or a file (listener key access_log). */
#ifndef POSTERN_ACCESS_LOG_H
#define POSTERN_ACCESS_LOG_H

#include <stdint.h>

#include "postern/conn-t.h"
#include "postern/http-t.h"

/* Writes one line for a finished request of conn: time, client, SNI,
 * protocol ("h2", "http/1.1"), method, authority, path, status, request
 * and response body bytes, duration since t_start_ns (uv_hrtime), backend.
 * One write(2) per line, so lines of different workers never interleave.
 * Does nothing when the listener has no access log. req may be NULL (a
 * request refused before it was parsed). */
void pst_access_log(pst_conn_t *conn, const char *proto, const pst_http_request_t *req,
                    int status, uint64_t bytes_in, uint64_t bytes_out, uint64_t t_start_ns);

/* Opens the access log named by a listener's access_log key: "stderr" gives
 * fd 2, a path is opened for appending (created 0640). Returns the fd, -1
 * for no log (path NULL), or -errno. */
int pst_access_log_open(const char *path);

#endif
