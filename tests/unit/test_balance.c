/* Unit tests for the balancer (balance.h): each policy's distribution,
 * round robin's smoothness, consistent hashing's movement when a server is
 * removed, skipping servers down or ejected, trying them all when all are
 * down, retries, the registry's carry-over across generations and the
 * metrics it renders. Sets are built by hand: no YAML. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/balance.h"
#include "postern/common.h"
#include "postern/config.h"

/* A config holding one set named name, with n servers 127.0.0.1:(port0+i)
 * of the given weights. */
static pst_config_t *make_cfg(const char *name, pst_balance_t policy, const unsigned *weights,
                              size_t n, unsigned port0) {
  pst_config_t *cfg = calloc(1, sizeof(*cfg));
  assert_non_null(cfg);
  cfg->backends = calloc(1, sizeof(*cfg->backends));
  pst_backend_set_conf_t *b = calloc(1, sizeof(*b));
  assert_non_null(cfg->backends);
  assert_non_null(b);
  cfg->backends[0] = b;
  cfg->n_backends = 1;
  b->name = strdup(name);
  b->balance = policy;
  b->check = PST_CHECK_TCP; /* a verdict counts only for a checked server */
  b->retries = 2;
  b->passive_failures = 3;
  b->passive_cooldown_ms = 60000;
  b->rise = 2;
  b->fall = 3;
  b->servers = calloc(n, sizeof(*b->servers));
  b->n_servers = n;
  for (size_t i = 0; i < n; i++) {
    char text[64], err[128];
    snprintf(text, sizeof(text), "127.0.0.1:%u", port0 + (unsigned)i);
    assert_int_equal(pst_parse_addr(text, &b->servers[i].addr, err, sizeof(err)), 0);
    b->servers[i].weight = weights[i];
  }
  assert_int_equal(pst_balance_attach(cfg), 0);
  return cfg;
}

static void free_cfg(pst_config_t *cfg) {
  pst_balance_detach(cfg);
  pst_config_free(cfg);
}

static pst_backend_conf_t backend_of(const pst_config_t *cfg) {
  pst_backend_conf_t bc = {.kind = PST_BACKEND_ADDR, .set = cfg->backends[0]};
  bc.addr = cfg->backends[0]->servers[0].addr;
  return bc;
}

/* The index of the server picked (by its port). */
static int pick_index(const pst_backend_conf_t *bc, const char *ip, pst_pick_t *p, unsigned port0) {
  const pst_backend_conf_t *s = pst_balance_pick(bc, ip, p);
  assert_non_null(s);
  assert_ptr_not_equal(s, bc);
  unsigned port = (unsigned)atoi(strrchr(s->addr.text, ':') + 1);
  return (int)(port - port0);
}

static void test_round_robin_smooth(void **state) {
  static const unsigned w[] = {5, 1, 1};
  pst_config_t *cfg = make_cfg("rr", PST_BALANCE_ROUND_ROBIN, w, 3, 9000);
  pst_backend_conf_t bc = backend_of(cfg);
  /* nginx's sequence for 5,1,1: the heavy server never takes a burst. */
  static const int want[] = {0, 0, 1, 0, 2, 0, 0};
  int counts[3] = {0};
  for (int i = 0; i < 700; i++) {
    pst_pick_t p;
    int k = pick_index(&bc, NULL, &p, 9000);
    if (i < 7) assert_int_equal(k, want[i]);
    counts[k]++;
    pst_balance_done(&p);
  }
  assert_int_equal(counts[0], 500);
  assert_int_equal(counts[1], 100);
  assert_int_equal(counts[2], 100);
  free_cfg(cfg);
}

