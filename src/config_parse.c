/* postern: the generic YAML walker behind the configuration module. It knows
 * nothing about postern's keys: config.c describes them in keyword tables
 * and this file walks mappings and lists, checks types, and writes the one
 * error line "FILE:LINE:COLUMN: KEY: what is wrong; expected what". */
#include "config_parse.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "postern/common.h"
#include "postern/config.h"
#include "postern/priv.h"

/* Longest quoted value or key shown in a message, in input bytes. */
#define QUOTE_MAX_INPUT 512
#define QUOTE_BUF 300
/* Words longer than this get no did-you-mean suggestion. */
#define SUGGEST_MAX 64

pst_mark_t pst_cfg_mark(const yaml_node_t *node) {
  pst_mark_t m = {1, 1};
  if (node != NULL) {
    m.line = (int)node->start_mark.line + 1;
    m.column = (int)node->start_mark.column + 1;
  }
  return m;
}

/* Keeps the message on one line whatever a file name or libyaml says. */
static void one_line(char *s) {
  for (; *s != '\0'; s++) {
    if (*s == '\n' || *s == '\r') *s = ' ';
  }
}

static int error_at(pst_cfg_t *p, pst_mark_t m, const char *fmt, va_list ap) {
  if (p->err == NULL || p->errlen == 0) return PST_ECONFIG;
  /* Reached through an alias: the alias is where the value is used; the
   * mark of the value itself (in the anchored text) follows the message. */
  pst_mark_t at = p->via_alias ? p->alias_at : m;
  int n = snprintf(p->err, p->errlen, "%s:%d:%d: %s: ", p->file, at.line, at.column,
                   p->path_len > 0 ? p->path : "top level");
  if (n >= 0 && (size_t)n < p->errlen) {
    int w = vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    if (w >= 0 && p->via_alias && (size_t)n + (size_t)w < p->errlen) {
      snprintf(p->err + n + w, p->errlen - (size_t)n - (size_t)w,
               " (in the value this alias stands for, at line %d, column %d)", m.line, m.column);
    }
  }
  one_line(p->err);
  return PST_ECONFIG;
}

int pst_cfg_error(pst_cfg_t *p, const yaml_node_t *node, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = error_at(p, pst_cfg_mark(node), fmt, ap);
  va_end(ap);
  return rc;
}

int pst_cfg_nomem(pst_cfg_t *p) {
  if (p->err != NULL && p->errlen > 0) snprintf(p->err, p->errlen, "%s: out of memory", p->file);
  return -ENOMEM;
}

const char *pst_cfg_quote(const char *text, char *out, size_t outlen) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0, i;
  /* Worst case per input byte is 4 output bytes; keep room for `"...` + NUL. */
  if (outlen < 8) {
    if (outlen > 0) out[0] = '\0';
    return out;
  }
  out[o++] = '"';
  for (i = 0; text[i] != '\0' && i < QUOTE_MAX_INPUT && o + 9 < outlen; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c >= 0x20 && c < 0x7f) {
      out[o++] = (char)c;
    } else {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 0xf];
    }
  }
  out[o++] = '"';
  if (text[i] != '\0') {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
  return out;
}

/* Edit distance of two short strings (both under SUGGEST_MAX): insertions,
 * deletions, substitutions and swaps of two neighbours ("idel" -> "idle")
 * each cost one (optimal string alignment). */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  size_t rows[3][SUGGEST_MAX + 1];
  size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
  for (size_t j = 0; j <= lb; j++) prev[j] = j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t best = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      if (prev[j] + 1 < best) best = prev[j] + 1;
      if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          prev2[j - 2] + 1 < best) {
        best = prev2[j - 2] + 1;
      }
      cur[j] = best;
    }
    size_t *t = prev2;
    prev2 = prev;
    prev = cur;
    cur = t;
  }
  return prev[lb];
}

