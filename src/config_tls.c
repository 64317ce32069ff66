/* postern: configuration keys of key exchange, session resumption and
 * 0-RTT, inside a listener's tls mapping: groups, session_tickets, ticket_keys, ticket_rotation,
 * ticket_lifetime, early_data, max_early_data, tcp_early_data. See
 * docs/config.md for what each means. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_parse.h"
#include "postern/common.h"
#include "postern/ticket.h"

#define SEC(n) ((uint64_t)(n)*1000)
#define MINUTES(n) (SEC(n) * 60)
#define HOUR(n) (MINUTES(n) * 60)
#define DAY(n) (HOUR(n) * 24)

/* 16 KiB: one full TLS record (RFC 8446 5.1), enough for an HTTP request
 * head. */
#define EARLY_DATA_DEFAULT 16384
/* Held early data is buffered per connection: keep the bound modest. */
#define EARLY_DATA_MAX (256 * 1024)

/* The key-exchange groups tls.groups may name: IANA NamedGroup codes
 * (RFC 8446 4.2.7, RFC 8422 5.1.1). X448 and the FFDHE groups are not in
 * postern's wolfSSL build. */
static const char *const group_names[] = {"x25519", "p256", "p384", "p521"};
static const uint16_t group_codes[] = {29, 23, 24, 25};

void pst_cfg_tls_resume_defaults(pst_listener_conf_t *l) {
  /* X25519 first, the cheapest exchange; P-256 and P-384 for clients
   * without it (a client offering P-384 alone would otherwise fail). */
  l->groups[0] = 29;
  l->groups[1] = 23;
  l->groups[2] = 24;
  l->n_groups = 3;
  l->session_tickets = 1;
  l->ticket_keys = NULL;
  l->ticket_rotation_ms = HOUR(1);
  l->ticket_lifetime_ms = HOUR(6);
  l->early_data = PST_EARLY_DATA_REJECT;
  l->max_early_data = EARLY_DATA_DEFAULT;
  l->tcp_early_data = PST_TCP_EARLY_HOLD;
}

static int group_item(pst_cfg_t *p, yaml_node_t *item, size_t i, void *obj) {
  pst_listener_conf_t *l = obj;
  (void)i;
  int g;
  int rc =
      pst_cfg_enum(p, item, "key-exchange group", group_names, PST_ARRAY_SIZE(group_names), &g);
  if (rc != 0) return rc;
  for (unsigned k = 0; k < l->n_groups; k++) {
    if (l->groups[k] == group_codes[g]) {
      return pst_cfg_error(p, item, "group %s is listed twice; expected each group once",
                           group_names[g]);
    }
  }
  assert(l->n_groups < PST_TLS_MAX_GROUPS);
  l->groups[l->n_groups++] = group_codes[g];
  return 0;
}

int pst_cfg_set_groups(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  size_t n;
  int rc = pst_cfg_list(p, v, "at least one group (x25519, p256, p384, p521)", &n);
  if (rc != 0) return rc;
  /* Each of the four names at most once (group_item): a fifth item is
   * unknown or repeated and reported before it would overflow groups. */
  l->n_groups = 0;
  return pst_cfg_each(p, v, group_item, l);
}

static int set_client_auth_mode(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"none", "optional", "required"};
  int i;
  int rc = pst_cfg_enum(p, v, "client_auth mode", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_listener_conf_t *)obj)->client_auth = (pst_client_auth_t)i;
  return rc;
}

static int set_client_auth_ca_file(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  return pst_cfg_file(p, v, &l->client_ca_file, &l->client_ca_file_mark);
}

static int set_client_auth_forward(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"none", "headers"};
  int i;
  int rc = pst_cfg_enum(p, v, "client certificate forwarding", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_listener_conf_t *)obj)->client_cert_forward = i;
  return rc;
}

int pst_cfg_set_client_auth(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const pst_cfg_key_t keys[] = {
      {"mode", set_client_auth_mode, NULL},
      {"ca_file", set_client_auth_ca_file, NULL},
      {"forward", set_client_auth_forward, NULL},
  };
  pst_listener_conf_t *l = obj;
  l->client_auth_mark = pst_cfg_mark(v);
  int rc = pst_cfg_map(p, v, keys, PST_ARRAY_SIZE(keys), l);
  if (rc != 0) return rc;
  /* Verified against ca_file only: the system store would let any public
   * CA's customer in. */
  if (l->client_auth != PST_CLIENT_AUTH_NONE && l->client_ca_file == NULL) {
    return pst_cfg_error(p, v,
                         "client_auth needs ca_file: the CA certificates client certificates "
                         "must chain to (the system store is never used for clients)");
  }
  return 0;
}

