/* postern: worker threads. Each has its own libuv loop and its own
 * SO_REUSEPORT listening socket per listener, so the kernel spreads new
 * connections over the workers and nothing on the hot path is shared but
 * the immutable generation. */
#include "postern/worker.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "postern/common.h"
#include "postern/conn.h"
#include "postern/gen.h"
#include "postern/log.h"

#define LISTEN_BACKLOG 511

int pst_listen_socket(const pst_addr_t *addr) {
  int family = addr->ss.ss_family;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    goto fail;
  }
  /* "[::]:port" means IPv6 only, as in nginx: list 0.0.0.0:port too for v4. */
  if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
    goto fail;
  }
  if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) goto fail;
  if (listen(fd, LISTEN_BACKLOG) != 0) goto fail;
  return fd;
fail:;
  int err = -errno;
  close(fd);
  return err;
}

static void worker_on_connection(uv_stream_t *server, int status) {
  pst_wlistener_t *wl = PST_CONTAINER_OF(server, pst_wlistener_t, handle);
  pst_worker_t *worker = wl->worker;
  const pst_listener_conf_t *lc = worker->gen->listeners[wl->index].conf;
  if (status < 0) {
    /* EMFILE and friends: libuv already dropped the connection; go on. */
    pst_log_warn("listener %s: accept failed: %s", lc->name, uv_strerror(status));
    return;
  }
  if (worker->state != PST_WORKER_RUNNING) return;
  if (wl->n_conns >= lc->max_connections) {
    /* Not calling uv_accept makes libuv stop polling this socket until we
     * do: new connections wait in the kernel's backlog. */
    if (!wl->paused) {
      pst_log_warn("listener %s: worker %u at max_connections (%u): pausing accepts", lc->name,
                   worker->id, lc->max_connections);
    }
    wl->paused = 1;
    return;
  }
  pst_conn_accept(worker, wl);
}

static void worker_on_handle_close(uv_handle_t *h) { PST_UNUSED(h); }

static void worker_finish(pst_worker_t *worker) {
  if (worker->state == PST_WORKER_STOPPED) return;
  worker->state = PST_WORKER_STOPPED;
  uv_close((uv_handle_t *)&worker->wakeup, worker_on_handle_close);
  uv_close((uv_handle_t *)&worker->drain_timer, worker_on_handle_close);
}

static void worker_on_drain_timeout(uv_timer_t *t) {
  pst_worker_t *worker = PST_CONTAINER_OF(t, pst_worker_t, drain_timer);
  if (worker->n_conns > 0) {
    pst_log_info("worker %u: shutdown_timeout reached: closing %u connections", worker->id,
                 worker->n_conns);
  }
  pst_conn_t *next;
  for (pst_conn_t *c = worker->conns; c != NULL; c = next) {
    next = c->next;
    pst_conn_close(c, PST_ESHUTDOWN, "shutdown timeout");
  }
}

static void worker_drain(pst_worker_t *worker) {
  if (worker->state != PST_WORKER_RUNNING) return;
  worker->state = PST_WORKER_DRAINING;
  for (size_t i = 0; i < worker->n_listeners; i++) {
    pst_wlistener_t *wl = &worker->listeners[i];
    if (wl->open) {
      wl->open = 0;
      uv_close((uv_handle_t *)&wl->handle, worker_on_handle_close);
    }
  }
  if (worker->n_conns == 0) {
    worker_finish(worker);
    return;
  }
  uv_timer_start(&worker->drain_timer, worker_on_drain_timeout,
                 worker->gen->cfg->shutdown_timeout_ms, 0);
}

static void worker_on_wakeup(uv_async_t *a) {
  pst_worker_t *worker = PST_CONTAINER_OF(a, pst_worker_t, wakeup);
  if (atomic_load(&worker->stop_requested)) worker_drain(worker);
}

void pst_worker_conn_gone(pst_worker_t *worker, pst_wlistener_t *wl, pst_conn_t *conn) {
  PST_UNUSED(conn);
  worker->n_conns--;
  wl->n_conns--;
  if (wl->paused && wl->open &&
      wl->n_conns < worker->gen->listeners[wl->index].conf->max_connections) {
    wl->paused = 0;
    pst_conn_accept(worker, wl); /* the socket libuv has been holding */
  }
  if (worker->state == PST_WORKER_DRAINING && worker->n_conns == 0) worker_finish(worker);
}

static void worker_run(void *arg) {
  pst_worker_t *worker = arg;
  uv_run(&worker->loop, UV_RUN_DEFAULT);
  if (worker->on_exit != NULL) worker->on_exit(worker, worker->on_exit_arg);
}

static int worker_listen(pst_worker_t *worker, int *fds) {
  for (size_t i = 0; i < worker->n_listeners; i++) {
    pst_wlistener_t *wl = &worker->listeners[i];
    wl->worker = worker;
    wl->index = i;
    uv_tcp_init(&worker->loop, &wl->handle);
    wl->open = 1;
    int rc = uv_tcp_open(&wl->handle, fds[i]);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&wl->handle, LISTEN_BACKLOG, worker_on_connection);
    if (rc != 0) return rc;
  }
  return 0;
}

int pst_worker_start(pst_worker_t *worker, unsigned id, pst_gen_t *gen, int *listen_fds) {
  worker->id = id;
  worker->state = PST_WORKER_RUNNING;
  atomic_init(&worker->stop_requested, 0);
  int rc = uv_loop_init(&worker->loop);
  if (rc != 0) return rc;
  worker->loop.data = worker;
  worker->n_listeners = gen->cfg->n_listeners;
  worker->listeners = calloc(worker->n_listeners, sizeof(*worker->listeners));
  worker->slab = malloc(PST_READ_SLAB);
  worker->plain = malloc(PST_RECORD_MAX);
  if (worker->listeners == NULL || worker->slab == NULL || worker->plain == NULL) {
    rc = -ENOMEM;
    goto fail;
  }
  worker->gen = pst_gen_ref(gen);
  uv_async_init(&worker->loop, &worker->wakeup, worker_on_wakeup);
  uv_timer_init(&worker->loop, &worker->drain_timer);
  rc = worker_listen(worker, listen_fds);
  if (rc == 0) rc = uv_thread_create(&worker->thread, worker_run, worker);
  if (rc == 0) return 0;
  /* Unwind on this thread: the loop never ran. The fds stay the caller's. */
  for (size_t i = 0; i < worker->n_listeners; i++) {
    if (worker->listeners[i].open) uv_close((uv_handle_t *)&worker->listeners[i].handle, NULL);
  }
  uv_close((uv_handle_t *)&worker->wakeup, NULL);
  uv_close((uv_handle_t *)&worker->drain_timer, NULL);
  uv_run(&worker->loop, UV_RUN_DEFAULT);
  pst_gen_unref(worker->gen);
  worker->gen = NULL;
fail:
  uv_loop_close(&worker->loop);
  free(worker->listeners);
  free(worker->slab);
  free(worker->plain);
  worker->listeners = NULL;
  worker->slab = worker->plain = NULL;
  return rc;
}

void pst_worker_stop(pst_worker_t *worker) {
  atomic_store(&worker->stop_requested, 1);
  uv_async_send(&worker->wakeup);
}

void pst_worker_join(pst_worker_t *worker) {
  uv_thread_join(&worker->thread);
  uv_loop_close(&worker->loop);
  pst_gen_unref(worker->gen);
  free(worker->listeners);
  free(worker->slab);
  free(worker->plain);
  worker->gen = NULL;
  worker->listeners = NULL;
  worker->slab = worker->plain = NULL;
}