static void test_least_connections(void **state) {
  static const unsigned w[] = {2, 1, 1};
  pst_config_t *cfg = make_cfg("lc", PST_BALANCE_LEAST_CONN, w, 3, 9100);
  pst_backend_conf_t bc = backend_of(cfg);
  pst_pick_t held[8];
  int counts[3] = {0};
  /* Held leases: the weight-2 server takes twice the others. */
  for (int i = 0; i < 8; i++) counts[pick_index(&bc, NULL, &held[i], 9100)]++;
  assert_int_equal(counts[0], 4);
  assert_int_equal(counts[1], 2);
  assert_int_equal(counts[2], 2);
  /* A lease that ends makes its server the least loaded. */
  int freed = -1;
  for (int i = 0; i < 8 && freed < 0; i++) {
    if (held[i].idx == 2) {
      pst_balance_done(&held[i]);
      freed = i;
    }
  }
  pst_pick_t p;
  assert_int_equal(pick_index(&bc, NULL, &p, 9100), 2);
  pst_balance_done(&p);
  pst_balance_done(&p); /* idempotent */
  for (int i = 0; i < 8; i++) pst_balance_done(&held[i]);
  /* Sequential requests (nothing held) still go round. */
  int seq[3] = {0};
  for (int i = 0; i < 300; i++) {
    seq[pick_index(&bc, NULL, &p, 9100)]++;
    pst_balance_done(&p);
  }
  assert_int_equal(seq[0], 100);
  assert_int_equal(seq[1], 100);
  free_cfg(cfg);
}

static void client_ip(int i, char *ip, size_t len) {
  snprintf(ip, len, "10.%d.%d.%d", i % 7, (i / 7) % 250, i % 250);
}

static void test_client_ip_consistent(void **state) {
  static const unsigned w[] = {1, 1, 1};
  static int before[3000];
  pst_config_t *cfg = make_cfg("ch", PST_BALANCE_CLIENT_IP, w, 3, 9200);
  pst_backend_conf_t bc = backend_of(cfg);
  int counts[3] = {0};
  char ip[32];
  for (int i = 0; i < 3000; i++) {
    pst_pick_t p, again;
    client_ip(i, ip, sizeof(ip));
    before[i] = pick_index(&bc, ip, &p, 9200);
    assert_int_equal(pick_index(&bc, ip, &again, 9200), before[i]); /* stable */
    counts[before[i]]++;
    pst_balance_done(&p);
    pst_balance_done(&again);
  }
  for (int i = 0; i < 3; i++) {
    assert_true(counts[i] > 3000 / 3 * 7 / 10);
    assert_true(counts[i] < 3000 / 3 * 13 / 10);
  }
  /* The next generation removes server 1: only its clients move. */
  pst_config_t *cfg2 = make_cfg("ch", PST_BALANCE_CLIENT_IP, w, 3, 9200);
  pst_balance_detach(cfg2);
  pst_backend_set_conf_t *b2 = cfg2->backends[0];
  b2->servers[1] = b2->servers[2];
  b2->n_servers = 2;
  assert_int_equal(pst_balance_attach(cfg2), 0);
  /* The old generation no longer sends anyone to the removed server. */
  assert_false(pst_balance_usable(cfg->backends[0], 1));
  free_cfg(cfg);
  pst_backend_conf_t bc2 = backend_of(cfg2);
  int moved = 0;
  for (int i = 0; i < 3000; i++) {
    pst_pick_t p;
    client_ip(i, ip, sizeof(ip));
    int k = pick_index(&bc2, ip, &p, 9200);
    if (k != before[i]) moved++;
    assert_true(before[i] == 1 || k == before[i]);
    pst_balance_done(&p);
  }
  assert_int_equal(moved, counts[1]);
  free_cfg(cfg2);
}

static void match_srv(const pst_srv_check_t *c, void *arg) {
  const char **want = arg; /* {backend, server, found} */
  if (strcmp(c->backend, want[0]) == 0 && strcmp(c->server, want[1]) == 0) {
    want[2] = (const char *)c->srv;
  }
}

static pst_srv_t *entry(const char *name, unsigned port) {
  char server[32];
  snprintf(server, sizeof(server), "127.0.0.1:%u", port);
  const char *want[3] = {name, server, NULL};
  pst_balance_each(match_srv, want);
  assert_non_null(want[2]);
  return (pst_srv_t *)want[2];
}

