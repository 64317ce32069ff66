/* postern: unit tests for the PROXY protocol parser and writer (src/proxy.c):
 * every refusal, headers fed one byte at a time, and what the writer makes
 * read back by the parser. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "postern/common.h"
#include "postern/proxy.h"

static const unsigned char SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Parses the whole of data, and checks that every shorter prefix is either
 * "more" or the same refusal (a valid prefix never refuses). Returns the
 * final answer. */
static int parse_all(const void *data, size_t len, pst_proxy_t accept, pst_proxy_hdr_t *h,
                     const char **why) {
  int rc = pst_proxy_parse(data, len, accept, h, why);
  for (size_t n = 0; n < len; n++) {
    pst_proxy_hdr_t tmp;
    const char *w;
    int r = pst_proxy_parse(data, n, accept, &tmp, &w);
    if (rc > 0) {
      assert_int_equal(r, 0); /* every prefix of a good header waits for more */
    } else if (r != 0) {
      assert_int_equal(r, PST_EPROTO);
    }
  }
  return rc;
}

static int v1(const char *line, pst_proxy_hdr_t *h) {
  const char *why;
  return parse_all(line, strlen(line), PST_PROXY_ANY, h, &why);
}

static const char *v1_why(const char *line) {
  pst_proxy_hdr_t h;
  const char *why = NULL;
  int rc = pst_proxy_parse(line, strlen(line), PST_PROXY_ANY, &h, &why);
  if (rc != PST_EPROTO) {
    fprintf(stderr, "not refused (%d): %s\n", rc, line);
    fail();
  }
  assert_non_null(why);
  return why;
}

static void check_sa4(const struct sockaddr_storage *ss, const char *ip, unsigned port) {
  const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
  char buf[INET_ADDRSTRLEN];
  assert_int_equal(sin->sin_family, AF_INET);
  inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
  assert_string_equal(buf, ip);
  assert_int_equal(ntohs(sin->sin_port), port);
}

static void check_sa6(const struct sockaddr_storage *ss, const char *ip, unsigned port) {
  const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
  char buf[INET6_ADDRSTRLEN];
  assert_int_equal(sin6->sin6_family, AF_INET6);
  inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
  assert_string_equal(buf, ip);
  assert_int_equal(ntohs(sin6->sin6_port), port);
}

static void test_v1_good(void **state) {
  pst_proxy_hdr_t h;
  const char *l = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  assert_int_equal(v1(l, &h), (int)strlen(l));
  assert_int_equal(h.version, 1);
  assert_int_equal(h.local, 0);
  check_sa4(&h.src, "192.168.0.1", 56324);
  check_sa4(&h.dst, "192.168.0.11", 443);
  l = "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n";
  assert_int_equal(v1(l, &h), (int)strlen(l));
  check_sa6(&h.src, "2001:db8::1", 0);
  check_sa6(&h.dst, "::1", 65535);
  l = "PROXY TCP4 255.255.255.255 0.0.0.0 65535 1\r\n";
  assert_int_equal(v1(l, &h), (int)strlen(l));
  assert_int_equal(v1("PROXY UNKNOWN\r\n", &h), 15);
  assert_int_equal(h.local, 1);
  l = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
      "ffff 65535 65535\r\n";
  assert_int_equal(strlen(l), PST_PROXY_V1_MAX);
  assert_int_equal(v1(l, &h), PST_PROXY_V1_MAX);
  assert_int_equal(h.local, 1);
  /* Bytes after the header are not its business. */
  const char *more = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n\x16\x03\x01";
  assert_int_equal(pst_proxy_parse(more, strlen(more), PST_PROXY_V1, &h, &(const char *){0}), 32);
}

