/* postern: the strike register, postern's defence against replayed 0-RTT
 * early data (RFC 8446 8.2, "ClientHello recording").
 *
 * Early data is not protected against replay: an attacker who records a
 * ClientHello with early data can send the same bytes again on a new
 * connection, and the server would hand the same request to the backend
 * twice. postern remembers a digest of every ClientHello whose early data it
 * is about to accept; a ClientHello whose digest is already there gets its
 * early data rejected and its handshake goes on at 1-RTT.
 *
 * The digest is of the ClientHello's first PSK binder (RFC 8446 4.2.11.2):
 * an HMAC, under the resumption secret, of the whole ClientHello up to the
 * binders, so it changes with every fresh ClientHello (random, key share)
 * and cannot be reproduced for an altered one; early data is only ever
 * accepted with the first PSK (RFC 8446 4.2.10).
 *
 * How long to remember: wolfSSL 5.5.4 accepts a ticket only when the age the
 * client reports is within -1 s .. +11 s of the real age (tls13.c,
 * DoPreSharedKeys: MAX_TICKET_AGE_DIFF of 10 s plus 1 s of slack), and a
 * replay reports the same age later, so a ClientHello can be replayed with
 * success for at most 12 s after it was first seen. The register keeps every
 * entry for at least PST_REPLAY_WINDOW_MS.
 *
 * Structure: the time is cut into windows of window_ms; each of 16 shards
 * (one mutex each) holds an open-addressing table for the current window
 * and one for the previous; an entry lives through the rest of its window
 * and the whole next one (window_ms to 2 x window_ms). Lookups and inserts
 * are O(1); memory is fixed at creation; when the current window's table is
 * full, claims fail and early data is rejected (never accepted unchecked). */
#ifndef POSTERN_REPLAY_H
#define POSTERN_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define PST_REPLAY_KEY_LEN 16
/* At least the 12 s of the comment above, with a margin. */
#define PST_REPLAY_WINDOW_MS 15000
/* ClientHellos with early data remembered per window by the process-wide
 * register: about 4,400 0-RTT handshakes a second, sustained. */
#define PST_REPLAY_CAPACITY 65536

/* pst_replay_claim's answer when the key is already there. */
#define PST_REPLAY_SEEN 1

typedef struct pst_replay_s pst_replay_t;

/* Makes a register for capacity claims per window of window_ms (both > 0).
 * Returns 0 and *out (free with pst_replay_free), or -ENOMEM/-EINVAL. */
int pst_replay_new(size_t capacity, uint64_t window_ms, pst_replay_t **out);

void pst_replay_free(pst_replay_t *r);

/* The process-wide register shared by every worker (a replay may land on
 * any of them), made on first use with PST_REPLAY_CAPACITY and
 * PST_REPLAY_WINDOW_MS. Returns NULL only when out of memory. Thread-safe. */
pst_replay_t *pst_replay_global(void);

/* The register key of a ClientHello: the first 16 bytes of SHA-256 of its
 * first PSK binder (len bytes). Never all zero. */
void pst_replay_key(const uint8_t *binder, size_t len, uint8_t key[PST_REPLAY_KEY_LEN]);

/* Records key at now_ms (CLOCK_MONOTONIC milliseconds) unless it is there.
 * Returns 0 when it was not there (now it is: the caller may accept the
 * early data), PST_REPLAY_SEEN when it was (a replay), or PST_ELIMIT when
 * the current window is full. Thread-safe, O(1). */
int pst_replay_claim(pst_replay_t *r, const uint8_t key[PST_REPLAY_KEY_LEN], uint64_t now_ms);

/* Forgets a key claimed by pst_replay_claim whose early data was not
 * accepted after all (the PSK was refused), so that ClientHellos that never
 * get early data through do not fill the register. Only call it when no
 * byte of that ClientHello's early data was accepted. Thread-safe, O(1). */
void pst_replay_release(pst_replay_t *r, const uint8_t key[PST_REPLAY_KEY_LEN], uint64_t now_ms);

/* Keys held for the current window, for tests and logs. */
size_t pst_replay_count(pst_replay_t *r, uint64_t now_ms);

#endif