const char *pst_cfg_suggest(const char *word, const char *const *candidates, size_t n) {
  const char *best = NULL;
  size_t best_d = (size_t)-1;
  if (strlen(word) >= SUGGEST_MAX) return NULL;
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(candidates[i]);
    if (len >= SUGGEST_MAX) continue;
    /* One edit per three characters, at least one, at most three. */
    size_t limit = len / 3 < 1 ? 1 : (len / 3 > 3 ? 3 : len / 3);
    size_t d = edit_distance(word, candidates[i]);
    if (d <= limit && d < best_d) {
      best = candidates[i];
      best_d = d;
    }
  }
  return best;
}

/* Formats `(did you mean "x"?)` with a leading space, or "". */
static const char *suggestion(const char *word, const char *const *names, size_t n, char *buf,
                              size_t len) {
  const char *s = pst_cfg_suggest(word, names, n);
  if (s == NULL) return "";
  snprintf(buf, len, " (did you mean \"%s\"?)", s);
  return buf;
}

/* Appends raw text to the path, replacing bytes that would garble a message. */
static void path_append(pst_cfg_t *p, const char *text, size_t max) {
  for (size_t i = 0; text[i] != '\0' && i < max; i++) {
    if (p->path_len + 1 >= sizeof(p->path)) break;
    unsigned char c = (unsigned char)text[i];
    p->path[p->path_len++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  p->path[p->path_len] = '\0';
}

size_t pst_cfg_path_key(pst_cfg_t *p, const char *key) {
  size_t old = p->path_len;
  if (p->path_len > 0) path_append(p, ".", 1);
  path_append(p, key, QUOTE_MAX_INPUT);
  return old;
}

size_t pst_cfg_path_index(pst_cfg_t *p, size_t index) {
  size_t old = p->path_len;
  char buf[32];
  snprintf(buf, sizeof(buf), "[%zu]", index);
  path_append(p, buf, sizeof(buf));
  return old;
}

void pst_cfg_path_pop(pst_cfg_t *p, size_t len) {
  p->path_len = len;
  p->path[len] = '\0';
}

/* ---- aliases ---- */

/* One alias of the document: child pos (of a mapping: 2 * pair + 1 for a
 * value, 2 * pair for a key) of node parent (1-based, libyaml's index) is
 * an alias written at mark. */
struct pst_cfg_alias_s {
  int parent;
  size_t pos;
  pst_mark_t mark;
};

void pst_cfg_free_aliases(pst_cfg_t *p) {
  free(p->aliases);
  p->aliases = NULL;
  p->n_aliases = 0;
}

static int alias_cmp(const void *a, const void *b) {
  const struct pst_cfg_alias_s *x = a, *y = b;
  if (x->parent != y->parent) return x->parent < y->parent ? -1 : 1;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The walker descends to child pos of parent: notes when that child is an
 * alias (the outermost one counts). Returns the previous state, for
 * alias_leave. */
static int alias_enter(pst_cfg_t *p, const yaml_node_t *parent, size_t pos) {
  int before = p->via_alias;
  if (before || p->n_aliases == 0) return before;
  struct pst_cfg_alias_s key = {(int)(parent - p->doc->nodes.start) + 1, pos, {0, 0}};
  const struct pst_cfg_alias_s *a = bsearch(&key, p->aliases, p->n_aliases, sizeof(key), alias_cmp);
  if (a != NULL) {
    p->via_alias = 1;
    p->alias_at = a->mark;
  }
  return before;
}

static void alias_leave(pst_cfg_t *p, int before) { p->via_alias = before; }

/* What a node is, for "found a list; expected a string". */
static const char *node_kind(const yaml_node_t *node) {
  switch (node->type) {
    case YAML_SCALAR_NODE: return node->data.scalar.length == 0 ? "an empty value" : "a string";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
  }
}

static int type_error(pst_cfg_t *p, const yaml_node_t *node, const char *expected) {
  return pst_cfg_error(p, node, "found %s; expected %s", node_kind(node), expected);
}

static int unknown_key(pst_cfg_t *p, const yaml_node_t *key, const pst_cfg_key_t *keys,
                       size_t n_keys) {
  const char *names[64];
  char list[1024] = "", hint[128];
  size_t off = 0;
  for (size_t i = 0; i < n_keys; i++) {
    names[i] = keys[i].key;
    int w = snprintf(list + off, sizeof(list) - off, "%s%s", i > 0 ? ", " : "", keys[i].key);
    if (w > 0 && off + (size_t)w < sizeof(list)) off += (size_t)w;
  }
  const char *word = (const char *)key->data.scalar.value;
  return pst_cfg_error(p, key, "unknown key%s; expected one of: %s",
                       suggestion(word, names, n_keys, hint, sizeof(hint)), list);
}

/* The mark of the first key of the mapping spelled like key, for messages
 * about a key written twice. */
static const yaml_node_t *first_key(pst_cfg_t *p, const yaml_node_t *map, const char *key) {
  for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top;
       pair++) {
    yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
    if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0) {
      return k;
    }
  }
  return NULL;
}

/* Handles one key: value pair of a mapping. */
static int map_pair(pst_cfg_t *p, const yaml_node_t *map, const yaml_node_pair_t *pair,
                    const pst_cfg_key_t *keys, size_t n_keys, uint64_t *seen, void *obj) {
  yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
  yaml_node_t *v = yaml_document_get_node(p->doc, pair->value);
  if (k->type != YAML_SCALAR_NODE) return type_error(p, k, "a string as key");
  const char *word = (const char *)k->data.scalar.value;
  size_t i = 0;
  while (i < n_keys && strcmp(keys[i].key, word) != 0) i++;
  size_t old = pst_cfg_path_key(p, word);
  int rc;
  if (i == n_keys) {
    rc = unknown_key(p, k, keys, n_keys);
  } else if (*seen & ((uint64_t)1 << i)) {
    rc = pst_cfg_error(p, k, "duplicate key (first at line %d); expected each key once",
                       pst_cfg_mark(first_key(p, map, word)).line);
  } else {
    *seen |= (uint64_t)1 << i;
    int before = alias_enter(p, map, 2 * (size_t)(pair - map->data.mapping.pairs.start) + 1);
    rc = keys[i].set(p, v, obj);
    alias_leave(p, before);
  }
  if (rc == 0) pst_cfg_path_pop(p, old);
  return rc;
}

int pst_cfg_map(pst_cfg_t *p, yaml_node_t *node, const pst_cfg_key_t *keys, size_t n_keys,
                void *obj) {
  uint64_t seen = 0;
  assert(n_keys <= 64);
  if (node->type != YAML_MAPPING_NODE) return type_error(p, node, "a mapping");
  for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top;
       pair++) {
    int rc = map_pair(p, node, pair, keys, n_keys, &seen, obj);
    if (rc != 0) return rc;
  }
  for (size_t i = 0; i < n_keys; i++) {
    if (keys[i].required != NULL && !(seen & ((uint64_t)1 << i))) {
      return pst_cfg_error(p, node, "missing key \"%s\"; expected %s", keys[i].key,
                           keys[i].required);
    }
  }
  return 0;
}

