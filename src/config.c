/* postern: the configuration keywords. Each YAML mapping has a keyword table
 * mapping its keys to setters that validate one value and store it; defaults
 * are set before a mapping is walked, so an absent key keeps its default.
 * The generic walking and error formatting live in config_parse.c. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_parse.h"
#include "postern/common.h"
#include "postern/config.h"
#include "postern/priv.h"

#define MAX_WORKERS 256
#define MAX_CONNECTIONS 1000000
#define MAX_CONFIG_BYTES (16u << 20)
#define MAX_NAME_LEN 64
#define QBUF 2100

#define SEC(n) ((uint64_t)(n)*1000)
#define MIN(n) (SEC(n) * 60)
#define HOUR(n) (MIN(n) * 60)

#define BACKEND_EXPECTED "a name from backends:, host:port, [ipv6]:port or builtin:info"
#define HOSTNAME_EXPECTED "a host name like example.test or a wildcard like *.example.test"

/* What the setters of one walk share: the config being built and the
 * listener whose keys are being read. */
typedef struct {
  pst_config_t *cfg;
  pst_listener_conf_t *listener;
} cfg_state_t;

static cfg_state_t *state_of(pst_cfg_t *p) { return p->user; }

/* ---- Helpers -------------------------------------------------------- */

static void lower(char *s) {
  for (; *s != '\0'; s++) {
    if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
  }
}

static unsigned cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) return 1;
  return n > MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
}

/* Checks a server name (RFC 1035 2.3.4 lengths; '_' tolerated, as resolvers
 * do). A wildcard is only the whole first label and needs two more labels
 * ("*.x.y"). Returns NULL when valid, else the reason. */
static const char *hostname_problem(const char *s) {
  size_t len = strlen(s), label = 0, labels = 1;
  if (len > 0 && s[len - 1] == '.') len--;
  if (len == 0) return "empty name";
  if (len > 253) return "longer than 253 characters";
  size_t i = 0;
  if (s[0] == '*') {
    if (len < 2 || s[1] != '.') return "a wildcard must be the whole first label";
    i = 2;
  }
  for (; i < len; i++) {
    char c = s[i];
    if (c == '.') {
      if (label == 0) return "empty label";
      label = 0;
      labels++;
    } else if (c == '*') {
      return "a wildcard must be the whole first label";
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_') {
      if (++label > 63) return "a label is longer than 63 characters";
    } else {
      return "invalid character";
    }
  }
  if (label == 0) return "empty label";
  /* labels counts the labels after "*." for a wildcard (the loop starts
   * past it): "*.example.test" has the two it needs. */
  if (s[0] == '*' && labels < 2) return "a wildcard needs at least two labels after \"*.\"";
  return NULL;
}

/* Reads a server name: validated, lower-cased, one trailing dot removed. */
static int read_hostname(pst_cfg_t *p, yaml_node_t *v, char **out) {
  char q[QBUF];
  const char *s;
  int rc = pst_cfg_str(p, v, HOSTNAME_EXPECTED, &s);
  if (rc != 0) return rc;
  const char *why = hostname_problem(s);
  if (why != NULL) {
    return pst_cfg_error(p, v, "invalid server name %s: %s; expected %s",
                         pst_cfg_quote(s, q, sizeof(q)), why, HOSTNAME_EXPECTED);
  }
  rc = pst_cfg_strdup(p, v, HOSTNAME_EXPECTED, out);
  if (rc != 0) return rc;
  size_t len = strlen(*out);
  if ((*out)[len - 1] == '.') (*out)[len - 1] = '\0';
  lower(*out);
  return 0;
}

/* Allocates a zeroed array for a list and stores its length at once, so
 * pst_config_free() can free a half-filled array. */
static int alloc_items(pst_cfg_t *p, size_t n, size_t size, void **arr, size_t *count) {
  if (n == 0) return 0;
  *arr = calloc(n, size);
  if (*arr == NULL) return pst_cfg_nomem(p);
  *count = n;
  return 0;
}

/* ---- tls.certificates[] -------------------------------------------- */

static int set_cert_cert(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_cert_conf_t *c = obj;
  return pst_cfg_file(p, v, &c->cert, &c->cert_mark);
}

static int set_cert_key(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_cert_conf_t *c = obj;
  return pst_cfg_file(p, v, &c->key, &c->key_mark);
}

/* Not pst_cfg_file: a response file missing at load is a warning (the
 * certificate is served without a staple), not a configuration error, so
 * that a refresh that replaces the file never stops a reload. */
static int set_cert_ocsp(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_cert_conf_t *c = obj;
  c->ocsp_mark = pst_cfg_mark(v);
  return pst_cfg_strdup(p, v, "the path of a DER OCSP response file", &c->ocsp);
}

static const pst_cfg_key_t cert_keys[] = {
    {"cert", set_cert_cert, "the path of a PEM chain file (leaf first)"},
    {"key", set_cert_key, "the path of a PEM private key file"},
    {"ocsp", set_cert_ocsp, NULL},
};

