/* postern: the PROXY protocol keys of a listener (docs/config.md):
 * accept_proxy, the header every client connection must start with, and
 * trusted_proxies, the address blocks of the balancers allowed to send it.
 * A backend's proxy_protocol is read with the backends. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_parse.h"
#include "postern/common.h"
#include "postern/proxy.h"

int pst_cfg_set_accept_proxy(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"none", "v1", "v2", "any"};
  pst_listener_conf_t *l = obj;
  int i;
  int rc = pst_cfg_enum(p, v, "PROXY protocol version", names, PST_ARRAY_SIZE(names), &i);
  if (rc != 0) return rc;
  l->accept_proxy = (pst_proxy_t)i; /* the names are in pst_proxy_t's order */
  l->accept_proxy_mark = pst_cfg_mark(v);
  return 0;
}

/* The block's first address, for the fix of a block with host bits set. */
static void network_of(const char *text, char *out, size_t len) {
  unsigned char a[16];
  char host[INET6_ADDRSTRLEN];
  const char *slash = strchr(text, '/');
  size_t n = slash != NULL ? (size_t)(slash - text) : 0;
  out[0] = '\0';
  if (slash == NULL || n >= sizeof(host)) return;
  memcpy(host, text, n);
  host[n] = '\0';
  int family = inet_pton(AF_INET, host, a) == 1 ? AF_INET : AF_INET6;
  if (family == AF_INET6 && inet_pton(AF_INET6, host, a) != 1) return;
  unsigned bits = (unsigned)atoi(slash + 1), max = family == AF_INET ? 32 : 128;
  if (bits > max) return;
  for (unsigned b = bits; b < max; b++) a[b / 8] &= (unsigned char)~(0x80u >> (b % 8));
  inet_ntop(family, a, host, sizeof(host));
  snprintf(out, len, "%s/%u", host, bits);
}

static int cidr_item(pst_cfg_t *p, yaml_node_t *item, size_t i, void *obj) {
  pst_listener_conf_t *l = obj;
  const char *s, *why;
  char q[256], net[64];
  int rc = pst_cfg_str(p, item, "an address block such as \"10.0.0.0/8\" or \"2001:db8::/32\"", &s);
  if (rc != 0) return rc;
  if (pst_proxy_cidr_parse(s, &l->trusted_proxies[i], &why) == 0) return 0;
  network_of(s, net, sizeof(net));
  if (net[0] != '\0' && strstr(why, "past the prefix") != NULL) {
    return pst_cfg_error(p, item,
                         "%s has bits set past its prefix length; write its first address: %s",
                         pst_cfg_quote(s, q, sizeof(q)), net);
  }
  return pst_cfg_error(p, item,
                       "%s: %s; expected an address block such as \"10.0.0.0/8\", "
                       "\"2001:db8::/32\" or an address alone (\"127.0.0.1\")",
                       pst_cfg_quote(s, q, sizeof(q)), why);
}

int pst_cfg_set_trusted_proxies(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  size_t n;
  int rc = pst_cfg_list(p, v, "at least one address block (\"10.0.0.0/8\")", &n);
  if (rc != 0) return rc;
  l->trusted_proxies = calloc(n, sizeof(*l->trusted_proxies));
  if (l->trusted_proxies == NULL) return pst_cfg_nomem(p);
  l->n_trusted_proxies = n;
  return pst_cfg_each(p, v, cidr_item, l);
}

/* The value node of key in the mapping node, or NULL. */
static yaml_node_t *map_value(pst_cfg_t *p, yaml_node_t *node, const char *key) {
  if (node->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top;
       pair++) {
    yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
    if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0) {
      return yaml_document_get_node(p->doc, pair->value);
    }
  }
  return NULL;
}

int pst_cfg_proxy_check(pst_cfg_t *p, yaml_node_t *item, const pst_listener_conf_t *l) {
  if (l->accept_proxy != PST_PROXY_NONE && l->n_trusted_proxies == 0) {
    yaml_node_t *at = map_value(p, item, "accept_proxy");
    size_t old = pst_cfg_path_key(p, "accept_proxy");
    int rc = pst_cfg_error(p, at != NULL ? at : item,
                           "accept_proxy needs trusted_proxies, the address blocks of the "
                           "balancers allowed to send PROXY headers; add e.g. "
                           "trusted_proxies: [\"10.0.0.0/8\"]");
    pst_cfg_path_pop(p, old);
    return rc;
  }
  if (l->accept_proxy == PST_PROXY_NONE && l->n_trusted_proxies > 0) {
    yaml_node_t *at = map_value(p, item, "trusted_proxies");
    size_t old = pst_cfg_path_key(p, "trusted_proxies");
    int rc = pst_cfg_error(p, at != NULL ? at : item,
                           "trusted_proxies without accept_proxy does nothing; set accept_proxy "
                           "(v1, v2 or any) or remove trusted_proxies");
    pst_cfg_path_pop(p, old);
    return rc;
  }
  return 0;
}
