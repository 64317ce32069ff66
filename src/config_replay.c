/* postern: the early_data_replay configuration keys: where the 0-RTT strike
 * register lives (local, or shared through Redis: replay_redis.h). See
 * docs/config.md, "early_data_replay". */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_parse.h"
#include "postern/common.h"
#include "postern/config.h"
#include "postern/priv.h"

#define QBUF 2100
#define REDIS_TIMEOUT_DEFAULT_MS 5
#define REDIS_TIMEOUT_MAX_MS 1000
#define REDIS_IN_FLIGHT_DEFAULT 1024
#define REDIS_IN_FLIGHT_MAX 65536
#define KEY_PREFIX_DEFAULT "postern:0rtt:"
#define KEY_PREFIX_MAX 128
/* An AUTH password longer than this is surely not a password file. */
#define PASSWORD_MAX 4096

static const char address_expected[] = "host:port, [ipv6]:port or unix:/absolute/path";

void pst_cfg_replay_defaults(pst_replay_store_conf_t *r) {
  memset(r, 0, sizeof(*r));
  r->store = PST_REPLAY_STORE_LOCAL;
  r->timeout_ms = REDIS_TIMEOUT_DEFAULT_MS;
  r->max_in_flight = REDIS_IN_FLIGHT_DEFAULT;
}

void pst_cfg_replay_free(pst_replay_store_conf_t *r) {
  free(r->address);
  free(r->host);
  free(r->unix_path);
  if (r->password != NULL) explicit_bzero(r->password, r->password_len);
  free(r->password);
  free(r->key_prefix);
}

static int set_store(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  /* In the order of pst_replay_store_t. */
  static const char *const names[] = {"local", "redis"};
  int i;
  int rc = pst_cfg_enum(p, v, "replay store", names, PST_ARRAY_SIZE(names), &i);
  if (rc == 0) ((pst_replay_store_conf_t *)obj)->store = (pst_replay_store_t)i;
  return rc;
}

/* "unix:/path", or host:port resolved now (off the event loops) to the
 * numeric address hiredis is given: a name would otherwise be resolved on
 * a worker's loop at every reconnect, blocking it. */
static int set_address(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_replay_store_conf_t *r = obj;
  char q[QBUF], why[256];
  const char *s;
  int rc = pst_cfg_str(p, v, address_expected, &s);
  if (rc != 0) return rc;
  if (strncmp(s, "unix:", 5) == 0) {
    const char *path = s + 5;
    if (path[0] != '/' || strlen(path) >= 108) {
      return pst_cfg_error(p, v,
                           "invalid address %s: a unix socket needs an absolute path of at most "
                           "107 bytes; expected %s",
                           pst_cfg_quote(s, q, sizeof(q)), address_expected);
    }
    r->unix_path = strdup(path);
    if (r->unix_path == NULL) return pst_cfg_nomem(p);
  } else {
    pst_addr_t a;
    char host[NI_MAXHOST];
    if (pst_parse_addr(s, &a, why, sizeof(why)) != 0) {
      return pst_cfg_error(p, v, "invalid address %s: %s (or unix:/absolute/path)",
                           pst_cfg_quote(s, q, sizeof(q)), why);
    }
    if (getnameinfo((const struct sockaddr *)&a.ss, a.len, host, sizeof(host), NULL, 0,
                    NI_NUMERICHOST) != 0) {
      return pst_cfg_error(p, v, "invalid address %s; expected %s", pst_cfg_quote(s, q, sizeof(q)),
                           address_expected);
    }
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a.ss;
    r->port = ntohs(in->sin_port); /* sin6_port sits at the same offset */
    r->host = strdup(host);
    if (r->host == NULL) return pst_cfg_nomem(p);
  }
  return pst_cfg_strdup(p, v, address_expected, &r->address);
}

/* Reads the password file whole (at load, like ticket keys: the workers
 * never touch the file system); one trailing newline is not part of it. */
