/* postern: server-name lookup tables (SNI, RFC 6066 3).
 *
 * Two open-addressing hash tables: one for exact names, one for wildcard
 * bases ("*.example.test" is stored as "example.test" in the wildcard table).
 * Names are lower-cased on insert; lookups fold ASCII case on the fly, so a
 * lookup never allocates and never writes, and many threads may look up at
 * once. A lookup costs at most two hashes and two short probe sequences,
 * whatever the number of names: it runs in every handshake's SNI callback.
 *
 * Names follow RFC 1035 2.3.4 limits (253 bytes without the trailing dot,
 * labels of 1 to 63 bytes). SNI carries A-labels only (RFC 6066 3: "HostName
 * contains the fully qualified DNS hostname ... in ASCII"), so names must be
 * letters, digits, '-' and '_' (underscores appear in real internal names). A
 * wildcard is "*" as the whole first label, followed by at least one label;
 * it matches exactly one extra label (RFC 6125 6.4.3 as browsers apply it).
 */
#include "postern/sni.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "postern/common.h"

#define SNI_MAX_NAME 253 /* RFC 1035 2.3.4, without the trailing dot */
#define SNI_MAX_LABEL 63

typedef struct {
  char *name; /* lower-cased, no trailing dot; NULL marks a free slot */
  uint32_t len;
  uint32_t hash;
  int value;
} sni_entry_t;

typedef struct {
  sni_entry_t *slots; /* cap slots, cap a power of two (or 0 while empty) */
  size_t cap;
  size_t count; /* kept at most cap / 2 so probe sequences stay short */
} sni_table_t;

struct pst_sni_map_s {
  sni_table_t exact;
  sni_table_t wild; /* wildcard bases: "*.a.b" is stored as "a.b" */
};

static inline unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* FNV-1a over the lower-cased bytes. The keys come from the configuration,
 * not from clients, so clients cannot build long probe chains; a client can
 * only pick which existing chain a miss walks, and at half load those are
 * short. */
static uint32_t hash_name(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    h ^= lower((unsigned char)s[i]);
    h *= 16777619u;
  }
  return h;
}

/* Compares a stored (lower-case) name with len bytes of any case. */
static int name_equal(const sni_entry_t *e, const char *s, size_t len) {
  if (e->len != len) return 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)e->name[i] != lower((unsigned char)s[i])) return 0;
  return 1;
}

/* Returns the slot holding s, or NULL. */
static const sni_entry_t *table_find(const sni_table_t *t, const char *s, size_t len,
                                     uint32_t hash) {
  if (t->cap == 0) return NULL;
  size_t mask = t->cap - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const sni_entry_t *e = &t->slots[i];
    if (e->name == NULL) return NULL;
    if (e->hash == hash && name_equal(e, s, len)) return e;
  }
}

/* Places an entry known to be absent; the table has a free slot. */
static void table_place(sni_table_t *t, sni_entry_t entry) {
  size_t mask = t->cap - 1;
  size_t i = entry.hash & mask;
  while (t->slots[i].name != NULL) i = (i + 1) & mask;
  t->slots[i] = entry;
  t->count++;
}

static int table_grow(sni_table_t *t) {
  size_t cap = t->cap ? t->cap * 2 : 16;
  sni_entry_t *slots = calloc(cap, sizeof(*slots));
  if (slots == NULL) return -ENOMEM;
  sni_table_t bigger = {slots, cap, 0};
  for (size_t i = 0; i < t->cap; i++)
    if (t->slots[i].name != NULL) table_place(&bigger, t->slots[i]);
  free(t->slots);
  *t = bigger;
  return 0;
}

/* Adds a lower-cased copy of s. Returns 0, 1 when present, or -ENOMEM. */
static int table_add(sni_table_t *t, const char *s, size_t len, int value) {
  uint32_t hash = hash_name(s, len);
  if (table_find(t, s, len, hash) != NULL) return 1;
  if ((t->count + 1) * 2 > t->cap && table_grow(t) != 0) return -ENOMEM;
  char *copy = malloc(len + 1);
  if (copy == NULL) return -ENOMEM;
  for (size_t i = 0; i < len; i++) copy[i] = (char)lower((unsigned char)s[i]);
  copy[len] = '\0';
  table_place(t, (sni_entry_t){copy, (uint32_t)len, hash, value});
  return 0;
}

