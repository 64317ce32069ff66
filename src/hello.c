/* postern: finding the ClientHello in the client's first bytes, and what
 * the 0-RTT decision needs from it (see hello.h). RFC 8446 5.1 (records),
 * 4.1.2 (ClientHello), 4.2 (extensions). */
#include "postern/hello.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "postern/common.h"

#define REC_HEADER 5
#define REC_HANDSHAKE 22
#define REC_MAX_PLAIN (1 << 14) /* RFC 8446 5.1: plaintext fragments are at most 2^14 bytes */
#define HS_HEADER 4
#define HS_CLIENT_HELLO 1
#define EXT_SUPPORTED_GROUPS 10
#define EXT_SIGNATURE_ALGORITHMS 13
#define EXT_SUPPORTED_VERSIONS 43
#define EXT_PRE_SHARED_KEY 41
#define EXT_EARLY_DATA 42
#define EXT_KEY_SHARE 51

static unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

static size_t be24(const uint8_t *p) { return (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2]; }

/* Copies n bytes of the handshake stream, from its start, out of the
 * records in data into out. The caller checked that they are there. */
static void gather(const uint8_t *data, size_t n, uint8_t *out) {
  size_t pos = 0, o = 0;
  while (o < n) {
    size_t rlen = be16(data + pos + 3);
    size_t take = rlen < n - o ? rlen : n - o;
    memcpy(out + o, data + pos + REC_HEADER, take);
    o += take;
    pos += REC_HEADER + rlen;
  }
}

/* A simple cursor over the ClientHello body. */
typedef struct {
  const uint8_t *p, *end;
  int bad;
} cur_t;

static size_t take(cur_t *c, size_t n) {
  if (c->bad || (size_t)(c->end - c->p) < n) {
    c->bad = 1;
    return 0;
  }
  size_t v = 0;
  for (size_t i = 0; i < n; i++) v = v << 8 | c->p[i];
  c->p += n;
  return v;
}

static const uint8_t *skip(cur_t *c, size_t n) {
  if (c->bad || (size_t)(c->end - c->p) < n) {
    c->bad = 1;
    return NULL;
  }
  const uint8_t *at = c->p;
  c->p += n;
  return at;
}

/* RFC 8446 4.2.11: identities, then binders, nothing else. */
static int parse_psk(const uint8_t *p, size_t len, pst_hello_t *h) {
  cur_t c = {p, p + len, 0};
  size_t ids_len = take(&c, 2);
  cur_t ids = {c.p, c.p + ids_len, 0};
  if (skip(&c, ids_len) == NULL || ids_len < 7) return PST_EPROTO;
  while (ids.p < ids.end) {
    size_t n = take(&ids, 2);
    if (n == 0 || skip(&ids, n) == NULL || skip(&ids, 4) == NULL) return PST_EPROTO;
    h->identities++;
  }
  size_t binders_len = take(&c, 2);
  cur_t b = {c.p, c.p + binders_len, 0};
  if (skip(&c, binders_len) == NULL || c.p != c.end || binders_len < 33) return PST_EPROTO;
  size_t first = take(&b, 1);
  const uint8_t *binder = skip(&b, first);
  if (binder == NULL || first < 32 || first > sizeof(h->binder)) return PST_EPROTO;
  memcpy(h->binder, binder, first);
  h->binder_len = first;
  return 0;
}

/* RFC 8446 4.2.8: client_shares, each a group and its key exchange. */
static int parse_key_share(const uint8_t *p, size_t len, pst_hello_t *h) {
  cur_t c = {p, p + len, 0};
  size_t list = take(&c, 2);
  if (c.bad || list != (size_t)(c.end - c.p)) return PST_EPROTO;
  while (c.p < c.end) {
    unsigned group = (unsigned)take(&c, 2);
    size_t n = take(&c, 2);
    if (n == 0 || skip(&c, n) == NULL) return PST_EPROTO;
    if (h->n_share_groups < PST_ARRAY_SIZE(h->share_groups)) {
      h->share_groups[h->n_share_groups++] = (uint16_t)group;
    }
  }
  return 0;
}

