/* postern: the http-mode access log. */
#include "postern/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "postern/gen-t.h"

int pst_access_log_open(const char *path) {
  if (path == NULL) return -1;
  if (strcmp(path, "stderr") == 0) return STDERR_FILENO;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  return fd >= 0 ? fd : -errno;
}

/* Copies s into out, replacing bytes that could break the line (spaces,
 * quotes, controls) so that every field stays one token. */
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

void pst_access_log(pst_conn_t *conn, const char *proto, const pst_http_request_t *req,
                    int status, uint64_t bytes_in, uint64_t bytes_out, uint64_t t_start_ns) {
  int fd = conn->gl->access_fd;
  if (fd < 0) return;
  char line[2048], ts[40], method[32], authority[256], path[1024];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
  double ms = (double)(uv_hrtime() - t_start_ns) / 1e6;
  int len = snprintf(line, sizeof(line),
                     "%s %s sni=%s %s %s %s %s %d in=%llu out=%llu ms=%.1f backend=%s\n", ts,
                     conn->peer, conn->sni[0] ? conn->sni : "-", proto,
                     token(req ? req->method : NULL, method, sizeof(method)),
                     token(req ? req->authority : NULL, authority, sizeof(authority)),
                     token(req ? req->target : NULL, path, sizeof(path)), status,
                     (unsigned long long)bytes_in, (unsigned long long)bytes_out, ms,
                     conn->backend_conf ? conn->backend_conf->addr.text : "-");
  if (len < 0) return;
  if ((size_t)len >= sizeof(line)) {
    len = sizeof(line) - 1;
    line[len - 1] = '\n';
  }
  ssize_t w = write(fd, line, (size_t)len);
  (void)w;
}
