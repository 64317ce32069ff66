/* postern: load certificates and check them the way a strict client would.
 *
 * Runs at start-up, for `postern -t` and in the reload thread, never on the
 * event loop, so it favours clear messages over speed. Every problem becomes
 * one line "FILE: what is wrong: how to fix it" for an operator. This file
 * reads the files, the key and the trust anchors and prints the summary;
 * src/cert_check.c inspects certificates and checks chains.
 *
 * wolfSSL notes (5.5.4 built with opensslextra + opensslall):
 * - wolfSSL_X509_load_certificate_buffer() fails for any certificate with an
 *   Ed25519 public key: with OPENSSL_ALL, CopyDecodedToX509() converts the
 *   key through wolfSSL_d2i_PUBKEY(), which has no Ed25519 support. Such
 *   certificates are reported as unreadable, with that reason.
 * - wolfSSL_CTX_use_PrivateKey_buffer() accepts any well-formed key, even
 *   one of another type than the certificate; only
 *   wolfSSL_CTX_check_private_key() compares the two.
 * - Failed wolfSSL calls leave entries in the thread's error queue; each
 *   public function here clears it before returning.
 */
#include "postern/cert.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "cert_int.h"
#include "postern/common.h"
#include "postern/tls.h"
#include "postern/priv.h"

#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
/* Chains and keys are a few KiB; the system store is about 200 KiB. The
 * limits only stop a wrong path (a device, a log) from being read whole. */
#define CERT_FILE_MAX (4u << 20)
#define TRUST_FILE_MAX (32u << 20)
#define DAY PST_CERT_DAY

typedef pst_cert_load_t load_t;

/* ---- small helpers ---- */

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
  int n =
      snprintf(end_line, sizeof(end_line), "-----END %.*s-----", (int)(label_end - label), label);
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

/* Days from now to t, rounded to the nearest (negative in the past). */
static long days_between(time_t now, time_t t) {
  double d = difftime(t, now) / DAY;
  return (long)(d >= 0 ? d + 0.5 : d - 0.5);
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
      pst_cert_problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
                       "%s: certificate %zu cannot be parsed%s: %s", path, count + 1,
                       is_ed ? " (Ed25519 keys are not supported by this build of wolfSSL)" : "",
                       is_ed ? "use an ECDSA P-256 or RSA certificate"
                             : "check it with `openssl x509 -noout -text`");
      return 1;
    }
    ld->x509[count] = x;
    memset(&cert->chain[count], 0, sizeof(cert->chain[count]));
    cert->chain_len = ++count;
    if (pst_cert_info_fill(x, &cert->chain[count - 1]) != 0) return -ENOMEM;

    unsigned char *pem = realloc(cert->chain_pem, cert->chain_pem_len + blk.len + 2);
    if (pem == NULL) return -ENOMEM;
    memcpy(pem + cert->chain_pem_len, blk.text, blk.len);
    cert->chain_pem_len += blk.len;
    pem[cert->chain_pem_len++] = '\n';
    pem[cert->chain_pem_len] = '\0';
    cert->chain_pem = pem;
  }
  if (r < 0) {
    pst_cert_problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
                     "%s: a PEM block has no END line: the file is truncated; copy it again", path);
    return 1;
  }
  if (count == 0) {
    pst_cert_problem(
        ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
        "%s: no PEM certificate found: the file must hold the leaf certificate first, then "
        "its intermediates, in PEM",
        path);
    return 1;
  }
  return 0;
}

/* See src/cert_int.h. The copy is made from the DER, so that the chain
 * owns it like the certificates read from the file. */