static void test_v1_refused(void **state) {
  const char *bad[] = {
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",  /* LF alone */
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX", /* CR alone */
      "PROXY TCP5 1.2.3.4 1.2.3.4 1 1\r\n",               /* protocol */
      "PROXY tcp4 1.2.3.4 1.2.3.4 1 1\r\n",               /* case */
      "PROXY  TCP4 1.2.3.4 1.2.3.4 1 1\r\n",              /* two spaces */
      "PROXY TCP4 1.2.3.4  1.2.3.4 1 1\r\n",              /* two spaces */
      "PROXY TCP4 1.2.3.4 1.2.3.4 1 1 \r\n",              /* trailing space */
      "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",                 /* a field missing */
      "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",             /* a field too many */
      "PROXY TCP4 1.2.3.04 1.2.3.4 1 1\r\n",              /* heading zero */
      "PROXY TCP4 1.2.3.256 1.2.3.4 1 1\r\n",             /* octet range */
      "PROXY TCP4 1.2.3 1.2.3.4 1 1\r\n",                 /* three octets */
      "PROXY TCP4 ::1 1.2.3.4 1 1\r\n",                   /* family mismatch */
      "PROXY TCP6 1.2.3.4 ::1 1 1\r\n",                   /* family mismatch */
      "PROXY TCP6 ::1 :::1 1 1\r\n",                      /* bad IPv6 */
      "PROXY TCP6 ::1 ::g 1 1\r\n",                       /* bad IPv6 */
      "PROXY TCP4 1.2.3.4 1.2.3.4 65536 1\r\n",           /* port range */
      "PROXY TCP4 1.2.3.4 1.2.3.4 01 1\r\n",              /* port heading zero */
      "PROXY TCP4 1.2.3.4 1.2.3.4 1 -1\r\n",              /* sign */
      "PROXY TCP4 1.2.3.4 1.2.3.4 1 1x\r\n",              /* junk */
      "PROXY UNKNOWNX\r\n",                               /* not UNKNOWN */
      "PROXY \r\n",                                       /* no protocol */
      "PROXY",                                            /* fine so far: see below */
      "PROXX TCP4 1.2.3.4 1.2.3.4 1 1\r\n",               /* magic */
      "GET / HTTP/1.1\r\n",                               /* no header */
      "\x16\x03\x01\x02\x00",                             /* TLS first */
  };
  for (size_t i = 0; i < PST_ARRAY_SIZE(bad); i++) {
    if (strcmp(bad[i], "PROXY") == 0) continue;
    const char *why = v1_why(bad[i]);
    assert_true(strlen(why) > 0);
  }
  /* No CRLF within 107 bytes. */
  char longl[200];
  memset(longl, 'f', sizeof(longl));
  memcpy(longl, "PROXY UNKNOWN ", 14);
  pst_proxy_hdr_t h;
  const char *why;
  assert_int_equal(pst_proxy_parse(longl, 106, PST_PROXY_ANY, &h, &why), 0);
  assert_int_equal(pst_proxy_parse(longl, 107, PST_PROXY_ANY, &h, &why), PST_EPROTO);
  assert_string_equal(why, "PROXY v1: no CRLF within 107 bytes");
  /* A CR as the 107th byte: the LF would be the 108th. */
  longl[106] = '\r';
  assert_int_equal(pst_proxy_parse(longl, 107, PST_PROXY_ANY, &h, &why), PST_EPROTO);
  /* Garbage is refused at once, before any CRLF. */
  assert_int_equal(pst_proxy_parse("PROXY TCP4 1.2.3.4 x", 20, PST_PROXY_ANY, &h, &why),
                   PST_EPROTO);
  assert_int_equal(pst_proxy_parse("PROXY FOO", 9, PST_PROXY_ANY, &h, &why), PST_EPROTO);
  assert_int_equal(pst_proxy_parse("G", 1, PST_PROXY_ANY, &h, &why), PST_EPROTO);
  assert_string_equal(
      why, "no PROXY header: the first bytes are neither \"PROXY \" nor the v2 signature");
  assert_int_equal(pst_proxy_parse("\x16", 1, PST_PROXY_ANY, &h, &why), PST_EPROTO);
  assert_string_equal(why, "no PROXY header: the client's TLS handshake came first");
  /* A version the listener does not take. */
  assert_int_equal(pst_proxy_parse("P", 1, PST_PROXY_V2, &h, &why), PST_EPROTO);
  assert_string_equal(why, "a PROXY v1 line where accept_proxy is v2");
  assert_int_equal(pst_proxy_parse("\r", 1, PST_PROXY_V1, &h, &why), PST_EPROTO);
  assert_string_equal(why, "a PROXY v2 header where accept_proxy is v1");
  assert_int_equal(pst_proxy_parse("", 0, PST_PROXY_V1, &h, &why), 0);
}

