/* Unit tests for `watch: true`: where changes to a file can come from
 * (symlink chains, Kubernetes Secret volumes), file identities, and the
 * watcher itself on a real loop: one callback per burst of writes, none for
 * unrelated files or for touches that change nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "postern/watch.h"

static char dir[] = "/tmp/postern-test-watch-XXXXXX";

static int setup(void **state) { return mkdtemp(dir) == NULL ? -1 : 0; }

static int teardown(void **state) {
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* dir/rel, in a static rotating buffer (several may be used at once). */
static const char *at(const char *rel) {
  static char bufs[8][512];
  static int n;
  char *b = bufs[n++ % 8];
  snprintf(b, 512, "%s/%s", dir, rel);
  return b;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int has_target(const pst_watch_target_t *t, size_t n, const char *d, const char *name) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(t[i].dir, d) == 0 && strcmp(t[i].name, name) == 0) return 1;
  }
  return 0;
}

static void test_targets_plain_and_relative(void **state) {
  pst_watch_target_t *t;
  size_t n;
  assert_int_equal(pst_watch_targets("/etc/postern/site.pem", &t, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(t[0].dir, "/etc/postern");
  assert_string_equal(t[0].name, "site.pem");
  pst_watch_targets_free(t, n);

  assert_int_equal(pst_watch_targets("site.pem", &t, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(t[0].dir, ".");
  pst_watch_targets_free(t, n);

  assert_int_equal(pst_watch_targets("/site.pem", &t, &n), 0);
  assert_string_equal(t[0].dir, "/");
  pst_watch_targets_free(t, n);
}

/* A Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..2024_v1. */
static void make_secret(const char *vol, const char *version) {
  char p[512], q[600];
  mkdir(vol, 0755);
  snprintf(p, sizeof(p), "%s/%s", vol, version);
  mkdir(p, 0755);
  snprintf(q, sizeof(q), "%s/tls.crt", p);
  write_file(q, "v1");
  snprintf(p, sizeof(p), "%s/..data", vol);
  assert_int_equal(symlink(version, p), 0);
  snprintf(p, sizeof(p), "%s/tls.crt", vol);
  assert_int_equal(symlink("..data/tls.crt", p), 0);
}

static void test_targets_kubernetes_secret(void **state) {
  const char *vol = at("secret");
  make_secret(vol, "..2024_v1");
  pst_watch_target_t *t;
  size_t n;
  assert_int_equal(pst_watch_targets(at("secret/tls.crt"), &t, &n), 0);
  assert_true(has_target(t, n, vol, "tls.crt"));
  assert_true(has_target(t, n, vol, "..data")); /* the swap renames over this entry */
  assert_true(has_target(t, n, vol, "..2024_v1"));
  assert_true(has_target(t, n, at("secret/..data"), "tls.crt"));
  pst_watch_targets_free(t, n);
}

static void test_targets_certbot_chain(void **state) {
  /* live/site/cert.pem -> ../../archive/site/cert1.pem */
  mkdir(at("le"), 0755);
  mkdir(at("le/live"), 0755);
  mkdir(at("le/live/site"), 0755);
  mkdir(at("le/archive"), 0755);
  mkdir(at("le/archive/site"), 0755);
  write_file(at("le/archive/site/cert1.pem"), "x");
  assert_int_equal(symlink("../../archive/site/cert1.pem", at("le/live/site/cert.pem")), 0);
  pst_watch_target_t *t;
  size_t n;
  assert_int_equal(pst_watch_targets(at("le/live/site/cert.pem"), &t, &n), 0);
  assert_int_equal(n, 2);
  assert_true(has_target(t, n, at("le/live/site"), "cert.pem"));
  assert_true(has_target(t, n, at("le/live/site/../../archive/site"), "cert1.pem"));
  pst_watch_targets_free(t, n);
}

static void test_targets_symlink_loop_ends(void **state) {
  assert_int_equal(symlink("loop-b", at("loop-a")), 0);
  assert_int_equal(symlink("loop-a", at("loop-b")), 0);
  pst_watch_target_t *t;
  size_t n;
  assert_int_equal(pst_watch_targets(at("loop-a"), &t, &n), 0);
  assert_int_equal(n, 2);
  pst_watch_targets_free(t, n);
}

static void test_file_ids(void **state) {
  pst_file_id_t a, b;
  const char *f = at("id.pem");
  write_file(f, "one");
  pst_file_id_get(f, &a);
  pst_file_id_get(f, &b);
  assert_int_equal(a.err, 0);
  assert_true(pst_file_id_equal(&a, &b));
  write_file(f, "three"); /* rewritten in place */
  pst_file_id_get(f, &b);
  assert_false(pst_file_id_equal(&a, &b));
  write_file(at("id.pem.new"), "three");
  assert_int_equal(rename(at("id.pem.new"), f), 0); /* replaced by rename */
  pst_file_id_get(f, &a);
  assert_false(pst_file_id_equal(&a, &b));
  pst_file_id_get(at("missing"), &a);
  pst_file_id_get(at("missing"), &b);
  assert_int_equal(a.err, ENOENT);
  assert_true(pst_file_id_equal(&a, &b));
  pst_file_id_get(f, &b);
  assert_false(pst_file_id_equal(&a, &b));
}

static void test_files_list(void **state) {
  pst_watch_files_t f = {0};
  write_file(at("list.pem"), "x");
  assert_int_equal(pst_watch_files_add(&f, at("list.pem"), NULL), 0);
  assert_int_equal(pst_watch_files_add(&f, at("list.pem"), NULL), 0);
  assert_int_equal(f.n, 1);
  pst_file_id_t gone = {.err = ENOENT};
  assert_int_equal(pst_watch_files_add(&f, at("other.pem"), &gone), 0);
  assert_int_equal(f.n, 2);
  assert_int_equal(f.ids[1].err, ENOENT);
  pst_watch_files_free(&f);
  assert_int_equal(f.n, 0);
}

/* Thousands of paths (a configuration with thousands of certificates):
 * each kept once, in the order first added, through the growth of the
 * hash; every duplicate found. */
static void test_files_many(void **state) {
  pst_watch_files_t f = {0};
  pst_file_id_t id = {.err = ENOENT};
  char path[64];
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 5000; i++) {
      snprintf(path, sizeof(path), "/nowhere/leaf/%d.pem", i);
      assert_int_equal(pst_watch_files_add(&f, path, &id), 0);
    }
  }
  assert_int_equal(f.n, 5000);
  for (int i = 0; i < 5000; i += 499) {
    snprintf(path, sizeof(path), "/nowhere/leaf/%d.pem", i);
    assert_string_equal(f.paths[i], path);
  }
  pst_watch_files_free(&f);
  assert_int_equal(f.n, 0);
  assert_null(f.slots);
}

/* ---- the watcher on a real loop ---- */

typedef struct {
  uv_loop_t loop;
  pst_watch_t *w;
  uv_timer_t step;
  int calls;
  char last[512];
  int (*script)(int step); /* does step i; returns nonzero to stop */
  int i;
} run_t;

static run_t *cur;

static void on_change(void *arg, const char *path) {
  run_t *r = arg;
  r->calls++;
  snprintf(r->last, sizeof(r->last), "%s", path);
}

static void on_step(uv_timer_t *t) {
  run_t *r = t->data;
  if (r->script(r->i++)) {
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    pst_watch_close(r->w);
  }
}

/* Watches the files (NULL-terminated), then runs script every 50 ms until
 * it says stop; returns the number of change callbacks. */
static int run_watch(const char *const *files, uint64_t debounce_ms, int (*script)(int)) {
  run_t r;
  memset(&r, 0, sizeof(r));
  cur = &r;
  assert_int_equal(uv_loop_init(&r.loop), 0);
  assert_int_equal(pst_watch_new(&r.loop, debounce_ms, on_change, &r, &r.w), 0);
  pst_watch_files_t f = {0};
  for (size_t i = 0; files[i] != NULL; i++)
    assert_int_equal(pst_watch_files_add(&f, files[i], NULL), 0);
  pst_watch_set(r.w, &f, debounce_ms);
  assert_int_equal(f.n, 0);
  r.script = script;
  uv_timer_init(&r.loop, &r.step);
  r.step.data = &r;
  uv_timer_start(&r.step, on_step, 50, 50);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&r.loop), 0);
  return r.calls;
}

