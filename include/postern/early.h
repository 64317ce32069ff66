/* postern: 0-RTT early data on one connection (RFC 8446 2.3, 4.2.10, 8;
 * RFC 8470): the policy decision, reading early data while the handshake
 * runs, the strike register check, and what the handshake leaves behind
 * (status, the outcome's counter, the session ticket). The connection's handshake
 * (conn.c) drives it.
 *
 * How wolfSSL 5.5.4 is steered (tls13.c, tls.c):
 * - a connection whose first wolfSSL call is wolfSSL_read_early_data may
 *   accept early data; one that only ever calls wolfSSL_accept never does
 *   (its early_data extension is not answered) and wolfSSL skips the early
 *   records, up to the connection's max_early_data: that is how early data
 *   is rejected on one connection;
 * - so the decision is taken before wolfSSL sees the ClientHello, from the
 *   raw bytes (hello.h), and the replay check is a claim in the strike
 *   register (replay.h) that is given back when wolfSSL then refuses the PSK;
 * - wolfSSL_get_early_data_status cannot be trusted on the server: it says
 *   "accepted" as soon as the extension is parsed, before the PSK is
 *   checked. postern accepts early data only with one PSK identity, so a
 *   resumed handshake that went through wolfSSL_read_early_data is exactly
 *   one whose early data was accepted. */
#ifndef POSTERN_EARLY_H
#define POSTERN_EARLY_H

#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "postern/buf.h"
#include "postern/config-t.h"

/* What became of the client's 0-RTT early data (RFC 8446 2.3, 4.2.10). */
typedef enum {
  PST_EARLY_NOT_SENT = 0, /* the ClientHello offered none */
  PST_EARLY_REJECTED = 1, /* offered and refused (policy, no resumption, register full):
                           * wolfSSL skipped it and the client sends it again after
                           * the handshake, as ordinary data */
  PST_EARLY_REPLAYED = 2, /* offered and refused: this ClientHello was seen before */
  PST_EARLY_ACCEPTED = 3, /* accepted: its bytes went to pst_early_t.data */
} pst_early_status_t;

/* Where the 0-RTT phase of one connection stands. Embedded in the
 * connection, written only by early.c; the connection reads status and
 * reading, and takes the data with pst_early_take. */
typedef enum {
  PST_EARLY_HELLO = 0,   /* waiting for the whole ClientHello */
  PST_EARLY_READING = 1, /* accepted for reading: the handshake runs through
                          * wolfSSL_read_early_data */
  PST_EARLY_DONE = 2,    /* decided, and the early data phase (if any) is over */
} pst_early_phase_t;

typedef struct {
  pst_early_phase_t phase;
  pst_early_status_t status;
  pst_buf_t data;         /* early data received and not yet taken, in order: the
                           * very start of the client's byte stream */
  uint64_t bytes;         /* early data received in all */
  unsigned decided : 1;   /* wolfSSL has processed the ClientHello: accepted or not */
  unsigned claimed : 1;   /* replay_key is claimed in the strike register */
  uint8_t replay_key[16]; /* PST_REPLAY_KEY_LEN */
  unsigned metrics_slot;  /* the listener's (metrics.h), for the outcome's counter */
} pst_early_t;

/* Before wolfSSL sees any byte: given the client's input so far (in, len;
 * eof when the client has closed), waits until the whole ClientHello is
 * there, scans it, and decides: early data not offered, offered and refused
 * (policy, replay, more than one PSK, strike register full), or offered and
 * to be read (phase PST_EARLY_READING). With early_data: reject, a
 * connection offered early data skips up to max_early_data of it. conn_id
 * and peer are for logs. Returns 1 while the ClientHello is incomplete (and
 * the client has not closed), 0 once decided (also for bytes that are no
 * ClientHello: wolfSSL then says what is wrong with them). */
int pst_early_hello(pst_early_t *e, WOLFSSL *ssl, const pst_listener_conf_t *lc, const char *in,
                    size_t len, int eof, uint64_t conn_id, const char *peer);

/* In phase PST_EARLY_READING: advances the handshake with
 * wolfSSL_read_early_data, appending early data to e->data; plain is a
 * scratch buffer of PST_RECORD_MAX bytes, flight the connection's queue of
 * handshake bytes to the client (non-empty once wolfSSL has answered the
 * ClientHello, which is when the PSK was accepted or refused).
 * Returns 1 when it waits for more client bytes, 0 when the early data
 * phase is over (phase PST_EARLY_DONE: go on with wolfSSL_accept),
 * PST_ETLS when wolfSSL failed (its error is in wolfSSL_get_error(ssl,
 * -1)), or -ENOMEM. */
int pst_early_read(pst_early_t *e, WOLFSSL *ssl, char *plain, const pst_buf_t *flight);

/* After a successful handshake: settles e->status, gives back the strike
 * register claim of early data that was not accepted (the connection
 * counts the handshake: metrics.h), and sends the TLS 1.3 session ticket unless session_tickets
 * is off, advertising the policy's max_early_data (RFC 8446 4.6.1), not the
 * one of the ticket the client resumed with.
 * Returns 0, or PST_ETLS when the ticket could not be made (the connection
 * cannot go on). */
int pst_early_finish(pst_early_t *e, WOLFSSL *ssl, const pst_listener_conf_t *lc);

/* Moves the early data received so far into *out (which must be empty) and
 * leaves e->data empty: the caller owns it. */
void pst_early_take(pst_early_t *e, pst_buf_t *out);

/* Frees what e holds. */
void pst_early_free(pst_early_t *e);

/* "not sent", "rejected" or "accepted", for logs and the info page. */
const char *pst_early_status_name(pst_early_status_t status);

#endif
