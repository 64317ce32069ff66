/* postern: the top-level backends: section (named backend sets: servers,
 * balance, health, passive, retries, proxy_protocol, tls) and the backend key of
 * listeners and routes, which names a set, or is "host:port" (an inline set
 * of one server) or builtin:info. See docs/config.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_parse.h"
#include "postern/common.h"
#include "postern/config.h"

#define QBUF 2100
#define MAX_NAME_LEN 64
#define MAX_WEIGHT 1000
#define MAX_RETRIES 10
#define SEC(n) ((uint64_t)(n)*1000)
#define HOUR(n) (SEC(n) * 3600)

#define BACKEND_EXPECTED "a name from backends:, host:port, [ipv6]:port or builtin:info"
#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."

/* Grows cfg->backends by one set (zeroed, with the defaults). Returns the
 * set or NULL when out of memory. */
static pst_backend_set_conf_t *set_add(pst_config_t *cfg) {
  pst_backend_set_conf_t **arr = realloc(cfg->backends, (cfg->n_backends + 1) * sizeof(*arr));
  if (arr == NULL) return NULL;
  cfg->backends = arr;
  pst_backend_set_conf_t *b = calloc(1, sizeof(*b));
  if (b == NULL) return NULL;
  arr[cfg->n_backends++] = b;
  b->balance = PST_BALANCE_ROUND_ROBIN;
  b->check = PST_CHECK_NONE;
  b->check_interval_ms = SEC(2);
  b->check_timeout_ms = SEC(1);
  b->rise = 2;
  b->fall = 3;
  b->passive_failures = 5;
  b->passive_cooldown_ms = SEC(10);
  b->retries = 1;
  b->proxy_protocol = PST_PROXY_NONE;
  return b;
}

static pst_backend_set_conf_t *set_named(const pst_config_t *cfg, const char *name, int inl) {
  for (size_t i = 0; i < cfg->n_backends; i++) {
    pst_backend_set_conf_t *b = cfg->backends[i];
    if (b->name != NULL && b->inline_set == inl && strcmp(b->name, name) == 0) return b;
  }
  return NULL;
}

/* ---- servers[] ------------------------------------------------------ */

static int set_server_address(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_server_conf_t *s = obj;
  char q[QBUF], why[256];
  const char *text;
  int rc = pst_cfg_str(p, v, "host:port", &text);
  if (rc != 0) return rc;
  if (pst_parse_addr(text, &s->addr, why, sizeof(why)) != 0) {
    return pst_cfg_error(p, v, "invalid address %s: %s", pst_cfg_quote(text, q, sizeof(q)), why);
  }
  return 0;
}

static int set_server_weight(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  if (v->type == YAML_SCALAR_NODE && strcmp((const char *)v->data.scalar.value, "0") == 0) {
    return pst_cfg_error(p, v,
                         "weight 0 would send the server nothing; expected 1..%d (remove the "
                         "server to take it out)",
                         MAX_WEIGHT);
  }
  int rc = pst_cfg_uint(p, v, 1, MAX_WEIGHT, &n);
  if (rc == 0) ((pst_server_conf_t *)obj)->weight = (unsigned)n;
  return rc;
}

static const pst_cfg_key_t server_keys[] = {
    {"address", set_server_address, "host:port"},
    {"weight", set_server_weight, NULL},
};

static int server_item(pst_cfg_t *p, yaml_node_t *item, size_t i, void *obj) {
  pst_backend_set_conf_t *b = obj;
  pst_server_conf_t *s = &b->servers[i];
  s->mark = pst_cfg_mark(item);
  s->weight = 1;
  int rc = item->type == YAML_SCALAR_NODE
               ? set_server_address(p, item, s)
               : pst_cfg_map(p, item, server_keys, PST_ARRAY_SIZE(server_keys), s);
  if (rc != 0) return rc;
  for (size_t k = 0; k < i; k++) {
    if (pst_addr_equal(&b->servers[k].addr, &s->addr)) {
      char q[QBUF];
      return pst_cfg_error(p, item,
                           "server %s is listed twice (also at line %d); expected each address "
                           "once (use weight: to give one more traffic)",
                           pst_cfg_quote(s->addr.text, q, sizeof(q)), b->servers[k].mark.line);
    }
  }
  return 0;
}

