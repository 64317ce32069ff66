/* postern: a read-only look at the client's ClientHello before wolfSSL
 * processes it. Whether to let wolfSSL accept 0-RTT early data must be
 * decided before the ClientHello is handed to it (wolfSSL_read_early_data
 * or wolfSSL_accept), and wolfSSL does not expose the ClientHello: so the
 * connection waits until the whole ClientHello has arrived, and this scanner
 * reads it from the raw bytes, without consuming them, for what the decision
 * needs: does it offer early data, and what is its replay key (replay.h).
 * The choice among a name's certificates by key type (tls.c) reads the
 * signature schemes, TLS 1.2 suites and versions offered from the same scan.
 *
 * The scanner is strict but never authoritative: anything it does not
 * understand makes it answer PST_EPROTO, and the connection then goes on
 * with early data refused and lets wolfSSL judge the bytes. */
#ifndef POSTERN_HELLO_H
#define POSTERN_HELLO_H

#include <stddef.h>
#include <stdint.h>

/* The longest ClientHello postern waits for: RFC 8446 allows up to 2^24-1
 * bytes, real ones are under 2 KiB (up to ~8 KiB with post-quantum key
 * shares). Past this the scanner gives up (PST_EPROTO). */
#define PST_HELLO_MAX (64 * 1024)

/* Signature schemes of signature_algorithms (RFC 8446 4.2.3) that the
 * certificate choice needs (tls.c), as bits of pst_hello_t.sigalgs. */
#define PST_HELLO_SIG_ECDSA_P256 0x01u /* ecdsa_secp256r1_sha256 (0x0403) */
#define PST_HELLO_SIG_ECDSA_P384 0x02u /* ecdsa_secp384r1_sha384 (0x0503) */
#define PST_HELLO_SIG_ECDSA_P521 0x04u /* ecdsa_secp521r1_sha512 (0x0603) */
#define PST_HELLO_SIG_RSA_PSS 0x08u    /* rsa_pss_rsae_sha256/384/512 (0x0804-0x0806) */
#define PST_HELLO_SIG_RSA_PKCS1 0x10u  /* rsa_pkcs1_sha256/384/512 (0x0401, 0x0501, 0x0601) */
#define PST_HELLO_SIG_ED25519 0x20u    /* ed25519 (0x0807) */

/* TLS 1.2 cipher suites of postern's list (tls.c), by the authentication
 * they need, as bits of pst_hello_t.suites. */
#define PST_HELLO_SUITE_ECDSA 0x01u /* ECDHE-ECDSA with AES-GCM or ChaCha20-Poly1305 */
#define PST_HELLO_SUITE_RSA 0x02u   /* ECDHE-RSA with AES-GCM or ChaCha20-Poly1305 */

/* Curves of supported_groups (RFC 8446 4.2.7, RFC 8422 5.1.1) an ECDSA
 * certificate may be on, as bits of pst_hello_t.groups. */
#define PST_HELLO_GROUP_P256 0x01u /* secp256r1 (23) */
#define PST_HELLO_GROUP_P384 0x02u /* secp384r1 (24) */
#define PST_HELLO_GROUP_P521 0x04u /* secp521r1 (25) */

/* pst_hello_scan's answer when the ClientHello is not complete yet. */
#define PST_HELLO_NEED_MORE 1

typedef struct {
  int early_data;      /* the early_data extension is present (RFC 8446 4.2.10) */
  int psk;             /* the pre_shared_key extension is present (RFC 8446 4.2.11) */
  unsigned identities; /* number of PSK identities offered */
  uint8_t binder[64];  /* the first binder (RFC 8446 4.2.11.2): 32 or 48 bytes */
  size_t binder_len;
  /* The groups of the key shares offered (RFC 8446 4.2.8), the first ones:
   * without a share the server can use, it answers HelloRetryRequest. */
  uint16_t share_groups[8];
  unsigned n_share_groups;
  /* What choosing among certificates of different key types needs. */
  int has_sigalgs;  /* the signature_algorithms extension is present */
  unsigned sigalgs; /* PST_HELLO_SIG_* bits of the schemes it lists */
  unsigned suites;  /* PST_HELLO_SUITE_* bits of the TLS 1.2 suites offered */
  int tls13;        /* supported_versions lists TLS 1.3 (RFC 8446 4.2.1) */
  int has_groups;   /* the supported_groups extension is present */
  unsigned groups;  /* PST_HELLO_GROUP_* bits of the groups it lists */
} pst_hello_t;

/* Scans data (len bytes: the first bytes the client sent) for a TLS
 * ClientHello, which may span several handshake records (RFC 8446 5.1).
 * Returns 0 and fills *h, PST_HELLO_NEED_MORE when the bytes so far are the
 * start of a ClientHello, or PST_EPROTO when they are not one (not a
 * handshake record, not a ClientHello, malformed, or over PST_HELLO_MAX),
 * or -ENOMEM. data is only read. */
int pst_hello_scan(const uint8_t *data, size_t len, pst_hello_t *h);

#endif
