/* postern: the PROXY protocol's parser and writer (see proxy.h). Section
 * numbers are those of HAProxy's proxy-protocol.txt. */
#include "postern/proxy.h"

#include <arpa/inet.h>
#include <string.h>

#include "postern/common.h"

/* 2.2: the version 2 signature, with a NUL at its 5th byte. */
static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int refuse(const char **why, const char *reason) {
  *why = reason;
  return PST_EPROTO;
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* ---- CRC32c (RFC 4960 Appendix B; 2.2.3) ---- */

static uint32_t crc32c_update(uint32_t crc, const unsigned char *p, size_t n) {
  /* Bit by bit: a header is at most PST_PROXY_MAX bytes and is checked once
   * per connection; a table would cost 1 KiB of cache for nothing. */
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return crc;
}

uint32_t pst_proxy_crc32c(const void *data, size_t len) {
  return ~crc32c_update(0xFFFFFFFFu, data, len);
}

/* ---- version 1 (2.1) ---- */

/* A port: decimal, 0..65535, no heading zero. Returns 0 or PST_EPROTO. */
static int v1_port(const char *s, size_t n, uint16_t *out) {
  if (n == 0 || n > 5 || (n > 1 && s[0] == '0')) return PST_EPROTO;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return PST_EPROTO;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v > 65535) return PST_EPROTO;
  *out = (uint16_t)v;
  return 0;
}

/* An address of family in its canonical text (for IPv4: four decimal
 * numbers 0..255 without heading zeroes, which inet_pton would not all
 * refuse). Returns 0 or PST_EPROTO. */
static int v1_addr(int family, const char *s, size_t n, void *out) {
  char buf[INET6_ADDRSTRLEN];
  if (n == 0 || n >= sizeof(buf)) return PST_EPROTO;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int digit = c >= '0' && c <= '9';
    int ok = family == AF_INET ? digit || c == '.'
                               : digit || c == ':' || c == '.' || (c >= 'a' && c <= 'f') ||
                                     (c >= 'A' && c <= 'F');
    if (!ok) return PST_EPROTO;
    /* A heading zero: a '0' that starts a number followed by a digit. */
    if (family == AF_INET && c == '0' && (i == 0 || s[i - 1] == '.') && i + 1 < n &&
        s[i + 1] != '.') {
      return PST_EPROTO;
    }
  }
  memcpy(buf, s, n);
  buf[n] = '\0';
  return inet_pton(family, buf, out) == 1 ? 0 : PST_EPROTO;
}

static void set_sa(struct sockaddr_storage *ss, int family, const void *addr, uint16_t port) {
  memset(ss, 0, sizeof(*ss));
  if (family == AF_INET) {
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, addr, 4);
    sin->sin_port = htons(port);
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, addr, 16);
    sin6->sin6_port = htons(port);
  }
}

/* The four fields after "TCP4 " or "TCP6 " (line: n bytes, without CRLF),
 * each separated by exactly one space. Returns 0 or PST_EPROTO. */
static int v1_fields(const char *line, size_t n, int family, pst_proxy_hdr_t *out,
                     const char **why) {
  const char *f[4];
  size_t fl[4], k = 0, start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && line[i] != ' ') continue;
    if (k == 4) return refuse(why, "PROXY v1: more than four fields after the protocol");
    f[k] = line + start;
    fl[k++] = i - start;
    start = i + 1;
  }
  if (k != 4) return refuse(why, "PROXY v1: fewer than four fields after the protocol");
  unsigned char src[16], dst[16];
  uint16_t sport, dport;
  if (v1_addr(family, f[0], fl[0], src) != 0) return refuse(why, "PROXY v1: bad source address");
  if (v1_addr(family, f[1], fl[1], dst) != 0) {
    return refuse(why, "PROXY v1: bad destination address");
  }
  if (v1_port(f[2], fl[2], &sport) != 0) return refuse(why, "PROXY v1: bad source port");
  if (v1_port(f[3], fl[3], &dport) != 0) return refuse(why, "PROXY v1: bad destination port");
  set_sa(&out->src, family, src, sport);
  set_sa(&out->dst, family, dst, dport);
  return 0;
}