static int cert_item(pst_cfg_t *p, yaml_node_t *item, size_t i, void *obj) {
  pst_cert_conf_t *c = &((pst_listener_conf_t *)obj)->certs[i];
  c->mark = pst_cfg_mark(item);
  return pst_cfg_map(p, item, cert_keys, PST_ARRAY_SIZE(cert_keys), c);
}

/* ---- tls ------------------------------------------------------------ */

static int version_item(pst_cfg_t *p, yaml_node_t *item, size_t i, void *obj) {
  static const char *const known[] = {"tls1.2", "tls1.3"};
  static const char *const old[] = {"ssl2",   "sslv2", "ssl3",   "sslv3",
                                    "ssl3.0", "tls1",  "tls1.0", "tls1.1"};
  pst_listener_conf_t *l = obj;
  char q[QBUF], hint[64];
  const char *s;
  int rc = pst_cfg_str(p, item, "tls1.2 or tls1.3", &s);
  if (rc != 0) return rc;
  unsigned bit = strcmp(s, "tls1.2") == 0 ? PST_TLS12 : strcmp(s, "tls1.3") == 0 ? PST_TLS13 : 0;
  if (bit == 0) {
    for (size_t k = 0; k < PST_ARRAY_SIZE(old); k++) {
      if (strcmp(s, old[k]) == 0) {
        /* RFC 8996 deprecates TLS 1.0 and 1.1; SSL was retired long before. */
        return pst_cfg_error(p, item,
                             "TLS version %s is not supported (obsolete, RFC 8996); "
                             "expected tls1.2 or tls1.3",
                             pst_cfg_quote(s, q, sizeof(q)));
      }
    }
    const char *near = pst_cfg_suggest(s, known, PST_ARRAY_SIZE(known));
    snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", near ? near : "");
    return pst_cfg_error(p, item, "unknown TLS version %s%s; expected tls1.2 or tls1.3",
                         pst_cfg_quote(s, q, sizeof(q)), near ? hint : "");
  }
  if (l->versions & bit) {
    return pst_cfg_error(p, item, "%s is listed twice; expected each version once", s);
  }
  l->versions |= bit;
  return 0;
}

static int set_versions(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  size_t n;
  int rc = pst_cfg_list(p, v, "tls1.2, tls1.3 or both", &n);
  if (rc != 0) return rc;
  l->versions = 0;
  return pst_cfg_each(p, v, version_item, l);
}

static int set_certificates(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  size_t n;
  int rc = pst_cfg_list(p, v, "at least one certificate (cert and key)", &n);
  if (rc == 0) rc = alloc_items(p, n, sizeof(*l->certs), (void **)&l->certs, &l->n_certs);
  return rc != 0 ? rc : pst_cfg_each(p, v, cert_item, l);
}

static int set_default_certificate(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  l->default_certificate_mark = pst_cfg_mark(v);
  return read_hostname(p, v, &l->default_certificate);
}

static int set_unknown_sni(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"default", "reject"};
  pst_listener_conf_t *l = obj;
  int i;
  int rc = pst_cfg_enum(p, v, "unknown_sni action", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) l->unknown_sni = i == 0 ? PST_UNKNOWN_SNI_DEFAULT : PST_UNKNOWN_SNI_REJECT;
  return rc;
}

static int set_ca_file(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  return pst_cfg_file(p, v, &l->ca_file, &l->ca_file_mark);
}

static const pst_cfg_key_t tls_keys[] = {
    {"versions", set_versions, NULL},
    {"certificates", set_certificates, "a list of certificates, each with cert and key"},
    {"default_certificate", set_default_certificate, NULL},
    {"unknown_sni", set_unknown_sni, NULL},
    {"ca_file", set_ca_file, NULL},
    {"groups", pst_cfg_set_groups, NULL},           /* config_tls.c */
    {"client_auth", pst_cfg_set_client_auth, NULL}, /* config_tls.c */
    {"intermediates", pst_cfg_set_intermediates, NULL},
    {"ocsp_dir", pst_cfg_set_ocsp_dir, NULL}, /* config_tls.c */
    /* Session resumption and 0-RTT: config_tls.c. */
    {"session_tickets", pst_cfg_set_session_tickets, NULL},
    {"ticket_keys", pst_cfg_set_ticket_keys, NULL},
    {"ticket_rotation", pst_cfg_set_ticket_rotation, NULL},
    {"ticket_lifetime", pst_cfg_set_ticket_lifetime, NULL},
    {"early_data", pst_cfg_set_early_data, NULL},
    {"max_early_data", pst_cfg_set_max_early_data, NULL},
    {"tcp_early_data", pst_cfg_set_tcp_early_data, NULL},
};

static int set_tls(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  int rc = pst_cfg_map(p, v, tls_keys, PST_ARRAY_SIZE(tls_keys), l);
  return rc != 0 ? rc : pst_cfg_tls_resume_check(p, v, l);
}

