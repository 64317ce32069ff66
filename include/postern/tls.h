/* postern: wolfSSL contexts and the callbacks of the handshake. */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stddef.h>

#include "postern/gen-t.h"
#include "postern/tls-t.h"

/* Initialises wolfSSL once per process. Returns 0 or PST_ETLS. */
int pst_tls_global_init(void);

/* Releases wolfSSL's global state at exit, and the calling thread's random
 * generator (see pst_tls_thread_cleanup). */
void pst_tls_global_cleanup(void);

/* Frees the random generator that the calling thread's connections shared
 * (made by wolfSSL on the thread's first connection, see
 * tls_listener_settings). Call it on each thread that made connections, after
 * its last connection is freed and before the thread ends. */
void pst_tls_thread_cleanup(void);

/* Creates gl->ctx and gl->cert_ctx from gl->conf and gl->certs (loaded and
 * checked before), with gl->default_cert set. Returns 0, or PST_ETLS with a
 * one-line reason in err. On failure, what was created is left in gl for
 * pst_tls_listener_free. */
int pst_tls_listener_init(pst_gen_listener_t *gl, char *err, size_t errlen);

/* Frees the contexts of gl (NULL members allowed). */
void pst_tls_listener_free(pst_gen_listener_t *gl);

/* Builds set->tls_ctx for a backend set with tls: (tls.h's client side;
 * nothing for a set without): TLS 1.3 and 1.2, tickets, the server
 * certificate verified against tls.ca_file or the system store (or not,
 * verify: false). Returns 0, or PST_ETLS with a one-line reason in err; on
 * failure what was made is left for pst_tls_backend_free. */
int pst_tls_backend_init(pst_backend_set_conf_t *set, char *err, size_t errlen);

/* Frees set->tls_ctx (NULL allowed). Connections still open keep it alive:
 * each WOLFSSL holds a reference that wolfSSL_free drops. */
void pst_tls_backend_free(pst_backend_set_conf_t *set);

/* The cause of a failed backend handshake, for the log: wolfSSL's error
 * code e (wolfSSL_get_error) in words ("certificate expired", "unknown
 * issuer", "name mismatch", ...), written to buf. Returns buf. */
const char *pst_tls_backend_why(int e, char *buf, size_t len);

/* The name a connection to the server written addr_text of set checks
 * (and sends as SNI): tls.server_name, else the host part of the address
 * ("app.internal:8443" -> "app.internal", "[::1]:8443" -> "::1"). */
void pst_tls_backend_name(const pst_backend_set_conf_t *set, const char *addr_text, char *out,
                          size_t len);

/* Sets up a backend client connection ssl: SNI name (none for an address
 * literal, RFC 6066 3), the name checked when verify, ALPN http/1.1 when
 * alpn_http11. Returns 0 or PST_ETLS. */
int pst_tls_backend_client(WOLFSSL *ssl, const char *name, int verify, int alpn_http11);

/* Index into gl->certs of the certificate the connection was served, read
 * from the WOLFSSL object (set by the SNI callback). */
int pst_tls_cert_index(const pst_gen_listener_t *gl, WOLFSSL *ssl);

/* Name of the key-exchange group negotiated ("X25519", "P-256"), or "". */
const char *pst_tls_group_name(WOLFSSL *ssl);

/* IANA name of the negotiated cipher suite ("TLS_AES_128_GCM_SHA256"), or "".
 * The string is static. */
const char *pst_tls_cipher_name(WOLFSSL *ssl);

/* Nonzero when group (a TLS NamedGroup, RFC 8446 4.2.7) is one postern
 * offers for key exchange on listener lc (tls.groups): a ClientHello with a
 * key share for such a group
 * gets no HelloRetryRequest. */
int pst_tls_group_offered(const pst_listener_conf_t *lc, unsigned group);

/* Why the SNI callback refused the server name, if it did. */
#define PST_TLS_SNI_UNKNOWN                            \
  1 /* no certificate for it, with unknown_sni: reject \
     * (alert unrecognized_name) */
#define PST_TLS_SNI_MALFORMED                           \
  2 /* not a DNS host name as RFC 6066 3 asks: a byte   \
     * other than letters, digits, '-', '_' and '.', an \
     * empty label, a trailing dot, too long (alert     \
     * illegal_parameter) */

#define PST_TLS_NO_CERT                                \
  3 /* no certificate for the name whose signature the \
     * client accepts (alert handshake_failure) */

/* Size of the buffer pst_tls_sni_precheck copies a name into: one byte more
 * than the longest DNS name (RFC 1035 2.3.4: 253 bytes without the final
 * dot), so that a longer name shows as too long. */
#define PST_TLS_SNI_BUF 254

/* Checks the server name of a ClientHello as the client sent it: hello
 * (len bytes) is the raw start of the connection, holding the whole
 * ClientHello. wolfSSL hands the SNI callback the name as a C string, cut at
 * its first NUL ("a\0.evil" would pass as "a"); a name found malformed here
 * is refused by the callback (PST_TLS_SNI_MALFORMED) whatever it sees.
 * Returns 1 with the name's bytes in name (*name_len of them, at most
 * PST_TLS_SNI_BUF: a longer one is cut) for the connection to keep, or 0
 * when the ClientHello has no name or cannot be read here (spread over
 * several records), which leaves it to the callback's own check.
 * Also notes, in ssl, what the ClientHello accepts for the server's
 * signature (signature_algorithms, TLS 1.2 suites, TLS 1.3): the callback
 * chooses among the name's certificates by key type with it. Call it once
 * the whole ClientHello is in hello, before wolfSSL reads it. */
int pst_tls_sni_precheck(WOLFSSL *ssl, const char *hello, size_t len,
                         unsigned char name[PST_TLS_SNI_BUF], size_t *name_len);

/* 0 when the SNI callback accepted the server name (or has not run), else
 * PST_TLS_SNI_UNKNOWN, PST_TLS_SNI_MALFORMED or PST_TLS_NO_CERT. */
int pst_tls_sni_rejected(WOLFSSL *ssl);

/* The client certificate of a connection whose handshake verified one
 * (tls.client_auth), or NULL. Owned by ssl until pst_tls_conn_release. */
const pst_client_cert_t *pst_tls_client_cert(WOLFSSL *ssl);

/* Frees what the TLS layer attached to a connection (its client
 * certificate). Call it before wolfSSL_free(ssl); ssl stays usable. */
void pst_tls_conn_release(WOLFSSL *ssl);

/* The TLS 1.3 handshake of ssl is complete and its session ticket sent:
 * frees what wolfSSL keeps of the handshake that postern no longer reads
 * (the ClientHello's extensions and their answers, the suites, the peer
 * verification parameters; about 1 KiB per connection), so that an idle
 * connection holds only its keys and record state. After it, SNI and ALPN
 * must be read from the connection's copies, not from ssl. Does nothing
 * for TLS 1.2 or an unfinished handshake. Never fails. */
void pst_tls_conn_trim(WOLFSSL *ssl);

/* The body of every wolfSSL receive callback (wolfSSL never touches a
 * socket): copies up to sz bytes of the *len bytes at *ptr, what the
 * socket read and wolfSSL has not taken yet, into buf and moves past them.
 * Returns how many were copied, or WOLFSSL_CBIO_ERR_WANT_READ when none is
 * left (the caller's next read feeds more). */
int pst_tls_io_take(const char **ptr, size_t *len, char *buf, int sz);

#endif
