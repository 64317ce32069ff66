/* postern: unit tests for the service manager notifications (src/notify.c):
 * the messages systemd waits for survive a manager that is briefly behind,
 * and every address NOTIFY_SOCKET may name is accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "postern/notify.h"

/* A manager: a datagram socket bound to the abstract name "@" + name, its
 * NOTIFY_SOCKET set. Returns the socket. */
static int manager(const char *name) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  size_t n = strlen(name);
  assert_true(n + 1 <= sizeof(a.sun_path));
  memcpy(a.sun_path + 1, name, n);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, len), 0);
  char env[sizeof(a.sun_path) + 2];
  snprintf(env, sizeof(env), "@%s", name);
  assert_int_equal(setenv("NOTIFY_SOCKET", env, 1), 0);
  return fd;
}

/* The next message, or "" after 1 s. */
static const char *next_msg(int fd, char *buf, size_t size) {
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ssize_t n = recv(fd, buf, size - 1, 0);
  buf[n < 0 ? 0 : n] = '\0';
  return buf;
}

/* An abstract name that fills sun_path (108 bytes with its leading NUL,
 * which NOTIFY_SOCKET writes as '@') is a valid address. */
static void test_abstract_name_fills_sun_path(void **state) {
  (void)state;
  char name[sizeof(((struct sockaddr_un *)0)->sun_path)];
  int k = snprintf(name, sizeof(name), "pst-%d-", (int)getpid());
  memset(name + k, 'n', sizeof(name) - 1 - (size_t)k);
  name[sizeof(name) - 1] = '\0'; /* 107 bytes, 108 with the '@' */
  assert_int_equal(strlen(name), 107);
  int m = manager(name);
  assert_int_equal(pst_notify_init(), 0);
  assert_true(pst_notify_enabled());
  assert_int_equal(pst_notify("READY=1"), 0);
  char buf[256];
  assert_string_equal(next_msg(m, buf, sizeof(buf)), "READY=1");
  pst_notify_close();
  close(m);
}

static void *read_one_later(void *arg) {
  int fd = *(int *)arg;
  usleep(30000);
  char buf[64];
  (void)!recv(fd, buf, sizeof(buf), 0);
  return NULL;
}

/* A manager whose queue is full for a moment: a status line is dropped at
 * once, READY=1 waits for the room the manager makes and arrives. */
static void test_ready_waits_for_a_busy_manager(void **state) {
  (void)state;
  char name[32];
  snprintf(name, sizeof(name), "pst-notify-busy-%d", (int)getpid());
  int m = manager(name);
  assert_int_equal(pst_notify_init(), 0);
  int sent = 0, rc;
  while ((rc = pst_notify("STATUS=filling %d", sent)) == 0) {
    sent++;
    assert_true(sent < 100000);
  }
  assert_int_equal(rc, -EAGAIN); /* STATUS alone: dropped, not waited for */
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, read_one_later, &m), 0);
  assert_int_equal(pst_notify("READY=1\nSTATUS=serving"), 0);
  pthread_join(t, NULL);
  char buf[256];
  for (int i = 0; i < sent - 1; i++) assert_string_not_equal(next_msg(m, buf, sizeof(buf)), "");
  assert_string_equal(next_msg(m, buf, sizeof(buf)), "READY=1\nSTATUS=serving");
  pst_notify_close();
  close(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_abstract_name_fills_sun_path),
      cmocka_unit_test(test_ready_waits_for_a_busy_manager),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