/* A v2 header: command, family, address block and TLVs as given. */
static size_t v2_make(unsigned char *out, unsigned ver_cmd, unsigned fam, const void *body,
                      size_t blen) {
  memcpy(out, SIG, 12);
  out[12] = (unsigned char)ver_cmd;
  out[13] = (unsigned char)fam;
  out[14] = (unsigned char)(blen >> 8);
  out[15] = (unsigned char)blen;
  memcpy(out + 16, body, blen);
  return 16 + blen;
}

static const unsigned char ADDR4[12] = {10, 1, 2, 3, 192, 0, 2, 1, 0x1F, 0x90, 0x01, 0xBB};

static int v2(const unsigned char *d, size_t n, pst_proxy_hdr_t *h, const char **why) {
  return parse_all(d, n, PST_PROXY_ANY, h, why);
}

static void test_v2_good(void **state) {
  unsigned char buf[600], body[300];
  pst_proxy_hdr_t h;
  const char *why;
  size_t n = v2_make(buf, 0x21, 0x11, ADDR4, 12);
  assert_int_equal(v2(buf, n, &h, &why), 28);
  assert_int_equal(h.version, 2);
  assert_int_equal(h.local, 0);
  check_sa4(&h.src, "10.1.2.3", 8080);
  check_sa4(&h.dst, "192.0.2.1", 443);
  assert_null(h.tlv);
  /* IPv6, with a NOOP TLV and an unknown custom one. */
  memset(body, 0, 36);
  body[0] = 0x20, body[1] = 0x01, body[2] = 0x0d, body[3] = 0xb8, body[15] = 0x05;
  body[31] = 0x01;
  body[32] = 0x30, body[33] = 0x39, body[34] = 0, body[35] = 80;
  memcpy(body + 36,
         "\x04\x00\x02"
         "xx\xE0\x00\x01"
         "z",
         9);
  n = v2_make(buf, 0x21, 0x21, body, 45);
  assert_int_equal(v2(buf, n, &h, &why), 61);
  check_sa6(&h.src, "2001:db8::5", 12345);
  check_sa6(&h.dst, "::1", 80);
  assert_int_equal(h.tlv_len, 9);
  /* LOCAL: the socket's own addresses, whatever the family says. */
  n = v2_make(buf, 0x20, 0x11, ADDR4, 12);
  assert_int_equal(v2(buf, n, &h, &why), 28);
  assert_int_equal(h.local, 1);
  n = v2_make(buf, 0x20, 0x00, "", 0);
  assert_int_equal(v2(buf, n, &h, &why), 16);
  assert_int_equal(h.local, 1);
  /* UNSPEC, UNIX and UDP families with PROXY: treated as LOCAL. */
  n = v2_make(buf, 0x21, 0x00, "abc", 3);
  assert_int_equal(v2(buf, n, &h, &why), 19);
  assert_int_equal(h.local, 1);
  memset(body, 'u', 216);
  n = v2_make(buf, 0x21, 0x31, body, 216);
  assert_int_equal(v2(buf, n, &h, &why), 232);
  assert_int_equal(h.local, 1);
  n = v2_make(buf, 0x21, 0x12, ADDR4, 12);
  assert_int_equal(v2(buf, n, &h, &why), 28);
  assert_int_equal(h.local, 1);
  /* The largest header accepted. */
  static unsigned char big[PST_PROXY_V2_MAX + 1];
  static unsigned char bigbody[PST_PROXY_V2_MAX];
  memcpy(bigbody, ADDR4, 12);
  size_t tl = PST_PROXY_V2_MAX - 16 - 12 - 3;
  bigbody[12] = PST_PP2_TYPE_NOOP, bigbody[13] = (unsigned char)(tl >> 8);
  bigbody[14] = (unsigned char)tl;
  n = v2_make(big, 0x21, 0x11, bigbody, PST_PROXY_V2_MAX - 16);
  assert_int_equal(pst_proxy_parse(big, n, PST_PROXY_V2, &h, &why), PST_PROXY_V2_MAX);
}

