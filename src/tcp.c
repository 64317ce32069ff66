/* postern: the tcp relay (see tcp.h). */
#include "postern/tcp.h"

#include <assert.h>
#include <stdlib.h>

#include "postern/balance.h"
#include "postern/common.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/pool.h"

/* Where the backend connection stands. Each direction's end is tracked by
 * the flags below: the relay is done once both directions ended and both
 * ends were delivered. */
typedef enum {
  TCP_CONNECTING = 0, /* connect in flight: what the client sends queues behind it */
  TCP_RELAYING = 1,   /* connected: bytes flow both ways */
  TCP_GONE = 2,       /* the backend connection is released (closing, or failed) */
} tcp_state_t;

typedef struct {
  pst_app_t base;
  pst_bconn_t *b;
  pst_pick_t pick;   /* the backend set's server leased (balance.h) */
  pst_buf_t pending; /* client bytes that wait for the connect (kept for a retry) */
  tcp_state_t state;
  unsigned client_eof : 1;        /* the client finished sending */
  unsigned backend_eof : 1;       /* the backend finished sending */
  unsigned backend_shut_done : 1; /* the client's end was delivered to the backend */
  unsigned client_shut_done : 1;  /* the backend's end was delivered to the client */
  unsigned client_paused : 1;     /* the client is not read: the backend's queue is full */
  unsigned backend_paused : 1;    /* the backend is not read: the client's queue is full */
} tcp_app_t;

static tcp_app_t *T(pst_app_t *a) { return (tcp_app_t *)a; }

/* The one place the state changes: CONNECTING -> RELAYING -> GONE, where
 * RELAYING may be skipped. */
static void tcp_set_state(tcp_app_t *t, tcp_state_t state) {
  assert(state > t->state || (state == TCP_GONE && t->state == TCP_GONE));
  t->state = state;
}

static void tcp_close(tcp_app_t *t, int err, const char *reason) {
  t->base.host->ops->close(t->base.host, err, reason);
}

/* Both directions finished and were delivered: a normal end. */
static void tcp_check_done(tcp_app_t *t) {
  if (t->client_eof && t->backend_eof && t->backend_shut_done && t->client_shut_done) {
    tcp_close(t, 0, "done");
  }
}

/* ---- backend events ---- */

static const pst_bconn_events_t tcp_events;

/* Leases a connection to bc for the tcp_app_t arg (a pst_balance_lease_fn:
 * a tcp connection is never pooled, so a retry is no different) and reads
 * it from the start. Returns 0 or a negative error. */
static int tcp_lease(void *arg, const pst_backend_conf_t *bc, int retry) {
  tcp_app_t *t = arg;
  pst_host_t *h = t->base.host;
  int reused, err = 0;
  t->b = pst_pool_lease(h->pools, h->lc, bc, PST_LEASE_ONCE, &tcp_events, t, &reused, &err);
  if (t->b == NULL) return err;
  /* The connect's share of timeouts.backend_connect (balance.h). */
  pst_bconn_timer(t->b, pst_balance_connect_ms(&t->pick, h->lc->backend_connect_timeout_ms));
  /* The backend is read from the start: stopping and starting it around
   * the connect would cost epoll_ctl calls on every connection. */
  pst_bconn_read(t->b, 1);
  /* proxy_protocol: the header is the first bytes each server tried gets,
   * queued behind the connect, before anything the client sends. */
  if (bc->proxy_protocol == PST_PROXY_NONE) return 0;
  int rc = pst_bconn_write_proxy(t->b, h, bc->proxy_protocol);
  if (rc != 0) {
    pst_bconn_release(t->b, 0);
    t->b = NULL;
  }
  return rc;
}

/* The connect to the current server failed (status): another server of the
 * set, within its retries and the connect timeout; else the connection
 * closes. */