/* ---- routes[] ------------------------------------------------------- */

/* A server name may route to one backend only, across all routes of the
 * listener. */
static int route_name_taken(const pst_listener_conf_t *l, const char *name, int *line) {
  for (size_t r = 0; r < l->n_routes; r++) {
    for (size_t k = 0; k < l->routes[r].n_names; k++) {
      const char *n = l->routes[r].names[k];
      if (n != NULL && strcmp(n, name) == 0) {
        *line = l->routes[r].mark.line;
        return 1;
      }
    }
  }
  return 0;
}

typedef struct {
  pst_route_conf_t *route;
  pst_listener_conf_t *listener;
} route_ctx_t;

static int route_name_item(pst_cfg_t *p, yaml_node_t *item, size_t i, void *obj) {
  route_ctx_t *ctx = obj;
  char *name = NULL;
  int line;
  int rc = read_hostname(p, item, &name);
  if (rc != 0) return rc;
  if (route_name_taken(ctx->listener, name, &line)) {
    char q[QBUF];
    rc = pst_cfg_error(p, item,
                       "server name %s is already routed by the route at line %d; "
                       "expected each name in one route only",
                       pst_cfg_quote(name, q, sizeof(q)), line);
    free(name);
    return rc;
  }
  ctx->route->names[i] = name;
  return 0;
}

static int set_route_names(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_route_conf_t *r = obj;
  route_ctx_t ctx = {r, state_of(p)->listener};
  size_t n;
  int rc = pst_cfg_list(p, v, "at least one server name", &n);
  if (rc == 0) rc = alloc_items(p, n, sizeof(*r->names), (void **)&r->names, &r->n_names);
  return rc != 0 ? rc : pst_cfg_each(p, v, route_name_item, &ctx);
}

static int set_route_backend(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_route_conf_t *r = obj;
  return pst_cfg_read_backend(p, v, state_of(p)->cfg, &r->backend);
}

static const pst_cfg_key_t route_keys[] = {
    {"names", set_route_names, "a list of server names"},
    {"backend", set_route_backend, BACKEND_EXPECTED},
};

static int route_item(pst_cfg_t *p, yaml_node_t *item, size_t i, void *obj) {
  pst_route_conf_t *r = &((pst_listener_conf_t *)obj)->routes[i];
  r->mark = pst_cfg_mark(item);
  return pst_cfg_map(p, item, route_keys, PST_ARRAY_SIZE(route_keys), r);
}

static int set_routes(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  size_t n;
  int rc = pst_cfg_list(p, v, NULL, &n);
  if (rc == 0) rc = alloc_items(p, n, sizeof(*l->routes), (void **)&l->routes, &l->n_routes);
  return rc != 0 ? rc : pst_cfg_each(p, v, route_item, l);
}

/* ---- timeouts ------------------------------------------------------- */

static int set_handshake(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_duration(p, v, 1, HOUR(1), &((pst_listener_conf_t *)obj)->handshake_timeout_ms);
}

static int set_idle(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_duration(p, v, 1, HOUR(24), &((pst_listener_conf_t *)obj)->idle_timeout_ms);
}

static int set_request_head(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  return pst_cfg_duration(p, v, 1, HOUR(1), &l->request_head_timeout_ms);
}

static int set_backend_connect(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  return pst_cfg_duration(p, v, 1, HOUR(1), &l->backend_connect_timeout_ms);
}

static const pst_cfg_key_t timeout_keys[] = {
    {"handshake", set_handshake, NULL},
    {"idle", set_idle, NULL},
    {"request_head", set_request_head, NULL},
    {"backend_connect", set_backend_connect, NULL},
    {"backend_response", pst_cfg_set_backend_response, NULL},
};

static int set_timeouts(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_map(p, v, timeout_keys, PST_ARRAY_SIZE(timeout_keys), obj);
}

/* ---- listeners[] ---------------------------------------------------- */

/* Returns the earlier listener named name, or NULL. */
static const pst_listener_conf_t *listener_named(const pst_config_t *cfg,
                                                 const pst_listener_conf_t *upto,
                                                 const char *name) {
  for (const pst_listener_conf_t *o = cfg->listeners; o < upto; o++) {
    if (o->name != NULL && strcmp(o->name, name) == 0) return o;
  }
  return NULL;
}

static int duplicate_name(pst_cfg_t *p, const yaml_node_t *at, const pst_listener_conf_t *l) {
  const pst_listener_conf_t *o = listener_named(state_of(p)->cfg, l, l->name);
  if (o == NULL) return 0;
  char q[QBUF];
  return pst_cfg_error(p, at,
                       "listener name %s is already used by the listener at line %d; "
                       "expected a unique name",
                       pst_cfg_quote(l->name, q, sizeof(q)), o->mark.line);
}

