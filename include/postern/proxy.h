/* postern: the PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and
 * 2): a strict, bounded parser for the header an L4 balancer in front sends
 * first on each connection (listeners[].accept_proxy), and a writer for the
 * header postern sends first on each new server connection (a backend's
 * proxy_protocol). A leaf helper: no I/O, no allocation but the writer's
 * buffer. */
#ifndef POSTERN_PROXY_H
#define POSTERN_PROXY_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "postern/buf.h"
#include "postern/config-t.h"

/* The longest version 1 line, CRLF included (proxy-protocol.txt 2.1: "PROXY
 * UNKNOWN" with two IPv6 addresses and two ports). */
#define PST_PROXY_V1_MAX 107

/* The longest version 2 header accepted: the 16 fixed bytes and at most 4 KiB
 * of address block and TLVs. The 16-bit length field allows 64 KiB, but what
 * real senders put there is far less: the largest address block (AF_UNIX) is
 * 216 bytes, and the registered TLVs (ALPN and AUTHORITY up to 255 bytes
 * each, UNIQUE_ID up to 128, SSL with its version, cipher, algorithms and a
 * client CN, CRC32C, the cloud vendors' endpoint ids) add up to about 1.5
 * KiB. 4 KiB leaves room for NOOP padding and custom TLVs while keeping what
 * a connection that has not proven anything yet makes postern hold small. */
#define PST_PROXY_V2_MAX (16 + 4096)

/* What a listener keeps at most while it waits for a header. */
#define PST_PROXY_MAX PST_PROXY_V2_MAX

/* Version 2 TLV types (proxy-protocol.txt 2.2). */
#define PST_PP2_TYPE_ALPN 0x01
#define PST_PP2_TYPE_AUTHORITY 0x02
#define PST_PP2_TYPE_CRC32C 0x03
#define PST_PP2_TYPE_NOOP 0x04
#define PST_PP2_TYPE_UNIQUE_ID 0x05
#define PST_PP2_TYPE_SSL 0x20
#define PST_PP2_SUBTYPE_SSL_VERSION 0x21
#define PST_PP2_SUBTYPE_SSL_CN 0x22
#define PST_PP2_SUBTYPE_SSL_CIPHER 0x23
#define PST_PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define PST_PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define PST_PP2_CLIENT_SSL 0x01
#define PST_PP2_CLIENT_CERT_CONN 0x02 /* the client sent a certificate on this connection */
#define PST_PP2_CLIENT_CERT_SESS 0x04 /* ... or on the session it resumed */
#define PST_PP2_UNIQUE_ID_MAX 128

/* A header that was parsed whole. */
typedef struct {
  unsigned version; /* 1 or 2 */
  /* Nonzero when the header carries no addresses to use: a version 2 LOCAL
   * command (the balancer's own health check), version 1 "UNKNOWN", or a
   * version 2 PROXY command with the family AF_UNSPEC or AF_UNIX, which the
   * spec (2.2) lets a receiver treat as its own endpoints. The connection
   * keeps the socket's addresses then. */
  unsigned local;
  /* The original client (src) and the address it connected to (dst), with
   * ports, when local is 0: both AF_INET or both AF_INET6. */
  struct sockaddr_storage src, dst;
  /* Version 2: the TLVs, pointing into the parsed bytes (valid while they
   * are), already checked to be well formed; NULL and 0 otherwise. */
  const unsigned char *tlv;
  size_t tlv_len;
} pst_proxy_hdr_t;

/* Parses the header at the start of data (len bytes: everything received so
 * far; the caller keeps the bytes and calls again with more, one byte at a
 * time if that is how they come). Each call is cheap before the header is
 * whole: a v1 line is scanned for its CRLF (at most 107 bytes), a v2
 * header is only looked at once its 16 fixed bytes and then its whole
 * length are there. accept says
 * which versions are allowed (PST_PROXY_V1, _V2 or _ANY). Decides as early as
 * the bytes allow: a first byte that starts neither allowed version is
 * refused at once, not after waiting for more.
 * Returns the header's length (> 0, at most PST_PROXY_MAX) when a whole
 * header is there (*out filled; bytes after it are the client's stream);
 * 0 when data is a valid beginning and more bytes are needed (then len is
 * below the version's bound); PST_EPROTO when data is not a valid header
 * (missing, malformed, oversized, a bad CRC32C, a version not accepted),
 * with *why set to a static string saying why. */
