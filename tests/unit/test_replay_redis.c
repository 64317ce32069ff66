/* postern: unit tests for the shared strike register's client
 * (src/replay_redis.c) against a real redis-server started here on a free
 * port, without persistence: a claim, its replay, the bound on commands in
 * flight, a cancelled claim, a claim for another store, the timeout, and a
 * Redis that goes away. Skipped when redis-server is not installed. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "postern/metrics.h"
#include "postern/replay_redis.h"

static pid_t redis_pid;
static int redis_port;

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  bind(fd, (struct sockaddr *)&a, sizeof(a));
  getsockname(fd, (struct sockaddr *)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

static int redis_up(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)redis_port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

static int redis_start(void) {
  char port[16];
  snprintf(port, sizeof(port), "%d", redis_port);
  redis_pid = fork();
  if (redis_pid == 0) {
    int null = open("/dev/null", 0);
    dup2(null, 1);
    dup2(null, 2);
    execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", "/tmp", (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 200; i++) {
    if (redis_up()) return 0;
    int st;
    if (waitpid(redis_pid, &st, WNOHANG) == redis_pid) return -1;
    usleep(25000);
  }
  return -1;
}

static void redis_stop(void) {
  if (redis_pid <= 0) return;
  kill(redis_pid, SIGTERM);
  waitpid(redis_pid, NULL, 0);
  redis_pid = 0;
}

/* What a test holds: the loop, the client and its configuration. */
typedef struct {
  uv_loop_t loop;
  pst_replay_redis_t *r;
  pst_replay_store_conf_t conf;
  int results[8];
  int told;
} fix_t;

static fix_t fx;

static void on_result(void *arg, int result) {
  int *slot = arg;
  *slot = result;
  fx.told++;
}

