/* postern: what a certificate says, and the checks a strict client would
 * make of a chain (see src/cert.c for loading).
 *
 * Chains are verified from the top of the file down, without any help from
 * a client's cache of intermediates: the last certificate must be a trust
 * anchor or be signed by one, and each certificate must be signed by the next
 * one (RFC 8446 4.4.2: "The sender's certificate MUST come in the first
 * CertificateEntry ... each following certificate SHOULD directly certify
 * the one immediately preceding it"; RFC 5280 6.1 for the path checks).
 * The path check here covers names and signatures; it does not enforce
 * basicConstraints, key usage or name constraints.
 *
 * wolfSSL notes (5.5.4 built with opensslextra + opensslall):
 * - wolfSSL_X509_get_pubkey() only knows RSA, DSA and EC keys (anything
 *   else is decoded as EC and fails), and wolfSSL_X509_verify() only RSA,
 *   EC and DSA issuers.
 * - wolfSSL_X509_get_ext_d2i(NID_subject_alt_name) returns the names in
 *   reverse order (wolfSSL stacks push at the front); they are read from the
 *   end to keep the certificate's order.
 * - wolfSSL_ASN1_TIME_to_tm() ends with mktime(), which shifts the hour by
 *   the local DST offset; dates are parsed here from the ASN.1 text instead.
 * - wolfSSL_X509_NAME_cmp() compares the "/CN=.../O=..." text forms, which
 *   is what RFC 5280 7.1 name matching needs here (string types may differ).
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* options.h first: wolfSSL's struct layouts depend on it. */
#include <wolfssl/options.h>

#include <wolfssl/openssl/ec.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/openssl/x509v3.h>
#include <wolfssl/ssl.h>

#include "cert_int.h"
#include "postern/common.h"

#define DAY PST_CERT_DAY

typedef pst_cert_load_t load_t;

static unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* "2025-01-01 00:00:00 UTC" */
void pst_cert_fmt_time(time_t t, char out[32]) {
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
    snprintf(out, 32, "@%lld", (long long)t);
}

/* How far away t is from now: "in 9 days", "12 days ago", "in 5 hours".
 * Days are rounded to the nearest, so a certificate issued for 90 days
 * reads "90" on the day it was issued. */
void pst_cert_fmt_rel(time_t t, time_t now, char out[48]) {
  double d = difftime(t, now);
  int future = d >= 0;
  double a = future ? d : -d;
  long n;
  const char *unit;
  if (a < 3600) {
    snprintf(out, 48, future ? "in less than an hour" : "less than an hour ago");
    return;
  } else if (a < DAY) {
    n = (long)(a / 3600);
    unit = n == 1 ? "hour" : "hours";
  } else {
    n = (long)((a + DAY / 2) / DAY);
    unit = n == 1 ? "day" : "days";
  }
  snprintf(out, 48, future ? "in %ld %s" : "%ld %s ago", n, unit);
}

/* Converts an X.509 Time (RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ, years
 * 50-99 meaning 19xx, or GeneralizedTime YYYYMMDDHHMMSSZ) to time_t. */
static int asn1_time(const WOLFSSL_ASN1_TIME *t, time_t *out) {
  if (t == NULL) return -1;
  const unsigned char *s = t->data;
  int len = t->length, i = 0, year;
  if (len == 13 && s[12] == 'Z') {
    year = (s[0] - '0') * 10 + (s[1] - '0');
    year += year >= 50 ? 1900 : 2000;
    i = 2;
  } else if (len == 15 && s[14] == 'Z') {
    year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    i = 4;
  } else {
    return -1;
  }
  for (int k = 0; k < len - 1; k++)
    if (s[k] < '0' || s[k] > '9') return -1;
  struct tm tm = {0};
  tm.tm_year = year - 1900;
  tm.tm_mon = (s[i] - '0') * 10 + (s[i + 1] - '0') - 1;
  tm.tm_mday = (s[i + 2] - '0') * 10 + (s[i + 3] - '0');
  tm.tm_hour = (s[i + 4] - '0') * 10 + (s[i + 5] - '0');
  tm.tm_min = (s[i + 6] - '0') * 10 + (s[i + 7] - '0');
  tm.tm_sec = (s[i + 8] - '0') * 10 + (s[i + 9] - '0');
  *out = timegm(&tm);
  return 0;
}