static void v2_refused(const unsigned char *d, size_t n, const char *want) {
  pst_proxy_hdr_t h;
  const char *why = NULL;
  assert_int_equal(v2(d, n, &h, &why), PST_EPROTO);
  assert_non_null(why);
  if (want != NULL) assert_string_equal(why, want);
}

static void test_v2_refused(void **state) {
  unsigned char buf[600], body[300];
  size_t n;
  /* Signature. */
  n = v2_make(buf, 0x21, 0x11, ADDR4, 12);
  buf[11] = 0x0B;
  v2_refused(buf, n, "PROXY v2: bad signature");
  /* Version. */
  n = v2_make(buf, 0x11, 0x11, ADDR4, 12);
  v2_refused(buf, n, "PROXY v2: version is not 2");
  n = v2_make(buf, 0x31, 0x11, ADDR4, 12);
  v2_refused(buf, n, "PROXY v2: version is not 2");
  /* Command. */
  n = v2_make(buf, 0x22, 0x11, ADDR4, 12);
  v2_refused(buf, n, "PROXY v2: command neither LOCAL nor PROXY");
  /* Family and protocol bytes the spec does not define. */
  unsigned fams[] = {0x01, 0x10, 0x13, 0x41, 0x23, 0xF1};
  for (size_t i = 0; i < PST_ARRAY_SIZE(fams); i++) {
    n = v2_make(buf, 0x21, fams[i], ADDR4, 12);
    v2_refused(buf, n, "PROXY v2: undefined address family or transport protocol");
  }
  /* Address blocks too short for their family. */
  n = v2_make(buf, 0x21, 0x11, ADDR4, 11);
  v2_refused(buf, n, "PROXY v2: address block shorter than its family's");
  memset(body, 0, sizeof(body));
  n = v2_make(buf, 0x21, 0x21, body, 35);
  v2_refused(buf, n, "PROXY v2: address block shorter than its family's");
  n = v2_make(buf, 0x21, 0x31, body, 215);
  v2_refused(buf, n, "PROXY v2: address block shorter than its family's");
  /* Oversized: refused as soon as the length is known. */
  memcpy(buf, SIG, 12);
  buf[12] = 0x21, buf[13] = 0x11, buf[14] = 0x10, buf[15] = 0x01; /* 4097 */
  pst_proxy_hdr_t h;
  const char *why;
  assert_int_equal(pst_proxy_parse(buf, 16, PST_PROXY_V2, &h, &why), PST_EPROTO);
  assert_string_equal(why, "PROXY v2: header over 4 KiB");
  buf[14] = 0xFF, buf[15] = 0xFF;
  assert_int_equal(pst_proxy_parse(buf, 16, PST_PROXY_V2, &h, &why), PST_EPROTO);
  /* TLVs that do not fit. */
  memcpy(body, ADDR4, 12);
  memcpy(body + 12,
         "\x01\x00\x05"
         "abc",
         6); /* says 5, has 3 */
  n = v2_make(buf, 0x21, 0x11, body, 18);
  v2_refused(buf, n, "PROXY v2: a TLV does not fit in the header");
  memcpy(body + 12, "\x01\x00", 2); /* a TLV head cut */
  n = v2_make(buf, 0x21, 0x11, body, 14);
  v2_refused(buf, n, "PROXY v2: a TLV does not fit in the header");
  /* UNIQUE_ID over 128 bytes. */
  body[12] = PST_PP2_TYPE_UNIQUE_ID, body[13] = 0, body[14] = 129;
  memset(body + 15, 'i', 129);
  n = v2_make(buf, 0x21, 0x11, body, 12 + 3 + 129);
  v2_refused(buf, n, "PROXY v2: a UNIQUE_ID TLV over 128 bytes");
  body[14] = 128;
  n = v2_make(buf, 0x21, 0x11, body, 12 + 3 + 128);
  assert_int_equal(v2(buf, n, &h, &why), (int)n);
  /* SSL TLVs. */
  memcpy(body + 12, "\x20\x00\x04\x01\x00\x00\x00", 7);
  n = v2_make(buf, 0x21, 0x11, body, 12 + 7);
  v2_refused(buf, n, "PROXY v2: an SSL TLV shorter than its 5 fixed bytes");
  memcpy(body + 12,
         "\x20\x00\x09\x01\x00\x00\x00\x00\x21\x00\x05"
         "x",
         12);
  n = v2_make(buf, 0x21, 0x11, body, 12 + 12);
  v2_refused(buf, n, "PROXY v2: an SSL sub-TLV does not fit in its TLV");
  /* CRC32C: size, two of them, mismatch. */
  memcpy(body + 12,
         "\x03\x00\x03"
         "abc",
         6);
  n = v2_make(buf, 0x21, 0x11, body, 18);
  v2_refused(buf, n, "PROXY v2: a CRC32C TLV not of 4 bytes");
  memcpy(body + 12, "\x03\x00\x04\x00\x00\x00\x00\x03\x00\x04\x00\x00\x00\x00", 14);
  n = v2_make(buf, 0x21, 0x11, body, 26);
  v2_refused(buf, n, "PROXY v2: two CRC32C TLVs");
  memcpy(body + 12, "\x03\x00\x04\x12\x34\x56\x78", 7);
  n = v2_make(buf, 0x21, 0x11, body, 19);
  v2_refused(buf, n, "PROXY v2: CRC32C mismatch");
  /* ... and a right one is accepted: zeros in its place, checksum, put. */
  memset(buf + 16 + 15, 0, 4);
  uint32_t c = pst_proxy_crc32c(buf, n);
  buf[31] = (unsigned char)(c >> 24), buf[32] = (unsigned char)(c >> 16);
  buf[33] = (unsigned char)(c >> 8), buf[34] = (unsigned char)c;
  assert_int_equal(v2(buf, n, &h, &why), (int)n);
  buf[20] ^= 1; /* an address bit flipped */
  v2_refused(buf, n, "PROXY v2: CRC32C mismatch");
}