static int set_servers(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_backend_set_conf_t *b = obj;
  size_t n;
  int rc = pst_cfg_list(p, v, "at least one server (address: host:port)", &n);
  if (rc != 0) return rc;
  if (n > PST_MAX_SERVERS) {
    return pst_cfg_error(p, v, "%zu servers; expected at most %d", n, PST_MAX_SERVERS);
  }
  b->servers = calloc(n, sizeof(*b->servers));
  if (b->servers == NULL) return pst_cfg_nomem(p);
  b->n_servers = n;
  return pst_cfg_each(p, v, server_item, b);
}

/* ---- balance, health, passive, retries, proxy_protocol, tls ---------- */

static int set_balance(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  /* In the order of pst_balance_t. */
  static const char *const names[] = {"round_robin", "least_connections", "client_ip"};
  int i;
  int rc = pst_cfg_enum(p, v, "balance policy", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_backend_set_conf_t *)obj)->balance = (pst_balance_t)i;
  return rc;
}

static int set_check(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  /* In the order of pst_check_t. */
  static const char *const names[] = {"none", "tcp", "http"};
  int i;
  int rc = pst_cfg_enum(p, v, "health check", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_backend_set_conf_t *)obj)->check = (pst_check_t)i;
  return rc;
}

/* health.path: an origin-form request target (RFC 9112 3.2.1), printable
 * and without spaces, so that it goes into the request line as written. */
static int set_check_path(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char expected[] = "a path starting with / (e.g. /healthz), without spaces";
  pst_backend_set_conf_t *b = obj;
  char q[QBUF];
  const char *s;
  int rc = pst_cfg_str(p, v, expected, &s);
  if (rc != 0) return rc;
  size_t len = strlen(s), ok = 0;
  while (s[ok] > 0x20 && s[ok] < 0x7f) ok++;
  if (s[0] != '/' || ok != len || len > 1024) {
    return pst_cfg_error(p, v, "invalid health check path %s; expected %s",
                         pst_cfg_quote(s, q, sizeof(q)), expected);
  }
  free(b->check_path);
  b->check_path = NULL;
  return pst_cfg_strdup(p, v, expected, &b->check_path);
}

static int set_check_interval(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_duration(p, v, 100, HOUR(1), &((pst_backend_set_conf_t *)obj)->check_interval_ms);
}

static int set_check_timeout(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_duration(p, v, 10, HOUR(1), &((pst_backend_set_conf_t *)obj)->check_timeout_ms);
}

static int read_count(pst_cfg_t *p, yaml_node_t *v, const char *what, unsigned *out) {
  uint64_t n;
  if (v->type == YAML_SCALAR_NODE && strcmp((const char *)v->data.scalar.value, "0") == 0) {
    return pst_cfg_error(p, v, "%s 0 would never be reached; expected 1..100", what);
  }
  int rc = pst_cfg_uint(p, v, 1, 100, &n);
  if (rc == 0) *out = (unsigned)n;
  return rc;
}

static int set_rise(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return read_count(p, v, "rise", &((pst_backend_set_conf_t *)obj)->rise);
}

static int set_fall(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return read_count(p, v, "fall", &((pst_backend_set_conf_t *)obj)->fall);
}

static const pst_cfg_key_t health_keys[] = {
    {"check", set_check, NULL},
    {"path", set_check_path, NULL},
    {"interval", set_check_interval, NULL},
    {"timeout", set_check_timeout, NULL},
    {"rise", set_rise, NULL},
    {"fall", set_fall, NULL},
};

