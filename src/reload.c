/* postern: the reload transaction. See include/postern/reload.h.
 *
 * Threads: requests, the commit and the log lines run on the main loop;
 * reading the configuration, loading and checking certificates and making the
 * TLS contexts (tens of milliseconds, blocking file reads and getaddrinfo)
 * run on libuv's thread pool, never on a worker's loop; each worker puts the
 * new generation in place on its own thread and says so through an async
 * handle. One reload at a time: the next starts only when every worker has
 * switched, so a switch never meets a worker still on the one before.
 *
 * All or nothing (as in hitch): everything that can fail (the file, every
 * certificate, the TLS contexts, binding new listeners, memory for the
 * switches) happens before the commit; after it nothing can fail, and the
 * old generation stays whole until its last connection closes. */
#include "postern/reload.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "postern/cert.h"
#include "postern/common.h"
#include "postern/config.h"
#include "postern/gen.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/notify.h"
#include "postern/ticket.h"
#include "postern/watch.h"
#include "postern/worker.h"

#define DAY_MS (24ull * 3600 * 1000)

/* The build thread's nice value (reload_thread). */
#define RELOAD_NICE 10

typedef enum {
  RELOAD_IDLE = 0,      /* serving r->gen, nothing in flight */
  RELOAD_BUILDING = 1,  /* a job reads and checks the configuration on its own thread */
  RELOAD_SWITCHING = 2, /* committed: waiting for every worker to take the new generation */
  RELOAD_STOPPED = 3,   /* shutting down: no more reloads, handles closed */
} reload_state_t;

/* One reload attempt. The job fields are written on the build thread, then
 * read on the main loop once r->built says it ended (uv_async_send and the
 * thread's join order the two). */
typedef struct {
  uv_thread_t thread;
  pst_reload_t *r;
  const pst_gen_t *old; /* r->gen, which stays put while a job is in flight */
  uint64_t number;
  char why[256];
  uint64_t t_start_ns;
  /* results */
  int rc;            /* 0, PST_ECONFIG (err), PST_ECERT/PST_ETLS (logged), -ENOMEM */
  char err[4096];    /* pst_config_load's one line */
  unsigned n_errors; /* errors pst_gen_build logged */
  pst_gen_t *gen;    /* the new generation (one reference) when rc == 0 */
  long *keep;        /* pst_reload_match for gen */
  char changes[2048];
  pst_watch_files_t files; /* the config file, then what it names (when parsed) */
  int parsed;
  int ticket_failed; /* rc came from re-reading a ticket key file (err says why) */
  double build_ms;   /* from the request to a checked generation */
} reload_job_t;

struct pst_reload_s {
  uv_loop_t *loop;
  char *config_path;
  pst_gen_t *gen; /* the running generation (one reference) */
  pst_worker_t *workers;
  unsigned n_workers;
  reload_state_t state;
  int again; /* a request came while busy: one more reload after this one */
  char again_why[256];
  uint64_t failed;  /* failed reloads since start */
  time_t last_time; /* when the last attempt ended (start-up before any) */
  int last_ok;      /* whether it succeeded */
  void (*on_switched)(void *arg, const pst_gen_t *gen); /* pst_reload_on_switched */
  void *on_switched_arg;
  reload_job_t *job;   /* in flight while BUILDING or SWITCHING */
  uv_async_t switched; /* a worker took the new generation */
  uv_async_t built;    /* the build thread of r->job ended */
  int built_closing;   /* stopped: built is closed once no build thread runs */
  uv_mutex_t lock;     /* n_switched and switched_closed, shared with workers */
  unsigned n_switched;
  int switched_closed;
  uv_timer_t daily;        /* the daily expiry warning */
  pst_watch_t *watch;      /* NULL unless `watch: true` */
  pst_watch_files_t files; /* what the running generation was read from */
};

/* ---- pure parts ---- */

size_t pst_reload_match(const pst_config_t *old_cfg, const pst_config_t *new_cfg, long *keep) {
  size_t kept = 0;
  for (size_t i = 0; i < new_cfg->n_listeners; i++) {
    keep[i] = -1;
    for (size_t j = 0; j < old_cfg->n_listeners; j++) {
      if (pst_addr_equal(&new_cfg->listeners[i].listen, &old_cfg->listeners[j].listen)) {
        keep[i] = (long)j;
        kept++;
        break;
      }
    }
  }
  return kept;
}

/* A "; "-separated list written into a fixed buffer, cut with "...". */
typedef struct {
  char *buf;
  size_t len;
  size_t off;
  size_t items;
} out_t;