static void test_skip_down_and_all_down(void **state) {
  static const unsigned w[] = {1, 1, 1};
  pst_config_t *cfg = make_cfg("down", PST_BALANCE_ROUND_ROBIN, w, 3, 9300);
  pst_backend_conf_t bc = backend_of(cfg);
  pst_balance_set_up(entry("down", 9301), 0, "down", "127.0.0.1:9301", "test");
  assert_false(pst_balance_usable(cfg->backends[0], 1));
  for (int i = 0; i < 30; i++) {
    pst_pick_t p;
    assert_int_not_equal(pick_index(&bc, NULL, &p, 9300), 1);
    pst_balance_done(&p);
  }
  /* Every server down: they are all still tried, in turn. */
  pst_balance_set_up(entry("down", 9300), 0, "down", "127.0.0.1:9300", "test");
  pst_balance_set_up(entry("down", 9302), 0, "down", "127.0.0.1:9302", "test");
  int counts[3] = {0};
  for (int i = 0; i < 30; i++) {
    pst_pick_t p;
    counts[pick_index(&bc, NULL, &p, 9300)]++;
    pst_balance_done(&p);
  }
  assert_int_equal(counts[0], 10);
  assert_int_equal(counts[1], 10);
  /* Up again. */
  pst_balance_set_up(entry("down", 9301), 1, "down", "127.0.0.1:9301", "test");
  for (int i = 0; i < 5; i++) {
    pst_pick_t p;
    assert_int_equal(pick_index(&bc, NULL, &p, 9300), 1);
    pst_balance_done(&p);
  }
  free_cfg(cfg);
}

static void test_retries_and_passive(void **state) {
  static const unsigned w[] = {1, 1, 1, 1};
  pst_config_t *cfg = make_cfg("retry", PST_BALANCE_ROUND_ROBIN, w, 4, 9400);
  pst_backend_conf_t bc = backend_of(cfg);
  pst_pick_t p;
  int seen[4] = {0};
  seen[pick_index(&bc, NULL, &p, 9400)] = 1;
  /* retries 2: three attempts share the connect budget. */
  uint64_t ms = pst_balance_connect_ms(&p, 3000);
  assert_true(ms > 900 && ms <= 1000);
  /* retries: 2 -> two more servers, each a new one, then no more. */
  for (int r = 0; r < 2; r++) {
    const pst_backend_conf_t *s = pst_balance_next(&p, 1, 60000);
    assert_non_null(s);
    int k = atoi(strrchr(s->addr.text, ':') + 1) - 9400;
    assert_int_equal(seen[k], 0);
    seen[k] = 1;
  }
  assert_true(pst_balance_connect_ms(&p, 60000) > 59000); /* the last one: the rest */
  assert_null(pst_balance_next(&p, 1, 60000));
  pst_balance_done(&p);
  /* A stale pooled connection: the same server again, no retry used. */
  int k = pick_index(&bc, NULL, &p, 9400);
  const pst_backend_conf_t *s = pst_balance_next(&p, 0, 60000);
  assert_int_equal(atoi(strrchr(s->addr.text, ':') + 1) - 9400, k);
  pst_balance_done(&p);
  /* A spent budget: no retry. */
  pick_index(&bc, NULL, &p, 9400);
  assert_null(pst_balance_next(&p, 1, 0));
  /* Passive: 3 connect failures in a row eject the server. */
  for (int i = 0; i < 3; i++) {
    pst_pick_t f = {0};
    do {
      pst_balance_done(&f);
      pick_index(&bc, NULL, &f, 9400);
    } while (f.idx != 3);
    pst_balance_connected(&f, -111);
    pst_balance_done(&f);
  }
  assert_false(pst_balance_usable(cfg->backends[0], 3));
  for (int i = 0; i < 20; i++) {
    pick_index(&bc, NULL, &p, 9400);
    assert_int_not_equal(p.idx, 3);
    pst_balance_done(&p);
  }
  /* 5xx in a row likewise; a success in between ends the run. */
  for (int i = 0; i < 4; i++) {
    pst_pick_t f = {0};
    do {
      pst_balance_done(&f);
      pick_index(&bc, NULL, &f, 9400);
    } while (f.idx != 2);
    pst_balance_response(&f, i == 1 ? 200 : 503);
    pst_balance_done(&f);
  }
  assert_true(pst_balance_usable(cfg->backends[0], 2));
  free_cfg(cfg);
}

