/* postern: the gauges the admin endpoint adds to /metrics (docs/metrics.md,
 * "Admin endpoint gauges"): the configuration generation and the last
 * reload, every certificate's expiry, ticket key ages, the process_*
 * families of Prometheus' client libraries, build info, workers and
 * readiness. Written in the text exposition format 0.0.4 with
 * pst_metrics_head and pst_metrics_label, like the counter families. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "admin_int.h"
#include "postern/balance.h"
#include "postern/common.h"
#include "postern/metrics.h"
#include "postern/ticket.h"

/* Every write below fails only for memory: one macro keeps the renderers
 * readable. */
#define TRY(expr)                    \
  do {                               \
    if ((expr) != 0) return -ENOMEM; \
  } while (0)

/* One sample without labels: "name value". */
static int sample(pst_buf_t *out, const char *name, const char *type, const char *help,
                  const char *fmt, double value) {
  TRY(pst_metrics_head(out, name, type, help));
  TRY(pst_buf_printf(out, "%s ", name));
  TRY(pst_buf_printf(out, fmt, value));
  return pst_buf_append(out, "\n", 1) == 0 ? 0 : -ENOMEM;
}

/* Appends name="value" (value escaped), after a comma when not first. */
static int label(pst_buf_t *out, int first, const char *name, const char *value) {
  TRY(pst_buf_printf(out, "%s%s=\"", first ? "" : ",", name));
  TRY(pst_metrics_label(out, value != NULL ? value : ""));
  return pst_buf_append(out, "\"", 1) == 0 ? 0 : -ENOMEM;
}

static int render_config(pst_buf_t *out, const pst_admin_view_t *v) {
  TRY(sample(out, "postern_config_generation", "gauge",
             "The configuration generation new connections get: 1 at start, +1 for each reload "
             "that commits.",
             "%.0f", (double)v->generation));
  TRY(sample(out, "postern_config_last_reload_timestamp_seconds", "gauge",
             "When the last reload attempt ended, successful or not (the start-up load before "
             "any reload), in seconds since the epoch.",
             "%.0f", (double)v->last_reload));
  return sample(out, "postern_config_last_reload_success", "gauge",
                "Whether the last reload attempt succeeded (1; also before any reload) or was "
                "refused, the running configuration staying in place (0).",
                "%.0f", v->last_reload_ok ? 1.0 : 0.0);
}

/* Whether certificate k of listener gl repeats an earlier one of the same
 * listener (the same chain file): one series per file, since the labels
 * would be the same. */
static int cert_repeated(const pst_gen_listener_t *gl, size_t k) {
  for (size_t j = 0; j < k; j++) {
    if (strcmp(gl->certs[j]->cert_path, gl->certs[k]->cert_path) == 0) return 1;
  }
  return 0;
}

/* The labels of one certificate: {listener,cert_file,subject,serial}. */
static int cert_labels(pst_buf_t *out, const char *name, const pst_gen_listener_t *gl,
                       const pst_cert_t *c) {
  const pst_cert_info_t *leaf = &c->chain[0];
  TRY(pst_buf_printf(out, "%s{", name));
  TRY(label(out, 1, "listener", gl->conf->name));
  TRY(label(out, 0, "cert_file", c->cert_path));
  TRY(label(out, 0, "subject", leaf->subject));
  TRY(label(out, 0, "serial", leaf->serial_hex));
  return pst_buf_append(out, "} ", 2) == 0 ? 0 : -ENOMEM;
}

/* Each leaf's notAfter, as loaded and checked when the generation was built
 * (cert.c): nothing is parsed here. expiring: 1 within expiry_warn_days,
 * the window in which postern -t and the daily log line warn too. */