/* Certificate, then key, rewritten 100 ms apart; checked until 800 ms. */
static int script_cert_then_key(int i) {
  if (i == 0) write_file(at("w/site.pem"), "new cert");
  if (i == 2) write_file(at("w/site.key"), "new key");
  return i >= 16;
}

static void test_watch_one_callback_per_burst(void **state) {
  mkdir(at("w"), 0755);
  write_file(at("w/site.pem"), "cert");
  write_file(at("w/site.key"), "key");
  const char *files[] = {at("w/site.pem"), at("w/site.key"), NULL};
  assert_int_equal(run_watch(files, 200, script_cert_then_key), 1);
  assert_string_equal(cur->last, at("w/site.pem"));
}

/* Other files of the same directory (a log, an editor's temporary file)
 * are not looked at. */
static int script_unrelated(int i) {
  if (i == 0) write_file(at("w/postern.log"), "log line");
  if (i == 1) write_file(at("w/site.pem.tmp"), "editor swap file");
  return i >= 8;
}

static void test_watch_ignores_other_files(void **state) {
  mkdir(at("w"), 0755);
  write_file(at("w/site.pem"), "cert");
  const char *files[] = {at("w/site.pem"), NULL};
  assert_int_equal(run_watch(files, 100, script_unrelated), 0);
}