int pst_cfg_list(pst_cfg_t *p, yaml_node_t *node, const char *what_empty, size_t *n) {
  if (node->type != YAML_SEQUENCE_NODE) return type_error(p, node, "a list");
  *n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
  if (*n == 0 && what_empty != NULL) {
    return pst_cfg_error(p, node, "empty list; expected %s", what_empty);
  }
  return 0;
}

int pst_cfg_each(pst_cfg_t *p, yaml_node_t *node, pst_cfg_item_fn fn, void *obj) {
  size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *item = yaml_document_get_node(p->doc, node->data.sequence.items.start[i]);
    size_t old = pst_cfg_path_index(p, i);
    int before = alias_enter(p, node, i);
    int rc = fn(p, item, i, obj);
    alias_leave(p, before);
    if (rc != 0) return rc;
    pst_cfg_path_pop(p, old);
  }
  return 0;
}

int pst_cfg_str(pst_cfg_t *p, yaml_node_t *node, const char *expected, const char **out) {
  char what[256];
  snprintf(what, sizeof(what), "a string (%s)", expected);
  if (node->type != YAML_SCALAR_NODE) return type_error(p, node, what);
  const char *s = (const char *)node->data.scalar.value;
  if (node->data.scalar.length == 0) {
    return pst_cfg_error(p, node, "empty value; expected %s", expected);
  }
  if (strlen(s) != node->data.scalar.length) {
    return pst_cfg_error(p, node, "the value contains a NUL byte; expected %s", expected);
  }
  *out = s;
  return 0;
}

