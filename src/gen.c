/* postern: configuration generations. A generation is built whole (every
 * certificate loaded and checked, every TLS context made) before anything
 * uses it, so a broken configuration is refused before it serves anyone. */
#include "postern/gen.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "postern/access_log.h"
#include "postern/balance.h"
#include "postern/cert.h"
#include "postern/common.h"
#include "postern/config.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/priv.h"
#include "postern/ticket.h"
#include "postern/tls.h"

typedef struct {
  FILE *report; /* `postern -t` output, or NULL to log */
  int verbose;  /* every certificate's lines, however many (`postern -t --verbose`) */
  unsigned errors;
  const char *file;
  const pst_listener_conf_t *listeners; /* the config's, to name one as listeners[N] */
  unsigned warn_days;                   /* expiry_warn_days */
} gen_ctx_t;

/* Problems name a listener as the config loader does: file:line:column, then
 * the path of the key in the file, listeners[N] with N its index. GEN_AT
 * gives the arguments of "%s:%d:%d: listeners[%zu]" for listener lc at mark m. */
#define GEN_AT(g, lc, m) (g)->file, (m).line, (m).column, (size_t)((lc) - (g)->listeners)

static void gen_problem(gen_ctx_t *g, pst_problem_severity_t sev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void gen_problem(gen_ctx_t *g, pst_problem_severity_t sev, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (sev == PST_PROBLEM_ERROR) g->errors++;
  if (g->report != NULL) {
    fprintf(g->report, "%s: %s\n", sev == PST_PROBLEM_ERROR ? "error" : "warning", msg);
  } else if (sev == PST_PROBLEM_ERROR) {
    pst_log_error("%s", msg);
  } else {
    pst_log_warn("%s", msg);
  }
}

/* Logs (or prints) what pst_cert_load found. A log line starts with the
 * place in the configuration that names the certificate, then has the same
 * message as `postern -t`, so that a failed start or reload points at both
 * the line to look at and the file to fix. */
static void gen_report_cert(gen_ctx_t *g, const pst_listener_conf_t *lc, size_t i,
                            const pst_cert_t *cert, time_t now) {
  if (g->report != NULL) {
    pst_cert_print(cert, now, g->report);
    fputc('\n', g->report);
    g->errors += (unsigned)cert->n_errors;
    return;
  }
  for (size_t k = 0; k < cert->n_problems; k++) {
    const pst_problem_t *p = &cert->problems[k];
    if (p->severity == PST_PROBLEM_ERROR) g->errors++;
    pst_log(p->severity == PST_PROBLEM_ERROR ? PST_LOG_ERROR : PST_LOG_WARN,
            "%s:%d:%d: listeners[%zu].tls.certificates[%zu]: %s", GEN_AT(g, lc, lc->certs[i].mark),
            i, p->msg);
  }
}

/* The OCSP response of certificate i: its own ocsp key, else
 * <tls.ocsp_dir>/<cert file name>.ocsp (in buf), else NULL. */
static const char *gen_ocsp_path(const pst_listener_conf_t *lc, size_t i, char *buf, size_t len) {
  if (lc->certs[i].ocsp != NULL) return lc->certs[i].ocsp;
  if (lc->ocsp_dir == NULL) return NULL;
  const char *base = strrchr(lc->certs[i].cert, '/');
  base = base != NULL ? base + 1 : lc->certs[i].cert;
  if ((size_t)snprintf(buf, len, "%s/%s.ocsp", lc->ocsp_dir, base) >= len) return NULL;
  return buf;
}

/* A listener's certificates reported as a tally (cert.h), for a listener
 * with more than PST_CERT_TALLY_ABOVE of them: one line per kind of problem
 * instead of one (or, in `postern -t`, a block) per certificate. */
typedef struct {
  gen_ctx_t *g;
  const pst_listener_conf_t *lc;
} gen_tally_t;

static void gen_tally_line(void *arg, pst_problem_severity_t sev, size_t i, int summary,
                           const char *line) {
  gen_tally_t *t = arg;
  gen_ctx_t *g = t->g;
  const pst_listener_conf_t *lc = t->lc;
  const char *label = sev == PST_PROBLEM_ERROR ? "error" : "warning";
  if (g->report != NULL) {
    fprintf(g->report, "%s: %s\n", label, line);
  } else if (summary) {
    pst_log(sev == PST_PROBLEM_ERROR ? PST_LOG_ERROR : PST_LOG_WARN,
            "%s:%d:%d: listeners[%zu].tls.certificates: %s", GEN_AT(g, lc, lc->certs[i].mark),
            line);
  } else {
    pst_log(sev == PST_PROBLEM_ERROR ? PST_LOG_ERROR : PST_LOG_WARN,
            "%s:%d:%d: listeners[%zu].tls.certificates[%zu]: %s", GEN_AT(g, lc, lc->certs[i].mark),
            i, line);
  }
}

static void gen_report_tally(gen_ctx_t *g, const pst_listener_conf_t *lc,
                             const pst_cert_tally_t *tally) {
  size_t n, with_errors, warnings_only;
  pst_cert_tally_counts(tally, &n, &with_errors, &warnings_only);
  if (g->report != NULL) {
    fprintf(g->report,
            "listener %s: %zu certificates: %zu without problems, %zu with warnings, %zu with "
            "errors (`postern -t --verbose` shows each certificate)\n",
            lc->name, n, n - with_errors - warnings_only, warnings_only, with_errors);
  }
  gen_tally_t t = {g, lc};
  pst_cert_tally_report(
      tally, g->warn_days,
      g->report != NULL ? "--verbose lists all" : "`postern -t --verbose -c FILE` lists all",
      gen_tally_line, &t);
  if (g->report != NULL) fputc('\n', g->report);
}

static int gen_load_certs(gen_ctx_t *g, pst_gen_listener_t *gl, time_t now) {
  const pst_listener_conf_t *lc = gl->conf;
  char err[512];
  pst_trust_t *trust = NULL;
  int rc = pst_trust_load(lc->ca_file, &trust, err, sizeof(err));
  if (rc == -ENOMEM) return rc;
  if (rc != 0) {
    gen_problem(g, PST_PROBLEM_ERROR, "%s:%d:%d: listeners[%zu].tls.ca_file: %s",
                GEN_AT(g, lc, lc->ca_file_mark), err);
    return 0;
  }
  /* tls.intermediates: where incomplete chains are completed from. */
  pst_trust_t *bundle = NULL;
  if (lc->intermediates != NULL) {
    rc = pst_trust_load(lc->intermediates, &bundle, err, sizeof(err));
    if (rc != 0) pst_trust_free(trust);
    if (rc == -ENOMEM) return rc;
    if (rc != 0) {
      gen_problem(g, PST_PROBLEM_ERROR, "%s:%d:%d: listeners[%zu].tls.intermediates: %s",
                  GEN_AT(g, lc, lc->intermediates_mark), err);
      return 0;
    }
  }
  gl->certs = calloc(lc->n_certs, sizeof(*gl->certs));
  if (gl->certs == NULL) {
    pst_trust_free(trust);
    pst_trust_free(bundle);
    return -ENOMEM;
  }
  pst_cert_tally_t *tally = NULL;
  if (!g->verbose && lc->n_certs > PST_CERT_TALLY_ABOVE) {
    tally = pst_cert_tally_new();
    if (tally == NULL) rc = -ENOMEM;
  }
  for (size_t i = 0; i < lc->n_certs && rc != -ENOMEM; i++) {
    char ocsp[4096];
    const char *ocsp_path = gen_ocsp_path(lc, i, ocsp, sizeof(ocsp));
    rc = pst_cert_load_stapled(lc->certs[i].cert, lc->certs[i].key, ocsp_path, ocsp_path == ocsp,
                               trust, bundle, now, g->warn_days, &gl->certs[i]);
    if (rc == -ENOMEM) break;
    gl->n_certs++;
    rc = 0;
    if (tally == NULL) {
      gen_report_cert(g, lc, i, gl->certs[i], now);
      continue;
    }
    g->errors += (unsigned)gl->certs[i]->n_errors;
    rc = pst_cert_tally_add(tally, i, gl->certs[i]);
  }
  if (tally != NULL && rc == 0) gen_report_tally(g, lc, tally);
  pst_cert_tally_free(tally);
  pst_trust_free(trust);
  pst_trust_free(bundle);
  return rc;
}

/* A new empty candidate set; its index in *out. Returns 0 or -ENOMEM. */
static int gen_set_new(pst_gen_listener_t *gl, size_t *cap, int *out) {
  if (gl->n_sets == *cap) {
    size_t n = *cap ? *cap * 2 : 8;
    pst_cert_set_t *sets = realloc(gl->sets, n * sizeof(*sets));
    if (sets == NULL) return -ENOMEM;
    gl->sets = sets;
    *cap = n;
  }
  memset(&gl->sets[gl->n_sets], 0, sizeof(gl->sets[0]));
  *out = (int)gl->n_sets++;
  return 0;
}

/* Puts certificate i of kind k among the exact-name candidates of set, in
 * kind order. Returns the index of the certificate of the same kind already
 * there (left as it is), or -1 when i was added. */
static int gen_set_add(pst_cert_set_t *set, int i, pst_cert_kind_t k) {
  size_t at = 0;
  while (at < set->n && set->kind[at] < k) at++;
  if (at < set->n && set->kind[at] == k) return set->cert[at];
  assert(set->n < PST_CERT_KIND_OTHER); /* one per kind */
  memmove(&set->cert[at + 1], &set->cert[at], (set->n - at) * sizeof(set->cert[0]));
  memmove(&set->kind[at + 1], &set->kind[at], (set->n - at) * sizeof(set->kind[0]));
  set->cert[at] = (int16_t)i;
  set->kind[at] = (uint8_t)k;
  set->n++;
  return -1;
}

/* Each exact name's candidates are followed by those of the wildcard that
 * covers it, if any ("exact, then wildcard"): the handshake then makes one
 * lookup whatever matched. names[s] is the name set s was made for. */
static void gen_sets_wildcards(pst_gen_listener_t *gl, const char *const *names) {
  for (size_t s = 0; s < gl->n_sets; s++) {
    const char *dot = strchr(names[s], '.');
    if (names[s][0] == '*' || dot == NULL) continue;
    char wild[300];
    if ((size_t)snprintf(wild, sizeof(wild), "*%s", dot) >= sizeof(wild)) continue;
    int w = pst_sni_map_get(gl->sni, wild);
    if (w < 0) continue;
    pst_cert_set_t *set = &gl->sets[s];
    const pst_cert_set_t *ws = &gl->sets[w];
    for (size_t k = 0; k < ws->n; k++) {
      assert(set->n < PST_CERT_SET_MAX);
      set->cert[set->n] = ws->cert[k];
      set->kind[set->n++] = ws->kind[k];
    }
  }
}

/* Certificate selection: each name maps to the set of certificates that
 * may serve it, one per key type (RFC 8446 4.2.3: the handshake picks the
 * first whose signature the client accepts, tls.c). Two certificates of
 * one key type for one name are an error: which one a client got would
 * depend on the order of the list. */
static int gen_sni_sets(gen_ctx_t *g, pst_gen_listener_t *gl, const char ***names, size_t *cap) {
  const pst_listener_conf_t *lc = gl->conf;
  for (size_t i = 0; i < gl->n_certs; i++) {
    const pst_cert_t *c = gl->certs[i];
    pst_cert_kind_t kind = pst_cert_kind(c);
    if (kind == PST_CERT_KIND_OTHER) continue; /* its load reported why */
    for (size_t j = 0; j < c->n_names; j++) {
      int s = pst_sni_map_get(gl->sni, c->names[j]);
      if (s < 0) {
        size_t old_cap = *cap;
        int rc = gen_set_new(gl, cap, &s);
        if (rc == 0 && *cap != old_cap) {
          const char **n = realloc(*names, *cap * sizeof(*n));
          if (n == NULL) return -ENOMEM;
          *names = n;
        }
        if (rc == 0) rc = pst_sni_map_add(gl->sni, c->names[j], s);
        if (rc == -ENOMEM) return rc;
        if (rc != 0) { /* not a name the tables take: never served */
          gl->n_sets--;
          continue;
        }
        (*names)[s] = c->names[j];
      }
      int other = gen_set_add(&gl->sets[s], (int)i, kind);
      if (other >= 0) {
        gen_problem(g, PST_PROBLEM_ERROR,
                    "%s:%d:%d: listeners[%zu].tls.certificates[%zu]: name %s is also in "
                    "certificates[%d], whose key is of the same type (%s): which one clients get "
                    "would depend on the order; remove the name from one of them, or use "
                    "certificates of different key types (ECDSA and RSA) for it",
                    GEN_AT(g, lc, lc->certs[i].mark), i, c->names[j], other, pst_cert_key_desc(c));
      }
    }
  }
  return 0;
}

/* Says which certificate serves which client, for the names that have
 * more than one: in `postern -t`, one line per name; in the log (start
 * and reload), one line per listener naming the first few. */
static void gen_report_sets(gen_ctx_t *g, const pst_gen_listener_t *gl, const char *const *names) {
  char line[1024];
  size_t shown = 0, multi = 0, len = 0;
  for (size_t s = 0; s < gl->n_sets; s++) {
    const pst_cert_set_t *set = &gl->sets[s];
    if (set->n < 2) continue;
    multi++;
    if (g->report != NULL) {
      fprintf(g->report, "listener %s: %s: ", gl->conf->name, names[s]);
      for (size_t k = 0; k < set->n; k++) {
        const pst_cert_t *c = gl->certs[set->cert[k]];
        fprintf(g->report, "%s%s (%s)", k > 0 ? ", then " : "", pst_cert_key_desc(c), c->cert_path);
      }
      fprintf(g->report, "\n");
    } else if (shown < 4 && len < sizeof(line)) {
      shown++;
      len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s (", shown > 1 ? "; " : "",
                              names[s]);
      for (size_t k = 0; k < set->n && len < sizeof(line); k++) {
        len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s", k > 0 ? ", then " : "",
                                pst_cert_key_desc(gl->certs[set->cert[k]]));
      }
      if (len < sizeof(line)) len += (size_t)snprintf(line + len, sizeof(line) - len, ")");
    }
  }
  if (g->report == NULL && multi > 0) {
    pst_log_info(
        "listener %s: %zu server name%s with certificates of several key types, chosen "
        "per handshake by what the client accepts: %s%s",
        gl->conf->name, multi, multi == 1 ? "" : "s", line, multi > shown ? "; ..." : "");
  }
}