int pst_cfg_set_intermediates(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  return pst_cfg_file(p, v, &l->intermediates, &l->intermediates_mark);
}

/* tls.ocsp_dir: must name a directory now; the files in it are read (and
 * may be missing) when certificates are loaded. */
int pst_cfg_set_ocsp_dir(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  const char *s;
  char q[128];
  struct stat st;
  int rc = pst_cfg_str(p, v, "a directory of OCSP responses", &s);
  if (rc != 0) return rc;
  if (stat(s, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return pst_cfg_error(p, v,
                         "ocsp_dir %s is not a directory; expected the directory holding "
                         "<certificate file name>.ocsp responses",
                         pst_cfg_quote(s, q, sizeof(q)));
  }
  l->ocsp_dir_mark = pst_cfg_mark(v);
  return pst_cfg_strdup(p, v, "a directory of OCSP responses", &l->ocsp_dir);
}

int pst_cfg_set_session_tickets(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"false", "true"};
  int i;
  int rc = pst_cfg_enum(p, v, "value", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_listener_conf_t *)obj)->session_tickets = i;
  return rc;
}

int pst_cfg_set_ticket_keys(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  return pst_cfg_file(p, v, &l->ticket_keys, &l->ticket_keys_mark);
}

int pst_cfg_set_ticket_rotation(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_duration(p, v, MINUTES(1), DAY(7),
                          &((pst_listener_conf_t *)obj)->ticket_rotation_ms);
}

int pst_cfg_set_ticket_lifetime(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  /* RFC 8446 4.6.1: servers MUST NOT use a lifetime over 7 days. wolfSSL
   * counts it in seconds. */
  return pst_cfg_duration(p, v, SEC(1), PST_TICKET_LIFETIME_MAX_MS,
                          &((pst_listener_conf_t *)obj)->ticket_lifetime_ms);
}

int pst_cfg_set_early_data(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"reject", "accept"};
  int i;
  int rc = pst_cfg_enum(p, v, "early data policy", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_listener_conf_t *)obj)->early_data = (pst_early_data_t)i;
  return rc;
}

int pst_cfg_set_max_early_data(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 1, EARLY_DATA_MAX, &n);
  if (rc == 0) ((pst_listener_conf_t *)obj)->max_early_data = (unsigned)n;
  return rc;
}

int pst_cfg_set_tcp_early_data(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"hold", "forward"};
  int i;
  int rc = pst_cfg_enum(p, v, "tcp early data handling", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_listener_conf_t *)obj)->tcp_early_data = (pst_tcp_early_t)i;
  return rc;
}

int pst_cfg_tls_resume_check(pst_cfg_t *p, yaml_node_t *tls, pst_listener_conf_t *l) {
  if (l->client_auth != PST_CLIENT_AUTH_NONE) {
    /* A resumed session (RFC 8446 2.2) carries no certificate to verify or
     * forward: with client certificates every handshake is a full one. */
    if (l->early_data == PST_EARLY_DATA_ACCEPT) {
      return pst_cfg_error(p, tls,
                           "early_data: accept cannot go with client_auth: 0-RTT needs a "
                           "resumed session, and client_auth turns resumption off; expected "
                           "early_data: reject");
    }
    l->session_tickets = 0;
  }
  /* In-memory keys: a key is kept ticket_lifetime after it stops sealing,
   * so the ring holds lifetime / rotation + 2 keys at most. */
  if (l->ticket_keys == NULL &&
      l->ticket_lifetime_ms / l->ticket_rotation_ms + 2 > PST_TICKET_MAX_KEYS) {
    return pst_cfg_error(p, tls,
                         "ticket_rotation is too short for ticket_lifetime: in-memory "
                         "keys would number over %d; expected ticket_rotation of at least "
                         "ticket_lifetime / %d",
                         PST_TICKET_MAX_KEYS, PST_TICKET_MAX_KEYS - 2);
  }
  return 0;
}
