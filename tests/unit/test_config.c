/* Unit tests for the configuration module: the full example config, every
 * default, the duration and address parsers, and the exact
 * "file:line:column: key:" prefix of each kind of error. Certificate, key
 * and CA files are empty files in a fresh mkdtemp directory: the config
 * module only checks that they are readable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "postern/common.h"
#include "postern/config.h"

static char g_dir[64];

static const char *const g_files[] = {
    "example.test.chain.pem",
    "example.test.key.pem",
    "wildcard.example.test.chain.pem",
    "wildcard.example.test.key.pem",
    "root.pem",
    "a.pem",
    "a.key",
};

static int group_setup(void **state) {
  char path[256];
  snprintf(g_dir, sizeof(g_dir), "/tmp/pst_test_config.XXXXXX");
  if (mkdtemp(g_dir) == NULL) return -1;
  for (size_t i = 0; i < PST_ARRAY_SIZE(g_files); i++) {
    snprintf(path, sizeof(path), "%s/%s", g_dir, g_files[i]);
    FILE *f = fopen(path, "w");
    if (f == NULL) return -1;
    fputs("placeholder\n", f);
    fclose(f);
  }
  return 0;
}

static int group_teardown(void **state) {
  char path[256];
  for (size_t i = 0; i < PST_ARRAY_SIZE(g_files); i++) {
    snprintf(path, sizeof(path), "%s/%s", g_dir, g_files[i]);
    unlink(path);
  }
  snprintf(path, sizeof(path), "%s/p.yaml", g_dir);
  unlink(path);
  rmdir(g_dir);
  return 0;
}

/* Returns a malloc'ed copy of tmpl with every "$D" replaced by the test
 * directory. */
static char *subst(const char *tmpl) {
  size_t dl = strlen(g_dir), n = 0;
  for (const char *s = tmpl; *s; s++) n += (s[0] == '$' && s[1] == 'D') ? dl : 1;
  char *out = malloc(n + 1), *o = out;
  assert_non_null(out);
  for (const char *s = tmpl; *s; s++) {
    if (s[0] == '$' && s[1] == 'D') {
      memcpy(o, g_dir, dl);
      o += dl;
      s++;
    } else {
      *o++ = *s;
    }
  }
  *o = '\0';
  return out;
}

/* Parses tmpl (after subst) as "t.yaml"; returns the rc and the config. */
static int parse(const char *tmpl, pst_config_t **cfg, char *err, size_t errlen) {
  char *text = subst(tmpl);
  *cfg = NULL;
  int rc = pst_config_parse("t.yaml", text, strlen(text), cfg, err, errlen);
  free(text);
  return rc;
}

static pst_config_t *parse_ok(const char *tmpl) {
  char err[512] = "";
  pst_config_t *cfg;
  int rc = parse(tmpl, &cfg, err, sizeof(err));
  if (rc != 0) print_error("unexpected error: %s\n", err);
  assert_int_equal(rc, 0);
  assert_non_null(cfg);
  return cfg;
}

/* Checks that tmpl fails with an error line starting with prefix. */
static void expect_error(const char *tmpl, const char *prefix) {
  char err[512] = "";
  pst_config_t *cfg;
  int rc = parse(tmpl, &cfg, err, sizeof(err));
  assert_int_equal(rc, PST_ECONFIG);
  assert_null(cfg);
  assert_null(strchr(err, '\n'));
  if (strncmp(err, prefix, strlen(prefix)) != 0) {
    print_error("expected prefix: %s\n     got error: %s\n", prefix, err);
    fail();
  }
}

#define CERT_LINES             \
  "    tls:\n"                 \
  "      certificates:\n"      \
  "        - cert: $D/a.pem\n" \
  "          key: $D/a.key\n"

/* A valid listener as listeners[0], starting at line 2. */
#define LISTENER0                \
  "  - listen: 127.0.0.1:8443\n" \
  "    backend: 127.0.0.1:8080\n" CERT_LINES

static const char full_example[] =
    "workers: auto                     # threads\n"
    "log_level: info                   # error | warn | info | debug\n"
    "shutdown_timeout: 10s\n"
    "listeners:\n"
    "  - name: public\n"
    "    listen: \"127.0.0.1:8443\"      # host:port\n"
    "    mode: tcp\n"
    "    alpn: [h2, http/1.1]          # server preference order\n"
    "    tls:\n"
    "      versions: [tls1.3]\n"
    "      certificates:\n"
    "        - cert: $D/example.test.chain.pem   # leaf first\n"
    "          key: $D/example.test.key.pem\n"
    "        - cert: $D/wildcard.example.test.chain.pem\n"
    "          key: $D/wildcard.example.test.key.pem\n"
    "      default_certificate: example.test   # a name of one certificate\n"
    "      unknown_sni: default\n"
    "      ca_file: $D/root.pem  # optional trust anchors\n"
    "    backend: \"127.0.0.1:8080\"     # default backend\n"
    "    routes:                       # optional\n"
    "      - names: [api.example.test, \"*.api.example.test\"]\n"
    "        backend: \"127.0.0.1:9001\"\n"
    "    timeouts:\n"
    "      handshake: 10s\n"
    "      idle: 60s\n"
    "      backend_connect: 5s\n"
    "    max_connections: 10000        # per worker\n";

static void assert_mark(pst_mark_t m, int line, int column) {
  assert_int_equal(m.line, line);
  assert_int_equal(m.column, column);
}

static void assert_ipv4(const pst_addr_t *a, const char *ip, int port) {
  const struct sockaddr_in *sin = (const void *)&a->ss;
  char buf[INET_ADDRSTRLEN];
  assert_int_equal(sin->sin_family, AF_INET);
  assert_int_equal(a->len, sizeof(struct sockaddr_in));
  assert_string_equal(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)), ip);
  assert_int_equal(ntohs(sin->sin_port), port);
}

static void assert_ipv6(const pst_addr_t *a, const char *ip, int port) {
  const struct sockaddr_in6 *sin6 = (const void *)&a->ss;
  char buf[INET6_ADDRSTRLEN];
  assert_int_equal(sin6->sin6_family, AF_INET6);
  assert_int_equal(a->len, sizeof(struct sockaddr_in6));
  assert_string_equal(inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf)), ip);
  assert_int_equal(ntohs(sin6->sin6_port), port);
}

static char *path_in_dir(const char *file) {
  static char buf[256];
  snprintf(buf, sizeof(buf), "%s/%s", g_dir, file);
  return buf;
}

/* ---- The full example ------------------------------------------------ */

static void test_full_example_top_level(void **state) {
  pst_config_t *cfg = parse_ok(full_example);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  assert_string_equal(cfg->path, "t.yaml");
  assert_int_equal(cfg->workers, ncpu < 1 ? 1 : ncpu);
  assert_int_equal(cfg->log_level, PST_LOG_INFO);
  assert_int_equal(cfg->shutdown_timeout_ms, 10000);
  assert_int_equal(cfg->n_listeners, 1);
  pst_config_free(cfg);
}

static void test_full_example_listener(void **state) {
  pst_config_t *cfg = parse_ok(full_example);
  const pst_listener_conf_t *l = &cfg->listeners[0];
  assert_string_equal(l->name, "public");
  assert_mark(l->mark, 5, 5);
  assert_string_equal(l->listen.text, "127.0.0.1:8443");
  assert_ipv4(&l->listen, "127.0.0.1", 8443);
  assert_mark(l->listen_mark, 6, 13);
  assert_int_equal(l->mode, PST_MODE_TCP);
  assert_int_equal(l->n_alpn, 2);
  assert_string_equal(l->alpn[0], "h2");
  assert_string_equal(l->alpn[1], "http/1.1");
  static const unsigned char wire[] = "\x02h2\x08http/1.1";
  assert_int_equal(l->alpn_wire_len, sizeof(wire) - 1);
  assert_memory_equal(l->alpn_wire, wire, sizeof(wire) - 1);
  assert_int_equal(l->handshake_timeout_ms, 10000);
  assert_int_equal(l->idle_timeout_ms, 60000);
  assert_int_equal(l->backend_connect_timeout_ms, 5000);
  assert_int_equal(l->max_connections, 10000);
  pst_config_free(cfg);
}

