/* postern: the OCSP response stapled with a certificate (RFC 6960, RFC 6066
 * 8, RFC 8446 4.4.2.1), checked at load the way a strict client would, and
 * the leaf's must-staple feature (RFC 7633). Part of the cert module (see
 * src/cert.c); runs at start-up, for `postern -t` and in the reload thread.
 *
 * Why a parser here rather than wolfSSL's OCSP API (5.5.4, opensslall):
 * - wolfSSL_d2i_OCSP_RESPONSE decodes with the dates checked against the
 *   clock and fails without saying why, so a stale response cannot be told
 *   from a corrupt one, and the warning could not name the reason;
 * - wolfSSL_OCSP_basic_verify verifies only an embedded responder
 *   certificate against a store, not the response's signature by the
 *   issuer, and does not check id-kp-OCSPSigning;
 * - wolfSSL_OCSP_resp_find_status compares serials over the response's
 *   length only (a prefix matches), and wolfSSL_OCSP_check_validity is a
 *   stub that always succeeds.
 * So the DER is walked here (a bounded reader: definite lengths, nothing
 * read past its enclosing element), hashes come from wolfCrypt and
 * signatures are verified with wolfSSL's EVP layer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* options.h first: wolfSSL's struct layouts depend on it. */
#include <wolfssl/options.h>

#include <wolfssl/openssl/evp.h>
#include <wolfssl/openssl/x509v3.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "cert_int.h"

/* Responses are a few KiB; TLS 1.3 carries one in a 16-bit extension. */
#define OCSP_FILE_MAX 16384
/* A responder's clock may run a little ahead of postern's. */
#define OCSP_SKEW 300

/* ---- a bounded DER reader (X.690 8.1) ---- */

typedef struct {
  const uint8_t *p; /* what is left to read */
  size_t len;
} der_t;

typedef struct {
  unsigned tag;       /* the identifier octet (low tag numbers only) */
  const uint8_t *tlv; /* the whole element, header included */
  size_t tlv_len;
  const uint8_t *val; /* its contents */
  size_t len;
} tlv_t;

/* Reads the next element of d. Returns 0, or -1 for a malformed one
 * (indefinite or oversized length, high tag number, past the end). */
static int der_next(der_t *d, tlv_t *t) {
  if (d->len < 2 || (d->p[0] & 0x1f) == 0x1f) return -1;
  size_t hdr = 2, len = d->p[1];
  if (len & 0x80) {
    size_t n = len & 0x7f;
    if (n == 0 || n > 3 || d->len < 2 + n) return -1;
    len = 0;
    for (size_t i = 0; i < n; i++) len = len << 8 | d->p[2 + i];
    hdr += n;
  }
  if (len > d->len - hdr) return -1;
  t->tag = d->p[0];
  t->tlv = d->p;
  t->tlv_len = hdr + len;
  t->val = d->p + hdr;
  t->len = len;
  d->p += hdr + len;
  d->len -= hdr + len;
  return 0;
}

/* Reads the next element and requires its tag. */
static int der_expect(der_t *d, unsigned tag, tlv_t *t) {
  return der_next(d, t) == 0 && t->tag == tag ? 0 : -1;
}

/* The next element when it has this tag (an OPTIONAL or DEFAULT field):
 * 1 and t, or 0 with d unchanged. */
static int der_optional(der_t *d, unsigned tag, tlv_t *t) {
  der_t save = *d;
  if (der_next(d, t) == 0 && t->tag == tag) return 1;
  *d = save;
  return 0;
}

static der_t der_in(const tlv_t *t) {
  der_t d = {t->val, t->len};
  return d;
}

#define TAG_INT 0x02
#define TAG_BITS 0x03
#define TAG_OCTETS 0x04
#define TAG_OID 0x06
#define TAG_ENUM 0x0a
#define TAG_SEQ 0x30
#define TAG_GENTIME 0x18
#define CTX(n) (0xa0 | (n)) /* [n] constructed */
#define CTX_PRIM(n) (0x80 | (n))