int pst_cfg_strdup(pst_cfg_t *p, yaml_node_t *node, const char *expected, char **out) {
  const char *s;
  int rc = pst_cfg_str(p, node, expected, &s);
  if (rc != 0) return rc;
  *out = strdup(s);
  return *out == NULL ? pst_cfg_nomem(p) : 0;
}

/* Joins names as "a, b or c" into buf. */
static const char *join_or(const char *const *names, size_t n, char *buf, size_t len) {
  size_t off = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    const char *sep = i == 0 ? "" : (i + 1 == n ? " or " : ", ");
    int w = snprintf(buf + off, len - off, "%s%s", sep, names[i]);
    if (w < 0 || off + (size_t)w >= len) break;
    off += (size_t)w;
  }
  return buf;
}

int pst_cfg_enum(pst_cfg_t *p, yaml_node_t *node, const char *what, const char *const *names,
                 size_t n, int *out) {
  char choices[256], q[QUOTE_BUF], hint[128];
  const char *s;
  join_or(names, n, choices, sizeof(choices));
  int rc = pst_cfg_str(p, node, choices, &s);
  if (rc != 0) return rc;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(s, names[i]) == 0) {
      *out = (int)i;
      return 0;
    }
  }
  return pst_cfg_error(p, node, "unknown %s %s%s; expected %s", what,
                       pst_cfg_quote(s, q, sizeof(q)), suggestion(s, names, n, hint, sizeof(hint)),
                       choices);
}

/* Parses digits only, without a leading zero, into *out. Returns 0 or -1. */
static int parse_decimal(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1] != '\0')) return -1;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9') return -1;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int pst_cfg_uint(pst_cfg_t *p, yaml_node_t *node, uint64_t min, uint64_t max, uint64_t *out) {
  char expected[128], q[QUOTE_BUF];
  const char *s;
  uint64_t v;
  snprintf(expected, sizeof(expected), "a decimal integer in %llu..%llu", (unsigned long long)min,
           (unsigned long long)max);
  int rc = pst_cfg_str(p, node, expected, &s);
  if (rc != 0) return rc;
  if (parse_decimal(s, &v) != 0 || v < min || v > max) {
    return pst_cfg_error(p, node, "invalid integer %s; expected %s", pst_cfg_quote(s, q, sizeof(q)),
                         expected);
  }
  *out = v;
  return 0;
}

