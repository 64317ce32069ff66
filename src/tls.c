/* postern: wolfSSL contexts for a listener, and the SNI and ALPN callbacks
 * that run inside the handshake. */
#include "postern/tls.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/openssl/ssl.h>
/* For pst_tls_conn_trim only: what wolfSSL keeps after a handshake has no
 * public call that frees it (docs/wolfssl.md). */
#include <wolfssl/internal.h>

#include "postern/common.h"
#include "postern/log.h"
#include "postern/gen-t.h"
#include "postern/hello.h"
#include "postern/sni.h"
#include "postern/ticket.h"
#include "postern/tls-t.h"

/* AEAD suites only (TLS 1.3 has nothing else; for TLS 1.2, ECDHE with
 * AES-GCM or ChaCha20-Poly1305), in server preference order: AES-128-GCM
 * first, as it is the fastest with AES-NI and as strong as needed. */
static const char tls_ciphers[] =
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/* wolfSSL's names of the groups tls.groups may hold (config_tls.c), by
 * IANA code (RFC 8446 4.2.7). */
static const char *tls_group_wolf_name(unsigned code) {
  switch (code) {
    case WOLFSSL_ECC_X25519: return "X25519";
    case WOLFSSL_ECC_SECP256R1: return "P-256";
    case WOLFSSL_ECC_SECP384R1: return "P-384";
    case WOLFSSL_ECC_SECP521R1: return "P-521";
    default: return NULL;
  }
}

/* ex_data slot holding the index of the certificate served (+1, so that 0
 * means "the default"). */
#define TLS_EX_CERT 1
/* ex_data slot set when the SNI callback refused the name: why
 * (PST_TLS_SNI_UNKNOWN, PST_TLS_SNI_MALFORMED or PST_TLS_NO_CERT). */
#define TLS_EX_REJECTED 2
/* ex_data slot holding what the ClientHello accepts for the server's
 * signature (TLS_CAPS_* bits), set by pst_tls_sni_precheck before wolfSSL
 * reads the ClientHello; 0 when unknown. An ex_data slot rather than a
 * connection field: no connection grows for it. */
#define TLS_EX_CAPS 3
/* ex_data slot holding the connection's pst_client_cert_t (tls-t.h), made
 * by tls_on_client_cert; NULL without a verified client certificate. */
#define TLS_EX_CLIENT_CERT 4

/* TLS_EX_CAPS bits: PST_HELLO_SIG_* in the low byte, PST_HELLO_SUITE_*
 * in the next, then these. */
#define TLS_CAPS_SUITE_SHIFT 8
#define TLS_CAPS_HAS_SIGALGS (1u << 16)
#define TLS_CAPS_TLS13 (1u << 17)
#define TLS_CAPS_KNOWN (1u << 18)
#define TLS_CAPS_HAS_GROUPS (1u << 19)
#define TLS_CAPS_GROUP_SHIFT 20 /* PST_HELLO_GROUP_* from here */

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_init_rc;

static void tls_init_once(void) { tls_init_rc = wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : PST_ETLS; }

int pst_tls_global_init(void) {
  pthread_once(&tls_once, tls_init_once);
  return tls_init_rc;
}

void pst_tls_global_cleanup(void) {
  pst_tls_thread_cleanup();
  wolfSSL_Cleanup();
}

void pst_tls_thread_cleanup(void) { wolfSSL_FreeThreadRng(); }

static WOLFSSL_METHOD *tls_method(unsigned versions) {
  if (versions == PST_TLS13) return wolfTLSv1_3_server_method();
  if (versions == PST_TLS12) return wolfTLSv1_2_server_method();
  return wolfSSLv23_server_method();
}

/* RFC 6066 3: "HostName contains the fully qualified DNS hostname of the
 * server ... represented as a byte string using ASCII encoding without a
 * trailing dot". Anything else is refused before the name is looked up,
 * routed or logged: a NUL would make two names of one (wolfSSL reports the
 * part before it, the ClientHello holds the whole), and CR, LF or ESC would
 * reach the logs. Accepted: 1 to 253 bytes of labels of 1 to 63
 * letters, digits, '-' or '_' (the characters the configuration accepts in
 * names, sni.c: underscores appear in internal names) separated by single
 * dots. A trailing dot is refused as the RFC says, rather than stripped:
 * "a.test." and "a.test" would otherwise be two spellings of one name for
 * routes and for the Host checks made against the SNI. */
static int tls_sni_well_formed(const unsigned char *s, size_t len) {
  if (len == 0 || len > 253) return 0;
  size_t label = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = s[i];
    if (c == '.') {
      if (label == 0) return 0; /* empty label: leading or double dot */
      label = 0;
      continue;
    }
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '_';
    if (!ok || ++label > 63) return 0;
  }
  return label > 0; /* no trailing dot */
}