static int oid_is(const tlv_t *t, const uint8_t *oid, size_t len) {
  return t->tag == TAG_OID && t->len == len && memcmp(t->val, oid, len) == 0;
}

/* GeneralizedTime "YYYYMMDDHHMMSSZ" (RFC 5280 4.1.2.5.2, which RFC 6960
 * follows) to time_t. Returns 0 or -1. */
static int gen_time(const tlv_t *t, time_t *out) {
  if (t->tag != TAG_GENTIME || t->len != 15 || t->val[14] != 'Z') return -1;
  int d[14];
  for (size_t i = 0; i < 14; i++) {
    if (t->val[i] < '0' || t->val[i] > '9') return -1;
    d[i] = t->val[i] - '0';
  }
  struct tm tm = {0};
  tm.tm_year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3] - 1900;
  tm.tm_mon = d[4] * 10 + d[5] - 1;
  tm.tm_mday = d[6] * 10 + d[7];
  tm.tm_hour = d[8] * 10 + d[9];
  tm.tm_min = d[10] * 10 + d[11];
  tm.tm_sec = d[12] * 10 + d[13];
  *out = timegm(&tm);
  return 0;
}

/* ---- what the certificates say ---- */

/* RFC 5280 4.1: the parts of a certificate the OCSP checks use. */
typedef struct {
  tlv_t serial;  /* INTEGER */
  tlv_t subject; /* Name, whole */
  tlv_t key;     /* subjectPublicKey BIT STRING */
  tlv_t exts;    /* [3] Extensions, tag 0 when absent */
} x509_parts_t;

static int x509_parts(WOLFSSL_X509 *x, x509_parts_t *out) {
  int len = 0;
  const unsigned char *der = wolfSSL_X509_get_der(x, &len);
  if (der == NULL || len <= 0) return -1;
  der_t d = {der, (size_t)len};
  tlv_t cert, tbs, t, spki;
  if (der_expect(&d, TAG_SEQ, &cert) != 0) return -1;
  d = der_in(&cert);
  if (der_expect(&d, TAG_SEQ, &tbs) != 0) return -1;
  d = der_in(&tbs);
  memset(out, 0, sizeof(*out));
  der_optional(&d, CTX(0), &t); /* version */
  if (der_expect(&d, TAG_INT, &out->serial) != 0 || der_expect(&d, TAG_SEQ, &t) != 0 ||
      der_expect(&d, TAG_SEQ, &t) != 0 ||            /* issuer */
      der_expect(&d, TAG_SEQ, &t) != 0 ||            /* validity */
      der_expect(&d, TAG_SEQ, &out->subject) != 0 || /* subject */
      der_expect(&d, TAG_SEQ, &spki) != 0)
    return -1;
  der_t k = der_in(&spki);
  if (der_expect(&k, TAG_SEQ, &t) != 0 || der_expect(&k, TAG_BITS, &out->key) != 0 ||
      out->key.len < 1)
    return -1;
  der_optional(&d, CTX_PRIM(1), &t); /* issuerUniqueID */
  der_optional(&d, CTX_PRIM(2), &t); /* subjectUniqueID */
  der_optional(&d, CTX(3), &out->exts);
  return 0;
}

/* RFC 7633 4.2: the TLS Feature extension (id-pe-tlsfeature) listing
 * status_request (5). Returns 1 when the leaf has it. */
