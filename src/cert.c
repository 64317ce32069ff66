/* postern: load certificates and check them the way a strict client would.
 *
 * Runs at start-up, for `postern -t` and in the reload thread, never on the
 * event loop, so it favours clear messages over speed. Every problem becomes
 * one line "FILE: what is wrong: how to fix it" for an operator.
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
 * - wolfSSL_X509_load_certificate_buffer() fails for any certificate with an
 *   Ed25519 public key: with OPENSSL_ALL, CopyDecodedToX509() converts the
 *   key through wolfSSL_d2i_PUBKEY(), which has no Ed25519 support. Such
 *   certificates are reported as unreadable, with that reason.
 * - wolfSSL_X509_get_ext_d2i(NID_subject_alt_name) returns the names in
 *   reverse order (wolfSSL stacks push at the front); they are read from the
 *   end to keep the certificate's order.
 * - wolfSSL_ASN1_TIME_to_tm() ends with mktime(), which shifts the hour by
 *   the local DST offset; dates are parsed here from the ASN.1 text instead.
 * - wolfSSL_X509_NAME_cmp() compares the "/CN=.../O=..." text forms, which
 *   is what RFC 5280 7.1 name matching needs here (string types may differ).
 * - Failed wolfSSL calls leave entries in the thread's error queue; each
 *   public function here clears it before returning.
 */
#include "postern/cert.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/openssl/ec.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/openssl/x509v3.h>

#include "postern/common.h"

#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
/* Chains and keys are a few KiB; the system store is about 200 KiB. The
 * limits only stop a wrong path (a device, a log) from being read whole. */
#define CERT_FILE_MAX (4u << 20)
#define TRUST_FILE_MAX (32u << 20)
#define DAY 86400

struct pst_trust_s {
  char *path;             /* the file the anchors were read from */
  int system;             /* 1 when that is the system store (ca_file unset) */
  WOLFSSL_X509 **anchors; /* read-only after pst_trust_load() */
  size_t n_anchors;
};

/* State of one pst_cert_load() call. */
typedef struct {
  pst_cert_t *cert;
  const pst_trust_t *trust;
  time_t now;
  unsigned warn_days;
  WOLFSSL_X509 **x509; /* cert->chain_len parsed certificates */
  int oom;             /* an allocation failed: the load returns -ENOMEM */
} load_t;

/* ---- small helpers ---- */

static pthread_once_t wolfssl_once = PTHREAD_ONCE_INIT;
static int wolfssl_init_ok;

/* wolfSSL_CTX_new() needs wolfSSL_Init(); calling it once more than the TLS
 * code does only raises wolfSSL's reference count. */
static void wolfssl_init_once(void) { wolfssl_init_ok = wolfSSL_Init() == WOLFSSL_SUCCESS; }

static int wolfssl_init(void) {
  pthread_once(&wolfssl_once, wolfssl_init_once);
  return wolfssl_init_ok;
}

/* Reads a whole regular file into a NUL-terminated buffer. Returns 0,
 * -errno, or -EFBIG above max bytes. */
static int read_file(const char *path, size_t max, unsigned char **out, size_t *out_len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  int rc = 0;
  unsigned char *buf = NULL;
  size_t len = 0;
  if (fstat(fd, &st) != 0) {
    rc = -errno;
  } else if (S_ISDIR(st.st_mode)) {
    rc = -EISDIR;
  } else if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > max) {
    rc = -EFBIG;
  }
  size_t cap = 0;
  while (rc == 0) {
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : (S_ISREG(st.st_mode) ? (size_t)st.st_size + 4096 + 1 : 16384);
      unsigned char *p = realloc(buf, cap);
      if (p == NULL) {
        rc = -ENOMEM;
        break;
      }
      buf = p;
    }
    ssize_t n = read(fd, buf + len, cap - len - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) rc = -errno;
    if (n <= 0) break;
    len += (size_t)n;
    if (len > max) rc = -EFBIG;
  }
  close(fd);
  if (rc != 0) {
    free(buf);
    return rc;
  }
  if (buf == NULL && (buf = malloc(1)) == NULL) return -ENOMEM;
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return 0;
}

