/* postern: unit tests for the client side of backend TLS (src/tls_backend.c):
 * the name a server is checked against, the causes of a failed handshake in
 * words, and the set's context built (or refused) from tls.ca_file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "postern/common.h"
#include "postern/tls.h"

static void test_name(void **state) {
  pst_backend_set_conf_t set = {0};
  char out[256];
  pst_tls_backend_name(&set, "app.internal:8443", out, sizeof(out));
  assert_string_equal(out, "app.internal");
  pst_tls_backend_name(&set, "127.0.0.1:8443", out, sizeof(out));
  assert_string_equal(out, "127.0.0.1");
  pst_tls_backend_name(&set, "[::1]:8443", out, sizeof(out));
  assert_string_equal(out, "::1");
  char tiny[4];
  pst_tls_backend_name(&set, "app.internal:8443", tiny, sizeof(tiny));
  assert_string_equal(tiny, "app"); /* cut, never overrun */
  set.tls_server_name = "named.example.test";
  pst_tls_backend_name(&set, "10.0.0.1:8443", out, sizeof(out));
  assert_string_equal(out, "named.example.test");
}

static void test_why(void **state) {
  char buf[300];
  assert_non_null(
      strstr(pst_tls_backend_why(ASN_AFTER_DATE_E, buf, sizeof(buf)), "certificate expired"));
  assert_non_null(strstr(pst_tls_backend_why(ASN_NO_SIGNER_E, buf, sizeof(buf)), "unknown issuer"));
  assert_non_null(
      strstr(pst_tls_backend_why(DOMAIN_NAME_MISMATCH, buf, sizeof(buf)), "name mismatch"));
  assert_non_null(
      strstr(pst_tls_backend_why(ASN_BEFORE_DATE_E, buf, sizeof(buf)), "not yet valid"));
  /* Any other code: wolfSSL's own words, with the number. */
  assert_non_null(strstr(pst_tls_backend_why(-12345, buf, sizeof(buf)), "wolfSSL -12345"));
}

static void test_init(void **state) {
  assert_int_equal(pst_tls_global_init(), 0);
  char err[600] = "";
  pst_backend_set_conf_t set = {0};
  assert_int_equal(pst_tls_backend_init(&set, err, sizeof(err)), 0); /* no tls: nothing */
  assert_null(set.tls_ctx);

  set.tls = 1;
  set.tls_verify = 0;
  assert_int_equal(pst_tls_backend_init(&set, err, sizeof(err)), 0);
  assert_non_null(set.tls_ctx);
  WOLFSSL *ssl = wolfSSL_new(set.tls_ctx);
  assert_non_null(ssl);
  assert_int_equal(pst_tls_backend_client(ssl, "app.internal", 1, 1), 0);
  assert_int_equal(pst_tls_backend_client(ssl, "127.0.0.1", 1, 0), 0); /* no SNI for a literal */
  pst_tls_backend_free(&set);
  assert_null(set.tls_ctx);
  wolfSSL_free(ssl); /* the context lived on through the connection's reference */

  char path[] = "/tmp/pst-tls-backend-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "no certificate here\n", 20), 20);
  close(fd);
  set.tls_verify = 1;
  set.tls_ca_file = path;
  assert_int_equal(pst_tls_backend_init(&set, err, sizeof(err)), PST_ETLS);
  assert_non_null(strstr(err, "no CA certificate could be loaded"));
  pst_tls_backend_free(&set);
  unlink(path);
  pst_tls_global_cleanup();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_name),
      cmocka_unit_test(test_why),
      cmocka_unit_test(test_init),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