/* ---- what a certificate says ---- */

/* Appends text to a one-line DN, escaping as RFC 4514 2.4 does and showing
 * control bytes as \xHH so that a hostile name cannot break a log line. */
static void dn_append(char *out, size_t cap, size_t *len, const char *s, size_t n) {
  for (size_t i = 0; i < n && *len + 5 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) {
      *len += (size_t)snprintf(out + *len, cap - *len, "\\x%02X", c);
      continue;
    }
    if (strchr(",+\"\\<>;", c) != NULL && c != '\0') out[(*len)++] = '\\';
    out[(*len)++] = (char)c;
  }
  out[*len] = '\0';
}

/* Formats a name as RFC 4514 2.1 does, from the last RDN of the sequence
 * back to the first: a certificate issued to "/O=Example/CN=example.test"
 * reads "CN=example.test, O=Example", as `openssl -nameopt RFC2253` shows
 * it. Returns a new string, or NULL when out of memory. */
static char *dn_string(WOLFSSL_X509_NAME *name) {
  char out[1024];
  size_t len = 0;
  out[0] = '\0';
  int count = name != NULL ? wolfSSL_X509_NAME_entry_count(name) : 0;
  for (int i = count - 1; i >= 0; i--) {
    WOLFSSL_X509_NAME_ENTRY *e = wolfSSL_X509_NAME_get_entry(name, i);
    WOLFSSL_ASN1_OBJECT *obj = e != NULL ? wolfSSL_X509_NAME_ENTRY_get_object(e) : NULL;
    WOLFSSL_ASN1_STRING *val = e != NULL ? wolfSSL_X509_NAME_ENTRY_get_data(e) : NULL;
    if (obj == NULL || val == NULL) continue;
    char key[80];
    const char *sn = wolfSSL_OBJ_nid2sn(wolfSSL_OBJ_obj2nid(obj));
    if (sn == NULL && wolfSSL_OBJ_obj2txt(key, sizeof(key), obj, 1) > 0) sn = key;
    if (sn == NULL) sn = "?";
    if (len > 0 && len + 2 < sizeof(out))
      len += (size_t)snprintf(out + len, sizeof(out) - len, ", ");
    if (len + strlen(sn) + 2 < sizeof(out))
      len += (size_t)snprintf(out + len, sizeof(out) - len, "%s=", sn);
    int vlen = wolfSSL_ASN1_STRING_length(val);
    const unsigned char *v = wolfSSL_ASN1_STRING_data(val);
    if (v != NULL && vlen > 0) dn_append(out, sizeof(out), &len, (const char *)v, (size_t)vlen);
  }
  return strdup(out);
}

/* x's public key, a reference to be released with wolfSSL_EVP_PKEY_free,
 * or NULL. The key wolfSSL decoded when it parsed x is shared (reference
 * counted, read-only here): wolfSSL_X509_get_pubkey() would decode and
 * validate it again (an elliptic-curve point check) and seed a random
 * generator for it, each time; with 10,000 certificates that was a quarter
 * of the load. The anchors of a store are shared by loads: the count is
 * under wolfSSL's lock. */
static WOLFSSL_EVP_PKEY *pubkey_ref(WOLFSSL_X509 *x) {
  WOLFSSL_EVP_PKEY *key = wolfSSL_X509_PUBKEY_get(wolfSSL_X509_get_X509_PUBKEY(x));
  return key != NULL ? key : wolfSSL_X509_get_pubkey(x);
}