static int gen_sni_map(gen_ctx_t *g, pst_gen_listener_t *gl) {
  const pst_listener_conf_t *lc = gl->conf;
  gl->sni = pst_sni_map_new();
  if (gl->sni == NULL) return -ENOMEM;
  const char **names = NULL;
  size_t cap = 0;
  int rc = gen_sni_sets(g, gl, &names, &cap);
  if (rc == 0) gen_sets_wildcards(gl, names);
  if (rc == 0) gen_report_sets(g, gl, names);
  free(names);
  if (rc != 0) return rc;
  gl->default_set = -1;
  if (lc->default_certificate != NULL) {
    gl->default_set =
        pst_sni_map_lookup(gl->sni, lc->default_certificate, strlen(lc->default_certificate));
    if (gl->default_set < 0) {
      gen_problem(g, PST_PROBLEM_ERROR,
                  "%s:%d:%d: listeners[%zu].tls.default_certificate: no certificate covers "
                  "\"%s\"; expected a name of one of the listed certificates",
                  GEN_AT(g, lc, lc->default_certificate_mark), lc->default_certificate);
    }
  } else if (gl->certs[0]->n_names > 0) {
    /* The first certificate's names, with the other key types for them. */
    gl->default_set = pst_sni_map_get(gl->sni, gl->certs[0]->names[0]);
  }
  if (gl->default_set < 0 || gl->sets[gl->default_set].n == 0) {
    /* Only after an error was reported: keep the generation consistent. */
    if ((rc = gen_set_new(gl, &cap, &gl->default_set)) != 0) return rc;
    gen_set_add(&gl->sets[gl->default_set], 0, PST_CERT_KIND_ECDSA_P256);
  }
  gl->default_cert = gl->sets[gl->default_set].cert[0];
  return 0;
}

