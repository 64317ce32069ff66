/* postern: how many idle connections a backend pool keeps (pool_int.h).
 *
 * A fixed bound churns: with more requests in flight to one server than the
 * bound, every response that ends while the pool is full closes its
 * connection and the next request opens a new one (issue 17: at 500
 * concurrent h2 streams and max_idle 128, half the server CPU went to
 * connects). So the pool keeps what the load recently needed: as many idle
 * connections as the peak of connections in use over the last one to two
 * windows (a window is backend_pool.idle long), below backend_pool.max_idle
 * and below a per-worker memory budget (backend_pool.max_idle_mib).
 *
 * Why the peak of connections in use is enough: a pool opens a connection
 * only when it has none idle, so the connections it holds (in use + idle)
 * never exceed the highest number it had in use at once. Under a steady
 * load the window's peak is that number, every release finds room and no
 * request connects. After the load falls, the old peak is forgotten within
 * two windows and releases beyond the new one close; the idle timer closes
 * the surplus left at the tail of the idle list (it is reused newest
 * first, so the surplus is what waits longest). */
#include <assert.h>

#include "pool_int.h"

/* Kernel memory of one idle TCP socket, estimated from the slab objects it
 * holds on Linux 6.1 (tcp_sock ~2.3 KiB, socket inode ~0.7 KiB, file,
 * dentry, epoll item), with empty buffers: an idle connection has read and
 * written everything. */
#define IDLE_KERNEL_BYTES 4096
/* A backend TLS session kept in a connection: wolfSSL's WOLFSSL object and
 * its keys with the static buffers (the bench measures ~7 KiB RSS per idle
 * TLS connection on the server side). */
#define IDLE_TLS_BYTES 8192

void pst_pool_demand_note(pool_demand_t *d, uint64_t now_ms, uint64_t window_ms) {
  if (window_ms == 0) window_ms = 1;
  if (now_ms < d->window_start_ms) d->window_start_ms = now_ms; /* clock reset: start over */
  uint64_t elapsed = now_ms - d->window_start_ms;
  if (elapsed >= window_ms) {
    /* One window over: the current peak becomes the previous one. Two or
     * more: nothing happened in the previous one but what is in use now. */
    d->peak[1] = elapsed >= 2 * window_ms ? d->busy : d->peak[0];
    d->peak[0] = d->busy;
    d->window_start_ms = now_ms - elapsed % window_ms;
  }
  if (d->busy > d->peak[0]) d->peak[0] = d->busy;
}

void pst_pool_demand_held(pool_demand_t *d, unsigned held) {
  unsigned n = d->busy + held;
  if (n > d->peak[0]) d->peak[0] = n;
}

unsigned pst_pool_demand_target(const pool_demand_t *d) {
  return d->peak[0] > d->peak[1] ? d->peak[0] : d->peak[1];
}

size_t pst_pool_idle_cost(int tls) {
  return sizeof(pst_bconn_t) + IDLE_KERNEL_BYTES + (tls ? IDLE_TLS_BYTES : 0);
}

pool_keep_t pst_pool_keep(const pool_demand_t *d, unsigned n_idle, unsigned max_idle,
                          size_t idle_bytes, size_t cost, size_t budget) {
  if (n_idle >= max_idle) return POOL_FULL_MAX_IDLE;
  if (n_idle >= pst_pool_demand_target(d)) return POOL_FULL_PEAK;
  if (idle_bytes > budget || cost > budget - idle_bytes) return POOL_FULL_MEMORY;
  return POOL_KEEP;
}
