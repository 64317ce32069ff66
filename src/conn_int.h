/* postern: the connection's structure. Private to conn.c (and its unit
 * test): every other module reaches a connection through conn.h or, for the
 * application on top of it, through pst_host_t (app-t.h). */
#ifndef POSTERN_CONN_INT_H
#define POSTERN_CONN_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "postern/app-t.h"
#include "postern/buf.h"
#include "postern/early.h"
#include "postern/gen-t.h"
#include "postern/worker-t.h"

/* The connection's life. The 0-RTT sub-phases of the handshake are early.c's
 * (pst_early_phase_t); what the backend is doing is the application's. */
typedef enum {
  PST_CONN_PROXY = 0,     /* accept_proxy: waiting for the PROXY header (conn_proxy.c),
                           * its bytes kept in cin (at most PST_PROXY_MAX); nothing
                           * has gone to wolfSSL yet */
  PST_CONN_HANDSHAKE = 1, /* TLS handshake running, no application yet: early data
                           * accepted meanwhile waits in early.data */
  PST_CONN_EARLY = 2,     /* handshake still running, and the application already runs
                           * on accepted 0-RTT data (RFC 8470; tcp_early_data: forward) */
  PST_CONN_OPEN = 3,      /* handshake complete: the application runs */
  PST_CONN_CLOSING = 4,   /* pst_conn_close ran: flushing close_notify, then waiting
                           * for close callbacks */
} pst_conn_state_t;

/* The addresses a PROXY header gave (accept_proxy), allocated only for a
 * connection that had one: the client and the address it reached the
 * balancer at. */
typedef struct {
  struct sockaddr_storage src, dst;
} pst_conn_proxied_t;

/* The client's TCP side. */
typedef struct {
  uv_tcp_t tcp;
  unsigned reading : 1;   /* uv_read_start is in effect */
  unsigned paused : 1;    /* the application asked not to be fed (host pause) */
  unsigned eof : 1;       /* the client has finished sending (FIN, or close_notify) */
  unsigned eof_told : 1;  /* ... and the application was told */
  unsigned shut : 1;      /* postern has finished sending (close_notify, shutdown asked) */
  unsigned shut_done : 1; /* ... and the shutdown completed */
  unsigned failed : 1;    /* the socket failed: nothing more can be sent to it */
} pst_client_side_t;

/* Size of the buffer pst_conn_why formats a close reason into. */
#define PST_CONN_WHY_LEN 160