/* Sets key_type, key_bits and key_desc ("ECDSA P-256", "RSA 2048"). */
static int key_info(WOLFSSL_X509 *x, pst_cert_info_t *info) {
  char desc[64] = "unknown key type";
  WOLFSSL_EVP_PKEY *key = pubkey_ref(x);
  if (key != NULL) {
    int bits = wolfSSL_EVP_PKEY_bits(key);
    if (wolfSSL_EVP_PKEY_id(key) == EVP_PKEY_RSA) {
      info->key_type = PST_KEY_RSA;
      info->key_bits = bits;
      snprintf(desc, sizeof(desc), "RSA %d", bits);
    } else if (wolfSSL_EVP_PKEY_id(key) == EVP_PKEY_EC) {
      WOLFSSL_EC_KEY *ec = wolfSSL_EVP_PKEY_get0_EC_KEY(key);
      int nid = ec != NULL ? wolfSSL_EC_GROUP_get_curve_name(wolfSSL_EC_KEY_get0_group(ec)) : 0;
      const char *curve = nid == NID_X9_62_prime256v1 ? "P-256"
                          : nid == NID_secp384r1      ? "P-384"
                          : nid == NID_secp521r1      ? "P-521"
                                                      : wolfSSL_OBJ_nid2sn(nid);
      info->key_type = PST_KEY_ECDSA;
      info->key_bits = bits;
      snprintf(desc, sizeof(desc), "ECDSA %s", curve != NULL ? curve : "(unknown curve)");
    }
    wolfSSL_EVP_PKEY_free(key);
  }
  /* PST_KEY_ED25519 is never set: this wolfSSL build cannot parse such
   * certificates at all (see the top of this file). */
  info->key_desc = strdup(desc);
  return info->key_desc != NULL ? 0 : -ENOMEM;
}

/* Returns 1 when issuer's subject is subject's issuer and issuer's key
 * verifies subject's signature (RFC 5280 6.1.3 (a)(1) and (a)(4)). */
static int issued_by(WOLFSSL_X509 *subject, WOLFSSL_X509 *issuer) {
  if (wolfSSL_X509_NAME_cmp(wolfSSL_X509_get_issuer_name(subject),
                            wolfSSL_X509_get_subject_name(issuer)) != 0)
    return 0;
  WOLFSSL_EVP_PKEY *key = pubkey_ref(issuer);
  if (key == NULL) return 0;
  int ok = wolfSSL_X509_verify(subject, key) == WOLFSSL_SUCCESS;
  wolfSSL_EVP_PKEY_free(key);
  return ok;
}

/* Fills one pst_cert_info_t. Returns 0 or -ENOMEM (fields set so far are
 * freed by pst_cert_free). */
int pst_cert_info_fill(WOLFSSL_X509 *x, pst_cert_info_t *info) {
  info->subject = dn_string(wolfSSL_X509_get_subject_name(x));
  info->issuer = dn_string(wolfSSL_X509_get_issuer_name(x));
  if (info->subject == NULL || info->issuer == NULL) return -ENOMEM;

  unsigned char serial[64];
  int serial_len = (int)sizeof(serial);
  if (wolfSSL_X509_get_serial_number(x, serial, &serial_len) != WOLFSSL_SUCCESS) serial_len = 0;
  info->serial_hex = malloc((size_t)serial_len * 2 + 1);
  if (info->serial_hex == NULL) return -ENOMEM;
  for (int i = 0; i < serial_len; i++) sprintf(info->serial_hex + 2 * i, "%02X", serial[i]);
  info->serial_hex[serial_len * 2] = '\0';

  if (asn1_time(wolfSSL_X509_get_notBefore(x), &info->not_before) != 0) info->not_before = 0;
  if (asn1_time(wolfSSL_X509_get_notAfter(x), &info->not_after) != 0) info->not_after = 0;
  info->is_ca = wolfSSL_X509_get_isCA(x) == 1;
  info->self_signed = issued_by(x, x);
  return key_info(x, info);
}

/* Adds a lower-cased copy of n bytes of name to the certificate's names,
 * skipping empty names and names with bytes no host name has. */
