/* postern: command line, signals, and starting the workers. Wiring only. */
#include <getopt.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/version.h>

#include "postern/access_log.h"
#include "postern/admin.h"
#include "postern/common.h"
#include "postern/config.h"
#include "postern/gen.h"
#include "postern/health.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/notify.h"
#include "postern/priv.h"
#include "postern/reload.h"
#include "postern/ticket.h"
#include "postern/tls.h"
#include "postern/watch.h"
#include "postern/worker.h"

typedef struct {
  uv_loop_t *loop;
  pst_gen_t *gen;       /* generation 1 until the reload machinery takes it over */
  pst_reload_t *reload; /* SIGHUP and `watch: true`; NULL before the workers run */
  pst_admin_t *admin;   /* the admin endpoint (admin.h), off without admin.listen */
  pst_worker_t *workers;
  unsigned n_workers;
  unsigned n_exited;
  uv_mutex_t lock; /* n_exited: written by workers */
  uv_async_t exited;
  uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
  uv_timer_t drain_status; /* "draining N connections" to the service manager, while stopping */
  int stopping;
} app_t;

static void usage(FILE *out) {
  fprintf(out,
          "usage: postern -c FILE        run with the configuration in FILE\n"
          "       postern -t -c FILE     check FILE and every certificate, then exit 0 or 1\n"
          "                              (-v, --verbose: every certificate, even among\n"
          "                              thousands, instead of one line per kind of problem)\n"
          "       postern --version      print postern's and wolfSSL's versions\n"
          "       postern ticket-key     print a new session ticket key line, to append to a\n"
          "                              tls.ticket_keys file (newest last)\n");
}

/* `postern ticket-key`: one new key line for a ticket_keys file (ticket.h). */
static int ticket_key(void) {
  char line[PST_TICKET_KEY_B64_LEN + 1];
  int rc = pst_ticket_key_generate(line, sizeof(line));
  if (rc != 0) {
    fprintf(stderr, "postern: cannot make a ticket key: %s\n", pst_strerror(rc));
    return 1;
  }
  printf("%s\n", line);
  explicit_bzero(line, sizeof(line));
  return fflush(stdout) == 0 ? 0 : 1;
}

static void print_version(void) {
  printf("postern %s\n", PST_VERSION);
  printf("wolfSSL %s\n", wolfSSL_lib_version());
}

/* `postern -t` as root with user: a reload reads the files as that user;
 * priv.h tries each one as that user. Returns the number of errors. */
static unsigned check_as_user(const pst_config_t *cfg) {
  pst_watch_files_t files = {0};
  const char **paths = NULL;
  int *writable = NULL;
  size_t n = 0;
  int rc = pst_watch_files_add(&files, cfg->path, NULL);
  if (rc == 0) rc = pst_watch_files_add_config(&files, cfg);
  if (rc == 0) {
    paths = calloc(files.n + cfg->n_listeners + 1, sizeof(*paths));
    writable = calloc(files.n + cfg->n_listeners + 1, sizeof(*writable));
    if (paths == NULL || writable == NULL) rc = -ENOMEM;
  }
  for (size_t i = 0; rc == 0 && i < files.n; i++) paths[n++] = files.paths[i];
  for (size_t i = 0; rc == 0 && i < cfg->n_listeners; i++) {
    const char *log = cfg->listeners[i].access_log;
    if (log == NULL || strcmp(log, "stderr") == 0) continue;
    writable[n] = 1;
    paths[n++] = log;
  }
  if (rc == 0) rc = pst_priv_check_files(cfg->user, cfg->uid, cfg->gid, paths, writable, n, stdout);
  free(paths);
  free(writable);
  pst_watch_files_free(&files);
  if (rc < 0) {
    printf("error: user: cannot check what user %s can read: %s\n", cfg->user, pst_strerror(rc));
    return 1;
  }
  if (rc == 0) printf("user %s can read every file a reload reads\n", cfg->user);
  return (unsigned)rc;
}

