/* postern: counters, per worker, summed when scraped (docs/metrics.md).
 *
 * Why a bump costs a few instructions and shares nothing: every worker
 * thread attaches a block of its own (pst_metrics_thread_attach, in its
 * thread's entry), cache-line aligned and found through a _Thread_local
 * pointer. A bump is a relaxed atomic load and a relaxed atomic store by
 * the block's only writer: on x86-64 a plain load, add and store to a line
 * no other thread writes, no lock prefix, no read-modify-write; being
 * atomic accesses, they are also race-free for the scrape that reads them
 * from another thread (relaxed loads) and for TSan. Threads that are no
 * worker (main, the reload on libuv's thread pool, unit tests) share one
 * block, bumped with atomic adds: they bump rarely. Blocks stay registered
 * once their thread ends, so a counter never goes back. Measured with
 * callgrind (h2load, HTTP/2 requests to a pooled backend, one worker): every
 * count and gauge of a request together cost ~100 instructions of the
 * ~35,000 the request takes.
 *
 * Counters by listener live in one array per listener slot per block,
 * allocated by the block's thread on its first bump for that slot and
 * published with a release store (the scrape loads it with acquire). A
 * slot is a listener's name, given a number when a generation is built
 * (pst_metrics_listener_slot, in gen.c; kept in pst_listener_conf_t's
 * metrics_slot): a reload that keeps a name keeps its counts. Slot 0 is the
 * overflow ("(other)"): names past PST_METRICS_LISTENERS, and listener
 * configurations not built into a generation (unit tests). A listener's
 * counters take ~12 KiB per worker (the handshake labels' dense array). */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include <stdint.h>

#include "postern/buf.h"

/* X(name, "log key", "what it counts"): process-wide counters without
 * labels, rendered as postern_<key>_total. To add a counter, add a line
 * here: the enum, the names, the exposition and the shutdown line follow. */
#define PST_METRICS(X)                                                                      \
  X(ACCEPT_ERRORS, "accept_errors",                                                         \
    "accept(2) failures on a listening socket (EMFILE and the like): the connection waits " \
    "in the kernel's backlog or is dropped")                                                \
  X(METRICS_DROPPED, "metrics_dropped",                                                     \
    "counter bumps lost because a worker could not allocate a listener's counters")         \
  X(EARLY_REDIS_REPLAYED, "early_data_redis_replayed",                                      \
    "early data rejected as a replay by the shared strike register (Redis)")                \
  X(EARLY_REDIS_UNAVAILABLE, "early_data_redis_unavailable",                                \
    "early data rejected because Redis did not answer in time (fail closed)")               \
  X(PROXY_UNTRUSTED, "proxy_untrusted",                                                     \
    "connections to an accept_proxy listener from outside trusted_proxies, closed")         \
  X(PROXY_REFUSED, "proxy_refused",                                                         \
    "connections closed for their PROXY header: missing, malformed, oversized, late")       \
  X(BACKEND_RETRIES, "backend_retries",                                                     \
    "requests or connections retried on another server (or a fresh connection)")            \
  X(BACKEND_EJECTIONS, "backend_ejections",                                                 \
    "servers ejected for passive.cooldown after live failures in a row")

typedef enum {
#define PST_METRIC_ENUM(id, key, help) PST_M_##id,
  PST_METRICS(PST_METRIC_ENUM)
#undef PST_METRIC_ENUM
      PST_M__COUNT
} pst_metric_t;

/* Listener slots, slot 0 (the overflow) included. */
#define PST_METRICS_LISTENERS 64

/* Why a connection closed: postern_connections_closed_total's reason. */
typedef enum {
  PST_MCLOSE_DONE = 0,             /* ended normally (close_notify, FIN, the exchange done) */
  PST_MCLOSE_CLIENT_CLOSED,        /* the client went away: FIN in the handshake, reset, EPIPE */
  PST_MCLOSE_HANDSHAKE_FAILED,     /* the TLS handshake failed (an alert was sent) */
  PST_MCLOSE_HANDSHAKE_TIMEOUT,    /* handshake_timeout */
  PST_MCLOSE_IDLE_TIMEOUT,         /* idle_timeout */
  PST_MCLOSE_REQUEST_HEAD_TIMEOUT, /* timeouts.request_head */
  PST_MCLOSE_EVICTED,              /* closed for a new client at max_connections */
  PST_MCLOSE_PROXY_REFUSED,        /* accept_proxy: untrusted peer, bad or late PROXY header */
  PST_MCLOSE_SHUTDOWN,             /* postern shut down (shutdown_timeout) */
  PST_MCLOSE_TLS_ERROR,            /* a TLS record failed after the handshake */
  PST_MCLOSE_PROTOCOL_ERROR,       /* the client broke HTTP/2 (a connection error) */
  PST_MCLOSE_BACKEND_ERROR,        /* the backend failed (mid-response, tunnel, relay) */
  PST_MCLOSE_ERROR,                /* anything else: out of memory, a socket call */
  PST_MCLOSE_SHED,                 /* closed at accept, before any TLS work: overload */
  PST_MCLOSE__COUNT
} pst_mclose_t;

/* postern_tls_early_data_total's outcome (RFC 8446 2.3, 4.2.10). */
typedef enum {
  PST_MEARLY_ACCEPTED = 0,
  PST_MEARLY_REJECTED = 1,
  PST_MEARLY_REPLAYED = 2,
  PST_MEARLY__COUNT
} pst_mearly_t;

/* The front end protocol of an HTTP request. */
typedef enum { PST_MPROTO_H1 = 0, PST_MPROTO_H2 = 1, PST_MPROTO__COUNT } pst_mproto_t;