static void table_free(sni_table_t *t) {
  for (size_t i = 0; i < t->cap; i++) free(t->slots[i].name);
  free(t->slots);
  t->slots = NULL;
  t->cap = t->count = 0;
}

static int is_name_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

/* Checks a host name (no trailing dot, no wildcard): labels of 1 to 63
 * allowed characters separated by single dots. */
static int valid_host(const char *s, size_t len) {
  if (len == 0 || len > SNI_MAX_NAME) return 0;
  size_t label = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '.') {
      if (label == 0) return 0;
      label = 0;
    } else if (!is_name_char((unsigned char)s[i]) || ++label > SNI_MAX_LABEL) {
      return 0;
    }
  }
  return label > 0;
}

/* Contracts of the public functions are in include/postern/sni.h. */

pst_sni_map_t *pst_sni_map_new(void) { return calloc(1, sizeof(pst_sni_map_t)); }

/* Besides the codes in sni.h, returns -EINVAL for a negative value, which
 * lookups could not tell from "no match". The map copies name. */
int pst_sni_map_add(pst_sni_map_t *map, const char *name, int value) {
  if (value < 0) return -EINVAL;
  size_t len = strlen(name);
  if (len > 0 && name[len - 1] == '.') len--; /* one trailing dot: absolute form */
  if (len > SNI_MAX_NAME) return PST_ECONFIG;
  if (len >= 2 && name[0] == '*' && name[1] == '.') {
    /* "*.base": the base must itself be a valid name; "*" alone, "*." and
     * "*.*.b" fail here. A single-label base ("*.test") is allowed, as
     * the tables do not know public suffixes; the certificate decides. */
    if (!valid_host(name + 2, len - 2)) return PST_ECONFIG;
    return table_add(&map->wild, name + 2, len - 2, value);
  }
  if (!valid_host(name, len)) return PST_ECONFIG;
  return table_add(&map->exact, name, len, value);
}

int pst_sni_map_lookup(const pst_sni_map_t *map, const char *name, size_t len) {
  if (len > 0 && name[len - 1] == '.') len--;
  if (len == 0 || len > SNI_MAX_NAME) return -1;

  const sni_entry_t *e = table_find(&map->exact, name, len, hash_name(name, len));
  if (e != NULL) return e->value;

  /* A wildcard covers exactly one non-empty first label: look up what
   * follows the first dot. */
  if (map->wild.count == 0) return -1;
  const char *dot = memchr(name, '.', len);
  if (dot == NULL || dot == name) return -1;
  const char *base = dot + 1;
  size_t base_len = len - (size_t)(base - name);
  if (base_len == 0) return -1;
  e = table_find(&map->wild, base, base_len, hash_name(base, base_len));
  return e != NULL ? e->value : -1;
}

int pst_sni_map_get(const pst_sni_map_t *map, const char *name) {
  size_t len = strlen(name);
  if (len > 0 && name[len - 1] == '.') len--;
  const sni_table_t *t = &map->exact;
  if (len >= 2 && name[0] == '*' && name[1] == '.') {
    t = &map->wild;
    name += 2;
    len -= 2;
  }
  const sni_entry_t *e = table_find(t, name, len, hash_name(name, len));
  return e != NULL ? e->value : -1;
}

void pst_sni_map_free(pst_sni_map_t *map) {
  if (map == NULL) return;
  table_free(&map->exact);
  table_free(&map->wild);
  free(map);
}

int pst_sni_select(const pst_sni_map_t *map, const char *name, size_t len, int default_value,
                   int reject_unknown) {
  if (name == NULL || len == 0) return default_value;
  int v = pst_sni_map_lookup(map, name, len);
  if (v >= 0) return v;
  return reject_unknown ? PST_SNI_REJECT : default_value;
}

const pst_backend_conf_t *pst_sni_route(const pst_sni_map_t *routes, const pst_listener_conf_t *lc,
                                        const char *name, size_t len) {
  if (routes != NULL && name != NULL && len > 0) {
    int r = pst_sni_map_lookup(routes, name, len);
    if (r >= 0) return &lc->routes[r].backend;
  }
  return &lc->backend;
}
