/* postern: unit tests for the access log writer (src/access_log.c): lines
 * leave through libuv's file-system threads, never on the loop; a file that
 * does not keep up costs at most PST_ACCESS_LOG_BUFFER per worker, and what
 * did not fit is dropped and counted, never half-written. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "postern/access_log.h"
#include "postern/common.h"
#include "postern/log.h"

static pst_backend_conf_t backend = {.kind = PST_BACKEND_ADDR, .addr = {.text = "127.0.0.1:80"}};

/* A connection as the access log reads it: peer, SNI, route, the files. */
static pst_host_t host_for(pst_access_file_t *f, pst_access_log_t *al) {
  return (pst_host_t){.peer = "192.0.2.7:4242",
                      .peer_ip = "192.0.2.7",
                      .sni = "example.test",
                      .backend = &backend,
                      .access_file = f,
                      .access_log = al};
}

static pst_http_request_t request(void) {
  return (pst_http_request_t){.method = "GET", .target = "/a b\"c", .authority = "example.test"};
}

/* Counts the lines in a file and checks each is whole. */
static size_t count_lines(const char *path) {
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  char line[4096];
  size_t n = 0;
  while (fgets(line, sizeof(line), fp) != NULL) {
    assert_true(strlen(line) > 0 && line[strlen(line) - 1] == '\n');
    assert_non_null(strstr(line, " 192.0.2.7:4242 sni=example.test http/1.1 GET example.test "));
    assert_non_null(strstr(line, " /a_b_c 200 in=1 out=2 "));
    assert_non_null(strstr(line, " backend=127.0.0.1:80\n"));
    n++;
  }
  fclose(fp);
  return n;
}

static void test_lines_reach_the_file(void **state) {
  char path[] = "/tmp/postern-alog-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  pst_access_file_t *f = NULL;
  assert_int_equal(pst_access_file_open(path, &f), 0);
  pst_access_log_t *al = pst_access_log_new(&loop);
  assert_non_null(al);
  pst_host_t h = host_for(f, al);
  pst_http_request_t r = request();
  for (int i = 0; i < 100; i++) pst_access_log(&h, "http/1.1", &r, 200, 1, 2, uv_hrtime());
  assert_int_equal(count_lines(path), 0); /* nothing written on the caller's turn */
  pst_access_log_flush(al);
  uv_run(&loop, UV_RUN_DEFAULT); /* the write runs on a libuv thread */
  assert_int_equal(count_lines(path), 100);
  /* The generation lets go of its file: the writer's lines still go out. */
  pst_access_log(&h, "http/1.1", &r, 200, 1, 2, uv_hrtime());
  pst_access_file_unref(f);
  pst_access_log_flush(al);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(count_lines(path), 101);
  assert_int_equal(pst_access_log_dropped(al), 0);
  pst_access_log_free(al);
  assert_int_equal(uv_loop_close(&loop), 0);
  unlink(path);
}

/* Every field a client controls stays one token on one line: the
 * request's, and also the peer and the server name, which the connection
 * keeps printable (conn.c) but which the line does not take on trust. */
static void test_client_fields_cannot_break_the_line(void **state) {
  char path[] = "/tmp/postern-alog-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  pst_access_file_t *f = NULL;
  assert_int_equal(pst_access_file_open(path, &f), 0);
  pst_access_log_t *al = pst_access_log_new(&loop);
  assert_non_null(al);
  pst_host_t h = host_for(f, al);
  h.peer = "192.0.2.7:1\r\nFORGED";
  h.sni = "a.test\r\n\x1b[2J";
  pst_http_request_t r = {.method = "G\nET", .target = "/\r\nX", .authority = "b\x1b.test"};
  pst_access_log(&h, "http/1.1", &r, 200, 1, 2, uv_hrtime());
  pst_access_log_flush(al);
  uv_run(&loop, UV_RUN_DEFAULT);
  char buf[4096];
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  assert_non_null(strstr(buf, " 192.0.2.7:1__FORGED sni=a.test___[2J http/1.1 G_ET b_.test /__X "));
  assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* one line */
  assert_null(strchr(buf, '\r'));
  assert_null(strchr(buf, '\x1b'));
  pst_access_file_unref(f);
  pst_access_log_free(al);
  assert_int_equal(uv_loop_close(&loop), 0);
  unlink(path);
}