/* Prints a duration with the largest unit that divides it ("90s", "1h"). */
static const char *format_duration(uint64_t ms, char *buf, size_t len) {
  static const struct {
    uint64_t ms;
    const char *unit;
  } units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
  if (ms == 0) {
    snprintf(buf, len, "0s");
    return buf;
  }
  for (size_t i = 0; i < PST_ARRAY_SIZE(units); i++) {
    if (ms % units[i].ms == 0) {
      snprintf(buf, len, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
      break;
    }
  }
  return buf;
}

int pst_cfg_duration(pst_cfg_t *p, yaml_node_t *node, uint64_t min_ms, uint64_t max_ms,
                     uint64_t *out) {
  static const char expected[] = "a number with a unit: ms, s, m or h (e.g. 10s)";
  char q[QUOTE_BUF], lo[32], hi[32];
  const char *s;
  uint64_t v;
  int rc = pst_cfg_str(p, node, expected, &s);
  if (rc != 0) return rc;
  if (pst_parse_duration(s, &v) != 0) {
    return pst_cfg_error(p, node, "invalid duration %s; expected %s",
                         pst_cfg_quote(s, q, sizeof(q)), expected);
  }
  if (v < min_ms || v > max_ms) {
    return pst_cfg_error(p, node, "duration %s is out of range; expected %s..%s",
                         pst_cfg_quote(s, q, sizeof(q)), format_duration(min_ms, lo, sizeof(lo)),
                         format_duration(max_ms, hi, sizeof(hi)));
  }
  *out = v;
  return 0;
}

int pst_cfg_file(pst_cfg_t *p, yaml_node_t *node, char **out, pst_mark_t *mark) {
  char q[QUOTE_BUF], ebuf[128];
  const char *s;
  struct stat st;
  int rc = pst_cfg_str(p, node, "a file path", &s);
  if (rc != 0) return rc;
  if (access(s, R_OK) != 0) {
    int e = errno;
    return pst_cfg_error(p, node, "cannot read %s: %s%s", pst_cfg_quote(s, q, sizeof(q)),
                         strerror_r(e, ebuf, sizeof(ebuf)), pst_priv_hint(-e, "readable"));
  }
  if (stat(s, &st) == 0 && S_ISDIR(st.st_mode)) {
    return pst_cfg_error(p, node, "%s is a directory; expected a file",
                         pst_cfg_quote(s, q, sizeof(q)));
  }
  *mark = pst_cfg_mark(node);
  return pst_cfg_strdup(p, node, "a file path", out);
}

/* Reader errors carry a byte offset rather than a mark: count lines. */
static pst_mark_t offset_mark(const char *text, size_t len, size_t offset) {
  pst_mark_t m = {1, 1};
  for (size_t i = 0; i < offset && i < len; i++) {
    if (text[i] == '\n') {
      m.line++;
      m.column = 1;
    } else {
      m.column++;
    }
  }
  return m;
}

static int call_error_at(pst_cfg_t *p, pst_mark_t m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = error_at(p, m, fmt, ap);
  va_end(ap);
  return rc;
}

static int syntax_error(pst_cfg_t *p, const yaml_parser_t *parser, const char *text, size_t len) {
  const char *problem = parser->problem != NULL ? parser->problem : "unknown error";
  size_t old = p->path_len;
  int rc;
  if (parser->error == YAML_MEMORY_ERROR) return pst_cfg_nomem(p);
  pst_cfg_path_key(p, "YAML syntax error");
  if (parser->error == YAML_READER_ERROR) {
    rc = call_error_at(p, offset_mark(text, len, parser->problem_offset), "%s; expected UTF-8 text",
                       problem);
  } else {
    pst_mark_t m = {(int)parser->problem_mark.line + 1, (int)parser->problem_mark.column + 1};
    if (parser->context != NULL) {
      rc = call_error_at(p, m, "%s (%s at line %d, column %d)", problem, parser->context,
                         (int)parser->context_mark.line + 1, (int)parser->context_mark.column + 1);
    } else {
      rc = call_error_at(p, m, "%s", problem);
    }
  }
  pst_cfg_path_pop(p, old);
  return rc;
}

/* What scan_events knows of the collections open around an event. */
typedef struct {
  int index;       /* the node libyaml's loader will make of it (1-based) */
  size_t children; /* its children so far */
} scan_level_t;

/* An alias event at mark, the next child of the innermost open collection
 * (levels[depth - 1]): recorded for alias_enter. */
static int record_alias(pst_cfg_t *p, const scan_level_t *level, pst_mark_t mark, size_t *cap) {
  if (p->n_aliases == *cap) {
    size_t n = *cap ? *cap * 2 : 16;
    struct pst_cfg_alias_s *a = realloc(p->aliases, n * sizeof(*a));
    if (a == NULL) return pst_cfg_nomem(p);
    p->aliases = a;
    *cap = n;
  }
  p->aliases[p->n_aliases++] = (struct pst_cfg_alias_s){level->index, level->children, mark};
  return 0;
}

/* Reads text as events, before libyaml composes a document, and refuses
 * collections nested deeper than PST_CFG_MAX_DEPTH at the first one too
 * deep. libyaml's scanner looks at every open flow level for each token,
 * so each level costs time in proportion to the depth: 200,000 "[" (400
 * KB) took 69 s to load, and the walker would recurse as deep. postern's
 * deepest key is 6 levels down (listeners[].routes[].names[]). Records
 * where the aliases of the first document are, for alias_enter. Returns 0
 * (also for a syntax error, which the loader then reports as usual),
 * PST_ECONFIG or -ENOMEM. */
static int check_depth(pst_cfg_t *p, const char *text, size_t len) {
  yaml_parser_t parser;
  yaml_event_t ev;
  int rc = 0, nodes = 0, first_doc = 1;
  unsigned depth = 0;
  size_t cap = 0;
  scan_level_t levels[PST_CFG_MAX_DEPTH + 1];
  if (!yaml_parser_initialize(&parser)) return pst_cfg_nomem(p);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  for (;;) {
    if (!yaml_parser_parse(&parser, &ev)) {
      if (parser.error == YAML_MEMORY_ERROR) rc = pst_cfg_nomem(p);
      break;
    }
    yaml_event_type_t type = ev.type;
    /* The loader numbers nodes in the order of their first event; an
     * alias makes none. Only the first document is walked. */
    pst_mark_t mark = {(int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1};
    int child = type == YAML_SCALAR_EVENT || type == YAML_ALIAS_EVENT ||
                type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT;
    if (type == YAML_ALIAS_EVENT && depth > 0 && first_doc) {
      rc = record_alias(p, &levels[depth - 1], mark, &cap);
    }
    if (child && type != YAML_ALIAS_EVENT) nodes++;
    if (child && depth > 0) levels[depth - 1].children++;
    if (type == YAML_DOCUMENT_END_EVENT) first_doc = 0;
    if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
      if (depth < PST_CFG_MAX_DEPTH) levels[depth] = (scan_level_t){nodes, 0};
      if (++depth > PST_CFG_MAX_DEPTH) {
        size_t old = pst_cfg_path_key(p, "YAML nesting");
        rc = call_error_at(p, mark,
                           "lists and mappings nested more than %d deep; expected a postern "
                           "configuration (its keys go 6 deep)",
                           PST_CFG_MAX_DEPTH);
        pst_cfg_path_pop(p, old);
      }
    } else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
      depth--;
    }
    yaml_event_delete(&ev);
    if (rc != 0 || type == YAML_STREAM_END_EVENT) break;
  }
  yaml_parser_delete(&parser);
  if (p->n_aliases > 1) qsort(p->aliases, p->n_aliases, sizeof(*p->aliases), alias_cmp);
  return rc;
}

int pst_cfg_load_doc(pst_cfg_t *p, const char *text, size_t len, yaml_document_t *doc) {
  yaml_parser_t parser;
  yaml_document_t extra;
  int rc = check_depth(p, text, len);
  if (rc != 0) return rc;
  if (!yaml_parser_initialize(&parser)) return pst_cfg_nomem(p);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  /* yaml_parser_load() frees the document itself when it fails. */
  if (!yaml_parser_load(&parser, doc)) {
    rc = syntax_error(p, &parser, text, len);
    goto out;
  }
  if (!yaml_parser_load(&parser, &extra)) {
    rc = syntax_error(p, &parser, text, len);
    yaml_document_delete(doc);
    goto out;
  }
  if (yaml_document_get_root_node(&extra) != NULL) {
    rc = pst_cfg_error(p, yaml_document_get_root_node(&extra),
                       "a second YAML document; expected a single document");
    yaml_document_delete(doc);
  }
  yaml_document_delete(&extra);
out:
  yaml_parser_delete(&parser);
  return rc;
}