struct pst_conn_s {
  pst_conn_t *prev, *next; /* the worker's list */
  pst_worker_t *worker;
  pst_wlistener_t *wl;
  pst_gen_t *gen; /* the generation accepted under (one reference) */
  const pst_gen_listener_t *gl;
  pst_conn_state_t state;
  pst_host_t host; /* the connection as its application sees it (app-t.h) */
  pst_app_t *app;  /* the application, once started */
  pst_client_side_t client;
  uv_timer_t timer; /* handshake, idle or close deadline */
  int handles;      /* handles whose close callback has not run yet */
  WOLFSSL *ssl;
  /* Ciphertext from the client not yet taken by wolfSSL: a view on the read
   * slab while a read is processed, kept in cin when left over. */
  const char *in_ptr;
  size_t in_len;
  int in_is_cin;
  pst_buf_t cin;
  pst_buf_t cout; /* ciphertext wolfSSL produced, not yet handed to the socket */
  /* Plaintext the application sent, encrypted and written once per loop
   * turn with everything else due to the client (pst_conn_flush_all): a
   * response's head and body, and the frames of several h2 streams, share
   * one TLS record and one write(2). */
  pst_buf_t pout;
  pst_buf_t early_out;       /* answers made during the handshake that wait for it */
  pst_conn_t *flush_next;    /* the worker's list of connections with output due */
  unsigned flush_queued : 1; /* in that list */
  /* The session ticket waits for the first answer (RFC 8446 4.6.1 lets the
   * server send it any time after the handshake): set when the client's
   * first request came with its Finished, so that ticket and answer leave in
   * one write(2) rather than two. Cleared by any write to the client. */
  unsigned cork : 1;
  unsigned end_after_handshake : 1; /* end() was asked during the handshake */
  unsigned head : 1;                /* a request head is being received (host head) */
  unsigned evict_listed : 1;        /* in wl's eviction list */
  unsigned timer_closed : 1;        /* the timer closed it (metrics: which timeout) */
  unsigned proxy_logged : 1;        /* refused for its PROXY header: logged (rate-limited) */
  unsigned waiting;                 /* the application's requests waiting for a response head */
  uint64_t head_start_ms;           /* loop time its first bytes came, while head is set */
  uint64_t t_start_ns;              /* accept time (uv_hrtime) */
  double handshake_ms;              /* 0 until the handshake completes */
  uint64_t t_last_ms; /* loop time of the last application data, for the idle timeout */
  /* wl's eviction list (pst_wlistener_t.evict_first): the connections that
   * may be closed to make room at max_connections, in the order of the
   * time since which each has waited on its client (accept, the start of
   * its request head, or its last traffic): always "now" when a
   * connection is (re)appended, so the list stays sorted by appending. */
  pst_conn_t *evict_prev, *evict_next;
  /* wl's handshakes in flight, in accept order (pst_wlistener_t.hs_first). */
  pst_conn_t *hs_prev, *hs_next;
  uint64_t bytes_in;  /* application bytes from the client */
  uint64_t bytes_out; /* application bytes to the client */
  int err;            /* why it closed */
  /* The strings below live outside the struct, sized to their text, because
   * every idle connection carries this struct (bench: RSS per idle TLS
   * connection): fixed arrays big enough for any value cost ~500 bytes each
   * connection for names that are mostly short or never set. host.peer,
   * host.peer_ip and host.sni point into them. */
  char *peer_buf;      /* "ip:port" and "ip" in one allocation */
  char *sni_buf;       /* the server name, lower-cased, or NULL */
  const char *alpn;    /* negotiated protocol (the listener's string), NULL for none */
  const char *version; /* static strings from wolfSSL, set at handshake end */
  const char *cipher;
  pst_conn_proxied_t *proxied; /* from a PROXY header, or NULL: the socket's own */
  char *why;                   /* storage for a reason built at run time (pst_conn_why):
                                * PST_CONN_WHY_LEN bytes, allocated on first use */
  pst_early_t early;           /* 0-RTT: early.c's */
};

/* ---- conn_text.c: what a connection says about itself ---- */

/* Records the client's address as host.peer ("ip:port", "[ip6]:port") and
 * host.peer_ip (without port), both in one allocation sized to them.
 * Returns 0 or -ENOMEM (host.peer stays "?"). */
int pst_conn_peer_name(pst_conn_t *conn);

/* Records sa (the source a PROXY header gave) as host.peer and
 * host.peer_ip in place of the socket's peer. Returns 0 or -ENOMEM (the
 * old names stay). */
int pst_conn_peer_set(pst_conn_t *conn, const struct sockaddr *sa);

/* Keeps the server name the client asked for (n bytes, borrowed),
 * lower-cased, for routes and logs (also after a failed handshake, to say
 * which name failed). The name cannot change once the ClientHello is
 * processed: the first copy stays. Bytes outside printable ASCII, and '\',
 * are kept escaped as \xHH: a name the handshake accepted has none (tls.c),
 * so routes see it unchanged, while a refused one can neither be cut at a
 * NUL nor carry a CR, LF or ESC into a log line. Without memory for the
 * copy, the connection goes on without a name (the default route, "-" in
 * logs). */
void pst_conn_keep_sni(pst_conn_t *conn, const unsigned char *name, size_t n);

/* The same with the name as wolfSSL parsed it, unless one was kept. */
void pst_conn_record_sni(pst_conn_t *conn);

/* pst_conn_why with a va_list. */
const char *pst_conn_vwhy(pst_conn_t *conn, const char *fmt, va_list ap);