/* One "-----BEGIN label-----" ... "-----END label-----" block of a PEM file
 * (RFC 7468 2). */
typedef struct {
  const char *text; /* from the BEGIN line to the end of the END line */
  size_t len;
  const char *label;
  size_t label_len;
} pem_block_t;

/* Finds the next PEM block at or after *pos. Returns 1 and the block, 0
 * when there is none, -1 for a BEGIN line without its END line. */
static int pem_next(const char *buf, size_t len, size_t *pos, pem_block_t *blk) {
  static const char begin[] = "-----BEGIN ", dashes[] = "-----";
  const char *end_of_buf = buf + len;
  const char *b = memmem(buf + *pos, len - *pos, begin, sizeof(begin) - 1);
  if (b == NULL) return 0;
  const char *label = b + sizeof(begin) - 1;
  const char *label_end = memmem(label, (size_t)(end_of_buf - label), dashes, 5);
  const char *eol = memchr(label, '\n', (size_t)(end_of_buf - label));
  if (label_end == NULL || (eol != NULL && eol < label_end) || label_end - label > 64) return -1;
  char end_line[96];
  int n = snprintf(end_line, sizeof(end_line), "-----END %.*s-----", (int)(label_end - label),
                   label);
  const char *e = memmem(label_end, (size_t)(end_of_buf - label_end), end_line, (size_t)n);
  if (e == NULL) return -1;
  e += n;
  blk->text = b;
  blk->len = (size_t)(e - b);
  blk->label = label;
  blk->label_len = (size_t)(label_end - label);
  *pos = (size_t)(e - buf);
  return 1;
}

static int label_is(const pem_block_t *blk, const char *label) {
  return blk->label_len == strlen(label) && memcmp(blk->label, label, blk->label_len) == 0;
}

static int label_ends_with(const pem_block_t *blk, const char *suffix) {
  size_t n = strlen(suffix);
  return blk->label_len >= n && memcmp(blk->label + blk->label_len - n, suffix, n) == 0;
}

static unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static int equal_nocase(const char *a, size_t alen, const char *b, size_t blen) {
  if (alen != blen) return 0;
  for (size_t i = 0; i < alen; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
  return 1;
}

/* "2025-01-01 00:00:00 UTC" */
static void fmt_time(time_t t, char out[32]) {
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
    snprintf(out, 32, "@%lld", (long long)t);
}

/* How far away t is from now: "in 9 days", "12 days ago", "in 5 hours".
 * Days are rounded to the nearest, so a certificate issued for 90 days
 * reads "90" on the day it was issued. */
static void fmt_rel(time_t t, time_t now, char out[48]) {
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

/* Days from now to t, rounded to the nearest (negative in the past). */
static long days_between(time_t now, time_t t) {
  double d = difftime(t, now) / DAY;
  return (long)(d >= 0 ? d + 0.5 : d - 0.5);
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

/* Formats a name as "CN=example.test, O=Example", in certificate order.
 * Returns a new string, or NULL when out of memory. */
static char *dn_string(WOLFSSL_X509_NAME *name) {
  char out[1024];
  size_t len = 0;
  out[0] = '\0';
  int count = name != NULL ? wolfSSL_X509_NAME_entry_count(name) : 0;
  for (int i = 0; i < count; i++) {
    WOLFSSL_X509_NAME_ENTRY *e = wolfSSL_X509_NAME_get_entry(name, i);
    WOLFSSL_ASN1_OBJECT *obj = e != NULL ? wolfSSL_X509_NAME_ENTRY_get_object(e) : NULL;
    WOLFSSL_ASN1_STRING *val = e != NULL ? wolfSSL_X509_NAME_ENTRY_get_data(e) : NULL;
    if (obj == NULL || val == NULL) continue;
    char key[80];
    const char *sn = wolfSSL_OBJ_nid2sn(wolfSSL_OBJ_obj2nid(obj));
    if (sn == NULL && wolfSSL_OBJ_obj2txt(key, sizeof(key), obj, 1) > 0) sn = key;
    if (sn == NULL) sn = "?";
    if (len > 0 && len + 2 < sizeof(out)) len += (size_t)snprintf(out + len, sizeof(out) - len, ", ");
    if (len + strlen(sn) + 2 < sizeof(out))
      len += (size_t)snprintf(out + len, sizeof(out) - len, "%s=", sn);
    int vlen = wolfSSL_ASN1_STRING_length(val);
    const unsigned char *v = wolfSSL_ASN1_STRING_data(val);
    if (v != NULL && vlen > 0) dn_append(out, sizeof(out), &len, (const char *)v, (size_t)vlen);
  }
  return strdup(out);
}

/* Sets key_type, key_bits and key_desc ("ECDSA P-256", "RSA 2048"). */
static int key_info(WOLFSSL_X509 *x, pst_cert_info_t *info) {
  char desc[64] = "unknown key type";
  WOLFSSL_EVP_PKEY *key = wolfSSL_X509_get_pubkey(x);
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
  WOLFSSL_EVP_PKEY *key = wolfSSL_X509_get_pubkey(issuer);
  if (key == NULL) return 0;
  int ok = wolfSSL_X509_verify(subject, key) == WOLFSSL_SUCCESS;
  wolfSSL_EVP_PKEY_free(key);
  return ok;
}

/* Fills one pst_cert_info_t. Returns 0 or -ENOMEM (fields set so far are
 * freed by pst_cert_free). */
static int info_fill(WOLFSSL_X509 *x, pst_cert_info_t *info) {
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
static int names_fill(pst_cert_t *cert, WOLFSSL_X509 *leaf) {
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
    int len = wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(leaf),
                                                NID_commonName, cn, sizeof(cn));
    if (len > 0 && (size_t)len < sizeof(cn)) rc = names_add(cert, (unsigned char *)cn, (size_t)len);
  }
  return rc;
}

/* ---- problems ---- */

static void problem(load_t *ld, pst_problem_severity_t sev, pst_problem_kind_t kind,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records one problem; an allocation failure marks the load out of memory. */
static void problem(load_t *ld, pst_problem_severity_t sev, pst_problem_kind_t kind,
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
static void check_dates(load_t *ld) {
  const pst_cert_t *cert = ld->cert;
  for (size_t i = 0; i < cert->chain_len; i++) {
    const pst_cert_info_t *ci = &cert->chain[i];
    char label[1200], when[32], rel[48];
    cert_label(ld, i, label, sizeof(label));
    const char *fix = i == 0 ? "renew it"
                      : ci->self_signed
                          ? "remove it from the file (clients use their own copy of a root)"
                          : "replace it with the current intermediate certificate from your CA";
    if (difftime(ld->now, ci->not_after) > 0) {
      fmt_time(ci->not_after, when);
      fmt_rel(ci->not_after, ld->now, rel);
      problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_EXPIRED, "%s: %s expired on %s (%s): %s",
              cert->cert_path, label, when, rel, fix);
    } else if (difftime(ci->not_before, ld->now) > 0) {
      fmt_time(ci->not_before, when);
      fmt_rel(ci->not_before, ld->now, rel);
      problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_NOT_YET_VALID,
              "%s: %s is not valid before %s (%s): check the system clock, or wait until then",
              cert->cert_path, label, when, rel);
    } else if ((i == 0 || !ci->self_signed) &&
               difftime(ci->not_after, ld->now) < (double)ld->warn_days * DAY) {
      fmt_time(ci->not_after, when);
      fmt_rel(ci->not_after, ld->now, rel);
      problem(ld, PST_PROBLEM_WARNING, PST_PROBLEM_EXPIRES_SOON, "%s: %s expires on %s (%s): %s",
              cert->cert_path, label, when, rel, fix);
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

static int anchor_issued(const pst_trust_t *trust, WOLFSSL_X509 *x) {
  for (size_t i = 0; i < trust->n_anchors; i++)
    if (issued_by(x, trust->anchors[i])) return 1;
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
      problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_BAD_ORDER,
              "%s: %s is not the issuer of %s; certificate %zu is: order the file leaf first, "
              "then each issuer",
              path, b, a, j + 1);
      return;
    }
  }
  if (cert->chain[i].self_signed ||
      (ld->trust != NULL && anchor_issued(ld->trust, ld->x509[i]))) {
    /* The chain is already complete at chain[i]: what follows is extra. */
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_BAD_ORDER,
            "%s: %s is not the issuer of %s: remove it and the certificates after it, which "
            "are not part of this chain",
            path, b, a);
    return;
  }
  problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_INCOMPLETE_CHAIN,
          "%s: incomplete chain: the issuer \"%s\" of %s is missing (%s is not it): insert "
          "that intermediate certificate right after %s",
          path, cert->chain[i].issuer, a, b, a);
}