static void test_full_example_tls(void **state) {
  pst_config_t *cfg = parse_ok(full_example);
  const pst_listener_conf_t *l = &cfg->listeners[0];
  assert_int_equal(l->versions, PST_TLS13);
  assert_int_equal(l->n_certs, 2);
  assert_string_equal(l->certs[0].cert, path_in_dir("example.test.chain.pem"));
  assert_string_equal(l->certs[0].key, path_in_dir("example.test.key.pem"));
  assert_string_equal(l->certs[1].cert, path_in_dir("wildcard.example.test.chain.pem"));
  assert_string_equal(l->certs[1].key, path_in_dir("wildcard.example.test.key.pem"));
  assert_mark(l->certs[0].mark, 12, 11);
  assert_mark(l->certs[0].cert_mark, 12, 17);
  assert_mark(l->certs[0].key_mark, 13, 16);
  assert_mark(l->certs[1].mark, 14, 11);
  assert_mark(l->certs[1].cert_mark, 14, 17);
  assert_mark(l->certs[1].key_mark, 15, 16);
  assert_string_equal(l->default_certificate, "example.test");
  assert_mark(l->default_certificate_mark, 16, 28);
  assert_int_equal(l->unknown_sni, PST_UNKNOWN_SNI_DEFAULT);
  assert_string_equal(l->ca_file, path_in_dir("root.pem"));
  assert_mark(l->ca_file_mark, 18, 16);
  pst_config_free(cfg);
}

static void test_full_example_backends(void **state) {
  pst_config_t *cfg = parse_ok(full_example);
  const pst_listener_conf_t *l = &cfg->listeners[0];
  assert_int_equal(l->backend.kind, PST_BACKEND_ADDR);
  assert_string_equal(l->backend.addr.text, "127.0.0.1:8080");
  assert_ipv4(&l->backend.addr, "127.0.0.1", 8080);
  assert_mark(l->backend.mark, 19, 14);
  assert_int_equal(l->n_routes, 1);
  const pst_route_conf_t *r = &l->routes[0];
  assert_mark(r->mark, 21, 9);
  assert_int_equal(r->n_names, 2);
  assert_string_equal(r->names[0], "api.example.test");
  assert_string_equal(r->names[1], "*.api.example.test");
  assert_int_equal(r->backend.kind, PST_BACKEND_ADDR);
  assert_ipv4(&r->backend.addr, "127.0.0.1", 9001);
  assert_string_equal(r->backend.addr.text, "127.0.0.1:9001");
  assert_mark(r->backend.mark, 22, 18);
  pst_config_free(cfg);
}

/* ---- Defaults and other valid values --------------------------------- */

/* ---- backends: ---- */

#define BACKENDS_APP                                                                               \
  "backends:\n"                                                                                    \
  "  app:\n"                                                                                       \
  "    servers:\n"                                                                                 \
  "      - address: 127.0.0.1:8081\n"                                                              \
  "        weight: 3\n"                                                                            \
  "      - address: 127.0.0.1:8082\n"                                                              \
  "      - 127.0.0.1:8083\n"                                                                       \
  "    balance: least_connections\n"                                                               \
  "    health: {check: http, path: /healthz, interval: 500ms, timeout: 200ms, rise: 1, fall: 2}\n" \
  "    passive: {failures: 2, cooldown: 3s}\n"                                                     \
  "    retries: 2\n"                                                                               \
  "    proxy_protocol: v2\n"

#define LISTENER_APP_FIRST       \
  "listeners:\n"                 \
  "  - listen: 127.0.0.1:8443\n" \
  "    backend: app\n" CERT_LINES

static void test_backends_named(void **state) {
  /* The listener comes first and names a set defined below it. */
  pst_config_t *cfg = parse_ok(
      "listeners:\n"
      "  - listen: 127.0.0.1:8443\n"
      "    backend: app\n" CERT_LINES
      "    routes:\n"
      "      - names: [a.example.test]\n"
      "        backend: 127.0.0.1:9000\n"
      "      - names: [b.example.test]\n"
      "        backend: 127.0.0.1:9000\n" BACKENDS_APP);
  const pst_listener_conf_t *l = &cfg->listeners[0];
  const pst_backend_set_conf_t *b = l->backend.set;
  assert_non_null(b);
  assert_string_equal(b->name, "app");
  assert_int_equal(b->inline_set, 0);
  assert_int_equal(b->n_servers, 3);
  assert_int_equal(b->servers[0].weight, 3);
  assert_int_equal(b->servers[1].weight, 1);
  assert_ipv4(&b->servers[2].addr, "127.0.0.1", 8083);
  assert_int_equal(b->balance, PST_BALANCE_LEAST_CONN);
  assert_int_equal(b->check, PST_CHECK_HTTP);
  assert_string_equal(b->check_path, "/healthz");
  assert_int_equal(b->check_interval_ms, 500);
  assert_int_equal(b->check_timeout_ms, 200);
  assert_int_equal(b->rise, 1);
  assert_int_equal(b->fall, 2);
  assert_int_equal(b->passive_failures, 2);
  assert_int_equal(b->passive_cooldown_ms, 3000);
  assert_int_equal(b->retries, 2);
  assert_int_equal(b->proxy_protocol, PST_PROXY_V2);
  assert_int_equal(l->backend.proxy_protocol, PST_PROXY_V2);
  assert_string_equal(l->backend.addr.text, "app");
  /* One inline set for the two routes writing the same address. */
  assert_ptr_equal(l->routes[0].backend.set, l->routes[1].backend.set);
  assert_int_equal(l->routes[0].backend.set->inline_set, 1);
  assert_int_equal(cfg->n_backends, 2);
  pst_config_free(cfg);
}

static void test_backends_host_name(void **state) {
  /* A host name is resolved when the file is loaded (and so on reload). */
  pst_config_t *cfg =
      parse_ok(LISTENER_APP_FIRST "backends:\n  app:\n    servers: [localhost:8081]\n");
  const pst_backend_set_conf_t *b = cfg->listeners[0].backend.set;
  assert_string_equal(b->servers[0].addr.text, "localhost:8081");
  assert_true(b->servers[0].addr.ss.ss_family == AF_INET ||
              b->servers[0].addr.ss.ss_family == AF_INET6);
  pst_config_free(cfg);
}

static void test_backends_inline_defaults(void **state) {
  pst_config_t *cfg = parse_ok("listeners:\n" LISTENER0);
  const pst_backend_set_conf_t *b = cfg->listeners[0].backend.set;
  assert_non_null(b);
  assert_int_equal(b->inline_set, 1);
  assert_int_equal(b->n_servers, 1);
  assert_ipv4(&b->servers[0].addr, "127.0.0.1", 8080);
  assert_int_equal(b->balance, PST_BALANCE_ROUND_ROBIN);
  assert_int_equal(b->check, PST_CHECK_NONE);
  assert_int_equal(b->rise, 2);
  assert_int_equal(b->fall, 3);
  assert_int_equal(b->passive_failures, 5);
  assert_int_equal(b->passive_cooldown_ms, 10000);
  assert_int_equal(b->retries, 1);
  assert_int_equal(b->proxy_protocol, PST_PROXY_NONE);
  pst_config_free(cfg);
}