/* Whether the bytes after "PROXY " so far (n of them) can still start a
 * valid line: one of the protocols, and for TCP4/TCP6 only the characters
 * addresses and ports are made of. */
static int v1_prefix_ok(const char *s, size_t n) {
  static const char *const protos[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
  for (size_t p = 0; p < PST_ARRAY_SIZE(protos); p++) {
    size_t pl = strlen(protos[p]);
    if (memcmp(s, protos[p], min_size(n, pl)) != 0) continue;
    if (p == 2 || n <= pl) return 1; /* UNKNOWN: anything until the CRLF */
    for (size_t i = pl; i < n; i++) {
      char c = s[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
            c == '.' || c == ':' || c == ' ' || c == '\r')) {
        return 0;
      }
    }
    return 1;
  }
  return 0;
}

static int parse_v1(const unsigned char *d, size_t len, pst_proxy_hdr_t *out, const char **why) {
  static const char magic[] = "PROXY ";
  const char *s = (const char *)d;
  if (memcmp(s, magic, min_size(len, 6)) != 0) {
    return refuse(why, "PROXY v1: the line does not start with \"PROXY \"");
  }
  size_t lim = min_size(len, PST_PROXY_V1_MAX), eol = 0;
  int found = 0;
  /* 2.1: the line ends at the first CRLF; a lone CR or LF is refused. */
  for (size_t i = 0; i < lim && !found; i++) {
    if (s[i] == '\n') return refuse(why, "PROXY v1: LF without CR");
    if (s[i] != '\r') continue;
    if (i + 1 == lim) break;
    if (s[i + 1] != '\n') return refuse(why, "PROXY v1: CR without LF");
    eol = i;
    found = 1;
  }
  if (len > 6 && !v1_prefix_ok(s + 6, (found ? eol : lim) - 6)) {
    return refuse(why, "PROXY v1: not TCP4, TCP6 or UNKNOWN with addresses and ports");
  }
  if (!found) {
    if (lim == PST_PROXY_V1_MAX) return refuse(why, "PROXY v1: no CRLF within 107 bytes");
    return 0;
  }
  out->version = 1;
  const char *proto = s + 6;
  size_t plen = eol - 6;
  if (plen >= 7 && memcmp(proto, "UNKNOWN", 7) == 0) {
    /* 2.1: the receiver ignores what follows UNKNOWN until the CRLF. */
    if (plen > 7 && proto[7] != ' ') return refuse(why, "PROXY v1: unknown protocol");
    out->local = 1;
    return (int)eol + 2;
  }
  if (plen < 5 || (memcmp(proto, "TCP4 ", 5) != 0 && memcmp(proto, "TCP6 ", 5) != 0)) {
    return refuse(why, "PROXY v1: unknown protocol");
  }
  int family = proto[3] == '4' ? AF_INET : AF_INET6;
  int rc = v1_fields(proto + 5, plen - 5, family, out, why);
  return rc != 0 ? rc : (int)eol + 2;
}

/* ---- version 2 (2.2) ---- */

static uint16_t be16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int pst_proxy_tlv_next(const unsigned char **p, size_t *len, unsigned *type,
                       const unsigned char **value, size_t *vlen) {
  if (*len == 0) return 0;
  if (*len < 3) return PST_EPROTO;
  size_t n = be16(*p + 1);
  if (n > *len - 3) return PST_EPROTO;
  *type = (*p)[0];
  *value = *p + 3;
  *vlen = n;
  *p += 3 + n;
  *len -= 3 + n;
  return 1;
}

/* The address block's size for a family/protocol byte, or -1 for a byte the
 * spec does not define (2.2: receivers must reject those). */