int pst_cert_append(load_t *ld, WOLFSSL_X509 *x) {
  pst_cert_t *cert = ld->cert;
  int der_len = 0;
  const unsigned char *der = wolfSSL_X509_get_der(x, &der_len);
  if (der == NULL || der_len <= 0) return -ENOMEM;
  size_t n = cert->chain_len;
  WOLFSSL_X509 **xs = realloc(ld->x509, (n + 1) * sizeof(*xs));
  if (xs == NULL) return -ENOMEM;
  ld->x509 = xs;
  pst_cert_info_t *infos = realloc(cert->chain, (n + 1) * sizeof(*infos));
  if (infos == NULL) return -ENOMEM;
  cert->chain = infos;
  /* PEM: 64 base64 characters a line (RFC 7468 2), BEGIN and END lines. */
  size_t pem_max = (size_t)der_len * 4 / 3 + (size_t)der_len / 48 + 128;
  unsigned char *pem = realloc(cert->chain_pem, cert->chain_pem_len + pem_max + 1);
  if (pem == NULL) return -ENOMEM;
  cert->chain_pem = pem;
  int pem_len =
      wc_DerToPem(der, (word32)der_len, pem + cert->chain_pem_len, (word32)pem_max, CERT_TYPE);
  const unsigned char *p = der;
  WOLFSSL_X509 *copy = pem_len > 0 ? wolfSSL_d2i_X509(NULL, &p, der_len) : NULL;
  if (copy == NULL) return -ENOMEM;
  cert->chain_pem_len += (size_t)pem_len;
  pem[cert->chain_pem_len] = '\0';
  ld->x509[n] = copy;
  memset(&cert->chain[n], 0, sizeof(cert->chain[n]));
  cert->chain_len = n + 1;
  return pst_cert_info_fill(copy, &cert->chain[n]);
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
    pst_cert_problem(
        ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
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
    pst_cert_problem(
        ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
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

/* Text for a failed wolfSSL call: its negative error code, or else the
 * last error it queued (some calls return only WOLFSSL_FAILURE). */
static void wolf_reason(int rc, char *buf, size_t len) {
  unsigned long e = rc < 0 ? (unsigned long)-rc : wolfSSL_ERR_peek_last_error();
  if (e == 0) {
    snprintf(buf, len, "error %d", rc);
    return;
  }
  wolfSSL_ERR_error_string_n(e, buf, len);
}

/* Loads the chain and key into a scratch context, exactly as the TLS code
 * does, then asks wolfSSL whether the key belongs to the leaf. */
static void check_key(load_t *ld) {
  pst_cert_t *cert = ld->cert;
  char reason[96];
  if (pst_tls_global_init() != 0) {
    pst_cert_problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_KEY_MISMATCH,
                     "%s: cannot check the private key: wolfSSL failed to initialise",
                     cert->key_path);
    return;
  }
  WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
  if (ctx == NULL) {
    ld->oom = 1;
    return;
  }
  int rc =
      wolfSSL_CTX_use_certificate_chain_buffer(ctx, cert->chain_pem, (long)cert->chain_pem_len);
  if (rc != WOLFSSL_SUCCESS) {
    wolf_reason(rc, reason, sizeof(reason));
    pst_cert_problem(
        ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
        "%s: wolfSSL cannot load this chain (%s): use RSA (2048 bits or more) or ECDSA "
        "certificates in PEM",
        cert->cert_path, reason);
    goto done;
  }
  rc = wolfSSL_CTX_use_PrivateKey_buffer(ctx, cert->key_pem, (long)cert->key_pem_len,
                                         WOLFSSL_FILETYPE_PEM);
  if (rc != WOLFSSL_SUCCESS) {
    wolf_reason(rc, reason, sizeof(reason));
    pst_cert_problem(
        ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE,
        "%s: the private key cannot be loaded (%s): use an unencrypted RSA (2048 bits or "
        "more) or ECDSA key in PEM",
        cert->key_path, reason);
    goto done;
  }
  if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
    pst_cert_problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_KEY_MISMATCH,
                     "%s: private key does not match the certificate in %s (%s): use the key the "
                     "certificate was issued for",
                     cert->key_path, cert->cert_path,
                     cert->chain[0].subject[0] != '\0' ? cert->chain[0].subject : "empty subject");
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
    pst_cert_problem(ld, PST_PROBLEM_ERROR, PST_PROBLEM_UNREADABLE, "%s: cannot read: %s%s", path,
                     strerror(-rc), pst_priv_hint(rc, "readable"));
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
  if (rc == 0 && ld->oom == 0) rc = pst_cert_names_fill(cert, ld->x509[0]);
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
      pst_cert_check_chain(ld);
      pst_cert_check_dates(ld);
      pst_cert_check_names(ld);
      pst_cert_check_ocsp(ld);
    }
  }
  if (rc == 1) rc = 0;
  /* Key bytes were copied out (the chain file may hold the key too): do
   * not leave them in freed heap. */
  if (chain_file != NULL) explicit_bzero(chain_file, chain_len);
  free(chain_file);
  if (key_file != NULL) explicit_bzero(key_file, key_len);
  free(key_file);
  return rc != 0 ? rc : ld->oom ? -ENOMEM : 0;
}