static int names_add(pst_cert_t *cert, const unsigned char *name, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (name[i] <= 0x20 || name[i] >= 0x7f) return 0;
  char **names = realloc(cert->names, (cert->n_names + 1) * sizeof(*names));
  if (names == NULL) return -ENOMEM;
  cert->names = names;
  char *copy = malloc(n + 1);
  if (copy == NULL) return -ENOMEM;
  for (size_t i = 0; i < n; i++) copy[i] = (char)lower(name[i]);
  copy[n] = '\0';
  cert->names[cert->n_names++] = copy;
  return 0;
}

/* The names a client may match against: the DNS subjectAltNames, or the
 * CN when there is no DNS name (RFC 6125 6.4.4). Returns 0 or -ENOMEM. */
int pst_cert_names_fill(pst_cert_t *cert, WOLFSSL_X509 *leaf) {
  int rc = 0;
  WOLFSSL_STACK *sans = wolfSSL_X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
  if (sans != NULL) {
    /* wolfSSL's stack holds them last first. */
    for (int i = wolfSSL_sk_GENERAL_NAME_num(sans) - 1; rc == 0 && i >= 0; i--) {
      WOLFSSL_GENERAL_NAME *gn = wolfSSL_sk_GENERAL_NAME_value(sans, i);
      if (gn == NULL || gn->type != GEN_DNS || gn->d.dNSName == NULL) continue;
      int len = wolfSSL_ASN1_STRING_length(gn->d.dNSName);
      rc = names_add(cert, wolfSSL_ASN1_STRING_data(gn->d.dNSName), len > 0 ? (size_t)len : 0);
    }
    wolfSSL_sk_GENERAL_NAME_pop_free(sans, wolfSSL_GENERAL_NAME_free);
  }
  if (rc == 0 && cert->n_names == 0) {
    char cn[256];
    int len = wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(leaf), NID_commonName,
                                                cn, sizeof(cn));
    if (len > 0 && (size_t)len < sizeof(cn)) rc = names_add(cert, (unsigned char *)cn, (size_t)len);
  }
  return rc;
}

/* ---- problems ---- */

/* Records one problem; an allocation failure marks the load out of memory. */
void pst_cert_problem(load_t *ld, pst_problem_severity_t sev, pst_problem_kind_t kind,
                      const char *fmt, ...) {
  pst_cert_t *cert = ld->cert;
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&msg, fmt, ap);
  va_end(ap);
  pst_problem_t *p = realloc(cert->problems, (cert->n_problems + 1) * sizeof(*p));
  if (n < 0 || p == NULL) {
    if (n >= 0) free(msg);
    if (p != NULL) cert->problems = p;
    ld->oom = 1;
    return;
  }
  cert->problems = p;
  cert->problems[cert->n_problems++] = (pst_problem_t){sev, kind, msg};
  if (sev == PST_PROBLEM_ERROR) cert->n_errors++;
}

/* "certificate CN=x" for the leaf, "certificate 2 (CN=y)" for the others. */
static const char *cert_label(const load_t *ld, size_t i, char *buf, size_t cap) {
  const char *dn = ld->cert->chain[i].subject;
  if (i == 0 && dn[0] != '\0') {
    snprintf(buf, cap, "certificate %s", dn);
  } else {
    snprintf(buf, cap, "certificate %zu (%s)", i + 1, dn[0] != '\0' ? dn : "empty subject");
  }
  return buf;
}

/* Validity dates of every certificate (RFC 5280 4.1.2.5), and the early
 * warning for the leaf and the intermediates. */