/* The self-signed leaf, then each link from the leaf up, then the top of
 * the file against the anchors. Stops at the first structural problem, as
 * the ones after it would only repeat it. */
static void check_chain(load_t *ld) {
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
      problem(ld, PST_PROBLEM_WARNING, PST_PROBLEM_SELF_SIGNED,
              "%s: %s is self-signed: only clients given it as a trusted root (as ca_file "
              "does) accept it; use a certificate issued by a CA for other clients",
              path, label);
    } else {
      problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_SELF_SIGNED,
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
  const pst_cert_info_t *ti = &cert->chain[n - 1];
  if (is_anchor(trust, top) || anchor_issued(trust, top)) return;
  if (ti->self_signed) {
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNTRUSTED,
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
  problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_INCOMPLETE_CHAIN,
          "%s: incomplete chain: the issuer \"%s\" of %s is missing: append that intermediate "
          "certificate to %s after %s%s",
          path, ti->issuer, ti->subject[0] != '\0' ? ti->subject : "the last certificate", path,
          label,
          trust->system ? " (if it is your private root CA, set ca_file to it instead)" : "");
}

static void check_names(load_t *ld) {
  const pst_cert_t *cert = ld->cert;
  char label[1200];
  cert_label(ld, 0, label, sizeof(label));
  if (cert->n_names == 0) {
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_NO_NAMES,
            "%s: %s has no DNS name (no subjectAltName DNS entry and no CN): clients cannot "
            "match it to any server name; reissue it with the site's names as DNS "
            "subjectAltNames",
            cert->cert_path, label);
    return;
  }
  WOLFSSL_STACK *sans =
      wolfSSL_X509_get_ext_d2i(ld->x509[0], NID_subject_alt_name, NULL, NULL);
  if (sans != NULL) {
    wolfSSL_sk_GENERAL_NAME_pop_free(sans, wolfSSL_GENERAL_NAME_free);
    return;
  }
  /* RFC 6125 6.4.4 still allows the CN, but Chrome, Firefox, Go and
   * others ignore it now. */
  problem(ld, PST_PROBLEM_WARNING, PST_PROBLEM_NO_NAMES,
          "%s: %s has no subjectAltName, only a CN: most clients (browsers, Go, curl with "
          "recent libraries) ignore the CN and will reject it; reissue it with the CN as a DNS "
          "subjectAltName",
          cert->cert_path, label);
}

/* ---- loading ---- */

/* Parses every CERTIFICATE block of the chain file into ld->x509 and
 * cert->chain, and keeps those blocks as chain_pem (other blocks, such as
 * a private key in the same file, are left out). Returns 0 when the chain
 * can be checked, 1 when a problem was recorded, -ENOMEM. */