static int v2_block(unsigned fam) {
  switch (fam) {
    case 0x00: return 0; /* UNSPEC */
    case 0x11:
    case 0x12: return 12; /* TCP and UDP over IPv4 */
    case 0x21:
    case 0x22: return 36; /* TCP and UDP over IPv6 */
    case 0x31:
    case 0x32: return 216; /* UNIX stream and datagram */
    default: return -1;
  }
}

/* Checks the TLVs (t, n bytes) of the header hdr (hlen bytes): each fits,
 * the ones with a defined size have it, and a CRC32C matches (2.2.3).
 * Returns 0 or PST_EPROTO. */
static int v2_tlvs(const unsigned char *hdr, size_t hlen, const unsigned char *t, size_t n,
                   const char **why) {
  const unsigned char *crc = NULL, *v;
  size_t vlen;
  unsigned type;
  int rc;
  while ((rc = pst_proxy_tlv_next(&t, &n, &type, &v, &vlen)) == 1) {
    if (type == PST_PP2_TYPE_CRC32C) {
      if (vlen != 4) return refuse(why, "PROXY v2: a CRC32C TLV not of 4 bytes");
      if (crc != NULL) return refuse(why, "PROXY v2: two CRC32C TLVs");
      crc = v;
    } else if (type == PST_PP2_TYPE_UNIQUE_ID && vlen > PST_PP2_UNIQUE_ID_MAX) {
      return refuse(why, "PROXY v2: a UNIQUE_ID TLV over 128 bytes");
    } else if (type == PST_PP2_TYPE_SSL) {
      if (vlen < 5) return refuse(why, "PROXY v2: an SSL TLV shorter than its 5 fixed bytes");
      const unsigned char *s = v + 5, *sv;
      size_t sn = vlen - 5, svlen;
      unsigned st;
      int src;
      while ((src = pst_proxy_tlv_next(&s, &sn, &st, &sv, &svlen)) == 1) continue;
      if (src < 0) return refuse(why, "PROXY v2: an SSL sub-TLV does not fit in its TLV");
    }
  }
  if (rc < 0) return refuse(why, "PROXY v2: a TLV does not fit in the header");
  if (crc == NULL) return 0;
  /* The checksum of the whole header with the checksum's bytes as zeros. */
  static const unsigned char zeros[4];
  size_t at = (size_t)(crc - hdr);
  uint32_t c = crc32c_update(0xFFFFFFFFu, hdr, at);
  c = crc32c_update(c, zeros, 4);
  c = ~crc32c_update(c, hdr + at + 4, hlen - at - 4);
  if (c != be32(crc)) return refuse(why, "PROXY v2: CRC32C mismatch");
  return 0;
}

static int parse_v2(const unsigned char *d, size_t len, pst_proxy_hdr_t *out, const char **why) {
  if (memcmp(d, v2_sig, min_size(len, 12)) != 0) {
    return refuse(why, "PROXY v2: bad signature");
  }
  if (len > 12 && (d[12] >> 4) != 2) return refuse(why, "PROXY v2: version is not 2");
  if (len > 12 && (d[12] & 0xF) > 1)
    return refuse(why, "PROXY v2: command neither LOCAL nor PROXY");
  if (len > 13 && v2_block(d[13]) < 0) {
    return refuse(why, "PROXY v2: undefined address family or transport protocol");
  }
  if (len < 16) return 0;
  size_t alen = be16(d + 14), total = 16 + alen;
  if (total > PST_PROXY_V2_MAX) return refuse(why, "PROXY v2: header over 4 KiB");
  if (len < total) return 0;
  unsigned cmd = d[12] & 0xF, fam = d[13];
  size_t block = (size_t)v2_block(fam);
  if (alen < block) return refuse(why, "PROXY v2: address block shorter than its family's");
  out->version = 2;
  /* LOCAL: the balancer's own connection (a health check), whatever the
   * family says; UNSPEC, UNIX and datagram families: not a TCP client
   * postern can name, so the socket's own endpoints stand (2.2). A LOCAL
   * header's block, family included, and an UNSPEC one are discarded
   * unread, as 2.2 says; every other one's TLVs must be well formed. */
  out->local = cmd == 0 || (fam != 0x11 && fam != 0x21);
  if (cmd == 0 || fam == 0x00) return (int)total;
  int rc = v2_tlvs(d, total, d + 16 + block, alen - block, why);
  if (rc != 0) return rc;
  out->tlv = alen > block ? d + 16 + block : NULL;
  out->tlv_len = alen - block;
  if (!out->local) {
    const unsigned char *a = d + 16;
    if (fam == 0x11) {
      set_sa(&out->src, AF_INET, a, be16(a + 8));
      set_sa(&out->dst, AF_INET, a + 4, be16(a + 10));
    } else {
      set_sa(&out->src, AF_INET6, a, be16(a + 32));
      set_sa(&out->dst, AF_INET6, a + 16, be16(a + 34));
    }
  }
  return (int)total;
}

