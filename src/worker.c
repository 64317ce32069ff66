/* postern: worker threads. Each has its own libuv loop and its own
 * SO_REUSEPORT listening socket per listener, so the kernel spreads new
 * connections over the workers and nothing on the hot path is shared but
 * the immutable generation. */
#include "postern/worker.h"

#include <assert.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "postern/balance.h"
#include "postern/common.h"
#include "postern/conn.h"
#include "postern/gen.h"
#include "postern/access_log.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/pool.h"
#include "postern/replay_redis.h"
#include "postern/tls.h"

/* The backlog a listening socket gets when made; each worker then sets its
 * own from the listener's max_handshakes_in_flight (wl_backlog). */
#define LISTEN_BACKLOG 511
/* Connections a worker takes per loop turn, all listeners together: libuv
 * would otherwise accept until the queue is empty, and under a flood one
 * turn would start hundreds of handshakes while the clients of those
 * already started wait for their Finished to be read. The rest wait for the
 * next turn (worker_on_prepare), or are shed (wl_take). */
#define ACCEPT_BATCH 64
/* How long a worker must have had no connection before it gives the
 * memory its allocator keeps back to the system (worker_on_trim). */
#define WORKER_TRIM_DELAY_MS 2000
/* ... or since its connections fell under a quarter of a peak of at least
 * this many. */
#define WORKER_TRIM_MIN_PEAK 256
/* A listener at max_connections is reported at most this often per worker. */
#define WL_FULL_WARN_MS 60000
/* See wl_stale_ms. */
#define WL_STALE_MIN_MS 1000
/* While a connection is held back in a listen queue (wl->held), the loop
 * looks again at least this often: when every handshake in flight is a
 * client that sends nothing, no other event would come before their
 * handshake timeouts, and the oldest must give way once stale. */
#define WL_HELD_RETRY_MS 100
/* See wl_backlog. */
#define WL_BACKLOG_MIN 128
/* Resets a listener may send before its budget is earned by admissions
 * (wl_shed), and the most it may save up; and what each connection let in
 * earns. */
#define WL_SHED_BURST 64
#define WL_SHED_PER_ADMIT 3

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
  /* Accepted sockets inherit TCP_NODELAY from the listening socket on
   * Linux: one setsockopt here instead of one per connection. postern
   * already gathers its writes, so Nagle would only add latency. */
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) goto fail;
  if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) goto fail;
  if (listen(fd, LISTEN_BACKLOG) != 0) goto fail;
  return fd;
fail:;
  int err = -errno;
  close(fd);
  return err;
}

int pst_listen_probe(const pst_addr_t *addr) {
  int family = addr->ss.ss_family;
  in_port_t port = family == AF_INET6 ? ((const struct sockaddr_in6 *)&addr->ss)->sin6_port
                                      : ((const struct sockaddr_in *)&addr->ss)->sin_port;
  if (port == 0) return 0; /* the kernel picks a free port: nobody owns it */
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  /* SO_REUSEADDR as on the real sockets, so that connections of a previous
   * run in TIME_WAIT do not count as an owner; no SO_REUSEPORT, so that a
   * listening socket does, whoever made it and with whatever options
   * (Linux refuses the bind of a socket without SO_REUSEPORT on a port
   * that has a listening socket, SO_REUSEADDR or not). */
  int one = 1, rc = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
      bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
    rc = -errno;
  }
  close(fd);
  return rc;
}

/* ---- listener lifetime ---- */

/* Frees wl once nothing refers to it: out of the worker's list, handle
 * closed, and no connection left (each connection points at its listener
 * until it is freed, see pst_worker_conn_gone). */
static void wl_maybe_free(pst_wlistener_t *wl) {
  if (wl->listed || wl->open || wl->closing || wl->n_conns > 0) return;
  if (wl->fd >= 0) close(wl->fd);
  free(wl);
}

static void wl_on_close(uv_handle_t *h) {
  pst_wlistener_t *wl = PST_CONTAINER_OF(h, pst_wlistener_t, handle);
  wl->closing = 0;
  wl_maybe_free(wl);
}

/* Stops accepting on wl: closing the handle closes the socket, so the
 * kernel no longer queues connections for it. */