static int render_certs(pst_buf_t *out, const pst_admin_view_t *v) {
  static const char *const names[2] = {"postern_certificate_not_after_seconds",
                                       "postern_certificate_expiring"};
  static const char *const helps[2] = {
      "When each served certificate (the leaf of each chain file of each listener) expires: "
      "its notAfter, in seconds since the epoch.",
      "1 when the certificate expires within expiry_warn_days (or has expired), else 0."};
  const pst_config_t *cfg = v->gen->cfg;
  double window = (double)cfg->expiry_warn_days * 86400.0;
  for (int f = 0; f < 2; f++) {
    TRY(pst_metrics_head(out, names[f], "gauge", helps[f]));
    for (size_t i = 0; i < cfg->n_listeners; i++) {
      const pst_gen_listener_t *gl = &v->gen->listeners[i];
      for (size_t k = 0; k < gl->n_certs; k++) {
        const pst_cert_t *c = gl->certs[k];
        if (c->chain_len == 0 || cert_repeated(gl, k)) continue;
        TRY(cert_labels(out, names[f], gl, c));
        time_t na = c->chain[0].not_after;
        if (f == 0) {
          TRY(pst_buf_printf(out, "%lld\n", (long long)na));
        } else {
          TRY(pst_buf_printf(out, "%d\n", difftime(na, v->now) < window ? 1 : 0));
        }
      }
    }
  }
  return 0;
}

/* Each stapled OCSP response's nextUpdate (cert_ocsp.c), for the
 * certificates with a good one that has a nextUpdate: an alert on it
 * catches a refresh job that stopped. */
static int render_staples(pst_buf_t *out, const pst_admin_view_t *v) {
  static const char name[] = "postern_certificate_ocsp_next_update_seconds";
  const pst_config_t *cfg = v->gen->cfg;
  TRY(pst_metrics_head(out, name, "gauge",
                       "When each stapled OCSP response (ocsp, ocsp_dir) stops being current: "
                       "its nextUpdate, in seconds since the epoch."));
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const pst_gen_listener_t *gl = &v->gen->listeners[i];
    for (size_t k = 0; k < gl->n_certs; k++) {
      const pst_cert_t *c = gl->certs[k];
      if (c->staple == NULL || c->staple_next_update == 0 || cert_repeated(gl, k)) continue;
      TRY(pst_buf_printf(out, "%s{", name));
      TRY(label(out, 1, "listener", gl->conf->name));
      TRY(label(out, 0, "cert_file", c->cert_path));
      TRY(pst_buf_printf(out, "} %lld\n", (long long)c->staple_next_update));
    }
  }
  return 0;
}

/* key="encrypt" is the key that seals new tickets; "decrypt_1" the newest
 * of the others, which only open tickets, "decrypt_2" the next... */
static int render_tickets(pst_buf_t *out, const pst_admin_view_t *v) {
  const pst_config_t *cfg = v->gen->cfg;
  TRY(pst_metrics_head(out, "postern_ticket_key_age_seconds", "gauge",
                       "Age of each session ticket key of each listener with session_tickets: "
                       "key=\"encrypt\" seals new tickets, decrypt_N (N=1 the newest) only open "
                       "them. Born when an in-memory ring made it, or for a ticket_keys file at "
                       "the file's modification time when postern first read the key."));
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const pst_gen_listener_t *gl = &v->gen->listeners[i];
    if (!gl->conf->session_tickets || gl->tickets == NULL) continue;
    double ages[PST_TICKET_MAX_KEYS];
    size_t n = pst_ticket_src_ages(gl->tickets, v->now, ages, PST_TICKET_MAX_KEYS);
    for (size_t k = 0; k < n; k++) {
      char key[32];
      if (k == 0) {
        snprintf(key, sizeof(key), "encrypt");
      } else {
        snprintf(key, sizeof(key), "decrypt_%zu", k);
      }
      TRY(pst_buf_printf(out, "postern_ticket_key_age_seconds{"));
      TRY(label(out, 1, "listener", gl->conf->name));
      TRY(label(out, 0, "key", key));
      TRY(pst_buf_printf(out, "} %.0f\n", ages[k] > 0 ? ages[k] : 0.0));
    }
  }
  return 0;
}

/* Reads a small procfs file into buf (NUL-terminated). Returns its length,
 * or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  size_t off = 0;
  while (off + 1 < len) {
    ssize_t n = read(fd, buf + off, len - 1 - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += (size_t)n;
  }
  close(fd);
  buf[off] = '\0';
  return (ssize_t)off;
}

/* The fields of /proc/self/stat from field 3 (state) on: the command name
 * (field 2) may hold spaces and parentheses, so the fields start after its
 * last ')'. fields[i] is field i + 3. Returns how many were read. */