/* Logs the connection's line (info level): who, what was negotiated, bytes,
 * duration, and why it closed (reason, read during the call only). */
void pst_conn_log(pst_conn_t *conn, const char *reason);

/* Fills the builtin:info facts about conn's handshake (host->ops->facts).
 * Pointers stay valid while conn lives. */
void pst_conn_facts(pst_conn_t *conn, pst_info_facts_t *f);

/* ---- conn.c: the output path and the state, for conn_close.c ---- */

/* Hands the ciphertext in cout to the client socket now and ends a cork.
 * Returns 0 or a negative libuv error (the caller closes). */
int pst_conn_flush_now(pst_conn_t *conn);

/* Encrypts pout into cout. Returns 0 or PST_ETLS; pout is emptied either
 * way. */
int pst_conn_encrypt(pst_conn_t *conn);

/* Takes conn off the worker's flush list (it is about to be freed). */
void pst_conn_flush_unlist(pst_conn_t *conn);

/* Takes conn out of its listener's eviction order. */
void pst_conn_evict_unlink(pst_conn_t *conn);

/* conn has waited on its client since now: it goes to the end of its
 * listener's eviction order (conn_evict.c), or leaves it while a request
 * waits for its response or once it is closing. */
void pst_conn_evict_requeue(pst_conn_t *conn);

/* conn's handshake starts (accept) or ends (open or closing): it joins the
 * end of, or leaves, its listener's list of handshakes in flight, which
 * pst_conn_evict_handshake reads from its oldest end, and the count the
 * overload bound reads (worker.c). Each is called once per connection. */
void pst_conn_hs_link(pst_conn_t *conn);
void pst_conn_hs_unlink(pst_conn_t *conn);

/* Moves conn to state (the one place states change; asserts the move is
 * allowed) and arms the state's timer. */
void pst_conn_set_state(pst_conn_t *conn, pst_conn_state_t state);

/* ---- conn_proxy.c: the PROXY protocol (accept_proxy, proxy_protocol) ---- */

/* At accept, on a listener with accept_proxy (conn in PST_CONN_PROXY):
 * checks the peer against trusted_proxies. Returns 0, or a negative error
 * after which conn is closing (untrusted: counted and logged). */
int pst_conn_proxy_start(pst_conn_t *conn);

/* n bytes read (data: the read slab) while in PST_CONN_PROXY. Returns 0
 * when the header is not whole yet (what came is kept in cin, which never
 * holds more than PST_PROXY_MAX bytes); 1 when it is: its source is now the
 * connection's peer, the state is PST_CONN_HANDSHAKE and in_ptr/in_len hold
 * the bytes after it (the TLS stream) for conn_pump; or a negative error
 * after which conn is closing (a bad header: counted, logged with the
 * reason). */
int pst_conn_proxy_input(pst_conn_t *conn, const char *data, size_t n);

/* No whole header: the client closed (err PST_EPROTO) or the handshake
 * timeout fired (PST_ETIMEDOUT). Counts, logs and closes conn. */
void pst_conn_proxy_fail(pst_conn_t *conn, int err);

/* host->ops->proxy_header: appends the header of version (v1, v2) that
 * describes conn to out. Returns 0, -EINVAL or -ENOMEM. */
int pst_conn_proxy_header(pst_conn_t *conn, pst_proxy_t version, pst_buf_t *out);

/* ---- conn_close.c: how a connection ends ---- */

/* host->ops->end, and the end asked during the handshake: what is queued,
 * close_notify, then FIN; the application hears client_shut once it is
 * out. */
void pst_conn_end(pst_conn_t *conn);

/* Closes every handle now (the last close callback frees conn). */
void pst_conn_close_handles(pst_conn_t *conn);

/* Like pst_conn_close, for a failure of the client socket itself: nothing
 * is flushed to it. */
void pst_conn_client_failed(pst_conn_t *conn, int err, const char *reason);

#endif