static int set_name(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  static const char expected[] = "1 to 64 letters, digits, '-', '_' or '.'";
  char q[QBUF];
  const char *s;
  int rc = pst_cfg_str(p, v, expected, &s);
  if (rc != 0) return rc;
  size_t len = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");
  if (s[len] != '\0' || len > MAX_NAME_LEN) {
    return pst_cfg_error(p, v, "invalid listener name %s; expected %s",
                         pst_cfg_quote(s, q, sizeof(q)), expected);
  }
  rc = pst_cfg_strdup(p, v, expected, &l->name);
  return rc != 0 ? rc : duplicate_name(p, v, l);
}

static int set_listen(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  const pst_config_t *cfg = state_of(p)->cfg;
  char q[QBUF], why[256];
  const char *s;
  int rc = pst_cfg_str(p, v, "host:port", &s);
  if (rc != 0) return rc;
  l->listen_mark = pst_cfg_mark(v);
  if (pst_parse_addr(s, &l->listen, why, sizeof(why)) != 0) {
    return pst_cfg_error(p, v, "invalid address %s: %s", pst_cfg_quote(s, q, sizeof(q)), why);
  }
  if (cfg->admin_on && pst_addr_equal(&cfg->admin_listen, &l->listen)) {
    return pst_cfg_error(p, v,
                         "address %s is already used by admin.listen (line %d); expected a "
                         "different host:port (the admin endpoint has a socket of its own)",
                         pst_cfg_quote(s, q, sizeof(q)), cfg->admin_listen_mark.line);
  }
  for (const pst_listener_conf_t *o = cfg->listeners; o < l; o++) {
    if (pst_addr_equal(&o->listen, &l->listen)) {
      return pst_cfg_error(p, v,
                           "address %s is already used by listener \"%s\" (line %d); "
                           "expected a different host:port",
                           pst_cfg_quote(s, q, sizeof(q)), o->name, o->listen_mark.line);
    }
  }
  return 0;
}

static int set_mode(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"tcp", "http"};
  pst_listener_conf_t *l = obj;
  int i;
  int rc = pst_cfg_enum(p, v, "mode", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) l->mode = i == 1 ? PST_MODE_HTTP : PST_MODE_TCP;
  return rc;
}

/* One ALPN protocol name: RFC 7301 3.1 allows 1..255 bytes; we also require
 * printable ASCII so that names survive logs and messages. */
static int alpn_item(pst_cfg_t *p, yaml_node_t *item, size_t i, void *obj) {
  static const char expected[] = "a protocol name of 1 to 255 printable characters (e.g. h2)";
  pst_listener_conf_t *l = obj;
  char q[QBUF];
  const char *s;
  int rc = pst_cfg_str(p, item, expected, &s);
  if (rc != 0) return rc;
  size_t len = strlen(s), printable = 0;
  while (s[printable] > 0x20 && s[printable] < 0x7f) printable++;
  if (len > 255 || printable != len) {
    return pst_cfg_error(p, item, "invalid protocol name %s; expected %s",
                         pst_cfg_quote(s, q, sizeof(q)), expected);
  }
  for (size_t k = 0; k < i; k++) {
    if (strcmp(l->alpn[k], s) == 0) {
      return pst_cfg_error(p, item, "%s is listed twice; expected each protocol once",
                           pst_cfg_quote(s, q, sizeof(q)));
    }
  }
  return pst_cfg_strdup(p, item, expected, &l->alpn[i]);
}

/* Builds the ProtocolNameList of RFC 7301 3.1: each name preceded by its
 * one-byte length (the outer two-byte length is the TLS library's job). */
static int build_alpn_wire(pst_cfg_t *p, yaml_node_t *v, pst_listener_conf_t *l) {
  size_t total = 0;
  for (size_t i = 0; i < l->n_alpn; i++) total += 1 + strlen(l->alpn[i]);
  if (total > 65535) {
    return pst_cfg_error(p, v, "the list is %zu bytes long in TLS; expected at most 65535", total);
  }
  l->alpn_wire = malloc(total);
  if (l->alpn_wire == NULL) return pst_cfg_nomem(p);
  for (size_t i = 0; i < l->n_alpn; i++) {
    size_t len = strlen(l->alpn[i]);
    l->alpn_wire[l->alpn_wire_len++] = (unsigned char)len;
    memcpy(l->alpn_wire + l->alpn_wire_len, l->alpn[i], len);
    l->alpn_wire_len += len;
  }
  return 0;
}

static int set_alpn(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  size_t n;
  int rc = pst_cfg_list(p, v, NULL, &n);
  if (rc == 0) rc = alloc_items(p, n, sizeof(*l->alpn), (void **)&l->alpn, &l->n_alpn);
  if (rc == 0) rc = pst_cfg_each(p, v, alpn_item, l);
  return rc != 0 || n == 0 ? rc : build_alpn_wire(p, v, l);
}

static int set_backend(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  return pst_cfg_read_backend(p, v, state_of(p)->cfg, &l->backend);
}

