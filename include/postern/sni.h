/* postern: server-name lookup tables, used for certificate selection (SNI,
 * RFC 6066 3) and for routes. Exact names win over wildcards; "*.a.b"
 * matches exactly one extra label ("x.a.b", not "a.b" nor "y.x.a.b");
 * comparisons ignore ASCII case and one trailing dot. */
#ifndef POSTERN_SNI_H
#define POSTERN_SNI_H

#include <stddef.h>

#include "postern/config-t.h"

typedef struct pst_sni_map_s pst_sni_map_t;

/* Returns a new empty map, or NULL when out of memory. */
pst_sni_map_t *pst_sni_map_new(void);

/* Adds name -> value (value >= 0). A name already in the map keeps its first
 * value and the call returns 1 (so callers can warn about the duplicate).
 * Returns 0 when added, 1 for a duplicate, PST_ECONFIG for a malformed name
 * (empty, a '*' anywhere but as the whole first label, "*" alone), -ENOMEM. */
int pst_sni_map_add(pst_sni_map_t *map, const char *name, int value);

/* Looks up a server name of len bytes (not NUL-terminated). Returns the value
 * of the exact entry, else of the wildcard entry matching it, else -1. Safe
 * to call from many threads at once once the map is no longer modified. */
int pst_sni_map_lookup(const pst_sni_map_t *map, const char *name, size_t len);

/* The value added for name exactly as written ("*.a.b" finds the wildcard
 * entry only, "x.a.b" the exact entry only), or -1. For building maps. */
int pst_sni_map_get(const pst_sni_map_t *map, const char *name);

/* pst_sni_select's answer for a name that must be refused. */
#define PST_SNI_REJECT (-1)

/* Certificate selection for one ClientHello (RFC 6066 3). name/len is the
 * server name the client sent (NULL or 0 when it sent none). Returns the
 * value of the matching entry; for no match, default_value, or
 * PST_SNI_REJECT when reject_unknown is set. A client that sends no name
 * always gets default_value: rejecting it would lock out clients that
 * connect by IP address, which cannot send SNI. */
int pst_sni_select(const pst_sni_map_t *map, const char *name, size_t len, int default_value,
                   int reject_unknown);

/* Frees the map. NULL is allowed. */
void pst_sni_map_free(pst_sni_map_t *map);

/* The backend for server name (len bytes, lower-cased, not NUL-ended) on
 * listener lc: the route whose names match it in routes (which maps names
 * to indexes into lc->routes; NULL without routes), else the listener's
 * backend. Never NULL. */
const pst_backend_conf_t *pst_sni_route(const pst_sni_map_t *routes, const pst_listener_conf_t *lc,
                                        const char *name, size_t len);

#endif