/* postern_backend_timeouts_total's phase. */
typedef enum {
  PST_MPHASE_CONNECT = 0,  /* backend_connect_timeout */
  PST_MPHASE_RESPONSE = 1, /* timeouts.backend_response (answered 504) */
  PST_MPHASE__COUNT
} pst_mphase_t;

/* Gauges kept per worker as deltas and summed. */
typedef enum {
  PST_MGAUGE_BACKEND_IDLE = 0,   /* pooled backend connections, idle */
  PST_MGAUGE_BACKEND_ACTIVE = 1, /* backend connections connecting or leased */
  PST_MGAUGE__COUNT
} pst_mgauge_t;

/* The totals pst_metrics_log writes, summed over workers and listeners. */
typedef struct {
  uint64_t handshakes, resumed;
  uint64_t early[PST_MEARLY__COUNT];
  uint64_t reloads, reloads_failed;
  uint64_t http_requests;
  uint64_t http_400, http_431, http_502, http_504; /* responses postern generated */
} pst_metrics_summary_t;

/* ---- setup ---- */

/* Gives the calling thread a block of its own (a worker, at its start).
 * Idempotent. Returns 0, or -ENOMEM (the thread then bumps the shared
 * block: slower, still counted). The block outlives the thread. */
int pst_metrics_thread_attach(void);

/* The slot of the listener named name, given one on first sight (when a
 * generation is built; thread-safe). Returns 1..PST_METRICS_LISTENERS-1,
 * or 0 (the overflow) once every slot is taken or for a NULL name. */
unsigned pst_metrics_listener_slot(const char *name);

/* ---- bumps (any thread; a few instructions on a worker) ---- */

/* Adds 1 (n) to the unlabelled counter m. */
void pst_metric_inc(pst_metric_t m);
void pst_metric_add(pst_metric_t m, uint64_t n);

/* A connection was accepted on the listener in slot. */
void pst_metrics_conn_accepted(unsigned slot);

/* A connection of that listener closed, for why. */
void pst_metrics_conn_closed(unsigned slot, pst_mclose_t why);

/* A TLS handshake completed: version "TLSv1.3"/"TLSv1.2", group as
 * wolfSSL or pst_tls_group_name names it ("X25519", "P-256",
 * "SECP384R1"...), cipher by IANA name, alpn the protocol (NULL: none),
 * resumed nonzero for a resumption; duration_ns from accept. Unknown
 * values count as "other". NULL strings are allowed. */
void pst_metrics_handshake(unsigned slot, const char *version, const char *group,
                           const char *cipher, const char *alpn, int resumed, uint64_t duration_ns);

/* A handshake ended without completing; alert: the fatal alert postern
 * sent (RFC 8446 6, AlertDescription), or -1 for none (the client went
 * away, timed out, or was evicted). */
void pst_metrics_handshake_failed(unsigned slot, int alert);

/* What became of a connection's 0-RTT early data. */
void pst_metrics_early(unsigned slot, pst_mearly_t outcome);

/* An HTTP request ended: status is what was sent to the client (its class
 * is the label), 0 when no response was sent (an h2 stream reset). */
void pst_metrics_http_request(unsigned slot, pst_mproto_t proto, int status);

/* postern itself answered a request with status (400, 421, 502...). */
void pst_metrics_http_generated(unsigned slot, int status);

/* A backend connection could not be made (refused, unreachable, timed
 * out). */
void pst_metrics_backend_connect_failed(unsigned slot);

/* A backend timeout fired in phase. */
void pst_metrics_backend_timeout(unsigned slot, pst_mphase_t phase);

/* Adds delta to gauge g (the thread's own part of it). */
void pst_metrics_gauge_add(pst_mgauge_t g, int64_t delta);

/* A reload ended: ok nonzero when the new generation went live. */
void pst_metrics_reload(int ok);

/* ---- reading ---- */

/* The current value of counter m, summed over threads. */
uint64_t pst_metric_get(pst_metric_t m);

/* The log key of counter m ("accept_errors"), a static string. */
const char *pst_metric_name(pst_metric_t m);

/* Fills s with the totals of the shutdown line. */
void pst_metrics_summary(pst_metrics_summary_t *s);

/* Resets every counter of every block to 0 (tests only: counters are never
 * reset while postern runs; racy against concurrent bumps). Listener slots
 * stay assigned. */
void pst_metrics_reset(void);

/* The Prometheus text exposition (format 0.0.4) of every family above,
 * summed over the workers, appended to out (docs/metrics.md says which
 * series appear). Families other modules render themselves (the admin
 * endpoint's gauges, the backends' health) use the two writers below, so
 * that every family is written the same way. Thread-safe: the scrape runs
 * while workers bump. Returns 0 or -ENOMEM (out may hold part of the
 * text). */
int pst_metrics_render(pst_buf_t *out);

/* Appends a family's "# HELP name help" and "# TYPE name type" lines
 * (type: "counter", "gauge" or "histogram"); help is escaped as the format
 * asks (backslash, newline). Returns 0 or -ENOMEM. */
int pst_metrics_head(pst_buf_t *out, const char *name, const char *type, const char *help);

/* Appends value as a label value: the characters between the quotes of
 * name="value", with backslash, double quote and newline escaped. Returns 0
 * or -ENOMEM. */
int pst_metrics_label(pst_buf_t *out, const char *value);

/* Logs the totals on one info line: "counters: handshakes=N resumed=N ...". */
void pst_metrics_log(void);

#endif
