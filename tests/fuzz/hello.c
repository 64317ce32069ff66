/* postern fuzz target: the ClientHello scanner (src/hello.c), which reads the
 * first bytes a client sends, before wolfSSL does, to decide about 0-RTT.
 * The input is those bytes. Besides memory errors (ASan) and undefined
 * behaviour (UBSan), it checks what the connection relies on: the answer is
 * one of the documented ones, the arrays stay within their bounds, and the
 * scanner is consistent as bytes arrive (a prefix of a ClientHello it
 * accepts whole is never refused), since the connection scans again each
 * time more bytes come. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "postern/common.h"
#include "postern/hello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pst_hello_t h;
  int rc = pst_hello_scan(data, size, &h);
  if (rc != 0 && rc != PST_HELLO_NEED_MORE && rc != PST_EPROTO && rc != -ENOMEM) abort();
  /* POSTERN_FUZZ_VERBOSE=1: what the scanner saw of a seed. */
  if (getenv("POSTERN_FUZZ_VERBOSE") != NULL) {
    fprintf(stderr, "hello: rc %d, early_data %d, psk %d (%u identities, binder %zu bytes)\n", rc,
            rc == 0 && h.early_data, rc == 0 && h.psk, rc == 0 ? h.identities : 0,
            rc == 0 ? h.binder_len : 0);
  }
  if (rc != 0) return 0;
  if (h.binder_len > sizeof(h.binder)) abort();
  if (h.n_share_groups > sizeof(h.share_groups) / sizeof(h.share_groups[0])) abort();
  /* Bytes arrive in pieces: the first half of a hello accepted whole must
   * ask for more (or already hold the whole hello), never be refused. */
  pst_hello_t part;
  int prc = pst_hello_scan(data, size / 2, &part);
  if (prc != 0 && prc != PST_HELLO_NEED_MORE) abort();
  return 0;
}