/* Whether a certificate of kind k can sign this handshake, from what the
 * ClientHello offered (caps, TLS_CAPS_*) and the version it will get. */
static int tls_kind_usable(pst_cert_kind_t k, unsigned caps, int tls13) {
  unsigned sig = caps & 0xffu;
  unsigned suites = (caps >> TLS_CAPS_SUITE_SHIFT) & 0xffu;
  if (tls13) {
    /* RFC 8446 4.2.3: TLS 1.3 ECDSA schemes name the curve; RSA keys sign
     * with RSASSA-PSS (rsa_pss_rsae_*), never PKCS#1 v1.5. */
    switch (k) {
      case PST_CERT_KIND_ECDSA_P256: return (sig & PST_HELLO_SIG_ECDSA_P256) != 0;
      case PST_CERT_KIND_ECDSA_P384: return (sig & PST_HELLO_SIG_ECDSA_P384) != 0;
      case PST_CERT_KIND_ECDSA_P521: return (sig & PST_HELLO_SIG_ECDSA_P521) != 0;
      case PST_CERT_KIND_RSA: return (sig & PST_HELLO_SIG_RSA_PSS) != 0;
      case PST_CERT_KIND_ED25519: return (sig & PST_HELLO_SIG_ED25519) != 0;
      case PST_CERT_KIND_OTHER: return 0;
    }
    return 0;
  }
  /* TLS 1.2: the cipher suite names the authentication (RFC 5289 3.2), and
   * signature_algorithms, when sent, the schemes (RFC 5246 7.4.1.4.1; a
   * client without it accepts SHA-1 with the suite's algorithm, and
   * wolfSSL then uses its defaults). ECDSA in TLS 1.2 takes any hash with
   * any curve; RSA may be PSS or PKCS#1 v1.5, which wolfSSL picks. */
  int any = !(caps & TLS_CAPS_HAS_SIGALGS);
  unsigned ecdsa = PST_HELLO_SIG_ECDSA_P256 | PST_HELLO_SIG_ECDSA_P384 | PST_HELLO_SIG_ECDSA_P521;
  /* RFC 8422 5.1, 5.3: an ECDSA certificate's curve must be one of the
   * client's supported_groups, when it sent them. */
  unsigned groups = (caps >> TLS_CAPS_GROUP_SHIFT) & 0x7u;
  int any_curve = !(caps & TLS_CAPS_HAS_GROUPS);
  switch (k) {
    case PST_CERT_KIND_ECDSA_P256:
    case PST_CERT_KIND_ECDSA_P384:
    case PST_CERT_KIND_ECDSA_P521: {
      unsigned curve = k == PST_CERT_KIND_ECDSA_P256   ? PST_HELLO_GROUP_P256
                       : k == PST_CERT_KIND_ECDSA_P384 ? PST_HELLO_GROUP_P384
                                                       : PST_HELLO_GROUP_P521;
      return (suites & PST_HELLO_SUITE_ECDSA) && (any || (sig & ecdsa)) &&
             (any_curve || (groups & curve));
    }
    case PST_CERT_KIND_RSA:
      return (suites & PST_HELLO_SUITE_RSA) &&
             (any || (sig & (PST_HELLO_SIG_RSA_PSS | PST_HELLO_SIG_RSA_PKCS1)));
    case PST_CERT_KIND_ED25519:
      return (suites & PST_HELLO_SUITE_ECDSA) && (sig & PST_HELLO_SIG_ED25519);
    case PST_CERT_KIND_OTHER: return 0;
  }
  return 0;
}

/* The certificate of set to serve: the first (set order: exact names, then
 * wildcard, each ECDSA before RSA) whose signature the client accepts.
 * Returns its index into gl->certs, or -1 when none is usable. Without
 * caps (a ClientHello the scanner did not read), the first: wolfSSL then
 * judges. */
static int tls_pick_cert(const pst_gen_listener_t *gl, const pst_cert_set_t *set, unsigned caps) {
  assert(set->n > 0);
  if (!(caps & TLS_CAPS_KNOWN)) return set->cert[0];
  /* The version wolfSSL will negotiate: TLS 1.3 when both offer it. A
   * client offering neither version the listener takes is refused by
   * wolfSSL before this callback runs. */
  int tls13 = (gl->conf->versions & PST_TLS13) && (caps & TLS_CAPS_TLS13);
  if (!tls13 && !(gl->conf->versions & PST_TLS12)) return set->cert[0];
  for (unsigned i = 0; i < set->n; i++) {
    if (tls_kind_usable((pst_cert_kind_t)set->kind[i], caps, tls13)) return set->cert[i];
  }
  return -1;
}