static void test_crc32c(void **state) {
  /* RFC 3720 B.4's check value for the CRC32c of "123456789". */
  assert_int_equal(pst_proxy_crc32c("123456789", 9), 0xE3069283u);
  unsigned char zeros[32] = {0};
  assert_int_equal(pst_proxy_crc32c(zeros, 32), 0x8A9136AAu);
}

static void test_byte_by_byte(void **state) {
  /* A header arriving one byte at a time waits at every byte, then is
   * taken whole, with what follows left alone. */
  unsigned char buf[100];
  size_t n = v2_make(buf, 0x21, 0x11, ADDR4, 12);
  memcpy(buf + n, "\x16\x03\x01", 3);
  pst_proxy_hdr_t h;
  const char *why;
  for (size_t i = 0; i < n; i++)
    assert_int_equal(pst_proxy_parse(buf, i, PST_PROXY_V2, &h, &why), 0);
  for (size_t i = n; i <= n + 3; i++) {
    assert_int_equal(pst_proxy_parse(buf, i, PST_PROXY_V2, &h, &why), (int)n);
  }
  const char *l = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nX";
  for (size_t i = 0; i < 32; i++)
    assert_int_equal(pst_proxy_parse(l, i, PST_PROXY_V1, &h, &why), 0);
  assert_int_equal(pst_proxy_parse(l, 33, PST_PROXY_V1, &h, &why), 32);
}