/* log_format json: one object per line, every client-controlled string
 * escaped so that the line stays valid JSON and one line. */
static void test_json_line_escapes_hostile_fields(void **state) {
  pst_listener_conf_t lc = {.name = "pub"};
  pst_host_t h = host_for(NULL, NULL);
  h.lc = &lc;
  h.id = 7;
  h.sni = "a\"b\\c\r\n\x1b\xff";
  pst_http_request_t r = {.method = "GET", .target = "/x\ty", .authority = "b\x01.test"};
  char line[PST_ACCESS_LINE_MAX];
  int n = pst_access_log_format(line, sizeof(line), PST_LOG_JSON, &h, "h2", &r, 200, 1, 2, 3.25);
  assert_true(n > 0 && (size_t)n == strlen(line));
  assert_ptr_equal(strchr(line, '\n'), line + n - 1);
  assert_non_null(strstr(line,
                         "\"listener\":\"pub\",\"conn\":7,\"peer\":\"192.0.2.7:4242\","
                         "\"sni\":\"a\\\"b\\\\c\\r\\n\\u001b\\u00ff\",\"proto\":\"h2\","
                         "\"method\":\"GET\",\"authority\":\"b\\u0001.test\","
                         "\"path\":\"/x\\ty\",\"status\":200,\"bytes_in\":1,\"bytes_out\":2,"
                         "\"duration_ms\":3.2,\"backend\":\"127.0.0.1:80\"}\n"));
  assert_true(strncmp(line, "{\"time\":\"", 9) == 0);
  /* A request refused before it was parsed, without a server name: nulls. */
  h.sni = NULL;
  n = pst_access_log_format(line, sizeof(line), PST_LOG_JSON, &h, "http/1.1", NULL, 400, 0, 0, 0);
  assert_true(n > 0);
  assert_non_null(strstr(line,
                         "\"sni\":null,\"proto\":\"http/1.1\",\"method\":null,"
                         "\"authority\":null,\"path\":null,\"status\":400,"));
}

/* A JSON line carries every field whole (docs/config.md): a long target is
 * written in full when the line fits in PST_ACCESS_LINE_MAX, and a line
 * that does not fit is dropped and counted, never cut. */
static void test_json_long_fields_whole_or_dropped(void **state) {
  char path[] = "/tmp/postern-alog-json-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  pst_listener_conf_t lc = {.name = "pub"};
  pst_host_t h = host_for(NULL, NULL);
  h.lc = &lc;
  static char target[6001];
  memset(target, '"', 2000); /* 4000 bytes escaped */
  target[2000] = '\0';
  pst_http_request_t r = {.method = "GET", .target = target, .authority = "example.test"};
  static char line[PST_ACCESS_LINE_MAX], want[5000];
  int n = pst_access_log_format(line, sizeof(line), PST_LOG_JSON, &h, "h2", &r, 200, 1, 2, 3.25);
  assert_true(n > 0);
  size_t w = 0;
  w += (size_t)snprintf(want, sizeof(want), "\"path\":\"");
  for (int i = 0; i < 2000; i++) w += (size_t)snprintf(want + w, sizeof(want) - w, "\\\"");
  snprintf(want + w, sizeof(want) - w, "\",\"status\":200,");
  assert_non_null(strstr(line, want));
  assert_ptr_equal(strchr(line, '\n'), line + n - 1);

  memset(target, '"', 6000); /* 12000 bytes escaped: no room */
  target[6000] = '\0';
  assert_int_equal(
      pst_access_log_format(line, sizeof(line), PST_LOG_JSON, &h, "h2", &r, 200, 1, 2, 3.25),
      -ENOSPC);
  /* Through the writer: dropped, counted. */
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  pst_access_file_t *f = NULL;
  assert_int_equal(pst_access_file_open(path, &f), 0);
  pst_access_log_t *al = pst_access_log_new(&loop);
  h = host_for(f, al);
  h.lc = &lc;
  pst_log_set_format(PST_LOG_JSON);
  pst_access_log(&h, "h2", &r, 200, 1, 2, uv_hrtime());
  r.target = "/short";
  pst_access_log(&h, "h2", &r, 200, 1, 2, uv_hrtime());
  pst_log_set_format(PST_LOG_TEXT);
  pst_access_log_flush(al);
  uv_run(&loop, UV_RUN_DEFAULT);
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  assert_non_null(fgets(line, sizeof(line), fp));
  assert_non_null(strstr(line, "\"path\":\"/short\""));
  assert_null(fgets(line, sizeof(line), fp)); /* the long one: not written at all */
  fclose(fp);
  assert_int_equal(pst_access_log_dropped(al), 1);
  pst_access_file_unref(f);
  pst_access_log_free(al);
  assert_int_equal(uv_loop_close(&loop), 0);
  unlink(path);
}