static int must_staple(const x509_parts_t *leaf) {
  static const uint8_t tlsfeature[] = {0x2b, 6, 1, 5, 5, 7, 1, 24};
  if (leaf->exts.tag == 0) return 0;
  der_t d = der_in(&leaf->exts), list;
  tlv_t seq, ext, oid, v;
  if (der_expect(&d, TAG_SEQ, &seq) != 0) return 0;
  list = der_in(&seq);
  while (der_next(&list, &ext) == 0) {
    der_t e = der_in(&ext);
    if (der_expect(&e, TAG_OID, &oid) != 0 || !oid_is(&oid, tlsfeature, sizeof(tlsfeature)))
      continue;
    der_optional(&e, 0x01, &v); /* critical */
    if (der_expect(&e, TAG_OCTETS, &v) != 0) return 0;
    der_t f = der_in(&v), feats;
    if (der_expect(&f, TAG_SEQ, &v) != 0) return 0;
    feats = der_in(&v);
    while (der_next(&feats, &v) == 0) {
      if (v.tag == TAG_INT && v.len == 1 && v.val[0] == 5) return 1;
    }
  }
  return 0;
}

/* ---- the response ---- */

typedef struct {
  int status; /* 0 good, 1 revoked, 2 unknown */
  time_t this_update, next_update;
} single_t;

/* RFC 6960 4.1.1 CertID: does it name this leaf? The hash algorithm is
 * the response's choice: SHA-1 (what `openssl ocsp` uses by default) or
 * SHA-256. Returns 1, 0, or -1 when malformed or of another algorithm. */
static int certid_matches(const tlv_t *certid, const x509_parts_t *leaf,
                          const x509_parts_t *issuer) {
  static const uint8_t sha1[] = {0x2b, 0x0e, 0x03, 0x02, 0x1a};
  static const uint8_t sha256[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01};
  der_t d = der_in(certid);
  tlv_t alg, oid, name_hash, key_hash, serial;
  if (der_expect(&d, TAG_SEQ, &alg) != 0 || der_expect(&d, TAG_OCTETS, &name_hash) != 0 ||
      der_expect(&d, TAG_OCTETS, &key_hash) != 0 || der_expect(&d, TAG_INT, &serial) != 0)
    return -1;
  der_t a = der_in(&alg);
  if (der_expect(&a, TAG_OID, &oid) != 0) return -1;
  uint8_t nh[32], kh[32];
  size_t hl;
  /* issuerKeyHash: over the key's BIT STRING value, without the
   * unused-bits octet (RFC 6960 4.1.1). */
  const uint8_t *key = issuer->key.val + 1;
  word32 key_len = (word32)(issuer->key.len - 1);
  if (oid_is(&oid, sha1, sizeof(sha1))) {
    hl = 20;
    if (wc_ShaHash(issuer->subject.tlv, (word32)issuer->subject.tlv_len, nh) != 0 ||
        wc_ShaHash(key, key_len, kh) != 0)
      return -1;
  } else if (oid_is(&oid, sha256, sizeof(sha256))) {
    hl = 32;
    if (wc_Sha256Hash(issuer->subject.tlv, (word32)issuer->subject.tlv_len, nh) != 0 ||
        wc_Sha256Hash(key, key_len, kh) != 0)
      return -1;
  } else {
    return -1;
  }
  return name_hash.len == hl && memcmp(name_hash.val, nh, hl) == 0 && key_hash.len == hl &&
         memcmp(key_hash.val, kh, hl) == 0 && serial.len == leaf->serial.len &&
         memcmp(serial.val, leaf->serial.val, serial.len) == 0;
}

/* RFC 6960 4.2.1 SingleResponse. Returns 1 and out when it is about the
 * leaf, 0 when about another certificate, -1 when malformed. */
static int single_read(const tlv_t *sr, const x509_parts_t *leaf, const x509_parts_t *issuer,
                       single_t *out) {
  der_t d = der_in(sr);
  tlv_t certid, status, t;
  if (der_expect(&d, TAG_SEQ, &certid) != 0 || der_next(&d, &status) != 0) return -1;
  int m = certid_matches(&certid, leaf, issuer);
  if (m <= 0) return m;
  switch (status.tag) {
    case CTX_PRIM(0): out->status = 0; break; /* good [0] IMPLICIT NULL */
    case CTX(1): out->status = 1; break;      /* revoked [1] IMPLICIT RevokedInfo */
    case CTX_PRIM(2): out->status = 2; break; /* unknown [2] IMPLICIT NULL */
    default: return -1;
  }
  if (der_next(&d, &t) != 0 || gen_time(&t, &out->this_update) != 0) return -1;
  out->next_update = 0;
  if (der_optional(&d, CTX(0), &t)) {
    der_t n = der_in(&t);
    if (der_next(&n, &t) != 0 || gen_time(&t, &out->next_update) != 0) return -1;
  }
  return 1;
}