/* `postern -t`: everything a start would check, without binding sockets. */
static int check_config(pst_config_t *cfg, int verbose) {
  const char *path = cfg->path;
  pst_gen_t *gen = NULL;
  unsigned errors = 0;
  printf("configuration %s: %zu listener%s\n\n", path, cfg->n_listeners,
         cfg->n_listeners == 1 ? "" : "s");
  /* Parsed, not bound: the running postern may own the address. */
  if (cfg->admin_on) printf("admin endpoint on http://%s/\n\n", cfg->admin_listen.text);
  pst_access_file_check_mode(); /* a check leaves no file behind */
  int rc = pst_gen_check(cfg, 1, time(NULL), stdout, verbose, &gen, &errors);
  if (rc == 0) {
    cfg = gen->cfg;
    if (cfg->user != NULL && geteuid() == 0) errors += check_as_user(cfg);
    pst_gen_unref(gen);
    if (errors == 0) {
      printf("configuration ok\n");
      return 0;
    }
    printf("configuration has %u error%s\n", errors, errors == 1 ? "" : "s");
    return 1;
  }
  if (rc == -ENOMEM) fprintf(stderr, "postern: out of memory\n");
  printf("configuration has %u error%s\n", errors, errors == 1 ? "" : "s");
  return 1;
}

static void on_handle_close(uv_handle_t *h) { PST_UNUSED(h); }

static void app_on_worker_exit(pst_worker_t *worker, void *arg) {
  app_t *app = arg;
  PST_UNUSED(worker);
  /* Sent under the lock: once the main thread sees every worker counted
   * (and closes the handle), no worker can still be about to send. */
  uv_mutex_lock(&app->lock);
  app->n_exited++;
  uv_async_send(&app->exited);
  uv_mutex_unlock(&app->lock);
}

static void app_on_exited(uv_async_t *a) {
  app_t *app = PST_CONTAINER_OF(a, app_t, exited);
  uv_mutex_lock(&app->lock);
  unsigned n = app->n_exited;
  uv_mutex_unlock(&app->lock);
  if (n < app->n_workers) return;
  pst_reload_stop(app->reload);
  pst_admin_close(app->admin); /* served while the connections drained */
  uv_close((uv_handle_t *)&app->exited, on_handle_close);
  uv_signal_t *sigs[] = {&app->sig_term, &app->sig_int, &app->sig_hup, &app->sig_usr1};
  for (int i = 0; i < 4; i++) {
    int signum = sigs[i]->signum;
    uv_close((uv_handle_t *)sigs[i], on_handle_close);
    /* Closing the last handle for a signal gives it back its default
     * action, which for all four ends the process: a logrotate SIGUSR1 or
     * a SIGHUP during the last steps of the shutdown would kill postern
     * and lose its exit status. Ignored from here (after the close: libuv
     * sets SIG_DFL in it). */
    signal(signum, SIG_IGN);
  }
  uv_close((uv_handle_t *)&app->drain_status, on_handle_close);
}

static unsigned app_open_conns(const app_t *app) {
  unsigned n = 0;
  for (unsigned i = 0; i < app->n_workers; i++) n += pst_worker_open_conns(&app->workers[i]);
  return n;
}

/* While connections drain, `systemctl status` shows how many are left. */
static void app_on_drain_status(uv_timer_t *t) {
  app_t *app = PST_CONTAINER_OF(t, app_t, drain_status);
  unsigned n = app_open_conns(app);
  pst_notify("STATUS=draining %u connection%s", n, n == 1 ? "" : "s");
}

static void app_on_signal(uv_signal_t *s, int signum) {
  app_t *app = s->data;
  if (signum == SIGUSR1) {
    if (!app->stopping) pst_access_reopen_request(app->loop);
    return;
  }
  if (signum == SIGHUP) {
    if (app->reload != NULL) {
      pst_reload_request(app->reload, "SIGHUP");
    } else {
      pst_log_warn("SIGHUP: not serving yet: no reload");
    }
    return;
  }
  if (app->stopping) {
    pst_log_info("%s: already shutting down", strsignal(signum));
    return;
  }
  app->stopping = 1;
  pst_access_reopen_stop();
  /* /readyz says 503 before anything stops, so that a balancer stops
   * sending while the listeners still accept. */
  pst_admin_set_ready(app->admin, 0);
  unsigned open = app_open_conns(app);
  pst_notify("STOPPING=1\nSTATUS=draining %u connection%s", open, open == 1 ? "" : "s");
  if (pst_notify_enabled()) uv_timer_start(&app->drain_status, app_on_drain_status, 1000, 1000);
  const pst_gen_t *gen = app->reload != NULL ? pst_reload_gen(app->reload) : app->gen;
  pst_log_info("%s: shutting down: no new connections; open ones get up to %llu ms to finish",
               strsignal(signum), (unsigned long long)gen->cfg->shutdown_timeout_ms);
  /* A reload being built is discarded when it ends; the workers drain now. */
  pst_reload_stop(app->reload);
  for (unsigned i = 0; i < app->n_workers; i++) pst_worker_stop(&app->workers[i]);
}

