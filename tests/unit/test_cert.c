/* postern: unit tests for certificate loading and checking (src/cert*.c).
 * The PKI is generated at run time with the openssl CLI in a temporary
 * directory: nothing secret is ever committed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/cert_int.h"
#include "postern/cert.h"
#include "postern/common.h"

static char pki_dir[] = "/tmp/postern-test-cert-XXXXXX";
static pst_trust_t *root_trust; /* ca_file = root.pem */

/* The whole test PKI, one shell script. Every leaf key except rsa.key,
 * wrong.key and ed.key is leaf.key, which keeps generation fast. */
static const char pki_script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "cat > ossl.cnf <<'CNF'\n"
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = unused\n"
    "[ca_ext]\n"
    "basicConstraints = critical,CA:TRUE\n"
    "keyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[leaf_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = $ENV::SAN\n"
    "[cn_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "[ca]\n"
    "default_ca = ca_sect\n"
    "[ca_sect]\n"
    "database = index.txt\n"
    "new_certs_dir = .\n"
    "serial = serial.txt\n"
    "default_md = sha256\n"
    "policy = any_policy\n"
    "unique_subject = no\n"
    "[any_policy]\n"
    "organizationName = optional\n"
    "commonName = supplied\n"
    "CNF\n"
    ": > index.txt\n"
    "echo 1000 > serial.txt\n"
    "export SAN=DNS:unused\n"
    "O='/O=Postern Test'\n" /* O first, CN last, as conf/mkpki.sh: read "CN=.., O=.." */
    "ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\"; }\n"
    "req() { openssl req -new -config ossl.cnf -key \"$2\" -subj \"$3\" -out \"$1.csr\"; }\n"
    "sign() { openssl x509 -req -in \"$1.csr\" -CA \"$2.pem\" -CAkey \"$2.key\" -CAcreateserial "
    "\\\n"
    "  -extfile ossl.cnf -extensions \"$3\" -days \"$4\" -out \"$1.pem\" 2>/dev/null; }\n"
    "ss() { openssl req -x509 -new -config ossl.cnf -key \"$2\" -subj \"$3\" -extensions \"$4\" "
    "\\\n"
    "  -days 3650 -out \"$1.pem\"; }\n"
    "ec root.key; ss root root.key \"$O/CN=Postern Test Root CA\" ca_ext\n"
    "ec inter.key; req inter inter.key \"$O/CN=Postern Test Intermediate CA\"\n"
    "sign inter root ca_ext 1825\n"
    "ec leaf.key; SAN='DNS:example.test,DNS:www.example.test'\n"
    "req leaf leaf.key \"$O/CN=example.test\"; sign leaf inter leaf_ext 90\n"
    "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null\n"
    "SAN=DNS:rsa.example.test; req rsa rsa.key \"$O/CN=rsa.example.test\"\n"
    "sign rsa inter leaf_ext 90\n"
    "SAN='DNS:*.example.test'; req wild leaf.key \"$O/CN=*.example.test\"\n"
    "sign wild inter leaf_ext 90\n"
    "SAN=DNS:soon.example.test; req soon leaf.key \"$O/CN=soon.example.test\"\n"
    "sign soon inter leaf_ext 5\n"
    "req cnonly leaf.key \"$O/CN=CN-Only.Example.Test\"; sign cnonly inter cn_ext 90\n"
    "req nonames leaf.key \"$O\"; sign nonames inter cn_ext 90\n"
    "SAN=DNS:expired.example.test; req expired leaf.key \"$O/CN=expired.example.test\"\n"
    "openssl ca -batch -config ossl.cnf -cert inter.pem -keyfile inter.key -in expired.csr \\\n"
    "  -extfile ossl.cnf -extensions leaf_ext -startdate 20200101000000Z \\\n"
    "  -enddate 20210101000000Z -notext -out expired.pem 2>/dev/null\n"
    "SAN=DNS:self.example.test; ss self leaf.key \"$O/CN=self.example.test\" leaf_ext\n"
    "ec other.key; ss other other.key \"$O/CN=Other Root\" ca_ext\n"
    "SAN=DNS:other.example.test; req otherleaf leaf.key \"$O/CN=other.example.test\"\n"
    "sign otherleaf other leaf_ext 90\n"
    "ec wrong.key\n"
    "openssl pkey -in leaf.key -aes256 -passout pass:secret -out encrypted.key\n"
    "openssl genpkey -algorithm ED25519 -out ed.key\n"
    "SAN=DNS:ed.example.test; req ed ed.key \"$O/CN=ed.example.test\"; sign ed inter leaf_ext 90\n"
    "cat leaf.pem inter.pem > chain.pem\n"
    "cat rsa.pem inter.pem > rsa.chain.pem\n"
    "cat wild.pem inter.pem > wild.chain.pem\n"
    "cat soon.pem inter.pem > soon.chain.pem\n"
    "cat cnonly.pem inter.pem > cnonly.chain.pem\n"
    "cat nonames.pem inter.pem > nonames.chain.pem\n"
    "cat expired.pem inter.pem > expired.chain.pem\n"
    "cat leaf.pem root.pem inter.pem > order.chain.pem\n"
    "cat leaf.pem inter.pem root.pem > full.chain.pem\n"
    "cat leaf.pem inter.pem other.pem > extra.chain.pem\n"
    "cat otherleaf.pem other.pem > other.chain.pem\n"
    "cat ed.pem inter.pem > ed.chain.pem\n"
    "cat leaf.key chain.pem > combined.pem\n"
    "head -c 300 chain.pem > truncated.pem\n"
    "echo 'not a certificate' > garbage.pem\n";