static void wl_close(pst_wlistener_t *wl) {
  if (!wl->open) return;
  wl->open = 0;
  wl->closing = 1;
  uv_close((uv_handle_t *)&wl->handle, wl_on_close);
}

static pst_wlistener_t *wl_new(int fd) {
  pst_wlistener_t *wl = calloc(1, sizeof(*wl));
  if (wl != NULL) wl->fd = fd;
  return wl;
}

static void worker_on_connection(uv_stream_t *server, int status);

/* The listen(2) backlog for a listener bounded at max_handshakes_in_flight
 * per worker: the bound (at least WL_BACKLOG_MIN), since whatever waits
 * there ages: a connection at its end waits for as many handshakes as the
 * bound before its own starts. Past it the kernel drops SYNs, which costs
 * postern nothing (wl_shed). The kernel caps it at net.core.somaxconn. */
static unsigned wl_backlog(const pst_listener_conf_t *lc) {
  unsigned b = lc->max_handshakes_in_flight;
  b = b > 65535 ? 65535 : b;
  return b < WL_BACKLOG_MIN ? WL_BACKLOG_MIN : b;
}

/* Starts accepting on wl's socket on the worker's loop. On failure the
 * handle (if made) is left open for wl_close. */
static int wl_open(pst_worker_t *worker, pst_wlistener_t *wl) {
  wl->worker = worker;
  uv_tcp_init(&worker->loop, &wl->handle);
  wl->open = 1;
  int rc = uv_tcp_open(&wl->handle, wl->fd);
  if (rc != 0) return rc;
  wl->fd = -1; /* the handle owns it now */
  wl->backlog = wl_backlog(worker->gen->listeners[wl->index].conf);
  wl->shed_budget = WL_SHED_BURST;
  return uv_listen((uv_stream_t *)&wl->handle, (int)wl->backlog, worker_on_connection);
}

/* A reload changed max_handshakes_in_flight: Linux takes a new backlog
 * from listen(2) on a listening socket, without dropping what is queued. */
static void wl_resize_backlog(pst_wlistener_t *wl) {
  const pst_listener_conf_t *lc = wl->worker->gen->listeners[wl->index].conf;
  unsigned b = wl_backlog(lc);
  uv_os_fd_t fd;
  if (b == wl->backlog || uv_fileno((uv_handle_t *)&wl->handle, &fd) != 0) return;
  if (listen(fd, (int)b) != 0) {
    pst_log_warn("listener %s: cannot set the listen backlog to %u: %s", lc->name, b,
                 strerror(errno));
    return;
  }
  wl->backlog = b;
}

static unsigned wl_max_connections(const pst_wlistener_t *wl) {
  return wl->worker->gen->listeners[wl->index].conf->max_connections;
}

/* ---- accepting ---- */

/* Accepts the connection waiting on wl (pst_conn_accept), keeping the
 * worker's peak count for worker_quiet. */
static void worker_accept(pst_worker_t *worker, pst_wlistener_t *wl) {
  pst_conn_accept(worker, wl);
  if (worker->n_conns > worker->peak_conns) worker->peak_conns = worker->n_conns;
  atomic_store_explicit(&worker->open_conns, worker->n_conns, memory_order_relaxed);
}

/* ---- overload ---- */

static void wl_on_shed_close(uv_handle_t *h) { free(h); }

/* Connections waiting in wl's listen queue (Linux reports a listening
 * socket's accept queue length in tcpi_unacked), or 0 when unknown. */
static unsigned wl_queued(pst_wlistener_t *wl) {
  uv_os_fd_t fd;
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  if (uv_fileno((uv_handle_t *)&wl->handle, &fd) != 0 ||
      getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
    return 0;
  }
  return ti.tcpi_unacked;
}

