/* postern: counters per worker, summed when scraped (see metrics.h and
 * docs/metrics.md). */
#include "postern/metrics.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/common.h"
#include "postern/log.h"

#define CACHE_LINE 64

typedef _Atomic uint64_t mctr_t;

/* ---- label tables: each label value is an index, unknown ones "other" ---- */

static const char *const hs_versions[] = {"TLSv1.3", "TLSv1.2", "other"};
#define N_VERSIONS PST_ARRAY_SIZE(hs_versions)

/* Groups by their RFC 8446 4.2.7 names (wolfSSL's, in capitals, match
 * too); alias: what pst_tls_group_name calls them. */
static const struct {
  const char *name, *alias;
} hs_groups[] = {
    {"x25519", NULL},       {"secp256r1", "P-256"}, {"secp384r1", "P-384"},
    {"secp521r1", "P-521"}, {"x448", NULL},         {"other", NULL},
};
#define N_GROUPS PST_ARRAY_SIZE(hs_groups)

/* The suites postern offers (tls.c), by IANA name (RFC 8446 B.4, RFC 5289,
 * RFC 7905). */
static const char *const hs_ciphers[] = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "other",
};
#define N_CIPHERS PST_ARRAY_SIZE(hs_ciphers)

static const char *const hs_alpns[] = {"h2", "http/1.1", "none", "other"};
#define N_ALPNS PST_ARRAY_SIZE(hs_alpns)
#define ALPN_NONE 2

/* RFC 8446 6 (AlertDescription) and RFC 6066 3; index 0 is "none", the
 * last "other". */
static const struct {
  int code;
  const char *name;
} alerts[] = {
    {-1, "none"},
    {10, "unexpected_message"},
    {20, "bad_record_mac"},
    {22, "record_overflow"},
    {40, "handshake_failure"},
    {42, "bad_certificate"},
    {43, "unsupported_certificate"},
    {44, "certificate_revoked"},
    {45, "certificate_expired"},
    {46, "certificate_unknown"},
    {47, "illegal_parameter"},
    {48, "unknown_ca"},
    {49, "access_denied"},
    {50, "decode_error"},
    {51, "decrypt_error"},
    {70, "protocol_version"},
    {71, "insufficient_security"},
    {80, "internal_error"},
    {86, "inappropriate_fallback"},
    {90, "user_canceled"},
    {109, "missing_extension"},
    {110, "unsupported_extension"},
    {112, "unrecognized_name"},
    {113, "bad_certificate_status_response"},
    {115, "unknown_psk_identity"},
    {116, "certificate_required"},
    {120, "no_application_protocol"},
    {-2, "other"},
};
#define N_ALERTS PST_ARRAY_SIZE(alerts)

