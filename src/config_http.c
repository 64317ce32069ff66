/* postern: configuration keys of http mode (listener level): forwarded,
 * access_log, limits, h2, backend_pool, timeouts.backend_response. */
#include <stdlib.h>
#include <string.h>

#include "config_parse.h"
#include "postern/common.h"

#define SEC(n) ((uint64_t)(n)*1000)
#define HOUR(n) (SEC(n) * 3600)

void pst_cfg_http_defaults(pst_listener_conf_t *l) {
  l->forwarded = PST_FORWARDED_XFF;
  l->access_log = NULL;
  l->max_header_bytes = 32768;
  l->h2_max_concurrent_streams = 128;
  l->h2_stream_reset_rate = 100;
  l->h2_stream_reset_burst = 200;
  l->pool_max_idle = 4096;
  l->pool_max_idle_mib = 64;
  l->pool_idle_ms = SEC(60);
  l->backend_response_timeout_ms = SEC(60);
}

int pst_cfg_set_forwarded(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  static const char *const names[] = {"xff", "rfc7239"};
  int i;
  int rc = pst_cfg_enum(p, v, "forwarding header style", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_listener_conf_t *)obj)->forwarded = (pst_forwarded_t)i;
  return rc;
}

/* "stderr", or a file path whose directory exists: the file itself is
 * created at startup, so only its directory is checked here. */
int pst_cfg_set_access_log(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  const char *s;
  int rc = pst_cfg_str(p, v, "stderr or a file path", &s);
  if (rc != 0) return rc;
  if (strcmp(s, "off") == 0) return 0;
  return pst_cfg_strdup(p, v, "stderr or a file path", &l->access_log);
}

static int set_max_header_bytes(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 1024, 1024 * 1024, &n);
  if (rc == 0) ((pst_listener_conf_t *)obj)->max_header_bytes = (size_t)n;
  return rc;
}

static const pst_cfg_key_t limits_keys[] = {
    {"max_header_bytes", set_max_header_bytes, NULL},
};

int pst_cfg_set_limits(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_map(p, v, limits_keys, PST_ARRAY_SIZE(limits_keys), obj);
}

static int set_max_streams(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 1, 65536, &n);
  if (rc == 0) ((pst_listener_conf_t *)obj)->h2_max_concurrent_streams = (unsigned)n;
  return rc;
}

static int set_reset_rate(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 1, 1000000, &n);
  if (rc == 0) ((pst_listener_conf_t *)obj)->h2_stream_reset_rate = (unsigned)n;
  return rc;
}

static int set_reset_burst(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 1, 1000000, &n);
  if (rc == 0) ((pst_listener_conf_t *)obj)->h2_stream_reset_burst = (unsigned)n;
  return rc;
}

static const pst_cfg_key_t h2_keys[] = {
    {"max_concurrent_streams", set_max_streams, NULL},
    {"stream_reset_rate", set_reset_rate, NULL},
    {"stream_reset_burst", set_reset_burst, NULL},
};

int pst_cfg_set_h2(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_map(p, v, h2_keys, PST_ARRAY_SIZE(h2_keys), obj);
}

static int set_pool_max_idle(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 0, 100000, &n);
  if (rc == 0) ((pst_listener_conf_t *)obj)->pool_max_idle = (unsigned)n;
  return rc;
}

static int set_pool_max_idle_mib(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 0, 65536, &n);
  if (rc == 0) ((pst_listener_conf_t *)obj)->pool_max_idle_mib = (unsigned)n;
  return rc;
}

static int set_pool_idle(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_duration(p, v, 1, HOUR(24), &((pst_listener_conf_t *)obj)->pool_idle_ms);
}

static const pst_cfg_key_t pool_keys[] = {
    {"max_idle", set_pool_max_idle, NULL},
    {"max_idle_mib", set_pool_max_idle_mib, NULL},
    {"idle", set_pool_idle, NULL},
};

int pst_cfg_set_backend_pool(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_map(p, v, pool_keys, PST_ARRAY_SIZE(pool_keys), obj);
}

int pst_cfg_set_backend_response(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_listener_conf_t *l = obj;
  return pst_cfg_duration(p, v, 1, HOUR(24), &l->backend_response_timeout_ms);
}
