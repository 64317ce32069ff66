/* A unit test that runs its own binary again in a child with one
 * environment variable set (test_crypto.c, test_rsa_sign.c): the way to
 * test a code path chosen once per process, such as a CPU feature that
 * wolfSSL detects at its first use, with the feature switched off.
 *
 * Include it once per test binary, after <cmocka.h>. */
#ifndef POSTERN_TESTS_CHILD_TEST_UTIL_H
#define POSTERN_TESTS_CHILD_TEST_UTIL_H

#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs /proc/self/exe with var=1 in its environment and no arguments, and
 * fails the test unless it exits with status 0. */
static void rerun_self_with(const char *var) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  assert_true(n > 0);
  self[n] = '\0';
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    setenv(var, "1", 1);
    execl(self, self, (char *)NULL);
    _exit(127);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

#endif
