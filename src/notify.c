/* postern: sd_notify(3)'s datagram protocol. See include/postern/notify.h. */
#include "postern/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* systemd reads at most a page or so per message; ours are a few lines. */
#define NOTIFY_MAX 4096

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;

int pst_notify_init(void) {
  const char *name = getenv("NOTIFY_SOCKET");
  if (name == NULL || name[0] == '\0') return 0;
  size_t n = strlen(name);
  if ((name[0] != '/' && name[0] != '@') || n >= sizeof(notify_addr.sun_path)) return -EINVAL;
  memset(&notify_addr, 0, sizeof(notify_addr));
  notify_addr.sun_family = AF_UNIX;
  memcpy(notify_addr.sun_path, name, n);
  /* An abstract address starts with a NUL byte and is exactly as long as
   * its name: no terminator is counted (unix(7)). */
  if (name[0] == '@') notify_addr.sun_path[0] = '\0';
  notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  notify_fd = fd;
  return 0;
}

int pst_notify_enabled(void) { return notify_fd >= 0; }

static int notify_send(const char *msg, size_t len) {
  if (notify_fd < 0) return 0;
  ssize_t n;
  do {
    n = sendto(notify_fd, msg, len, MSG_NOSIGNAL, (const struct sockaddr *)&notify_addr,
               notify_len);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : 0;
}

int pst_notify(const char *fmt, ...) {
  if (notify_fd < 0) return 0;
  char msg[NOTIFY_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(msg)) return -EMSGSIZE;
  return notify_send(msg, (size_t)n);
}

int pst_notify_status(const char *state, const char *text) {
  if (notify_fd < 0) return 0;
  char msg[NOTIFY_MAX];
  int n = snprintf(msg, sizeof(msg), "%sSTATUS=", state);
  if (n < 0 || (size_t)n >= sizeof(msg)) return -EMSGSIZE;
  size_t off = (size_t)n;
  /* A status longer than the message is cut: systemctl shows one line. */
  for (const char *s = text; *s != '\0' && off < sizeof(msg) - 1; s++) {
    unsigned char c = (unsigned char)*s;
    msg[off++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
  }
  return notify_send(msg, off);
}

uint64_t pst_notify_monotonic_usec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void pst_notify_close(void) {
  if (notify_fd >= 0) close(notify_fd);
  notify_fd = -1;
}