static void close_fds(int *fds, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (fds[i] >= 0) close(fds[i]);
  }
}

/* Logs why listener l cannot listen. */
static void listen_error(const pst_config_t *cfg, size_t l, int err) {
  const pst_listener_conf_t *lc = &cfg->listeners[l];
  pst_log_error(
      "%s:%d:%d: listeners[%zu].listen: listener \"%s\" cannot listen on %s: %s%s", cfg->path,
      lc->listen_mark.line, lc->listen_mark.column, l, lc->name, lc->listen.text, pst_strerror(err),
      err == -EADDRINUSE ? " (another process listens there: is postern already running?)" : "");
}

/* Binds every worker's socket for every listener before any worker starts,
 * so that a port in use is reported, with its line, before serving. Every
 * address is first probed for another owner (pst_listen_probe): the
 * workers' SO_REUSEPORT sockets would otherwise share it silently. All
 * probes come before the first bind, so that listeners of this file on
 * overlapping addresses (0.0.0.0:443 and 127.0.0.1:443) do not see each
 * other. */
static int open_listeners(const pst_config_t *cfg, unsigned n_workers, int *fds) {
  size_t nl = cfg->n_listeners;
  for (size_t i = 0; i < (size_t)n_workers * nl; i++) fds[i] = -1;
  for (size_t l = 0; l < nl; l++) {
    int rc = pst_listen_probe(&cfg->listeners[l].listen);
    if (rc != 0) {
      listen_error(cfg, l, rc);
      return rc;
    }
  }
  for (unsigned w = 0; w < n_workers; w++) {
    for (size_t l = 0; l < nl; l++) {
      int fd = pst_listen_socket(&cfg->listeners[l].listen);
      if (fd < 0) {
        listen_error(cfg, l, fd);
        close_fds(fds, (size_t)n_workers * nl);
        return fd;
      }
      fds[w * nl + l] = fd;
    }
  }
  return 0;
}

static void log_ready(const app_t *app) {
  const pst_config_t *cfg = app->gen->cfg;
  pst_log_info("postern %s (wolfSSL %s) ready: %u worker%s, %zu listener%s", PST_VERSION,
               wolfSSL_lib_version(), app->n_workers, app->n_workers == 1 ? "" : "s",
               cfg->n_listeners, cfg->n_listeners == 1 ? "" : "s");
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const pst_listener_conf_t *lc = &cfg->listeners[i];
    pst_log_info("listener %s on %s: %s mode, %zu certificate%s, backend %s", lc->name,
                 lc->listen.text, lc->mode == PST_MODE_TCP ? "tcp" : "http", lc->n_certs,
                 lc->n_certs == 1 ? "" : "s", lc->backend.addr.text);
  }
}

/* Gives up root once the listeners are bound and the keys read, before any
 * thread starts (priv.h: capabilities are per thread, and every thread
 * inherits the main thread's). Returns 0, or when postern must not go on
 * -EPERM (not root, and not the user either) or pst_priv_drop's error. */
