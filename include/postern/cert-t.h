/* postern: certificate types. */
#ifndef POSTERN_CERT_T_H
#define POSTERN_CERT_T_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef enum {
  PST_KEY_OTHER = 0,
  PST_KEY_RSA = 1,
  PST_KEY_ECDSA = 2,
  PST_KEY_ED25519 = 3,
} pst_key_type_t;

/* A certificate's key as the choice among certificates for one name sees
 * it (tls.c): the signature schemes it can make (RFC 8446 4.2.3). The
 * order is the preference: ECDSA before RSA (cheaper signatures, smaller
 * handshakes), the smaller curve first. */
typedef enum {
  PST_CERT_KIND_ECDSA_P256 = 0,
  PST_CERT_KIND_ECDSA_P384 = 1,
  PST_CERT_KIND_ECDSA_P521 = 2,
  PST_CERT_KIND_RSA = 3,
  PST_CERT_KIND_ED25519 = 4,
  PST_CERT_KIND_OTHER = 5, /* not servable: its load reported an error */
} pst_cert_kind_t;

/* What one certificate of a chain says, for `postern -t`, logs and the
 * builtin:info page. */
typedef struct {
  char *subject;    /* one-line DN, e.g. "CN=example.test, O=Example" */
  char *issuer;     /* one-line DN of the issuer */
  char *serial_hex; /* serial number, upper-case hex, no separators */
  time_t not_before;
  time_t not_after;
  pst_key_type_t key_type;
  int key_bits;    /* RSA modulus bits, or curve bits (256 for P-256) */
  char *key_desc;  /* "ECDSA P-256", "RSA 2048", "Ed25519" */
  int self_signed; /* subject == issuer and the signature verifies with its own key */
  int is_ca;       /* basicConstraints CA:TRUE */
} pst_cert_info_t;

typedef enum {
  PST_PROBLEM_ERROR = 0,  /* the certificate cannot be served */
  PST_PROBLEM_WARNING = 1 /* served, but the operator should act */
} pst_problem_severity_t;

typedef enum {
  PST_PROBLEM_UNREADABLE = 1,   /* file missing, unreadable, or not PEM */
  PST_PROBLEM_KEY_MISMATCH,     /* the key does not belong to the leaf */
  PST_PROBLEM_EXPIRED,          /* now > not_after, for any chain member */
  PST_PROBLEM_NOT_YET_VALID,    /* now < not_before */
  PST_PROBLEM_SELF_SIGNED,      /* the leaf is self-signed */
  PST_PROBLEM_INCOMPLETE_CHAIN, /* no path to a trust anchor: names the missing issuer */
  PST_PROBLEM_BAD_ORDER,        /* chain[i] is not signed by chain[i+1] */
  PST_PROBLEM_UNTRUSTED,        /* chain complete but its root is not trusted */
  PST_PROBLEM_EXPIRES_SOON,     /* warning: leaf expires within the warn window */
  PST_PROBLEM_NO_NAMES,         /* the leaf has no DNS SAN and no CN */
  PST_PROBLEM_CHAIN_COMPLETED,  /* warning: tls.intermediates supplied a missing issuer */
  PST_PROBLEM_OCSP,             /* the OCSP response: not stapled (warning), revoked or
                                   must-staple without a valid one (error) */
} pst_problem_kind_t;

/* What became of a certificate's OCSP response (src/cert_ocsp.c). */
typedef enum {
  PST_STAPLE_NONE = 0,     /* no response configured (or none in tls.ocsp_dir) */
  PST_STAPLE_GOOD = 1,     /* checked, status good: stapled */
  PST_STAPLE_REJECTED = 2, /* unreadable, stale, for another certificate, badly signed,
                              or status unknown: not stapled (a warning says why) */
  PST_STAPLE_REVOKED = 3,  /* status revoked: an error */
} pst_staple_state_t;

typedef struct {
  pst_problem_severity_t severity;
  pst_problem_kind_t kind;
  char *msg; /* one line: "FILE: what is wrong: how to fix it" */
} pst_problem_t;

/* A loaded certificate with its chain, key and everything checked about it.
 * Immutable once pst_cert_load() returns. */
typedef struct {
  char *cert_path;
  char *key_path;
  /* The files' bytes (PEM), handed to wolfSSL when contexts are built. */
  unsigned char *chain_pem;
  size_t chain_pem_len;
  unsigned char *key_pem;
  size_t key_pem_len;
  /* DNS names this certificate serves: its SAN dNSNames, lower-cased; its CN
   * only when it has no SAN. "*.example.test" wildcards kept as written. */
  char **names;
  size_t n_names;
  /* chain[0] is the leaf, then each certificate of the file in order. */
  pst_cert_info_t *chain;
  size_t chain_len;
  pst_problem_t *problems;
  size_t n_problems;
  size_t n_errors; /* problems with severity PST_PROBLEM_ERROR */
  /* OCSP stapling (RFC 6960, RFC 6066 8, RFC 8446 4.4.2.1): the response
   * file, what its check found, and the DER response handed to wolfSSL in
   * every handshake that asks for it (NULL unless state is GOOD). */
  char *ocsp_path; /* NULL: none configured */
  pst_staple_state_t staple_state;
  unsigned char *staple;
  size_t staple_len;
  time_t staple_this_update;
  time_t staple_next_update; /* 0: the response has no nextUpdate */
  int must_staple;           /* the leaf has the TLS Feature status_request (RFC 7633) */
} pst_cert_t;

/* The problems of a list of certificates grouped by kind, so that a report
 * on thousands of them stays a few lines (cert.h: pst_cert_tally_*). */
typedef struct pst_cert_tally_s pst_cert_tally_t;

/* One line of a tally's report. index: the certificate's position in its
 * list (for a summary line, the first certificate of the kind); summary: 1
 * when the line stands for several certificates, 0 when it is one
 * certificate's own problem message. line is borrowed for the call. */
typedef void (*pst_cert_tally_fn)(void *arg, pst_problem_severity_t sev, size_t index, int summary,
                                  const char *line);

/* Trust anchors used to check that chains are complete. */
typedef struct pst_trust_s pst_trust_t;

#endif
