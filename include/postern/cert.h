/* postern: load certificates and check them the way a strict client would. */
#ifndef POSTERN_CERT_H
#define POSTERN_CERT_H

#include <stdio.h>

#include "postern/cert-t.h"

/* Loads trust anchors from ca_file (PEM, one or many), or from the system
 * store (/etc/ssl/certs/ca-certificates.crt) when ca_file is NULL.
 * Returns 0 and a new store in *out (free with pst_trust_free), or
 * PST_ECERT with a one-line reason in err ("FILE: problem"), or -ENOMEM. */
int pst_trust_load(const char *ca_file, pst_trust_t **out, char *err, size_t errlen);

void pst_trust_free(pst_trust_t *trust);

/* Reads the chain file and key file, parses every certificate and checks:
 * the key matches the leaf; each certificate is signed by the next one;
 * the chain reaches an anchor of trust without help from a client's cache
 * (otherwise the missing issuer is named); validity dates against now; a
 * self-signed leaf; a leaf without names. A leaf expiring within
 * expiry_warn_days of now is a warning.
 * Returns 0 when there is no error-level problem, PST_ECERT when there is
 * at least one (the cert is still returned with its problems, so `postern
 * -t` can print everything), or -ENOMEM (nothing returned).
 * In every case but -ENOMEM *out holds a new pst_cert_t owned by the caller
 * (free with pst_cert_free). trust may be NULL: chain completeness is then
 * not checked. Messages name the file and say how to fix the problem. */
int pst_cert_load(const char *cert_path, const char *key_path, const pst_trust_t *trust, time_t now,
                  unsigned expiry_warn_days, pst_cert_t **out);

/* pst_cert_load, and when the chain does not reach trust, completes it
 * from intermediates (tls.intermediates, NULL for none): each missing
 * issuer found there, signature checked, is appended to the chain served,
 * with a warning naming it (PST_PROBLEM_CHAIN_COMPLETED). Without a
 * complete chain the incomplete-chain error stays. Same returns. */
int pst_cert_load_completing(const char *cert_path, const char *key_path, const pst_trust_t *trust,
                             const pst_trust_t *intermediates, time_t now,
                             unsigned expiry_warn_days, pst_cert_t **out);

/* pst_cert_load_completing, then the OCSP response in ocsp_path (DER,
 * RFC 6960 4.2.1; NULL for none) checked for this certificate: it must
 * answer for the leaf (CertID: issuer name and key hashes, serial), be
 * signed by the issuer or by a responder the issuer authorised
 * (id-kp-OCSPSigning), say good, and be current (thisUpdate at most 5
 * minutes ahead of now, nextUpdate not past). A response that fails is not
 * stapled, with a warning saying why (PST_PROBLEM_OCSP); revoked is an
 * error. With ocsp_optional, a missing file is no problem (tls.ocsp_dir).
 * A leaf with the must-staple feature (RFC 7633) and no valid response is
 * an error. Same returns as pst_cert_load. */
int pst_cert_load_stapled(const char *cert_path, const char *key_path, const char *ocsp_path,
                          int ocsp_optional, const pst_trust_t *trust,
                          const pst_trust_t *intermediates, time_t now, unsigned expiry_warn_days,
                          pst_cert_t **out);

/* "good", "not stapled", "revoked" or "none": the staple's state for
 * operators. A constant string. */
const char *pst_cert_staple_desc(const pst_cert_t *cert);

void pst_cert_free(pst_cert_t *cert);

/* Returns nonzero when name (any case, no trailing dot) is covered by one of
 * the certificate's names, with wildcard matching of exactly one label. */
int pst_cert_covers(const pst_cert_t *cert, const char *name);

/* Reads a whole PEM file of at most 32 MiB (a CA bundle) into a new
 * NUL-terminated buffer (*buf, owned by the caller, *len bytes without the
 * NUL). Returns 0 or a negative errno (-EFBIG for a bigger file). */
int pst_cert_read_pem(const char *path, unsigned char **buf, size_t *len);

/* The kind of the leaf's key (cert-t.h); PST_CERT_KIND_OTHER for a
 * certificate without a readable leaf. */
pst_cert_kind_t pst_cert_kind(const pst_cert_t *cert);

/* The leaf's key as shown to operators ("ECDSA P-256", "RSA 2048"), or "?"
 * without a readable leaf. Owned by cert. */
const char *pst_cert_key_desc(const pst_cert_t *cert);

/* Prints the `postern -t` summary of one certificate: names (SANs), issuer,
 * key type and size, not-after with days left, chain length, then each
 * problem on its own line prefixed "error:" or "warning:". */
void pst_cert_print(const pst_cert_t *cert, time_t now, FILE *out);

/* Listeners with more certificates than this are reported as a tally
 * (pst_cert_tally_*) instead of certificate by certificate, unless asked
 * for every line (`postern -t --verbose`). */
#define PST_CERT_TALLY_ABOVE 10

/* A kind of problem found in at most this many certificates of a tally is
 * reported with each certificate's own message; more, in one line. */
#define PST_CERT_TALLY_EACH 3

/* A new, empty tally, or NULL when out of memory. */
pst_cert_tally_t *pst_cert_tally_new(void);

/* Adds cert, the certificate at position index of its list, and its
 * problems. cert is borrowed: it must outlive the tally. Returns 0 or
 * -ENOMEM (the tally then misses this certificate's problems). */
int pst_cert_tally_add(pst_cert_tally_t *t, size_t index, const pst_cert_t *cert);

/* How many certificates were added, how many have an error, and how many
 * have warnings but no error. Any pointer may be NULL. */
void pst_cert_tally_counts(const pst_cert_tally_t *t, size_t *n, size_t *with_errors,
                           size_t *warnings_only);

/* Calls fn once per line of the report, errors first, then warnings, each
 * in the order of pst_problem_kind_t: a kind found in at most
 * PST_CERT_TALLY_EACH certificates gives each of its messages as they are;
 * a kind found in more gives one line, e.g. "9,998 certificates expire
 * within 30 days (first: a.pem, b.pem, c.pem; HINT)". warn_days is the
 * expiry_warn_days the certificates were checked with. */
void pst_cert_tally_report(const pst_cert_tally_t *t, unsigned warn_days, const char *hint,
                           pst_cert_tally_fn fn, void *arg);

/* NULL allowed. The certificates added are not freed. */
void pst_cert_tally_free(pst_cert_tally_t *t);

#endif