/* RFC 6066 3: pick the certificate by server name, then by what the client
 * can verify (RFC 8446 4.2.3). Runs inside the ClientHello, before ticket
 * decryption, ALPN, the cipher suite and the signature scheme are chosen
 * (wolfSSL 5.5.4: SNI_Callback in DoTls13ClientHello and DoClientHello
 * comes before MatchSuite and PickHashSigAlgo).
 *
 * The chosen certificate is installed with wolfSSL_set_SSL_CTX on one
 * context per certificate, built at load: it swaps certificate, chain,
 * key, key type and size and the haveRSA/haveECDSAsig flags that
 * MatchSuite (TLS 1.2 suite authentication) and PickHashSigAlgo (the
 * scheme, from the key type) read, and nothing else; the connection keeps
 * the listener context's suites, groups and callbacks. wolfSSL_use_
 * PrivateKey_buffer on the WOLFSSL object would instead decode and copy
 * the key and chain into every connection that is not served the default
 * (a few KiB each, and a DER decode per handshake), where the context
 * shares them. */
static int tls_on_sni(WOLFSSL *ssl, int *ad, void *arg) {
  const pst_gen_listener_t *gl = arg;
  void *name = NULL;
  unsigned short len = wolfSSL_SNI_GetRequest(ssl, WOLFSSL_SNI_HOST_NAME, &name);
  if (name == NULL) len = 0;
  if (pst_tls_sni_rejected(ssl) == PST_TLS_SNI_MALFORMED ||
      (len > 0 && !tls_sni_well_formed(name, len))) {
    /* illegal_parameter, not unrecognized_name: the field is malformed
     * (RFC 8446 6.2: "a field in the handshake was incorrectly formatted"),
     * which says more than "no such name" and which no client should
     * answer by retrying with the same name. */
    wolfSSL_set_ex_data(ssl, TLS_EX_REJECTED, (void *)(intptr_t)PST_TLS_SNI_MALFORMED);
    *ad = illegal_parameter;
    return fatal_return;
  }
  int s = pst_sni_select(gl->sni, name, len, gl->default_set,
                         gl->conf->unknown_sni == PST_UNKNOWN_SNI_REJECT);
  if (s == PST_SNI_REJECT) {
    wolfSSL_set_ex_data(ssl, TLS_EX_REJECTED, (void *)(intptr_t)PST_TLS_SNI_UNKNOWN);
    *ad = unrecognized_name;
    return fatal_return;
  }
  assert(s >= 0 && (size_t)s < gl->n_sets);
  unsigned caps = (unsigned)(uintptr_t)wolfSSL_get_ex_data(ssl, TLS_EX_CAPS);
  int idx = tls_pick_cert(gl, &gl->sets[s], caps);
  if (idx < 0) {
    /* RFC 8446 4.2.3 (and 4.1.1): no certificate the client can verify. */
    wolfSSL_set_ex_data(ssl, TLS_EX_REJECTED, (void *)(intptr_t)PST_TLS_NO_CERT);
    *ad = handshake_failure;
    return fatal_return;
  }
  if (idx == gl->default_cert) return 0; /* the listener context holds it */
  wolfSSL_set_ex_data(ssl, TLS_EX_CERT, (void *)(intptr_t)(idx + 1));
  if (wolfSSL_set_SSL_CTX(ssl, gl->cert_ctx[idx]) == NULL) {
    *ad = internal_error;
    return fatal_return;
  }
  return 0;
}

/* Reads what the ClientHello accepts for the server's signature into the
 * TLS_EX_CAPS slot (0 when the scanner cannot read it). */
static void tls_note_caps(WOLFSSL *ssl, const char *hello, size_t len) {
  pst_hello_t h;
  unsigned caps = 0;
  if (pst_hello_scan((const uint8_t *)hello, len, &h) == 0) {
    caps = TLS_CAPS_KNOWN | (h.sigalgs & 0xffu) | (h.suites & 0xffu) << TLS_CAPS_SUITE_SHIFT;
    if (h.has_sigalgs) caps |= TLS_CAPS_HAS_SIGALGS;
    if (h.tls13) caps |= TLS_CAPS_TLS13;
    if (h.has_groups) caps |= TLS_CAPS_HAS_GROUPS | (h.groups & 0x7u) << TLS_CAPS_GROUP_SHIFT;
  }
  wolfSSL_set_ex_data(ssl, TLS_EX_CAPS, (void *)(uintptr_t)caps);
}