static int set_health(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_backend_set_conf_t *b = obj;
  int rc = pst_cfg_map(p, v, health_keys, PST_ARRAY_SIZE(health_keys), b);
  if (rc == 0 && b->check_timeout_ms > b->check_interval_ms) {
    return pst_cfg_error(p, v,
                         "timeout (%llu ms) is longer than interval (%llu ms); expected a timeout "
                         "no longer than the interval",
                         (unsigned long long)b->check_timeout_ms,
                         (unsigned long long)b->check_interval_ms);
  }
  return rc;
}

static int set_passive_failures(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 0, 1000, &n);
  if (rc == 0) ((pst_backend_set_conf_t *)obj)->passive_failures = (unsigned)n;
  return rc;
}

static int set_passive_cooldown(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_duration(p, v, 100, HOUR(1),
                          &((pst_backend_set_conf_t *)obj)->passive_cooldown_ms);
}

static const pst_cfg_key_t passive_keys[] = {
    {"failures", set_passive_failures, NULL},
    {"cooldown", set_passive_cooldown, NULL},
};

static int set_passive(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_map(p, v, passive_keys, PST_ARRAY_SIZE(passive_keys), obj);
}

static int set_retries(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 0, MAX_RETRIES, &n);
  if (rc == 0) ((pst_backend_set_conf_t *)obj)->retries = (unsigned)n;
  return rc;
}

static int set_proxy_protocol(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  /* In the order of pst_proxy_t (any is for accept_proxy only). */
  static const char *const names[] = {"none", "v1", "v2"};
  int i;
  int rc = pst_cfg_enum(p, v, "PROXY protocol version", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_backend_set_conf_t *)obj)->proxy_protocol = (pst_proxy_t)i;
  return rc;
}

static int set_tls_ca_file(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_backend_set_conf_t *b = obj;
  free(b->tls_ca_file);
  b->tls_ca_file = NULL;
  return pst_cfg_file(p, v, &b->tls_ca_file, &b->tls_ca_mark);
}

/* tls.server_name: a DNS name (RFC 6066 3: SNI carries host names only,
 * never an address literal), at most 253 characters. */
static int set_tls_server_name(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char expected[] = "a DNS name (letters, digits, '-' and '.'), e.g. app.internal";
  static const char dns_chars[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.";
  pst_backend_set_conf_t *b = obj;
  char q[QBUF];
  const char *s;
  int rc = pst_cfg_str(p, v, expected, &s);
  if (rc != 0) return rc;
  size_t len = strlen(s);
  if (len == 0 || len > 253 || strspn(s, dns_chars) != len || s[0] == '.' || s[0] == '-' ||
      strstr(s, "..") != NULL) {
    return pst_cfg_error(p, v, "invalid server_name %s; expected %s",
                         pst_cfg_quote(s, q, sizeof(q)), expected);
  }
  free(b->tls_server_name);
  b->tls_server_name = NULL;
  return pst_cfg_strdup(p, v, expected, &b->tls_server_name);
}

static int set_tls_verify(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"false", "true"};
  int i;
  int rc = pst_cfg_enum(p, v, "value", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_backend_set_conf_t *)obj)->tls_verify = i;
  return rc;
}

static const pst_cfg_key_t tls_keys[] = {
    {"ca_file", set_tls_ca_file, NULL},
    {"server_name", set_tls_server_name, NULL},
    {"verify", set_tls_verify, NULL},
};

/* tls: TLS to the servers. An empty mapping ("tls: {}") turns it on with
 * the defaults: the system store, each server's host, verified. */
static int set_tls(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_backend_set_conf_t *b = obj;
  if (v->type != YAML_MAPPING_NODE) {
    return pst_cfg_error(p, v,
                         "expected a mapping (ca_file, server_name, verify), e.g. tls: {ca_file: "
                         "/etc/ssl/internal-ca.pem}");
  }
  b->tls = 1;
  b->tls_verify = 1;
  b->tls_mark = pst_cfg_mark(v);
  return pst_cfg_map(p, v, tls_keys, PST_ARRAY_SIZE(tls_keys), b);
}