void pst_cert_check_dates(load_t *ld) {
  const pst_cert_t *cert = ld->cert;
  for (size_t i = 0; i < cert->chain_len; i++) {
    const pst_cert_info_t *ci = &cert->chain[i];
    char label[1200], when[32], rel[48];
    cert_label(ld, i, label, sizeof(label));
    const char *fix = i == 0 ? "renew it, then reload (SIGHUP)"
                      : ci->self_signed
                          ? "remove it from the file (clients use their own copy of a root)"
                          : "replace it with the current intermediate certificate from your CA";
    if (difftime(ld->now, ci->not_after) > 0) {
      pst_cert_fmt_time(ci->not_after, when);
      pst_cert_fmt_rel(ci->not_after, ld->now, rel);
      pst_cert_problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_EXPIRED, "%s: %s expired on %s (%s): %s",
                       cert->cert_path, label, when, rel, fix);
    } else if (difftime(ci->not_before, ld->now) > 0) {
      pst_cert_fmt_time(ci->not_before, when);
      pst_cert_fmt_rel(ci->not_before, ld->now, rel);
      pst_cert_problem(
          ld, PST_PROBLEM_ERROR, PST_PROBLEM_NOT_YET_VALID,
          "%s: %s is not valid before %s (%s): check the system clock, or wait until then",
          cert->cert_path, label, when, rel);
    } else if ((i == 0 || !ci->self_signed) &&
               difftime(ci->not_after, ld->now) < (double)ld->warn_days * DAY) {
      pst_cert_fmt_time(ci->not_after, when);
      pst_cert_fmt_rel(ci->not_after, ld->now, rel);
      pst_cert_problem(ld, PST_PROBLEM_WARNING, PST_PROBLEM_EXPIRES_SOON,
                       "%s: %s expires on %s (%s): %s", cert->cert_path, label, when, rel, fix);
    }
  }
}

static int is_anchor(const pst_trust_t *trust, WOLFSSL_X509 *x) {
  int len = 0;
  const unsigned char *der = wolfSSL_X509_get_der(x, &len);
  for (size_t i = 0; der != NULL && i < trust->n_anchors; i++) {
    int alen = 0;
    const unsigned char *a = wolfSSL_X509_get_der(trust->anchors[i], &alen);
    if (a != NULL && alen == len && memcmp(a, der, (size_t)len) == 0) return 1;
  }
  return 0;
}

/* Whether x is in trust's memo of certificates an anchor issued. */
static int memo_has(pst_trust_t *trust, const unsigned char *der, int len) {
  int found = 0;
  pthread_mutex_lock(&trust->memo_lock);
  for (size_t i = 0; i < trust->n_memo && !found; i++) {
    found = trust->memo_len[i] == len && memcmp(trust->memo[i], der, (size_t)len) == 0;
  }
  pthread_mutex_unlock(&trust->memo_lock);
  return found;
}

/* Remembers x as issued by an anchor (when there is room; out of memory
 * only costs a verification later). */
static void memo_add(pst_trust_t *trust, const unsigned char *der, int len) {
  unsigned char *copy = malloc((size_t)len);
  if (copy == NULL) return;
  memcpy(copy, der, (size_t)len);
  pthread_mutex_lock(&trust->memo_lock);
  if (trust->n_memo < PST_TRUST_MEMO) {
    trust->memo_len[trust->n_memo] = len;
    trust->memo[trust->n_memo++] = copy;
    copy = NULL;
  }
  pthread_mutex_unlock(&trust->memo_lock);
  free(copy);
}

/* Whether one of trust's anchors issued x (name and signature). The same
 * intermediate ends most chains of a listener: a positive answer is
 * remembered by its DER, so its signature is verified once per store. */
static int anchor_issued(const pst_trust_t *trust_c, WOLFSSL_X509 *x) {
  pst_trust_t *trust = (pst_trust_t *)trust_c; /* only the memo changes (locked) */
  int len = 0;
  const unsigned char *der = wolfSSL_X509_get_der(x, &len);
  if (der != NULL && len > 0 && memo_has(trust, der, len)) return 1;
  for (size_t i = 0; i < trust->n_anchors; i++) {
    if (issued_by(x, trust->anchors[i])) {
      if (der != NULL && len > 0) memo_add(trust, der, len);
      return 1;
    }
  }
  return 0;
}