/* Routes pick a backend by server name. A route name that no certificate
 * covers would be served the default certificate, which the client rejects
 * as a hostname mismatch: warn now rather than let users find out. */
static int gen_routes(gen_ctx_t *g, pst_gen_listener_t *gl) {
  const pst_listener_conf_t *lc = gl->conf;
  if (lc->n_routes == 0) return 0;
  gl->routes = pst_sni_map_new();
  if (gl->routes == NULL) return -ENOMEM;
  for (size_t i = 0; i < lc->n_routes; i++) {
    const pst_route_conf_t *r = &lc->routes[i];
    for (size_t j = 0; j < r->n_names; j++) {
      int rc = pst_sni_map_add(gl->routes, r->names[j], (int)i);
      if (rc == -ENOMEM) return rc;
      if (rc == 1) {
        gen_problem(g, PST_PROBLEM_WARNING,
                    "%s:%d:%d: listeners[%zu].routes[%zu]: name %s is already routed by an "
                    "earlier route, which wins",
                    GEN_AT(g, lc, r->mark), i, r->names[j]);
      }
      const char *probe = r->names[j];
      char sample[300];
      if (probe[0] == '*') { /* a name the wildcard stands for */
        snprintf(sample, sizeof(sample), "x%s", probe + 1);
        probe = sample;
      }
      if (pst_sni_map_lookup(gl->sni, probe, strlen(probe)) < 0) {
        gen_problem(g, PST_PROBLEM_WARNING,
                    "%s:%d:%d: listeners[%zu].routes[%zu]: no certificate covers %s: clients "
                    "will get the default certificate and report a hostname mismatch; add a "
                    "certificate for it to tls.certificates, or remove the name from the route",
                    GEN_AT(g, lc, r->mark), i, r->names[j]);
      }
    }
  }
  return 0;
}