static void sa4(struct sockaddr_in *s, const char *ip, unsigned port) {
  memset(s, 0, sizeof(*s));
  s->sin_family = AF_INET;
  inet_pton(AF_INET, ip, &s->sin_addr);
  s->sin_port = htons((uint16_t)port);
}

static void sa6(struct sockaddr_in6 *s, const char *ip, unsigned port) {
  memset(s, 0, sizeof(*s));
  s->sin6_family = AF_INET6;
  inet_pton(AF_INET6, ip, &s->sin6_addr);
  s->sin6_port = htons((uint16_t)port);
}

static void test_write_v1(void **state) {
  struct sockaddr_in a, b;
  struct sockaddr_in6 c;
  sa4(&a, "198.51.100.7", 40000);
  sa4(&b, "127.0.0.1", 8443);
  sa6(&c, "2001:db8::7", 51000);
  pst_buf_t out = {0};
  pst_proxy_info_t info = {.src = (struct sockaddr *)&a, .dst = (struct sockaddr *)&b};
  assert_int_equal(pst_proxy_write(PST_PROXY_V1, &info, &out), 0);
  assert_int_equal(out.len, strlen("PROXY TCP4 198.51.100.7 127.0.0.1 40000 8443\r\n"));
  assert_memory_equal(pst_buf_head(&out), "PROXY TCP4 198.51.100.7 127.0.0.1 40000 8443\r\n",
                      out.len);
  pst_buf_free(&out);
  /* Mixed families: the IPv4 one mapped. */
  info.src = (struct sockaddr *)&c;
  assert_int_equal(pst_proxy_write(PST_PROXY_V1, &info, &out), 0);
  const char *want = "PROXY TCP6 2001:db8::7 ::ffff:127.0.0.1 51000 8443\r\n";
  assert_int_equal(out.len, strlen(want));
  assert_memory_equal(pst_buf_head(&out), want, out.len);
  pst_proxy_hdr_t h;
  const char *why;
  assert_int_equal(pst_proxy_parse(pst_buf_head(&out), out.len, PST_PROXY_V1, &h, &why),
                   (int)out.len);
  check_sa6(&h.src, "2001:db8::7", 51000);
  check_sa6(&h.dst, "::ffff:127.0.0.1", 8443);
  pst_buf_free(&out);
  info.src = NULL;
  assert_int_equal(pst_proxy_write(PST_PROXY_V1, &info, &out), 0);
  assert_memory_equal(pst_buf_head(&out), "PROXY UNKNOWN\r\n", out.len);
  pst_buf_free(&out);
  assert_int_equal(pst_proxy_write(PST_PROXY_NONE, &info, &out), -EINVAL);
}

/* Finds the TLV of type in t (n bytes); returns its value or NULL. */
static const unsigned char *find_tlv(const unsigned char *t, size_t n, unsigned type,
                                     size_t *vlen) {
  unsigned ty;
  const unsigned char *v;
  while (pst_proxy_tlv_next(&t, &n, &ty, &v, vlen) == 1) {
    if (ty == type) return v;
  }
  return NULL;
}

static void check_tlv(const unsigned char *t, size_t n, unsigned type, const char *want) {
  size_t vlen;
  const unsigned char *v = find_tlv(t, n, type, &vlen);
  assert_non_null(v);
  assert_int_equal(vlen, strlen(want));
  assert_memory_equal(v, want, vlen);
}