/* RFC 8446 4.2.3: a list of 2-byte SignatureSchemes. Only the schemes
 * postern's certificates can sign with are recorded; others are skipped
 * (RFC 8446 9.3: unknown values are ignored). */
static int parse_sigalgs(const uint8_t *p, size_t len, pst_hello_t *h) {
  cur_t c = {p, p + len, 0};
  size_t list = take(&c, 2);
  if (c.bad || list != (size_t)(c.end - c.p) || list < 2 || list % 2 != 0) return PST_EPROTO;
  while (c.p < c.end) {
    switch (take(&c, 2)) {
      case 0x0403: h->sigalgs |= PST_HELLO_SIG_ECDSA_P256; break;
      case 0x0503: h->sigalgs |= PST_HELLO_SIG_ECDSA_P384; break;
      case 0x0603: h->sigalgs |= PST_HELLO_SIG_ECDSA_P521; break;
      case 0x0804:
      case 0x0805:
      case 0x0806: h->sigalgs |= PST_HELLO_SIG_RSA_PSS; break;
      case 0x0401:
      case 0x0501:
      case 0x0601: h->sigalgs |= PST_HELLO_SIG_RSA_PKCS1; break;
      case 0x0807: h->sigalgs |= PST_HELLO_SIG_ED25519; break;
      default: break;
    }
  }
  h->has_sigalgs = 1;
  return 0;
}

/* RFC 8446 4.2.7: a list of 2-byte NamedGroups; only the curves an ECDSA
 * certificate may be on are recorded (in TLS 1.2 the certificate's curve
 * must be one the client lists, RFC 8422 5.1). */
static int parse_groups(const uint8_t *p, size_t len, pst_hello_t *h) {
  cur_t c = {p, p + len, 0};
  size_t list = take(&c, 2);
  if (c.bad || list != (size_t)(c.end - c.p) || list < 2 || list % 2 != 0) return PST_EPROTO;
  while (c.p < c.end) {
    switch (take(&c, 2)) {
      case 23: h->groups |= PST_HELLO_GROUP_P256; break;
      case 24: h->groups |= PST_HELLO_GROUP_P384; break;
      case 25: h->groups |= PST_HELLO_GROUP_P521; break;
      default: break;
    }
  }
  h->has_groups = 1;
  return 0;
}

/* RFC 8446 4.2.1: a list of 2-byte versions, with a 1-byte length. */
static int parse_versions(const uint8_t *p, size_t len, pst_hello_t *h) {
  cur_t c = {p, p + len, 0};
  size_t list = take(&c, 1);
  if (c.bad || list != (size_t)(c.end - c.p) || list < 2 || list % 2 != 0) return PST_EPROTO;
  while (c.p < c.end) {
    if (take(&c, 2) == 0x0304) h->tls13 = 1;
  }
  return 0;
}

/* The TLS 1.2 suites of postern's list (tls.c: tls_ciphers), by the
 * authentication they need (RFC 5289 3.2, RFC 7905 2). */
static void note_suites(const uint8_t *p, size_t len, pst_hello_t *h) {
  for (size_t i = 0; i + 1 < len; i += 2) {
    switch (be16(p + i)) {
      case 0xC02B: /* ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 */
      case 0xC02C: /* ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 */
      case 0xCCA9: /* ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 */
        h->suites |= PST_HELLO_SUITE_ECDSA;
        break;
      case 0xC02F: /* ECDHE_RSA_WITH_AES_128_GCM_SHA256 */
      case 0xC030: /* ECDHE_RSA_WITH_AES_256_GCM_SHA384 */
      case 0xCCA8: /* ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 */
        h->suites |= PST_HELLO_SUITE_RSA;
        break;
      default: break;
    }
  }
}