static void gen_backend_tls(gen_ctx_t *g, pst_config_t *cfg);

static void gen_free(pst_gen_t *gen) {
  if (gen == NULL) return;
  if (gen->listeners != NULL) {
    for (size_t i = 0; i < gen->cfg->n_listeners; i++) {
      pst_gen_listener_t *gl = &gen->listeners[i];
      pst_tls_listener_free(gl);
      for (size_t j = 0; j < gl->n_certs; j++) pst_cert_free(gl->certs[j]);
      free(gl->certs);
      pst_sni_map_free(gl->sni);
      free(gl->sets);
      free(gl->client_ca_pem);
      pst_sni_map_free(gl->routes);
      pst_access_file_unref(gl->access_file);
      pst_ticket_src_put(gl->tickets); /* after the contexts that point to it */
    }
    free(gen->listeners);
  }
  pst_balance_detach(gen->cfg);
  for (size_t i = 0; i < gen->cfg->n_backends; i++) pst_tls_backend_free(gen->cfg->backends[i]);
  pst_config_free(gen->cfg);
  free(gen);
}

/* The listener's ticket keys: process-wide state that outlives this
 * generation (ticket.h), so that a reload keeps sessions resumable. */
static int gen_tickets(gen_ctx_t *g, pst_gen_listener_t *gl) {
  const pst_listener_conf_t *lc = gl->conf;
  char err[512];
  int rc = pst_ticket_src_get(lc->ticket_keys, lc->ticket_rotation_ms, lc->ticket_lifetime_ms,
                              &gl->tickets, err, sizeof(err));
  if (rc == -ENOMEM) return rc;
  if (rc != 0 && lc->ticket_keys != NULL) {
    gen_problem(g, PST_PROBLEM_ERROR, "%s:%d:%d: listeners[%zu].tls.ticket_keys: %s",
                GEN_AT(g, lc, lc->ticket_keys_mark), err);
  } else if (rc != 0) { /* no key of its own to point at: the listener's line */
    gen_problem(g, PST_PROBLEM_ERROR, "%s:%d:%d: listeners[%zu].tls: %s", GEN_AT(g, lc, lc->mark),
                err);
  }
  return 0;
}