static void out_add(out_t *o, const char *sep, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void out_add(out_t *o, const char *sep, const char *fmt, ...) {
  if (o->off + 1 >= o->len) return;
  if (o->items++ > 0) {
    int n = snprintf(o->buf + o->off, o->len - o->off, "%s", sep);
    o->off += (size_t)n < o->len - o->off ? (size_t)n : o->len - o->off - 1;
  }
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(o->buf + o->off, o->len - o->off, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= o->len - o->off) {
    o->off = o->len - 1;
    if (o->len >= 4) memcpy(o->buf + o->len - 4, "...", 4);
    return;
  }
  o->off += (size_t)n;
}

static const char *fmt_ms(uint64_t ms, char *buf, size_t len) {
  if (ms != 0 && ms % 3600000 == 0)
    snprintf(buf, len, "%lluh", (unsigned long long)(ms / 3600000));
  else if (ms != 0 && ms % 60000 == 0)
    snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
  else if (ms % 1000 == 0)
    snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
  else
    snprintf(buf, len, "%llums", (unsigned long long)ms);
  return buf;
}

static int str_same(const char *a, const char *b) {
  if (a == NULL || b == NULL) return a == b;
  return strcmp(a, b) == 0;
}

static int bytes_same(const unsigned char *a, size_t al, const unsigned char *b, size_t bl) {
  return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

static int backend_same(const pst_backend_conf_t *a, const pst_backend_conf_t *b) {
  return a->kind == b->kind && strcmp(a->addr.text, b->addr.text) == 0;
}

static int routes_same(const pst_listener_conf_t *a, const pst_listener_conf_t *b) {
  if (a->n_routes != b->n_routes) return 0;
  for (size_t i = 0; i < a->n_routes; i++) {
    const pst_route_conf_t *x = &a->routes[i], *y = &b->routes[i];
    if (x->n_names != y->n_names || !backend_same(&x->backend, &y->backend)) return 0;
    for (size_t k = 0; k < x->n_names; k++) {
      if (strcmp(x->names[k], y->names[k]) != 0) return 0;
    }
  }
  return 1;
}

/* The settings of a kept listener that changed, by key name. Certificates
 * are described on their own (describe_certs). */
static void describe_settings(out_t *o, const pst_listener_conf_t *a,
                              const pst_listener_conf_t *b) {
  char buf[512];
  out_t keys = {buf, sizeof(buf), 0, 0};
  buf[0] = '\0';
  if (strcmp(a->name, b->name) != 0) out_add(&keys, ", ", "name (was %s)", a->name);
  if (a->mode != b->mode) out_add(&keys, ", ", "mode");
  if (!bytes_same(a->alpn_wire, a->alpn_wire_len, b->alpn_wire, b->alpn_wire_len))
    out_add(&keys, ", ", "alpn");
  if (a->versions != b->versions) out_add(&keys, ", ", "tls.versions");
  if (!str_same(a->default_certificate, b->default_certificate))
    out_add(&keys, ", ", "tls.default_certificate");
  if (a->unknown_sni != b->unknown_sni) out_add(&keys, ", ", "tls.unknown_sni");
  if (!str_same(a->ca_file, b->ca_file)) out_add(&keys, ", ", "tls.ca_file");
  if (!str_same(a->intermediates, b->intermediates)) out_add(&keys, ", ", "tls.intermediates");
  if (a->n_groups != b->n_groups ||
      memcmp(a->groups, b->groups, a->n_groups * sizeof(a->groups[0])) != 0)
    out_add(&keys, ", ", "tls.groups");
  if (a->client_auth != b->client_auth || !str_same(a->client_ca_file, b->client_ca_file) ||
      a->client_cert_forward != b->client_cert_forward)
    out_add(&keys, ", ", "tls.client_auth");
  if (a->session_tickets != b->session_tickets || !str_same(a->ticket_keys, b->ticket_keys) ||
      a->ticket_rotation_ms != b->ticket_rotation_ms ||
      a->ticket_lifetime_ms != b->ticket_lifetime_ms)
    out_add(&keys, ", ", "tls session tickets");
  if (!backend_same(&a->backend, &b->backend)) out_add(&keys, ", ", "backend");
  if (!routes_same(a, b)) out_add(&keys, ", ", "routes");
  if (a->handshake_timeout_ms != b->handshake_timeout_ms ||
      a->idle_timeout_ms != b->idle_timeout_ms ||
      a->request_head_timeout_ms != b->request_head_timeout_ms ||
      a->backend_connect_timeout_ms != b->backend_connect_timeout_ms)
    out_add(&keys, ", ", "timeouts");
  if (a->max_connections != b->max_connections)
    out_add(&keys, ", ", "max_connections %u (was %u)", b->max_connections, a->max_connections);
  if (a->max_handshakes_in_flight != b->max_handshakes_in_flight)
    out_add(&keys, ", ", "max_handshakes_in_flight %u (was %u)", b->max_handshakes_in_flight,
            a->max_handshakes_in_flight);
  if (keys.items > 0) out_add(o, ", ", "settings changed: %s", buf);
}

static const char *leaf_serial(const pst_cert_t *c) {
  return c->chain_len > 0 && c->chain[0].serial_hex != NULL ? c->chain[0].serial_hex : "?";
}

/* The certificate of gl whose chain file is path, or NULL; the one at
 * position hint is tried first: a list that did not change keeps its
 * order, and 10,000 certificates compared each with all took seconds. */
static const pst_cert_t *cert_at_path(const pst_gen_listener_t *gl, size_t hint, const char *path) {
  if (hint < gl->n_certs && strcmp(gl->certs[hint]->cert_path, path) == 0) return gl->certs[hint];
  for (size_t j = 0; j < gl->n_certs; j++) {
    if (strcmp(gl->certs[j]->cert_path, path) == 0) return gl->certs[j];
  }
  return NULL;
}

/* Certificates of a kept listener, matched by the path of their chain file:
 * the usual renewal rewrites the same file. */
static void describe_certs(out_t *o, const pst_gen_listener_t *a, const pst_gen_listener_t *b) {
  for (size_t k = 0; k < b->n_certs; k++) {
    const pst_cert_t *nc = b->certs[k], *oc = cert_at_path(a, k, nc->cert_path);
    if (oc == NULL) {
      out_add(o, ", ", "certificate %s added (%s)", nc->cert_path,
              nc->n_names > 0 ? nc->names[0] : "no name");
    } else if (!bytes_same(oc->chain_pem, oc->chain_pem_len, nc->chain_pem, nc->chain_pem_len)) {
      out_add(o, ", ", "certificate %s replaced (serial %s, was %s)", nc->cert_path,
              leaf_serial(nc), leaf_serial(oc));
    } else if (!bytes_same(oc->key_pem, oc->key_pem_len, nc->key_pem, nc->key_pem_len)) {
      out_add(o, ", ", "key %s replaced", nc->key_path);
    }
    if (oc != NULL && (oc->staple_state != nc->staple_state ||
                       !bytes_same(oc->staple, oc->staple_len, nc->staple, nc->staple_len))) {
      /* A refreshed OCSP response (cert_ocsp.c): what is stapled now. */
      out_add(o, ", ", "OCSP response of %s: %s", nc->cert_path, pst_cert_staple_desc(nc));
    }
  }
  for (size_t j = 0; j < a->n_certs; j++) {
    if (cert_at_path(b, j, a->certs[j]->cert_path) == NULL)
      out_add(o, ", ", "certificate %s removed", a->certs[j]->cert_path);
  }
}

static const pst_backend_set_conf_t *set_named(const pst_config_t *c, const char *name) {
  for (size_t i = 0; i < c->n_backends; i++) {
    if (!c->backends[i]->inline_set && strcmp(c->backends[i]->name, name) == 0) {
      return c->backends[i];
    }
  }
  return NULL;
}

static const pst_server_conf_t *server_in(const pst_backend_set_conf_t *s, const char *text) {
  for (size_t i = 0; i < s->n_servers; i++) {
    if (strcmp(s->servers[i].addr.text, text) == 0) return &s->servers[i];
  }
  return NULL;
}

/* One named backend set kept by the reload: its servers added, removed,
 * re-weighted, and whether anything else of it changed. */
static void describe_set(out_t *o, const pst_backend_set_conf_t *x,
                         const pst_backend_set_conf_t *y) {
  char buf[768];
  out_t one = {buf, sizeof(buf), 0, 0};
  buf[0] = '\0';
  for (size_t i = 0; i < y->n_servers; i++) {
    const pst_server_conf_t *was = server_in(x, y->servers[i].addr.text);
    if (was == NULL) {
      out_add(&one, ", ", "server %s added", y->servers[i].addr.text);
    } else if (was->weight != y->servers[i].weight) {
      out_add(&one, ", ", "server %s weight %u (was %u)", y->servers[i].addr.text,
              y->servers[i].weight, was->weight);
    }
  }
  for (size_t i = 0; i < x->n_servers; i++) {
    if (server_in(y, x->servers[i].addr.text) == NULL) {
      out_add(&one, ", ", "server %s removed", x->servers[i].addr.text);
    }
  }
  if (x->balance != y->balance || x->check != y->check || !str_same(x->check_path, y->check_path) ||
      x->check_interval_ms != y->check_interval_ms || x->check_timeout_ms != y->check_timeout_ms ||
      x->rise != y->rise || x->fall != y->fall || x->passive_failures != y->passive_failures ||
      x->passive_cooldown_ms != y->passive_cooldown_ms || x->retries != y->retries ||
      x->proxy_protocol != y->proxy_protocol) {
    out_add(&one, ", ", "settings changed");
  }
  if (one.items > 0) out_add(o, "; ", "backend %s: %s", y->name, buf);
}

static void describe_backends(out_t *o, const pst_config_t *a, const pst_config_t *b) {
  for (size_t i = 0; i < b->n_backends; i++) {
    const pst_backend_set_conf_t *y = b->backends[i], *x;
    if (y->inline_set) continue; /* a listener's backend key says it */
    x = set_named(a, y->name);
    if (x == NULL) {
      out_add(o, "; ", "backend %s added", y->name);
    } else {
      describe_set(o, x, y);
    }
  }
  for (size_t i = 0; i < a->n_backends; i++) {
    if (!a->backends[i]->inline_set && set_named(b, a->backends[i]->name) == NULL) {
      out_add(o, "; ", "backend %s removed", a->backends[i]->name);
    }
  }
}

static void describe_top(out_t *o, const pst_config_t *a, const pst_config_t *b,
                         unsigned running_workers) {
  static const char *const levels[] = {"error", "warn", "info", "debug"};
  char x[32], y[32];
  if (b->workers != running_workers) {
    out_add(o, "; ", "workers %u (running %u: takes effect at the next start)", b->workers,
            running_workers);
  }
  if (a->log_level != b->log_level) {
    out_add(o, "; ", "log_level %s (was %s)", levels[b->log_level & 3], levels[a->log_level & 3]);
  }
  if (a->shutdown_timeout_ms != b->shutdown_timeout_ms) {
    out_add(o, "; ", "shutdown_timeout %s (was %s)", fmt_ms(b->shutdown_timeout_ms, x, sizeof(x)),
            fmt_ms(a->shutdown_timeout_ms, y, sizeof(y)));
  }
  if (a->expiry_warn_days != b->expiry_warn_days) {
    out_add(o, "; ", "expiry_warn_days %u (was %u)", b->expiry_warn_days, a->expiry_warn_days);
  }
  if (a->watch != b->watch) out_add(o, "; ", "watch %s", b->watch ? "on" : "off");
  if (a->log_format != b->log_format) {
    out_add(o, "; ", "log_format %s", b->log_format == PST_LOG_JSON ? "json" : "text");
  }
  if (!str_same(a->user, b->user) || !str_same(a->group, b->group)) {
    /* Who postern runs as is settled at start: root is gone by now. */
    out_add(o, "; ", "user/group %s/%s (takes effect at the next start)",
            b->user != NULL ? b->user : "-", b->group != NULL ? b->group : "-");
  }
  if (a->watch_debounce_ms != b->watch_debounce_ms) {
    out_add(o, "; ", "watch_debounce %s (was %s)", fmt_ms(b->watch_debounce_ms, x, sizeof(x)),
            fmt_ms(a->watch_debounce_ms, y, sizeof(y)));
  }
}

const char *pst_reload_describe(const pst_gen_t *old_gen, const pst_gen_t *new_gen,
                                const long *keep, char *buf, size_t len) {
  const pst_config_t *a = old_gen->cfg, *b = new_gen->cfg;
  out_t o = {buf, len, 0, 0};
  if (len == 0) return buf;
  buf[0] = '\0';
  for (size_t i = 0; i < b->n_listeners; i++) {
    const pst_listener_conf_t *nl = &b->listeners[i];
    if (keep[i] < 0) {
      out_add(&o, "; ", "listener %s added on %s", nl->name, nl->listen.text);
      continue;
    }
    const pst_gen_listener_t *ogl = &old_gen->listeners[keep[i]];
    char item[1536];
    out_t one = {item, sizeof(item), 0, 0};
    item[0] = '\0';
    describe_certs(&one, ogl, &new_gen->listeners[i]);
    describe_settings(&one, ogl->conf, nl);
    if (one.items > 0) out_add(&o, "; ", "listener %s: %s", nl->name, item);
  }
  for (size_t j = 0; j < a->n_listeners; j++) {
    int kept = 0;
    for (size_t i = 0; i < b->n_listeners && !kept; i++) kept = keep[i] == (long)j;
    if (!kept) {
      out_add(&o, "; ", "listener %s removed from %s (its connections drain)", a->listeners[j].name,
              a->listeners[j].listen.text);
    }
  }
  describe_backends(&o, a, b);
  describe_top(&o, a, b, a->workers);
  if (o.items == 0) snprintf(buf, len, "nothing changed");
  return buf;
}

/* ---- the job, on the thread pool ---- */

static double job_ms(const reload_job_t *job) {
  return (double)(uv_hrtime() - job->t_start_ns) / 1e6;
}

static void reload_work(reload_job_t *job) {
  const char *path = job->r->config_path;
  /* Identities before reading, so that a write racing the read is seen as
   * a change by the next check. */
  if (pst_watch_files_add(&job->files, path, NULL) != 0) {
    job->rc = -ENOMEM;
    return;
  }
  pst_config_t *cfg = NULL;
  job->rc = pst_config_load(path, &cfg, job->err, sizeof(job->err));
  if (job->rc != 0) return;
  job->parsed = 1;
  if (pst_watch_files_add_config(&job->files, cfg) != 0) {
    pst_config_free(cfg);
    job->rc = -ENOMEM;
    return;
  }
  job->rc = pst_gen_build(cfg, job->number, time(NULL), NULL, &job->gen, &job->n_errors);
  if (job->rc != 0) return;
  /* Ticket keys are process-wide and outlive generations (ticket.h): a key
   * file already in use is read again here, last, all files or none, so that
   * a failure leaves the running keys as they were. (A bind failure at the
   * commit can still follow; the new keys are valid ones then.) */
  job->rc = pst_ticket_keys_reload_all(job->err, sizeof(job->err));
  if (job->rc != 0) {
    job->ticket_failed = 1;
    return;
  }
  job->keep = calloc(job->gen->cfg->n_listeners + 1, sizeof(*job->keep));
  if (job->keep == NULL) {
    job->rc = -ENOMEM;
    return;
  }
  pst_reload_match(job->old->cfg, job->gen->cfg, job->keep);
  pst_reload_describe(job->old, job->gen, job->keep, job->changes, sizeof(job->changes));
  job->build_ms = job_ms(job);
}

/* The build thread. A build reads and checks every certificate (seconds
 * with thousands of them) while the workers serve: at nice RELOAD_NICE
 * the scheduler gives it what the workers leave, about a tenth of a core
 * against one busy worker (CFS weights 110 against 1024), so that a reload
 * under load slows down instead of the handshakes (issue 17: p99 during a
 * reload). A thread of its own, not libuv's pool: lowering a thread's
 * priority cannot be undone without privilege, and the pool's threads also
 * write the access logs. */
static void reload_thread(void *arg) {
  reload_job_t *job = arg;
  (void)pthread_setname_np(pthread_self(), "pst-reload");
  (void)setpriority(PRIO_PROCESS, (id_t)gettid(), RELOAD_NICE);
  reload_work(job);
  uv_async_send(&job->r->built);
}

static void job_free(reload_job_t *job) {
  if (job == NULL) return;
  pst_gen_unref(job->gen);
  free(job->keep);
  pst_watch_files_free(&job->files);
  free(job);
}

/* ---- on the main loop ---- */

/* Keeps why for the log, cut to fit (a long path in "watch: PATH changed"). */
static void copy_why(char *dst, size_t size, const char *why) {
  size_t n = strnlen(why, size - 1);
  memcpy(dst, why, n);
  dst[n] = '\0';
}

static void reload_begin(pst_reload_t *r, const char *why);
static void reload_on_watch(void *arg, const char *path);

/* The file watch follows the configuration: started, stopped, or given the
 * files the last attempt read (those of a failed attempt too, so that fixing
 * a file it named brings the next reload). */
static void reload_update_watch(pst_reload_t *r, pst_watch_files_t *files) {
  const pst_config_t *cfg = r->gen->cfg;
  if (!cfg->watch) {
    if (r->watch != NULL) {
      pst_watch_close(r->watch);
      r->watch = NULL;
      pst_log_info("watch: off");
    }
    return;
  }
  if (r->watch == NULL) {
    int rc = pst_watch_new(r->loop, cfg->watch_debounce_ms, reload_on_watch, r, &r->watch);
    if (rc != 0) {
      pst_log_error("watch: cannot watch files: %s; reload with SIGHUP", pst_strerror(rc));
      return;
    }
    pst_log_info("watch: on: %zu files, debounce %llu ms", files->n,
                 (unsigned long long)cfg->watch_debounce_ms);
  }
  pst_watch_files_t copy = {0};
  for (size_t i = 0; i < files->n; i++) {
    if (pst_watch_files_add(&copy, files->paths[i], &files->ids[i]) != 0) break;
  }
  pst_watch_set(r->watch, &copy, cfg->watch_debounce_ms);
}

/* Gives the memory of a generation just freed back to the system. The
 * build ran on a thread of its own, whose malloc arena is not the one the
 * next build (another thread) allocates from: without this, RSS
 * grew by a whole generation at every reload (84 MiB with 10,000
 * certificates) although everything was freed. Main thread, once per
 * reload: malloc_trim walks every arena, a few ms. */
static void reload_trim(void) { malloc_trim(0); }

static void reload_next(pst_reload_t *r) {
  r->state = RELOAD_IDLE;
  if (r->again) {
    r->again = 0;
    reload_begin(r, r->again_why);
  }
}

static void reload_fail(pst_reload_t *r, reload_job_t *job, const char *cause) {
  r->failed++;
  r->last_time = time(NULL);
  r->last_ok = 0;
  pst_metrics_reload(0);
  pst_log_error("reload failed (%s): %s; still serving generation %llu (failed reloads: %llu)",
                job->why, cause, (unsigned long long)r->gen->number, (unsigned long long)r->failed);
  /* The running generation never stopped serving: the manager hears the
   * refusal and that postern is ready again, in one message. */
  char status[4096];
  snprintf(status, sizeof(status), "reload refused: %s; serving generation %llu", cause,
           (unsigned long long)r->gen->number);
  pst_notify_status("READY=1\n", status);
  /* An attempt that did not get past the file keeps watching what the
   * running generation was read from, with the config file as now seen. */
  if (!job->parsed) {
    for (size_t i = 0; i < r->files.n; i++) {
      if (pst_watch_files_add(&job->files, r->files.paths[i], &r->files.ids[i]) != 0) break;
    }
  }
  reload_update_watch(r, &job->files);
  job_free(job);
  r->job = NULL;
  reload_trim(); /* the refused generation */
  reload_next(r);
}

static void reload_on_switched_async(uv_async_t *a) {
  pst_reload_t *r = PST_CONTAINER_OF(a, pst_reload_t, switched);
  uv_mutex_lock(&r->lock);
  unsigned n = r->n_switched;
  uv_mutex_unlock(&r->lock);
  if (r->state != RELOAD_SWITCHING || n < r->n_workers) return;
  reload_job_t *job = r->job;
  size_t n_certs = pst_gen_n_certs(r->gen);
  pst_metrics_reload(1);
  pst_log_info(
      "reload ok (%s): generation %llu, %zu certificate%s, built in %.1f ms, "
      "switched in %.1f ms; %s",
      job->why, (unsigned long long)r->gen->number, n_certs, n_certs == 1 ? "" : "s", job->build_ms,
      job_ms(job) - job->build_ms, job->changes);
  pst_reload_notify_ready(r);
  r->last_time = time(NULL);
  r->last_ok = 1;
  job_free(job);
  r->job = NULL;
  reload_trim(); /* the old generation, once no connection holds it */
  if (r->on_switched != NULL) r->on_switched(r->on_switched_arg, r->gen);
  reload_next(r);
}

/* Runs on a worker's thread. */
static void reload_on_switched(void *arg) {
  pst_reload_t *r = arg;
  uv_mutex_lock(&r->lock);
  r->n_switched++;
  if (!r->switched_closed) uv_async_send(&r->switched);
  uv_mutex_unlock(&r->lock);
}

/* Writes why listener i of cfg cannot listen into cause. */
static void reload_listen_error(const pst_config_t *cfg, size_t i, int err, char *cause,
                                size_t len) {
  const pst_listener_conf_t *lc = &cfg->listeners[i];
  snprintf(cause, len, "%s:%d:%d: listeners[%zu].listen: listener \"%s\" cannot listen on %s: %s%s",
           cfg->path, lc->listen_mark.line, lc->listen_mark.column, i, lc->name, lc->listen.text,
           pst_strerror(err),
           err == -EADDRINUSE ? " (another process listens there; a new listener cannot share "
                                "a port with a running one on an overlapping address either)"
                              : "");
}

/* Binds every worker's socket for each new listener (the first socket on
 * an address the kernel refuses fails the reload, with nothing changed).
 * Each new address is probed first (pst_listen_probe): another process
 * listening there fails the reload rather than sharing the port. Kept
 * listeners are not probed: their sockets are postern's own.
 * fds: n_workers rows of n listeners, -1 where keep[i] >= 0. */
static int reload_bind(pst_reload_t *r, reload_job_t *job, int *fds, char *cause, size_t len) {
  const pst_config_t *cfg = job->gen->cfg;
  size_t n = cfg->n_listeners;
  for (size_t k = 0; k < (size_t)r->n_workers * n; k++) fds[k] = -1;
  for (size_t i = 0; i < n; i++) {
    if (job->keep[i] >= 0) continue;
    int rc = pst_listen_probe(&cfg->listeners[i].listen);
    if (rc != 0) {
      reload_listen_error(cfg, i, rc, cause, len);
      return rc;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (job->keep[i] >= 0) continue;
    for (unsigned w = 0; w < r->n_workers; w++) {
      int fd = pst_listen_socket(&cfg->listeners[i].listen);
      if (fd < 0) {
        reload_listen_error(cfg, i, fd, cause, len);
        for (size_t k = 0; k < (size_t)r->n_workers * n; k++) {
          if (fds[k] >= 0) close(fds[k]);
        }
        return fd;
      }
      fds[(size_t)w * n + i] = fd;
    }
  }
  return 0;
}

/* Everything that can fail is done: put the new generation in place. */
static void reload_commit(pst_reload_t *r, reload_job_t *job) {
  size_t n = job->gen->cfg->n_listeners;
  char cause[1024];
  int *fds = malloc(sizeof(int) * ((size_t)r->n_workers * n + 1));
  pst_worker_switch_t **sw = calloc(r->n_workers, sizeof(*sw));
  if (fds == NULL || sw == NULL) {
    free(fds);
    free(sw);
    reload_fail(r, job, "out of memory");
    return;
  }
  if (reload_bind(r, job, fds, cause, sizeof(cause)) != 0) {
    free(fds);
    free(sw);
    reload_fail(r, job, cause);
    return;
  }
  for (unsigned w = 0; w < r->n_workers; w++) {
    sw[w] = pst_worker_switch_new(job->gen, job->keep, &fds[(size_t)w * n]);
    if (sw[w] != NULL) continue;
    for (unsigned v = 0; v < w; v++) pst_worker_switch_free(sw[v]);
    for (size_t k = (size_t)w * n; k < (size_t)r->n_workers * n; k++) {
      if (fds[k] >= 0) close(fds[k]);
    }
    free(fds);
    free(sw);
    reload_fail(r, job, "out of memory");
    return;
  }
  free(fds);
  /* The commit: nothing below can fail. */
  pst_gen_t *old = r->gen;
  r->gen = job->gen;
  job->gen = NULL;
  pst_gen_unref(old); /* freed once the workers and its connections let go */
  pst_log_set_level(r->gen->cfg->log_level);
  pst_log_set_format(r->gen->cfg->log_format);
  pst_watch_files_free(&r->files);
  r->files = job->files;
  memset(&job->files, 0, sizeof(job->files));
  reload_update_watch(r, &r->files);
  uv_mutex_lock(&r->lock);
  r->n_switched = 0;
  uv_mutex_unlock(&r->lock);
  r->state = RELOAD_SWITCHING;
  for (unsigned w = 0; w < r->n_workers; w++) {
    pst_worker_switch(&r->workers[w], sw[w], reload_on_switched, r);
  }
  free(sw);
}

static void reload_on_built(uv_async_t *a) {
  pst_reload_t *r = PST_CONTAINER_OF(a, pst_reload_t, built);
  reload_job_t *job = r->job;
  if (job == NULL || (r->state != RELOAD_BUILDING && r->state != RELOAD_STOPPED)) return;
  uv_thread_join(&job->thread);
  if (r->state == RELOAD_STOPPED) {
    job_free(job); /* shutting down: the workers drain on the old generation */
    r->job = NULL;
    if (r->built_closing) uv_close((uv_handle_t *)&r->built, NULL);
    return;
  }
  char cause[4600];
  switch (job->rc) {
    case 0: reload_commit(r, job); return;
    case PST_ECONFIG:
      if (job->ticket_failed || !job->parsed) {
        snprintf(cause, sizeof(cause), "%s", job->err);
      } else {
        snprintf(cause, sizeof(cause), "the configuration has an error (logged above)");
      }
      break;
    case -ENOMEM: snprintf(cause, sizeof(cause), "out of memory"); break;
    default:
      snprintf(cause, sizeof(cause),
               "%u error%s in the certificates (logged above; `postern "
               "-t --verbose -c %s` shows every certificate)",
               job->n_errors, job->n_errors == 1 ? "" : "s", r->config_path);
      break;
  }
  reload_fail(r, job, cause);
}

static void reload_begin(pst_reload_t *r, const char *why) {
  reload_job_t *job = calloc(1, sizeof(*job));
  if (job == NULL) {
    r->failed++;
    r->last_time = time(NULL);
    r->last_ok = 0;
    pst_metrics_reload(0);
    pst_log_error("reload failed (%s): out of memory; still serving generation %llu", why,
                  (unsigned long long)r->gen->number);
    return;
  }
  job->r = r;
  job->old = r->gen;
  job->number = r->gen->number + 1;
  job->t_start_ns = uv_hrtime();
  copy_why(job->why, sizeof(job->why), why);
  pst_log_info("reload (%s): reading %s", why, r->config_path);
  /* systemd tells one reload from the next by MONOTONIC_USEC; it waits for
   * READY=1 (reload_fail or the last worker's switch) before it calls the
   * reload done. */
  char state[96], status[300];
  snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu\n",
           (unsigned long long)pst_notify_monotonic_usec());
  snprintf(status, sizeof(status), "reloading (%s)", job->why);
  pst_notify_status(state, status);
  r->job = job;
  r->state = RELOAD_BUILDING;
  int rc = uv_thread_create(&job->thread, reload_thread, job);
  if (rc != 0) {
    r->job = NULL;
    r->state = RELOAD_IDLE;
    reload_fail(r, job, uv_strerror(rc));
  }
}

void pst_reload_request(pst_reload_t *r, const char *why) {
  switch (r->state) {
    case RELOAD_STOPPED: pst_log_info("%s: shutting down: no reload", why); return;
    case RELOAD_BUILDING:
    case RELOAD_SWITCHING:
      if (!r->again) pst_log_info("%s: a reload is in progress: one more follows it", why);
      r->again = 1;
      copy_why(r->again_why, sizeof(r->again_why), why);
      return;
    case RELOAD_IDLE: reload_begin(r, why); return;
  }
}

static void reload_on_watch(void *arg, const char *path) {
  pst_reload_t *r = arg;
  char why[300];
  snprintf(why, sizeof(why), "watch: %s changed", path);
  pst_reload_request(r, why);
}

/* A leaf expires while postern runs too: say so once a day. */
static void reload_on_daily(uv_timer_t *t) {
  pst_reload_t *r = PST_CONTAINER_OF(t, pst_reload_t, daily);
  pst_gen_log_expiry(r->gen, time(NULL));
}

int pst_reload_start(uv_loop_t *loop, const char *config_path, pst_gen_t *gen,
                     pst_worker_t *workers, unsigned n_workers, pst_reload_t **out) {
  pst_reload_t *r = calloc(1, sizeof(*r));
  if (r == NULL) return -ENOMEM;
  r->config_path = strdup(config_path);
  if (r->config_path == NULL || pst_watch_files_add(&r->files, config_path, NULL) != 0 ||
      pst_watch_files_add_config(&r->files, gen->cfg) != 0) {
    pst_watch_files_free(&r->files);
    free(r->config_path);
    free(r);
    return -ENOMEM;
  }
  r->loop = loop;
  r->gen = gen;
  r->workers = workers;
  r->n_workers = n_workers;
  r->state = RELOAD_IDLE;
  r->last_time = time(NULL);
  r->last_ok = 1;
  uv_mutex_init(&r->lock);
  uv_async_init(loop, &r->switched, reload_on_switched_async);
  uv_async_init(loop, &r->built, reload_on_built);
  uv_timer_init(loop, &r->daily);
  uv_timer_start(&r->daily, reload_on_daily, DAY_MS, DAY_MS);
  reload_update_watch(r, &r->files);
  *out = r;
  return 0;
}

pst_gen_t *pst_reload_gen(const pst_reload_t *r) { return r->gen; }

uint64_t pst_reload_generation(const pst_reload_t *r) { return r->gen->number; }

time_t pst_reload_last_time(const pst_reload_t *r) { return r->last_time; }

int pst_reload_last_ok(const pst_reload_t *r) { return r->last_ok; }

void pst_reload_on_switched(pst_reload_t *r, void (*fn)(void *arg, const pst_gen_t *gen),
                            void *arg) {
  r->on_switched = fn;
  r->on_switched_arg = arg;
}

void pst_reload_notify_ready(const pst_reload_t *r) {
  size_t n = r->gen->cfg->n_listeners;
  pst_notify("READY=1\nSTATUS=serving %zu listener%s, generation %llu", n, n == 1 ? "" : "s",
             (unsigned long long)r->gen->number);
}

void pst_reload_stop(pst_reload_t *r) {
  if (r == NULL || r->state == RELOAD_STOPPED) return;
  reload_state_t was = r->state;
  r->state = RELOAD_STOPPED;
  r->again = 0;
  uv_close((uv_handle_t *)&r->daily, NULL);
  uv_mutex_lock(&r->lock);
  r->switched_closed = 1; /* workers may still say they switched: nobody listens */
  uv_mutex_unlock(&r->lock);
  uv_close((uv_handle_t *)&r->switched, NULL);
  pst_watch_close(r->watch);
  r->watch = NULL;
  if (was == RELOAD_BUILDING) {
    /* The build thread cannot be stopped: its job is discarded when it ends
     * (reload_on_built sees RELOAD_STOPPED), and built closes then; the
     * main loop runs until it has. */
    r->built_closing = 1;
  } else {
    uv_close((uv_handle_t *)&r->built, NULL);
  }
  if (was == RELOAD_SWITCHING) {
    job_free(r->job);
    r->job = NULL;
  }
}

void pst_reload_free(pst_reload_t *r) {
  if (r == NULL) return;
  pst_gen_unref(r->gen);
  pst_watch_files_free(&r->files);
  uv_mutex_destroy(&r->lock);
  free(r->config_path);
  free(r);
}