static int set_max_connections(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 1, MAX_CONNECTIONS, &n);
  if (rc == 0) ((pst_listener_conf_t *)obj)->max_connections = (unsigned)n;
  return rc;
}

static int set_max_handshakes(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 1, MAX_CONNECTIONS, &n);
  if (rc == 0) ((pst_listener_conf_t *)obj)->max_handshakes_in_flight = (unsigned)n;
  return rc;
}

static const pst_cfg_key_t listener_keys[] = {
    {"name", set_name, NULL},
    {"listen", set_listen, "host:port"},
    {"mode", set_mode, NULL},
    {"alpn", set_alpn, NULL},
    {"tls", set_tls, "a mapping with at least certificates"},
    {"backend", set_backend, BACKEND_EXPECTED},
    {"routes", set_routes, NULL},
    {"timeouts", set_timeouts, NULL},
    {"max_connections", set_max_connections, NULL},
    {"max_handshakes_in_flight", set_max_handshakes, NULL},
    {"forwarded", pst_cfg_set_forwarded, NULL},
    {"access_log", pst_cfg_set_access_log, NULL},
    {"limits", pst_cfg_set_limits, NULL},
    {"h2", pst_cfg_set_h2, NULL},
    {"backend_pool", pst_cfg_set_backend_pool, NULL},
    {"accept_proxy", pst_cfg_set_accept_proxy, NULL},
    {"trusted_proxies", pst_cfg_set_trusted_proxies, NULL},
};

static void listener_defaults(pst_listener_conf_t *l) {
  l->mode = PST_MODE_TCP;
  l->versions = PST_TLS13;
  l->unknown_sni = PST_UNKNOWN_SNI_DEFAULT;
  l->handshake_timeout_ms = SEC(10);
  l->idle_timeout_ms = SEC(60);
  l->request_head_timeout_ms = SEC(10);
  l->backend_connect_timeout_ms = SEC(5);
  l->max_connections = 10000;
  l->max_handshakes_in_flight = 512;
  pst_cfg_http_defaults(l);
  pst_cfg_tls_resume_defaults(l);
}

/* Sets what ALPN a connection routed to b may negotiate (config-t.h). */
static void route_alpn(const pst_listener_conf_t *l, pst_backend_conf_t *b) {
  static const unsigned char h1_only[] = "\x08http/1.1";
  b->alpn_wire = l->alpn_wire;
  b->alpn_wire_len = l->alpn_wire_len;
  if (l->mode != PST_MODE_TCP || b->kind != PST_BACKEND_BUILTIN_INFO) return;
  b->alpn_wire_len = 0;
  for (size_t i = 0; i < l->n_alpn; i++) {
    if (strcmp(l->alpn[i], "http/1.1") == 0) {
      b->alpn_wire = h1_only;
      b->alpn_wire_len = sizeof(h1_only) - 1;
    }
  }
}

static int listener_item(pst_cfg_t *p, yaml_node_t *item, size_t i, void *obj) {
  pst_config_t *cfg = obj;
  pst_listener_conf_t *l = &cfg->listeners[i];
  char name[32];
  listener_defaults(l);
  l->mark = pst_cfg_mark(item);
  state_of(p)->listener = l;
  int rc = pst_cfg_map(p, item, listener_keys, PST_ARRAY_SIZE(listener_keys), l);
  if (rc == 0) rc = pst_cfg_proxy_check(p, item, l);
  if (rc == 0) {
    route_alpn(l, &l->backend);
    for (size_t r = 0; r < l->n_routes; r++) route_alpn(l, &l->routes[r].backend);
  }
  if (rc != 0 || l->name != NULL) return rc;
  snprintf(name, sizeof(name), "listener%zu", i);
  l->name = strdup(name);
  if (l->name == NULL) return pst_cfg_nomem(p);
  return duplicate_name(p, item, l);
}

/* ---- top level ------------------------------------------------------ */

static int set_workers(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_config_t *cfg = obj;
  char q[QBUF];
  const char *s;
  uint64_t n;
  int rc = pst_cfg_str(p, v, "auto or an integer 1..256", &s);
  if (rc != 0) return rc;
  if (strcmp(s, "auto") == 0) {
    cfg->workers = cpu_count();
    return 0;
  }
  if (s[0] < '0' || s[0] > '9') {
    return pst_cfg_error(p, v, "invalid value %s; expected auto or an integer 1..256",
                         pst_cfg_quote(s, q, sizeof(q)));
  }
  rc = pst_cfg_uint(p, v, 1, MAX_WORKERS, &n);
  if (rc == 0) cfg->workers = (unsigned)n;
  return rc;
}

static int set_log_level(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  /* In the order of pst_log_level_t. */
  static const char *const names[] = {"error", "warn", "info", "debug"};
  int i;
  int rc = pst_cfg_enum(p, v, "log level", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_config_t *)obj)->log_level = (pst_log_level_t)i;
  return rc;
}