/* tls.client_auth.ca_file: read once, checked whole (every block a
 * certificate wolfSSL can parse), kept for the contexts (tls.c). A broken
 * file is an error, so a reload keeps the generation that works. */
static int gen_client_ca(gen_ctx_t *g, pst_gen_listener_t *gl) {
  const pst_listener_conf_t *lc = gl->conf;
  if (lc->client_auth == PST_CLIENT_AUTH_NONE) return 0;
  char err[512];
  pst_trust_t *trust = NULL;
  int rc = pst_trust_load(lc->client_ca_file, &trust, err, sizeof(err));
  pst_trust_free(trust);
  if (rc == -ENOMEM) return rc;
  if (rc == 0) {
    rc = pst_cert_read_pem(lc->client_ca_file, &gl->client_ca_pem, &gl->client_ca_pem_len);
    if (rc == -ENOMEM) return rc;
    if (rc != 0)
      snprintf(err, sizeof(err), "%s: cannot read: %s", lc->client_ca_file, strerror(-rc));
  }
  if (rc != 0) {
    gen_problem(g, PST_PROBLEM_ERROR, "%s:%d:%d: listeners[%zu].tls.client_auth.ca_file: %s",
                GEN_AT(g, lc, lc->client_ca_file_mark), err);
  }
  return 0;
}