static const pst_cfg_key_t set_keys[] = {
    {"servers", set_servers, "a list of servers, each with address: host:port"},
    {"balance", set_balance, NULL},
    {"health", set_health, NULL},
    {"passive", set_passive, NULL},
    {"retries", set_retries, NULL},
    {"proxy_protocol", set_proxy_protocol, NULL},
    {"tls", set_tls, NULL},
};

/* ---- backends: ------------------------------------------------------ */

static int backend_set(pst_cfg_t *p, yaml_node_t *key, yaml_node_t *value, pst_config_t *cfg) {
  static const char expected[] = "1 to 64 letters, digits, '-', '_' or '.'";
  char q[QBUF];
  const char *name = (const char *)key->data.scalar.value;
  size_t len = strspn(name, NAME_CHARS);
  if (name[len] != '\0' || len == 0 || len > MAX_NAME_LEN) {
    return pst_cfg_error(p, key, "invalid backend name %s; expected %s",
                         pst_cfg_quote(name, q, sizeof(q)), expected);
  }
  const pst_backend_set_conf_t *o = set_named(cfg, name, 0);
  if (o != NULL) {
    return pst_cfg_error(p, key,
                         "backend %s is already defined at line %d; expected each name once",
                         pst_cfg_quote(name, q, sizeof(q)), o->mark.line);
  }
  pst_backend_set_conf_t *b = set_add(cfg);
  if (b == NULL || (b->name = strdup(name)) == NULL) return pst_cfg_nomem(p);
  b->mark = pst_cfg_mark(key);
  return pst_cfg_map(p, value, set_keys, PST_ARRAY_SIZE(set_keys), b);
}

int pst_cfg_backends_parse(pst_cfg_t *p, yaml_node_t *v, pst_config_t *cfg) {
  if (v->type != YAML_MAPPING_NODE) {
    return pst_cfg_error(p, v, "expected a mapping of backend names to their servers");
  }
  for (yaml_node_pair_t *pair = v->data.mapping.pairs.start; pair < v->data.mapping.pairs.top;
       pair++) {
    yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
    yaml_node_t *val = yaml_document_get_node(p->doc, pair->value);
    if (k == NULL || val == NULL || k->type != YAML_SCALAR_NODE) {
      return pst_cfg_error(p, k != NULL ? k : v, "expected a backend name as the key");
    }
    size_t len = pst_cfg_path_key(p, (const char *)k->data.scalar.value);
    int rc = backend_set(p, k, val, cfg);
    pst_cfg_path_pop(p, len);
    if (rc != 0) return rc;
  }
  return 0;
}

/* ---- the backend key ------------------------------------------------ */

/* The inline set of "host:port": one per distinct text, shared by every
 * backend key that writes it. */
static int inline_set(pst_cfg_t *p, yaml_node_t *v, const char *s, pst_config_t *cfg,
                      pst_backend_set_conf_t **out) {
  char q[QBUF], why[256];
  pst_backend_set_conf_t *b = set_named(cfg, s, 1);
  if (b != NULL) {
    *out = b;
    return 0;
  }
  pst_addr_t addr;
  if (pst_parse_addr(s, &addr, why, sizeof(why)) != 0) {
    return pst_cfg_error(p, v, "invalid address %s: %s", pst_cfg_quote(s, q, sizeof(q)), why);
  }
  b = set_add(cfg);
  if (b == NULL || (b->name = strdup(s)) == NULL) return pst_cfg_nomem(p);
  b->inline_set = 1;
  b->mark = pst_cfg_mark(v);
  b->servers = calloc(1, sizeof(*b->servers));
  if (b->servers == NULL) return pst_cfg_nomem(p);
  b->n_servers = 1;
  b->servers[0].addr = addr;
  b->servers[0].weight = 1;
  b->servers[0].mark = b->mark;
  *out = b;
  return 0;
}