int pst_proxy_parse(const void *data, size_t len, pst_proxy_t accept, pst_proxy_hdr_t *out,
                    const char **why) {
  const unsigned char *d = data;
  memset(out, 0, sizeof(*out));
  *why = NULL;
  if (len == 0) return 0;
  int v1 = accept == PST_PROXY_V1 || accept == PST_PROXY_ANY;
  int v2 = accept == PST_PROXY_V2 || accept == PST_PROXY_ANY;
  if (d[0] == v2_sig[0]) {
    if (!v2) return refuse(why, "a PROXY v2 header where accept_proxy is v1");
    return parse_v2(d, len, out, why);
  }
  if (d[0] == 'P') {
    if (!v1) return refuse(why, "a PROXY v1 line where accept_proxy is v2");
    return parse_v1(d, len, out, why);
  }
  if (d[0] == 0x16) return refuse(why, "no PROXY header: the client's TLS handshake came first");
  return refuse(why,
                "no PROXY header: the first bytes are neither \"PROXY \" nor the v2 signature");
}

/* ---- writing ---- */

/* src and dst as two addresses of one family (AF_INET or AF_INET6, an
 * IPv4 one mapped when the other is IPv6), with ports. Returns the family,
 * or 0 when they cannot be written. */
static int same_family(const struct sockaddr *src, const struct sockaddr *dst,
                       unsigned char a[2][16], uint16_t port[2]) {
  if (src == NULL || dst == NULL) return 0;
  const struct sockaddr *sa[2] = {src, dst};
  int v6 = 0;
  for (int i = 0; i < 2; i++) {
    if (sa[i]->sa_family == AF_INET6)
      v6 = 1;
    else if (sa[i]->sa_family != AF_INET)
      return 0;
  }
  for (int i = 0; i < 2; i++) {
    if (sa[i]->sa_family == AF_INET) {
      const struct sockaddr_in *sin = (const struct sockaddr_in *)sa[i];
      port[i] = ntohs(sin->sin_port);
      if (v6) {
        memset(a[i], 0, 10);
        a[i][10] = a[i][11] = 0xFF;
        memcpy(a[i] + 12, &sin->sin_addr, 4);
      } else {
        memcpy(a[i], &sin->sin_addr, 4);
      }
    } else {
      const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa[i];
      port[i] = ntohs(sin6->sin6_port);
      memcpy(a[i], &sin6->sin6_addr, 16);
    }
  }
  return v6 ? AF_INET6 : AF_INET;
}

static int write_v1(const pst_proxy_info_t *info, pst_buf_t *out) {
  unsigned char a[2][16];
  uint16_t port[2];
  int family = same_family(info->src, info->dst, a, port);
  if (family == 0) return pst_buf_printf(out, "PROXY UNKNOWN\r\n");
  char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
  inet_ntop(family, a[0], s, sizeof(s));
  inet_ntop(family, a[1], d, sizeof(d));
  return pst_buf_printf(out, "PROXY %s %s %s %u %u\r\n", family == AF_INET ? "TCP4" : "TCP6", s, d,
                        port[0], port[1]);
}