/* Generates the PKI above in pki_dir. Returns 0 or -1. */
static int make_pki(void) {
  if (mkdtemp(pki_dir) == NULL) return -1;
  char script[512], cmd[1200];
  snprintf(script, sizeof(script), "%s/mkpki.sh", pki_dir);
  FILE *f = fopen(script, "w");
  if (f == NULL) return -1;
  fputs(pki_script, f);
  fclose(f);
  snprintf(cmd, sizeof(cmd), "sh %s %s >%s/mkpki.log 2>&1", script, pki_dir, pki_dir);
  if (system(cmd) != 0) {
    snprintf(cmd, sizeof(cmd), "cat %s/mkpki.log >&2", pki_dir);
    if (system(cmd) != 0) return -1;
    return -1;
  }
  return 0;
}

static const char *path(const char *name) {
  static char bufs[4][512];
  static int next;
  char *p = bufs[next++ % 4];
  snprintf(p, sizeof(bufs[0]), "%s/%s", pki_dir, name);
  return p;
}

static int group_setup(void **state) {
  if (make_pki() != 0) return -1;
  char err[512];
  if (pst_trust_load(path("root.pem"), &root_trust, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  pst_trust_free(root_trust);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", pki_dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* Loads chain + key from the PKI directory, against trust, at now. */
static pst_cert_t *load_at(const char *chain, const char *key, const pst_trust_t *trust, time_t now,
                           int expect_rc) {
  pst_cert_t *cert = NULL;
  int rc = pst_cert_load(path(chain), key != NULL ? path(key) : NULL, trust, now, 30, &cert);
  assert_non_null(cert);
  if (rc != expect_rc) {
    for (size_t i = 0; i < cert->n_problems; i++) fprintf(stderr, "  %s\n", cert->problems[i].msg);
    fail_msg("%s: pst_cert_load returned %d, expected %d", chain, rc, expect_rc);
  }
  return cert;
}

static pst_cert_t *load(const char *chain, const char *key, int expect_rc) {
  return load_at(chain, key, root_trust, time(NULL), expect_rc);
}

/* The only problem of the given kind, checked for severity and for each
 * fragment the message must hold. */
static const pst_problem_t *expect_problem(const pst_cert_t *cert, pst_problem_kind_t kind,
                                           pst_problem_severity_t sev, ...) {
  const pst_problem_t *found = NULL;
  for (size_t i = 0; i < cert->n_problems; i++) {
    if (cert->problems[i].kind != kind) continue;
    if (found != NULL) fail_msg("two problems of kind %d", (int)kind);
    found = &cert->problems[i];
  }
  if (found == NULL) {
    for (size_t i = 0; i < cert->n_problems; i++) fprintf(stderr, "  %s\n", cert->problems[i].msg);
    fail_msg("no problem of kind %d", (int)kind);
  }
  assert_int_equal(found->severity, sev);
  assert_null(strchr(found->msg, '\n'));
  va_list ap;
  va_start(ap, sev);
  for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;) {
    if (strstr(found->msg, frag) == NULL) fail_msg("\"%s\" lacks \"%s\"", found->msg, frag);
  }
  va_end(ap);
  return found;
}

static char *print_to_string(const pst_cert_t *cert, time_t now) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  pst_cert_print(cert, now, f);
  fclose(f);
  return text;
}

static size_t count_substr(const char *s, size_t len, const char *needle) {
  size_t n = 0, nl = strlen(needle);
  for (const char *p = s; (p = memmem(p, len - (size_t)(p - s), needle, nl)) != NULL; p += nl) n++;
  return n;
}

static void test_good_ecdsa_chain(void **state) {
  pst_cert_t *cert = load("chain.pem", "leaf.key", 0);
  assert_int_equal(cert->n_problems, 0);
  assert_int_equal(cert->n_errors, 0);
  assert_int_equal(cert->n_names, 2);
  assert_string_equal(cert->names[0], "example.test");
  assert_string_equal(cert->names[1], "www.example.test");
  assert_int_equal(cert->chain_len, 2);

  const pst_cert_info_t *leaf = &cert->chain[0], *inter = &cert->chain[1];
  assert_string_equal(leaf->subject, "CN=example.test, O=Postern Test");
  assert_string_equal(leaf->issuer, "CN=Postern Test Intermediate CA, O=Postern Test");
  assert_string_equal(inter->subject, "CN=Postern Test Intermediate CA, O=Postern Test");
  assert_string_equal(inter->issuer, "CN=Postern Test Root CA, O=Postern Test");
  assert_int_equal(leaf->key_type, PST_KEY_ECDSA);
  assert_int_equal(leaf->key_bits, 256);
  assert_string_equal(leaf->key_desc, "ECDSA P-256");
  assert_false(leaf->is_ca);
  assert_false(leaf->self_signed);
  assert_true(inter->is_ca);
  assert_false(inter->self_signed);
  assert_true(strlen(leaf->serial_hex) >= 2);
  assert_int_equal(strspn(leaf->serial_hex, "0123456789ABCDEF"), strlen(leaf->serial_hex));
  assert_int_equal(leaf->not_after - leaf->not_before, 90 * 86400);
  assert_true(llabs((long long)(leaf->not_before - time(NULL))) < 3600);

  /* The PEM the TLS code loads: the two certificates, and the key. */
  assert_int_equal(
      count_substr((char *)cert->chain_pem, cert->chain_pem_len, "-----BEGIN CERTIFICATE-----"), 2);
  assert_int_equal(strlen((char *)cert->chain_pem), cert->chain_pem_len);
  assert_non_null(strstr((char *)cert->key_pem, "-----BEGIN PRIVATE KEY-----"));
  assert_int_equal(strlen((char *)cert->key_pem), cert->key_pem_len);

  assert_true(pst_cert_covers(cert, "example.test"));
  assert_true(pst_cert_covers(cert, "WWW.Example.Test."));
  assert_false(pst_cert_covers(cert, "api.example.test"));
  assert_false(pst_cert_covers(cert, "test"));
  pst_cert_free(cert);
}

/* The intermediate that ends every chain is verified against the anchors
 * once per store (cert_int.h: memo), and only a positive answer is kept. */
static void test_anchor_memo(void **state) {
  pst_trust_t *trust = NULL;
  char err[512];
  assert_int_equal(pst_trust_load(path("root.pem"), &trust, err, sizeof(err)), 0);
  pst_cert_t *a = load_at("chain.pem", "leaf.key", trust, time(NULL), 0);
  assert_int_equal(trust->n_memo, 1);
  pst_cert_t *b = load_at("wild.chain.pem", "leaf.key", trust, time(NULL), 0);
  assert_int_equal(a->n_errors + b->n_errors, 0);
  assert_int_equal(trust->n_memo, 1); /* the same intermediate: remembered, not verified again */
  /* A chain no anchor signed is still an error, and not remembered. */
  pst_cert_t *c = load_at("other.chain.pem", "leaf.key", trust, time(NULL), PST_ECERT);
  assert_true(c->n_errors > 0);
  assert_int_equal(trust->n_memo, 1);
  pst_cert_free(a);
  pst_cert_free(b);
  pst_cert_free(c);
  pst_trust_free(trust);
}

static void test_print(void **state) {
  time_t now = time(NULL);
  pst_cert_t *cert = load_at("chain.pem", "leaf.key", root_trust, now, 0);
  char *text = print_to_string(cert, now);
  char expect[2048], when[32];
  struct tm tm;
  gmtime_r(&cert->chain[0].not_after, &tm);
  strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
  snprintf(expect, sizeof(expect),
           "certificate %s\n"
           "  names:     example.test, www.example.test\n"
           "  issuer:    CN=Postern Test Intermediate CA, O=Postern Test\n"
           "  key:       ECDSA P-256\n"
           "  not after: %s (90 days left)\n"
           "  chain:     2 certificates (leaf + 1 intermediate)\n"
           "  status:    ok\n",
           path("chain.pem"), when);
  assert_string_equal(text, expect);
  free(text);
  pst_cert_free(cert);

  /* A root sent along is tolerated, and counted as such. */
  cert = load("full.chain.pem", "leaf.key", 0);
  assert_int_equal(cert->n_problems, 0);
  assert_int_equal(cert->chain_len, 3);
  assert_true(cert->chain[2].self_signed);
  text = print_to_string(cert, now);
  assert_non_null(strstr(text, "  chain:     3 certificates (leaf + 1 intermediate + root)\n"));
  free(text);
  pst_cert_free(cert);

  /* Problems are printed, and no "ok". */
  cert = load("expired.chain.pem", "leaf.key", PST_ECERT);
  text = print_to_string(cert, now);
  assert_non_null(strstr(text, "  error: "));
  assert_non_null(strstr(text, "(expired "));
  assert_null(strstr(text, "status:"));
  free(text);
  pst_cert_free(cert);

  /* An unreadable file prints its header and the error only. */
  cert = load("missing.pem", "leaf.key", PST_ECERT);
  text = print_to_string(cert, now);
  snprintf(expect, sizeof(expect),
           "certificate %s\n  error: %s: cannot read: No such file or "
           "directory\n",
           path("missing.pem"), path("missing.pem"));
  assert_string_equal(text, expect);
  free(text);
  pst_cert_free(cert);
}

static void test_rsa(void **state) {
  pst_cert_t *cert = load("rsa.chain.pem", "rsa.key", 0);
  assert_int_equal(cert->n_problems, 0);
  assert_int_equal(cert->chain[0].key_type, PST_KEY_RSA);
  assert_int_equal(cert->chain[0].key_bits, 2048);
  assert_string_equal(cert->chain[0].key_desc, "RSA 2048");
  assert_int_equal(cert->n_names, 1);
  assert_string_equal(cert->names[0], "rsa.example.test");
  pst_cert_free(cert);
}

static void test_wildcard(void **state) {
  pst_cert_t *cert = load("wild.chain.pem", "leaf.key", 0);
  assert_int_equal(cert->n_names, 1);
  assert_string_equal(cert->names[0], "*.example.test");
  assert_true(pst_cert_covers(cert, "a.example.test"));
  assert_true(pst_cert_covers(cert, "WWW.EXAMPLE.TEST"));
  assert_true(pst_cert_covers(cert, "a.example.test."));
  assert_false(pst_cert_covers(cert, "example.test"));
  assert_false(pst_cert_covers(cert, "b.a.example.test"));
  assert_false(pst_cert_covers(cert, ".example.test"));
  assert_false(pst_cert_covers(cert, "*.example.test.x"));
  pst_cert_free(cert);
}

static void test_expired(void **state) {
  pst_cert_t *cert = load("expired.chain.pem", "leaf.key", PST_ECERT);
  assert_int_equal(cert->n_errors, 1);
  expect_problem(cert, PST_PROBLEM_EXPIRED, PST_PROBLEM_ERROR, path("expired.chain.pem"),
                 ": certificate CN=expired.example.test, O=Postern Test expired on "
                 "2021-01-01 00:00:00 UTC (",
                 " days ago): renew it", NULL);
  assert_int_equal(cert->chain[0].not_before, 1577836800); /* 2020-01-01 */
  assert_int_equal(cert->chain[0].not_after, 1609459200);  /* 2021-01-01 */
  pst_cert_free(cert);

  /* The same message, with an exact day count, at a chosen "now". */
  cert = load_at("expired.chain.pem", "leaf.key", root_trust, 1609459200 + 12 * 86400, PST_ECERT);
  expect_problem(cert, PST_PROBLEM_EXPIRED, PST_PROBLEM_ERROR, "(12 days ago)", NULL);
  pst_cert_free(cert);
}

static void test_not_yet_valid(void **state) {
  /* Ten days before the PKI was made, both leaf and intermediate are in
   * the future: each is named. */
  pst_cert_t *cert =
      load_at("chain.pem", "leaf.key", root_trust, time(NULL) - 10 * 86400, PST_ECERT);
  size_t n = 0;
  for (size_t i = 0; i < cert->n_problems; i++) {
    const pst_problem_t *p = &cert->problems[i];
    if (p->kind != PST_PROBLEM_NOT_YET_VALID) continue;
    n++;
    assert_non_null(strstr(p->msg, "is not valid before"));
    assert_non_null(strstr(p->msg, "(in 10 days)"));
  }
  assert_int_equal(n, 2);
  assert_int_equal(cert->n_errors, 2);
  assert_non_null(strstr(cert->problems[0].msg, "certificate CN=example.test, O=Postern Test"));
  assert_non_null(strstr(cert->problems[1].msg,
                         "certificate 2 (CN=Postern Test Intermediate CA, O=Postern Test)"));
  pst_cert_free(cert);
}

static void test_expires_soon(void **state) {
  pst_cert_t *cert = load("soon.chain.pem", "leaf.key", 0);
  assert_int_equal(cert->n_errors, 0);
  expect_problem(cert, PST_PROBLEM_EXPIRES_SOON, PST_PROBLEM_WARNING,
                 ": certificate CN=soon.example.test, O=Postern Test expires on ",
                 " UTC (in 5 days): renew it", NULL);
  char *text = print_to_string(cert, time(NULL));
  assert_non_null(strstr(text, "(5 days left)"));
  assert_non_null(strstr(text, "  warning: "));
  free(text);
  pst_cert_free(cert);

  /* No warning with a shorter window. */
  assert_int_equal(
      pst_cert_load(path("soon.chain.pem"), path("leaf.key"), root_trust, time(NULL), 4, &cert), 0);
  assert_int_equal(cert->n_problems, 0);
  pst_cert_free(cert);
}

static void test_self_signed(void **state) {
  pst_cert_t *cert = load("self.pem", "leaf.key", PST_ECERT);
  assert_int_equal(cert->n_errors, 1);
  expect_problem(cert, PST_PROBLEM_SELF_SIGNED, PST_PROBLEM_ERROR,
                 "certificate CN=self.example.test, O=Postern Test is self-signed",
                 "clients will not trust it", NULL);
  assert_true(cert->chain[0].self_signed);
  pst_cert_free(cert);

  /* Listed in ca_file: the operator chose to trust it, a warning only. */
  pst_trust_t *trust = NULL;
  char err[256];
  assert_int_equal(pst_trust_load(path("self.pem"), &trust, err, sizeof(err)), 0);
  cert = load_at("self.pem", "leaf.key", trust, time(NULL), 0);
  assert_int_equal(cert->n_problems, 1);
  expect_problem(cert, PST_PROBLEM_SELF_SIGNED, PST_PROBLEM_WARNING, "self-signed", NULL);
  pst_cert_free(cert);
  pst_trust_free(trust);
}

static void test_missing_intermediate(void **state) {
  pst_cert_t *cert = load("leaf.pem", "leaf.key", PST_ECERT);
  assert_int_equal(cert->n_errors, 1);
  expect_problem(cert, PST_PROBLEM_INCOMPLETE_CHAIN, PST_PROBLEM_ERROR,
                 "incomplete chain: the issuer \"CN=Postern Test Intermediate CA, O=Postern "
                 "Test\" of CN=example.test, O=Postern Test is missing",
                 "append that intermediate certificate", "after the leaf", NULL);
  assert_null(strstr(cert->problems[0].msg, "set ca_file"));
  pst_cert_free(cert);

  /* Without trust anchors, completeness is not checked. */
  cert = load_at("leaf.pem", "leaf.key", NULL, time(NULL), 0);
  assert_int_equal(cert->n_problems, 0);
  pst_cert_free(cert);
}

static void test_wrong_order(void **state) {
  pst_cert_t *cert = load("order.chain.pem", "leaf.key", PST_ECERT);
  assert_int_equal(cert->n_errors, 1);
  expect_problem(cert, PST_PROBLEM_BAD_ORDER, PST_PROBLEM_ERROR,
                 ": certificate 2 (CN=Postern Test Root CA, O=Postern Test) is not the issuer of "
                 "certificate CN=example.test, O=Postern Test; certificate 3 is",
                 "order the file leaf first, then each issuer", NULL);
  pst_cert_free(cert);

  /* An unrelated certificate after a complete chain. */
  cert = load("extra.chain.pem", "leaf.key", PST_ECERT);
  assert_int_equal(cert->n_errors, 1);
  expect_problem(cert, PST_PROBLEM_BAD_ORDER, PST_PROBLEM_ERROR,
                 "certificate 3 (CN=Other Root, O=Postern Test) is not the issuer of certificate "
                 "2 (CN=Postern Test Intermediate CA, O=Postern Test)",
                 "remove it", NULL);
  pst_cert_free(cert);
}

static void test_untrusted_root(void **state) {
  pst_cert_t *cert = load("other.chain.pem", "leaf.key", PST_ECERT);
  assert_int_equal(cert->n_errors, 1);
  expect_problem(cert, PST_PROBLEM_UNTRUSTED, PST_PROBLEM_ERROR,
                 "the chain ends at CN=Other Root, O=Postern Test, which is not a trusted root",
                 "set ca_file", NULL);
  pst_cert_free(cert);
}

static void test_key_mismatch(void **state) {
  static const char *const keys[] = {"wrong.key", "rsa.key"};
  for (size_t i = 0; i < PST_ARRAY_SIZE(keys); i++) {
    pst_cert_t *cert = load("chain.pem", keys[i], PST_ECERT);
    assert_int_equal(cert->n_errors, 1);
    expect_problem(cert, PST_PROBLEM_KEY_MISMATCH, PST_PROBLEM_ERROR, path(keys[i]),
                   ": private key does not match the certificate in ", path("chain.pem"),
                   "(CN=example.test, O=Postern Test): use the key the certificate was issued for",
                   NULL);
    pst_cert_free(cert);
  }
}

static void test_key_in_chain_file(void **state) {
  pst_cert_t *cert = load("combined.pem", NULL, 0);
  assert_int_equal(cert->n_problems, 0);
  assert_string_equal(cert->key_path, cert->cert_path);
  assert_int_equal(cert->chain_len, 2);
  /* The key is not part of the chain handed to wolfSSL. */
  assert_null(strstr((char *)cert->chain_pem, "PRIVATE KEY"));
  assert_non_null(strstr((char *)cert->key_pem, "PRIVATE KEY"));
  pst_cert_free(cert);
}

static void test_cn_only(void **state) {
  pst_cert_t *cert = load("cnonly.chain.pem", "leaf.key", 0);
  assert_int_equal(cert->n_names, 1);
  assert_string_equal(cert->names[0], "cn-only.example.test");
  expect_problem(cert, PST_PROBLEM_NO_NAMES, PST_PROBLEM_WARNING, "no subjectAltName, only a CN",
                 NULL);
  assert_true(pst_cert_covers(cert, "CN-ONLY.example.test"));
  pst_cert_free(cert);

  cert = load("nonames.chain.pem", "leaf.key", PST_ECERT);
  assert_int_equal(cert->n_names, 0);
  expect_problem(cert, PST_PROBLEM_NO_NAMES, PST_PROBLEM_ERROR,
                 "certificate O=Postern Test has no DNS name", NULL);
  assert_false(pst_cert_covers(cert, "example.test"));
  char *text = print_to_string(cert, time(NULL));
  assert_non_null(strstr(text, "  names:     (none)\n"));
  free(text);
  pst_cert_free(cert);
}

static void test_unreadable(void **state) {
  pst_cert_t *cert = load("missing.pem", "leaf.key", PST_ECERT);
  assert_int_equal(cert->n_problems, 1);
  assert_int_equal(cert->chain_len, 0);
  expect_problem(cert, PST_PROBLEM_UNREADABLE, PST_PROBLEM_ERROR,
                 ": cannot read: No such file or directory", NULL);
  pst_cert_free(cert);

  cert = load("garbage.pem", "leaf.key", PST_ECERT);
  expect_problem(cert, PST_PROBLEM_UNREADABLE, PST_PROBLEM_ERROR,
                 "garbage.pem: no PEM certificate found: the file must hold the leaf certificate "
                 "first, then its intermediates, in PEM",
                 NULL);
  pst_cert_free(cert);

  cert = load("truncated.pem", "leaf.key", PST_ECERT);
  expect_problem(cert, PST_PROBLEM_UNREADABLE, PST_PROBLEM_ERROR, "truncated", NULL);
  pst_cert_free(cert);

  cert = load(".", "leaf.key", PST_ECERT);
  expect_problem(cert, PST_PROBLEM_UNREADABLE, PST_PROBLEM_ERROR, "cannot read: Is a directory",
                 NULL);
  pst_cert_free(cert);

  /* Key problems: the chain is still checked and described. */
  cert = load("chain.pem", "missing.key", PST_ECERT);
  assert_int_equal(cert->n_problems, 1);
  assert_int_equal(cert->chain_len, 2);
  expect_problem(cert, PST_PROBLEM_UNREADABLE, PST_PROBLEM_ERROR, "missing.key: cannot read", NULL);
  pst_cert_free(cert);

  cert = load("chain.pem", "chain.pem", PST_ECERT);
  expect_problem(cert, PST_PROBLEM_UNREADABLE, PST_PROBLEM_ERROR,
                 "chain.pem: no PEM private key found", NULL);
  pst_cert_free(cert);

  cert = load("chain.pem", "encrypted.key", PST_ECERT);
  expect_problem(cert, PST_PROBLEM_UNREADABLE, PST_PROBLEM_ERROR,
                 "encrypted.key: the private key is encrypted", NULL);
  pst_cert_free(cert);

  /* Ed25519: this wolfSSL build cannot parse such certificates. */
  cert = load("ed.chain.pem", "ed.key", PST_ECERT);
  expect_problem(cert, PST_PROBLEM_UNREADABLE, PST_PROBLEM_ERROR, "certificate 1 cannot be parsed",
                 "Ed25519", NULL);
  pst_cert_free(cert);
}

static void test_trust_load(void **state) {
  pst_trust_t *trust = (pst_trust_t *)1;
  char err[512];
  assert_int_equal(pst_trust_load(path("nope.pem"), &trust, err, sizeof(err)), PST_ECERT);
  assert_null(trust);
  assert_non_null(strstr(err, "nope.pem: cannot read: No such file or directory"));

  assert_int_equal(pst_trust_load(path("garbage.pem"), &trust, err, sizeof(err)), PST_ECERT);
  assert_non_null(strstr(err, "garbage.pem: no PEM certificate found"));

  assert_int_equal(pst_trust_load(path("leaf.key"), &trust, err, sizeof(err)), PST_ECERT);
  assert_int_equal(pst_trust_load(path("truncated.pem"), &trust, NULL, 0), PST_ECERT);

  /* Several anchors in one file: the chain reaches the second. */
  assert_int_equal(pst_trust_load(path("other.chain.pem"), &trust, err, sizeof(err)), 0);
  pst_cert_t *cert = load_at("other.chain.pem", "leaf.key", trust, time(NULL), 0);
  assert_int_equal(cert->n_problems, 0);
  pst_cert_free(cert);
  pst_trust_free(trust);

  /* The system store, when there is one: the test root is not in it. */
  if (access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0) {
    assert_int_equal(pst_trust_load(NULL, &trust, err, sizeof(err)), 0);
    cert = load_at("chain.pem", "leaf.key", trust, time(NULL), PST_ECERT);
    expect_problem(cert, PST_PROBLEM_INCOMPLETE_CHAIN, PST_PROBLEM_ERROR,
                   "the issuer \"CN=Postern Test Root CA, O=Postern Test\"", "set ca_file", NULL);
    pst_cert_free(cert);
    pst_trust_free(trust);
  }
  pst_trust_free(NULL);
  pst_cert_free(NULL);
}

/* A tally of many certificates (cert.h): a kind found in at most
 * PST_CERT_TALLY_EACH certificates keeps each message, a more frequent one
 * becomes one counted line naming the first three files; errors first. */
typedef struct {
  int lines, summaries;
  char text[8][600];
  size_t index[8];
  pst_problem_severity_t sev[8];
} tally_out_t;

static void tally_collect(void *arg, pst_problem_severity_t sev, size_t index, int summary,
                          const char *line) {
  tally_out_t *o = arg;
  assert_true(o->lines < 8);
  snprintf(o->text[o->lines], sizeof(o->text[0]), "%s", line);
  o->index[o->lines] = index;
  o->sev[o->lines++] = sev;
  o->summaries += summary;
}

static void test_tally(void **state) {
  (void)state;
  enum { N = 1200 };
  static pst_cert_t certs[N];
  static pst_problem_t problems[N];
  static char paths[N][32];
  pst_cert_tally_t *t = pst_cert_tally_new();
  assert_non_null(t);
  for (size_t i = 0; i < N; i++) {
    memset(&certs[i], 0, sizeof(certs[i]));
    snprintf(paths[i], sizeof(paths[i]), "c%zu.pem", i);
    certs[i].cert_path = paths[i];
    if (i == 5 || i == 900) { /* 2 expired */
      problems[i] = (pst_problem_t){PST_PROBLEM_ERROR, PST_PROBLEM_EXPIRED, paths[i]};
      certs[i].n_errors = 1;
    } else if (i % 100 != 7 && i != 1) { /* 1,185 expire soon */
      problems[i] = (pst_problem_t){PST_PROBLEM_WARNING, PST_PROBLEM_EXPIRES_SOON, "soon"};
    } else { /* 13 without problems */
      assert_int_equal(pst_cert_tally_add(t, i, &certs[i]), 0);
      continue;
    }
    certs[i].problems = &problems[i];
    certs[i].n_problems = 1;
    assert_int_equal(pst_cert_tally_add(t, i, &certs[i]), 0);
  }
  size_t n, errs, warns;
  pst_cert_tally_counts(t, &n, &errs, &warns);
  assert_int_equal(n, N);
  assert_int_equal(errs, 2);
  assert_int_equal(warns, 1185);
  tally_out_t o = {0};
  pst_cert_tally_report(t, 30, "HINT", tally_collect, &o);
  assert_int_equal(o.lines, 3);
  assert_int_equal(o.summaries, 1);
  assert_string_equal(o.text[0], "c5.pem");
  assert_string_equal(o.text[1], "c900.pem");
  assert_int_equal(o.sev[0], PST_PROBLEM_ERROR);
  assert_int_equal(o.index[1], 900);
  assert_string_equal(o.text[2],
                      "1,185 certificates expire within 30 days (first: c0.pem, c2.pem, c3.pem, "
                      "...; HINT)");
  assert_int_equal(o.sev[2], PST_PROBLEM_WARNING);
  assert_int_equal(o.index[2], 0);
  pst_cert_tally_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good_ecdsa_chain),
      cmocka_unit_test(test_anchor_memo),
      cmocka_unit_test(test_print),
      cmocka_unit_test(test_rsa),
      cmocka_unit_test(test_wildcard),
      cmocka_unit_test(test_expired),
      cmocka_unit_test(test_not_yet_valid),
      cmocka_unit_test(test_expires_soon),
      cmocka_unit_test(test_self_signed),
      cmocka_unit_test(test_missing_intermediate),
      cmocka_unit_test(test_wrong_order),
      cmocka_unit_test(test_untrusted_root),
      cmocka_unit_test(test_key_mismatch),
      cmocka_unit_test(test_key_in_chain_file),
      cmocka_unit_test(test_cn_only),
      cmocka_unit_test(test_unreadable),
      cmocka_unit_test(test_trust_load),
      cmocka_unit_test(test_tally),
  };
  return cmocka_run_group_tests_name("cert", tests, group_setup, group_teardown);
}