/* The EVP digest of a signature algorithm (RFC 4055, RFC 5758 3.2), NULL
 * for one not handled (RSA-PSS, DSA, Ed25519). */
static const WOLFSSL_EVP_MD *sig_md(const tlv_t *alg) {
  static const struct {
    uint8_t oid[9];
    uint8_t len;
    int md; /* 1 SHA-256, 2 SHA-384, 3 SHA-512 */
  } algs[] = {
      {{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b}, 9, 1}, /* sha256WithRSA */
      {{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c}, 9, 2}, /* sha384WithRSA */
      {{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d}, 9, 3}, /* sha512WithRSA */
      {{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}, 8, 1},       /* ecdsa-with-SHA256 */
      {{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}, 8, 2},       /* ecdsa-with-SHA384 */
      {{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04}, 8, 3},       /* ecdsa-with-SHA512 */
  };
  der_t d = der_in(alg);
  tlv_t oid;
  if (der_expect(&d, TAG_OID, &oid) != 0) return NULL;
  for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
    if (!oid_is(&oid, algs[i].oid, algs[i].len)) continue;
    return algs[i].md == 1   ? wolfSSL_EVP_sha256()
           : algs[i].md == 2 ? wolfSSL_EVP_sha384()
                             : wolfSSL_EVP_sha512();
  }
  return NULL;
}

/* Whether key signed tbs (the whole tbsResponseData element). */
static int sig_ok(WOLFSSL_EVP_PKEY *key, const WOLFSSL_EVP_MD *md, const tlv_t *tbs,
                  const tlv_t *sig) {
  if (key == NULL || sig->len < 2 || sig->val[0] != 0) return 0;
  WOLFSSL_EVP_MD_CTX *ctx = wolfSSL_EVP_MD_CTX_new();
  if (ctx == NULL) return 0;
  int ok = wolfSSL_EVP_DigestVerifyInit(ctx, NULL, md, NULL, key) == WOLFSSL_SUCCESS &&
           wolfSSL_EVP_DigestVerifyUpdate(ctx, tbs->tlv, tbs->tlv_len) == WOLFSSL_SUCCESS &&
           wolfSSL_EVP_DigestVerifyFinal(ctx, sig->val + 1, sig->len - 1) == WOLFSSL_SUCCESS;
  wolfSSL_EVP_MD_CTX_free(ctx);
  return ok;
}

/* RFC 6960 4.2.2.2: a delegated responder is a certificate the issuer
 * signed, with id-kp-OCSPSigning, valid now. Returns its key (owned by
 * the caller) when it verifies the response, else NULL and why in *why. */