int pst_proxy_parse(const void *data, size_t len, pst_proxy_t accept, pst_proxy_hdr_t *out,
                    const char **why);

/* Walks well-formed TLVs (hdr->tlv, or the value of a PP2_TYPE_SSL TLV past
 * its 5 fixed bytes): *p and *len are advanced past the next one, whose
 * type, value and length are returned. Returns 1 for a TLV, 0 at the end,
 * PST_EPROTO for a TLV that does not fit. */
int pst_proxy_tlv_next(const unsigned char **p, size_t *len, unsigned *type,
                       const unsigned char **value, size_t *vlen);

/* The CRC32c (Castagnoli, RFC 4960 Appendix B) of len bytes. */
uint32_t pst_proxy_crc32c(const void *data, size_t len);

/* What postern says about a client connection in a header it sends. */
typedef struct {
  /* The client and the address it reached postern at; NULL, or families
   * other than AF_INET/AF_INET6, make a version 1 "UNKNOWN" line or a
   * version 2 LOCAL header. An AF_INET address with an AF_INET6 one is
   * written as IPv4-mapped IPv6 (RFC 4291 2.5.5.2). */
  const struct sockaddr *src, *dst;
  /* Version 2 TLVs, each left out when NULL (or empty). */
  const char *alpn;        /* PP2_TYPE_ALPN: the protocol ALPN selected */
  const char *authority;   /* PP2_TYPE_AUTHORITY: the server name (SNI) */
  int ssl;                 /* nonzero: PP2_TYPE_SSL, client PP2_CLIENT_SSL */
  const char *ssl_version; /* PP2_SUBTYPE_SSL_VERSION ("TLSv1.3") */
  const char *ssl_cipher;  /* PP2_SUBTYPE_SSL_CIPHER */
  const char *ssl_sig_alg; /* PP2_SUBTYPE_SSL_SIG_ALG */
  const char *ssl_key_alg; /* PP2_SUBTYPE_SSL_KEY_ALG */
  /* A client certificate verified on this connection (tls.client_auth):
   * PP2_CLIENT_CERT_CONN and verify 0, with its subject's common name as
   * PP2_SUBTYPE_SSL_CN (NULL: none in the subject). Without one, verify is
   * non-zero (2.2.6: "non-zero otherwise"). */
  int ssl_client_cert;
  const char *ssl_cn;
  const char *unique_id; /* PP2_TYPE_UNIQUE_ID, cut at PST_PP2_UNIQUE_ID_MAX bytes */
  int crc32c;            /* nonzero: a PP2_TYPE_CRC32C TLV, computed */
} pst_proxy_info_t;

/* Appends a header of version (PST_PROXY_V1 or _V2) describing info to out.
 * String TLVs longer than 255 bytes are cut. Returns 0, -EINVAL for another
 * version, or -ENOMEM (out may hold part of a header: the caller drops the
 * connection). */
int pst_proxy_write(pst_proxy_t version, const pst_proxy_info_t *info, pst_buf_t *out);

/* Parses an address block, "10.0.0.0/8", "2001:db8::/32", or an address
 * alone (a /32 or /128), into *out. Bits past the prefix must be zero, so
 * that "10.0.0.1/8" (likely a typo) is refused rather than silently widened.
 * Returns 0, or PST_EPROTO with *why set to a static string. */
int pst_proxy_cidr_parse(const char *text, pst_cidr_t *out, const char **why);

/* Nonzero when sa (AF_INET, or AF_INET6, an IPv4-mapped address matching
 * IPv4 blocks too) is inside one of the n blocks. */
int pst_proxy_cidr_match(const pst_cidr_t *blocks, size_t n, const struct sockaddr *sa);

#endif