static int drop_privileges(const pst_config_t *cfg) {
  if (cfg->user == NULL) {
    if (geteuid() == 0) {
      pst_log_warn(
          "running as root: set user: (and group:) so that postern gives up root once "
          "its listeners are bound and its keys read (docs/config.md)");
    }
    return 0;
  }
  if (geteuid() != 0) {
    if (geteuid() == cfg->uid) { /* started as that user (systemd's User=) */
      if (cfg->group != NULL && getegid() != cfg->gid) {
        /* Not root: the group cannot change now. Started anyway, as the
         * service manager chose, but the files group: was meant to open
         * may not open. */
        pst_log_warn(
            "%s:%d:%d: group: postern runs as gid %u, not as group %s (gid %u), and not being "
            "root it cannot change that: files only that group may read will fail; set the "
            "service's group (systemd's Group=) to it, or remove group",
            cfg->path, cfg->group_mark.line, cfg->group_mark.column, (unsigned)getegid(),
            cfg->group, (unsigned)cfg->gid);
      }
      return 0;
    }
    pst_log_error(
        "%s:%d:%d: user: postern runs as uid %u, not as root: it cannot become user %s; "
        "start it as root or as %s",
        cfg->path, cfg->user_mark.line, cfg->user_mark.column, (unsigned)geteuid(), cfg->user,
        cfg->user);
    return -EPERM;
  }
  char err[256];
  int rc = pst_priv_drop(cfg->user, cfg->uid, cfg->gid, err, sizeof(err));
  if (rc != 0) {
    pst_log_error("cannot become user %s (uid %u, gid %u): %s; not starting", cfg->user,
                  (unsigned)cfg->uid, (unsigned)cfg->gid, err);
    return rc;
  }
  pst_log_info("running as user %s (uid %u), group %s (gid %u), with CAP_NET_BIND_SERVICE only",
               cfg->user, (unsigned)cfg->uid, cfg->group != NULL ? cfg->group : "of the user",
               (unsigned)cfg->gid);
  return 0;
}