static WOLFSSL_EVP_PKEY *delegated_key(const tlv_t *certs, WOLFSSL_X509 *issuer, time_t now,
                                       const char **why) {
  der_t d = der_in(certs), list;
  tlv_t seq, c;
  if (der_expect(&d, TAG_SEQ, &seq) != 0) return NULL;
  list = der_in(&seq);
  WOLFSSL_EVP_PKEY *ikey = wolfSSL_X509_get_pubkey(issuer);
  WOLFSSL_EVP_PKEY *found = NULL;
  while (ikey != NULL && found == NULL && der_next(&list, &c) == 0) {
    const unsigned char *p = c.tlv;
    WOLFSSL_X509 *x = wolfSSL_d2i_X509(NULL, &p, (int)c.tlv_len);
    if (x == NULL) continue;
    pst_cert_info_t info = {0};
    if (wolfSSL_X509_NAME_cmp(wolfSSL_X509_get_issuer_name(x),
                              wolfSSL_X509_get_subject_name(issuer)) != 0 ||
        wolfSSL_X509_verify(x, ikey) != WOLFSSL_SUCCESS) {
      *why =
          "the response is signed by neither the certificate's issuer nor a responder "
          "certificate the issuer signed";
    } else if ((wolfSSL_X509_get_extended_key_usage(x) & XKU_OCSP_SIGN) == 0) {
      *why =
          "the responder certificate lacks the OCSP signing extended key usage "
          "(id-kp-OCSPSigning, RFC 6960 4.2.2.2)";
    } else if (pst_cert_info_fill(x, &info) != 0 || difftime(now, info.not_after) > 0 ||
               difftime(info.not_before, now) > 0) {
      *why = "the responder certificate is expired or not yet valid";
    } else {
      found = wolfSSL_X509_get_pubkey(x);
    }
    free(info.subject);
    free(info.issuer);
    free(info.serial_hex);
    free(info.key_desc);
    wolfSSL_X509_free(x);
  }
  wolfSSL_EVP_PKEY_free(ikey);
  return found;
}

/* The parts of a BasicOCSPResponse (RFC 6960 4.2.1). */
typedef struct {
  tlv_t tbs, alg, sig, certs; /* certs: tag 0 when absent */
  tlv_t responses;            /* SEQUENCE OF SingleResponse */
} basic_t;

/* Unwraps OCSPResponse down to the BasicOCSPResponse. Returns NULL, or
 * why it cannot be used. */
static const char *basic_read(const uint8_t *der, size_t len, basic_t *b, char *msg, size_t cap) {
  static const uint8_t basic_oid[] = {0x2b, 6, 1, 5, 5, 7, 48, 1, 1};
  static const char *const statuses[] = {
      "successful", "malformedRequest", "internalError", "tryLater",
      "(4)",        "sigRequired",      "unauthorized"};
  der_t d = {der, len};
  tlv_t top, st, bytes, t, oct, basic;
  if (der_expect(&d, TAG_SEQ, &top) != 0 || d.len != 0) return "not a DER OCSP response";
  d = der_in(&top);
  if (der_expect(&d, TAG_ENUM, &st) != 0 || st.len != 1) return "not a DER OCSP response";
  if (st.val[0] != 0) {
    snprintf(msg, cap, "the responder answered %s, not a status",
             st.val[0] < 7 ? statuses[st.val[0]] : "an unknown error");
    return msg;
  }
  if (der_expect(&d, CTX(0), &bytes) != 0) return "not a DER OCSP response";
  d = der_in(&bytes);
  if (der_expect(&d, TAG_SEQ, &t) != 0) return "not a DER OCSP response";
  der_t rb = der_in(&t);
  if (der_expect(&rb, TAG_OID, &t) != 0 || !oid_is(&t, basic_oid, sizeof(basic_oid)) ||
      der_expect(&rb, TAG_OCTETS, &oct) != 0)
    return "not a basic OCSP response (id-pkix-ocsp-basic)";
  der_t bd = der_in(&oct);
  if (der_expect(&bd, TAG_SEQ, &basic) != 0) return "malformed basic OCSP response";
  bd = der_in(&basic);
  memset(b, 0, sizeof(*b));
  if (der_expect(&bd, TAG_SEQ, &b->tbs) != 0 || der_expect(&bd, TAG_SEQ, &b->alg) != 0 ||
      der_expect(&bd, TAG_BITS, &b->sig) != 0)
    return "malformed basic OCSP response";
  der_optional(&bd, CTX(0), &b->certs);
  /* ResponseData: version, responderID, producedAt, responses. */
  der_t r = der_in(&b->tbs);
  der_optional(&r, CTX(0), &t);
  if (der_next(&r, &t) != 0 || (t.tag != CTX(1) && t.tag != CTX(2)) ||
      der_expect(&r, TAG_GENTIME, &t) != 0 || der_expect(&r, TAG_SEQ, &b->responses) != 0)
    return "malformed OCSP response data";
  return NULL;
}