/* See include/postern/cert.h. Also: key_path NULL means the key is in the
 * chain file; cert->key_path is then a copy of cert_path. */
int pst_cert_load(const char *cert_path, const char *key_path, const pst_trust_t *trust, time_t now,
                  unsigned expiry_warn_days, pst_cert_t **out) {
  return pst_cert_load_completing(cert_path, key_path, trust, NULL, now, expiry_warn_days, out);
}

/* See include/postern/cert.h. */
int pst_cert_load_completing(const char *cert_path, const char *key_path, const pst_trust_t *trust,
                             const pst_trust_t *intermediates, time_t now,
                             unsigned expiry_warn_days, pst_cert_t **out) {
  return pst_cert_load_stapled(cert_path, key_path, NULL, 0, trust, intermediates, now,
                               expiry_warn_days, out);
}

/* See include/postern/cert.h. */
int pst_cert_load_stapled(const char *cert_path, const char *key_path, const char *ocsp_path,
                          int ocsp_optional, const pst_trust_t *trust,
                          const pst_trust_t *intermediates, time_t now, unsigned expiry_warn_days,
                          pst_cert_t **out) {
  *out = NULL;
  pst_cert_t *cert = calloc(1, sizeof(*cert));
  if (cert == NULL) return -ENOMEM;
  load_t ld = {cert,      trust,         intermediates, now, expiry_warn_days,
               ocsp_path, ocsp_optional, NULL,          0};
  cert->cert_path = strdup(cert_path);
  cert->key_path = strdup(key_path != NULL ? key_path : cert_path);
  int rc = (cert->cert_path == NULL || cert->key_path == NULL) ? -ENOMEM : 0;
  if (rc == 0 && ocsp_path != NULL && (cert->ocsp_path = strdup(ocsp_path)) == NULL) rc = -ENOMEM;
  if (rc == 0) rc = cert_load(&ld);
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

/* See include/postern/cert.h. Wipes the key bytes before freeing them. */
void pst_cert_free(pst_cert_t *cert) {
  if (cert == NULL) return;
  free(cert->cert_path);
  free(cert->key_path);
  free(cert->chain_pem);
  free(cert->ocsp_path);
  free(cert->staple);
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

/* See include/postern/cert.h. */
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

/* See include/postern/cert.h. */
int pst_cert_read_pem(const char *path, unsigned char **buf, size_t *len) {
  return read_file(path, TRUST_FILE_MAX, buf, len);
}

/* See include/postern/cert.h. */
pst_cert_kind_t pst_cert_kind(const pst_cert_t *cert) {
  if (cert->chain_len == 0) return PST_CERT_KIND_OTHER;
  const pst_cert_info_t *leaf = &cert->chain[0];
  switch (leaf->key_type) {
    case PST_KEY_RSA: return PST_CERT_KIND_RSA;
    case PST_KEY_ED25519: return PST_CERT_KIND_ED25519;
    case PST_KEY_ECDSA:
      if (leaf->key_bits == 256) return PST_CERT_KIND_ECDSA_P256;
      if (leaf->key_bits == 384) return PST_CERT_KIND_ECDSA_P384;
      if (leaf->key_bits == 521) return PST_CERT_KIND_ECDSA_P521;
      return PST_CERT_KIND_OTHER;
    case PST_KEY_OTHER: break;
  }
  return PST_CERT_KIND_OTHER;
}

/* See include/postern/cert.h. */
const char *pst_cert_key_desc(const pst_cert_t *cert) {
  if (cert->chain_len == 0 || cert->chain[0].key_desc == NULL) return "?";
  return cert->chain[0].key_desc;
}

/* ---- `postern -t` ---- */

/* See include/postern/cert.h. Only reads cert. */
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
    pst_cert_fmt_time(leaf->not_after, when);
    long days = days_between(now, leaf->not_after);
    if (difftime(leaf->not_after, now) < 0) {
      char rel[48];
      pst_cert_fmt_rel(leaf->not_after, now, rel);
      fprintf(out, "  not after: %s (expired %s)\n", when, rel);
    } else if (difftime(leaf->not_after, now) < DAY) {
      fprintf(out, "  not after: %s (less than a day left)\n", when);
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
    if (cert->ocsp_path != NULL || cert->must_staple) {
      fprintf(out, "  ocsp:      %s", pst_cert_staple_desc(cert));
      if (cert->staple_state == PST_STAPLE_GOOD && cert->staple_next_update != 0) {
        char rel[48];
        pst_cert_fmt_time(cert->staple_next_update, when);
        pst_cert_fmt_rel(cert->staple_next_update, now, rel);
        fprintf(out, ", next update %s (%s)", when, rel);
      } else if (cert->staple_state == PST_STAPLE_GOOD) {
        fprintf(out, ", no next update");
      }
      if (cert->ocsp_path != NULL) fprintf(out, " (%s)", cert->ocsp_path);
      fprintf(out, "%s\n", cert->must_staple ? ", must-staple" : "");
    }
  }
  for (size_t i = 0; i < cert->n_problems; i++) {
    const pst_problem_t *p = &cert->problems[i];
    fprintf(out, "  %s: %s\n", p->severity == PST_PROBLEM_ERROR ? "error" : "warning", p->msg);
  }
  if (cert->n_problems == 0) fprintf(out, "  status:    ok\n");
}

/* ---- tallies: many certificates in a few lines ---- */

#define TALLY_KINDS ((size_t)PST_PROBLEM_OCSP + 1)

typedef struct {
  size_t index;
  const pst_cert_t *cert;
  const char *msg; /* the problem's, borrowed from cert */
} tally_item_t;

typedef struct {
  tally_item_t *items;
  size_t n, cap;
  size_t n_certs; /* distinct certificates among the items */
} tally_group_t;

struct pst_cert_tally_s {
  tally_group_t groups[2][TALLY_KINDS]; /* [severity][kind] */
  size_t n_certs, with_errors, warnings_only;
};

pst_cert_tally_t *pst_cert_tally_new(void) { return calloc(1, sizeof(pst_cert_tally_t)); }

static int tally_push(tally_group_t *g, size_t index, const pst_cert_t *cert, const char *msg) {
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 16;
    tally_item_t *items = realloc(g->items, cap * sizeof(*items));
    if (items == NULL) return -ENOMEM;
    g->items = items;
    g->cap = cap;
  }
  /* A certificate's problems are added together: a repeat is the last. */
  if (g->n == 0 || g->items[g->n - 1].cert != cert) g->n_certs++;
  g->items[g->n++] = (tally_item_t){index, cert, msg};
  return 0;
}