static int set_password_file(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_replay_store_conf_t *r = obj;
  char q[QBUF], ebuf[128];
  char *path = NULL;
  pst_mark_t mark;
  int rc = pst_cfg_file(p, v, &path, &mark);
  if (rc != 0) return rc;
  char *buf = malloc(PASSWORD_MAX + 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = -1;
  int e = 0;
  if (buf != NULL && fd >= 0) {
    n = read(fd, buf, PASSWORD_MAX + 1);
    if (n < 0) e = errno;
  } else if (fd < 0) {
    e = errno;
  }
  if (fd >= 0) close(fd);
  pst_cfg_quote(path, q, sizeof(q));
  free(path);
  if (buf == NULL) return pst_cfg_nomem(p);
  if (n < 0) {
    free(buf);
    return pst_cfg_error(p, v, "cannot read %s: %s%s", q, strerror_r(e, ebuf, sizeof(ebuf)),
                         pst_priv_hint(-e, "readable"));
  }
  size_t len = (size_t)n;
  if (len > 0 && buf[len - 1] == '\n') len--;
  if (len > 0 && buf[len - 1] == '\r') len--;
  if (len == 0 || n > PASSWORD_MAX) {
    free(buf);
    return pst_cfg_error(p, v,
                         "%s holds %s; expected the Redis password (1 to %d bytes, one "
                         "trailing newline allowed)",
                         q, len == 0 ? "no password" : "too many bytes", PASSWORD_MAX);
  }
  buf[len] = '\0';
  r->password = buf;
  r->password_len = len;
  return 0;
}

static int set_key_prefix(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_replay_store_conf_t *r = obj;
  char q[QBUF];
  static const char expected[] = "1 to 128 printable characters without spaces";
  const char *s;
  int rc = pst_cfg_str(p, v, expected, &s);
  if (rc != 0) return rc;
  size_t n = strlen(s);
  int ok = n <= KEY_PREFIX_MAX;
  for (size_t i = 0; ok && i < n; i++) ok = s[i] > ' ' && s[i] < 0x7f;
  if (!ok) {
    return pst_cfg_error(p, v, "invalid key prefix %s; expected %s", pst_cfg_quote(s, q, sizeof(q)),
                         expected);
  }
  free(r->key_prefix);
  r->key_prefix = NULL;
  return pst_cfg_strdup(p, v, expected, &r->key_prefix);
}

static int set_timeout(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_duration(p, v, 1, REDIS_TIMEOUT_MAX_MS,
                          &((pst_replay_store_conf_t *)obj)->timeout_ms);
}

static int set_max_in_flight(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  uint64_t n;
  int rc = pst_cfg_uint(p, v, 1, REDIS_IN_FLIGHT_MAX, &n);
  if (rc == 0) ((pst_replay_store_conf_t *)obj)->max_in_flight = (unsigned)n;
  return rc;
}

static const pst_cfg_key_t redis_keys[] = {
    {"address", set_address, address_expected}, {"password_file", set_password_file, NULL},
    {"key_prefix", set_key_prefix, NULL},       {"timeout", set_timeout, NULL},
    {"max_in_flight", set_max_in_flight, NULL},
};

static int set_redis(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  return pst_cfg_map(p, v, redis_keys, PST_ARRAY_SIZE(redis_keys), obj);
}

static const pst_cfg_key_t replay_keys[] = {
    {"store", set_store, NULL},
    {"redis", set_redis, NULL},
};

int pst_cfg_set_early_data_replay(pst_cfg_t *p, yaml_node_t *v, void *obj) {
  pst_replay_store_conf_t *r = &((pst_config_t *)obj)->early_data_replay;
  r->mark = pst_cfg_mark(v);
  int rc = pst_cfg_map(p, v, replay_keys, PST_ARRAY_SIZE(replay_keys), r);
  if (rc != 0) return rc;
  if (r->store == PST_REPLAY_STORE_REDIS && r->address == NULL) {
    return pst_cfg_error(p, v,
                         "store: redis needs the server: add redis: with address: "
                         "\"127.0.0.1:6379\" (or unix:/path), or set store: local");
  }
  if (r->key_prefix == NULL) {
    r->key_prefix = strdup(KEY_PREFIX_DEFAULT);
    if (r->key_prefix == NULL) return pst_cfg_nomem(p);
  }
  return 0;
}