static void test_write_v2_round_trip(void **state) {
  struct sockaddr_in6 a, b;
  sa6(&a, "2001:db8::42", 61000);
  sa6(&b, "::1", 443);
  pst_proxy_info_t info = {
      .src = (struct sockaddr *)&a,
      .dst = (struct sockaddr *)&b,
      .alpn = "h2",
      .authority = "api.example.test",
      .ssl = 1,
      .ssl_version = "TLSv1.3",
      .ssl_cipher = "TLS_AES_128_GCM_SHA256",
      .ssl_sig_alg = "ecdsa-with-SHA256",
      .ssl_key_alg = "EC256",
      .unique_id = "w0-17",
      .crc32c = 1,
  };
  pst_buf_t out = {0};
  assert_int_equal(pst_proxy_write(PST_PROXY_V2, &info, &out), 0);
  pst_proxy_hdr_t h;
  const char *why;
  const unsigned char *d = (const unsigned char *)pst_buf_head(&out);
  assert_int_equal(parse_all(d, out.len, PST_PROXY_V2, &h, &why), (int)out.len);
  assert_int_equal(d[12], 0x21);
  assert_int_equal(d[13], 0x21);
  assert_int_equal(h.local, 0);
  check_sa6(&h.src, "2001:db8::42", 61000);
  check_sa6(&h.dst, "::1", 443);
  check_tlv(h.tlv, h.tlv_len, PST_PP2_TYPE_ALPN, "h2");
  check_tlv(h.tlv, h.tlv_len, PST_PP2_TYPE_AUTHORITY, "api.example.test");
  check_tlv(h.tlv, h.tlv_len, PST_PP2_TYPE_UNIQUE_ID, "w0-17");
  size_t slen;
  const unsigned char *ssl = find_tlv(h.tlv, h.tlv_len, PST_PP2_TYPE_SSL, &slen);
  assert_non_null(ssl);
  assert_int_equal(ssl[0], PST_PP2_CLIENT_SSL);
  assert_int_not_equal(ssl[1] | ssl[2] | ssl[3] | ssl[4], 0); /* no client certificate verified */
  check_tlv(ssl + 5, slen - 5, PST_PP2_SUBTYPE_SSL_VERSION, "TLSv1.3");
  check_tlv(ssl + 5, slen - 5, PST_PP2_SUBTYPE_SSL_CIPHER, "TLS_AES_128_GCM_SHA256");
  check_tlv(ssl + 5, slen - 5, PST_PP2_SUBTYPE_SSL_SIG_ALG, "ecdsa-with-SHA256");
  check_tlv(ssl + 5, slen - 5, PST_PP2_SUBTYPE_SSL_KEY_ALG, "EC256");
  size_t clen;
  assert_non_null(find_tlv(h.tlv, h.tlv_len, PST_PP2_TYPE_CRC32C, &clen));
  /* Any bit changed breaks the checksum. */
  ((unsigned char *)pst_buf_head(&out))[40] ^= 0x10;
  assert_int_equal(pst_proxy_parse(d, out.len, PST_PROXY_V2, &h, &why), PST_EPROTO);
  pst_buf_free(&out);
  /* IPv4, no TLVs: 28 bytes exactly; no addresses: LOCAL. */
  struct sockaddr_in c, e;
  sa4(&c, "203.0.113.9", 1234);
  sa4(&e, "10.0.0.1", 443);
  pst_proxy_info_t plain = {.src = (struct sockaddr *)&c, .dst = (struct sockaddr *)&e};
  assert_int_equal(pst_proxy_write(PST_PROXY_V2, &plain, &out), 0);
  assert_int_equal(out.len, 28);
  assert_int_equal(pst_proxy_parse(pst_buf_head(&out), out.len, PST_PROXY_ANY, &h, &why), 28);
  check_sa4(&h.src, "203.0.113.9", 1234);
  check_sa4(&h.dst, "10.0.0.1", 443);
  pst_buf_free(&out);
  plain.src = NULL;
  assert_int_equal(pst_proxy_write(PST_PROXY_V2, &plain, &out), 0);
  assert_int_equal(out.len, 16);
  assert_int_equal(((unsigned char *)pst_buf_head(&out))[12], 0x20);
  assert_int_equal(pst_proxy_parse(pst_buf_head(&out), out.len, PST_PROXY_ANY, &h, &why), 16);
  assert_int_equal(h.local, 1);
  pst_buf_free(&out);
  /* Long values are cut to what a TLV of the spec holds. */
  char longs[400];
  memset(longs, 'x', sizeof(longs) - 1);
  longs[sizeof(longs) - 1] = '\0';
  pst_proxy_info_t lng = {.src = (struct sockaddr *)&c,
                          .dst = (struct sockaddr *)&e,
                          .alpn = longs,
                          .authority = longs,
                          .unique_id = longs,
                          .ssl = 1,
                          .ssl_version = longs,
                          .ssl_cipher = longs,
                          .ssl_sig_alg = longs,
                          .ssl_key_alg = longs,
                          .crc32c = 1};
  assert_int_equal(pst_proxy_write(PST_PROXY_V2, &lng, &out), 0);
  assert_int_equal(pst_proxy_parse(pst_buf_head(&out), out.len, PST_PROXY_V2, &h, &why),
                   (int)out.len);
  size_t ulen;
  assert_non_null(find_tlv(h.tlv, h.tlv_len, PST_PP2_TYPE_UNIQUE_ID, &ulen));
  assert_int_equal(ulen, 128);
  pst_buf_free(&out);
}