#define LISTENER_APP             \
  "listeners:\n"                 \
  "  - listen: 127.0.0.1:8443\n" \
  "    backend: app\n" CERT_LINES

/* tls: under a set: its keys, and the defaults an empty mapping takes. */
static void test_backends_tls(void **state) {
  pst_config_t *cfg = parse_ok(LISTENER_APP_FIRST
                               "backends:\n  app:\n    servers: [127.0.0.1:8081]\n"
                               "    tls: {ca_file: $D/a.pem, server_name: app.internal, "
                               "verify: false}\n");
  const pst_backend_set_conf_t *b = cfg->listeners[0].backend.set;
  assert_int_equal(b->tls, 1);
  assert_int_equal(b->tls_verify, 0);
  assert_string_equal(b->tls_server_name, "app.internal");
  assert_non_null(strstr(b->tls_ca_file, "/a.pem"));
  assert_null(b->tls_ctx); /* built by the generation, not the parser */
  pst_config_free(cfg);
  cfg = parse_ok(LISTENER_APP_FIRST
                 "backends:\n  app:\n    servers: [127.0.0.1:8081]\n"
                 "    tls: {}\n");
  b = cfg->listeners[0].backend.set;
  assert_int_equal(b->tls, 1);
  assert_int_equal(b->tls_verify, 1);
  assert_null(b->tls_server_name);
  assert_null(b->tls_ca_file);
  pst_config_free(cfg);
  cfg = parse_ok(LISTENER_APP_FIRST "backends:\n  app:\n    servers: [127.0.0.1:8081]\n");
  assert_int_equal(cfg->listeners[0].backend.set->tls, 0);
  pst_config_free(cfg);
}

static void test_backends_errors(void **state) {
  expect_error(
      LISTENER_APP "backends:\n  apq:\n    servers: [127.0.0.1:1]\n",
      "t.yaml:3:14: listeners[0].backend: unknown backend \"app\" (did you mean \"apq\"?)");
  expect_error(LISTENER_APP,
               "t.yaml:3:14: listeners[0].backend: unknown backend \"app\": there is no backends:");
  expect_error("backends:\n  app:\n    servers:\n      - {address: 127.0.0.1:1, weight: 0}\n",
               "t.yaml:4:40: backends.app.servers[0].weight: weight 0 would send the server "
               "nothing");
  expect_error("backends:\n  app:\n    servers: [127.0.0.1:1, 127.0.0.1:1]\n",
               "t.yaml:3:28: backends.app.servers[1]: server \"127.0.0.1:1\" is listed twice");
  expect_error("backends:\n  app:\n    servers: [127.0.0.1:1]\n    health: {rise: 0}\n",
               "t.yaml:4:20: backends.app.health.rise: rise 0 would never be reached");
  expect_error(
      "backends:\n  app:\n    servers: [127.0.0.1:1]\n"
      "    health: {interval: 1s, timeout: 2s}\n",
      "t.yaml:4:13: backends.app.health: timeout (2000 ms) is longer than interval");
  expect_error("backends:\n  app:\n    servers: [127.0.0.1:1]\n    tls: true\n",
               "t.yaml:4:10: backends.app.tls: expected a mapping (ca_file, server_name, verify)");
  expect_error("backends:\n  app:\n    servers: [127.0.0.1:1]\n    tls: {verify: maybe}\n",
               "t.yaml:4:19: backends.app.tls.verify: ");
  expect_error("backends:\n  app:\n    servers: [127.0.0.1:1]\n    tls: {server_name: a..b}\n",
               "t.yaml:4:24: backends.app.tls.server_name: invalid server_name \"a..b\"");
  expect_error("backends:\n  app:\n    servers: [127.0.0.1:1]\n    tls: {ca_file: $D/none.pem}\n",
               "t.yaml:4:20: backends.app.tls.ca_file: ");
  expect_error("backends:\n  app:\n    servers: [127.0.0.1:1]\n    tls: {sni: x}\n",
               "t.yaml:4:11: backends.app.tls.sni: unknown key; expected one of: ca_file, "
               "server_name, verify");
  expect_error("backends:\n  app:\n    balance: random\n    servers: [127.0.0.1:1]\n",
               "t.yaml:3:14: backends.app.balance: ");
  expect_error("backends:\n  app:\n    servers: []\n", "t.yaml:3:14: backends.app.servers: ");
  expect_error("backends:\n  app:\n    balance: client_ip\n",
               "t.yaml:3:5: backends.app: missing key \"servers\"");
  expect_error("backends:\n  a/b:\n    servers: [127.0.0.1:1]\n",
               "t.yaml:2:3: backends.a/b: invalid backend name \"a/b\"");
  expect_error("backends:\n  app:\n    servers: [127.0.0.1:1]\n    health: {path: healthz}\n",
               "t.yaml:4:20: backends.app.health.path: invalid health check path");
  expect_error("backends:\n  app:\n    servers: [127.0.0.1:1]\n    proxy_protocol: any\n",
               "t.yaml:4:21: backends.app.proxy_protocol: ");
}

static void test_defaults(void **state) {
  pst_config_t *cfg = parse_ok("listeners:\n" LISTENER0);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  assert_int_equal(cfg->workers, ncpu < 1 ? 1 : ncpu);
  assert_int_equal(cfg->log_level, PST_LOG_INFO);
  assert_int_equal(cfg->shutdown_timeout_ms, 10000);
  const pst_listener_conf_t *l = &cfg->listeners[0];
  assert_string_equal(l->name, "listener0");
  assert_int_equal(l->mode, PST_MODE_TCP);
  assert_int_equal(l->n_alpn, 0);
  assert_null(l->alpn);
  assert_null(l->alpn_wire);
  assert_int_equal(l->alpn_wire_len, 0);
  assert_int_equal(l->versions, PST_TLS13);
  assert_int_equal(l->n_certs, 1);
  assert_null(l->default_certificate);
  assert_int_equal(l->unknown_sni, PST_UNKNOWN_SNI_DEFAULT);
  assert_null(l->ca_file);
  assert_int_equal(l->n_routes, 0);
  assert_null(l->routes);
  assert_int_equal(l->handshake_timeout_ms, 10000);
  assert_int_equal(l->idle_timeout_ms, 60000);
  assert_int_equal(l->request_head_timeout_ms, 10000);
  assert_int_equal(l->backend_connect_timeout_ms, 5000);
  assert_int_equal(l->max_connections, 10000);
  pst_config_free(cfg);
}

static void test_non_default_values(void **state) {
  pst_config_t *cfg = parse_ok(
      "workers: 3\n"
      "log_level: 'debug'\n"
      "shutdown_timeout: 0s\n"
      "listeners:\n"
      "  - listen: '[::1]:8443'\n"
      "    backend: builtin:info\n"
      "    alpn: []\n"
      "    tls:\n"
      "      versions: [tls1.2, tls1.3]\n"
      "      unknown_sni: reject\n"
      "      default_certificate: WWW.Example.TEST\n"
      "      certificates: [{cert: $D/a.pem, key: $D/a.key}]\n"
      "    timeouts: {handshake: 250ms, idle: 2m, request_head: 3s, backend_connect: 1h}\n"
      "    max_connections: 1\n");
  assert_int_equal(cfg->workers, 3);
  assert_int_equal(cfg->log_level, PST_LOG_DEBUG);
  assert_int_equal(cfg->shutdown_timeout_ms, 0);
  const pst_listener_conf_t *l = &cfg->listeners[0];
  assert_ipv6(&l->listen, "::1", 8443);
  assert_int_equal(l->backend.kind, PST_BACKEND_BUILTIN_INFO);
  assert_string_equal(l->backend.addr.text, "builtin:info");
  assert_int_equal(l->n_alpn, 0);
  assert_null(l->alpn_wire);
  assert_int_equal(l->versions, PST_TLS12 | PST_TLS13);
  assert_int_equal(l->unknown_sni, PST_UNKNOWN_SNI_REJECT);
  assert_string_equal(l->default_certificate, "www.example.test");
  assert_int_equal(l->handshake_timeout_ms, 250);
  assert_int_equal(l->idle_timeout_ms, 120000);
  assert_int_equal(l->request_head_timeout_ms, 3000);
  assert_int_equal(l->backend_connect_timeout_ms, 3600000);
  assert_int_equal(l->max_connections, 1);
  pst_config_free(cfg);
}