static int gen_build_listener(gen_ctx_t *g, pst_gen_listener_t *gl, time_t now) {
  const pst_listener_conf_t *lc = gl->conf;
  int rc = pst_access_file_open(lc->access_log, &gl->access_file);
  if (rc == -ENOMEM) return rc;
  if (rc != 0) { /* the listener's line: the config keeps no mark for the key */
    gen_problem(
        g, PST_PROBLEM_ERROR, "%s:%d:%d: listeners[%zu].access_log: cannot open \"%s\": %s%s",
        GEN_AT(g, lc, lc->mark), lc->access_log, pst_strerror(rc), pst_priv_hint(rc, "writable"));
  }
  rc = gen_load_certs(g, gl, now);
  if (rc != 0 || gl->n_certs == 0) return rc;
  if ((rc = gen_sni_map(g, gl)) != 0) return rc;
  if ((rc = gen_routes(g, gl)) != 0) return rc;
  if ((rc = gen_tickets(g, gl)) != 0) return rc;
  if ((rc = gen_client_ca(g, gl)) != 0) return rc;
  if (g->errors > 0) return 0; /* no contexts from certificates that failed checks */
  char err[512];
  rc = pst_tls_listener_init(gl, err, sizeof(err));
  if (rc == -ENOMEM) return rc;
  if (rc != 0) {
    gen_problem(g, PST_PROBLEM_ERROR, "%s:%d:%d: listeners[%zu].tls: %s", GEN_AT(g, lc, lc->mark),
                err);
    return 0;
  }
  return 0;
}