/* Sheds the connection waiting on wl: accepted and closed at once with a
 * reset (SO_LINGER 0: no FIN exchange, no TIME_WAIT), before any TLS work
 * or any read; counted as accepted and closed for "shed". The client sees
 * its connection reset at once and may try again (elsewhere).
 * A reset costs the worker ~25 us (accept, close, the socket's teardown;
 * measured on loopback, where the client's side of the teardown runs on
 * the sender's CPU too), a tenth of a full handshake: at eight times the
 * rate a worker sustains, resetting every connection it cannot serve would
 * take most of its time. So each reset spends a unit of a budget that
 * each connection let in earns WL_SHED_PER_ADMIT of (WL_SHED_BURST to
 * start with and at most): up to four times the sustained rate every
 * excess connection is reset, past it the resets take at most about a
 * fifth of the worker's time. Without budget the connection is left in
 * the listen queue (wl->held: libuv stops polling the socket; the next
 * turn looks again), which fills up to its backlog; past it the kernel
 * drops SYNs, at no cost to postern (the client retransmits its SYN after
 * a second, and may get in then). */
static void wl_shed(pst_worker_t *worker, pst_wlistener_t *wl, const pst_listener_conf_t *lc) {
  uv_tcp_t *t = wl->shed_budget > 0 ? malloc(sizeof(*t)) : NULL;
  if (t == NULL) {
    wl->held = 1;
    return;
  }
  wl->shed_budget--;
  uv_tcp_init(&worker->loop, t);
  if (uv_accept((uv_stream_t *)&wl->handle, (uv_stream_t *)t) == 0) {
    uv_os_fd_t fd;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (uv_fileno((uv_handle_t *)t, &fd) == 0)
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  uv_close((uv_handle_t *)t, wl_on_shed_close);
  pst_metrics_conn_accepted(lc->metrics_slot);
  pst_metrics_conn_closed(lc->metrics_slot, PST_MCLOSE_SHED);
  wl->shed_since++;
  uint64_t now = uv_now(&worker->loop);
  if (wl->shed_warned_ms == 0 || now - wl->shed_warned_ms >= WL_FULL_WARN_MS) {
    pst_log_warn(
        "listener %s: worker %u is behind: %u handshakes in flight, %u connections "
        "queued (max_handshakes_in_flight %u): shedding new connections at accept "
        "(%llu since the last warning)",
        lc->name, worker->id, wl->n_handshakes, wl_queued(wl), lc->max_handshakes_in_flight,
        (unsigned long long)wl->shed_since);
    wl->shed_warned_ms = now;
    wl->shed_since = 0;
  }
}

/* A handshake in flight this old, at the bound, gives way to a new client
 * (pst_conn_evict_handshake): a quarter of the handshake timeout, at
 * least WL_STALE_MIN_MS. Under a flood the handshakes in flight are about
 * max_handshakes_in_flight / (the worker's rate) old, well under it. */
static uint64_t wl_stale_ms(const pst_listener_conf_t *lc) {
  uint64_t ms = lc->handshake_timeout_ms / 4;
  return ms < WL_STALE_MIN_MS ? WL_STALE_MIN_MS : ms;
}

/* Decides what becomes of the connection libuv holds for wl (it has
 * accepted it and waits for uv_accept): taken (a handshake starts), shed
 * (wl_shed), or left for the next loop turn (wl->held; libuv stops polling
 * the socket until then). The bound is on the handshake work the worker
 * owes: handshakes in flight plus connections waiting in the listen queue.
 * Above max_handshakes_in_flight new connections are shed, oldest queued
 * first, so that the handshakes already started finish in time instead of
 * every client getting slower until all of them time out (the collapse an
 * open-loop flood showed without it); but a handshake that has waited on
 * its client for long gives way to the new one instead, so that clients
 * which never finish theirs cannot hold the bound. Under the bound, at most
 * ACCEPT_BATCH connections are taken per loop turn. */
static void wl_take(pst_worker_t *worker, pst_wlistener_t *wl, const pst_listener_conf_t *lc) {
  unsigned bound = lc->max_handshakes_in_flight;
  if (wl->n_handshakes >= bound && pst_conn_evict_handshake(wl, wl_stale_ms(lc)) != 0) {
    wl_shed(worker, wl, lc);
    return;
  }
  if (worker->turn_accepted >= ACCEPT_BATCH) {
    /* The queue is only read when the turn's batch is full: one
     * getsockopt, not one per connection. */
    unsigned queued = wl_queued(wl);
    if ((uint64_t)wl->n_handshakes + 1 + queued > bound) {
      wl_shed(worker, wl, lc);
      return;
    }
    wl->held = 1;
    return;
  }
  worker->turn_accepted++;
  /* Budget spent lately: the worker has been shedding, and the connections
   * in its queue may have waited there until their clients gave up. */
  wl->check_gone = wl->shed_budget < WL_SHED_BURST;
  wl->shed_budget += WL_SHED_PER_ADMIT;
  if (wl->shed_budget > WL_SHED_BURST) wl->shed_budget = WL_SHED_BURST;
  worker_accept(worker, wl);
}

static void worker_on_connection(uv_stream_t *server, int status) {
  pst_wlistener_t *wl = PST_CONTAINER_OF(server, pst_wlistener_t, handle);
  pst_worker_t *worker = wl->worker;
  const pst_listener_conf_t *lc = worker->gen->listeners[wl->index].conf;
  if (status < 0) {
    /* EMFILE and friends: libuv already dropped the connection; go on. */
    pst_log_warn("listener %s: accept failed: %s", lc->name, uv_strerror(status));
    pst_metric_inc(PST_M_ACCEPT_ERRORS);
    return;
  }
  if (worker->state != PST_WORKER_RUNNING) return;
  if (wl->n_conns >= lc->max_connections) {
    /* Not calling uv_accept makes libuv stop polling this socket until we
     * do: the new connection waits in the kernel's backlog until a slot is
     * free (worker_conn_gone). To be fair to it, the connection that has
     * waited longest on its client gives way (pst_conn_evict): otherwise
     * clients that open connections and send nothing, or drip a request
     * head, would hold every slot. */
    int evicted = pst_conn_evict(wl) == 0;
    uint64_t now = uv_now(&worker->loop);
    if (!wl->paused && (wl->full_warned_ms == 0 || now - wl->full_warned_ms >= WL_FULL_WARN_MS)) {
      pst_log_warn("listener %s: worker %u at max_connections (%u): %s", lc->name, worker->id,
                   lc->max_connections,
                   evicted ? "closing the connection that waited longest on its client for each "
                             "new one"
                           : "every connection is busy: pausing accepts");
      wl->full_warned_ms = now;
    }
    wl->paused = 1;
    return;
  }
  wl_take(worker, wl, lc);
}

/* Only wakes the loop: the turn's prepare handle resumes what is held. */
static void worker_on_held_timer(uv_timer_t *t) { PST_UNUSED(t); }

/* A new loop turn: a new accept batch, and the sockets held back by the
 * last one's go first. What is still held after that gets a wakeup in
 * WL_HELD_RETRY_MS. */
static void worker_resume_held(pst_worker_t *worker) {
  worker->turn_accepted = 0;
  int held = 0;
  for (size_t i = 0; i < worker->n_listeners; i++) {
    pst_wlistener_t *wl = worker->listeners[i];
    if (!wl->held) continue;
    wl->held = 0;
    if (wl->open && wl->listed && worker->state == PST_WORKER_RUNNING) {
      worker_on_connection((uv_stream_t *)&wl->handle, 0);
    }
    held |= wl->held;
  }
  if (held && worker->state == PST_WORKER_RUNNING &&
      !uv_is_active((uv_handle_t *)&worker->held_timer)) {
    uv_timer_start(&worker->held_timer, worker_on_held_timer, WL_HELD_RETRY_MS, 0);
  }
}

static void worker_on_handle_close(uv_handle_t *h) { PST_UNUSED(h); }

/* Runs once per loop turn, after the turn's callbacks and before the loop
 * waits again: the turn's client output leaves in one write per connection. */
static void worker_on_prepare(uv_prepare_t *p) {
  pst_worker_t *worker = PST_CONTAINER_OF(p, pst_worker_t, flush_prepare);
  worker_resume_held(worker);
  pst_conn_flush_all(worker);
  pst_access_log_flush(worker->access_log);
}

static void worker_finish(pst_worker_t *worker) {
  if (worker->state == PST_WORKER_STOPPED) return;
  worker->state = PST_WORKER_STOPPED;
  pst_pools_shutdown(worker->pools);        /* pools made by the last connections' streams */
  pst_access_log_flush(worker->access_log); /* the last lines; the loop waits for them */
  pst_replay_redis_close(worker->replay_redis);
  uv_close((uv_handle_t *)&worker->wakeup, worker_on_handle_close);
  uv_close((uv_handle_t *)&worker->drain_timer, worker_on_handle_close);
  uv_close((uv_handle_t *)&worker->trim_timer, worker_on_handle_close);
  uv_close((uv_handle_t *)&worker->held_timer, worker_on_handle_close);
  uv_close((uv_handle_t *)&worker->flush_prepare, worker_on_handle_close);
}

/* The worker has had no connection for WORKER_TRIM_DELAY_MS. glibc keeps
 * freed memory in its arenas for reuse and returns only what sits at the
 * top of a heap: after a burst (thousands of connections with their
 * buffers) the freed chunks stay mapped, and RSS stays at the peak long
 * after the burst is gone. malloc_trim(0) gives back every whole free
 * page of every arena (madvise). It runs only when the worker goes quiet,
 * not after each connection, so a busy worker pays nothing; a worker that
 * is never quiet keeps its memory for reuse. */
static int worker_quiet(const pst_worker_t *worker) {
  return worker->n_conns == 0 ||
         (worker->peak_conns >= WORKER_TRIM_MIN_PEAK && worker->n_conns < worker->peak_conns / 4);
}

static void worker_on_trim(uv_timer_t *t) {
  pst_worker_t *worker = PST_CONTAINER_OF(t, pst_worker_t, trim_timer);
  if (!worker_quiet(worker)) return;
  malloc_trim(0);
  worker->peak_conns = worker->n_conns;
}

static void worker_on_drain_timeout(uv_timer_t *t) {
  pst_worker_t *worker = PST_CONTAINER_OF(t, pst_worker_t, drain_timer);
  if (worker->n_conns > 0) {
    pst_log_info("worker %u: shutdown_timeout reached: closing %u connections", worker->id,
                 worker->n_conns);
  }
  pst_conn_close_all(worker, PST_ESHUTDOWN, "shutdown timeout");
}

static void worker_drain(pst_worker_t *worker) {
  if (worker->state != PST_WORKER_RUNNING) return;
  worker->state = PST_WORKER_DRAINING;
  for (size_t i = 0; i < worker->n_listeners; i++) wl_close(worker->listeners[i]);
  /* Idle backend connections would keep the loop alive; http-mode front
   * ends stop taking requests (h2 GOAWAY) and end once their exchanges do. */
  pst_pools_shutdown(worker->pools);
  pst_conn_shutdown_all(worker);
  if (worker->n_conns == 0) {
    worker_finish(worker);
    return;
  }
  uv_timer_start(&worker->drain_timer, worker_on_drain_timeout,
                 worker->gen->cfg->shutdown_timeout_ms, 0);
}

/* ---- switching generations (reload) ---- */

/* The shared strike register's client follows the live generation;
 * connections accepted under an older one with another store get their
 * early data rejected (replay_redis.h: pst_replay_redis_claim). */
static void worker_replay_store(pst_worker_t *worker) {
  if (pst_replay_redis_configure(worker->replay_redis, &worker->gen->cfg->early_data_replay) != 0) {
    pst_log_error(
        "worker %u: out of memory for the 0-RTT shared strike register: early data "
        "is rejected",
        worker->id);
  }
}

/* Puts sw->gen in place on the worker's thread. Listeners that the new
 * generation keeps go on accepting on the same socket without a pause, under
 * their new index and settings; new ones start accepting; removed ones stop
 * accepting, and their open connections go on under the generation they were
 * accepted with until they close. Nothing here can fail but opening a new
 * listener's handle (logged; the other workers still accept on that port). */
static void worker_apply_switch(pst_worker_t *worker, pst_worker_switch_t *sw) {
  pst_wlistener_t **old = worker->listeners, **list = sw->list;
  size_t n_old = worker->n_listeners;
  for (size_t i = 0; i < sw->n_listeners; i++) {
    if (sw->keep[i] < 0) continue;
    list[i] = old[sw->keep[i]];
    old[sw->keep[i]] = NULL;
  }
  for (size_t j = 0; j < n_old; j++) {
    if (old[j] == NULL) continue;
    old[j]->listed = 0;
    wl_close(old[j]);
    wl_maybe_free(old[j]);
  }
  free(old);
  pst_gen_unref(worker->gen);
  worker->gen = sw->gen;
  sw->gen = NULL;
  /* Idle connections to servers the new generation dropped: closed now. */
  pst_pools_sweep(worker->pools, pst_balance_addr_used, worker->gen->cfg);
  worker->listeners = list;
  worker->n_listeners = sw->n_listeners;
  sw->list = NULL;
  worker_replay_store(worker);
  for (size_t i = 0; i < worker->n_listeners; i++) {
    pst_wlistener_t *wl = list[i];
    wl->listed = 1;
    wl->index = i;
    if (wl->fd >= 0 && !wl->open && !wl->closing) {
      /* New, or kept after it failed to open here before: try (again). */
      int rc = wl_open(worker, wl);
      if (rc != 0) {
        pst_log_error("worker %u: cannot accept on %s: %s", worker->id,
                      worker->gen->listeners[i].conf->listen.text, uv_strerror(rc));
        wl_close(wl);
      }
      continue;
    }
    if (wl->open) wl_resize_backlog(wl);
    if (wl->paused && wl->open && wl->n_conns < wl_max_connections(wl)) {
      /* A higher max_connections: the socket libuv has been holding. */
      wl->paused = 0;
      worker_on_connection((uv_stream_t *)&wl->handle, 0);
    }
  }
}

pst_worker_switch_t *pst_worker_switch_new(pst_gen_t *gen, const long *keep, const int *fds) {
  size_t n = gen->cfg->n_listeners;
  pst_worker_switch_t *sw = calloc(1, sizeof(*sw));
  if (sw == NULL) return NULL;
  sw->n_listeners = n;
  sw->keep = calloc(n ? n : 1, sizeof(*sw->keep));
  sw->list = calloc(n ? n : 1, sizeof(*sw->list));
  if (sw->keep == NULL || sw->list == NULL) goto fail;
  for (size_t i = 0; i < n; i++) {
    sw->keep[i] = keep[i];
    if (keep[i] >= 0) continue;
    sw->list[i] = wl_new(-1);
    if (sw->list[i] == NULL) goto fail;
  }
  /* Nothing can fail from here: the sockets change hands. */
  for (size_t i = 0; i < n; i++) {
    if (keep[i] < 0) sw->list[i]->fd = fds[i];
  }
  sw->gen = pst_gen_ref(gen);
  return sw;
fail:
  pst_worker_switch_free(sw);
  return NULL;
}

void pst_worker_switch_free(pst_worker_switch_t *sw) {
  if (sw == NULL) return;
  if (sw->list != NULL) {
    for (size_t i = 0; i < sw->n_listeners; i++) {
      pst_wlistener_t *wl = sw->list[i];
      if (wl == NULL) continue;
      if (wl->fd >= 0) close(wl->fd);
      free(wl);
    }
  }
  free(sw->list);
  free(sw->keep);
  pst_gen_unref(sw->gen);
  free(sw);
}

void pst_worker_switch(pst_worker_t *worker, pst_worker_switch_t *sw, void (*done)(void *arg),
                       void *arg) {
  sw->done = done;
  sw->done_arg = arg;
  pst_worker_switch_t *prev = atomic_exchange(&worker->pending_switch, sw);
  if (prev != NULL) {
    /* The caller waits for each switch to be done before the next one;
     * should one still be waiting, the newer generation replaces it. */
    if (prev->done != NULL) prev->done(prev->done_arg);
    pst_worker_switch_free(prev);
  }
  uv_async_send(&worker->wakeup);
}

/* Takes a pending switch: applied while the worker runs, dropped once it
 * drains (its connections keep their generation; new sockets are closed). */
static void worker_take_switch(pst_worker_t *worker) {
  pst_worker_switch_t *sw = atomic_exchange(&worker->pending_switch, NULL);
  if (sw == NULL) return;
  if (worker->state == PST_WORKER_RUNNING && !atomic_load(&worker->stop_requested)) {
    worker_apply_switch(worker, sw);
  }
  void (*done)(void *) = sw->done;
  void *arg = sw->done_arg;
  pst_worker_switch_free(sw);
  if (done != NULL) done(arg);
}

static void worker_on_wakeup(uv_async_t *a) {
  pst_worker_t *worker = PST_CONTAINER_OF(a, pst_worker_t, wakeup);
  worker_take_switch(worker);
  if (atomic_load(&worker->stop_requested)) worker_drain(worker);
}

/* worker->conn_gone (worker-t.h). */
static void worker_conn_gone(pst_worker_t *worker, pst_wlistener_t *wl) {
  assert(worker->n_conns > 0 && wl->n_conns > 0);
  worker->n_conns--;
  wl->n_conns--;
  atomic_store_explicit(&worker->open_conns, worker->n_conns, memory_order_relaxed);
  if (wl->paused && wl->open && wl->listed && wl->n_conns < wl_max_connections(wl)) {
    wl->paused = 0;
    worker_on_connection((uv_stream_t *)&wl->handle, 0); /* the socket libuv has been holding */
  }
  wl_maybe_free(wl);
  if (worker->state == PST_WORKER_DRAINING && worker->n_conns == 0) {
    worker_finish(worker);
    return;
  }
  if (worker_quiet(worker) && !uv_is_active((uv_handle_t *)&worker->trim_timer)) {
    uv_timer_start(&worker->trim_timer, worker_on_trim, WORKER_TRIM_DELAY_MS, 0);
  }
}

static void worker_run(void *arg) {
  pst_worker_t *worker = arg;
  /* Its own counters, before anything is counted (metrics.h). */
  if (pst_metrics_thread_attach() != 0) {
    pst_log_warn("worker %u: no memory for counters of its own: using the shared ones", worker->id);
  }
  worker_replay_store(worker);
  uv_run(&worker->loop, UV_RUN_DEFAULT);
  /* The loop ends when every handle is closed, so every connection (and its
   * WOLFSSL) of this thread is freed: the shared generator can go. */
  pst_tls_thread_cleanup();
  if (worker->on_exit != NULL) worker->on_exit(worker, worker->on_exit_arg);
}

static int worker_listen(pst_worker_t *worker) {
  for (size_t i = 0; i < worker->n_listeners; i++) {
    pst_wlistener_t *wl = worker->listeners[i];
    wl->index = i;
    wl->listed = 1;
    int rc = wl_open(worker, wl);
    if (rc != 0) return rc;
  }
  return 0;
}

/* Drops the worker's listeners: each is freed at once or, with its handle
 * closing, from its close callback. */
static void worker_unlist(pst_worker_t *worker) {
  for (size_t i = 0; worker->listeners != NULL && i < worker->n_listeners; i++) {
    pst_wlistener_t *wl = worker->listeners[i];
    if (wl == NULL) continue;
    wl->listed = 0;
    wl_close(wl);
    wl_maybe_free(wl);
  }
  free(worker->listeners);
  worker->listeners = NULL;
}

int pst_worker_start(pst_worker_t *worker, unsigned id, pst_gen_t *gen, int *listen_fds) {
  worker->id = id;
  worker->state = PST_WORKER_RUNNING;
  atomic_init(&worker->stop_requested, 0);
  atomic_init(&worker->pending_switch, NULL);
  worker->n_listeners = gen->cfg->n_listeners;
  worker->listeners =
      calloc(worker->n_listeners ? worker->n_listeners : 1, sizeof(*worker->listeners));
  worker->slab = malloc(PST_READ_SLAB);
  worker->plain = malloc(PST_RECORD_MAX);
  worker->conn_gone = worker_conn_gone;
  int rc = worker->listeners == NULL || worker->slab == NULL || worker->plain == NULL ? -ENOMEM : 0;
  for (size_t i = 0; rc == 0 && i < worker->n_listeners; i++) {
    worker->listeners[i] = wl_new(listen_fds[i]);
    if (worker->listeners[i] == NULL) {
      rc = -ENOMEM;
    } else {
      listen_fds[i] = -1; /* the listener owns it now */
    }
  }
  if (rc == 0) rc = uv_loop_init(&worker->loop);
  if (rc != 0) goto fail;
  worker->pools = pst_pools_new(&worker->loop);
  worker->access_log = pst_access_log_new(&worker->loop);
  worker->replay_redis = pst_replay_redis_new(&worker->loop, id);
  if (worker->pools == NULL || worker->access_log == NULL || worker->replay_redis == NULL) {
    rc = -ENOMEM;
    goto fail_loop;
  }
  worker->loop.data = worker;
  worker->gen = pst_gen_ref(gen);
  uv_async_init(&worker->loop, &worker->wakeup, worker_on_wakeup);
  uv_timer_init(&worker->loop, &worker->drain_timer);
  uv_timer_init(&worker->loop, &worker->trim_timer);
  /* Like the prepare handle, it must not keep the loop alive. */
  uv_unref((uv_handle_t *)&worker->trim_timer);
  uv_timer_init(&worker->loop, &worker->held_timer);
  uv_unref((uv_handle_t *)&worker->held_timer);
  uv_prepare_init(&worker->loop, &worker->flush_prepare);
  uv_prepare_start(&worker->flush_prepare, worker_on_prepare);
  /* It must not keep the loop alive: connections with output due do. */
  uv_unref((uv_handle_t *)&worker->flush_prepare);
  rc = worker_listen(worker);
  if (rc == 0) rc = uv_thread_create(&worker->thread, worker_run, worker);
  if (rc == 0) return 0;
  /* Unwind on this thread: the loop never ran. */
  worker_unlist(worker);
  uv_close((uv_handle_t *)&worker->wakeup, NULL);
  uv_close((uv_handle_t *)&worker->drain_timer, NULL);
  uv_close((uv_handle_t *)&worker->trim_timer, NULL);
  uv_close((uv_handle_t *)&worker->held_timer, NULL);
  uv_close((uv_handle_t *)&worker->flush_prepare, NULL);
  pst_replay_redis_close(worker->replay_redis);
  uv_run(&worker->loop, UV_RUN_DEFAULT);
  pst_gen_unref(worker->gen);
  worker->gen = NULL;
fail_loop:
  pst_pools_shutdown(worker->pools);
  pst_pools_free(worker->pools);
  pst_access_log_free(worker->access_log);
  if (worker->replay_redis != NULL) {
    pst_replay_redis_close(worker->replay_redis);
    uv_run(&worker->loop, UV_RUN_DEFAULT);
  }
  pst_replay_redis_free(worker->replay_redis);
  worker->pools = NULL;
  worker->access_log = NULL;
  worker->replay_redis = NULL;
  uv_loop_close(&worker->loop);
fail:
  worker_unlist(worker);
  for (size_t i = 0; i < worker->n_listeners; i++) {
    if (listen_fds[i] >= 0) close(listen_fds[i]);
    listen_fds[i] = -1;
  }
  free(worker->slab);
  free(worker->plain);
  worker->slab = worker->plain = NULL;
  return rc;
}

void pst_worker_stop(pst_worker_t *worker) {
  atomic_store(&worker->stop_requested, 1);
  uv_async_send(&worker->wakeup);
}

unsigned pst_worker_open_conns(const pst_worker_t *worker) {
  return atomic_load_explicit(&worker->open_conns, memory_order_relaxed);
}

void pst_worker_join(pst_worker_t *worker) {
  uv_thread_join(&worker->thread);
  /* A switch posted as the worker stopped was never taken. */
  pst_worker_switch_t *sw = atomic_exchange(&worker->pending_switch, NULL);
  if (sw != NULL) {
    if (sw->done != NULL) sw->done(sw->done_arg);
    pst_worker_switch_free(sw);
  }
  /* The loop ran to its end: every handle is closed, every connection gone. */
  worker_unlist(worker);
  pst_pools_free(worker->pools);
  pst_access_log_free(worker->access_log);
  pst_replay_redis_free(worker->replay_redis);
  worker->pools = NULL;
  worker->access_log = NULL;
  worker->replay_redis = NULL;
  uv_loop_close(&worker->loop);
  pst_gen_unref(worker->gen);
  free(worker->slab);
  free(worker->plain);
  worker->gen = NULL;
  worker->listeners = NULL;
  worker->slab = worker->plain = NULL;
}
