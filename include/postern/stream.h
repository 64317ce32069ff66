/* postern: one HTTP exchange in http mode: a request from a front end
 * (HTTP/1.1 or HTTP/2) forwarded as HTTP/1.1 over a backend connection
 * leased from the worker's pools (pool.h: kept-alive TCP, or the in-process
 * builtin:info), and the response brought back through one HTTP/1.1
 * response parser. The front end owns its streams; a stream calls back into
 * its front end through pst_stream_ops_t, and never outlives the
 * connection. */
#ifndef POSTERN_STREAM_H
#define POSTERN_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "postern/app-t.h"
#include "postern/buf.h"
#include "postern/http-t.h"

typedef struct pst_stream_s pst_stream_t;

/* What a front end does with the response. Every callback runs on the
 * worker's loop, never from inside a pst_stream_* call made by the front end
 * (so the front end is never re-entered), except where noted. */
typedef struct {
  /* A response head (1xx heads too: 100 Continue, 103; then the final one).
   * Ownership of *resp (malloc'd) passes to the callee. Return 0, or a
   * negative error to abort the stream (the callee has dealt with the
   * client side). */
  int (*on_head)(pst_stream_t *s, pst_http_response_t *resp);
  /* Response body bytes; the callee copies or sends them before returning.
   * For an upgraded (101) exchange, the tunnel's bytes from the backend. */
  int (*on_body)(pst_stream_t *s, const char *data, size_t len);
  /* The response is complete. The stream's backend side is already released;
   * the front end finishes its side and calls pst_stream_free. */
  void (*on_end)(pst_stream_t *s);
  /* The exchange failed. status is what to answer when no final response
   * head has reached the front end yet (502 backend unreachable or broken,
   * 504 no response head within timeouts.backend_response), or 0 when the
   * response was under way and must be cut (h2: RST_STREAM; h1: close the
   * connection so the client sees the truncation). why is for logs. The
   * front end calls pst_stream_free when done. */
  void (*on_error)(pst_stream_t *s, int status, const char *why);
  /* Request body bytes were written to the backend and the queue is below
   * the low-water mark: the front end may read more body from the client
   * (h1: resume reading; h2: nghttp2_session_consume the bytes given so far). */
  void (*on_drain)(pst_stream_t *s);
} pst_stream_ops_t;

typedef enum {
  PST_STREAM_CONNECTING = 0, /* waiting for a backend connection (pool or connect) */
  PST_STREAM_SENDING = 1,    /* request head written; body still coming from the client */
  PST_STREAM_WAITING = 2,    /* request complete; waiting for the response head */
  PST_STREAM_RECEIVING = 3,  /* final response head delivered; body flowing */
  PST_STREAM_TUNNEL = 4,     /* 101 Switching Protocols: raw bytes both ways */
  PST_STREAM_DONE = 5,       /* on_end or on_error has run */
} pst_stream_state_t;

struct pst_stream_s {
  pst_host_t *host; /* the client connection (borrowed: it outlives the stream) */
  const pst_stream_ops_t *ops;
  void *front;   /* the front end's per-stream data */
  int32_t h2_id; /* HTTP/2 stream id, 0 for HTTP/1.1 */
  pst_stream_state_t state;
  pst_http_request_t *req; /* owned */
  int status;              /* final response status, 0 until known */
  uint64_t bytes_in;       /* request body bytes from the client */
  uint64_t bytes_out;      /* response body bytes to the client */
  uint64_t t_start_ns;
  int early_data;            /* the request arrived as 0-RTT early data */
  struct pst_bconn_s *bconn; /* the leased backend connection, or NULL */
  pst_buf_t pending;         /* request bytes waiting for the backend connection */
  int req_done;              /* the client finished the request body */
  int resp_paused;           /* front end asked to stop the response flow */
  int retried;               /* already retried once on a fresh connection */
  int head_sent;             /* a final response head reached the front end */
};

/* Starts an exchange for req (taken over in every case) on the backend of
 * host (chosen by SNI routes). Leases a backend connection and writes the head.
 * A request whose host (req->authority, without its port) routes to another
 * backend than host's does (host->routes) goes to no backend: postern
 * answers it 421 Misdirected Request (RFC 9110 15.5.20), delivered through
 * the same callbacks as a backend's response.
 * Returns a new stream (the caller frees it with pst_stream_free after
 * on_end or on_error, or earlier with pst_stream_free to abort), or NULL
 * when it cannot start (out of memory, no socket): req is freed and the
 * front end answers 502 itself. No callback runs from inside this call. */
pst_stream_t *pst_stream_start(pst_host_t *host, const pst_stream_ops_t *ops, void *front,
                               int32_t h2_id, pst_http_request_t *req);

/* Request body bytes from the client (de-chunked on h1; DATA payload on h2).
 * Returns 0 or a negative error: the backend cannot take them; the front end
 * then treats the stream as failed (502 before a head, else a cut) and frees
 * it. No callback runs from inside this call. */
int pst_stream_body(pst_stream_t *s, const char *data, size_t len);

/* The client finished the request body (h1 message end; h2 END_STREAM). */
int pst_stream_body_end(pst_stream_t *s);

/* Bytes of request body queued towards the backend and not yet written:
 * the front end stops reading request body above PST_BACKEND_HIGH_WATER. */
size_t pst_stream_queued(const pst_stream_t *s);

/* The front end's output for this stream is full (pause != 0) or has room
 * again (pause == 0): stops or resumes reading the backend. */
void pst_stream_pause(pst_stream_t *s, int pause);

/* Tunnel bytes from the client after a 101 (Upgrade). */
int pst_stream_tunnel_write(pst_stream_t *s, const char *data, size_t len);

/* The client finished sending on an upgraded (101) exchange: half-close
 * the backend's write side once queued bytes are written. */
void pst_stream_tunnel_shutdown(pst_stream_t *s);

/* Frees the stream. If the exchange is still running (the client reset the
 * stream, or the connection is closing), its backend connection is closed,
 * not reused, and no callback runs afterwards. NULL allowed. */
void pst_stream_free(pst_stream_t *s);

#endif