/* Whether addr is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x). */
static int gen_loopback(const pst_addr_t *addr) {
  if (addr->ss.ss_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)&addr->ss;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (addr->ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const void *)&addr->ss;
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
           (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
  }
  return 0;
}

/* The admin endpoint (admin.h) answers anyone who reaches it, in plain
 * HTTP: what it tells (listener names, certificate files and subjects,
 * traffic) is for the operator, so an address others can reach is worth a
 * warning at every load. */
static void gen_check_admin(gen_ctx_t *g, const pst_config_t *cfg) {
  if (!cfg->admin_on || gen_loopback(&cfg->admin_listen)) return;
  gen_problem(g, PST_PROBLEM_WARNING,
              "%s:%d:%d: admin.listen: %s is not a loopback address: anyone who can reach it "
              "reads the metrics (listener names, certificate files and subjects) over plain "
              "HTTP; use 127.0.0.1 or [::1], or restrict it with a firewall",
              cfg->path, cfg->admin_listen_mark.line, cfg->admin_listen_mark.column,
              cfg->admin_listen.text);
}

int pst_gen_build(pst_config_t *cfg, uint64_t number, time_t now, FILE *report, pst_gen_t **out,
                  unsigned *n_errors) {
  return pst_gen_check(cfg, number, now, report, 0, out, n_errors);
}

int pst_gen_check(pst_config_t *cfg, uint64_t number, time_t now, FILE *report, int verbose,
                  pst_gen_t **out, unsigned *n_errors) {
  gen_ctx_t g = {.report = report,
                 .verbose = verbose,
                 .errors = 0,
                 .file = cfg->path,
                 .listeners = cfg->listeners,
                 .warn_days = cfg->expiry_warn_days};
  pst_gen_t *gen = calloc(1, sizeof(*gen));
  if (gen == NULL) {
    pst_config_free(cfg);
    return -ENOMEM;
  }
  atomic_init(&gen->refs, 1);
  gen->number = number;
  gen->cfg = cfg;
  gen->listeners = calloc(cfg->n_listeners, sizeof(*gen->listeners));
  if (gen->listeners == NULL) {
    gen_free(gen);
    return -ENOMEM;
  }
  gen_check_admin(&g, cfg);
  int rc = 0;
  for (size_t i = 0; i < cfg->n_listeners && rc == 0; i++) {
    cfg->listeners[i].metrics_slot = pst_metrics_listener_slot(cfg->listeners[i].name);
    gen->listeners[i].conf = &cfg->listeners[i];
    rc = gen_build_listener(&g, &gen->listeners[i], now);
  }
  /* The backend sets' TLS contexts (a broken ca_file is an error here),
   * before the registry takes the checks' contexts. */
  if (rc == 0) gen_backend_tls(&g, cfg);
  if (n_errors != NULL) *n_errors = g.errors;
  if (rc == 0 && g.errors > 0) rc = PST_ECERT;
  /* Last, once nothing can fail the build: attaching configures the
   * registry's servers shared with the running generation (their checks). */
  if (rc == 0) rc = pst_balance_attach(cfg); /* the backend sets' servers and shared health */
  if (rc != 0) {
    gen_free(gen);
    return rc;
  }
  *out = gen;
  return 0;
}

/* The client contexts of the backend sets with tls: (tls.h), each error
 * at the set's tls: key; and verify: false, which trusts any server,
 * said at every load. */
