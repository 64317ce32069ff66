/* postern: internals shared by src/cert.c (reading files, the key, trust
 * anchors, printing) and src/cert_check.c (what a certificate says and the
 * checks). Not a public header: nothing outside these two files uses it. */
#ifndef POSTERN_CERT_INT_H
#define POSTERN_CERT_INT_H

#include <stddef.h>
#include <time.h>

#include <pthread.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "postern/cert.h"

#define PST_CERT_DAY 86400

/* How many certificates a store remembers as issued by one of its anchors. */
#define PST_TRUST_MEMO 32

struct pst_trust_s {
  char *path;             /* the file the anchors were read from */
  int system;             /* 1 when that is the system store (ca_file unset) */
  WOLFSSL_X509 **anchors; /* read-only after pst_trust_load(), so that many
                             loads may share the store */
  size_t n_anchors;
  /* The DER of certificates found issued by an anchor (cert_check.c:
   * anchor_issued). Every chain of a listener usually ends with the same
   * intermediate: its signature is verified once per store, not once per
   * certificate (with 10,000 certificates that was a third of the load
   * time). Under memo_lock: loads may share the store. */
  pthread_mutex_t memo_lock;
  unsigned char *memo[PST_TRUST_MEMO];
  int memo_len[PST_TRUST_MEMO];
  size_t n_memo;
};

/* State of one pst_cert_load() call. */
typedef struct {
  pst_cert_t *cert;
  const pst_trust_t *trust;  /* NULL: chain completeness is not checked */
  const pst_trust_t *bundle; /* tls.intermediates, NULL for none */
  time_t now;
  unsigned warn_days;
  const char *ocsp_path; /* the OCSP response file, NULL for none */
  int ocsp_optional;     /* a missing ocsp_path is no problem (tls.ocsp_dir) */
  WOLFSSL_X509 **x509;   /* cert->chain_len parsed certificates, owned */
  int oom;               /* an allocation failed: the load returns -ENOMEM */
} pst_cert_load_t;

/* Records one problem on ld->cert, its message formatted from fmt (one
 * line, "FILE: what is wrong: how to fix it"). An allocation failure sets
 * ld->oom instead. */
void pst_cert_problem(pst_cert_load_t *ld, pst_problem_severity_t sev, pst_problem_kind_t kind,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Appends a copy of x (a certificate from tls.intermediates) to the chain
 * being loaded: ld->x509, cert->chain and the PEM given to wolfSSL.
 * Returns 0 or -ENOMEM. x is borrowed. */
int pst_cert_append(pst_cert_load_t *ld, WOLFSSL_X509 *x);

/* Fills info from x: DNs, serial, dates, key, self_signed, is_ca. Returns 0
 * or -ENOMEM; the strings set so far belong to info either way (freed by
 * pst_cert_free). x is borrowed. */
int pst_cert_info_fill(WOLFSSL_X509 *x, pst_cert_info_t *info);

/* Sets cert->names from the leaf: its DNS subjectAltNames, lower-cased, or
 * its CN when it has none. Returns 0 or -ENOMEM. leaf is borrowed. */
int pst_cert_names_fill(pst_cert_t *cert, WOLFSSL_X509 *leaf);

/* The checks of a parsed chain; each records its problems on ld->cert.
 * check_chain: self-signed leaf, order, completeness and trust;
 * check_dates: validity of every member, and the expiry warning;
 * check_names: a leaf without names, or with a CN only. */
void pst_cert_check_chain(pst_cert_load_t *ld);
void pst_cert_check_dates(pst_cert_load_t *ld);
void pst_cert_check_names(pst_cert_load_t *ld);

/* OCSP (src/cert_ocsp.c): reads the leaf's must-staple feature, then
 * checks ld->ocsp_path's response and keeps it on ld->cert as the staple
 * when it is good; records problems. Runs after the chain checks. */
void pst_cert_check_ocsp(pst_cert_load_t *ld);

/* "2025-01-01 00:00:00 UTC" into out. */
void pst_cert_fmt_time(time_t t, char out[32]);

/* "in 9 days", "12 days ago", "in 5 hours" into out: how far t is from
 * now, days rounded to the nearest. */
void pst_cert_fmt_rel(time_t t, time_t now, char out[48]);

#endif