/* ---- the check ---- */

/* The issuer of the leaf: the chain's second certificate, else a trust
 * anchor or bundle certificate whose subject is the leaf's issuer. */
static WOLFSSL_X509 *find_issuer(pst_cert_load_t *ld) {
  if (ld->cert->chain_len > 1) return ld->x509[1];
  WOLFSSL_X509_NAME *want = wolfSSL_X509_get_issuer_name(ld->x509[0]);
  const pst_trust_t *stores[] = {ld->bundle, ld->trust};
  for (size_t s = 0; s < 2; s++) {
    for (size_t i = 0; stores[s] != NULL && i < stores[s]->n_anchors; i++) {
      if (wolfSSL_X509_NAME_cmp(want, wolfSSL_X509_get_subject_name(stores[s]->anchors[i])) == 0)
        return stores[s]->anchors[i];
    }
  }
  return NULL;
}

/* Checks the response in der against the leaf. Returns NULL when it can
 * be stapled (*single filled), or why not (a constant, or msg); sets
 * *revoked for a revoked status. */
static const char *response_check(pst_cert_load_t *ld, const uint8_t *der, size_t len,
                                  single_t *single, int *revoked, char msg[160]) {
  *revoked = 0;
  WOLFSSL_X509 *issuer = find_issuer(ld);
  if (issuer == NULL)
    return "the certificate's issuer is neither in its chain nor among the trusted "
           "certificates, so the response's signature cannot be checked";
  x509_parts_t leaf, iss;
  if (x509_parts(ld->x509[0], &leaf) != 0 || x509_parts(issuer, &iss) != 0)
    return "the certificate cannot be read for the check";
  basic_t b;
  const char *why = basic_read(der, len, &b, msg, 160);
  if (why != NULL) return why;
  der_t list = der_in(&b.responses);
  tlv_t sr;
  int found = 0;
  while (!found && der_next(&list, &sr) == 0) {
    int m = single_read(&sr, &leaf, &iss, single);
    if (m < 0) return "malformed single response";
    found = m;
  }
  if (!found)
    return "the response is for another certificate (no entry matches this certificate's "
           "issuer and serial number)";
  /* Signed by the issuer itself, or by a responder it authorised. */
  const WOLFSSL_EVP_MD *md = sig_md(&b.alg);
  if (md == NULL) return "the response's signature algorithm is not supported";
  WOLFSSL_EVP_PKEY *key = wolfSSL_X509_get_pubkey(issuer);
  int ok = sig_ok(key, md, &b.tbs, &b.sig);
  wolfSSL_EVP_PKEY_free(key);
  if (!ok) {
    why =
        "the response is not signed by the certificate's issuer and carries no responder "
        "certificate";
    key = b.certs.tag != 0 ? delegated_key(&b.certs, issuer, ld->now, &why) : NULL;
    ok = sig_ok(key, md, &b.tbs, &b.sig);
    if (key != NULL && !ok) why = "the response's signature does not verify";
    wolfSSL_EVP_PKEY_free(key);
    if (!ok) return why;
  }
  if (single->status == 1) {
    *revoked = 1;
    return "the responder says the certificate is revoked";
  }
  if (single->status == 2) return "the responder does not know the certificate (status unknown)";
  char when[32], rel[48];
  if (difftime(single->this_update, ld->now) > OCSP_SKEW) {
    pst_cert_fmt_time(single->this_update, when);
    pst_cert_fmt_rel(single->this_update, ld->now, rel);
    snprintf(msg, 160, "the response is not valid yet (thisUpdate %s, %s)", when, rel);
    return msg;
  }
  if (single->next_update != 0 && difftime(ld->now, single->next_update) > 0) {
    pst_cert_fmt_time(single->next_update, when);
    pst_cert_fmt_rel(single->next_update, ld->now, rel);
    snprintf(msg, 160, "the response is stale (nextUpdate %s, %s)", when, rel);
    return msg;
  }
  return NULL;
}