static void gen_backend_tls(gen_ctx_t *g, pst_config_t *cfg) {
  for (size_t i = 0; i < cfg->n_backends; i++) {
    pst_backend_set_conf_t *set = cfg->backends[i];
    if (!set->tls) continue;
    char why[600];
    if (pst_tls_backend_init(set, why, sizeof(why)) != 0) {
      gen_problem(g, PST_PROBLEM_ERROR, "%s:%d:%d: backends.%s.tls: %s", g->file,
                  set->tls_mark.line, set->tls_mark.column, set->name, why);
      continue;
    }
    if (!set->tls_verify) {
      gen_problem(g, PST_PROBLEM_WARNING,
                  "%s:%d:%d: backends.%s.tls: verify: false: the servers' certificates are NOT "
                  "checked, so anyone on the path can impersonate them; use it for tests only, "
                  "and name their CA with tls.ca_file instead",
                  g->file, set->tls_mark.line, set->tls_mark.column, set->name);
    }
  }
}

pst_gen_t *pst_gen_ref(pst_gen_t *gen) {
  atomic_fetch_add_explicit(&gen->refs, 1, memory_order_relaxed);
  return gen;
}

void pst_gen_unref(pst_gen_t *gen) {
  if (gen == NULL) return;
  unsigned prev = atomic_fetch_sub_explicit(&gen->refs, 1, memory_order_acq_rel);
  assert(prev > 0); /* one unref too many */
  if (prev == 1) gen_free(gen);
}

size_t pst_gen_n_certs(const pst_gen_t *gen) {
  size_t n = 0;
  for (size_t i = 0; i < gen->cfg->n_listeners; i++) n += gen->listeners[i].n_certs;
  return n;
}

/* The daily line of a leaf that expired or expires soon: each one in a
 * listener of at most PST_CERT_TALLY_ABOVE certificates, else the first
 * PST_CERT_TALLY_EACH of each kind and a count of the rest (gen_expiry_more). */
static void gen_expiry_line(const pst_cert_t *cert, double left) {
  const pst_cert_info_t *leaf = &cert->chain[0];
  char when[32];
  struct tm tm;
  gmtime_r(&leaf->not_after, &tm);
  strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
  if (left < 0) {
    pst_log_error("%s: certificate %s expired on %s: clients reject it; renew it, then reload",
                  cert->cert_path, leaf->subject, when);
  } else {
    long days = (long)(left / 86400.0);
    pst_log_warn("%s: certificate %s expires on %s (in %ld days): renew it, then reload",
                 cert->cert_path, leaf->subject, when, days);
  }
}

static void gen_expiry_more(const pst_gen_listener_t *gl, size_t expired, size_t soon,
                            unsigned warn_days) {
  if (expired > PST_CERT_TALLY_EACH) {
    pst_log_error(
        "listener %s: %zu more certificates have expired: clients reject them; renew "
        "them, then reload (`postern -t --verbose -c FILE` lists all)",
        gl->conf->name, expired - PST_CERT_TALLY_EACH);
  }
  if (soon > PST_CERT_TALLY_EACH) {
    pst_log_warn(
        "listener %s: %zu more certificates expire within %u days: renew them, then "
        "reload (`postern -t --verbose -c FILE` lists all)",
        gl->conf->name, soon - PST_CERT_TALLY_EACH, warn_days);
  }
}

unsigned pst_gen_log_expiry(const pst_gen_t *gen, time_t now) {
  unsigned n = 0;
  const pst_config_t *cfg = gen->cfg;
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const pst_gen_listener_t *gl = &gen->listeners[i];
    int each = gl->n_certs <= PST_CERT_TALLY_ABOVE;
    size_t expired = 0, soon = 0;
    for (size_t j = 0; j < gl->n_certs; j++) {
      const pst_cert_t *cert = gl->certs[j];
      if (cert->chain_len == 0) continue;
      double left = difftime(cert->chain[0].not_after, now);
      if (left >= (double)cfg->expiry_warn_days * 86400.0) continue;
      size_t seen = left < 0 ? ++expired : ++soon;
      if (each || seen <= PST_CERT_TALLY_EACH) gen_expiry_line(cert, left);
      n++;
    }
    if (!each) gen_expiry_more(gl, expired, soon, cfg->expiry_warn_days);
  }
  return n;
}