/* Appends a TLV (type, value of n bytes, cut at 255) at p; returns the
 * bytes written. */
static size_t put_tlv(unsigned char *p, unsigned type, const void *value, size_t n) {
  if (n > 255) n = 255;
  p[0] = (unsigned char)type;
  p[1] = (unsigned char)(n >> 8);
  p[2] = (unsigned char)n;
  memcpy(p + 3, value, n);
  return 3 + n;
}

static size_t put_str_tlv(unsigned char *p, unsigned type, const char *s) {
  if (s == NULL || s[0] == '\0') return 0;
  return put_tlv(p, type, s, strlen(s));
}

static int write_v2(const pst_proxy_info_t *info, pst_buf_t *out) {
  /* The largest header written: 16 + 36 of addresses, ALPN, AUTHORITY and
   * five SSL strings of at most 3 + 255 each, the SSL TLV's 8 fixed bytes,
   * UNIQUE_ID (3 + 128) and CRC32C (7). */
  unsigned char h[16 + 36 + 7 * 258 + 8 + 131 + 7];
  unsigned char a[2][16];
  uint16_t port[2];
  int family = same_family(info->src, info->dst, a, port);
  size_t n = 16;
  memcpy(h, v2_sig, 12);
  h[12] = family != 0 ? 0x21 : 0x20; /* version 2; PROXY, or LOCAL */
  h[13] = family == AF_INET ? 0x11 : family == AF_INET6 ? 0x21 : 0x00;
  size_t alen = family == AF_INET ? 4 : 16;
  if (family != 0) {
    memcpy(h + n, a[0], alen);
    memcpy(h + n + alen, a[1], alen);
    n += 2 * alen;
    h[n++] = (unsigned char)(port[0] >> 8);
    h[n++] = (unsigned char)port[0];
    h[n++] = (unsigned char)(port[1] >> 8);
    h[n++] = (unsigned char)port[1];
  } else {
    /* LOCAL: 2.2 says the receiver discards the block, TLVs included. */
    h[14] = h[15] = 0;
    return pst_buf_append(out, h, 16);
  }
  n += put_str_tlv(h + n, PST_PP2_TYPE_ALPN, info->alpn);
  n += put_str_tlv(h + n, PST_PP2_TYPE_AUTHORITY, info->authority);
  if (info->ssl) {
    /* 2.2.6: client flags, then verify (zero only for a client
     * certificate that was verified), then the sub-TLVs. */
    size_t at = n;
    h[n] = PST_PP2_TYPE_SSL;
    n += 3;
    h[n++] = PST_PP2_CLIENT_SSL | (info->ssl_client_cert ? PST_PP2_CLIENT_CERT_CONN : 0);
    h[n++] = 0, h[n++] = 0, h[n++] = 0, h[n++] = info->ssl_client_cert ? 0 : 1;
    n += put_str_tlv(h + n, PST_PP2_SUBTYPE_SSL_VERSION, info->ssl_version);
    if (info->ssl_client_cert) n += put_str_tlv(h + n, PST_PP2_SUBTYPE_SSL_CN, info->ssl_cn);
    n += put_str_tlv(h + n, PST_PP2_SUBTYPE_SSL_CIPHER, info->ssl_cipher);
    n += put_str_tlv(h + n, PST_PP2_SUBTYPE_SSL_SIG_ALG, info->ssl_sig_alg);
    n += put_str_tlv(h + n, PST_PP2_SUBTYPE_SSL_KEY_ALG, info->ssl_key_alg);
    size_t vlen = n - at - 3;
    h[at + 1] = (unsigned char)(vlen >> 8);
    h[at + 2] = (unsigned char)vlen;
  }
  if (info->unique_id != NULL && info->unique_id[0] != '\0') {
    n += put_tlv(h + n, PST_PP2_TYPE_UNIQUE_ID, info->unique_id,
                 min_size(strlen(info->unique_id), PST_PP2_UNIQUE_ID_MAX));
  }
  size_t crc_at = 0;
  if (info->crc32c) {
    static const unsigned char zeros[4];
    crc_at = n + 3;
    n += put_tlv(h + n, PST_PP2_TYPE_CRC32C, zeros, 4);
  }
  h[14] = (unsigned char)((n - 16) >> 8);
  h[15] = (unsigned char)(n - 16);
  if (info->crc32c) {
    uint32_t c = pst_proxy_crc32c(h, n);
    h[crc_at] = (unsigned char)(c >> 24);
    h[crc_at + 1] = (unsigned char)(c >> 16);
    h[crc_at + 2] = (unsigned char)(c >> 8);
    h[crc_at + 3] = (unsigned char)c;
  }
  return pst_buf_append(out, h, n);
}

