/* postern: the application interface. After the TLS handshake a connection
 * (conn.c) hands its decrypted bytes to exactly one application: the tcp
 * relay (tcp.h), HTTP/1.1 (h1.h) or HTTP/2 (h2.h). The connection calls the
 * application through pst_app_ops_t; the application calls the connection
 * back through pst_host_t, never through conn.h, so that the application
 * modules sit below the connection in the layering (docs/architecture.md).
 * Types only: the constructors are in the application modules. */
#ifndef POSTERN_APP_T_H
#define POSTERN_APP_T_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "postern/buf.h"
#include "postern/config-t.h"
#include "postern/info.h"
#include "postern/tls-t.h"

/* Client output queued by the connection (plaintext not yet encrypted,
 * ciphertext not yet written, and libuv's write queue) above which an
 * application stops producing output and waits for its drain callback, and
 * below which the connection calls drain. */
#define PST_CLIENT_HIGH_WATER (256 * 1024)
#define PST_CLIENT_LOW_WATER (64 * 1024)

typedef struct pst_host_s pst_host_t;

/* The connection's phase, as an application needs to know it. */
typedef enum {
  PST_HOST_EARLY = 0,   /* the handshake still runs: the application was started on 0-RTT data */
  PST_HOST_OPEN = 1,    /* the handshake is complete */
  PST_HOST_CLOSING = 2, /* the connection is closing */
} pst_host_phase_t;
typedef struct pst_app_s pst_app_t;
struct pst_pools_s;
struct pst_access_log_s;
struct pst_access_file_s;

/* The connection services an application may use. Every call is made on the
 * connection's worker loop. None of them calls back into the application
 * synchronously, except pause(h, 0), which may feed it bytes the connection
 * was holding, and drain notifications noted below. */
