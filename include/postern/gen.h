/* postern: build, check, share and free configuration generations. */
#ifndef POSTERN_GEN_H
#define POSTERN_GEN_H

#include <stdio.h>
#include <time.h>

#include "postern/gen-t.h"

/* Builds a generation from cfg, which it takes over in every case (freed on
 * failure). Loads and checks every certificate (pst_cert_load), resolves
 * default_certificate and routes, and creates the TLS contexts.
 * report: when not NULL (`postern -t`), each certificate's summary and
 * problems are printed there; otherwise problems are logged.
 * Returns 0 and *out (one reference, owned by the caller), PST_ECERT when
 * anything failed a check (a certificate, a default_certificate that no
 * certificate covers, a TLS context wolfSSL refused, an access log that
 * cannot be opened: each reported as above), or -ENOMEM. *n_errors, when
 * not NULL, receives the number of errors. */
int pst_gen_build(pst_config_t *cfg, uint64_t number, time_t now, FILE *report, pst_gen_t **out,
                  unsigned *n_errors);

/* pst_gen_build, saying how much to report: a listener with more than
 * PST_CERT_TALLY_ABOVE certificates (cert.h) is reported as one line per
 * kind of problem (and, in report, a count of its certificates), unless
 * verbose asks for every certificate's lines. pst_gen_build is verbose 0.
 * Same returns. */
int pst_gen_check(pst_config_t *cfg, uint64_t number, time_t now, FILE *report, int verbose,
                  pst_gen_t **out, unsigned *n_errors);

/* Takes one more reference. Returns gen. Thread-safe. */
pst_gen_t *pst_gen_ref(pst_gen_t *gen);

/* Drops one reference; the last one frees the generation. NULL allowed. */
void pst_gen_unref(pst_gen_t *gen);

/* The number of certificates of every listener of gen. */
size_t pst_gen_n_certs(const pst_gen_t *gen);

/* Logs a warning for every leaf of gen that expires within the
 * configuration's expiry_warn_days of now, and an error for one already
 * expired (a running generation's leaf expires as time passes); in a
 * listener with more than PST_CERT_TALLY_ABOVE certificates (cert.h), the
 * first PST_CERT_TALLY_EACH of each, then one line counting the rest.
 * Returns how many leaves were found. Run once a day while postern runs.
 * Thread-safe. */
unsigned pst_gen_log_expiry(const pst_gen_t *gen, time_t now);

#endif
