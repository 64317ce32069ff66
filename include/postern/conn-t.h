/* postern: connection types. */
#ifndef POSTERN_CONN_T_H
#define POSTERN_CONN_T_H

#include <stdint.h>
#include <uv.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "postern/buf.h"
#include "postern/info.h"
#include "postern/worker-t.h"

typedef enum {
  PST_CONN_HANDSHAKE = 0,  /* TLS handshake running: client bytes feed wolfSSL_accept */
  PST_CONN_CONNECTING = 1, /* handshake done, backend connect in flight: client not read */
  PST_CONN_OPEN = 2,       /* relaying both ways, or builtin:info answering */
  PST_CONN_CLOSING = 3,    /* pst_conn_close ran: flushing, then waiting for close callbacks */
} pst_conn_state_t;

/* What became of the client's 0-RTT early data (RFC 8446 2.3, 4.2.10). */
typedef enum {
  PST_EARLY_NOT_SENT = 0, /* the ClientHello offered none */
  PST_EARLY_REJECTED = 1, /* offered and refused (policy, no resumption, register full):
                           * wolfSSL skipped it and the client sends it again after
                           * the handshake, as ordinary data */
  PST_EARLY_REPLAYED = 2, /* offered and refused: this ClientHello was seen before */
  PST_EARLY_ACCEPTED = 3, /* accepted: its bytes went to `early` (see struct pst_conn_s) */
} pst_early_status_t;

/* One TCP side of a connection. */
typedef struct {
  uv_tcp_t tcp;
  uv_shutdown_t shutdown_req;
  unsigned open : 1;    /* handle initialised: must be closed */
  unsigned reading : 1; /* uv_read_start is in effect */
  unsigned eof : 1;     /* the peer has finished sending (FIN, or close_notify) */
  unsigned shut : 1;    /* postern has finished sending (shutdown requested) */
  unsigned shut_done : 1; /* ... and the shutdown completed */
  uint64_t bytes;       /* application bytes received from this side */
} pst_side_t;

/* Size of the buffer pst_conn_why formats a close reason into. */
#define PST_CONN_WHY_LEN 160

struct pst_conn_s {
  pst_conn_t *prev, *next; /* the worker's list */
  pst_worker_t *worker;
  pst_wlistener_t *wl;
  pst_gen_t *gen; /* the generation accepted under (one reference) */
  const pst_gen_listener_t *gl;
  uint64_t id;
  pst_conn_state_t state;
  pst_side_t client;
  pst_side_t backend;
  uv_timer_t timer; /* handshake, connect, idle or close deadline */
  uv_connect_t connect_req;
  int handles;      /* handles whose close callback has not run yet */
  WOLFSSL *ssl;
  /* Ciphertext from the client not yet taken by wolfSSL: a view on the read
   * slab while a read is processed, kept in cin when left over. */
  const char *in_ptr;
  size_t in_len;
  int in_is_cin;
  pst_buf_t cin;
  pst_buf_t cout; /* ciphertext wolfSSL produced, not yet handed to the socket */
  /* Plaintext the http-mode front ends sent (pst_conn_send), encrypted and
   * written once per loop turn with everything else due to the client
   * (pst_conn_flush_all): a response's head and body, and the frames of
   * several h2 streams, share one TLS record and one write(2). */
  pst_buf_t pout;
  pst_conn_t *flush_next;   /* the worker's list of connections with output due */
  unsigned flush_queued : 1; /* in that list */
  /* The session ticket waits for the first response (RFC 8446 4.6.1 lets
   * the server send it any time after the handshake): set when the client's
   * first request came with its Finished, so that ticket and answer leave in
   * one write(2) rather than two. Cleared by any write to the client. */
  unsigned cork : 1;
  pst_info_t *info; /* builtin:info responder (tcp mode, or http mode over HTTP/1.1), or NULL */
  struct pst_front_s *front; /* http mode: the HTTP/1.1 or HTTP/2 front end, or NULL */
  unsigned streams;      /* http mode: exchanges in flight */
  unsigned streams_waiting; /* ... of which waiting for a response head (backend_response governs) */
  pst_buf_t early_out;   /* http mode: response bytes made before the handshake completed */
  unsigned early_front_refused : 1; /* http mode: early data waits for the handshake (h2, builtin) */
  unsigned end_after_handshake : 1; /* pst_conn_end was asked during the handshake */
  const pst_backend_conf_t *backend_conf;
  uint64_t t_start_ns;   /* accept time (uv_hrtime) */
  double handshake_ms;
  uint64_t t_last_ms;    /* loop time of the last read, for the idle timeout */
  int client_paused;     /* not reading the client: the backend has too much unsent */
  int client_failed;     /* the client socket failed: nothing more can be sent to it */
  int err;               /* why it closed */
  const char *reason;
  /* The strings below live outside the struct, sized to their text, because
   * every idle connection carries this struct (bench: RSS per idle TLS
   * connection): fixed arrays big enough for any value cost ~500 bytes each
   * connection for names that are mostly short or never set. */
  const char *peer;      /* "ip:port" or "[ip6]:port"; never NULL ("?" until known) */
  const char *peer_ip;   /* the client's address without port, for X-Forwarded-For:
                          * both in one allocation, owned when peer_buf is set */
  char *peer_buf;
  const char *sni;       /* server name asked for, lower-cased; "" for none (then not
                          * owned), else a heap copy (conn_record_sni) */
  char alpn[32];         /* negotiated protocol, "" for none */
  const char *version;   /* static strings from wolfSSL, set at handshake end */
  const char *cipher;
  char *why;             /* storage for a reason built at run time (pst_conn_why):
                          * PST_CONN_WHY_LEN bytes, allocated on first use */

  /* 0-RTT (early.c). With tls.early_data: accept, the early data of a
   * resumed handshake is decrypted while the handshake still runs, and lands
   * in `early`, in order: it is the very start of the client's byte stream,
   * before anything read after the handshake. Whoever hands the stream on
   * takes it from there first:
   * - tcp mode writes it to the backend, at once with tcp_early_data:
   *   forward (the backend connect starts during the handshake), else once
   *   the handshake is complete (pst_relay_from_client);
   * - builtin:info parses it as the start of its first request;
   * - http mode: every request whose bytes came from `early` arrived as
   *   early data (RFC 8470): it may only be forwarded before the handshake
   *   completes (`handshake_ms` is 0 until then) when it is safe, with
   *   Early-Data: 1 (RFC 8470 5.1); otherwise it waits for the handshake.
   * early_status says what became of it (also for the builtin:info page). */
  pst_buf_t early;                 /* early data not yet handed on */
  uint64_t early_bytes;            /* early data received in all */
  pst_early_status_t early_status;
  unsigned hello_scanned : 1;      /* the ClientHello was looked at (hello.h) */
  unsigned early_reading : 1;      /* the handshake runs through wolfSSL_read_early_data */
  unsigned early_decided : 1;      /* wolfSSL has processed the ClientHello: accepted or not */
  unsigned early_claimed : 1;      /* replay_key is claimed in the strike register */
  unsigned backend_early : 1;      /* tcp_early_data: forward started the backend connect
                                    * during the handshake */
  unsigned backend_connected : 1;  /* ... and it completed */
  uint8_t replay_key[16];          /* PST_REPLAY_KEY_LEN */
};

#endif