static int set_log_format(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  /* In the order of pst_log_format_t. */
  static const char *const names[] = {"text", "json"};
  int i;
  int rc = pst_cfg_enum(p, v, "log format", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_config_t *)obj)->log_format = (pst_log_format_t)i;
  return rc;
}

/* The buffer size getpwnam_r or getgrnam_r start with (sysconf's hint, or
 * 16 KiB without one); ERANGE doubles it, up to NAM_BUF_MAX: a group's
 * entry lists its members and may be far longer than the hint. */
#define NAM_BUF_MAX (1024 * 1024)

static size_t nam_buf_start(int name) {
  long n = sysconf(name);
  return n > 0 && n < NAM_BUF_MAX ? (size_t)n : 16384;
}

/* getpwnam_r with a buffer that grows on ERANGE. Returns 0 or an errno
 * value (as getpwnam_r); *found is NULL when there is no such user. *buf
 * is the caller's to free, also on failure. */
static int lookup_user(const char *name, struct passwd *pw, char **buf, struct passwd **found) {
  int e = ERANGE;
  *buf = NULL;
  for (size_t size = nam_buf_start(_SC_GETPW_R_SIZE_MAX); e == ERANGE && size <= NAM_BUF_MAX;
       size *= 2) {
    free(*buf);
    *buf = malloc(size);
    if (*buf == NULL) return ENOMEM;
    e = getpwnam_r(name, pw, *buf, size, found);
  }
  return e;
}

/* getgrnam_r likewise. */
static int lookup_group(const char *name, struct group *gr, char **buf, struct group **found) {
  int e = ERANGE;
  *buf = NULL;
  for (size_t size = nam_buf_start(_SC_GETGR_R_SIZE_MAX); e == ERANGE && size <= NAM_BUF_MAX;
       size *= 2) {
    free(*buf);
    *buf = malloc(size);
    if (*buf == NULL) return ENOMEM;
    e = getgrnam_r(name, gr, *buf, size, found);
  }
  return e;
}

/* Whether s can go into a suggested shell command as it is. */
static int plain_name(const char *s) {
  for (; *s != '\0'; s++) {
    if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.') return 0;
  }
  return 1;
}

/* user: an existing user other than root, looked up now so that a typo is
 * an error with its line rather than a failure after the listeners are
 * bound. */
static int set_user(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_config_t *cfg = obj;
  char q[QBUF], *buf;
  const char *s;
  struct passwd pw, *found = NULL;
  int rc = pst_cfg_str(p, v, "a user name", &s);
  if (rc != 0) return rc;
  int e = lookup_user(s, &pw, &buf, &found);
  if (found != NULL) {
    cfg->uid = pw.pw_uid;
    if (cfg->group == NULL) cfg->gid = pw.pw_gid;
  }
  free(buf); /* pw's strings point into it: only the ids are kept */
  if (e == ENOMEM) return pst_cfg_nomem(p);
  if (found == NULL) {
    const char *name = pst_cfg_quote(s, q, sizeof(q));
    if (e != 0 && e != ENOENT && e != ESRCH) {
      return pst_cfg_error(p, v, "cannot look up user %s: %s", name, strerror(e));
    }
    return pst_cfg_error(p, v,
                         "no user %s on this system; expected an existing user (`getent passwd` "
                         "lists them); create one with `adduser --system --group "
                         "--no-create-home %s`",
                         name, plain_name(s) ? s : name);
  }
  if (cfg->uid == 0) {
    return pst_cfg_error(p, v,
                         "user %s is uid 0: postern would keep every privilege; expected an "
                         "unprivileged user such as postern or nobody, or no user key",
                         pst_cfg_quote(s, q, sizeof(q)));
  }
  cfg->user_mark = pst_cfg_mark(v);
  return pst_cfg_strdup(p, v, "a user name", &cfg->user);
}

static int set_group(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_config_t *cfg = obj;
  char q[QBUF], *buf;
  const char *s;
  struct group gr, *found = NULL;
  int rc = pst_cfg_str(p, v, "a group name", &s);
  if (rc != 0) return rc;
  int e = lookup_group(s, &gr, &buf, &found);
  gid_t gid = found != NULL ? gr.gr_gid : 0;
  free(buf); /* gr's strings point into it: only the id is kept */
  if (e == ENOMEM) return pst_cfg_nomem(p);
  if (found == NULL) {
    const char *name = pst_cfg_quote(s, q, sizeof(q));
    if (e != 0 && e != ENOENT && e != ESRCH) {
      return pst_cfg_error(p, v, "cannot look up group %s: %s", name, strerror(e));
    }
    return pst_cfg_error(p, v,
                         "no group %s on this system; expected an existing group (`getent group` "
                         "lists them), or no group key for the user's own",
                         name);
  }
  if (gid == 0) {
    return pst_cfg_error(p, v,
                         "group %s is gid 0: its members read what root's group may; expected "
                         "an unprivileged group, or no group key for the user's own",
                         pst_cfg_quote(s, q, sizeof(q)));
  }
  cfg->gid = gid;
  cfg->group_mark = pst_cfg_mark(v);
  return pst_cfg_strdup(p, v, "a group name", &cfg->group);
}