int pst_cert_tally_add(pst_cert_tally_t *t, size_t index, const pst_cert_t *cert) {
  int rc = 0;
  t->n_certs++;
  if (cert->n_errors > 0) {
    t->with_errors++;
  } else if (cert->n_problems > 0) {
    t->warnings_only++;
  }
  for (size_t i = 0; i < cert->n_problems && rc == 0; i++) {
    const pst_problem_t *p = &cert->problems[i];
    size_t sev = p->severity == PST_PROBLEM_ERROR ? 0 : 1;
    size_t kind = (size_t)p->kind < TALLY_KINDS ? (size_t)p->kind : 0;
    rc = tally_push(&t->groups[sev][kind], index, cert, p->msg);
  }
  return rc;
}

void pst_cert_tally_counts(const pst_cert_tally_t *t, size_t *n, size_t *with_errors,
                           size_t *warnings_only) {
  if (n != NULL) *n = t->n_certs;
  if (with_errors != NULL) *with_errors = t->with_errors;
  if (warnings_only != NULL) *warnings_only = t->warnings_only;
}

/* What certificates with one kind of problem have, after their number
 * ("9,998 certificates expire within 30 days"). */
static void tally_phrase(size_t sev, size_t kind, unsigned warn_days, char *out, size_t cap) {
  const char *s = "certificates have another problem";
  switch ((pst_problem_kind_t)kind) {
    case PST_PROBLEM_UNREADABLE: s = "certificates or keys cannot be read or loaded"; break;
    case PST_PROBLEM_KEY_MISMATCH: s = "private keys do not match their certificate"; break;
    case PST_PROBLEM_EXPIRED: s = "certificates have expired (the leaf or one of its chain)"; break;
    case PST_PROBLEM_NOT_YET_VALID: s = "certificates are not valid yet"; break;
    case PST_PROBLEM_SELF_SIGNED:
      s = sev == 0 ? "certificates are self-signed"
                   : "certificates are self-signed (trusted only by clients given them as roots)";
      break;
    case PST_PROBLEM_INCOMPLETE_CHAIN:
      s = "chains are incomplete (an intermediate certificate is missing)";
      break;
    case PST_PROBLEM_BAD_ORDER:
      s = "chains are out of order or hold a certificate that does not belong";
      break;
    case PST_PROBLEM_UNTRUSTED: s = "chains end at a root that is not trusted"; break;
    case PST_PROBLEM_EXPIRES_SOON:
      snprintf(out, cap, "certificates expire within %u day%s", warn_days,
               warn_days == 1 ? "" : "s");
      return;
    case PST_PROBLEM_NO_NAMES:
      s = sev == 0 ? "certificates have no DNS name"
                   : "certificates have no subjectAltName, only a CN";
      break;
    case PST_PROBLEM_CHAIN_COMPLETED:
      s = "incomplete chains were completed from tls.intermediates";
      break;
    case PST_PROBLEM_OCSP:
      s = sev == 0 ? "certificates are revoked or lack the OCSP response they must staple"
                   : "certificates have an OCSP response that is not stapled";
      break;
  }
  snprintf(out, cap, "%s", s);
}

