/* postern: TLS session ticket keys (RFC 8446 4.6.1, RFC 5077 4).
 *
 * A ticket is the session state, encrypted and authenticated with a key only
 * servers know, that a client hands back to resume. postern seals tickets
 * itself (the wolfSSL ticket callback) so that every postern of a fleet can
 * open every other's tickets when they share a key file, and so that key
 * rotation is under the operator's control.
 *
 * Key state lives outside configuration generations: a "key source" is
 * process-wide and shared by every listener that names the same key file (or,
 * without a file, the same in-memory rotation). Generations hold references
 * to sources, so a reload that keeps the same ticket_keys keeps every ticket
 * resumable, and a source disappears only when no generation names it.
 *
 * Key file: one key per line, newest last. A key is the standard base64 (RFC
 * 4648 4, with padding) of 80 random bytes: a 16-byte key name (sent in clear
 * in every ticket, to find the key), a 32-byte AES-256 key, and a 32-byte
 * HMAC-SHA-256 key. Blank lines and lines starting with '#' are ignored;
 * spaces around a key are ignored. `postern ticket-key` prints a new line.
 * The newest key seals new tickets; every key in the file opens them.
 *
 * Ticket format (inside wolfSSL's key_name | iv | length | body | mac):
 * AES-256-CBC of the session state with PKCS#7 padding, under a random IV,
 * then HMAC-SHA-256 over key_name | iv | length (2 bytes, big-endian) | body
 * (encrypt-then-MAC: nothing is decrypted before the MAC is checked). */
#ifndef POSTERN_TICKET_H
#define POSTERN_TICKET_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#define PST_TICKET_NAME_LEN 16
#define PST_TICKET_AES_LEN 32
#define PST_TICKET_HMAC_LEN 32
#define PST_TICKET_KEY_LEN (PST_TICKET_NAME_LEN + PST_TICKET_AES_LEN + PST_TICKET_HMAC_LEN)
/* Base64 characters of one key line, without the newline. */
#define PST_TICKET_KEY_B64_LEN 108
/* The most keys a file (or an in-memory ring) holds. */
#define PST_TICKET_MAX_KEYS 32
/* The longest ticket_lifetime: RFC 8446 4.6.1 caps ticket_lifetime at 7 days. */
#define PST_TICKET_LIFETIME_MAX_MS (7ull * 24 * 3600 * 1000)

typedef struct {
  uint8_t name[PST_TICKET_NAME_LEN];
  uint8_t aes[PST_TICKET_AES_LEN];
  uint8_t hmac[PST_TICKET_HMAC_LEN];
} pst_ticket_key_t;

/* The keys of a file, newest last. */
typedef struct {
  pst_ticket_key_t keys[PST_TICKET_MAX_KEYS];
  size_t n;
  time_t mtime; /* the file's modification time (pst_ticket_keys_load), else 0 */
} pst_ticket_keyset_t;

/* A process-wide key source (see above). Opaque. */
typedef struct pst_ticket_src_s pst_ticket_src_t;

/* ---- key lines and files ---- */

/* Decodes one key line (len bytes, no newline; surrounding spaces allowed).
 * Returns 0 and fills *key, or PST_ECONFIG with the reason in err ("not
 * base64", "decodes to 12 bytes; expected 80"). */
int pst_ticket_key_parse(const char *line, size_t len, pst_ticket_key_t *key, char *err,
                         size_t errlen);

/* Parses a whole key file held in text (len bytes); name is used in
 * messages. Returns 0 and fills *out (at least one key), or PST_ECONFIG with
 * "NAME:LINE: what is wrong; expected ..." in err: a malformed line, no key
 * at all, more than PST_TICKET_MAX_KEYS keys, two keys with the same name. */
int pst_ticket_keys_parse(const char *name, const char *text, size_t len, pst_ticket_keyset_t *out,
                          char *err, size_t errlen);

/* Reads and parses the key file at path (pst_ticket_keys_parse). Returns 0,
 * PST_ECONFIG (err says why, "PATH: cannot read: ..." for I/O errors), or
 * -ENOMEM. Blocking file I/O: never call it on an event loop. */
int pst_ticket_keys_load(const char *path, pst_ticket_keyset_t *out, char *err, size_t errlen);

/* Writes one new key line (PST_TICKET_KEY_B64_LEN characters, NUL-ended, no
 * newline) made of 80 bytes from getrandom(2) into line (at least
 * PST_TICKET_KEY_B64_LEN + 1 bytes). Returns 0 or -errno. */
int pst_ticket_key_generate(char *line, size_t len);

/* ---- key sources ---- */

/* Returns, with one more reference, the source for path (a key file), or for
 * an in-memory ring when path is NULL. A file source is shared by every
 * caller naming the same path and is read when first created (later calls
 * do not re-read it: see pst_ticket_keys_reload). An in-memory ring is
 * shared by callers with the same rotation_ms and lifetime_ms: its first key
 * is made at once, a new one every rotation_ms (checked when a ticket is
 * sealed), and a key that stopped sealing is kept lifetime_ms longer, as
 * long as a ticket it sealed can be valid.
 * Returns 0 and *out (release with pst_ticket_src_put), PST_ECONFIG with a
 * reason in err (the file cannot be read or is invalid; a rotation that
 * would need more than PST_TICKET_MAX_KEYS keys), or -ENOMEM. A key file
 * readable by group or others is logged as a warning. Thread-safe. */