static int set_shutdown_timeout(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_duration(p, v, 0, HOUR(1), &((pst_config_t *)obj)->shutdown_timeout_ms);
}

static int set_listeners(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_config_t *cfg = obj;
  size_t n;
  int rc = pst_cfg_list(p, v, "at least one listener", &n);
  if (rc == 0) {
    rc = alloc_items(p, n, sizeof(*cfg->listeners), (void **)&cfg->listeners, &cfg->n_listeners);
  }
  return rc != 0 ? rc : pst_cfg_each(p, v, listener_item, cfg);
}

static int set_expiry_warn_days(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 0, 3650, &n);
  if (rc == 0) ((pst_config_t *)obj)->expiry_warn_days = (unsigned)n;
  return rc;
}

static int set_watch(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"false", "true"};
  int i;
  int rc = pst_cfg_enum(p, v, "value", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_config_t *)obj)->watch = i;
  return rc;
}

static int set_watch_debounce(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_duration(p, v, 0, MIN(1), &((pst_config_t *)obj)->watch_debounce_ms);
}

/* backends: is read before the rest (parse_root), wherever it is written,
 * so that a backend key may name a set defined further down. */
static int set_backends_done(pst_cfg_t *p, yaml_node_t *v, void *obj) { return 0; }

static const pst_cfg_key_t top_keys[] = {
    {"workers", set_workers, NULL},
    {"log_level", set_log_level, NULL},
    {"shutdown_timeout", set_shutdown_timeout, NULL},
    {"listeners", set_listeners, "a list of listeners"},
    {"expiry_warn_days", set_expiry_warn_days, NULL},
    {"watch", set_watch, NULL},
    {"watch_debounce", set_watch_debounce, NULL},
    {"log_format", set_log_format, NULL},
    {"user", set_user, NULL},
    {"group", set_group, NULL},
    {"early_data_replay", pst_cfg_set_early_data_replay, NULL},
    {"backends", set_backends_done, NULL},
    {"admin", pst_cfg_set_admin, NULL}, /* config_admin.c */
};

/* ---- Entry points --------------------------------------------------- */

/* The value node of the top-level key, for an error at its line (root
 * itself when the key is missing). */
static yaml_node_t *top_value(pst_cfg_t *p, yaml_node_t *root, const char *key) {
  yaml_node_t *at = root;
  for (yaml_node_pair_t *pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top;
       pair++) {
    yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
    if (strcmp((const char *)k->data.scalar.value, key) == 0) {
      at = yaml_document_get_node(p->doc, pair->value);
    }
  }
  return at;
}

/* group: alone would leave postern root with another group: refused, at
 * the group key (written before or after where user: would go). */
static int group_without_user(pst_cfg_t *p, yaml_node_t *root, const pst_config_t *cfg) {
  yaml_node_t *at = top_value(p, root, "group");
  char q[QBUF];
  pst_cfg_path_key(p, "group");
  return pst_cfg_error(p, at,
                       "group %s without user: postern changes its group only along with its "
                       "user; add user: too, or remove group",
                       pst_cfg_quote(cfg->group, q, sizeof(q)));
}

/* The first backends: key of the root mapping, read ahead of the others. */
static int parse_backends_first(pst_cfg_t *p, yaml_node_t *root, pst_config_t *cfg) {
  if (root->type != YAML_MAPPING_NODE) return 0; /* pst_cfg_map says what is wrong */
  for (yaml_node_pair_t *pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top;
       pair++) {
    yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
    if (k == NULL || k->type != YAML_SCALAR_NODE ||
        strcmp((const char *)k->data.scalar.value, "backends") != 0) {
      continue;
    }
    size_t len = pst_cfg_path_key(p, "backends");
    int rc = pst_cfg_backends_parse(p, yaml_document_get_node(p->doc, pair->value), cfg);
    pst_cfg_path_pop(p, len);
    return rc;
  }
  return 0;
}