int pst_proxy_write(pst_proxy_t version, const pst_proxy_info_t *info, pst_buf_t *out) {
  if (version == PST_PROXY_V1) return write_v1(info, out);
  if (version == PST_PROXY_V2) return write_v2(info, out);
  return -EINVAL;
}

/* ---- trusted_proxies ---- */

int pst_proxy_cidr_parse(const char *text, pst_cidr_t *out, const char **why) {
  char buf[INET6_ADDRSTRLEN];
  const char *slash = strchr(text, '/');
  size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
  memset(out, 0, sizeof(*out));
  if (alen == 0 || alen >= sizeof(buf)) return refuse(why, "not an IPv4 or IPv6 address");
  memcpy(buf, text, alen);
  buf[alen] = '\0';
  unsigned max;
  if (inet_pton(AF_INET, buf, out->addr) == 1) {
    out->family = AF_INET;
    max = 32;
  } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
    out->family = AF_INET6;
    max = 128;
  } else {
    return refuse(why, "not an IPv4 or IPv6 address");
  }
  out->prefix = max;
  if (slash != NULL) {
    const char *p = slash + 1;
    size_t n = strlen(p);
    unsigned v = 0;
    if (n == 0 || n > 3 || (n > 1 && p[0] == '0')) return refuse(why, "bad prefix length");
    for (size_t i = 0; i < n; i++) {
      if (p[i] < '0' || p[i] > '9') return refuse(why, "bad prefix length");
      v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > max) {
      return refuse(why, max == 32 ? "prefix length over 32 for an IPv4 block"
                                   : "prefix length over 128 for an IPv6 block");
    }
    out->prefix = v;
  }
  for (unsigned bit = out->prefix; bit < max; bit++) {
    if (out->addr[bit / 8] & (0x80u >> (bit % 8))) {
      return refuse(why, "bits set past the prefix length (the block's first address is meant?)");
    }
  }
  return 0;
}

static int prefix_equal(const unsigned char *a, const unsigned char *b, unsigned prefix) {
  unsigned bytes = prefix / 8, rest = prefix % 8;
  if (memcmp(a, b, bytes) != 0) return 0;
  if (rest == 0) return 1;
  unsigned char mask = (unsigned char)(0xFFu << (8 - rest));
  return (a[bytes] & mask) == (b[bytes] & mask);
}

int pst_proxy_cidr_match(const pst_cidr_t *blocks, size_t n, const struct sockaddr *sa) {
  const unsigned char *v4 = NULL, *v6 = NULL;
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  if (sa->sa_family == AF_INET) {
    v4 = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
  } else if (sa->sa_family == AF_INET6) {
    v6 = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (memcmp(v6, mapped, 12) == 0) v4 = v6 + 12; /* a dual-stack listener's IPv4 client */
  }
  for (size_t i = 0; i < n; i++) {
    const pst_cidr_t *c = &blocks[i];
    if (c->family == AF_INET && v4 != NULL && prefix_equal(c->addr, v4, c->prefix)) return 1;
    if (c->family == AF_INET6 && v6 != NULL && prefix_equal(c->addr, v6, c->prefix)) return 1;
  }
  return 0;
}
