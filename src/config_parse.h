/* postern: the generic YAML walker behind the configuration module. Private
 * to src/config*.c: config_parse.c walks libyaml documents with keyword
 * tables and formats errors; config.c holds the tables and setters.
 *
 * Every function here that can fail returns 0, PST_ECONFIG (after writing
 * "FILE:LINE:COLUMN: KEY: message" into the context's err buffer) or -ENOMEM
 * (after writing "out of memory"). The first error stops the walk. */
#ifndef POSTERN_CONFIG_PARSE_H
#define POSTERN_CONFIG_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "postern/config-t.h"

/* State of one walk. The key path ("listeners[0].tls.versions[1]") grows as
 * the walker descends and shrinks as it comes back. */
typedef struct pst_cfg_s {
  const char *file;     /* file name used in messages */
  yaml_document_t *doc; /* the loaded document, owned by the caller */
  char *err;            /* the caller's error buffer (may be NULL) */
  size_t errlen;
  void *user; /* whatever the keyword tables need (config.c: the config) */
  size_t path_len;
  char path[512];
  /* Where the document's aliases are (pst_cfg_load_doc; freed by
   * pst_cfg_free_aliases). libyaml resolves an alias to the anchored node,
   * whose marks are the anchor's: the walker notes when it descends through
   * an alias, so that an error there names the alias, where the value is
   * used, and not only the anchor. */
  struct pst_cfg_alias_s *aliases; /* sorted by (parent, pos) */
  size_t n_aliases;
  int via_alias;       /* the value being walked was reached through an alias... */
  pst_mark_t alias_at; /* ... written here (the outermost one) */
} pst_cfg_t;

/* Frees what pst_cfg_load_doc recorded of aliases in p. */
void pst_cfg_free_aliases(pst_cfg_t *p);

/* Stores the value node into obj. Returns 0, PST_ECONFIG or -ENOMEM. */
typedef int (*pst_cfg_set_fn)(pst_cfg_t *p, yaml_node_t *value, void *obj);

/* Called for each item of a list with the path already ending in "[index]". */
typedef int (*pst_cfg_item_fn)(pst_cfg_t *p, yaml_node_t *item, size_t index, void *obj);

/* One row of a keyword table. */
typedef struct {
  const char *key;
  pst_cfg_set_fn set;
  /* NULL for an optional key. For a required key, what the value should be,
   * used in the "missing key" message ("host:port"). */
  const char *required;
} pst_cfg_key_t;

/* Converts a libyaml mark (0-based) to a postern mark (1-based). */
pst_mark_t pst_cfg_mark(const yaml_node_t *node);

/* Writes "FILE:LINE:COLUMN: PATH: message" for node (its start mark) and the
 * current path. Returns PST_ECONFIG so callers can `return pst_cfg_error()`. */
