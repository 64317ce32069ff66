/* postern: sd_notify(3)'s datagram protocol. See include/postern/notify.h. */
#include "postern/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "postern/log.h"

/* systemd reads at most a page or so per message; ours are a few lines. */
#define NOTIFY_MAX 4096

/* How long READY=1, RELOADING=1 and STOPPING=1 wait for room in the
 * manager's queue: long enough for a busy systemd to read, short enough
 * not to hold up the main loop. */
#define NOTIFY_WAIT_MS 100

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;

int pst_notify_init(void) {
  const char *name = getenv("NOTIFY_SOCKET");
  if (name == NULL || name[0] == '\0') return 0;
  size_t n = strlen(name);
  /* A path needs its terminating NUL in sun_path; an abstract name does
   * not (its length is the address length), so it may fill sun_path. */
  size_t room = sizeof(notify_addr.sun_path) - (name[0] == '/');
  if ((name[0] != '/' && name[0] != '@') || n > room) return -EINVAL;
  memset(&notify_addr, 0, sizeof(notify_addr));
  notify_addr.sun_family = AF_UNIX;
  memcpy(notify_addr.sun_path, name, n);
  /* An abstract address starts with a NUL byte and is exactly as long as
   * its name: no terminator is counted (unix(7)). */
  if (name[0] == '@') notify_addr.sun_path[0] = '\0';
  notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
  /* Blocking, with a send timeout: the messages systemd acts on wait for
   * room a little (notify_send); the others are sent with MSG_DONTWAIT. */
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct timeval tv = {0, NOTIFY_WAIT_MS * 1000};
  if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
    int rc = -errno;
    close(fd);
    return rc;
  }
  notify_fd = fd;
  return 0;
}

int pst_notify_enabled(void) { return notify_fd >= 0; }

/* Whether msg (len bytes) has the line var ("READY=1"). */
static int notify_has(const char *msg, size_t len, const char *var) {
  size_t vl = strlen(var);
  for (size_t i = 0; i + vl <= len; i++) {
    if ((i == 0 || msg[i - 1] == '\n') && memcmp(msg + i, var, vl) == 0 &&
        (i + vl == len || msg[i + vl] == '\n')) {
      return 1;
    }
  }
  return 0;
}

/* Sends msg. A manager whose queue is full (it was busy) would lose the
 * message: for READY=1, RELOADING=1 and STOPPING=1, which systemd waits
 * for (a lost READY=1 ends in a start or reload timeout), the send waits
 * for room up to NOTIFY_WAIT_MS (SO_SNDTIMEO); a STATUS-only message is
 * dropped at once instead, it never stalls the loop. A READY=1 that still
 * fails is logged, once per message. */
static int notify_send(const char *msg, size_t len) {
  if (notify_fd < 0) return 0;
  int ready = notify_has(msg, len, "READY=1");
  int wait = ready || notify_has(msg, len, "RELOADING=1") || notify_has(msg, len, "STOPPING=1");
  ssize_t n;
  do {
    n = sendto(notify_fd, msg, len, MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT),
               (const struct sockaddr *)&notify_addr, notify_len);
  } while (n < 0 && errno == EINTR);
  int rc = n < 0 ? -errno : 0;
  if (rc != 0 && ready) {
    pst_log_error("cannot tell the service manager READY=1: %s%s", strerror(-rc),
                  rc == -EAGAIN || rc == -EWOULDBLOCK
                      ? " (its queue stayed full): it may time the start or reload out"
                      : "");
  }
  return rc;
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