static void tcp_connect_failed(tcp_app_t *t, int status) {
  pst_host_t *h = t->base.host;
  pst_balance_connected(&t->pick, status);
  pst_log_warn("conn %llu: backend %s: server %s: connect failed: %s", (unsigned long long)h->id,
               h->backend->addr.text, pst_balance_server(&t->pick), pst_strerror(status));
  pst_bconn_release(t->b, 0);
  t->b = NULL;
  const pst_backend_conf_t *bc = pst_balance_next(&t->pick, 1, h->lc->backend_connect_timeout_ms);
  if (bc != NULL &&
      pst_balance_lease(&t->pick, bc, 1, h->lc->backend_connect_timeout_ms, tcp_lease, t) == 0) {
    return;
  }
  tcp_set_state(t, TCP_GONE);
  tcp_close(t, status,
            status == PST_ETIMEDOUT ? "backend connect timeout" : "backend connect failed");
}

static void tcp_on_connect(void *arg, int status) {
  tcp_app_t *t = arg;
  if (status < 0) {
    tcp_connect_failed(t, status);
    return;
  }
  pst_balance_connected(&t->pick, 0);
  tcp_set_state(t, TCP_RELAYING);
  int rc = 0;
  if (t->pending.len > 0) {
    rc = pst_bconn_write(t->b, pst_buf_head(&t->pending), t->pending.len);
    pst_buf_free(&t->pending);
  }
  if (rc == 0 && t->client_eof) rc = pst_bconn_shutdown(t->b);
  if (rc != 0) {
    tcp_close(t, rc, "backend write failed");
    return;
  }
  if (t->client_paused && pst_bconn_queued(t->b) < PST_BACKEND_LOW_WATER) {
    t->client_paused = 0;
    t->base.host->ops->pause(t->base.host, 0);
  }
}

static void tcp_on_read(void *arg, const char *data, ssize_t n) {
  tcp_app_t *t = arg;
  pst_host_t *h = t->base.host;
  if (n == UV_EOF) {
    /* close_notify, then FIN, to the client (RFC 8446 6.1); during the
     * handshake that waits for it to complete. */
    t->backend_eof = 1;
    h->ops->end(h);
    return;
  }
  if (n < 0) {
    tcp_close(t, (int)n, "backend read failed");
    return;
  }
  h->ops->touch(h);
  if (h->ops->send(h, data, (size_t)n) != 0) return; /* closing, or the client side is shut */
  if (h->ops->queued(h) > PST_CLIENT_HIGH_WATER) {
    t->backend_paused = 1; /* tcp_drain resumes */
    pst_bconn_read(t->b, 0);
  }
}

static void tcp_on_drain(void *arg) {
  tcp_app_t *t = arg;
  if (!t->client_paused || pst_bconn_queued(t->b) >= PST_BACKEND_LOW_WATER) return;
  t->client_paused = 0;
  t->base.host->ops->pause(t->base.host, 0);
}

static void tcp_on_timer(void *arg) {
  tcp_app_t *t = arg;
  /* The only timer the relay arms is the connect timeout. */
  tcp_connect_failed(t, PST_ETIMEDOUT);
}

static void tcp_on_write_error(void *arg, int status) {
  tcp_close(arg, status, "backend write failed");
}

static void tcp_on_shutdown(void *arg, int status) {
  tcp_app_t *t = arg;
  if (status < 0) {
    tcp_close(t, status, "backend shutdown failed");
    return;
  }
  t->backend_shut_done = 1;
  tcp_check_done(t);
}

static const pst_bconn_events_t tcp_events = {
    .on_connect = tcp_on_connect,
    .on_read = tcp_on_read,
    .on_drain = tcp_on_drain,
    .on_timer = tcp_on_timer,
    .on_write_error = tcp_on_write_error,
    .on_shutdown = tcp_on_shutdown,
};

/* ---- the connection's calls ---- */