static int parse_hello(const uint8_t *body, size_t len, pst_hello_t *h) {
  cur_t c = {body, body + len, 0};
  skip(&c, 2 + 32); /* legacy_version, random */
  size_t sid = take(&c, 1);
  if (sid > 32) return PST_EPROTO;
  skip(&c, sid);
  size_t suites = take(&c, 2);
  if (suites < 2 || suites % 2 != 0) return PST_EPROTO;
  const uint8_t *suite_list = skip(&c, suites);
  if (suite_list != NULL) note_suites(suite_list, suites, h);
  size_t comp = take(&c, 1);
  if (comp < 1) return PST_EPROTO;
  skip(&c, comp);
  if (c.bad) return PST_EPROTO;
  if (c.p == c.end) return 0; /* no extensions at all: an old client */
  size_t exts = take(&c, 2);
  if (c.bad || exts != (size_t)(c.end - c.p)) return PST_EPROTO;
  while (c.p < c.end) {
    unsigned type = (unsigned)take(&c, 2);
    size_t n = take(&c, 2);
    const uint8_t *data = skip(&c, n);
    if (data == NULL) return PST_EPROTO;
    if (type == EXT_EARLY_DATA) {
      if (n != 0 || h->early_data) return PST_EPROTO; /* empty in a ClientHello */
      h->early_data = 1;
    } else if (type == EXT_KEY_SHARE) {
      if (h->n_share_groups > 0 || parse_key_share(data, n, h) != 0) return PST_EPROTO;
    } else if (type == EXT_SUPPORTED_GROUPS) {
      if (h->has_groups || parse_groups(data, n, h) != 0) return PST_EPROTO;
    } else if (type == EXT_SIGNATURE_ALGORITHMS) {
      if (h->has_sigalgs || parse_sigalgs(data, n, h) != 0) return PST_EPROTO;
    } else if (type == EXT_SUPPORTED_VERSIONS) {
      if (h->tls13 || parse_versions(data, n, h) != 0) return PST_EPROTO;
    } else if (type == EXT_PRE_SHARED_KEY) {
      /* It must be the last extension (RFC 8446 4.2.11). */
      if (c.p != c.end || parse_psk(data, n, h) != 0) return PST_EPROTO;
      h->psk = 1;
    }
  }
  return 0;
}

int pst_hello_scan(const uint8_t *data, size_t len, pst_hello_t *h) {
  memset(h, 0, sizeof(*h));
  /* Walk whole records, adding up their handshake bytes, until the
   * ClientHello's length is known and covered. */
  size_t pos = 0, avail = 0, msg_len = 0;
  while (msg_len == 0 || avail < msg_len) {
    if (len - pos < REC_HEADER) return PST_HELLO_NEED_MORE;
    const uint8_t *rec = data + pos;
    size_t rlen = be16(rec + 3);
    if (rec[0] != REC_HANDSHAKE || rec[1] != 3 || rlen == 0 || rlen > REC_MAX_PLAIN) {
      return PST_EPROTO;
    }
    if (len - pos - REC_HEADER < rlen) return PST_HELLO_NEED_MORE;
    avail += rlen;
    pos += REC_HEADER + rlen;
    if (msg_len == 0 && avail >= HS_HEADER) {
      uint8_t hdr[HS_HEADER];
      gather(data, HS_HEADER, hdr);
      if (hdr[0] != HS_CLIENT_HELLO) return PST_EPROTO;
      msg_len = HS_HEADER + be24(hdr + 1);
      if (msg_len > PST_HELLO_MAX) return PST_EPROTO;
    }
  }
  int rc;
  if (be16(data + 3) >= msg_len) { /* the usual case: one record */
    rc = parse_hello(data + REC_HEADER + HS_HEADER, msg_len - HS_HEADER, h);
  } else {
    uint8_t *msg = malloc(msg_len);
    if (msg == NULL) return -ENOMEM;
    gather(data, msg_len, msg);
    rc = parse_hello(msg + HS_HEADER, msg_len - HS_HEADER, h);
    free(msg);
  }
  if (rc != 0) memset(h, 0, sizeof(*h));
  return rc;
}