int pst_ticket_src_get(const char *path, uint64_t rotation_ms, uint64_t lifetime_ms,
                       pst_ticket_src_t **out, char *err, size_t errlen);

/* Drops one reference; the last one forgets the keys (zeroed). NULL is
 * allowed. Thread-safe. */
void pst_ticket_src_put(pst_ticket_src_t *src);

/* Re-reads the key file at path, for a reload (SIGHUP). When the file is
 * valid its keys replace those of the source for path at once: tickets are
 * sealed with its newest key from the next handshake on, and tickets under a
 * key that left the file get full handshakes. When it is not, the source
 * keeps its keys and err says why.
 * Returns 0 (also when no source uses path: there is nothing to update),
 * PST_ECONFIG, or -ENOMEM. Blocking file I/O. Thread-safe. */
int pst_ticket_keys_reload(const char *path, char *err, size_t errlen);

/* Re-reads every key file in use, all or nothing: every file is read and
 * checked first, and the sources are updated only when all are valid.
 * Returns 0, PST_ECONFIG (err names the first bad file; no source changed),
 * or -ENOMEM. Blocking file I/O. Thread-safe. */
int pst_ticket_keys_reload_all(char *err, size_t errlen);

/* The key that seals tickets now (copied into *key), rotating an in-memory
 * ring first when its time has come. now_ms: CLOCK_MONOTONIC milliseconds
 * (pst_ticket_now_ms). Returns 0, or PST_ETLS when no key could be made.
 * Thread-safe. */
int pst_ticket_src_seal_key(pst_ticket_src_t *src, uint64_t now_ms, pst_ticket_key_t *key);

/* Finds the key named name (copied into *key) and sets *newest when it is
 * the key that seals tickets now. Returns 0, or PST_ECONFIG when no key has
 * that name (it left the file, or aged out of the ring). Thread-safe. */
int pst_ticket_src_open_key(pst_ticket_src_t *src, const uint8_t name[PST_TICKET_NAME_LEN],
                            uint64_t now_ms, pst_ticket_key_t *key, int *newest);

/* The ages of src's keys in seconds at now (wall clock), the key that
 * seals tickets first, then the others newest first, into ages (room for
 * max; PST_TICKET_MAX_KEYS is enough). A key's birth is when an in-memory
 * ring made it, or for a key file the file's modification time when postern
 * first read that key (appending a key line dates it; a key kept across
 * re-reads keeps its date). For the admin endpoint's gauge: takes the
 * source's lock for a copy. Returns how many were written. Thread-safe. */
size_t pst_ticket_src_ages(pst_ticket_src_t *src, time_t now, double *ages, size_t max);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t pst_ticket_now_ms(void);

/* ---- sealing (pure functions, for the callback and tests) ---- */

/* Seals body (in_len bytes, in place; the buffer must have room for in_len
 * plus 16 bytes of padding) under key: writes the key name, a random IV, the
 * ciphertext (*out_len bytes) and the MAC. Returns 0, or PST_ETLS. */
int pst_ticket_seal(const pst_ticket_key_t *key, uint8_t name[PST_TICKET_NAME_LEN], uint8_t iv[16],
                    uint8_t mac[32], uint8_t *body, int in_len, int *out_len);

/* Checks the MAC of a sealed body (in_len bytes) under key and decrypts it
 * in place; *out_len is the length without padding. Returns 0, or
 * PST_EPROTO for a ticket that is not authentic or not well-formed. */
int pst_ticket_open(const pst_ticket_key_t *key, const uint8_t name[PST_TICKET_NAME_LEN],
                    const uint8_t iv[16], const uint8_t mac[32], uint8_t *body, int in_len,
                    int *out_len);

/* ---- wolfSSL ---- */

/* The wolfSSL ticket callback (SessionTicketEncCb); user is the
 * pst_ticket_src_t. Sealing uses the newest key. Opening returns
 * WOLFSSL_TICKET_RET_OK for any key of the source: under TLS 1.3 wolfSSL
 * only resumes on OK, and a resumed connection gets a fresh ticket under the
 * newest key anyway; under TLS 1.2 a ticket under an older key gets
 * WOLFSSL_TICKET_RET_CREATE (resume, and send a new ticket). An unknown key
 * name or a bad MAC gets WOLFSSL_TICKET_RET_REJECT (full handshake).
 * Exposed for tests; ssl may be NULL there (taken as TLS 1.3). */
int pst_ticket_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
                  unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ],
                  int enc, unsigned char *ticket, int in_len, int *out_len, void *user);

/* Makes ctx seal and open tickets with src (which must outlive ctx), with
 * lifetime_ms as both the lifetime hint sent to clients and the age past
 * which wolfSSL refuses a ticket. Set it on every context of a listener:
 * after the SNI callback switches context, wolfSSL reads the callback, its
 * argument and the hint from the new one. Returns 0 or PST_ETLS. */
int pst_ticket_install(WOLFSSL_CTX *ctx, pst_ticket_src_t *src, uint64_t lifetime_ms);

#endif