/* A value too long is cut between escapes, never inside one. */
static void test_json_escape_cuts_whole_escapes(void **state) {
  char out[8];
  assert_string_equal(pst_json_escape("ab\x01", out, sizeof(out)), "ab");
  assert_string_equal(pst_json_escape("abcde\"", out, sizeof(out)), "abcde\\\"");
  assert_string_equal(pst_json_escape("abcdef\"", out, sizeof(out)), "abcdef");
  assert_string_equal(pst_json_escape(NULL, out, sizeof(out)), "");
  assert_string_equal(pst_json_escape("\x7f", out, sizeof(out)), "\\u007f");
}

/* Two generations naming one path share the open file; a reopen after a
 * rename sends the next lines to a new file under the old name. */
static void test_shared_and_reopened(void **state) {
  char path[] = "/tmp/postern-alog-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  char rotated[64];
  snprintf(rotated, sizeof(rotated), "%s.1", path);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  pst_access_file_t *f = NULL, *g = NULL;
  assert_int_equal(pst_access_file_open(path, &f), 0);
  assert_int_equal(pst_access_file_open(path, &g), 0);
  assert_ptr_equal(f, g);
  pst_access_file_unref(g);
  pst_access_log_t *al = pst_access_log_new(&loop);
  pst_host_t h = host_for(f, al);
  pst_http_request_t r = request();
  for (int i = 0; i < 10; i++) pst_access_log(&h, "http/1.1", &r, 200, 1, 2, uv_hrtime());
  pst_access_log_flush(al);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(rename(path, rotated), 0);
  for (int i = 0; i < 5; i++) pst_access_log(&h, "http/1.1", &r, 200, 1, 2, uv_hrtime());
  pst_access_log_flush(al);
  uv_run(&loop, UV_RUN_DEFAULT); /* before the reopen: still the renamed file */
  unsigned n = 0;
  char err[256];
  assert_int_equal(pst_access_file_reopen_all(&n, err, sizeof(err)), 0);
  assert_int_equal(n, 1);
  for (int i = 0; i < 7; i++) pst_access_log(&h, "http/1.1", &r, 200, 1, 2, uv_hrtime());
  pst_access_log_flush(al);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(count_lines(rotated), 15);
  assert_int_equal(count_lines(path), 7);
  pst_access_file_unref(f);
  pst_access_log_free(al);
  assert_int_equal(uv_loop_close(&loop), 0);
  /* Closed with its last reference: nothing left to reopen. */
  assert_int_equal(pst_access_file_reopen_all(&n, err, sizeof(err)), 0);
  assert_int_equal(n, 0);
  unlink(path);
  unlink(rotated);
}

/* The descriptor this process has open on path, or -1. */
static int fd_of(const char *path) {
  for (int fd = 3; fd < 1024; fd++) {
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n < 0) continue;
    target[n] = '\0';
    if (strcmp(target, path) == 0) return fd;
  }
  return -1;
}