static int unknown_name(pst_cfg_t *p, yaml_node_t *v, const char *s, const pst_config_t *cfg) {
  char q[QBUF], names[512] = "", hint[96] = "";
  const char *cands[64];
  size_t n = 0, off = 0;
  for (size_t i = 0; i < cfg->n_backends && n < PST_ARRAY_SIZE(cands); i++) {
    if (cfg->backends[i]->inline_set) continue;
    cands[n++] = cfg->backends[i]->name;
    int w =
        snprintf(names + off, sizeof(names) - off, "%s%s", off ? ", " : "", cfg->backends[i]->name);
    if (w > 0 && (size_t)w < sizeof(names) - off) off += (size_t)w;
  }
  const char *near = pst_cfg_suggest(s, cands, n);
  if (near != NULL) snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", near);
  if (n == 0) {
    return pst_cfg_error(p, v,
                         "unknown backend %s: there is no backends: section; expected host:port, "
                         "builtin:info, or a name defined under backends:",
                         pst_cfg_quote(s, q, sizeof(q)));
  }
  return pst_cfg_error(p, v,
                       "unknown backend %s%s; expected one of backends: (%s), host:port or "
                       "builtin:info",
                       pst_cfg_quote(s, q, sizeof(q)), hint, names);
}

int pst_cfg_read_backend(pst_cfg_t *p, yaml_node_t *v, pst_config_t *cfg, pst_backend_conf_t *b) {
  static const char *const builtins[] = {"builtin:info"};
  char q[QBUF];
  const char *s;
  int rc = pst_cfg_str(p, v, BACKEND_EXPECTED, &s);
  if (rc != 0) return rc;
  b->mark = pst_cfg_mark(v);
  if (strncmp(s, "builtin:", 8) == 0) {
    if (strcmp(s, builtins[0]) != 0) {
      return pst_cfg_error(p, v, "unknown built-in backend %s; expected one of: builtin:info",
                           pst_cfg_quote(s, q, sizeof(q)));
    }
    b->kind = PST_BACKEND_BUILTIN_INFO;
    b->set = NULL;
    snprintf(b->addr.text, sizeof(b->addr.text), "%s", s);
    return 0;
  }
  pst_backend_set_conf_t *set = NULL;
  if (strchr(s, ':') != NULL) {
    rc = inline_set(p, v, s, cfg, &set);
    if (rc != 0) return rc;
  } else {
    set = set_named(cfg, s, 0);
    if (set == NULL) return unknown_name(p, v, s, cfg);
  }
  b->kind = PST_BACKEND_ADDR;
  b->set = set;
  b->addr = set->servers[0].addr;
  snprintf(b->addr.text, sizeof(b->addr.text), "%s", s);
  b->proxy_protocol = set->proxy_protocol;
  return 0;
}

void pst_cfg_backends_free(pst_config_t *cfg) {
  for (size_t i = 0; i < cfg->n_backends; i++) {
    pst_backend_set_conf_t *b = cfg->backends[i];
    if (b == NULL) continue;
    free(b->name);
    free(b->servers);
    free(b->check_path);
    free(b->tls_ca_file);
    free(b->tls_server_name);
    free(b);
  }
  free(cfg->backends);
  cfg->backends = NULL;
  cfg->n_backends = 0;
}

int pst_cfg_backends_finish(pst_cfg_t *p, pst_config_t *cfg) {
  for (size_t i = 0; i < cfg->n_backends; i++) {
    pst_backend_set_conf_t *b = cfg->backends[i];
    if (b->check == PST_CHECK_HTTP && b->check_path == NULL) {
      b->check_path = strdup("/");
      if (b->check_path == NULL) return pst_cfg_nomem(p);
    }
  }
  return 0;
}
