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

/* How far pst_conn_evict_handshake looks down the eviction list for a
 * handshake: idle connections that waited longer come first. */
#define EVICT_HANDSHAKE_WALK 32

int pst_conn_evict_handshake(pst_wlistener_t *wl, uint64_t min_age_ms) {
  uint64_t now = uv_hrtime();
  pst_conn_t *c = wl->evict_first;
  for (unsigned i = 0; c != NULL && i < EVICT_HANDSHAKE_WALK; c = c->evict_next, i++) {
    if (c->state >= PST_CONN_OPEN) continue;
    /* Handshakes are listed in the order of their accepts: the first one
     * found is the oldest; when it is young, so are the others. */
    if ((now - c->t_start_ns) / 1000000 < min_age_ms) return -EBUSY;
    pst_conn_close(c, PST_ELIMIT,
                   "closed for a new client at max_handshakes_in_flight: handshake incomplete");
    return 0;
  }
  return -EBUSY;
}