static int run(pst_config_t *cfg) {
  app_t app;
  memset(&app, 0, sizeof(app));
  unsigned errors = 0;
  /* Log files made before the drop belong to the user, who reopens them. */
  if (cfg->user != NULL && geteuid() == 0) pst_access_file_set_owner(cfg->uid, cfg->gid);
  int rc = pst_gen_build(cfg, 1, time(NULL), NULL, &app.gen, &errors);
  if (rc != 0) {
    pst_log_error(
        "not starting: the configuration has %u error%s (details above; "
        "`postern -t --verbose -c FILE` shows every certificate)",
        errors, errors == 1 ? "" : "s");
    return 1;
  }
  cfg = app.gen->cfg;
  app.n_workers = cfg->workers;
  size_t nl = cfg->n_listeners;
  int *fds = malloc(sizeof(int) * app.n_workers * nl);
  app.workers = calloc(app.n_workers, sizeof(*app.workers));
  /* The signals postern handles stay blocked from before anything listens
   * until their handlers are in place: a SIGHUP sent as soon as a port
   * answers (a test, a deploy script) must reload, not kill (its default
   * action); SIGTERM then drains. Threads started meanwhile (the health
   * checker) inherit the mask and leave them to the main thread. */
  sigset_t handled;
  sigemptyset(&handled);
  int signums[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
  for (int i = 0; i < 4; i++) sigaddset(&handled, signums[i]);
  pthread_sigmask(SIG_BLOCK, &handled, NULL);
  int bound = fds != NULL && app.workers != NULL && pst_admin_new(cfg, &app.admin) == 0 &&
              open_listeners(cfg, app.n_workers, fds) == 0;
  if (!bound || drop_privileges(cfg) != 0) {
    if (bound) close_fds(fds, (size_t)app.n_workers * nl);
    pst_admin_free(app.admin);
    free(fds);
    free(app.workers);
    pst_gen_unref(app.gen);
    pthread_sigmask(SIG_UNBLOCK, &handled, NULL);
    return 1;
  }
  app.loop = uv_default_loop();
  /* After the drop: the checker thread inherits the capability sets. */
  if (pst_health_start() != 0) pst_log_warn("no health checker thread: servers stay up");
  uv_mutex_init(&app.lock);
  uv_async_init(app.loop, &app.exited, app_on_exited);
  uv_timer_init(app.loop, &app.drain_status);
  uv_signal_t *sigs[] = {&app.sig_term, &app.sig_int, &app.sig_hup, &app.sig_usr1};
  for (int i = 0; i < 4; i++) {
    uv_signal_init(app.loop, sigs[i]);
    sigs[i]->data = &app;
    uv_signal_start(sigs[i], app_on_signal, signums[i]);
  }
  pthread_sigmask(SIG_UNBLOCK, &handled, NULL); /* one that came meanwhile is handled now */
  unsigned started = 0;
  for (; started < app.n_workers; started++) {
    pst_worker_t *w = &app.workers[started];
    w->on_exit = app_on_worker_exit;
    w->on_exit_arg = &app;
    rc = pst_worker_start(w, started, app.gen, &fds[started * nl]);
    if (rc != 0) {
      pst_log_error("cannot start worker %u: %s", started, pst_strerror(rc));
      close_fds(&fds[started * nl], (app.n_workers - started) * nl);
      break;
    }
  }
  free(fds);
  app.n_workers = started;
  if (rc == 0) {
    log_ready(&app);
    pst_admin_start(app.admin, app.loop, app.gen, app.n_workers);
    /* From here the reload machinery owns the running generation. */
    int rrc =
        pst_reload_start(app.loop, cfg->path, app.gen, app.workers, app.n_workers, &app.reload);
    pst_admin_set_ready(app.admin, 1);
    if (rrc == 0) {
      app.gen = NULL;
      pst_admin_set_reload(app.admin, app.reload);
      pst_reload_on_switched(app.reload, pst_admin_on_reload, app.admin);
      pst_reload_notify_ready(app.reload);
    } else {
      pst_log_error("cannot set up reloads: %s; SIGHUP will be ignored", pst_strerror(rrc));
      pst_notify("READY=1\nSTATUS=serving %zu listener%s, generation 1 (reloads off)", nl,
                 nl == 1 ? "" : "s");
    }
  } else {
    for (unsigned i = 0; i < started; i++) pst_worker_stop(&app.workers[i]);
  }
  if (started == 0) uv_async_send(&app.exited);
  uv_run(app.loop, UV_RUN_DEFAULT);
  for (unsigned i = 0; i < started; i++) pst_worker_join(&app.workers[i]);
  pst_health_stop();
  uv_loop_close(app.loop);
  uv_mutex_destroy(&app.lock);
  pst_admin_free(app.admin);
  free(app.workers);
  pst_reload_free(app.reload);
  pst_gen_unref(app.gen);
  if (rc == 0) {
    pst_metrics_log();
    pst_log_info("stopped");
  }
  return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'}, {"test", no_argument, NULL, 't'},
      {"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
  };
  const char *path = NULL;
  int check = 0;
  int verbose = 0;
  int opt;
  if (argc == 2 && strcmp(argv[1], "ticket-key") == 0) return ticket_key();
  while ((opt = getopt_long(argc, argv, "c:thvV", longopts, NULL)) != -1) {
    switch (opt) {
      case 'c': path = optarg; break;
      case 't': check = 1; break;
      case 'v': verbose = 1; break;
      case 'V': print_version(); return 0;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (path == NULL || optind != argc) {
    usage(stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGUSR1, SIG_IGN); /* logrotate during start-up: reopened later, never fatal */
  if (pst_tls_global_init() != 0) {
    fprintf(stderr, "postern: wolfSSL failed to initialise\n");
    return 1;
  }
  char err[4096];
  pst_config_t *cfg = NULL;
  int rc = pst_config_load(path, &cfg, err, sizeof(err));
  if (rc != 0) {
    fprintf(stderr, "%s\n", err);
    if (check) printf("configuration has errors\n");
    pst_tls_global_cleanup();
    return 1;
  }
  pst_log_set_level(cfg->log_level);
  pst_log_set_format(cfg->log_format);
  if (geteuid() != 0) {
    struct passwd *pw = getpwuid(geteuid());
    if (pw != NULL) pst_priv_set_user(pw->pw_name);
  }
  if (!check) {
    rc = pst_notify_init();
    if (rc != 0) {
      pst_log_error("NOTIFY_SOCKET=%s: cannot notify the service manager: %s",
                    getenv("NOTIFY_SOCKET"), pst_strerror(rc));
    }
  }
  int status = check ? check_config(cfg, verbose) : run(cfg);
  pst_notify_close();
  pst_tls_global_cleanup();
  return status;
}