static int load_chain(load_t *ld, const unsigned char *file, size_t len) {
  pst_cert_t *cert = ld->cert;
  const char *path = cert->cert_path;
  size_t pos = 0, count = 0, cap = 0;
  pem_block_t blk;
  int r;
  while ((r = pem_next((const char *)file, len, &pos, &blk)) > 0) {
    if (!label_is(&blk, "CERTIFICATE")) continue;
    if (count == cap) {
      cap = cap ? cap * 2 : 4;
      WOLFSSL_X509 **xs = realloc(ld->x509, cap * sizeof(*xs));
      if (xs == NULL) return -ENOMEM;
      ld->x509 = xs;
      pst_cert_info_t *infos = realloc(cert->chain, cap * sizeof(*infos));
      if (infos == NULL) return -ENOMEM;
      cert->chain = infos;
    }
    WOLFSSL_X509 *x = wolfSSL_X509_load_certificate_buffer((const unsigned char *)blk.text,
                                                           (int)blk.len, WOLFSSL_FILETYPE_PEM);
    if (x == NULL) {
      /* The Ed25519 OID 1.3.101.112 (RFC 8410 3) in the DER says why. */
      static const unsigned char ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
      unsigned char der[16384];
      int der_len = wc_CertPemToDer((const unsigned char *)blk.text, (int)blk.len, der,
                                    (int)sizeof(der), CERT_TYPE);
      int is_ed = der_len > 0 && memmem(der, (size_t)der_len, ed25519, sizeof(ed25519)) != NULL;
      problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
              "%s: certificate %zu cannot be parsed%s: %s", path, count + 1,
              is_ed ? " (Ed25519 keys are not supported by this build of wolfSSL)" : "",
              is_ed ? "use an ECDSA P-256 or RSA certificate"
                    : "check it with `openssl x509 -noout -text`");
      return 1;
    }
    ld->x509[count] = x;
    memset(&cert->chain[count], 0, sizeof(cert->chain[count]));
    cert->chain_len = ++count;
    if (info_fill(x, &cert->chain[count - 1]) != 0) return -ENOMEM;

    unsigned char *pem = realloc(cert->chain_pem, cert->chain_pem_len + blk.len + 2);
    if (pem == NULL) return -ENOMEM;
    memcpy(pem + cert->chain_pem_len, blk.text, blk.len);
    cert->chain_pem_len += blk.len;
    pem[cert->chain_pem_len++] = '\n';
    pem[cert->chain_pem_len] = '\0';
    cert->chain_pem = pem;
  }
  if (r < 0) {
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
            "%s: a PEM block has no END line: the file is truncated; copy it again", path);
    return 1;
  }
  if (count == 0) {
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
            "%s: no PEM certificate found: the file must hold the leaf certificate first, then "
            "its intermediates, in PEM",
            path);
    return 1;
  }
  return 0;
}

/* Finds the private key block of a key file and keeps it as key_pem.
 * Returns 0, 1 when a problem was recorded, -ENOMEM. */
static int load_key(load_t *ld, const unsigned char *file, size_t len) {
  pst_cert_t *cert = ld->cert;
  const char *path = cert->key_path;
  size_t pos = 0;
  pem_block_t blk;
  int r;
  while ((r = pem_next((const char *)file, len, &pos, &blk)) > 0 &&
         !label_ends_with(&blk, "PRIVATE KEY")) {
  }
  if (r <= 0) {
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
            "%s: no PEM private key found: the file must hold the certificate's private key in "
            "PEM (\"-----BEGIN PRIVATE KEY-----\")",
            path);
    return 1;
  }
  /* RFC 5958 3 EncryptedPrivateKeyInfo, or OpenSSL's legacy
   * "Proc-Type: 4,ENCRYPTED" header: postern has no one to ask for a
   * passphrase. */
  if (label_is(&blk, "ENCRYPTED PRIVATE KEY") ||
      memmem(blk.text, blk.len, "Proc-Type: 4,ENCRYPTED", 22) != NULL) {
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
            "%s: the private key is encrypted and postern cannot ask for its passphrase: "
            "decrypt it (openssl pkey -in %s -out NEW_FILE) and make it readable by postern only",
            path, path);
    return 1;
  }
  cert->key_pem = malloc(blk.len + 2);
  if (cert->key_pem == NULL) return -ENOMEM;
  memcpy(cert->key_pem, blk.text, blk.len);
  cert->key_pem[blk.len] = '\n';
  cert->key_pem[blk.len + 1] = '\0';
  cert->key_pem_len = blk.len + 1;
  return 0;
}