static void test_log_levels(void **state) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  static const pst_log_level_t levels[] = {PST_LOG_ERROR, PST_LOG_WARN, PST_LOG_INFO,
                                           PST_LOG_DEBUG};
  char text[1024];
  for (size_t i = 0; i < PST_ARRAY_SIZE(names); i++) {
    snprintf(text, sizeof(text), "log_level: %s\nlisteners:\n" LISTENER0, names[i]);
    pst_config_t *cfg = parse_ok(text);
    assert_int_equal(cfg->log_level, levels[i]);
    pst_config_free(cfg);
  }
}

/* log_format, user and group: names resolved at load; mistakes are errors
 * at their line. */
static void test_log_format_user_group(void **state) {
  pst_config_t *cfg = parse_ok("listeners:\n" LISTENER0);
  assert_int_equal(cfg->log_format, PST_LOG_TEXT);
  assert_null(cfg->user);
  assert_null(cfg->group);
  pst_config_free(cfg);
  cfg = parse_ok("log_format: json\ngroup: nogroup\nuser: nobody\nlisteners:\n" LISTENER0);
  assert_int_equal(cfg->log_format, PST_LOG_JSON);
  assert_string_equal(cfg->user, "nobody");
  assert_string_equal(cfg->group, "nogroup");
  assert_int_equal(cfg->uid, getpwnam("nobody")->pw_uid);
  assert_int_equal(cfg->gid, getgrnam("nogroup")->gr_gid);
  assert_int_equal(cfg->user_mark.line, 3);
  pst_config_free(cfg);
  cfg = parse_ok("user: nobody\nlisteners:\n" LISTENER0);
  assert_int_equal(cfg->gid, getpwnam("nobody")->pw_gid); /* the user's primary group */
  pst_config_free(cfg);
  expect_error("log_format: yaml\nlisteners:\n" LISTENER0, "t.yaml:1:13: log_format: ");
  expect_error("user: nosuchuser-x\nlisteners:\n" LISTENER0,
               "t.yaml:1:7: user: no user \"nosuchuser-x\" on this system; ");
  expect_error("user: root\nlisteners:\n" LISTENER0, "t.yaml:1:7: user: user \"root\" is uid 0");
  /* Names are quoted in messages: a newline or an escape byte cannot reach
   * the terminal, also not in the suggested adduser command. */
  expect_error("user: \"no\\nbody\\e\"\nlisteners:\n" LISTENER0,
               "t.yaml:1:7: user: no user \"no\\x0abody\\x1b\" on this system; ");
  char err[512] = "";
  pst_config_t *bad = NULL;
  assert_int_equal(parse("user: \"no\\nbody\\e\"\nlisteners:\n" LISTENER0, &bad, err, sizeof(err)),
                   PST_ECONFIG);
  assert_null(strchr(err, 0x1b));
  assert_non_null(strstr(err, "--no-create-home \"no\\x0abody\\x1b\"`"));
  expect_error("user: nobody\ngroup: nosuchgroup-x\nlisteners:\n" LISTENER0,
               "t.yaml:2:8: group: no group \"nosuchgroup-x\" on this system; ");
  expect_error("listeners:\n" LISTENER0 "group: nogroup\n",
               "t.yaml:8:8: group: group \"nogroup\" without user: ");
}

/* admin: one key, listen; never a listener's address, whichever comes
 * first. */
static void test_admin(void **state) {
  pst_config_t *cfg = parse_ok("listeners:\n" LISTENER0);
  assert_int_equal(cfg->admin_on, 0);
  pst_config_free(cfg);
  cfg = parse_ok("admin:\n  listen: 127.0.0.1:9090\nlisteners:\n" LISTENER0);
  assert_int_equal(cfg->admin_on, 1);
  assert_ipv4(&cfg->admin_listen, "127.0.0.1", 9090);
  assert_mark(cfg->admin_listen_mark, 2, 11);
  pst_config_free(cfg);
  expect_error("admin:\n  lissen: 127.0.0.1:9090\nlisteners:\n" LISTENER0,
               "t.yaml:2:3: admin.lissen: unknown key (did you mean \"listen\"?)");
  expect_error("admin: {}\nlisteners:\n" LISTENER0, "t.yaml:1:8: admin: missing key \"listen\"");
  expect_error("admin: 127.0.0.1:9090\nlisteners:\n" LISTENER0, "t.yaml:1:8: admin: ");
  expect_error("admin:\n  listen: 127.0.0.1\nlisteners:\n" LISTENER0,
               "t.yaml:2:11: admin.listen: invalid address \"127.0.0.1\"");
  expect_error("admin:\n  listen: 127.0.0.1:8443\nlisteners:\n" LISTENER0,
               "t.yaml:4:13: listeners[0].listen: address \"127.0.0.1:8443\" is already used by "
               "admin.listen (line 2)");
  expect_error("listeners:\n" LISTENER0 "admin:\n  listen: 127.0.0.1:8443\n",
               "t.yaml:9:11: admin.listen: address \"127.0.0.1:8443\" is already used by listener "
               "\"listener0\" (line 2)");
}

static void test_two_listeners_default_names(void **state) {
  pst_config_t *cfg = parse_ok("listeners:\n" LISTENER0
                               "  - listen: \"*:9443\"\n"
                               "    backend: localhost:8080\n" CERT_LINES);
  assert_int_equal(cfg->n_listeners, 2);
  assert_string_equal(cfg->listeners[0].name, "listener0");
  assert_string_equal(cfg->listeners[1].name, "listener1");
  assert_ipv4(&cfg->listeners[1].listen, "0.0.0.0", 9443);
  assert_string_equal(cfg->listeners[1].listen.text, "*:9443");
  assert_mark(cfg->listeners[1].mark, 8, 5);
  pst_config_free(cfg);
}

static void test_route_names_lowercased(void **state) {
  pst_config_t *cfg = parse_ok("listeners:\n" LISTENER0
                               "    routes:\n"
                               "      - names: [API.Example.Test., \"*.X.example.test\", "
                               "\"*.Example.Test\"]\n"
                               "        backend: builtin:info\n");
  const pst_route_conf_t *r = &cfg->listeners[0].routes[0];
  assert_string_equal(r->names[0], "api.example.test");
  assert_string_equal(r->names[1], "*.x.example.test");
  /* Two labels after "*." are enough (found by the config fuzz target's
   * seeds: this name was refused). */
  assert_string_equal(r->names[2], "*.example.test");
  assert_int_equal(r->backend.kind, PST_BACKEND_BUILTIN_INFO);
  pst_config_free(cfg);
}

