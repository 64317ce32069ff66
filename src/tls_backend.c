/* postern: the client contexts of backend sets with tls: (re-encryption to
 * the servers), built with the generation off the loops, and the causes of
 * a failed backend handshake told in words. The connections themselves are
 * the pool's (pool_tls.c). */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/error-ssl.h>

#include "postern/common.h"
#include "postern/tls.h"

int pst_tls_backend_init(pst_backend_set_conf_t *set, char *err, size_t errlen) {
  if (!set->tls || set->tls_ctx != NULL) return 0;
  /* TLS 1.3, and 1.2 for servers that have no 1.3 (NO_OLD_TLS: nothing
   * older); the tuned build's suites and groups. */
  WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
  if (ctx == NULL) {
    snprintf(err, errlen, "cannot create a TLS client context (out of memory)");
    return PST_ETLS;
  }
  set->tls_ctx = ctx;
  if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
    snprintf(err, errlen, "cannot set TLS 1.2 as the lowest version");
    return PST_ETLS;
  }
  /* Session tickets for TLS 1.2 (RFC 5077); TLS 1.3 resumes by the
   * NewSessionTicket of RFC 8446 4.6.1 in any case. */
  wolfSSL_CTX_UseSessionTicket(ctx);
  /* Connections share their thread's random generator, as the listeners'
   * do (tls.c): a worker's live and die on it, the health checker frees
   * its checks' before it ends, and each thread frees its generator last
   * (pst_tls_thread_cleanup). */
  (void)wolfSSL_CTX_UseThreadRng(ctx);
  if (!set->tls_verify) {
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
    return 0;
  }
  wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
  int rc;
  if (set->tls_ca_file != NULL) {
    rc = wolfSSL_CTX_load_verify_locations(ctx, set->tls_ca_file, NULL);
    if (rc != WOLFSSL_SUCCESS) {
      char why[80];
      wolfSSL_ERR_error_string_n((unsigned long)-rc, why, sizeof(why));
      snprintf(err, errlen,
               "tls.ca_file %s: no CA certificate could be loaded (%s); expected a PEM file of "
               "the CA certificates that issued the servers' certificates",
               set->tls_ca_file, why);
      return PST_ETLS;
    }
    return 0;
  }
  rc = wolfSSL_CTX_load_system_CA_certs(ctx);
  if (rc != WOLFSSL_SUCCESS) {
    snprintf(err, errlen,
             "tls: the system's CA store could not be loaded (install ca-certificates), or name "
             "the servers' CA with tls.ca_file");
    return PST_ETLS;
  }
  return 0;
}

void pst_tls_backend_free(pst_backend_set_conf_t *set) {
  if (set->tls_ctx == NULL) return;
  wolfSSL_CTX_free(set->tls_ctx); /* live connections keep it: wolfSSL counts their references */
  set->tls_ctx = NULL;
}

const char *pst_tls_backend_why(int e, char *buf, size_t len) {
  const char *what = NULL;
  switch (e) {
    case ASN_AFTER_DATE_E: what = "certificate expired"; break;
    case ASN_BEFORE_DATE_E: what = "certificate not yet valid"; break;
    case ASN_NO_SIGNER_E:
      what = "unknown issuer: not signed by a CA of tls.ca_file (or the system store)";
      break;
    case ASN_SELF_SIGNED_E: what = "self-signed certificate"; break;
    case DOMAIN_NAME_MISMATCH:
      what = "name mismatch: the certificate does not name the server name";
      break;
    case ASN_SIG_CONFIRM_E: what = "certificate signature does not verify"; break;
    case SOCKET_ERROR_E:
    case SOCKET_PEER_CLOSED_E:
      what = "the server closed the connection during the handshake";
      break;
    case FATAL_ERROR: what = "the server sent a fatal alert"; break;
    default: break;
  }
  char detail[80];
  wolfSSL_ERR_error_string_n((unsigned long)(e < 0 ? -e : e), detail, sizeof(detail));
  if (what != NULL) {
    snprintf(buf, len, "%s (wolfSSL %d: %s)", what, e, detail);
  } else {
    snprintf(buf, len, "wolfSSL %d: %s", e, detail);
  }
  return buf;
}

void pst_tls_backend_name(const pst_backend_set_conf_t *set, const char *addr_text, char *out,
                          size_t len) {
  if (set->tls_server_name != NULL) {
    snprintf(out, len, "%s", set->tls_server_name);
    return;
  }
  /* The host of "host:port" or "[v6]:port". */
  const char *start = addr_text, *end;
  if (*addr_text == '[') {
    start = addr_text + 1;
    end = strchr(start, ']');
  } else {
    end = strrchr(addr_text, ':');
  }
  size_t n = end != NULL ? (size_t)(end - start) : strlen(start);
  if (n >= len) n = len - 1;
  memcpy(out, start, n);
  out[n] = '\0';
}

int pst_tls_backend_client(WOLFSSL *ssl, const char *name, int verify, int alpn_http11) {
  static const char alpn[] = "http/1.1";
  unsigned char a[16];
  int literal = inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
  /* RFC 6066 3: no address literal in server_name; the name is still
   * checked against the certificate. */
  if (!literal && wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, name, (unsigned short)strlen(name)) !=
                      WOLFSSL_SUCCESS) {
    return PST_ETLS;
  }
  if (verify && wolfSSL_check_domain_name(ssl, name) != WOLFSSL_SUCCESS) return PST_ETLS;
  /* RFC 7301 3.1: a client offers; a server that picks none still talks. */
  if (alpn_http11 && wolfSSL_UseALPN(ssl, (char *)alpn, sizeof(alpn) - 1,
                                     WOLFSSL_ALPN_CONTINUE_ON_MISMATCH) != WOLFSSL_SUCCESS) {
    return PST_ETLS;
  }
  return 0;
}