static const char *const close_reasons[PST_MCLOSE__COUNT] = {
    [PST_MCLOSE_DONE] = "done",
    [PST_MCLOSE_CLIENT_CLOSED] = "client_closed",
    [PST_MCLOSE_HANDSHAKE_FAILED] = "handshake_failed",
    [PST_MCLOSE_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [PST_MCLOSE_IDLE_TIMEOUT] = "idle_timeout",
    [PST_MCLOSE_REQUEST_HEAD_TIMEOUT] = "request_head_timeout",
    [PST_MCLOSE_EVICTED] = "evicted",
    [PST_MCLOSE_PROXY_REFUSED] = "proxy_refused",
    [PST_MCLOSE_SHUTDOWN] = "shutdown",
    [PST_MCLOSE_TLS_ERROR] = "tls_error",
    [PST_MCLOSE_PROTOCOL_ERROR] = "protocol_error",
    [PST_MCLOSE_BACKEND_ERROR] = "backend_error",
    [PST_MCLOSE_ERROR] = "error",
    [PST_MCLOSE_SHED] = "shed",
};

static const char *const early_outcomes[PST_MEARLY__COUNT] = {"accepted", "rejected", "replayed"};
static const char *const protos[PST_MPROTO__COUNT] = {"h1", "h2"};
/* Status classes; "none": no response was sent. */
static const char *const codes[] = {"1xx", "2xx", "3xx", "4xx", "5xx", "none"};
#define N_CODES PST_ARRAY_SIZE(codes)
/* The responses postern makes itself (h1.c, h2.c, stream.c, http_msg.c). */
static const int generated[] = {400, 408, 413, 421, 431, 500, 501, 502, 503, 504, 505, 0};
#define N_GENERATED PST_ARRAY_SIZE(generated)
static const char *const phases[PST_MPHASE__COUNT] = {"connect", "response"};
static const char *const gauge_states[PST_MGAUGE__COUNT] = {"idle", "active"};

/* Handshake duration buckets (upper bounds, ns): 0.5 ms to 5 s. */
static const uint64_t hs_bounds_ns[] = {500000,     1000000,    2500000,   5000000,   10000000,
                                        25000000,   50000000,   100000000, 250000000, 500000000,
                                        1000000000, 2500000000, 5000000000};
#define N_BOUNDS PST_ARRAY_SIZE(hs_bounds_ns)

/* ---- storage ---- */

/* One listener's counters in one block. Only mctr_t members: the scrape
 * sums them as a flat array (ML_N entries). */
typedef struct {
  mctr_t accepted;
  mctr_t closed[PST_MCLOSE__COUNT];
  mctr_t hs[N_VERSIONS][N_GROUPS][N_CIPHERS][N_ALPNS][2];
  mctr_t hs_failed[N_ALERTS];
  mctr_t hs_bucket[N_BOUNDS + 1]; /* not cumulative; the last: over the last bound */
  mctr_t hs_sum_ns;
  mctr_t early[PST_MEARLY__COUNT];
  mctr_t http[PST_MPROTO__COUNT][N_CODES];
  mctr_t generated[N_GENERATED];
  mctr_t connect_failed;
  mctr_t timeouts[PST_MPHASE__COUNT];
} mlistener_t;
#define ML_N (sizeof(mlistener_t) / sizeof(mctr_t))
#define ML_AT(field) (offsetof(mlistener_t, field) / sizeof(mctr_t))

/* The counters outside listeners, same rule (MP_N entries). */
typedef struct {
  mctr_t proc[PST_M__COUNT];
  mctr_t reloads[2]; /* ok, failed */
  mctr_t gauge[PST_MGAUGE__COUNT];
} mproc_t;
#define MP_N (sizeof(mproc_t) / sizeof(mctr_t))

/* One thread's block (or the shared one). Cache-line aligned, so that no
 * two threads write one line. */
typedef struct mblock_s {
  mproc_t p;
  _Atomic(mlistener_t *) listener[PST_METRICS_LISTENERS];
  struct mblock_s *next; /* the registry, immutable once published */
  int shared;
} mblock_t;

static _Alignas(CACHE_LINE) mblock_t shared_block = {.shared = 1};
static _Atomic(mblock_t *) blocks; /* the attached blocks, newest first */
static pthread_mutex_t attach_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local mblock_t *mine;

/* The listener slot registry: names are written once, before n_slots
 * publishes them (release); readers load n_slots with acquire. */
#define SLOT_NAME_MAX 64
static char slot_names[PST_METRICS_LISTENERS][SLOT_NAME_MAX + 1] = {"(other)"};
static atomic_uint n_slots = 1;
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;

static void *aligned_zalloc(size_t size) {
  size = (size + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
  void *p = aligned_alloc(CACHE_LINE, size);
  if (p != NULL) memset(p, 0, size);
  return p;
}

int pst_metrics_thread_attach(void) {
  if (mine != NULL) return 0;
  mblock_t *b = aligned_zalloc(sizeof(*b));
  if (b == NULL) return -ENOMEM;
  pthread_mutex_lock(&attach_lock);
  b->next = atomic_load_explicit(&blocks, memory_order_relaxed);
  atomic_store_explicit(&blocks, b, memory_order_release);
  pthread_mutex_unlock(&attach_lock);
  mine = b;
  return 0;
}

unsigned pst_metrics_listener_slot(const char *name) {
  if (name == NULL || strlen(name) > SLOT_NAME_MAX) return 0;
  pthread_mutex_lock(&slot_lock);
  unsigned n = atomic_load_explicit(&n_slots, memory_order_relaxed), slot = 0;
  for (unsigned i = 1; i < n && slot == 0; i++) {
    if (strcmp(slot_names[i], name) == 0) slot = i;
  }
  if (slot == 0 && n < PST_METRICS_LISTENERS) {
    strcpy(slot_names[n], name);
    atomic_store_explicit(&n_slots, n + 1, memory_order_release);
    slot = n;
  }
  pthread_mutex_unlock(&slot_lock);
  return slot;
}

/* ---- bumps ---- */

static mblock_t *block(void) { return mine != NULL ? mine : &shared_block; }

/* The one bump: by its only writer, a load and a store (no lock prefix);
 * in the shared block, an atomic add. */
static inline void bump(const mblock_t *b, mctr_t *c, uint64_t n) {
  if (__builtin_expect(b->shared, 0)) {
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
    return;
  }
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* Allocates block b's counters for slot. The shared block may race with
 * another thread: the first published wins. Returns them, or NULL. */
static __attribute__((noinline)) mlistener_t *ml_alloc(mblock_t *b, unsigned slot) {
  mlistener_t *l = aligned_zalloc(sizeof(*l));
  if (l == NULL) {
    bump(b, &b->p.proc[PST_M_METRICS_DROPPED], 1);
    return NULL;
  }
  mlistener_t *expected = NULL;
  if (!atomic_compare_exchange_strong_explicit(&b->listener[slot], &expected, l,
                                               memory_order_release, memory_order_acquire)) {
    free(l);
    return expected;
  }
  return l;
}

/* Block b's counters for the listener in slot (NULL: out of memory). */
static inline mlistener_t *ml(mblock_t *b, unsigned slot) {
  if (slot >= PST_METRICS_LISTENERS) slot = 0;
  mlistener_t *l = atomic_load_explicit(&b->listener[slot], memory_order_acquire);
  return __builtin_expect(l != NULL, 1) ? l : ml_alloc(b, slot);
}

/* Bumps the listener counter that expr (with l the listener's counters)
 * designates. */
#define ML_BUMP(slot, expr)              \
  do {                                   \
    mblock_t *b_ = block();              \
    mlistener_t *l = ml(b_, (slot));     \
    if (l != NULL) bump(b_, &(expr), 1); \
  } while (0)

void pst_metric_inc(pst_metric_t m) { pst_metric_add(m, 1); }

void pst_metric_add(pst_metric_t m, uint64_t n) {
  if ((unsigned)m >= PST_M__COUNT) return;
  mblock_t *b = block();
  bump(b, &b->p.proc[m], n);
}

void pst_metrics_conn_accepted(unsigned slot) { ML_BUMP(slot, l->accepted); }

void pst_metrics_conn_closed(unsigned slot, pst_mclose_t why) {
  if ((unsigned)why >= PST_MCLOSE__COUNT) why = PST_MCLOSE_ERROR;
  ML_BUMP(slot, l->closed[why]);
}

static size_t index_of(const char *const *table, size_t n, const char *value) {
  for (size_t i = 0; value != NULL && i + 1 < n; i++) {
    if (strcmp(table[i], value) == 0) return i;
  }
  return n - 1; /* "other" */
}

static size_t group_index(const char *g) {
  for (size_t i = 0; g != NULL && i + 1 < N_GROUPS; i++) {
    if (strcasecmp(g, hs_groups[i].name) == 0 ||
        (hs_groups[i].alias != NULL && strcmp(g, hs_groups[i].alias) == 0)) {
      return i;
    }
  }
  return N_GROUPS - 1;
}

void pst_metrics_handshake(unsigned slot, const char *version, const char *group,
                           const char *cipher, const char *alpn, int resumed,
                           uint64_t duration_ns) {
  size_t v = index_of(hs_versions, N_VERSIONS, version);
  size_t g = group_index(group);
  size_t c = index_of(hs_ciphers, N_CIPHERS, cipher);
  size_t a = alpn == NULL || alpn[0] == '\0' ? ALPN_NONE : index_of(hs_alpns, N_ALPNS, alpn);
  if (a == ALPN_NONE && alpn != NULL && alpn[0] != '\0') a = N_ALPNS - 1;
  size_t k = 0;
  while (k < N_BOUNDS && duration_ns > hs_bounds_ns[k]) k++;
  mblock_t *b = block();
  mlistener_t *l = ml(b, slot);
  if (l == NULL) return;
  bump(b, &l->hs[v][g][c][a][resumed ? 1 : 0], 1);
  bump(b, &l->hs_bucket[k], 1);
  bump(b, &l->hs_sum_ns, duration_ns);
}

void pst_metrics_handshake_failed(unsigned slot, int alert) {
  size_t i = 0;
  if (alert >= 0) {
    for (i = 1; i + 1 < N_ALERTS && alerts[i].code != alert; i++) {
    }
  }
  ML_BUMP(slot, l->hs_failed[i]);
}

void pst_metrics_early(unsigned slot, pst_mearly_t outcome) {
  if ((unsigned)outcome >= PST_MEARLY__COUNT) return;
  ML_BUMP(slot, l->early[outcome]);
}

void pst_metrics_http_request(unsigned slot, pst_mproto_t proto, int status) {
  if ((unsigned)proto >= PST_MPROTO__COUNT) return;
  size_t c = status >= 100 && status <= 599 ? (size_t)(status / 100 - 1) : N_CODES - 1;
  ML_BUMP(slot, l->http[proto][c]);
}

void pst_metrics_http_generated(unsigned slot, int status) {
  size_t i = 0;
  while (i + 1 < N_GENERATED && generated[i] != status) i++;
  ML_BUMP(slot, l->generated[i]);
}

void pst_metrics_backend_connect_failed(unsigned slot) { ML_BUMP(slot, l->connect_failed); }

void pst_metrics_backend_timeout(unsigned slot, pst_mphase_t phase) {
  if ((unsigned)phase >= PST_MPHASE__COUNT) return;
  ML_BUMP(slot, l->timeouts[phase]);
}

void pst_metrics_gauge_add(pst_mgauge_t g, int64_t delta) {
  if ((unsigned)g >= PST_MGAUGE__COUNT) return;
  mblock_t *b = block();
  bump(b, &b->p.gauge[g], (uint64_t)delta); /* two's complement: summed as int64 */
}

void pst_metrics_reload(int ok) {
  mblock_t *b = block();
  bump(b, &b->p.reloads[ok ? 0 : 1], 1);
}

/* ---- reading: sums over every block ---- */

static mblock_t *first_block(void) { return &shared_block; }

static mblock_t *next_block(const mblock_t *b) {
  return b == &shared_block ? atomic_load_explicit(&blocks, memory_order_acquire) : b->next;
}

/* Adds every block's process counters to sum (MP_N entries). */
static void sum_proc(uint64_t *sum) {
  memset(sum, 0, MP_N * sizeof(*sum));
  for (mblock_t *b = first_block(); b != NULL; b = next_block(b)) {
    mctr_t *c = (mctr_t *)&b->p;
    for (size_t i = 0; i < MP_N; i++) sum[i] += atomic_load_explicit(&c[i], memory_order_relaxed);
  }
}

/* Adds every block's counters of slot to sum (ML_N entries). Returns
 * nonzero when some block has counters for it. */
static int sum_listener(unsigned slot, uint64_t *sum) {
  int any = 0;
  memset(sum, 0, ML_N * sizeof(*sum));
  for (mblock_t *b = first_block(); b != NULL; b = next_block(b)) {
    mlistener_t *l = atomic_load_explicit(&b->listener[slot], memory_order_acquire);
    if (l == NULL) continue;
    any = 1;
    mctr_t *c = (mctr_t *)l;
    for (size_t i = 0; i < ML_N; i++) sum[i] += atomic_load_explicit(&c[i], memory_order_relaxed);
  }
  return any;
}

uint64_t pst_metric_get(pst_metric_t m) {
  if ((unsigned)m >= PST_M__COUNT) return 0;
  uint64_t sum = 0;
  for (mblock_t *b = first_block(); b != NULL; b = next_block(b)) {
    sum += atomic_load_explicit(&b->p.proc[m], memory_order_relaxed);
  }
  return sum;
}

static const char *const metric_help[PST_M__COUNT] = {
#define PST_METRIC_HELP(id, key, help) help,
    PST_METRICS(PST_METRIC_HELP)
#undef PST_METRIC_HELP
};

static const char *const metric_names[PST_M__COUNT] = {
#define PST_METRIC_NAME(id, key, help) key,
    PST_METRICS(PST_METRIC_NAME)
#undef PST_METRIC_NAME
};

const char *pst_metric_name(pst_metric_t m) {
  return (unsigned)m < PST_M__COUNT ? metric_names[m] : "?";
}

static uint64_t gen_count(const uint64_t *l, int status) {
  size_t i = 0;
  while (i + 1 < N_GENERATED && generated[i] != status) i++;
  return l[ML_AT(generated) + i];
}

void pst_metrics_summary(pst_metrics_summary_t *s) {
  memset(s, 0, sizeof(*s));
  uint64_t p[MP_N], *l = malloc(ML_N * sizeof(*l));
  sum_proc(p);
  s->reloads = p[offsetof(mproc_t, reloads) / sizeof(mctr_t)];
  s->reloads_failed = p[offsetof(mproc_t, reloads) / sizeof(mctr_t) + 1];
  if (l == NULL) return;
  unsigned n = atomic_load_explicit(&n_slots, memory_order_acquire);
  for (unsigned slot = 0; slot < n; slot++) {
    if (!sum_listener(slot, l)) continue;
    const uint64_t *hs = &l[ML_AT(hs)];
    for (size_t i = 0; i < N_VERSIONS * N_GROUPS * N_CIPHERS * N_ALPNS; i++) {
      s->handshakes += hs[2 * i] + hs[2 * i + 1];
      s->resumed += hs[2 * i + 1];
    }
    for (size_t i = 0; i < PST_MEARLY__COUNT; i++) s->early[i] += l[ML_AT(early) + i];
    for (size_t i = 0; i < PST_MPROTO__COUNT * N_CODES; i++) s->http_requests += l[ML_AT(http) + i];
    s->http_400 += gen_count(l, 400);
    s->http_431 += gen_count(l, 431);
    s->http_502 += gen_count(l, 502);
    s->http_504 += gen_count(l, 504);
  }
  free(l);
}

void pst_metrics_reset(void) {
  for (mblock_t *b = first_block(); b != NULL; b = next_block(b)) {
    mctr_t *c = (mctr_t *)&b->p;
    for (size_t i = 0; i < MP_N; i++) atomic_store_explicit(&c[i], 0, memory_order_relaxed);
    for (unsigned s = 0; s < PST_METRICS_LISTENERS; s++) {
      mlistener_t *l = atomic_load_explicit(&b->listener[s], memory_order_acquire);
      c = (mctr_t *)l;
      for (size_t i = 0; l != NULL && i < ML_N; i++) {
        atomic_store_explicit(&c[i], 0, memory_order_relaxed);
      }
    }
  }
}

void pst_metrics_log(void) {
  pst_metrics_summary_t s;
  pst_metrics_summary(&s);
  char line[1024];
  int off =
      snprintf(line, sizeof(line),
               "handshakes=%llu resumed=%llu early_data_accepted=%llu "
               "early_data_rejected=%llu early_data_replayed=%llu reloads=%llu "
               "reloads_failed=%llu http_requests=%llu http_400=%llu http_431=%llu "
               "http_502=%llu http_504=%llu",
               (unsigned long long)s.handshakes, (unsigned long long)s.resumed,
               (unsigned long long)s.early[PST_MEARLY_ACCEPTED],
               (unsigned long long)s.early[PST_MEARLY_REJECTED],
               (unsigned long long)s.early[PST_MEARLY_REPLAYED], (unsigned long long)s.reloads,
               (unsigned long long)s.reloads_failed, (unsigned long long)s.http_requests,
               (unsigned long long)s.http_400, (unsigned long long)s.http_431,
               (unsigned long long)s.http_502, (unsigned long long)s.http_504);
  for (size_t i = 0; i < PST_M__COUNT && off > 0 && (size_t)off < sizeof(line); i++) {
    int n = snprintf(line + off, sizeof(line) - (size_t)off, " %s=%llu", metric_names[i],
                     (unsigned long long)pst_metric_get((pst_metric_t)i));
    if (n < 0) break;
    off += n;
  }
  pst_log_info("counters: %s", line);
}

/* ---- exposition (Prometheus text format 0.0.4) ---- */

/* Appends s with every character of esc preceded by a backslash and a
 * newline written as "\\n" (the exposition format's escapes). */
static int metrics_escape(pst_buf_t *out, const char *s, const char *esc) {
  for (const char *p = s; *p != '\0';) {
    size_t run = strcspn(p, esc);
    if (run > 0 && pst_buf_append(out, p, run) != 0) return -ENOMEM;
    p += run;
    if (*p == '\0') break;
    if (pst_buf_append(out, *p == '\n' ? "\\n" : (char[2]){'\\', *p}, 2) != 0) return -ENOMEM;
    p++;
  }
  return 0;
}

int pst_metrics_head(pst_buf_t *out, const char *name, const char *type, const char *help) {
  if (pst_buf_printf(out, "# HELP %s ", name) != 0) return -ENOMEM;
  if (metrics_escape(out, help, "\\\n") != 0) return -ENOMEM;
  return pst_buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

int pst_metrics_label(pst_buf_t *out, const char *value) {
  return metrics_escape(out, value, "\\\"\n");
}

/* What the renderer of one family sees: every listener's sums. */
typedef struct {
  pst_buf_t *out;
  unsigned n;        /* listener slots */
  uint64_t **sums;   /* sums[slot], ML_N entries, NULL for a slot nobody bumped */
  const uint64_t *p; /* process sums, MP_N entries */
} render_t;

/* Appends name{listener="L",k1="v1",...} value. labels: pairs of label
 * name and value, NULL-terminated. */
static int series(render_t *r, const char *name, unsigned slot, const char *const *labels,
                  const char *value) {
  pst_buf_t *out = r->out;
  int rc = pst_buf_printf(out, "%s{listener=\"", name);
  if (rc == 0) rc = pst_metrics_label(out, slot_names[slot]);
  if (rc == 0) rc = pst_buf_append(out, "\"", 1);
  for (size_t i = 0; rc == 0 && labels != NULL && labels[i] != NULL; i += 2) {
    rc = pst_buf_printf(out, ",%s=\"", labels[i]);
    if (rc == 0) rc = pst_metrics_label(out, labels[i + 1]);
    if (rc == 0) rc = pst_buf_append(out, "\"", 1);
  }
  if (rc == 0) rc = pst_buf_printf(out, "} %s\n", value);
  return rc != 0 ? -ENOMEM : 0;
}

static int series_u64(render_t *r, const char *name, unsigned slot, const char *const *labels,
                      uint64_t v) {
  char num[24];
  snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
  return series(r, name, slot, labels, num);
}

/* Whether slot's series are rendered: a registered name always (at 0 until
 * used), the overflow slot only once something counted there. */
static int slot_shown(const render_t *r, unsigned slot) {
  return slot > 0 ? 1 : r->sums[0] != NULL;
}

static const uint64_t zeros[ML_N];

static const uint64_t *sums_of(const render_t *r, unsigned slot) {
  return r->sums[slot] != NULL ? r->sums[slot] : zeros;
}

/* A family with the listener label only: every shown listener. */
static int fam_listener(render_t *r, const char *name, const char *type, const char *help,
                        size_t at) {
  if (pst_metrics_head(r->out, name, type, help) != 0) return -ENOMEM;
  for (unsigned s = 0; s < r->n; s++) {
    if (slot_shown(r, s) && series_u64(r, name, s, NULL, sums_of(r, s)[at]) != 0) return -ENOMEM;
  }
  return 0;
}

/* A family with one more label, whose values are values[0..n): the
 * nonzero series only. */
static int fam_label(render_t *r, const char *name, const char *help, size_t at, const char *label,
                     const char *const *values, size_t n) {
  if (pst_metrics_head(r->out, name, "counter", help) != 0) return -ENOMEM;
  for (unsigned s = 0; s < r->n; s++) {
    const uint64_t *l = sums_of(r, s);
    for (size_t i = 0; i < n; i++) {
      if (l[at + i] == 0) continue;
      const char *labels[] = {label, values[i], NULL};
      if (series_u64(r, name, s, labels, l[at + i]) != 0) return -ENOMEM;
    }
  }
  return 0;
}

static int render_connections(render_t *r) {
  int rc = fam_listener(r, "postern_connections_accepted_total", "counter",
                        "client connections accepted", ML_AT(accepted));
  if (rc == 0) {
    rc = fam_label(r, "postern_connections_closed_total",
                   "client connections closed, by the reason they closed", ML_AT(closed), "reason",
                   close_reasons, PST_MCLOSE__COUNT);
  }
  if (rc != 0) return rc;
  const char *name = "postern_connections_open";
  if (pst_metrics_head(r->out, name, "gauge", "client connections open (accepted - closed)") != 0)
    return -ENOMEM;
  for (unsigned s = 0; s < r->n; s++) {
    if (!slot_shown(r, s)) continue;
    const uint64_t *l = sums_of(r, s);
    uint64_t closed = 0;
    for (size_t i = 0; i < PST_MCLOSE__COUNT; i++) closed += l[ML_AT(closed) + i];
    /* Blocks are read one counter after the other while workers bump:
     * a close counted after its accept was read could show one more
     * closed than accepted for an instant. */
    uint64_t open = l[ML_AT(accepted)] > closed ? l[ML_AT(accepted)] - closed : 0;
    if (series_u64(r, name, s, NULL, open) != 0) return -ENOMEM;
  }
  return 0;
}

static int render_handshakes(render_t *r) {
  const char *name = "postern_tls_handshakes_total";
  if (pst_metrics_head(r->out, name, "counter",
                       "TLS handshakes completed, by what they negotiated") != 0) {
    return -ENOMEM;
  }
  for (unsigned s = 0; s < r->n; s++) {
    const uint64_t *hs = &sums_of(r, s)[ML_AT(hs)];
    size_t i = 0;
    for (size_t v = 0; v < N_VERSIONS; v++) {
      for (size_t g = 0; g < N_GROUPS; g++) {
        for (size_t c = 0; c < N_CIPHERS; c++) {
          for (size_t a = 0; a < N_ALPNS; a++) {
            for (size_t res = 0; res < 2; res++, i++) {
              if (hs[i] == 0) continue;
              const char *labels[] = {"version", hs_versions[v],         "group", hs_groups[g].name,
                                      "cipher",  hs_ciphers[c],          "alpn",  hs_alpns[a],
                                      "resumed", res ? "true" : "false", NULL};
              if (series_u64(r, name, s, labels, hs[i]) != 0) return -ENOMEM;
            }
          }
        }
      }
    }
  }
  const char *alert_names[N_ALERTS];
  for (size_t i = 0; i < N_ALERTS; i++) alert_names[i] = alerts[i].name;
  return fam_label(r, "postern_tls_handshake_failures_total",
                   "TLS handshakes that did not complete, by the fatal alert postern sent "
                   "(none: the client went away, timed out or was evicted)",
                   ML_AT(hs_failed), "alert", alert_names, N_ALERTS);
}

static int render_histogram(render_t *r) {
  const char *name = "postern_tls_handshake_duration_seconds";
  if (pst_metrics_head(r->out, name, "histogram",
                       "time from accept to the TLS handshake's completion") != 0) {
    return -ENOMEM;
  }
  char bucket[64], num[32];
  snprintf(bucket, sizeof(bucket), "%s_bucket", name);
  for (unsigned s = 0; s < r->n; s++) {
    if (!slot_shown(r, s)) continue;
    const uint64_t *l = sums_of(r, s);
    uint64_t cum = 0;
    for (size_t k = 0; k <= N_BOUNDS; k++) {
      cum += l[ML_AT(hs_bucket) + k];
      if (k < N_BOUNDS) {
        snprintf(num, sizeof(num), "%g", (double)hs_bounds_ns[k] / 1e9);
      } else {
        snprintf(num, sizeof(num), "+Inf");
      }
      const char *labels[] = {"le", num, NULL};
      if (series_u64(r, bucket, s, labels, cum) != 0) return -ENOMEM;
    }
    char tail[80];
    snprintf(num, sizeof(num), "%.9f", (double)l[ML_AT(hs_sum_ns)] / 1e9);
    snprintf(tail, sizeof(tail), "%s_sum", name);
    if (series(r, tail, s, NULL, num) != 0) return -ENOMEM;
    snprintf(tail, sizeof(tail), "%s_count", name);
    if (series_u64(r, tail, s, NULL, cum) != 0) return -ENOMEM;
  }
  return 0;
}

static int render_http(render_t *r) {
  const char *name = "postern_http_requests_total";
  if (pst_metrics_head(r->out, name, "counter",
                       "HTTP requests, by front end protocol and the status class sent to the "
                       "client (none: no response, e.g. an HTTP/2 stream reset)") != 0) {
    return -ENOMEM;
  }
  for (unsigned s = 0; s < r->n; s++) {
    const uint64_t *l = sums_of(r, s);
    for (size_t p = 0; p < PST_MPROTO__COUNT; p++) {
      for (size_t c = 0; c < N_CODES; c++) {
        uint64_t v = l[ML_AT(http) + p * N_CODES + c];
        const char *labels[] = {"protocol", protos[p], "code", codes[c], NULL};
        if (v != 0 && series_u64(r, name, s, labels, v) != 0) return -ENOMEM;
      }
    }
  }
  char statuses[N_GENERATED][8];
  const char *status_names[N_GENERATED];
  for (size_t i = 0; i < N_GENERATED; i++) {
    if (generated[i] != 0) {
      snprintf(statuses[i], sizeof(statuses[i]), "%d", generated[i]);
    } else {
      snprintf(statuses[i], sizeof(statuses[i]), "other");
    }
    status_names[i] = statuses[i];
  }
  return fam_label(r, "postern_http_responses_generated_total",
                   "HTTP responses postern made itself (refusals, 421, 502, 504...), by status",
                   ML_AT(generated), "status", status_names, N_GENERATED);
}

static int render_backends(render_t *r) {
  int rc = fam_label(r, "postern_tls_early_data_total",
                     "0-RTT early data offered, by what became of it (RFC 8446 2.3, 4.2.10)",
                     ML_AT(early), "outcome", early_outcomes, PST_MEARLY__COUNT);
  if (rc == 0) {
    rc = fam_listener(r, "postern_backend_connect_failures_total", "counter",
                      "backend connections that could not be made (error or connect timeout)",
                      ML_AT(connect_failed));
  }
  if (rc == 0) {
    rc = fam_label(r, "postern_backend_timeouts_total", "backend timeouts, by phase",
                   ML_AT(timeouts), "phase", phases, PST_MPHASE__COUNT);
  }
  if (rc != 0) return rc;
  const char *name = "postern_backend_connections";
  if (pst_metrics_head(r->out, name, "gauge",
                       "backend connections of every worker's pools, by state") != 0) {
    return -ENOMEM;
  }
  for (size_t g = 0; g < PST_MGAUGE__COUNT; g++) {
    int64_t v = (int64_t)r->p[offsetof(mproc_t, gauge) / sizeof(mctr_t) + g];
    if (pst_buf_printf(r->out, "%s{state=\"%s\"} %lld\n", name, gauge_states[g],
                       (long long)(v > 0 ? v : 0)) != 0) {
      return -ENOMEM;
    }
  }
  return 0;
}

static int render_process(render_t *r) {
  char name[128];
  for (size_t i = 0; i < PST_M__COUNT; i++) {
    snprintf(name, sizeof(name), "postern_%s_total", metric_names[i]);
    if (pst_metrics_head(r->out, name, "counter", metric_help[i]) != 0) return -ENOMEM;
    if (pst_buf_printf(r->out, "%s %llu\n", name, (unsigned long long)r->p[i]) != 0) {
      return -ENOMEM;
    }
  }
  const char *rl = "postern_reloads_total";
  size_t at = offsetof(mproc_t, reloads) / sizeof(mctr_t);
  if (pst_metrics_head(r->out, rl, "counter",
                       "reloads, by result (failed: the old generation kept serving)") != 0 ||
      pst_buf_printf(r->out, "%s{result=\"ok\"} %llu\n%s{result=\"failed\"} %llu\n", rl,
                     (unsigned long long)r->p[at], rl, (unsigned long long)r->p[at + 1]) != 0) {
    return -ENOMEM;
  }
  return 0;
}

int pst_metrics_render(pst_buf_t *out) {
  uint64_t p[MP_N];
  uint64_t *sums[PST_METRICS_LISTENERS] = {0};
  render_t r = {.out = out, .sums = sums, .p = p};
  r.n = atomic_load_explicit(&n_slots, memory_order_acquire);
  sum_proc(p);
  int rc = 0;
  for (unsigned s = 0; s < r.n && rc == 0; s++) {
    sums[s] = malloc(ML_N * sizeof(uint64_t));
    if (sums[s] == NULL) {
      rc = -ENOMEM;
    } else if (!sum_listener(s, sums[s])) {
      free(sums[s]);
      sums[s] = NULL;
    }
  }
  if (rc == 0) rc = render_process(&r);
  if (rc == 0) rc = render_connections(&r);
  if (rc == 0) rc = render_handshakes(&r);
  if (rc == 0) rc = render_histogram(&r);
  if (rc == 0) rc = render_http(&r);
  if (rc == 0) rc = render_backends(&r);
  for (unsigned s = 0; s < r.n; s++) free(sums[s]);
  return rc;
}