/* A broken link: chain[i + 1] did not sign chain[i]. Tells the operator
 * whether the file is out of order, holds a certificate that does not
 * belong, or lacks an intermediate. */
static void check_link(load_t *ld, size_t i) {
  const pst_cert_t *cert = ld->cert;
  const char *path = cert->cert_path;
  char a[1200], b[1200];
  cert_label(ld, i, a, sizeof(a));
  cert_label(ld, i + 1, b, sizeof(b));
  for (size_t j = 0; j < cert->chain_len; j++) {
    if (j != i && j != i + 1 && issued_by(ld->x509[i], ld->x509[j])) {
      pst_cert_problem(
          ld, PST_PROBLEM_ERROR, PST_PROBLEM_BAD_ORDER,
          "%s: %s is not the issuer of %s; certificate %zu is: order the file leaf first, "
          "then each issuer",
          path, b, a, j + 1);
      return;
    }
  }
  if (cert->chain[i].self_signed || (ld->trust != NULL && anchor_issued(ld->trust, ld->x509[i]))) {
    /* The chain is already complete at chain[i]: what follows is extra. */
    pst_cert_problem(
        ld, PST_PROBLEM_ERROR, PST_PROBLEM_BAD_ORDER,
        "%s: %s is not the issuer of %s: remove it and the certificates after it, which "
        "are not part of this chain",
        path, b, a);
    return;
  }
  pst_cert_problem(
      ld, PST_PROBLEM_ERROR, PST_PROBLEM_INCOMPLETE_CHAIN,
      "%s: incomplete chain: the issuer \"%s\" of %s is missing (%s is not it): insert "
      "that intermediate certificate right after %s",
      path, cert->chain[i].issuer, a, b, a);
}

/* The self-signed leaf, then each link from the leaf up, then the top of
 * the file against the anchors. Stops at the first structural problem, as
 * the ones after it would only repeat it. */
/* tls.intermediates: appends to the chain the bundle's certificates that
 * issued its top, one after the other, until the top is a trust anchor or
 * signed by one. Returns 1 when that happened (each added certificate is
 * reported, loudly: HAProxy's issuers-chain-path does it silently), 0
 * otherwise (what was added stays; the caller reports the gap). */
static int complete_chain(load_t *ld) {
  const pst_trust_t *bundle = ld->bundle;
  if (bundle == NULL) return 0;
  /* A chain is a handful of certificates: a longer one is a loop. */
  for (int round = 0; round < 8; round++) {
    pst_cert_t *cert = ld->cert;
    WOLFSSL_X509 *top = ld->x509[cert->chain_len - 1];
    WOLFSSL_X509 *found = NULL;
    for (size_t i = 0; i < bundle->n_anchors && found == NULL; i++) {
      if (issued_by(top, bundle->anchors[i]) && !is_anchor(bundle, top)) found = bundle->anchors[i];
    }
    if (found == NULL) return 0;
    if (pst_cert_append(ld, found) != 0) {
      ld->oom = 1;
      return 0;
    }
    const pst_cert_info_t *added = &cert->chain[cert->chain_len - 1];
    pst_cert_problem(ld, PST_PROBLEM_WARNING, PST_PROBLEM_CHAIN_COMPLETED,
                     "%s: incomplete chain completed from %s: added \"%s\" (issuer of %s); "
                     "append it to %s to make the file whole",
                     cert->cert_path, bundle->path, added->subject,
                     cert->chain[cert->chain_len - 2].subject, cert->cert_path);
    WOLFSSL_X509 *now_top = ld->x509[cert->chain_len - 1];
    if (is_anchor(ld->trust, now_top) || anchor_issued(ld->trust, now_top)) return 1;
    if (added->self_signed) return 0; /* a root, not trusted: the caller says so */
  }
  return 0;
}