static int parse_root(pst_cfg_t *p, pst_config_t *cfg) {
  yaml_node_t *root = yaml_document_get_root_node(p->doc);
  if (root == NULL || (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)) {
    return pst_cfg_error(p, root, "empty configuration; expected a mapping with \"listeners\"");
  }
  cfg->path = strdup(p->file);
  if (cfg->path == NULL) return pst_cfg_nomem(p);
  cfg->workers = cpu_count();
  cfg->log_level = PST_LOG_INFO;
  cfg->shutdown_timeout_ms = SEC(10);
  cfg->expiry_warn_days = 21;
  cfg->watch_debounce_ms = SEC(1);
  pst_cfg_replay_defaults(&cfg->early_data_replay);
  int rc = parse_backends_first(p, root, cfg);
  if (rc == 0) rc = pst_cfg_map(p, root, top_keys, PST_ARRAY_SIZE(top_keys), cfg);
  if (rc == 0) rc = pst_cfg_backends_finish(p, cfg);
  if (rc == 0 && cfg->group != NULL && cfg->user == NULL) return group_without_user(p, root, cfg);
  if (rc == 0 && cfg->user != NULL && cfg->group == NULL && cfg->gid == 0) {
    /* A user whose primary group is root's (RHEL's operator and sync are):
     * group: refuses gid 0, and the user's own group must not bring it back.
     * Checked once every key is read: group: may come after user:. */
    char q[QBUF];
    pst_cfg_path_key(p, "user");
    return pst_cfg_error(p, top_value(p, root, "user"),
                         "user %s has gid 0 as its primary group: its files and postern's would "
                         "be root's group's; add group: naming an unprivileged group (such as "
                         "nogroup), or choose another user",
                         pst_cfg_quote(cfg->user, q, sizeof(q)));
  }
  return rc;
}

int pst_config_parse(const char *name, const char *text, size_t len, pst_config_t **out, char *err,
                     size_t errlen) {
  yaml_document_t doc;
  pst_config_t *cfg;
  cfg_state_t state = {NULL, NULL};
  pst_cfg_t p = {.file = name, .err = err, .errlen = errlen, .user = &state};
  if (err != NULL && errlen > 0) err[0] = '\0';
  int rc = pst_cfg_load_doc(&p, text, len, &doc);
  if (rc != 0) {
    pst_cfg_free_aliases(&p);
    return rc;
  }
  p.doc = &doc;
  cfg = calloc(1, sizeof(*cfg));
  state.cfg = cfg;
  rc = cfg == NULL ? pst_cfg_nomem(&p) : parse_root(&p, cfg);
  yaml_document_delete(&doc);
  pst_cfg_free_aliases(&p);
  if (rc != 0) {
    pst_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return 0;
}

/* Reads a whole file into a malloc'ed buffer. Returns 0, -errno or PST_ECONFIG
 * for a file over MAX_CONFIG_BYTES. */
static int read_file(const char *path, char **data, size_t *len) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = fstat(fd, &st) != 0 ? -errno : 0;
  if (rc == 0 && !S_ISREG(st.st_mode)) rc = -EINVAL;
  if (rc == 0 && (uint64_t)st.st_size > MAX_CONFIG_BYTES) rc = PST_ECONFIG;
  char *buf = rc == 0 ? malloc((size_t)st.st_size + 1) : NULL;
  if (rc == 0 && buf == NULL) rc = -ENOMEM;
  size_t off = 0;
  while (rc == 0 && off < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      rc = n < 0 ? -errno : -EIO;
    else
      off += (size_t)n;
  }
  close(fd);
  if (rc != 0) {
    free(buf);
    return rc;
  }
  *data = buf;
  *len = off;
  return 0;
}

int pst_config_load(const char *path, pst_config_t **out, char *err, size_t errlen) {
  char *text = NULL;
  size_t len = 0;
  int rc = read_file(path, &text, &len);
  if (rc != 0) {
    char ebuf[128];
    const char *why = rc == PST_ECONFIG ? "larger than 16 MiB"
                      : rc == -EINVAL   ? "not a regular file"
                                        : strerror_r(-rc, ebuf, sizeof(ebuf));
    if (err != NULL && errlen > 0) {
      snprintf(err, errlen, "%s: cannot read: %s%s", path, why, pst_priv_hint(rc, "readable"));
    }
    return rc == -ENOMEM ? rc : PST_ECONFIG;
  }
  rc = pst_config_parse(path, text, len, out, err, errlen);
  free(text);
  return rc;
}

static void free_listener(pst_listener_conf_t *l) {
  free(l->name);
  for (size_t i = 0; i < l->n_alpn; i++) free(l->alpn[i]);
  free(l->alpn);
  free(l->alpn_wire);
  free(l->trusted_proxies);
  for (size_t i = 0; i < l->n_certs; i++) {
    free(l->certs[i].cert);
    free(l->certs[i].key);
    free(l->certs[i].ocsp);
  }
  free(l->certs);
  free(l->default_certificate);
  free(l->ca_file);
  free(l->client_ca_file);
  free(l->intermediates);
  free(l->ocsp_dir);
  free(l->ticket_keys);
  for (size_t i = 0; i < l->n_routes; i++) {
    for (size_t k = 0; k < l->routes[i].n_names; k++) free(l->routes[i].names[k]);
    free(l->routes[i].names);
  }
  free(l->routes);
  free(l->access_log);
}

void pst_config_free(pst_config_t *cfg) {
  if (cfg == NULL) return;
  for (size_t i = 0; i < cfg->n_listeners; i++) free_listener(&cfg->listeners[i]);
  free(cfg->listeners);
  pst_cfg_backends_free(cfg);
  free(cfg->user);
  free(cfg->group);
  pst_cfg_replay_free(&cfg->early_data_replay);
  free(cfg->path);
  free(cfg);
}