static void test_load_from_file(void **state) {
  char path[256], err[512] = "";
  pst_config_t *cfg = NULL;
  char *text = subst("listeners:\n" LISTENER0);
  snprintf(path, sizeof(path), "%s/p.yaml", g_dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  free(text);
  assert_int_equal(pst_config_load(path, &cfg, err, sizeof(err)), 0);
  assert_string_equal(cfg->path, path);
  assert_int_equal(cfg->n_listeners, 1);
  pst_config_free(cfg);
}

static void test_load_missing_file(void **state) {
  char err[512] = "";
  pst_config_t *cfg = NULL;
  assert_int_equal(pst_config_load("/nonexistent/p.yaml", &cfg, err, sizeof(err)), PST_ECONFIG);
  assert_null(cfg);
  assert_string_equal(err, "/nonexistent/p.yaml: cannot read: No such file or directory");
}

static void test_free_null(void **state) { pst_config_free(NULL); }

static void test_small_error_buffer(void **state) {
  char err[8];
  pst_config_t *cfg;
  memset(err, 'x', sizeof(err));
  assert_int_equal(parse("workers: 0\n", &cfg, err, sizeof(err)), PST_ECONFIG);
  assert_string_equal(err, "t.yaml:");
  assert_int_equal(parse("workers: 0\n", &cfg, NULL, 0), PST_ECONFIG);
}

/* ---- pst_parse_duration ---------------------------------------------- */

static uint64_t duration(const char *text) {
  uint64_t ms = 12345;
  assert_int_equal(pst_parse_duration(text, &ms), 0);
  return ms;
}

static void duration_bad(const char *text) {
  uint64_t ms = 12345;
  assert_int_equal(pst_parse_duration(text, &ms), PST_ECONFIG);
  assert_int_equal(ms, 12345);
}

static void test_duration_units(void **state) {
  assert_int_equal(duration("250ms"), 250);
  assert_int_equal(duration("10s"), 10000);
  assert_int_equal(duration("5m"), 300000);
  assert_int_equal(duration("1h"), 3600000);
  assert_int_equal(duration("0s"), 0);
  assert_int_equal(duration("0ms"), 0);
  assert_int_equal(duration("18446744073709551615ms"), UINT64_MAX);
}

static void test_duration_invalid(void **state) {
  duration_bad("10");   /* missing unit */
  duration_bad("10d");  /* unknown unit */
  duration_bad("10S");  /* units are lower-case */
  duration_bad("-1s");  /* negative */
  duration_bad("+1s");  /* sign */
  duration_bad("1.5s"); /* fraction */
  duration_bad("");     /* empty */
  duration_bad("s");    /* no number */
  duration_bad(" 10s"); /* spaces */
  duration_bad("10 s");
  duration_bad("10s ");
  duration_bad("10s5ms");                 /* one unit only */
  duration_bad("18446744073709551616ms"); /* overflow of the number */
  duration_bad("18446744073709551615s");  /* overflow of the conversion */
  duration_bad("5124095576030432h");
  duration_bad(NULL);
}

/* ---- pst_parse_addr --------------------------------------------------- */

static void addr_ok(const char *text, pst_addr_t *a) {
  char err[256] = "";
  memset(a, 0xa5, sizeof(*a));
  if (pst_parse_addr(text, a, err, sizeof(err)) != 0) print_error("%s: %s\n", text, err);
  assert_string_equal(a->text, text);
}

static void addr_bad(const char *text, const char *reason) {
  char err[256] = "";
  pst_addr_t a;
  assert_int_equal(pst_parse_addr(text, &a, err, sizeof(err)), PST_ECONFIG);
  if (strncmp(err, reason, strlen(reason)) != 0) {
    print_error("%s: expected \"%s...\", got \"%s\"\n", text, reason, err);
    fail();
  }
}

static void test_addr_ipv4(void **state) {
  pst_addr_t a;
  addr_ok("127.0.0.1:8443", &a);
  assert_ipv4(&a, "127.0.0.1", 8443);
  addr_ok("0.0.0.0:1", &a);
  assert_ipv4(&a, "0.0.0.0", 1);
  addr_ok("10.1.2.3:65535", &a);
  assert_ipv4(&a, "10.1.2.3", 65535);
  addr_ok("*:80", &a);
  assert_ipv4(&a, "0.0.0.0", 80);
}

static void test_addr_ipv6(void **state) {
  pst_addr_t a;
  addr_ok("[::1]:8443", &a);
  assert_ipv6(&a, "::1", 8443);
  addr_ok("[::]:8443", &a);
  assert_ipv6(&a, "::", 8443);
  addr_ok("[2001:db8::5]:443", &a);
  assert_ipv6(&a, "2001:db8::5", 443);
}

static void test_addr_localhost(void **state) {
  pst_addr_t a;
  addr_ok("localhost:8443", &a);
  if (a.ss.ss_family == AF_INET) {
    assert_ipv4(&a, "127.0.0.1", 8443);
  } else {
    assert_ipv6(&a, "::1", 8443);
  }
}

static void test_addr_invalid(void **state) {
  addr_bad("127.0.0.1", "missing port;");
  addr_bad("127.0.0.1:", "missing port;");
  addr_bad(":8443", "missing host;");
  addr_bad("127.0.0.1:0", "port 0 is not allowed;");
  addr_bad("127.0.0.1:70000", "port out of range;");
  addr_bad("127.0.0.1:99999999999999999999", "invalid port;");
  addr_bad("127.0.0.1:-1", "invalid port;");
  addr_bad("127.0.0.1:http", "invalid port;");
  addr_bad("no such host!:80", "invalid character in the host;");
  addr_bad("::1:8443", "an IPv6 address needs brackets");
  addr_bad("[::1]8443", "missing port after \"]\";");
  addr_bad("[::1:8443", "missing \"]\"");
  addr_bad("[127.0.0.1]:80", "not an IPv6 address inside the brackets;");
  addr_bad("[]:80", "missing host;");
  addr_bad("", "empty address;");
  /* RFC 6761 6.4: names under .invalid never resolve. */
  addr_bad("postern-test.invalid:80", "cannot resolve the host: ");
}

/* ---- Error messages: one test per kind of error ----------------------- */

static void test_error_yaml_syntax(void **state) {
  expect_error("listeners: [a, b\nworkers: 2\n",
               "t.yaml:2:8: YAML syntax error: did not find expected ',' or ']'");
  expect_error("listeners:\n  - listen: x\n   backend: y\n", "t.yaml:3:4: YAML syntax error: ");
  expect_error("a: \x01\n", "t.yaml:1:4: YAML syntax error: control characters are not allowed");
}

/* Deep nesting is refused at the first level too deep, and fast: libyaml
 * alone took 69 s for 200,000 levels (its scanner looks at every open
 * level for each token). */
static void test_error_nesting_depth(void **state) {
  enum { LEVELS = 200000 };
  char *text = malloc(2 * LEVELS + 16);
  assert_non_null(text);
  size_t n = (size_t)sprintf(text, "listeners: ");
  memset(text + n, '[', LEVELS);
  memset(text + n + LEVELS, ']', LEVELS);
  text[n + 2 * LEVELS] = '\0';
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  expect_error(text, "t.yaml:1:43: YAML nesting: lists and mappings nested more than 32 deep;");
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  if (s > 5) {
    print_error("refusing %d levels took %.1f s\n", LEVELS, s);
    fail();
  }
  free(text);
  /* Block style: mapping at depth d starts on line d, column 2(d-1)+1. */
  char block[4096] = "";
  for (int i = 0; i < 40; i++) {
    size_t len = strlen(block);
    snprintf(block + len, sizeof(block) - len, "%*sk:\n", 2 * i, "");
  }
  expect_error(block, "t.yaml:33:65: YAML nesting: lists and mappings nested more than 32 deep;");
  /* 32 levels are only wrong for what they hold. */
  expect_error("listeners: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
               "t.yaml:1:13: listeners[0]: found a list; expected a mapping");
}

/* An error about a value reached through an alias names the alias, where
 * the value is used, and then where the value is written. */
static void test_error_through_alias(void **state) {
  static const char text[] =
      "listeners:\n"
      "  - listen: 127.0.0.1:8443\n"
      "    backend: &b 127.0.0.1:8080\n" CERT_LINES
      "  - listen: 127.0.0.1:8444\n"
      "    backend: 127.0.0.1:8080\n" CERT_LINES "    max_connections: *b\n";
  char err[512] = "";
  pst_config_t *cfg;
  assert_int_equal(parse(text, &cfg, err, sizeof(err)), PST_ECONFIG);
  const char *want =
      "t.yaml:14:22: listeners[1].max_connections: invalid integer "
      "\"127.0.0.1:8080\"; expected a decimal integer in 1..1000000 (in the value "
      "this alias stands for, at line 3, column 14)";
  if (strcmp(err, want) != 0) {
    print_error("expected: %s\n     got: %s\n", want, err);
    fail();
  }
  /* A list that holds itself. */
  expect_error("listeners: &l [*l]\n",
               "t.yaml:1:16: listeners[0]: found a list; expected a mapping (in the value this "
               "alias stands for, at line 1, column 12)");
  /* Without an alias, the value's own place. */
  expect_error("listeners:\n" LISTENER0 "    max_connections: &m x\n",
               "t.yaml:8:22: listeners[0].max_connections: invalid integer \"x\"; expected a "
               "decimal integer in 1..1000000");
}

static void test_error_document_shape(void **state) {
  expect_error("", "t.yaml:1:1: top level: empty configuration;");
  expect_error("# only a comment\n", "t.yaml:1:1: top level: empty configuration;");
  expect_error("[1, 2]\n", "t.yaml:1:1: top level: found a list; expected a mapping");
  expect_error("---\na: 1\n---\nb: 2\n", "t.yaml:4:1: top level: a second YAML document;");
  expect_error("workers: 2\n", "t.yaml:1:1: top level: missing key \"listeners\"; expected a list");
}

static void test_error_unknown_key_top(void **state) {
  expect_error("workerz: 2\nlisteners:\n" LISTENER0,
               "t.yaml:1:1: workerz: unknown key (did you mean \"workers\"?); expected one of: "
               "workers, log_level, shutdown_timeout, listeners");
  expect_error("colour: blue\n", "t.yaml:1:1: colour: unknown key; expected one of: workers,");
}

static void test_error_unknown_key_nested(void **state) {
  expect_error(
      "listeners:\n"
      "  - listen: 127.0.0.1:8443\n"
      "    tls:\n"
      "      certficates: []\n",
      "t.yaml:4:7: listeners[0].tls.certficates: unknown key (did you mean "
      "\"certificates\"?); expected one of: versions, certificates, default_certificate, "
      "unknown_sni, ca_file");
  expect_error("listeners:\n" LISTENER0 "    timeouts: {idel: 1s}\n",
               "t.yaml:8:16: listeners[0].timeouts.idel: unknown key (did you mean \"idle\"?)");
}

static void test_error_duplicate_key(void **state) {
  expect_error("listeners:\n" LISTENER0 "    listen: 127.0.0.1:9443\n",
               "t.yaml:8:5: listeners[0].listen: duplicate key (first at line 2);");
}

static void test_error_wrong_type(void **state) {
  expect_error("listeners:\n  - listen: [a, b]\n",
               "t.yaml:2:13: listeners[0].listen: found a list; expected a string (host:port)");
  expect_error("listeners:\n  - listen: 127.0.0.1:1\n    tls: [a]\n",
               "t.yaml:3:10: listeners[0].tls: found a list; expected a mapping");
  expect_error("listeners: {a: 1}\n", "t.yaml:1:12: listeners: found a mapping; expected a list");
  expect_error("listeners:\n  - listen: 127.0.0.1:1\n    alpn: h2\n",
               "t.yaml:3:11: listeners[0].alpn: found a string; expected a list");
  expect_error("log_level:\nlisteners:\n" LISTENER0, "t.yaml:1:11: log_level: empty value;");
}

static void test_error_bad_enum(void **state) {
  expect_error("log_level: verbose\n",
               "t.yaml:1:12: log_level: unknown log level \"verbose\"; "
               "expected error, warn, info or debug");
  expect_error("log_level: inf\n",
               "t.yaml:1:12: log_level: unknown log level \"inf\" (did you mean \"info\"?);");
  expect_error("listeners:\n" LISTENER0 "      unknown_sni: drop\n",
               "t.yaml:8:20: listeners[0].tls.unknown_sni: unknown unknown_sni action \"drop\"");
  expect_error("listeners:\n  - mode: udp\n",
               "t.yaml:2:11: listeners[0].mode: unknown mode \"udp\"; expected tcp or http");
  expect_error("listeners:\n" LISTENER0 "    forwarded: x-forwarded\n",
               "t.yaml:8:16: listeners[0].forwarded: unknown forwarding header style "
               "\"x-forwarded\"; expected xff or rfc7239");
  expect_error("listeners:\n" LISTENER0 "    h2: {max_concurent_streams: 4}\n",
               "t.yaml:8:10: listeners[0].h2.max_concurent_streams: unknown key");
}

/* accept_proxy and trusted_proxies (config_proxy.c): parsed, and every
 * mistake an error at its line with the fix. */
static void test_accept_proxy(void **state) {
  pst_config_t *cfg =
      parse_ok("listeners:\n" LISTENER0
               "    accept_proxy: v2\n"
               "    trusted_proxies: [\"10.0.0.0/8\", \"127.0.0.1\", \"2001:db8::/32\"]\n");
  const pst_listener_conf_t *l = &cfg->listeners[0];
  assert_int_equal(l->accept_proxy, PST_PROXY_V2);
  assert_int_equal(l->accept_proxy_mark.line, 8);
  assert_int_equal(l->n_trusted_proxies, 3);
  assert_int_equal(l->trusted_proxies[0].family, AF_INET);
  assert_int_equal(l->trusted_proxies[0].prefix, 8);
  assert_int_equal(l->trusted_proxies[1].prefix, 32);
  assert_int_equal(l->trusted_proxies[2].family, AF_INET6);
  pst_config_free(cfg);
  cfg = parse_ok("listeners:\n" LISTENER0);
  assert_int_equal(cfg->listeners[0].accept_proxy, PST_PROXY_NONE);
  pst_config_free(cfg);
  const char *names[] = {"none", "v1", "v2", "any"};
  for (size_t i = 1; i < 4; i++) {
    char text[512];
    snprintf(text, sizeof(text),
             "listeners:\n" LISTENER0 "    accept_proxy: %s\n    trusted_proxies: [\"::/0\"]\n",
             names[i]);
    cfg = parse_ok(text);
    assert_int_equal(cfg->listeners[0].accept_proxy, (pst_proxy_t)i);
    pst_config_free(cfg);
  }
  expect_error("listeners:\n" LISTENER0 "    accept_proxy: v3\n",
               "t.yaml:8:19: listeners[0].accept_proxy: unknown PROXY protocol version \"v3\"");
  expect_error("listeners:\n" LISTENER0 "    accept_proxy: v2\n",
               "t.yaml:8:19: listeners[0].accept_proxy: accept_proxy needs trusted_proxies, the "
               "address blocks of the balancers allowed to send PROXY headers; add e.g. "
               "trusted_proxies: [\"10.0.0.0/8\"]");
  expect_error("listeners:\n" LISTENER0 "    trusted_proxies: [\"10.0.0.0/8\"]\n",
               "t.yaml:8:22: listeners[0].trusted_proxies: trusted_proxies without accept_proxy "
               "does nothing; set accept_proxy (v1, v2 or any) or remove trusted_proxies");
  expect_error("listeners:\n" LISTENER0 "    accept_proxy: v1\n    trusted_proxies: []\n",
               "t.yaml:9:22: listeners[0].trusted_proxies: empty list");
  expect_error("listeners:\n" LISTENER0
               "    accept_proxy: v1\n    trusted_proxies: [\"10.0.0.0/8\", \"10.1.2.3/8\"]\n",
               "t.yaml:9:37: listeners[0].trusted_proxies[1]: \"10.1.2.3/8\" has bits set past "
               "its prefix length; write its first address: 10.0.0.0/8");
  expect_error(
      "listeners:\n" LISTENER0 "    accept_proxy: any\n    trusted_proxies: [\"10.0.0.0/33\"]\n",
      "t.yaml:9:23: listeners[0].trusted_proxies[0]: \"10.0.0.0/33\": prefix length over 32 "
      "for an IPv4 block; expected an address block");
  expect_error("listeners:\n" LISTENER0
               "    accept_proxy: any\n    trusted_proxies: [lb.example]\n",
               "t.yaml:9:23: listeners[0].trusted_proxies[0]: \"lb.example\": not an IPv4 or IPv6 "
               "address; expected");
  expect_error("listeners:\n" LISTENER0
               "    accept_proxy: any\n    trusted_proxies: \"10.0.0.0/8\"\n",
               "t.yaml:9:22: listeners[0].trusted_proxies:");
}

static void test_error_bad_integer(void **state) {
  expect_error("workers: 0\n",
               "t.yaml:1:10: workers: invalid integer \"0\"; expected a decimal "
               "integer in 1..256");
  expect_error("workers: 257\n", "t.yaml:1:10: workers: invalid integer \"257\";");
  expect_error("workers: 010\n", "t.yaml:1:10: workers: invalid integer \"010\";");
  expect_error("workers: many\n",
               "t.yaml:1:10: workers: invalid value \"many\"; expected auto or an integer 1..256");
  expect_error("listeners:\n" LISTENER0 "    max_connections: -5\n",
               "t.yaml:8:22: listeners[0].max_connections: invalid integer \"-5\";");
  expect_error("listeners:\n" LISTENER0 "    max_connections: 0x10\n",
               "t.yaml:8:22: listeners[0].max_connections: invalid integer \"0x10\";");
}

static void test_error_bad_duration(void **state) {
  expect_error("shutdown_timeout: 10\n",
               "t.yaml:1:19: shutdown_timeout: invalid duration \"10\"; expected a number with "
               "a unit: ms, s, m or h (e.g. 10s)");
  expect_error("shutdown_timeout: 2h\n",
               "t.yaml:1:19: shutdown_timeout: duration \"2h\" is out of range; expected 0s..1h");
  expect_error("listeners:\n" LISTENER0 "    timeouts:\n      handshake: 0s\n",
               "t.yaml:9:18: listeners[0].timeouts.handshake: duration \"0s\" is out of range; "
               "expected 1ms..1h");
  expect_error("listeners:\n" LISTENER0 "    timeouts:\n      request_head: 0s\n",
               "t.yaml:9:21: listeners[0].timeouts.request_head: duration \"0s\" is out of range; "
               "expected 1ms..1h");
  expect_error("listeners:\n" LISTENER0 "    timeouts:\n      idle: 1.5s\n",
               "t.yaml:9:13: listeners[0].timeouts.idle: invalid duration \"1.5s\";");
}

static void test_error_bad_address(void **state) {
  expect_error("listeners:\n  - listen: 127.0.0.1\n",
               "t.yaml:2:13: listeners[0].listen: invalid address \"127.0.0.1\": missing port;");
  expect_error("listeners:\n  - listen: \"127.0.0.1:0\"\n",
               "t.yaml:2:13: listeners[0].listen: invalid address \"127.0.0.1:0\": port 0 is not");
  expect_error("listeners:\n  - listen: 127.0.0.1:1\n    backend: builtin:infp\n",
               "t.yaml:3:14: listeners[0].backend: unknown built-in backend \"builtin:infp\"; "
               "expected one of: builtin:info");
  expect_error("listeners:\n" LISTENER0
               "    routes:\n"
               "      - names: [a.test]\n"
               "        backend: \"::1:80\"\n",
               "t.yaml:10:18: listeners[0].routes[0].backend: invalid address \"::1:80\": an IPv6");
}

static void test_error_missing_file(void **state) {
  expect_error(
      "listeners:\n"
      "  - listen: 127.0.0.1:8443\n"
      "    tls:\n"
      "      certificates:\n"
      "        - cert: /nonexistent/x.pem\n",
      "t.yaml:5:17: listeners[0].tls.certificates[0].cert: cannot read "
      "\"/nonexistent/x.pem\": No such file or directory");
  expect_error("listeners:\n" LISTENER0 "      ca_file: /nonexistent/root.pem\n",
               "t.yaml:8:16: listeners[0].tls.ca_file: cannot read \"/nonexistent/root.pem\": "
               "No such file or directory");
  expect_error("listeners:\n" LISTENER0 "      ca_file: /tmp\n",
               "t.yaml:8:16: listeners[0].tls.ca_file: \"/tmp\" is a directory; expected a file");
}

static void test_error_missing_required_key(void **state) {
  expect_error(
      "listeners:\n"
      "  - name: public\n"
      "    backend: 127.0.0.1:8080\n" CERT_LINES,
      "t.yaml:2:5: listeners[0]: missing key \"listen\"; expected host:port");
  expect_error(
      "listeners:\n"
      "  - listen: 127.0.0.1:8443\n" CERT_LINES,
      "t.yaml:2:5: listeners[0]: missing key \"backend\";");
  expect_error(
      "listeners:\n"
      "  - listen: 127.0.0.1:8443\n"
      "    backend: 127.0.0.1:8080\n",
      "t.yaml:2:5: listeners[0]: missing key \"tls\";");
  expect_error(
      "listeners:\n"
      "  - listen: 127.0.0.1:8443\n"
      "    backend: 127.0.0.1:8080\n"
      "    tls:\n"
      "      versions: [tls1.3]\n",
      "t.yaml:5:7: listeners[0].tls: missing key \"certificates\";");
  expect_error("listeners:\n" LISTENER0 "        - cert: $D/a.pem\n",
               "t.yaml:8:11: listeners[0].tls.certificates[1]: missing key \"key\";");
}

static void test_error_empty_certificates(void **state) {
  expect_error(
      "listeners:\n"
      "  - listen: 127.0.0.1:8443\n"
      "    tls:\n"
      "      certificates: []\n",
      "t.yaml:4:21: listeners[0].tls.certificates: empty list; expected at least one "
      "certificate");
  expect_error("listeners: []\n", "t.yaml:1:12: listeners: empty list; expected at least one");
}

static void test_error_duplicate_listener(void **state) {
  expect_error("listeners:\n" LISTENER0
               "  - listen: 127.0.0.1:9443\n"
               "    name: listener0\n",
               "t.yaml:9:11: listeners[1].name: listener name \"listener0\" is already used by "
               "the listener at line 2;");
  expect_error("listeners:\n" LISTENER0
               "  - backend: 127.0.0.1:8080\n"
               "    listen: 127.0.0.1:8443\n",
               "t.yaml:9:13: listeners[1].listen: address \"127.0.0.1:8443\" is already used by "
               "listener \"listener0\" (line 2);");
}

static void test_error_tls_versions(void **state) {
  expect_error("listeners:\n" LISTENER0 "      versions: [tls1.3, tls1.1]\n",
               "t.yaml:8:26: listeners[0].tls.versions[1]: TLS version \"tls1.1\" is not "
               "supported (obsolete, RFC 8996); expected tls1.2 or tls1.3");
  expect_error("listeners:\n" LISTENER0 "      versions: [ssl3]\n",
               "t.yaml:8:18: listeners[0].tls.versions[0]: TLS version \"ssl3\" is not supported");
  expect_error("listeners:\n" LISTENER0 "      versions: [tls1.4]\n",
               "t.yaml:8:18: listeners[0].tls.versions[0]: unknown TLS version \"tls1.4\"");
  expect_error("listeners:\n" LISTENER0 "      versions: [tls1.3, tls1.3]\n",
               "t.yaml:8:26: listeners[0].tls.versions[1]: tls1.3 is listed twice;");
  expect_error("listeners:\n" LISTENER0 "      versions: []\n",
               "t.yaml:8:17: listeners[0].tls.versions: empty list;");
}

static void test_error_alpn(void **state) {
  expect_error("listeners:\n" LISTENER0 "    alpn: [h2, h2]\n",
               "t.yaml:8:16: listeners[0].alpn[1]: \"h2\" is listed twice;");
  expect_error("listeners:\n" LISTENER0 "    alpn: [\"h 2\"]\n",
               "t.yaml:8:12: listeners[0].alpn[0]: invalid protocol name \"h 2\";");
  char text[1024], big[300];
  memset(big, 'x', 256);
  big[256] = '\0';
  snprintf(text, sizeof(text), "listeners:\n" LISTENER0 "    alpn: [%s]\n", big);
  expect_error(text, "t.yaml:8:12: listeners[0].alpn[0]: invalid protocol name \"xxxx");
}

static void test_error_routes(void **state) {
  expect_error("listeners:\n" LISTENER0
               "    routes:\n"
               "      - names: [a.test, \"x.*.test\"]\n"
               "        backend: builtin:info\n",
               "t.yaml:9:25: listeners[0].routes[0].names[1]: invalid server name \"x.*.test\": a "
               "wildcard must be the whole first label;");
  expect_error("listeners:\n" LISTENER0
               "    routes:\n"
               "      - names: [\"*.test\"]\n",
               "t.yaml:9:17: listeners[0].routes[0].names[0]: invalid server name \"*.test\":");
  expect_error("listeners:\n" LISTENER0
               "    routes:\n"
               "      - names: []\n",
               "t.yaml:9:16: listeners[0].routes[0].names: empty list;");
  expect_error("listeners:\n" LISTENER0
               "    routes:\n"
               "      - names: [a.test]\n"
               "        backend: builtin:info\n"
               "      - names: [b.test, A.TEST]\n",
               "t.yaml:11:25: listeners[0].routes[1].names[1]: server name \"a.test\" is already "
               "routed by the route at line 9;");
  expect_error("listeners:\n" LISTENER0
               "    routes:\n"
               "      - backend: builtin:info\n",
               "t.yaml:9:9: listeners[0].routes[0]: missing key \"names\";");
}

static void test_error_value_is_quoted_safely(void **state) {
  char err[512];
  pst_config_t *cfg;
  assert_int_equal(parse("log_level: \"a\\nb\\\"c\"\n", &cfg, err, sizeof(err)), PST_ECONFIG);
  assert_string_equal(err,
                      "t.yaml:1:12: log_level: unknown log level \"a\\x0ab\\\"c\"; "
                      "expected error, warn, info or debug");
}

/* ---- Robustness: every truncation and every deleted line -------------- */

/* Parses len bytes of text: either a config or exactly one error line. */
static void parse_any(const char *text, size_t len) {
  char err[512] = "";
  pst_config_t *cfg = NULL;
  int rc = pst_config_parse("t.yaml", text, len, &cfg, err, sizeof(err));
  if (rc == 0) {
    assert_non_null(cfg);
    pst_config_free(cfg);
    return;
  }
  assert_int_equal(rc, PST_ECONFIG);
  assert_null(cfg);
  assert_null(strchr(err, '\n'));
  assert_true(strncmp(err, "t.yaml:", 7) == 0);
}

static void test_every_prefix(void **state) {
  char *text = subst(full_example);
  for (size_t len = 0; len <= strlen(text); len++) parse_any(text, len);
  free(text);
}

static void test_every_line_deleted(void **state) {
  char *text = subst(full_example);
  size_t n = strlen(text);
  char *buf = malloc(n + 1);
  assert_non_null(buf);
  for (const char *line = text; *line != '\0';) {
    const char *next = strchr(line, '\n') + 1;
    size_t before = (size_t)(line - text);
    memcpy(buf, text, before);
    strcpy(buf + before, next);
    parse_any(buf, strlen(buf));
    line = next;
  }
  free(buf);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_example_top_level),
      cmocka_unit_test(test_full_example_listener),
      cmocka_unit_test(test_full_example_tls),
      cmocka_unit_test(test_full_example_backends),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_non_default_values),
      cmocka_unit_test(test_log_levels),
      cmocka_unit_test(test_log_format_user_group),
      cmocka_unit_test(test_admin),
      cmocka_unit_test(test_two_listeners_default_names),
      cmocka_unit_test(test_route_names_lowercased),
      cmocka_unit_test(test_load_from_file),
      cmocka_unit_test(test_load_missing_file),
      cmocka_unit_test(test_free_null),
      cmocka_unit_test(test_small_error_buffer),
      cmocka_unit_test(test_duration_units),
      cmocka_unit_test(test_duration_invalid),
      cmocka_unit_test(test_addr_ipv4),
      cmocka_unit_test(test_addr_ipv6),
      cmocka_unit_test(test_addr_localhost),
      cmocka_unit_test(test_addr_invalid),
      cmocka_unit_test(test_error_yaml_syntax),
      cmocka_unit_test(test_error_nesting_depth),
      cmocka_unit_test(test_error_through_alias),
      cmocka_unit_test(test_error_document_shape),
      cmocka_unit_test(test_backends_named),
      cmocka_unit_test(test_backends_inline_defaults),
      cmocka_unit_test(test_backends_host_name),
      cmocka_unit_test(test_backends_errors),
      cmocka_unit_test(test_backends_tls),
      cmocka_unit_test(test_error_unknown_key_top),
      cmocka_unit_test(test_error_unknown_key_nested),
      cmocka_unit_test(test_error_duplicate_key),
      cmocka_unit_test(test_error_wrong_type),
      cmocka_unit_test(test_error_bad_enum),
      cmocka_unit_test(test_accept_proxy),
      cmocka_unit_test(test_error_bad_integer),
      cmocka_unit_test(test_error_bad_duration),
      cmocka_unit_test(test_error_bad_address),
      cmocka_unit_test(test_error_missing_file),
      cmocka_unit_test(test_error_missing_required_key),
      cmocka_unit_test(test_error_empty_certificates),
      cmocka_unit_test(test_error_duplicate_listener),
      cmocka_unit_test(test_error_tls_versions),
      cmocka_unit_test(test_error_alpn),
      cmocka_unit_test(test_error_routes),
      cmocka_unit_test(test_error_value_is_quoted_safely),
      cmocka_unit_test(test_every_prefix),
      cmocka_unit_test(test_every_line_deleted),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