void pst_cert_check_chain(load_t *ld) {
  const pst_cert_t *cert = ld->cert;
  const pst_trust_t *trust = ld->trust;
  const char *path = cert->cert_path;
  size_t n = cert->chain_len;
  char label[1200];

  if (cert->chain[0].self_signed) {
    /* Choice: a self-signed leaf is an error, unless ca_file (or the
     * system store) lists that very certificate: then the operator has
     * said which clients trust it (a test or private setup), and it is a
     * warning, because every other client will still reject it. */
    int anchored = trust != NULL && is_anchor(trust, ld->x509[0]);
    cert_label(ld, 0, label, sizeof(label));
    if (anchored) {
      pst_cert_problem(ld, PST_PROBLEM_WARNING, PST_PROBLEM_SELF_SIGNED,
                       "%s: %s is self-signed: only clients given it as a trusted root (as ca_file "
                       "does) accept it; use a certificate issued by a CA for other clients",
                       path, label);
    } else {
      pst_cert_problem(
          ld, PST_PROBLEM_ERROR, PST_PROBLEM_SELF_SIGNED,
          "%s: %s is self-signed: clients will not trust it; use a certificate issued by a "
          "CA (or list its own file as ca_file for testing)",
          path, label);
    }
    if (n == 1) return;
  }

  for (size_t i = 0; i + 1 < n; i++) {
    if (!issued_by(ld->x509[i], ld->x509[i + 1])) {
      check_link(ld, i);
      return;
    }
  }
  if (trust == NULL) return;

  /* The top of the file: a trust anchor itself (a root sent along is
   * tolerated) or signed by one. */
  WOLFSSL_X509 *top = ld->x509[n - 1];
  if (is_anchor(trust, top) || anchor_issued(trust, top)) return;
  if (complete_chain(ld)) return;
  n = cert->chain_len; /* what complete_chain added stays, reported */
  const pst_cert_info_t *ti = &cert->chain[n - 1];
  if (ti->self_signed) {
    pst_cert_problem(
        ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNTRUSTED,
        "%s: the chain ends at %s, which is not a trusted root in %s: use a certificate "
        "from a CA that clients trust (set ca_file to that root if it is your private CA)",
        path, ti->subject, trust->path);
    return;
  }
  if (n == 1) {
    snprintf(label, sizeof(label), "the leaf");
  } else {
    cert_label(ld, n - 1, label, sizeof(label));
  }
  pst_cert_problem(
      ld, PST_PROBLEM_ERROR, PST_PROBLEM_INCOMPLETE_CHAIN,
      "%s: incomplete chain: the issuer \"%s\" of %s is missing: append that intermediate "
      "certificate to %s after %s%s",
      path, ti->issuer, ti->subject[0] != '\0' ? ti->subject : "the last certificate", path, label,
      trust->system ? " (if it is your private root CA, set ca_file to it instead)" : "");
}

void pst_cert_check_names(load_t *ld) {
  const pst_cert_t *cert = ld->cert;
  char label[1200];
  cert_label(ld, 0, label, sizeof(label));
  if (cert->n_names == 0) {
    pst_cert_problem(
        ld, PST_PROBLEM_ERROR, PST_PROBLEM_NO_NAMES,
        "%s: %s has no DNS name (no subjectAltName DNS entry and no CN): clients cannot "
        "match it to any server name; reissue it with the site's names as DNS "
        "subjectAltNames",
        cert->cert_path, label);
    return;
  }
  WOLFSSL_STACK *sans = wolfSSL_X509_get_ext_d2i(ld->x509[0], NID_subject_alt_name, NULL, NULL);
  if (sans != NULL) {
    wolfSSL_sk_GENERAL_NAME_pop_free(sans, wolfSSL_GENERAL_NAME_free);
    return;
  }
  /* RFC 6125 6.4.4 still allows the CN, but Chrome, Firefox, Go and
   * others ignore it now. */
  pst_cert_problem(
      ld, PST_PROBLEM_WARNING, PST_PROBLEM_NO_NAMES,
      "%s: %s has no subjectAltName, only a CN: browsers and Go clients ignore the CN and "
      "will reject it; reissue it with the CN as a DNS subjectAltName",
      cert->cert_path, label);
}
