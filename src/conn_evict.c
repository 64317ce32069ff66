/* postern: the eviction order of a worker's listener (the conn module;
 * conn_int.h): the connections that wait on their client, the one that has
 * waited longest first. A new client at max_connections closes the first
 * (pst_conn_evict); at max_handshakes_in_flight, the first handshake gone
 * stale (pst_conn_evict_handshake). Otherwise clients that open
 * connections and send nothing, or drip a request head, would hold every
 * slot. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>

#include <uv.h>

#include "conn_int.h"
#include "postern/common.h"
#include "postern/conn.h"

void pst_conn_evict_unlink(pst_conn_t *conn) {
  if (!conn->evict_listed) return;
  pst_wlistener_t *wl = conn->wl;
  if (conn->evict_prev != NULL)
    conn->evict_prev->evict_next = conn->evict_next;
  else
    wl->evict_first = conn->evict_next;
  if (conn->evict_next != NULL)
    conn->evict_next->evict_prev = conn->evict_prev;
  else
    wl->evict_last = conn->evict_prev;
  conn->evict_prev = conn->evict_next = NULL;
  conn->evict_listed = 0;
}

void pst_conn_evict_requeue(pst_conn_t *conn) {
  pst_conn_evict_unlink(conn);
  if (conn->state == PST_CONN_CLOSING || conn->waiting > 0) return;
  pst_wlistener_t *wl = conn->wl;
  conn->evict_prev = wl->evict_last;
  if (wl->evict_last != NULL)
    wl->evict_last->evict_next = conn;
  else
    wl->evict_first = conn;
  wl->evict_last = conn;
  conn->evict_listed = 1;
}

int pst_conn_evict(pst_wlistener_t *wl) {
  pst_conn_t *victim = wl->evict_first;
  if (victim == NULL) return -EBUSY;
  assert(victim->state != PST_CONN_CLOSING && victim->waiting == 0);
  pst_conn_close(victim, PST_ELIMIT,
                 victim->head ? "closed for a new client at max_connections: request head "
                                "incomplete"
                 : victim->state == PST_CONN_OPEN
                     ? "closed for a new client at max_connections: idle"
                     : "closed for a new client at max_connections: handshake incomplete");
  return 0;
}

void pst_conn_hs_link(pst_conn_t *conn) {
  pst_wlistener_t *wl = conn->wl;
  conn->hs_prev = wl->hs_last;
  conn->hs_next = NULL;
  if (wl->hs_last != NULL)
    wl->hs_last->hs_next = conn;
  else
    wl->hs_first = conn;
  wl->hs_last = conn;
  wl->n_handshakes++;
}

void pst_conn_hs_unlink(pst_conn_t *conn) {
  pst_wlistener_t *wl = conn->wl;
  assert(wl->n_handshakes > 0);
  if (conn->hs_prev != NULL)
    conn->hs_prev->hs_next = conn->hs_next;
  else
    wl->hs_first = conn->hs_next;
  if (conn->hs_next != NULL)
    conn->hs_next->hs_prev = conn->hs_prev;
  else
    wl->hs_last = conn->hs_prev;
  conn->hs_prev = conn->hs_next = NULL;
  wl->n_handshakes--;
}

/* The oldest handshake is the first of its own list, not of the eviction
 * order: that one is sorted by each connection's last traffic, where
 * idle kept-alive connections come first and could hide every handshake
 * from a walk of bounded length. */
int pst_conn_evict_handshake(pst_wlistener_t *wl, uint64_t min_age_ms) {
  pst_conn_t *c = wl->hs_first;
  if (c == NULL) return -EBUSY;
  assert(c->state < PST_CONN_OPEN);
  if ((uv_hrtime() - c->t_start_ns) / 1000000 < min_age_ms) return -EBUSY;
  pst_conn_close(c, PST_ELIMIT,
                 "closed for a new client at max_handshakes_in_flight: handshake incomplete");
  return 0;
}