static void test_reload_keeps_state_and_render(void **state) {
  static const unsigned w[] = {1, 1};
  pst_config_t *old = make_cfg("keep", PST_BALANCE_ROUND_ROBIN, w, 2, 9500);
  pst_balance_set_up(entry("keep", 9501), 0, "keep", "127.0.0.1:9501", "status 500");
  /* The next generation names the same servers: the state carries over. */
  pst_config_t *cfg = make_cfg("keep", PST_BALANCE_ROUND_ROBIN, w, 2, 9500);
  free_cfg(old);
  assert_false(pst_balance_usable(cfg->backends[0], 1));
  assert_true(pst_balance_usable(cfg->backends[0], 0));
  pst_buf_t out = {0};
  assert_int_equal(pst_health_render(&out), 0);
  assert_int_equal(pst_buf_append(&out, "", 1), 0);
  const char *text = pst_buf_head(&out);
  assert_non_null(strstr(text, "# TYPE postern_backend_server_up gauge\n"));
  assert_non_null(
      strstr(text, "postern_backend_server_up{backend=\"keep\",server=\"127.0.0.1:9501\"} 0\n"));
  assert_non_null(
      strstr(text, "postern_backend_server_up{backend=\"keep\",server=\"127.0.0.1:9500\"} 1\n"));
  assert_non_null(strstr(text, "# TYPE postern_backend_server_state_changes_total counter\n"));
  assert_non_null(strstr(text,
                         "postern_backend_server_state_changes_total{backend=\"keep\","
                         "server=\"127.0.0.1:9501\"} 1\n"));
  pst_buf_free(&out);
  free_cfg(cfg);
  /* No generation holds them: not rendered any more. */
  assert_int_equal(pst_health_render(&out), 0);
  assert_int_equal(pst_buf_append(&out, "", 1), 0);
  assert_null(strstr(pst_buf_head(&out), "backend=\"keep\""));
  pst_buf_free(&out);
}

static void collect_path(const pst_srv_check_t *c, void *arg) {
  if (strcmp(c->backend, "drop") == 0) memcpy(arg, c->path, sizeof(c->path));
}

/* A config that never goes live (a refused or superseded reload) leaves
 * nothing of itself: its servers get back the running config's check. */
static void test_dropped_config_restores_check(void **state) {
  static const unsigned w[] = {1};
  pst_config_t *live = make_cfg("drop", PST_BALANCE_ROUND_ROBIN, w, 1, 9600);
  /* The same server, checked elsewhere; attached, then dropped. */
  pst_config_t *tmp = make_cfg("drop", PST_BALANCE_ROUND_ROBIN, w, 1, 9600);
  char path[sizeof(((pst_srv_check_t *)0)->path)] = "";
  pst_balance_each(collect_path, path);
  assert_string_equal(path, "/");
  free(tmp->backends[0]->check_path);
  tmp->backends[0]->check_path = strdup("/elsewhere");
  pst_balance_detach(tmp);
  assert_int_equal(pst_balance_attach(tmp), 0);
  pst_balance_each(collect_path, path);
  assert_string_equal(path, "/elsewhere");
  free_cfg(tmp);
  pst_balance_each(collect_path, path);
  assert_string_equal(path, "/");
  free_cfg(live);
}

static void test_no_set(void **state) {
  pst_backend_conf_t info = {.kind = PST_BACKEND_BUILTIN_INFO};
  pst_pick_t p;
  assert_ptr_equal(pst_balance_pick(&info, "1.2.3.4", &p), &info);
  assert_null(p.set);
  assert_null(pst_balance_next(&p, 1, 1000));
  pst_balance_connected(&p, -1);
  pst_balance_response(&p, 500);
  pst_balance_done(&p);
  assert_string_equal(pst_balance_server(&p), "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_robin_smooth),
      cmocka_unit_test(test_dropped_config_restores_check),
      cmocka_unit_test(test_least_connections),
      cmocka_unit_test(test_client_ip_consistent),
      cmocka_unit_test(test_skip_down_and_all_down),
      cmocka_unit_test(test_retries_and_passive),
      cmocka_unit_test(test_reload_keeps_state_and_render),
      cmocka_unit_test(test_no_set),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