static void test_cidr(void **state) {
  pst_cidr_t c[3];
  const char *why;
  assert_int_equal(pst_proxy_cidr_parse("10.0.0.0/8", &c[0], &why), 0);
  assert_int_equal(c[0].family, AF_INET);
  assert_int_equal(c[0].prefix, 8);
  assert_int_equal(pst_proxy_cidr_parse("2001:db8::/32", &c[1], &why), 0);
  assert_int_equal(pst_proxy_cidr_parse("127.0.0.1", &c[2], &why), 0);
  assert_int_equal(c[2].prefix, 32);
  const char *bad[] = {"10.0.0.1/8", "10.0.0.0/33", "::/129", "10.0.0.0/",   "10.0.0.0/08",
                       "10.0.0.0/x", "/8",          "host",   "10.0.0.0/8 ", "2001:db8::1/32"};
  for (size_t i = 0; i < PST_ARRAY_SIZE(bad); i++) {
    pst_cidr_t x;
    why = NULL;
    assert_int_equal(pst_proxy_cidr_parse(bad[i], &x, &why), PST_EPROTO);
    assert_non_null(why);
  }
  struct sockaddr_in a;
  struct sockaddr_in6 b;
  sa4(&a, "10.200.1.1", 1);
  assert_true(pst_proxy_cidr_match(c, 3, (struct sockaddr *)&a));
  sa4(&a, "11.0.0.1", 1);
  assert_false(pst_proxy_cidr_match(c, 3, (struct sockaddr *)&a));
  sa4(&a, "127.0.0.1", 1);
  assert_true(pst_proxy_cidr_match(c, 3, (struct sockaddr *)&a));
  sa4(&a, "127.0.0.2", 1);
  assert_false(pst_proxy_cidr_match(c, 3, (struct sockaddr *)&a));
  sa6(&b, "2001:db8:ffff::1", 1);
  assert_true(pst_proxy_cidr_match(c, 3, (struct sockaddr *)&b));
  sa6(&b, "2001:db9::1", 1);
  assert_false(pst_proxy_cidr_match(c, 3, (struct sockaddr *)&b));
  sa6(&b, "::ffff:10.9.9.9", 1); /* a dual-stack listener's IPv4 client */
  assert_true(pst_proxy_cidr_match(c, 3, (struct sockaddr *)&b));
  pst_cidr_t all;
  assert_int_equal(pst_proxy_cidr_parse("0.0.0.0/0", &all, &why), 0);
  assert_true(pst_proxy_cidr_match(&all, 1, (struct sockaddr *)&a));
  assert_true(pst_proxy_cidr_match(&all, 1, (struct sockaddr *)&b));
  assert_false(pst_proxy_cidr_match(NULL, 0, (struct sockaddr *)&a));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v1_good),  cmocka_unit_test(test_v1_refused),
      cmocka_unit_test(test_v2_good),  cmocka_unit_test(test_v2_refused),
      cmocka_unit_test(test_crc32c),   cmocka_unit_test(test_byte_by_byte),
      cmocka_unit_test(test_write_v1), cmocka_unit_test(test_write_v2_round_trip),
      cmocka_unit_test(test_cidr),
  };
  return cmocka_run_group_tests_name("proxy", tests, NULL, NULL);
}