/* Reads the response file: 0, 1 when missing and optional, or a problem
 * recorded (-1). */
static int response_read(pst_cert_load_t *ld, uint8_t *buf, size_t *len) {
  const char *path = ld->ocsp_path;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && ld->ocsp_optional) return 1;
  int err = fd < 0 ? errno : 0;
  ssize_t n = 0;
  if (fd >= 0) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) err = EINVAL;
    while (err == 0) {
      ssize_t r = read(fd, buf + n, OCSP_FILE_MAX + 1 - (size_t)n);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) err = errno;
      if (r <= 0) break;
      n += r;
      if ((size_t)n > OCSP_FILE_MAX) err = EFBIG;
    }
    close(fd);
  }
  if (err != 0) {
    pst_cert_problem(ld, PST_PROBLEM_WARNING, PST_PROBLEM_OCSP,
                     "%s: OCSP response not stapled: cannot read it: %s; fetch it again "
                     "(docs/config.md, OCSP stapling)",
                     path,
                     err == EFBIG    ? "larger than 16 KiB"
                     : err == EINVAL ? "not a regular file"
                                     : strerror(err));
    return -1;
  }
  *len = (size_t)n;
  return 0;
}

/* See src/cert_int.h. */
void pst_cert_check_ocsp(pst_cert_load_t *ld) {
  pst_cert_t *cert = ld->cert;
  x509_parts_t leaf;
  if (cert->chain_len == 0) return;
  if (x509_parts(ld->x509[0], &leaf) == 0) cert->must_staple = must_staple(&leaf);
  if (ld->ocsp_path != NULL) {
    uint8_t *buf = malloc(OCSP_FILE_MAX + 1);
    size_t len = 0;
    if (buf == NULL) {
      ld->oom = 1;
      return;
    }
    int rc = response_read(ld, buf, &len);
    if (rc == 0) {
      single_t single;
      int revoked;
      char msg[160];
      const char *why = response_check(ld, buf, len, &single, &revoked, msg);
      if (why == NULL) {
        cert->staple_state = PST_STAPLE_GOOD;
        cert->staple = buf;
        cert->staple_len = len;
        cert->staple_this_update = single.this_update;
        cert->staple_next_update = single.next_update;
        buf = NULL;
      } else if (revoked) {
        cert->staple_state = PST_STAPLE_REVOKED;
        pst_cert_problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_OCSP,
                         "%s: %s: clients will refuse %s; replace the certificate", ld->ocsp_path,
                         why, cert->cert_path);
      } else {
        cert->staple_state = PST_STAPLE_REJECTED;
        pst_cert_problem(ld, PST_PROBLEM_WARNING, PST_PROBLEM_OCSP,
                         "%s: OCSP response not stapled: %s; fetch a fresh response for %s "
                         "(docs/config.md, OCSP stapling)",
                         ld->ocsp_path, why, cert->cert_path);
      }
    } else if (rc < 0) {
      cert->staple_state = PST_STAPLE_REJECTED;
    }
    free(buf);
  }
  if (cert->must_staple && cert->staple_state != PST_STAPLE_GOOD &&
      cert->staple_state != PST_STAPLE_REVOKED) {
    pst_cert_problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_OCSP,
                     "%s: the certificate requires OCSP stapling (TLS Feature must-staple, RFC "
                     "7633) and has no valid OCSP response: clients will refuse it; set ocsp: "
                     "to a current response for it",
                     cert->cert_path);
  }
}

/* See include/postern/cert.h. */
const char *pst_cert_staple_desc(const pst_cert_t *cert) {
  switch (cert->staple_state) {
    case PST_STAPLE_GOOD: return "good";
    case PST_STAPLE_REJECTED: return "not stapled";
    case PST_STAPLE_REVOKED: return "revoked";
    case PST_STAPLE_NONE: break;
  }
  return "none";
}