/* Loads the chain and key into a scratch context, exactly as the TLS code
 * does, then asks wolfSSL whether the key belongs to the leaf. */
static void check_key(load_t *ld) {
  pst_cert_t *cert = ld->cert;
  char reason[96];
  if (!wolfssl_init()) {
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_KEY_MISMATCH,
            "%s: cannot check the private key: wolfSSL failed to initialise", cert->key_path);
    return;
  }
  WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
  if (ctx == NULL) {
    ld->oom = 1;
    return;
  }
  int rc = wolfSSL_CTX_use_certificate_chain_buffer(ctx, cert->chain_pem,
                                                    (long)cert->chain_pem_len);
  if (rc != WOLFSSL_SUCCESS) {
    wolfSSL_ERR_error_string_n((unsigned long)(rc < 0 ? -rc : rc), reason, sizeof(reason));
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
            "%s: wolfSSL cannot load this chain (%s): use RSA (2048 bits or more) or ECDSA "
            "certificates in PEM",
            cert->cert_path, reason);
    goto done;
  }
  rc = wolfSSL_CTX_use_PrivateKey_buffer(ctx, cert->key_pem, (long)cert->key_pem_len,
                                         WOLFSSL_FILETYPE_PEM);
  if (rc != WOLFSSL_SUCCESS) {
    wolfSSL_ERR_error_string_n((unsigned long)(rc < 0 ? -rc : rc), reason, sizeof(reason));
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
            "%s: the private key cannot be loaded (%s): use an unencrypted RSA (2048 bits or "
            "more) or ECDSA key in PEM",
            cert->key_path, reason);
    goto done;
  }
  if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_KEY_MISMATCH,
            "%s: private key does not match the certificate in %s (%s): use the key the "
            "certificate was issued for",
            cert->key_path, cert->cert_path, cert->chain[0].subject);
  }
done:
  wolfSSL_CTX_free(ctx);
}

/* Reads one file; a failure becomes an UNREADABLE problem. Returns 0, 1
 * when a problem was recorded, -ENOMEM. */
static int load_file(load_t *ld, const char *path, unsigned char **buf, size_t *len) {
  int rc = read_file(path, CERT_FILE_MAX, buf, len);
  if (rc == -ENOMEM) return rc;
  if (rc != 0) {
    problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE, "%s: cannot read: %s", path,
            strerror(-rc));
    return 1;
  }
  return 0;
}

/* Everything after the allocation of the pst_cert_t. Returns 0 (problems,
 * if any, recorded) or -ENOMEM. */
static int cert_load(load_t *ld) {
  pst_cert_t *cert = ld->cert;
  unsigned char *chain_file = NULL, *key_file = NULL;
  size_t chain_len = 0, key_len = 0;
  int rc = load_file(ld, cert->cert_path, &chain_file, &chain_len);
  if (rc == 0) rc = load_chain(ld, chain_file, chain_len);
  if (rc == 0 && ld->oom == 0) rc = names_fill(cert, ld->x509[0]);
  if (rc == 0 && ld->oom == 0) {
    /* Without key_path, the key sits in the chain file. */
    if (strcmp(cert->key_path, cert->cert_path) == 0) {
      rc = load_key(ld, chain_file, chain_len);
    } else if ((rc = load_file(ld, cert->key_path, &key_file, &key_len)) == 0) {
      rc = load_key(ld, key_file, key_len);
    }
    if (rc == 0) check_key(ld);
    if (rc == 1) rc = 0; /* a key problem: still check the chain */
    if (rc == 0) {
      check_chain(ld);
      check_dates(ld);
      check_names(ld);
    }
  }
  if (rc == 1) rc = 0;
  free(chain_file);
  if (key_file != NULL) {
    /* The key file's bytes were copied out: do not leave them in freed heap. */
    explicit_bzero(key_file, key_len);
    free(key_file);
  }
  return rc != 0 ? rc : ld->oom ? -ENOMEM : 0;
}