static size_t self_stat(unsigned long long *fields, size_t max) {
  char buf[1024];
  if (read_small("/proc/self/stat", buf, sizeof(buf)) <= 0) return 0;
  char *p = strrchr(buf, ')');
  if (p == NULL) return 0;
  p++;
  size_t n = 0;
  while (n < max) {
    while (*p == ' ') p++;
    if (*p == '\0' || *p == '\n') break;
    char *end;
    fields[n++] = strtoull(p, &end, 10); /* the state letter reads as 0 */
    if (end == p) end = p + 1;
    while (*end != ' ' && *end != '\0' && *end != '\n') end++;
    p = end;
  }
  return n;
}

double pst_admin_process_start(void) {
  unsigned long long f[20];
  char buf[8192];
  long tick = sysconf(_SC_CLK_TCK);
  if (self_stat(f, 20) < 20 || tick <= 0 || read_small("/proc/stat", buf, sizeof(buf)) <= 0) {
    return (double)time(NULL);
  }
  const char *bt = strstr(buf, "\nbtime ");
  if (bt == NULL) return (double)time(NULL);
  return (double)strtoull(bt + 7, NULL, 10) + (double)f[19] / (double)tick;
}

/* Open descriptors: the entries of /proc/self/fd but the one reading it. */
static long open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  long n = 0;
  int own = dirfd(d);
  char self[16];
  snprintf(self, sizeof(self), "%d", own);
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (e->d_name[0] != '.' && strcmp(e->d_name, self) != 0) n++;
  }
  closedir(d);
  return n;
}

/* The process_* families with the names and meanings of Prometheus'
 * client libraries (client_golang's process collector), so that the
 * dashboards written for them work. A value /proc cannot give is left out. */
static int render_process(pst_buf_t *out, const pst_admin_view_t *v) {
  unsigned long long f[22];
  long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  if (self_stat(f, 22) >= 22 && tick > 0 && page > 0) {
    /* Fields 14 and 15 (utime, stime) in clock ticks, 23 (vsize) in bytes,
     * 24 (rss) in pages: proc(5). */
    TRY(sample(out, "process_cpu_seconds_total", "counter",
               "Total user and system CPU time spent in seconds.", "%.2f",
               (double)(f[11] + f[12]) / (double)tick));
    TRY(sample(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
               "%.0f", (double)f[21] * (double)page));
    TRY(sample(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
               "%.0f", (double)f[20]));
  }
  long fds = open_fds();
  if (fds >= 0) {
    TRY(sample(out, "process_open_fds", "gauge", "Number of open file descriptors.", "%.0f",
               (double)fds));
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    double max = rl.rlim_cur == RLIM_INFINITY ? 1.8446744073709552e19 : (double)rl.rlim_cur;
    TRY(sample(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.", "%.0f",
               max));
  }
  return sample(out, "process_start_time_seconds", "gauge",
                "Start time of the process since unix epoch in seconds.", "%.2f", v->start_time);
}

static int render_self(pst_buf_t *out, const pst_admin_view_t *v) {
  TRY(pst_metrics_head(out, "postern_build_info", "gauge",
                       "Always 1; the version label says which postern runs."));
  TRY(pst_buf_printf(out, "postern_build_info{"));
  TRY(label(out, 1, "version", PST_VERSION));
  TRY(pst_buf_printf(out, "} 1\n"));
  TRY(sample(out, "postern_workers", "gauge", "Worker threads serving the listeners.", "%.0f",
             (double)v->n_workers));
  return sample(out, "postern_ready", "gauge",
                "1 while /readyz answers 200 (serving, not shutting down), else 0.", "%.0f",
                v->ready ? 1.0 : 0.0);
}

int pst_admin_render(pst_buf_t *out, const pst_admin_view_t *v) {
  TRY(render_config(out, v));
  TRY(render_certs(out, v));
  TRY(render_staples(out, v));
  TRY(render_tickets(out, v));
  TRY(render_process(out, v));
  /* The servers of every backend set: up or down, and how often that
   * changed (balance.h: the health registry, read with atomics). */
  TRY(pst_health_render(out));
  return render_self(out, v);
}