/* Runs the loop until cond() or about ms milliseconds. */
static void run_until(int (*cond)(void), int ms) {
  for (int i = 0; i < ms && !cond(); i++) {
    uv_run(&fx.loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
}

static uint8_t probe_key[PST_REPLAY_KEY_LEN];
static int ready(void) {
  /* A claim succeeds once connected: a fresh random key each time. */
  pst_replay_redis_req_t *req;
  for (int i = 0; i < PST_REPLAY_KEY_LEN; i++) probe_key[i] = (uint8_t)rand();
  int slot = -100;
  if (pst_replay_redis_claim(fx.r, &fx.conf, probe_key, on_result, &slot, &req) != 0) return 0;
  pst_replay_redis_cancel(req);
  return 1;
}

static int idle(void) { return pst_replay_redis_in_flight(fx.r) == 0; }

static int setup(void **state) {
  if (redis_pid <= 0) {
    redis_port = free_port();
    if (redis_start() != 0) return -1;
  }
  memset(&fx, 0, sizeof(fx));
  assert_int_equal(uv_loop_init(&fx.loop), 0);
  fx.r = pst_replay_redis_new(&fx.loop, 7);
  assert_non_null(fx.r);
  fx.conf.store = PST_REPLAY_STORE_REDIS;
  fx.conf.address = "127.0.0.1";
  fx.conf.host = "127.0.0.1";
  fx.conf.port = redis_port;
  fx.conf.key_prefix = "unit:";
  fx.conf.timeout_ms = 500;
  fx.conf.max_in_flight = 2;
  assert_int_equal(pst_replay_redis_configure(fx.r, &fx.conf), 0);
  run_until(ready, 3000);
  run_until(idle, 3000);
  assert_true(idle());
  return 0;
}

static int teardown(void **state) {
  pst_replay_redis_close(fx.r);
  uv_run(&fx.loop, UV_RUN_DEFAULT);
  pst_replay_redis_free(fx.r);
  assert_int_equal(uv_loop_close(&fx.loop), 0);
  return 0;
}

static int all_told(void) { return fx.told >= 2; }

static void test_claim_then_replay(void **state) {
  uint8_t key[PST_REPLAY_KEY_LEN];
  for (int i = 0; i < PST_REPLAY_KEY_LEN; i++) key[i] = (uint8_t)rand();
  pst_replay_redis_req_t *a, *b;
  uint64_t replayed = pst_metric_get(PST_M_EARLY_REDIS_REPLAYED);
  fx.results[0] = fx.results[1] = -100;
  /* Pipelined: both sent before either answer. */
  assert_int_equal(pst_replay_redis_claim(fx.r, &fx.conf, key, on_result, &fx.results[0], &a), 0);
  assert_int_equal(pst_replay_redis_claim(fx.r, &fx.conf, key, on_result, &fx.results[1], &b), 0);
  assert_int_equal(fx.told, 0); /* never told from inside the claim */
  run_until(all_told, 2000);
  assert_int_equal(fx.results[0], PST_REPLAY_REDIS_CLAIMED);
  assert_int_equal(fx.results[1], PST_REPLAY_SEEN);
  assert_int_equal(pst_metric_get(PST_M_EARLY_REDIS_REPLAYED), replayed + 1);
}

static void test_bound_and_cancel(void **state) {
  uint8_t key[PST_REPLAY_KEY_LEN] = {1};
  pst_replay_redis_req_t *a, *b, *c;
  uint64_t unavailable = pst_metric_get(PST_M_EARLY_REDIS_UNAVAILABLE);
  key[1] = (uint8_t)rand();
  assert_int_equal(pst_replay_redis_claim(fx.r, &fx.conf, key, on_result, &fx.results[0], &a), 0);
  key[2] = 1;
  assert_int_equal(pst_replay_redis_claim(fx.r, &fx.conf, key, on_result, &fx.results[1], &b), 0);
  key[2] = 2;
  /* max_in_flight: 2. Backpressure: refused at once, never queued. */
  assert_int_equal(pst_replay_redis_claim(fx.r, &fx.conf, key, on_result, &fx.results[2], &c),
                   -EBUSY);
  assert_int_equal(pst_metric_get(PST_M_EARLY_REDIS_UNAVAILABLE), unavailable + 1);
  assert_int_equal(pst_replay_redis_in_flight(fx.r), 2);
  pst_replay_redis_cancel(a);
  run_until(idle, 2000);
  assert_int_equal(fx.told, 1); /* only b */
  assert_int_equal(fx.results[1], PST_REPLAY_REDIS_CLAIMED);
}

static void test_other_store_fails_closed(void **state) {
  uint8_t key[PST_REPLAY_KEY_LEN] = {2};
  pst_replay_redis_req_t *a;
  pst_replay_store_conf_t other = fx.conf;
  other.key_prefix = "other:";
  assert_int_equal(pst_replay_redis_claim(fx.r, &other, key, on_result, &fx.results[0], &a),
                   -ENOTCONN);
  pst_replay_store_conf_t local = fx.conf;
  local.store = PST_REPLAY_STORE_LOCAL;
  assert_int_equal(pst_replay_redis_configure(fx.r, &local), 0);
  assert_int_equal(pst_replay_redis_claim(fx.r, &fx.conf, key, on_result, &fx.results[0], &a),
                   -ENOTCONN);
  assert_int_equal(fx.told, 0);
}

static int one_told(void) { return fx.told >= 1; }

static void test_timeout_then_redis_gone(void **state) {
  uint8_t key[PST_REPLAY_KEY_LEN] = {3};
  key[1] = (uint8_t)rand();
  pst_replay_redis_req_t *a;
  /* Redis stopped (SIGSTOP): the claim times out after timeout_ms. */
  kill(redis_pid, SIGSTOP);
  uint64_t t0 = uv_hrtime();
  assert_int_equal(pst_replay_redis_claim(fx.r, &fx.conf, key, on_result, &fx.results[0], &a), 0);
  run_until(one_told, 3000);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(fx.results[0], -ETIMEDOUT);
  assert_true(ms >= 400 && ms < 1500);
  /* Still in flight until Redis answers, or the connection is dropped as
   * stuck. */
  assert_int_equal(pst_replay_redis_in_flight(fx.r), 1);
  kill(redis_pid, SIGCONT);
  run_until(idle, 3000);
  assert_int_equal(fx.told, 1);
  /* Gone: claims fail closed at once, then succeed once it is back. */
  redis_stop();
  run_until(idle, 200);
  for (int i = 0; i < 100 && ready(); i++) run_until(idle, 10);
  assert_false(ready());
  assert_int_equal(redis_start(), 0);
  run_until(ready, 5000);
  assert_true(ready());
}

int main(void) {
  if (system("command -v redis-server >/dev/null 2>&1") != 0) {
    printf("redis-server is not installed: skipped\n");
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  srand((unsigned)getpid());
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_claim_then_replay, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bound_and_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_other_store_fails_closed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout_then_redis_gone, setup, teardown),
  };
  int rc = cmocka_run_group_tests_name("replay_redis", tests, NULL, NULL);
  redis_stop();
  return rc;
}
