/* postern: 0-RTT early data on one connection (see early.h). */
#include "postern/early.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "postern/common.h"
#include "postern/hello.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/replay.h"
#include "postern/replay_redis.h"
#include "postern/ticket.h"
#include "postern/tls.h"

/* The strike register being full is worth a warning, not one per
 * connection: at most one every 10 s. */
#define EARLY_FULL_WARN_MS 10000

static void early_warn_full(const pst_listener_conf_t *lc, uint64_t now) {
  static atomic_uint_fast64_t last;
  uint64_t prev = atomic_load_explicit(&last, memory_order_relaxed);
  if (prev != 0 && now - prev < EARLY_FULL_WARN_MS) return;
  if (!atomic_compare_exchange_strong(&last, &prev, now)) return;
  pst_log_warn(
      "listener %s: the 0-RTT strike register is full (%d ClientHellos in %d s): "
      "early data is rejected until entries age out; clients fall back to 1-RTT",
      lc->name, PST_REPLAY_CAPACITY, PST_REPLAY_WINDOW_MS / 1000);
}

/* Sets what became of the early data and counts it, once per connection:
 * when it is known, since a replay never completes its handshake. */
static void early_settle(pst_early_t *e, pst_early_status_t status) {
  e->status = status;
  switch (status) {
    case PST_EARLY_ACCEPTED: pst_metrics_early(e->metrics_slot, PST_MEARLY_ACCEPTED); break;
    case PST_EARLY_REJECTED: pst_metrics_early(e->metrics_slot, PST_MEARLY_REJECTED); break;
    case PST_EARLY_REPLAYED: pst_metrics_early(e->metrics_slot, PST_MEARLY_REPLAYED); break;
    case PST_EARLY_NOT_SENT: break;
  }
}

/* Gives back the local register's claim of a ClientHello whose early data
 * is not accepted after all. */
static void early_release(pst_early_t *e) {
  if (!e->claimed) return;
  pst_replay_release(pst_replay_global(), e->replay_key, pst_ticket_now_ms());
  e->claimed = 0;
}

/* A ClientHello waiting for the shared register (early.h: wait). */
struct pst_early_wait_s {
  pst_replay_redis_req_t *req;
  void (*resume)(void *arg);
  void *arg;
  uint64_t conn_id; /* for logs */
};

/* The shared register's answer (replay_redis.h), or its failure. */
static void early_on_shared(void *arg, int result) {
  pst_early_t *e = arg;
  struct pst_early_wait_s *w = e->wait;
  assert(e->phase == PST_EARLY_SHARED && w != NULL);
  e->wait = NULL;
  e->phase = PST_EARLY_DONE;
  if (result == PST_REPLAY_REDIS_CLAIMED) {
    e->phase = PST_EARLY_READING;
  } else if (result == PST_REPLAY_SEEN) {
    /* Claimed elsewhere first: a replay (to this instance too, perhaps, if
     * the first one's claim had not landed). The local entry stays: a
     * local duplicate is then caught without a round trip. */
    e->claimed = 0;
    early_settle(e, PST_EARLY_REPLAYED);
    pst_log_debug("conn %llu: replayed ClientHello (shared strike register): early data rejected",
                  (unsigned long long)w->conn_id);
  } else {
    /* Fail closed: never accepted unchecked (counted by replay_redis). */
    early_release(e);
    early_settle(e, PST_EARLY_REJECTED);
  }
  void (*resume)(void *) = w->resume;
  void *resume_arg = w->arg;
  free(w);
  resume(resume_arg);
}

/* The local register let the ClientHello through: asks the shared one.
 * Returns PST_EARLY_WAIT, or 0 when the claim failed at once (decided:
 * rejected). */
static int early_ask_shared(pst_early_t *e, const pst_early_shared_t *shared, uint64_t conn_id) {
  struct pst_early_wait_s *w = calloc(1, sizeof(*w));
  int rc = w == NULL ? -ENOMEM
                     : pst_replay_redis_claim(shared->client, shared->conf, e->replay_key,
                                              early_on_shared, e, &w->req);
  if (rc != 0) {
    free(w);
    early_release(e);
    early_settle(e, PST_EARLY_REJECTED);
    return 0;
  }
  w->resume = shared->resume;
  w->arg = shared->arg;
  w->conn_id = conn_id;
  e->wait = w;
  e->phase = PST_EARLY_SHARED;
  return PST_EARLY_WAIT;
}