int pst_tls_sni_precheck(WOLFSSL *ssl, const char *hello, size_t len,
                         unsigned char name[PST_TLS_SNI_BUF], size_t *name_len) {
  unsigned int n = PST_TLS_SNI_BUF;
  if (len > UINT32_MAX) return 0;
  tls_note_caps(ssl, hello, len);
  int rc = wolfSSL_SNI_GetFromBuffer((const unsigned char *)hello, (unsigned int)len,
                                     WOLFSSL_SNI_HOST_NAME, name, &n);
  if (rc != WOLFSSL_SUCCESS || n == 0) return 0; /* no name, or unread: the callback decides */
  /* A name that fills the buffer is longer than 253 bytes: malformed. */
  if (!tls_sni_well_formed(name, n)) {
    wolfSSL_set_ex_data(ssl, TLS_EX_REJECTED, (void *)(intptr_t)PST_TLS_SNI_MALFORMED);
  }
  *name_len = n;
  return 1;
}

/* RFC 7301 3.2: the server picks; postern takes the first protocol of its
 * own list that the client offers. No overlap: no ALPN at all (no alert), so
 * that clients which merely advertise protocols still connect. */
static int tls_on_alpn(WOLFSSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  const pst_gen_listener_t *gl = arg;
  /* The protocols the route allows (config-t.h: alpn_wire); the SNI
   * callback has run, so the route is known. */
  void *name = NULL;
  unsigned short name_len = wolfSSL_SNI_GetRequest(ssl, WOLFSSL_SNI_HOST_NAME, &name);
  const pst_backend_conf_t *route = pst_sni_route(gl->routes, gl->conf, name, name_len);
  const unsigned char *ours = route->alpn_wire;
  size_t ours_len = route->alpn_wire_len;
  for (size_t i = 0; i < ours_len; i += 1 + (size_t)ours[i]) {
    unsigned char n = ours[i];
    for (unsigned int j = 0; j < inlen; j += 1u + in[j]) {
      if (j + 1u + in[j] > inlen) break; /* malformed list: stop */
      if (in[j] == n && memcmp(in + j + 1, ours + i + 1, n) == 0) {
        *out = in + j + 1;
        *outlen = n;
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

/* ---- client certificates (tls.client_auth) ---- */

/* ":<base64 of n bytes>:" (RFC 9440 2.1: a Byte Sequence, RFC 8941 3.3.5,
 * base64 with padding, RFC 4648 4), appended to out at *len; out has room
 * (tls_b64_size). */
static void tls_b64_field(const unsigned char *p, size_t n, char *out, size_t *len) {
  char *o = out + *len;
  *o++ = ':';
  o += pst_base64_encode(p, n, o);
  *o++ = ':';
  *o = '\0';
  *len = (size_t)(o - out);
}

static size_t tls_b64_size(size_t n) { return pst_base64_len(n) + 2; }

/* "2027-03-03 15:29:24 UTC" from an X.509 time (RFC 5280 4.1.2.5:
 * UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ). */
static char *tls_time_text(const WOLFSSL_ASN1_TIME *t) {
  char out[32] = "?";
  if (t != NULL && (t->length == 13 || t->length == 15) && t->data[t->length - 1] == 'Z') {
    const char *d = (const char *)t->data;
    char year[5];
    if (t->length == 13) {
      snprintf(year, sizeof(year), "%s%.2s", d[0] >= '5' ? "19" : "20", d);
    } else {
      snprintf(year, sizeof(year), "%.4s", d);
    }
    d += t->length - 11;
    snprintf(out, sizeof(out), "%s-%.2s-%.2s %.2s:%.2s:%.2s UTC", year, d, d + 2, d + 4, d + 6,
             d + 8);
  }
  return strdup(out);
}

/* The longest Client-Cert-Chain field value forwarded (RFC 9440 2). */
#define TLS_CLIENT_CHAIN_MAX (16 * 1024)

static void tls_client_cert_free(pst_client_cert_t *cc) {
  if (cc == NULL) return;
  free(cc->subject);
  free(cc->issuer);
  free(cc->cn);
  free(cc->not_after);
  free(cc->header);
  free(cc->chain_header);
  free(cc);
}

/* The RFC 9440 field values from the certificates the client sent (leaf
 * first). Returns 0 or -ENOMEM. */
static int tls_client_cert_headers(pst_client_cert_t *cc, const WOLFSSL_BUFFER_INFO *certs, int n) {
  size_t len = 0;
  cc->header = malloc(tls_b64_size(certs[0].length) + 1);
  if (cc->header == NULL) return -ENOMEM;
  tls_b64_field(certs[0].buffer, certs[0].length, cc->header, &len);
  if (n < 2) return 0;
  size_t size = 1;
  for (int i = 1; i < n; i++) size += tls_b64_size(certs[i].length) + 2;
  if (size > TLS_CLIENT_CHAIN_MAX) {
    /* A long chain would make a request head backends refuse (nginx: 8 KiB
     * per field): the chain is left out, the leaf still goes. */
    static atomic_int warned;
    if (atomic_exchange_explicit(&warned, 1, memory_order_relaxed) == 0) {
      pst_log_warn(
          "a client certificate chain of %zu bytes in Client-Cert-Chain is over %d: "
          "left out (logged once)",
          size, TLS_CLIENT_CHAIN_MAX);
    }
    return 0;
  }
  cc->chain_header = malloc(size);
  if (cc->chain_header == NULL) return -ENOMEM;
  len = 0;
  for (int i = 1; i < n; i++) {
    if (i > 1) {
      memcpy(cc->chain_header + len, ", ", 2);
      len += 2;
    }
    tls_b64_field(certs[i].buffer, certs[i].length, cc->chain_header, &len);
  }
  return 0;
}

/* wolfSSL's verify callback. With WOLFSSL_ALWAYS_VERIFY_CB (set by
 * opensslextra) it runs for the client's leaf whether or not the chain
 * verified, and for any other certificate that failed. The leaf's verdict
 * (preverify) is returned unchanged: wolfSSL alone decides (signatures up to
 * ca_file's anchors, dates), and sends bad_certificate, unknown_ca or
 * certificate_expired (DoCertFatalAlert).
 *
 * postern's wolfSSL has no KEEP_PEER_CERT (.ci/wolfssl-no-peer-cert.patch:
 * 3.8 KiB in every connection), so wolfSSL_get_peer_certificate does not
 * exist: what the connection keeps of the certificate is taken here, from
 * the chain the client sent (store->certs, leaf first), and only for a
 * certificate that verified. */
static int tls_on_client_cert(int preverify, WOLFSSL_X509_STORE_CTX *store) {
  if (!preverify || store->error_depth != 0 || store->totalCerts < 1) return preverify;
  WOLFSSL *ssl =
      wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx());
  const pst_gen_listener_t *gl = store->userCtx;
  WOLFSSL_X509 *leaf = wolfSSL_X509_STORE_CTX_get_current_cert(store);
  if (ssl == NULL || gl == NULL || leaf == NULL) return 0;
  /* Called once per handshake; a second call (never seen) replaces. */
  tls_client_cert_free(wolfSSL_get_ex_data(ssl, TLS_EX_CLIENT_CERT));
  wolfSSL_set_ex_data(ssl, TLS_EX_CLIENT_CERT, NULL);
  pst_client_cert_t *cc = calloc(1, sizeof(*cc));
  if (cc == NULL) return 0;
  /* Into a buffer of ours, then copied: the strings are freed with free(),
   * whatever allocator wolfSSL was built with. A longer name is cut. */
  char dn[512];
  if (wolfSSL_X509_NAME_oneline(wolfSSL_X509_get_subject_name(leaf), dn, sizeof(dn)) != NULL) {
    cc->subject = strdup(dn);
  }
  if (wolfSSL_X509_NAME_oneline(wolfSSL_X509_get_issuer_name(leaf), dn, sizeof(dn)) != NULL) {
    cc->issuer = strdup(dn);
  }
  int cn_len = wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(leaf),
                                                 NID_commonName, dn, (int)sizeof(dn));
  if (cn_len > 0) cc->cn = strndup(dn, (size_t)cn_len); /* a subject may have none */
  cc->not_after = tls_time_text(wolfSSL_X509_get_notAfter(leaf));
  int ok = cc->subject != NULL && cc->issuer != NULL && cc->not_after != NULL;
  if (ok && gl->conf->client_cert_forward) {
    ok = tls_client_cert_headers(cc, store->certs, store->totalCerts) == 0;
  }
  if (!ok || wolfSSL_set_ex_data(ssl, TLS_EX_CLIENT_CERT, cc) != WOLFSSL_SUCCESS) {
    tls_client_cert_free(cc);
    return 0; /* out of memory: fail the handshake rather than lose the identity */
  }
  return preverify;
}

/* Client certificates on one context: the CA certificates to verify them
 * against, on every context (wolfSSL verifies with the certificate store
 * of the context the SNI callback switched to), and the listener as the
 * verify callback's argument. */
static int tls_client_ca(WOLFSSL_CTX *ctx, const pst_gen_listener_t *gl) {
  if (gl->conf->client_auth == PST_CLIENT_AUTH_NONE) return 0;
  if (wolfSSL_CTX_load_verify_buffer(ctx, gl->client_ca_pem, (long)gl->client_ca_pem_len,
                                     WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
    return PST_ETLS;
  }
  wolfSSL_CTX_SetCertCbCtx(ctx, (void *)gl);
  return 0;
}

const pst_client_cert_t *pst_tls_client_cert(WOLFSSL *ssl) {
  return wolfSSL_get_ex_data(ssl, TLS_EX_CLIENT_CERT);
}

void pst_tls_conn_release(WOLFSSL *ssl) {
  tls_client_cert_free(wolfSSL_get_ex_data(ssl, TLS_EX_CLIENT_CERT));
  wolfSSL_set_ex_data(ssl, TLS_EX_CLIENT_CERT, NULL);
}

int pst_tls_io_take(const char **ptr, size_t *len, char *buf, int sz) {
  if (*len == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
  size_t n = (size_t)sz < *len ? (size_t)sz : *len;
  memcpy(buf, *ptr, n);
  *ptr += n;
  *len -= n;
  return (int)n;
}

void pst_tls_conn_trim(WOLFSSL *ssl) {
  /* TLS 1.3 only: a TLS 1.2 server's ClientHello after the handshake (a
   * renegotiation attempt) is matched against the suites; TLS 1.3 refuses
   * one as out of order before looking at anything (RFC 8446 4.1.2). */
  if (wolfSSL_version(ssl) != TLS1_3_VERSION || !wolfSSL_is_init_finished(ssl)) return;
  /* The extensions the ClientHello brought and the answers to them (SNI,
   * ALPN, key share, ...): conn.c has copied what it needs (name, protocol)
   * and a KeyUpdate or alert uses none of them. */
  TLSX_FreeAll(ssl->extensions, ssl->heap);
  ssl->extensions = NULL;
  /* The suites offered and the signature schemes: kept by wolfSSL for the
   * OpenSSL layer's SSL_get_ciphers, which postern never calls after the
   * handshake (the negotiated suite is in ssl->options). */
  FreeSuites(ssl);
  /* Peer verification parameters (host name, IP): only read while a peer
   * certificate is verified, during the handshake. */
  XFREE(ssl->param, ssl->heap, DYNAMIC_TYPE_OPENSSL);
  ssl->param = NULL;
}

/* OCSP stapling (RFC 6066 8, RFC 8446 4.4.2.1): the response checked at
 * load (src/cert_ocsp.c) for the certificate served, or none. wolfSSL
 * calls this when it writes the CertificateStatus (TLS 1.2) or the
 * Certificate (TLS 1.3), after the SNI callback chose the certificate,
 * and sends the bytes as given (wolfssl-ocsp-static-staple.patch: without
 * it, 5.5.4 re-verified them against the context's certificate store,
 * which is also where client certificates are verified, and made the TLS
 * 1.3 response before the SNI callback ran). The buffer is the
 * generation's, which the connection holds; wolfSSL copies it. wolfSSL
 * never fetches anything itself once a status callback is set. */
static int tls_on_status(WOLFSSL *ssl, void *arg) {
  const pst_gen_listener_t *gl = arg;
  const pst_cert_t *cert = gl->certs[pst_tls_cert_index(gl, ssl)];
  if (cert->staple == NULL || cert->staple_len == 0) return SSL_TLSEXT_ERR_NOACK;
  if (wolfSSL_set_tlsext_status_ocsp_resp(ssl, cert->staple, (int)cert->staple_len) !=
      WOLFSSL_SUCCESS)
    return SSL_TLSEXT_ERR_NOACK;
  return SSL_TLSEXT_ERR_OK;
}

/* Stapling on one context, when a certificate of the listener has a
 * response: the ClientHello's status_request is read with the listener
 * context, the response made with the chosen certificate's. */
static int tls_stapling(WOLFSSL_CTX *ctx, const pst_gen_listener_t *gl, int any) {
  if (!any) return 0;
  if (wolfSSL_CTX_set_tlsext_status_cb(ctx, tls_on_status) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_set_tlsext_status_arg(ctx, (void *)gl) != WOLFSSL_SUCCESS)
    return PST_ETLS;
  return 0;
}

static WOLFSSL_CTX *tls_ctx_new(const pst_listener_conf_t *lc, const pst_cert_t *cert, char *err,
                                size_t errlen) {
  WOLFSSL_CTX *ctx = wolfSSL_CTX_new(tls_method(lc->versions));
  if (ctx == NULL) {
    snprintf(err, errlen, "cannot create a TLS context");
    return NULL;
  }
  if (wolfSSL_CTX_use_certificate_chain_buffer(ctx, cert->chain_pem, (long)cert->chain_pem_len) !=
      WOLFSSL_SUCCESS) {
    snprintf(err, errlen, "%s: wolfSSL rejected the certificate chain", cert->cert_path);
    goto fail;
  }
  if (wolfSSL_CTX_use_PrivateKey_buffer(ctx, cert->key_pem, (long)cert->key_pem_len,
                                        WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
    snprintf(err, errlen, "%s: wolfSSL rejected the private key", cert->key_path);
    goto fail;
  }
  return ctx;
fail:
  wolfSSL_CTX_free(ctx);
  return NULL;
}

/* 0-RTT and TLS 1.3 tickets, on the context connections are created from.
 * wolfSSL's default max_early_data is 4096: every ticket would offer 0-RTT.
 * With early_data: accept, this is the most early data accepted; with reject,
 * 0 (the connection raises it to skip early data a client sends anyway, see
 * early.c). Tickets are sent by postern after the handshake (pst_early_finish)
 * rather than by wolfSSL_accept, so that the max_early_data they advertise
 * is the policy's, not the one of the ticket the client resumed with. */
static int tls_early_settings(WOLFSSL_CTX *ctx, const pst_listener_conf_t *lc) {
  unsigned max = lc->early_data == PST_EARLY_DATA_ACCEPT ? lc->max_early_data : 0;
  if (wolfSSL_CTX_set_max_early_data(ctx, max) != WOLFSSL_SUCCESS) return PST_ETLS;
  if (wolfSSL_CTX_set_num_tickets(ctx, 0) != WOLFSSL_SUCCESS) return PST_ETLS;
  return 0;
}

/* Settings that wolfSSL_set_SSL_CTX does not carry over: they must live on
 * the context connections are created from. */
static int tls_listener_settings(pst_gen_listener_t *gl, char *err, size_t errlen) {
  WOLFSSL_CTX *ctx = gl->ctx;
  const pst_listener_conf_t *lc = gl->conf;
  if (lc->versions == (PST_TLS12 | PST_TLS13) &&
      wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
    snprintf(err, errlen, "cannot set the minimum TLS version");
    return PST_ETLS;
  }
  if (wolfSSL_CTX_set_cipher_list(ctx, tls_ciphers) != WOLFSSL_SUCCESS) {
    snprintf(err, errlen, "cannot set the cipher suites");
    return PST_ETLS;
  }
  /* set1_curves_list also disables every other curve: without it TLS 1.2's
   * ECDHE would take P-521 because a client listed it. For TLS 1.3 it sets
   * the same groups in this preference order (tls.groups). A client with
   * no group in common gets handshake_failure
   * (wolfssl-no-common-group.patch). */
  char groups[64] = "";
  assert(lc->n_groups > 0 && lc->n_groups <= PST_TLS_MAX_GROUPS);
  for (unsigned i = 0; i < lc->n_groups; i++) {
    const char *name = tls_group_wolf_name(lc->groups[i]);
    assert(name != NULL);
    if (i > 0) strcat(groups, ":");
    strcat(groups, name);
  }
  if (wolfSSL_CTX_set1_curves_list(ctx, groups) != WOLFSSL_SUCCESS) {
    snprintf(err, errlen, "cannot set the key-exchange groups to %s", groups);
    return PST_ETLS;
  }
  /* The verify mode and callback are the listener context's: wolfSSL_new
   * copies them into the connection and the SNI callback's context switch
   * keeps them. */
  switch (lc->client_auth) {
    case PST_CLIENT_AUTH_NONE: wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL); break;
    case PST_CLIENT_AUTH_OPTIONAL:
      wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, tls_on_client_cert);
      break;
    case PST_CLIENT_AUTH_REQUIRED:
      /* RFC 8446 4.4.2.4: no certificate: certificate_required, which
       * wolfSSL 5.5.4 sends in TLS 1.3 (handshake_failure in TLS 1.2). */
      wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                             tls_on_client_cert);
      break;
  }
  /* TLS 1.2 session-id resumption would skip the client certificate too. */
  if (lc->client_auth != PST_CLIENT_AUTH_NONE &&
      wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF) != WOLFSSL_SUCCESS) {
    snprintf(err, errlen, "cannot turn the session cache off");
    return PST_ETLS;
  }
  /* Pack the server's flight into as few records and writes as possible. */
  wolfSSL_CTX_set_group_messages(ctx);
  /* Connections share their worker thread's random generator: wolfSSL_new
   * would otherwise seed and health-test a new Hash_DRBG for each one (a
   * getrandom(2) call and ~4 us of SHA-256). A connection lives and dies on
   * the worker that accepted it, and worker_run frees the generator
   * (pst_tls_thread_cleanup) once its loop has closed every connection.
   * Should the build not support it, each connection keeps its own. */
  (void)wolfSSL_CTX_UseThreadRng(ctx);
  if ((lc->versions & PST_TLS13) && tls_early_settings(ctx, lc) != 0) {
    snprintf(err, errlen, "cannot set the early data and ticket options");
    return PST_ETLS;
  }
  if (!lc->session_tickets && wolfSSL_CTX_NoTicketTLSv12(ctx) != WOLFSSL_SUCCESS) {
    snprintf(err, errlen, "cannot turn TLS 1.2 session tickets off");
    return PST_ETLS;
  }
  wolfSSL_CTX_set_servername_callback(ctx, tls_on_sni);
  wolfSSL_CTX_set_servername_arg(ctx, gl);
  wolfSSL_CTX_set_alpn_select_cb(ctx, tls_on_alpn, gl);
  return 0;
}

int pst_tls_listener_init(pst_gen_listener_t *gl, char *err, size_t errlen) {
  int rc = pst_tls_global_init();
  if (rc != 0) {
    snprintf(err, errlen, "wolfSSL failed to initialise");
    return rc;
  }
  gl->cert_ctx = calloc(gl->n_certs, sizeof(*gl->cert_ctx));
  if (gl->cert_ctx == NULL) return -ENOMEM;
  /* Once per listener, not per context: N contexts asking N certificates
   * cost seconds with 10,000. */
  int stapled = 0;
  for (size_t i = 0; i < gl->n_certs; i++) stapled |= gl->certs[i]->staple != NULL;
  for (size_t i = 0; i < gl->n_certs; i++) {
    gl->cert_ctx[i] = tls_ctx_new(gl->conf, gl->certs[i], err, errlen);
    if (gl->cert_ctx[i] == NULL) return PST_ETLS;
    /* After the SNI callback switches context, wolfSSL takes the ticket
     * callback, its key source and the lifetime hint from this one. */
    if (gl->conf->client_auth == PST_CLIENT_AUTH_NONE &&
        pst_ticket_install(gl->cert_ctx[i], gl->tickets, gl->conf->ticket_lifetime_ms) != 0) {
      snprintf(err, errlen, "cannot install the session ticket callback");
      return PST_ETLS;
    }
    if (tls_client_ca(gl->cert_ctx[i], gl) != 0) {
      snprintf(err, errlen, "%s: wolfSSL rejected the client CA certificates",
               gl->conf->client_ca_file);
      return PST_ETLS;
    }
    if (tls_stapling(gl->cert_ctx[i], gl, stapled) != 0) {
      snprintf(err, errlen, "cannot turn OCSP stapling on");
      return PST_ETLS;
    }
  }
  gl->ctx = tls_ctx_new(gl->conf, gl->certs[gl->default_cert], err, errlen);
  if (gl->ctx == NULL) return PST_ETLS;
  /* With client certificates, no resumption (config_tls.c): no ticket is
   * issued, and one made elsewhere with the same keys is not accepted
   * either, since wolfSSL's own key cannot open it. */
  if (gl->conf->client_auth == PST_CLIENT_AUTH_NONE &&
      pst_ticket_install(gl->ctx, gl->tickets, gl->conf->ticket_lifetime_ms) != 0) {
    snprintf(err, errlen, "cannot install the session ticket callback");
    return PST_ETLS;
  }
  if (tls_client_ca(gl->ctx, gl) != 0) {
    snprintf(err, errlen, "%s: wolfSSL rejected the client CA certificates",
             gl->conf->client_ca_file);
    return PST_ETLS;
  }
  if (tls_stapling(gl->ctx, gl, stapled) != 0) {
    snprintf(err, errlen, "cannot turn OCSP stapling on");
    return PST_ETLS;
  }
  return tls_listener_settings(gl, err, errlen);
}

void pst_tls_listener_free(pst_gen_listener_t *gl) {
  if (gl->cert_ctx != NULL) {
    for (size_t i = 0; i < gl->n_certs; i++) wolfSSL_CTX_free(gl->cert_ctx[i]);
    free(gl->cert_ctx);
    gl->cert_ctx = NULL;
  }
  wolfSSL_CTX_free(gl->ctx);
  gl->ctx = NULL;
}

int pst_tls_cert_index(const pst_gen_listener_t *gl, WOLFSSL *ssl) {
  intptr_t v = (intptr_t)wolfSSL_get_ex_data(ssl, TLS_EX_CERT);
  return v > 0 ? (int)(v - 1) : gl->default_cert;
}

const char *pst_tls_group_name(WOLFSSL *ssl) {
  const char *name = wolfSSL_get_curve_name(ssl);
  if (name == NULL) return "";
  if (strcmp(name, "SECP256R1") == 0) return "P-256";
  if (strcmp(name, "SECP384R1") == 0) return "P-384";
  if (strcmp(name, "SECP521R1") == 0) return "P-521";
  return name;
}

const char *pst_tls_cipher_name(WOLFSSL *ssl) {
  /* The IANA name (RFC 8446 B.4), as OpenSSL and browsers show it. */
  const char *name = wolfSSL_CIPHER_get_name(wolfSSL_get_current_cipher(ssl));
  return name != NULL ? name : "";
}

int pst_tls_group_offered(const pst_listener_conf_t *lc, unsigned group) {
  for (unsigned i = 0; i < lc->n_groups; i++) {
    if (lc->groups[i] == group) return 1;
  }
  return 0;
}

int pst_tls_sni_rejected(WOLFSSL *ssl) {
  return (int)(intptr_t)wolfSSL_get_ex_data(ssl, TLS_EX_REJECTED);
}
