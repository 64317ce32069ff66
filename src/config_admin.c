/* postern: the configuration's top-level admin: mapping (admin.h: the plain
 * HTTP endpoint for /metrics, /healthz and /readyz). */
#include <string.h>

#include "config_parse.h"
#include "postern/common.h"
#include "postern/config.h"

#define ADMIN_LISTEN_EXPECTED "host:port, e.g. 127.0.0.1:9090"
#define QBUF 2100

static int set_admin_listen(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_config_t *cfg = obj;
  char q[QBUF], why[256];
  const char *s;
  int rc = pst_cfg_str(p, v, ADMIN_LISTEN_EXPECTED, &s);
  if (rc != 0) return rc;
  if (pst_parse_addr(s, &cfg->admin_listen, why, sizeof(why)) != 0) {
    return pst_cfg_error(p, v, "invalid address %s: %s", pst_cfg_quote(s, q, sizeof(q)), why);
  }
  cfg->admin_listen_mark = pst_cfg_mark(v);
  cfg->admin_on = 1;
  /* The admin endpoint has a socket of its own: never a TLS listener's. */
  const pst_listener_conf_t *l = pst_cfg_listener_at(cfg, &cfg->admin_listen);
  if (l != NULL) {
    return pst_cfg_error(p, v,
                         "address %s is already used by listener \"%s\" (line %d); expected a "
                         "host:port of its own for the admin endpoint",
                         pst_cfg_quote(s, q, sizeof(q)), l->name != NULL ? l->name : "?",
                         l->listen_mark.line);
  }
  return 0;
}

static const pst_cfg_key_t admin_keys[] = {
    {"listen", set_admin_listen, ADMIN_LISTEN_EXPECTED},
};

int pst_cfg_set_admin(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_map(p, v, admin_keys, PST_ARRAY_SIZE(admin_keys), obj);
}

const pst_listener_conf_t *pst_cfg_listener_at(const pst_config_t *cfg, const pst_addr_t *addr) {
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const pst_listener_conf_t *l = &cfg->listeners[i];
    /* A listener being read has no address yet (family 0): equal to none. */
    if (l->listen.len > 0 && pst_addr_equal(&l->listen, addr)) return l;
  }
  return NULL;
}