int pst_cert_load(const char *cert_path, const char *key_path, const pst_trust_t *trust,
                  time_t now, unsigned expiry_warn_days, pst_cert_t **out) {
  *out = NULL;
  pst_cert_t *cert = calloc(1, sizeof(*cert));
  if (cert == NULL) return -ENOMEM;
  load_t ld = {cert, trust, now, expiry_warn_days, NULL, 0};
  cert->cert_path = strdup(cert_path);
  cert->key_path = strdup(key_path != NULL ? key_path : cert_path);
  int rc = (cert->cert_path == NULL || cert->key_path == NULL) ? -ENOMEM : cert_load(&ld);
  for (size_t i = 0; ld.x509 != NULL && i < cert->chain_len; i++) wolfSSL_X509_free(ld.x509[i]);
  free(ld.x509);
  wolfSSL_ERR_clear_error();
  if (rc != 0) {
    pst_cert_free(cert);
    return rc;
  }
  *out = cert;
  return cert->n_errors > 0 ? PST_ECERT : 0;
}

void pst_cert_free(pst_cert_t *cert) {
  if (cert == NULL) return;
  free(cert->cert_path);
  free(cert->key_path);
  free(cert->chain_pem);
  if (cert->key_pem != NULL) {
    explicit_bzero(cert->key_pem, cert->key_pem_len);
    free(cert->key_pem);
  }
  for (size_t i = 0; i < cert->n_names; i++) free(cert->names[i]);
  free(cert->names);
  for (size_t i = 0; i < cert->chain_len; i++) {
    pst_cert_info_t *ci = &cert->chain[i];
    free(ci->subject);
    free(ci->issuer);
    free(ci->serial_hex);
    free(ci->key_desc);
  }
  free(cert->chain);
  for (size_t i = 0; i < cert->n_problems; i++) free(cert->problems[i].msg);
  free(cert->problems);
  free(cert);
}

/* ---- names ---- */

int pst_cert_covers(const pst_cert_t *cert, const char *name) {
  size_t len = strlen(name);
  if (len > 0 && name[len - 1] == '.') len--;
  if (len == 0) return 0;
  const char *dot = memchr(name, '.', len);
  for (size_t i = 0; i < cert->n_names; i++) {
    const char *n = cert->names[i];
    size_t nlen = strlen(n);
    if (equal_nocase(n, nlen, name, len)) return 1;
    /* "*.example.test" covers one extra, non-empty label (RFC 6125 6.4.3,
     * as browsers apply it: no partial-label wildcards). */
    if (nlen > 2 && n[0] == '*' && n[1] == '.' && dot != NULL && dot != name &&
        equal_nocase(n + 2, nlen - 2, dot + 1, len - (size_t)(dot + 1 - name)))
      return 1;
  }
  return 0;
}

/* ---- `postern -t` ---- */

void pst_cert_print(const pst_cert_t *cert, time_t now, FILE *out) {
  fprintf(out, "certificate %s\n", cert->cert_path);
  if (cert->chain_len > 0) {
    const pst_cert_info_t *leaf = &cert->chain[0];
    fprintf(out, "  names:     ");
    for (size_t i = 0; i < cert->n_names; i++)
      fprintf(out, "%s%s", i > 0 ? ", " : "", cert->names[i]);
    fprintf(out, "%s\n", cert->n_names == 0 ? "(none)" : "");
    fprintf(out, "  issuer:    %s\n", leaf->issuer);
    fprintf(out, "  key:       %s\n", leaf->key_desc);
    char when[32];
    fmt_time(leaf->not_after, when);
    long days = days_between(now, leaf->not_after);
    if (difftime(leaf->not_after, now) < 0) {
      char rel[48];
      fmt_rel(leaf->not_after, now, rel);
      fprintf(out, "  not after: %s (expired %s)\n", when, rel);
    } else {
      fprintf(out, "  not after: %s (%ld %s left)\n", when, days, days == 1 ? "day" : "days");
    }
    size_t inter = 0, roots = 0;
    for (size_t i = 1; i < cert->chain_len; i++) {
      if (cert->chain[i].self_signed) {
        roots++;
      } else {
        inter++;
      }
    }
    fprintf(out, "  chain:     %zu certificate%s (leaf", cert->chain_len,
            cert->chain_len == 1 ? "" : "s");
    if (cert->chain_len == 1) fprintf(out, " only");
    if (inter > 0) fprintf(out, " + %zu intermediate%s", inter, inter == 1 ? "" : "s");
    if (roots > 0) fprintf(out, " + %s", roots == 1 ? "root" : "roots");
    fprintf(out, ")\n");
  }
  for (size_t i = 0; i < cert->n_problems; i++) {
    const pst_problem_t *p = &cert->problems[i];
    fprintf(out, "  %s: %s\n", p->severity == PST_PROBLEM_ERROR ? "error" : "warning", p->msg);
  }
  if (cert->n_problems == 0) fprintf(out, "  status:    ok\n");
}