/* An event on the file's own name that changes nothing (opened for
 * writing and closed): the identities match, no reload. */
static int script_no_change(int i) {
  if (i == 0) {
    int fd = open(at("w/same.pem"), O_WRONLY);
    if (fd >= 0) close(fd); /* IN_CLOSE_WRITE, contents and times untouched */
  }
  return i >= 8;
}

static void test_watch_event_without_change(void **state) {
  mkdir(at("w"), 0755);
  write_file(at("w/same.pem"), "cert");
  const char *files[] = {at("w/same.pem"), NULL};
  assert_int_equal(run_watch(files, 100, script_no_change), 0);
}

static int script_secret_swap(int i) {
  if (i == 0) {
    mkdir(at("k/..2024_v2"), 0755);
    write_file(at("k/..2024_v2/tls.crt"), "v2");
    assert_int_equal(symlink("..2024_v2", at("k/..data_tmp")), 0);
    assert_int_equal(rename(at("k/..data_tmp"), at("k/..data")), 0);
    unlink(at("k/..2024_v1/tls.crt"));
    rmdir(at("k/..2024_v1"));
  }
  return i >= 10;
}

static void test_watch_secret_swap(void **state) {
  make_secret(at("k"), "..2024_v1");
  const char *files[] = {at("k/tls.crt"), NULL};
  assert_int_equal(run_watch(files, 150, script_secret_swap), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_targets_plain_and_relative),
      cmocka_unit_test(test_targets_kubernetes_secret),
      cmocka_unit_test(test_targets_certbot_chain),
      cmocka_unit_test(test_targets_symlink_loop_ends),
      cmocka_unit_test(test_file_ids),
      cmocka_unit_test(test_files_list),
      cmocka_unit_test(test_watch_one_callback_per_burst),
      cmocka_unit_test(test_files_many),
      cmocka_unit_test(test_watch_ignores_other_files),
      cmocka_unit_test(test_watch_event_without_change),
      cmocka_unit_test(test_watch_secret_swap),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