int pst_cfg_error(pst_cfg_t *p, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "out of memory" and returns -ENOMEM. */
int pst_cfg_nomem(pst_cfg_t *p);

/* Writes text into out (outlen bytes, NUL-terminated) as a double-quoted
 * string that is safe to print on one line: control and non-ASCII bytes as
 * \xNN, long values cut with "...". Returns out. */
const char *pst_cfg_quote(const char *text, char *out, size_t outlen);

/* Returns the candidate closest to word when it is a plausible misspelling
 * (a small edit distance), else NULL. */
const char *pst_cfg_suggest(const char *word, const char *const *candidates, size_t n);

/* Appends ".key" (or "key" at the top) or "[index]" to the path and returns
 * the previous length, to be given back to pst_cfg_path_pop(). */
size_t pst_cfg_path_key(pst_cfg_t *p, const char *key);
size_t pst_cfg_path_index(pst_cfg_t *p, size_t index);
void pst_cfg_path_pop(pst_cfg_t *p, size_t len);

/* Walks a mapping: every key must be in keys (else "unknown key" with the
 * list of known keys and a suggestion), appear once, and required keys must
 * be present (else "missing key" at the mapping's mark). obj is passed to
 * each setter. */
int pst_cfg_map(pst_cfg_t *p, yaml_node_t *node, const pst_cfg_key_t *keys, size_t n_keys,
                void *obj);

/* Checks that node is a list and stores its length in *n. what_empty: NULL
 * when an empty list is allowed, else what it should hold ("at least one
 * certificate") for the "empty list" message. */
int pst_cfg_list(pst_cfg_t *p, yaml_node_t *node, const char *what_empty, size_t *n);

/* Calls fn for each item of the list node (checked with pst_cfg_list first). */
int pst_cfg_each(pst_cfg_t *p, yaml_node_t *node, pst_cfg_item_fn fn, void *obj);

/* Checks that node is a non-empty string without NUL bytes and points *out
 * at it (owned by the document). expected says what the value should be. */
int pst_cfg_str(pst_cfg_t *p, yaml_node_t *node, const char *expected, const char **out);

/* Same, and stores a malloc'ed copy in *out (owned by the caller). */
int pst_cfg_strdup(pst_cfg_t *p, yaml_node_t *node, const char *expected, char **out);

/* Matches a string against names[0..n) and stores the index in *out. what
 * names the kind of value in the message ("log level"). */
int pst_cfg_enum(pst_cfg_t *p, yaml_node_t *node, const char *what, const char *const *names,
                 size_t n, int *out);

/* A decimal integer (no sign, no leading zero) in min..max. */
int pst_cfg_uint(pst_cfg_t *p, yaml_node_t *node, uint64_t min, uint64_t max, uint64_t *out);

/* A duration (pst_parse_duration) in min_ms..max_ms. */
int pst_cfg_duration(pst_cfg_t *p, yaml_node_t *node, uint64_t min_ms, uint64_t max_ms,
                     uint64_t *out);

/* A path to a file that exists and is readable (access R_OK), stored as
 * written in a malloc'ed *out, with the value's mark in *mark. */
int pst_cfg_file(pst_cfg_t *p, yaml_node_t *node, char **out, pst_mark_t *mark);

/* Lists and mappings may be nested this deep in a configuration file, at
 * most (postern's keys go 6 deep: listeners[].routes[].names[]). */
#define PST_CFG_MAX_DEPTH 32

/* Loads the first document of text into doc (freed by the caller with
 * yaml_document_delete on success only, and pst_cfg_free_aliases in every
 * case) and checks that it is the only one.
 * YAML syntax errors use libyaml's problem and mark; collections nested
 * deeper than PST_CFG_MAX_DEPTH are refused at the first one too deep,
 * before libyaml composes the document. */
int pst_cfg_load_doc(pst_cfg_t *p, const char *text, size_t len, yaml_document_t *doc);

/* ---- http mode keys (config_http.c) ---- */

/* Sets the http-mode defaults of a listener. */
void pst_cfg_http_defaults(pst_listener_conf_t *l);
/* Setters of the listener keys forwarded, access_log, limits, h2,
 * backend_pool and timeouts.backend_response (obj: pst_listener_conf_t). */
int pst_cfg_set_forwarded(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_access_log(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_limits(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_h2(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_backend_pool(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_backend_response(pst_cfg_t *p, yaml_node_t *v, void *obj);

/* ---- backends: and the backend key (config_backend.c) ---- */

/* Reads the top-level backends: mapping (v) into cfg->backends. */
int pst_cfg_backends_parse(pst_cfg_t *p, yaml_node_t *v, pst_config_t *cfg);
/* Reads a listener's or route's backend key: a name from backends: (which
 * must be read already), "host:port" (an inline set of one server, shared
 * by every key writing the same text) or builtin:info. */
int pst_cfg_read_backend(pst_cfg_t *p, yaml_node_t *v, pst_config_t *cfg, pst_backend_conf_t *b);
/* Fills what depends on several keys of a set, once everything is read. */
int pst_cfg_backends_finish(pst_cfg_t *p, pst_config_t *cfg);
/* Frees cfg->backends (for pst_config_free). */
void pst_cfg_backends_free(pst_config_t *cfg);

/* ---- session resumption and 0-RTT keys of tls (config_tls.c) ---- */

/* Sets the defaults of groups, session_tickets, ticket_*, early_data,
 * max_early_data and tcp_early_data. */
void pst_cfg_tls_resume_defaults(pst_listener_conf_t *l);
/* Setters of those keys, and of tls.groups (obj: pst_listener_conf_t). */
int pst_cfg_set_groups(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_client_auth(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_intermediates(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_ocsp_dir(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_session_tickets(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_ticket_keys(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_ticket_rotation(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_ticket_lifetime(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_early_data(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_max_early_data(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_tcp_early_data(pst_cfg_t *p, yaml_node_t *v, void *obj);
/* Checks the keys together once the tls mapping (node tls) is read: a
 * ticket_rotation too short for ticket_lifetime; client_auth, which turns
 * resumption off, with early_data: accept. Returns 0 or PST_ECONFIG. */
int pst_cfg_tls_resume_check(pst_cfg_t *p, yaml_node_t *tls, pst_listener_conf_t *l);

/* ---- early_data_replay (config_replay.c) ---- */

/* Sets the defaults of early_data_replay (store: local). */
void pst_cfg_replay_defaults(pst_replay_store_conf_t *r);
/* Setter of the top-level key early_data_replay (obj: pst_config_t). */
int pst_cfg_set_early_data_replay(pst_cfg_t *p, yaml_node_t *v, void *obj);
/* Frees what r owns (the password is wiped first). */
void pst_cfg_replay_free(pst_replay_store_conf_t *r);

/* ---- PROXY protocol keys of a listener (config_proxy.c) ---- */

/* Setters of accept_proxy and trusted_proxies (obj: pst_listener_conf_t). */
int pst_cfg_set_accept_proxy(pst_cfg_t *p, yaml_node_t *v, void *obj);
int pst_cfg_set_trusted_proxies(pst_cfg_t *p, yaml_node_t *v, void *obj);
/* Checks the two together once the listener (node item) is read:
 * accept_proxy needs trusted_proxies, and trusted_proxies alone does
 * nothing. Returns 0 or PST_ECONFIG. */
int pst_cfg_proxy_check(pst_cfg_t *p, yaml_node_t *item, const pst_listener_conf_t *l);

/* ---- the top-level admin: mapping (config_admin.c) ---- */

/* Setter of the top-level key admin (obj: pst_config_t): a mapping with
 * listen, whose address may not be a listener's. Returns 0, PST_ECONFIG or
 * -ENOMEM. */
int pst_cfg_set_admin(pst_cfg_t *p, yaml_node_t *v, void *obj);
/* The listener of cfg (read so far) listening on addr, or NULL. */
const pst_listener_conf_t *pst_cfg_listener_at(const pst_config_t *cfg, const pst_addr_t *addr);

#endif