static void test_bounded_when_the_file_stalls(void **state) {
  /* A pipe nobody reads stands for a file that does not keep up: the first
   * write blocks a file-system thread, never the loop, and the lines after
   * it are bounded. An access log must be a regular file, so the pipe is
   * put under the open file's descriptor number afterwards, as a reopen
   * would. */
  int p[2];
  assert_int_equal(pipe(p), 0);
  char path[] = "/tmp/pst-alog-stall-XXXXXX";
  int tmp = mkstemp(path);
  assert_true(tmp >= 0);
  close(tmp);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  pst_access_file_t *f = NULL;
  assert_int_equal(pst_access_file_open(path, &f), 0);
  int fd = fd_of(path);
  assert_true(fd >= 0);
  assert_int_equal(dup2(p[1], fd), fd);
  unlink(path);
  pst_access_log_t *al = pst_access_log_new(&loop);
  pst_host_t h = host_for(f, al);
  pst_http_request_t r = request();
  size_t logged = 0;
  for (int turn = 0; turn < 40; turn++) {
    for (int i = 0; i < 1000; i++, logged++) {
      pst_access_log(&h, "http/1.1", &r, 200, 1, 2, uv_hrtime());
    }
    pst_access_log_flush(al);
    uv_run(&loop, UV_RUN_NOWAIT); /* returns: the loop is never blocked */
  }
  uint64_t dropped = pst_access_log_dropped(al);
  assert_true(dropped > 0);
  assert_true(dropped < logged);
  /* Drain the pipe until the writer is done; every line that was kept
   * arrives whole. */
  close(p[1]);
  pst_access_file_unref(f);
  assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
  size_t got = 0, bytes = 0;
  char buf[65536];
  uint64_t deadline = uv_hrtime() + 5000000000ull;
  for (;;) {
    ssize_t n = read(p[0], buf, sizeof(buf));
    for (ssize_t i = 0; i < n; i++) got += buf[i] == '\n';
    if (n > 0) bytes += (size_t)n;
    pst_access_log_flush(al);
    int active = uv_run(&loop, UV_RUN_NOWAIT);
    if (!active && n <= 0) break;
    if (n <= 0) usleep(1000);
    assert_true(uv_hrtime() < deadline);
  }
  assert_int_equal(got, logged - dropped);
  /* At most one buffer waited beside the write in flight. */
  assert_true(bytes <= 2 * PST_ACCESS_LOG_BUFFER + 65536);
  pst_access_log_free(al);
  assert_int_equal(uv_loop_close(&loop), 0);
  close(p[0]);
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "pst_access_file_open blocked on a FIFO\n";
  (void)!write(2, msg, sizeof(msg) - 1);
  _exit(1);
}

/* An access_log path naming a FIFO: refused at once, with or without a
 * reader, rather than blocking the start, a reload or postern -t in
 * open(2) (or writing lines into a pipe). */
static void test_fifo_refused_without_blocking(void **state) {
  (void)state;
  char dir[] = "/tmp/pst-alog-fifo-XXXXXX", path[64];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/fifo", dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  signal(SIGALRM, on_alarm);
  alarm(5);
  pst_access_file_t *f = (pst_access_file_t *)1;
  assert_int_equal(pst_access_file_open(path, &f), PST_ENOTFILE); /* no reader */
  assert_null(f);
  int reader = open(path, O_RDONLY | O_NONBLOCK);
  assert_true(reader >= 0);
  assert_int_equal(pst_access_file_open(path, &f), PST_ENOTFILE); /* a reader */
  assert_null(f);
  alarm(0);
  assert_string_equal(pst_strerror(PST_ENOTFILE), "not a regular file");
  close(reader);
  unlink(path);
  rmdir(dir);
}

static void test_no_file_no_line(void **state) {
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  pst_access_file_t *f = (pst_access_file_t *)1;
  assert_int_equal(pst_access_file_open(NULL, &f), 0);
  assert_null(f);
  pst_access_log_t *al = pst_access_log_new(&loop);
  pst_host_t h = host_for(NULL, al);
  pst_access_log(&h, "h2", NULL, 400, 0, 0, uv_hrtime());
  pst_access_log_flush(al);
  assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
  pst_access_log_free(al);
  assert_int_equal(uv_loop_close(&loop), 0);
  /* A path that cannot be opened says why, as a negative errno. */
  assert_int_equal(pst_access_file_open("/nonexistent-dir/x.log", &f), -ENOENT);
  assert_null(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines_reach_the_file),
      cmocka_unit_test(test_client_fields_cannot_break_the_line),
      cmocka_unit_test(test_bounded_when_the_file_stalls),
      cmocka_unit_test(test_no_file_no_line),
      cmocka_unit_test(test_fifo_refused_without_blocking),
      cmocka_unit_test(test_json_line_escapes_hostile_fields),
      cmocka_unit_test(test_json_escape_cuts_whole_escapes),
      cmocka_unit_test(test_json_long_fields_whole_or_dropped),
      cmocka_unit_test(test_shared_and_reopened),
  };
  return cmocka_run_group_tests_name("access_log", tests, NULL, NULL);
}
