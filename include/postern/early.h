/* postern: 0-RTT early data on one connection (RFC 8446 2.3, 4.2.10, 8;
 * RFC 8470): the policy decision, reading early data while the handshake
 * runs, the strike register check, and what the handshake leaves behind
 * (status, counters, the session ticket). pst_conn_handshake drives it.
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

#include "postern/conn-t.h"

/* Before wolfSSL sees any byte: waits until the whole ClientHello is in the
 * connection's input, scans it, and decides: early data not offered, offered
 * and refused (policy, replay, more than one PSK, strike register full), or
 * offered and to be read (conn->early_reading). With early_data: reject, a
 * connection offered early data skips up to max_early_data of it.
 * Returns 1 while the ClientHello is incomplete (and the client has not
 * closed), 0 once decided (also for bytes that are no ClientHello: wolfSSL
 * then says what is wrong with them). */
int pst_early_hello(pst_conn_t *conn);

/* While conn->early_reading: advances the handshake with
 * wolfSSL_read_early_data, appending early data to conn->early.
 * Returns 1 when it waits for more client bytes, 0 when the early data
 * phase is over (go on with wolfSSL_accept), -1 when wolfSSL failed (its
 * error is in wolfSSL_get_error(conn->ssl, -1)), or -ENOMEM. */
int pst_early_read(pst_conn_t *conn);

/* After a successful handshake: settles conn->early_status, gives back the
 * strike register claim of early data that was not accepted, counts the
 * handshake (metrics.h), and sends the TLS 1.3 session ticket unless
 * session_tickets is off, advertising the policy's max_early_data (RFC 8446
 * 4.6.1), not the one of the ticket the client resumed with.
 * Returns 0, or PST_ETLS when the ticket could not be made (the connection
 * cannot go on). */
int pst_early_finish(pst_conn_t *conn);

/* "not sent", "rejected" or "accepted", for logs and the info page. */
const char *pst_early_status_name(pst_early_status_t status);

#endif