/* ---- trust anchors ---- */

int pst_trust_load(const char *ca_file, pst_trust_t **out, char *err, size_t errlen) {
  static char dummy[1];
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  err[0] = '\0';
  *out = NULL;
  pst_trust_t *trust = calloc(1, sizeof(*trust));
  if (trust == NULL) return -ENOMEM;
  trust->system = ca_file == NULL;
  trust->path = strdup(ca_file != NULL ? ca_file : SYSTEM_CA_FILE);
  unsigned char *file = NULL;
  size_t len = 0, cap = 0, pos = 0, index = 0;
  int rc = trust->path == NULL ? -ENOMEM : read_file(trust->path, TRUST_FILE_MAX, &file, &len);
  if (rc != 0 && rc != -ENOMEM) {
    snprintf(err, errlen, "%s: cannot read: %s%s", trust->path, strerror(-rc),
             trust->system ? ": install the ca-certificates package or set ca_file" : "");
    rc = PST_ECERT;
  }
  pem_block_t blk;
  int r = 0;
  while (rc == 0 && (r = pem_next((const char *)file, len, &pos, &blk)) > 0) {
    if (!label_is(&blk, "CERTIFICATE")) continue;
    index++;
    WOLFSSL_X509 *x = wolfSSL_X509_load_certificate_buffer((const unsigned char *)blk.text,
                                                           (int)blk.len, WOLFSSL_FILETYPE_PEM);
    if (x == NULL) {
      /* The system store may hold roots this wolfSSL build cannot parse;
       * they cannot anchor a chain postern serves anyway. A ca_file the
       * operator wrote must be read whole. */
      if (trust->system) continue;
      snprintf(err, errlen,
               "%s: certificate %zu cannot be parsed: check it with `openssl x509 -noout -text`",
               trust->path, index);
      rc = PST_ECERT;
      break;
    }
    if (trust->n_anchors == cap) {
      cap = cap ? cap * 2 : 16;
      WOLFSSL_X509 **a = realloc(trust->anchors, cap * sizeof(*a));
      if (a == NULL) {
        wolfSSL_X509_free(x);
        rc = -ENOMEM;
        break;
      }
      trust->anchors = a;
    }
    trust->anchors[trust->n_anchors++] = x;
  }
  if (rc == 0 && r < 0) {
    snprintf(err, errlen, "%s: a PEM block has no END line: the file is truncated", trust->path);
    rc = PST_ECERT;
  } else if (rc == 0 && trust->n_anchors == 0) {
    snprintf(err, errlen,
             "%s: no PEM certificate found: ca_file must hold the CA certificates to trust, in "
             "PEM",
             trust->path);
    rc = PST_ECERT;
  }
  free(file);
  wolfSSL_ERR_clear_error();
  if (rc != 0) {
    pst_trust_free(trust);
    return rc;
  }
  *out = trust;
  return 0;
}

void pst_trust_free(pst_trust_t *trust) {
  if (trust == NULL) return;
  for (size_t i = 0; i < trust->n_anchors; i++) wolfSSL_X509_free(trust->anchors[i]);
  free(trust->anchors);
  free(trust->path);
  free(trust);
}