int pst_early_hello(pst_early_t *e, WOLFSSL *ssl, const pst_listener_conf_t *lc,
                    const pst_early_shared_t *shared, const char *in, size_t len, int eof,
                    uint64_t conn_id, const char *peer) {
  assert(e->phase == PST_EARLY_HELLO);
  pst_hello_t h;
  int rc = pst_hello_scan((const uint8_t *)in, len, &h);
  if (rc == PST_HELLO_NEED_MORE && !eof) return 1;
  e->phase = PST_EARLY_DONE;
  e->status = PST_EARLY_NOT_SENT;
  e->metrics_slot = lc->metrics_slot;
  if (rc != 0 || !h.early_data || !(lc->versions & PST_TLS13)) return 0;
  if (lc->early_data != PST_EARLY_DATA_ACCEPT) {
    early_settle(e, PST_EARLY_REJECTED);
    /* Skip it (RFC 8446 4.2.10). wolfSSL skips early records up to the
     * connection's max_early_data, 0 under this policy: without this, a
     * client holding a ticket from a postern that accepts early data (a
     * fleet, a policy changed by a reload), whose ticket is refused, would
     * get a fatal alert instead of a full handshake. The ticket sent after
     * the handshake still advertises 0 (pst_early_finish). */
    wolfSSL_set_max_early_data(ssl, lc->max_early_data);
    return 0;
  }
  /* Early data is only accepted with the first PSK (RFC 8446 4.2.10); with
   * a single identity, "resumed" means "early data accepted". And never
   * with a HelloRetryRequest (RFC 8446 4.2.10): wolfSSL 5.5.4 accepts the
   * early data of the first ClientHello and then asks for a second one,
   * which fails the handshake; so a ClientHello without a key share postern
   * can use (tls.c) is not given the chance. */
  int share_ok = 0;
  for (unsigned i = 0; i < h.n_share_groups; i++) {
    share_ok |= pst_tls_group_offered(lc, h.share_groups[i]);
  }
  pst_replay_t *reg = pst_replay_global();
  if (!h.psk || h.identities != 1 || !share_ok || reg == NULL) {
    early_settle(e, PST_EARLY_REJECTED);
    return 0;
  }
  uint64_t now = pst_ticket_now_ms();
  pst_replay_key(h.binder, h.binder_len, e->replay_key);
  rc = pst_replay_claim(reg, e->replay_key, now);
  if (rc == PST_REPLAY_SEEN) {
    early_settle(e, PST_EARLY_REPLAYED);
    pst_log_debug("conn %llu client=%s: replayed ClientHello: early data rejected",
                  (unsigned long long)conn_id, peer);
    return 0;
  }
  if (rc != 0) {
    early_warn_full(lc, now);
    early_settle(e, PST_EARLY_REJECTED);
    return 0;
  }
  e->claimed = 1;
  if (shared != NULL && shared->client != NULL && shared->conf->store == PST_REPLAY_STORE_REDIS) {
    return early_ask_shared(e, shared, conn_id);
  }
  e->phase = PST_EARLY_READING;
  return 0;
}

/* wolfSSL has processed the ClientHello: it resumed (and so accepted the
 * early data), or it refused the PSK and runs a full handshake, skipping
 * the early data. A refused ClientHello gives its claim back. */
static void early_decide(pst_early_t *e, WOLFSSL *ssl) {
  e->decided = 1;
  if (wolfSSL_session_reused(ssl)) {
    early_settle(e, PST_EARLY_ACCEPTED);
    return;
  }
  /* A claim in the shared register stays until it expires: the early
   * data of a ClientHello whose PSK was refused is never accepted anyway. */
  early_settle(e, PST_EARLY_REJECTED);
  early_release(e);
}

int pst_early_read(pst_early_t *e, WOLFSSL *ssl, char *plain, const pst_buf_t *flight) {
  assert(e->phase == PST_EARLY_READING);
  for (;;) {
    int got = 0;
    int n = wolfSSL_read_early_data(ssl, plain, PST_RECORD_MAX, &got);
    /* The server's first flight is queued once the ClientHello has been
     * processed: the PSK was accepted or refused by then. */
    if (!e->decided && flight->len > 0) early_decide(e, ssl);
    if (n > 0) {
      if (pst_buf_append(&e->data, plain, (size_t)n) != 0) return -ENOMEM;
      e->bytes += (uint64_t)n;
      continue;
    }
    int err = n == 0 ? WOLFSSL_ERROR_ZERO_RETURN : wolfSSL_get_error(ssl, n);
    if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) return 1;
    /* The client's Finished came: no more early data. */
    if (err == WOLFSSL_ERROR_ZERO_RETURN) {
      e->phase = PST_EARLY_DONE;
      return 0;
    }
    return PST_ETLS;
  }
}

void pst_early_take(pst_early_t *e, pst_buf_t *out) {
  assert(out->len == 0 && out->data == NULL);
  *out = e->data;
  memset(&e->data, 0, sizeof(e->data));
}

void pst_early_free(pst_early_t *e) {
  if (e->wait != NULL) {
    pst_replay_redis_cancel(e->wait->req);
    free(e->wait);
    e->wait = NULL;
  }
  pst_buf_free(&e->data);
}

int pst_early_finish(pst_early_t *e, WOLFSSL *ssl, const pst_listener_conf_t *lc) {
  if (e->claimed && !e->decided) early_decide(e, ssl);
  e->phase = PST_EARLY_DONE;
  if (!lc->session_tickets || wolfSSL_GetVersion(ssl) != WOLFSSL_TLSV1_3) return 0;
  /* RFC 8446 4.6.1: the ticket's max_early_data_size is the policy's. A
   * resumed connection carries the value of the ticket it resumed with
   * (wolfSSL copies it into the connection), which would otherwise be
   * handed on to the new ticket. */
  wolfSSL_set_max_early_data(ssl, lc->early_data == PST_EARLY_DATA_ACCEPT ? lc->max_early_data : 0);
  if (wolfSSL_send_SessionTicket(ssl) != WOLFSSL_SUCCESS) return PST_ETLS;
  return 0;
}

const char *pst_early_status_name(pst_early_status_t status) {
  switch (status) {
    case PST_EARLY_ACCEPTED: return "accepted";
    case PST_EARLY_REJECTED:
    case PST_EARLY_REPLAYED: return "rejected";
    case PST_EARLY_NOT_SENT: break;
  }
  return "not sent";
}