typedef struct {
  /* Queues len bytes (copied) for the client: they are encrypted and written
   * once per loop turn with everything else due, so many small pieces make
   * few TLS records and one write(2). While the handshake still runs (an
   * answer to 0-RTT early data, RFC 8446 2.3) they go at once as 0.5-RTT
   * data when the window is open, else they wait for the handshake.
   * Returns 0; PST_ESHUTDOWN when the connection is closing or its client
   * side is already shut (nothing sent); or another negative error after
   * which the connection is already closing. */
  int (*send)(pst_host_t *h, const char *data, size_t len);
  /* Bytes queued to the client and not yet taken by the kernel. */
  size_t (*queued)(const pst_host_t *h);
  /* Stops (pause != 0) or resumes reading the client: backpressure while
   * the application cannot take more. Resuming feeds at once what the
   * connection holds (kept ciphertext, records wolfSSL has decrypted). */
  void (*pause)(pst_host_t *h, int pause);
  /* Ends the client's side gracefully once what is queued is written:
   * close_notify, then FIN (RFC 8446 6.1). Asked during the handshake, it
   * happens once the handshake completes. When the shutdown completes the
   * connection closes, unless the application has a client_shut op. */
  void (*end)(pst_host_t *h);
  /* Closes the connection now: err 0 for a normal end or why it ended
   * (negative errno-style). reason is only read during the call (it is
   * logged then). The application is told through closing, if it has it,
   * and destroyed once the connection's handles are closed. */
  void (*close)(pst_host_t *h, int err, const char *reason);
  /* Formats a close reason into the connection's reason buffer (reused:
   * the previous text is overwritten) and returns it, for close(). */
  const char *(*why)(pst_host_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
  /* Where the connection stands: PST_HOST_EARLY while the TLS handshake
   * still runs (bytes fed now came as 0-RTT early data and may be replayed,
   * RFC 8470), PST_HOST_CLOSING once it is closing (every service refuses
   * work then). */
  pst_host_phase_t (*phase)(const pst_host_t *h);
  /* Bytes moved for this connection: the idle timeout starts again. */
  void (*touch)(pst_host_t *h);
  /* delta (+1/-1) requests now wait for a response head: while any does,
   * timeouts.backend_response governs, not the idle timeout. */
  void (*waiting)(pst_host_t *h, int delta);
  /* Facts about the handshake, for builtin:info. Pointers stay valid while
   * the connection lives. */
  void (*facts)(pst_host_t *h, pst_info_facts_t *f);
  /* A request head is being received (started != 0: its first bytes have
   * arrived; further calls change nothing) or is complete (started == 0).
   * The connection closes a connection whose head is not complete within
   * timeouts.request_head of its start, however often bytes arrive (the
   * idle timeout alone restarts with every byte: slowloris); and while a
   * head is incomplete the connection is among the first to give way when
   * its listener is at max_connections. */
  void (*head)(pst_host_t *h, int started);
  /* Appends the PROXY protocol header (proxy.h) of version (PST_PROXY_V1
   * or _V2) that tells a server about this client connection: the client
   * (the source a PROXY header from a balancer gave, else the socket's
   * peer) and the address it reached, and in v2 the ALPN, server name, TLS
   * facts and the connection's unique id. Returns 0, -EINVAL or -ENOMEM. */
  int (*proxy_header)(pst_host_t *h, pst_proxy_t version, pst_buf_t *out);
  /* The verified client certificate (tls.client_auth, tls-t.h), or NULL
   * when none was asked for or sent; valid while the connection lives. An
   * op rather than a field: connections without one carry nothing for it. */
  const pst_client_cert_t *(*client_cert)(const pst_host_t *h);
} pst_host_ops_t;

/* The connection as its application sees it. Filled by the connection
 * before the application is created and read-only for everyone else; the
 * strings live as long as the connection. */
struct pst_host_s {
  const pst_host_ops_t *ops;
  uint64_t id;                           /* connection id, for logs */
  uv_loop_t *loop;                       /* the worker's loop */
  struct pst_pools_s *pools;             /* the worker's backend connections (pool.h) */
  const pst_listener_conf_t *lc;         /* the listener, of the connection's generation */
  const pst_backend_conf_t *backend;     /* chosen by the server name's route; set before
                                          * the application starts */
  const struct pst_sni_map_s *routes;    /* the listener's route map (sni.h), NULL without
                                          * routes: where another host name would go, for
                                          * 421 Misdirected Request (stream.c) */
  struct pst_access_file_s *access_file; /* the listener's access log file, NULL when off */
  struct pst_access_log_s *access_log;   /* the worker's access log writer (access_log.h) */
  const char *peer;                      /* "ip:port" */
  const char *peer_ip;                   /* the client's address without port */
  const char *sni;                       /* lower-cased server name, "" for none; printable
                                          * ASCII only (a name the handshake accepted is a
                                          * DNS host name, RFC 6066 3) */
};

/* What a connection asks of its application. */
typedef struct {
  /* Decrypted bytes from the client, in order. Returns 0, or a negative
   * error after which the connection closes (when the application has not
   * closed it itself with a reason). */
  int (*feed)(pst_app_t *a, const char *data, size_t len);
  /* The client has finished sending (close_notify or TCP FIN). Once. */
  void (*client_eof)(pst_app_t *a);
  /* Client output drained below PST_CLIENT_LOW_WATER: produce more. */
  void (*drain)(pst_app_t *a);
  /* Optional. The application was started on 0-RTT early data while the
   * handshake ran; the handshake is now complete. */
  void (*handshake_done)(pst_app_t *a);
  /* Optional. The end() asked for has completed (close_notify and FIN are
   * out): the application decides when the connection closes. Without it
   * the connection closes then. */
  void (*client_shut)(pst_app_t *a);
  /* The worker drains for shutdown: take nothing new, finish what is in
   * flight, then end(). */
  void (*shutdown)(pst_app_t *a);
  /* Optional. The connection has begun closing: let go of backends now.
   * Host services may still be called from here on, but they refuse work
   * (phase is PST_HOST_CLOSING; send returns PST_ESHUTDOWN). */
  void (*closing)(pst_app_t *a);
  /* Frees the application once the connection's handles are closed. The
   * connection is still allocated: host services may be called (streams
   * freed here give back their bookkeeping), and they refuse work. */
  void (*destroy)(pst_app_t *a);
} pst_app_ops_t;

struct pst_app_s {
  const pst_app_ops_t *ops;
  pst_host_t *host; /* borrowed: the connection outlives its application */
};

#endif