static int tcp_feed(pst_app_t *a, const char *data, size_t len) {
  tcp_app_t *t = T(a);
  if (t->state == TCP_GONE) return 0;
  if (t->state == TCP_CONNECTING) {
    /* Kept until the connect succeeds, so that a retry on another server
     * sends them too. */
    if (pst_buf_append(&t->pending, data, len) != 0) {
      tcp_close(t, -ENOMEM, "out of memory");
      return -ENOMEM;
    }
    if (!t->client_paused && t->pending.len > PST_BACKEND_HIGH_WATER) {
      t->client_paused = 1; /* tcp_on_connect resumes */
      a->host->ops->pause(a->host, 1);
    }
    return 0;
  }
  int rc = pst_bconn_write(t->b, data, len);
  if (rc != 0) {
    tcp_close(t, rc, "backend write failed");
    return rc;
  }
  if (!t->client_paused && pst_bconn_queued(t->b) > PST_BACKEND_HIGH_WATER) {
    t->client_paused = 1; /* tcp_on_drain resumes */
    a->host->ops->pause(a->host, 1);
  }
  return 0;
}

static void tcp_client_eof(pst_app_t *a) {
  tcp_app_t *t = T(a);
  t->client_eof = 1;
  if (t->state != TCP_RELAYING) return; /* tcp_on_connect shuts the backend's side */
  if (t->backend_eof && pst_bconn_queued(t->b) == 0) {
    /* Both directions are over and nothing waits for the backend: the close
     * that follows ends its side; a shutdown(2) first would only cost a
     * system call. */
    t->backend_shut_done = 1;
    tcp_check_done(t);
    return;
  }
  int rc = pst_bconn_shutdown(t->b);
  if (rc != 0) tcp_close(t, rc, "backend shutdown failed");
}

static void tcp_drain(pst_app_t *a) {
  tcp_app_t *t = T(a);
  if (!t->backend_paused || t->state == TCP_GONE) return;
  t->backend_paused = 0;
  pst_bconn_read(t->b, 1);
}

static void tcp_client_shut(pst_app_t *a) {
  tcp_app_t *t = T(a);
  t->client_shut_done = 1;
  tcp_check_done(t);
}

static void tcp_shutdown(pst_app_t *a) {
  /* A byte stream has no point at which to stop taking work: the relay
   * runs until it ends or shutdown_timeout closes it. */
}

static void tcp_release(tcp_app_t *t) {
  pst_bconn_release(t->b, 0);
  t->b = NULL;
  pst_balance_done(&t->pick);
  pst_buf_free(&t->pending);
  tcp_set_state(t, TCP_GONE);
}

static void tcp_closing(pst_app_t *a) { tcp_release(T(a)); }

static void tcp_destroy(pst_app_t *a) {
  tcp_release(T(a));
  free(a);
}

static const pst_app_ops_t tcp_ops = {
    .feed = tcp_feed,
    .client_eof = tcp_client_eof,
    .drain = tcp_drain,
    .client_shut = tcp_client_shut,
    .shutdown = tcp_shutdown,
    .closing = tcp_closing,
    .destroy = tcp_destroy,
};

pst_app_t *pst_tcp_app_new(pst_host_t *host, int *err) {
  tcp_app_t *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    *err = -ENOMEM;
    return NULL;
  }
  t->base.ops = &tcp_ops;
  t->base.host = host;
  const pst_backend_conf_t *bc = pst_balance_pick(host->backend, host->peer_ip, &t->pick);
  *err = pst_balance_lease(&t->pick, bc, 0, host->lc->backend_connect_timeout_ms, tcp_lease, t);
  if (*err != 0 && *err != -ENOMEM) {
    pst_log_warn("conn %llu: backend %s: server %s: connect failed: %s",
                 (unsigned long long)host->id, host->backend->addr.text,
                 pst_balance_server(&t->pick), pst_strerror(*err));
  }
  if (*err != 0) {
    pst_balance_done(&t->pick);
    free(t);
    return NULL;
  }
  return &t->base;
}