/* n with a comma every three digits: "10,000". */
static void fmt_count(size_t n, char out[32]) {
  char digits[24];
  int len = snprintf(digits, sizeof(digits), "%zu", n);
  size_t o = 0;
  for (int i = 0; i < len; i++) {
    if (i > 0 && (len - i) % 3 == 0) out[o++] = ',';
    out[o++] = digits[i];
  }
  out[o] = '\0';
}

/* The one line that stands for group g: "N certificates ... (first: a, b,
 * c; hint)". */
static void tally_line(const tally_group_t *g, size_t sev, size_t kind, unsigned warn_days,
                       const char *hint, char *out, size_t cap) {
  char count[32], phrase[160];
  fmt_count(g->n_certs, count);
  tally_phrase(sev, kind, warn_days, phrase, sizeof(phrase));
  size_t len = (size_t)snprintf(out, cap, "%s %s (first: ", count, phrase);
  const pst_cert_t *last = NULL;
  size_t shown = 0;
  for (size_t i = 0; i < g->n && shown < PST_CERT_TALLY_EACH && len < cap; i++) {
    if (g->items[i].cert == last) continue;
    last = g->items[i].cert;
    len += (size_t)snprintf(out + len, cap - len, "%s%s", shown++ > 0 ? ", " : "", last->cert_path);
  }
  if (len < cap) snprintf(out + len, cap - len, ", ...; %s)", hint);
}

void pst_cert_tally_report(const pst_cert_tally_t *t, unsigned warn_days, const char *hint,
                           pst_cert_tally_fn fn, void *arg) {
  char line[2048];
  for (size_t sev = 0; sev < 2; sev++) {
    pst_problem_severity_t severity = sev == 0 ? PST_PROBLEM_ERROR : PST_PROBLEM_WARNING;
    for (size_t kind = 0; kind < TALLY_KINDS; kind++) {
      const tally_group_t *g = &t->groups[sev][kind];
      if (g->n == 0) continue;
      if (g->n_certs <= PST_CERT_TALLY_EACH) {
        for (size_t i = 0; i < g->n; i++) fn(arg, severity, g->items[i].index, 0, g->items[i].msg);
        continue;
      }
      tally_line(g, sev, kind, warn_days, hint, line, sizeof(line));
      fn(arg, severity, g->items[0].index, 1, line);
    }
  }
}

void pst_cert_tally_free(pst_cert_tally_t *t) {
  if (t == NULL) return;
  for (size_t sev = 0; sev < 2; sev++)
    for (size_t kind = 0; kind < TALLY_KINDS; kind++) free(t->groups[sev][kind].items);
  free(t);
}

/* ---- trust anchors ---- */

/* See include/postern/cert.h. err may be NULL. The store is read-only
 * afterwards, so concurrent pst_cert_load() calls may share it. */
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
  pthread_mutex_init(&trust->memo_lock, NULL);
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
    snprintf(err, errlen, "%s: no PEM certificate found: %s", trust->path,
             trust->system ? "reinstall the ca-certificates package or set ca_file"
                           : "ca_file must hold the CA certificates to trust, in PEM");
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

/* See include/postern/cert.h. NULL is allowed. */
void pst_trust_free(pst_trust_t *trust) {
  if (trust == NULL) return;
  for (size_t i = 0; i < trust->n_anchors; i++) wolfSSL_X509_free(trust->anchors[i]);
  for (size_t i = 0; i < trust->n_memo; i++) free(trust->memo[i]);
  pthread_mutex_destroy(&trust->memo_lock);
  free(trust->anchors);
  free(trust->path);
  free(trust);
}
