/* postern fuzz target: the PROXY protocol parser and writer (src/proxy.c),
 * which read the first bytes an L4 balancer sends on an accept_proxy
 * listener. Input: one byte choosing what the listener accepts (low two
 * bits: v1, v2 or any; 0 is any too), then the bytes the balancer sends.
 * Besides memory errors (ASan) and undefined behaviour (UBSan), it checks
 * what the connection relies on: an answer that is a length, 0 or
 * PST_EPROTO with a reason; a length within the bound and the input; "more"
 * only below the bound; consistency as bytes arrive (every prefix of an
 * accepted header asks for more, the header plus anything after it is the
 * same header); the TLVs walkable to their end; and a header written back
 * from what was parsed read again with the same addresses. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/buf.h"
#include "postern/common.h"
#include "postern/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const pst_proxy_t modes[4] = {PST_PROXY_ANY, PST_PROXY_V1, PST_PROXY_V2, PST_PROXY_ANY};

static void check_addrs(const pst_proxy_hdr_t *a, const pst_proxy_hdr_t *b) {
  if (a->local != b->local) abort();
  if (a->local) return;
  if (a->src.ss_family != b->src.ss_family) abort();
  size_t n = a->src.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  if (memcmp(&a->src, &b->src, n) != 0 || memcmp(&a->dst, &b->dst, n) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  pst_proxy_t accept = modes[data[0] & 3];
  data++, size--;
  pst_proxy_hdr_t h;
  const char *why;
  int rc = pst_proxy_parse(data, size, accept, &h, &why);
  if (getenv("POSTERN_FUZZ_VERBOSE") != NULL) {
    fprintf(stderr, "proxy: rc %d (%s), version %u, local %u, %zu TLV bytes\n", rc,
            rc < 0 ? why : "-", rc > 0 ? h.version : 0, rc > 0 ? h.local : 0,
            rc > 0 ? h.tlv_len : 0);
  }
  if (rc < 0) {
    if (rc != PST_EPROTO || why == NULL || why[0] == '\0') abort();
    return 0;
  }
  if (rc == 0) {
    if (size >= PST_PROXY_MAX) abort();
    return 0;
  }
  size_t n = (size_t)rc;
  if (n > size || n > PST_PROXY_MAX) abort();
  if (h.version == 1 && n > PST_PROXY_V1_MAX) abort();
  /* Bytes arrive in pieces: a shorter prefix asks for more. */
  pst_proxy_hdr_t p;
  for (size_t k = 0; k < n; k += 1 + k / 8) {
    if (pst_proxy_parse(data, k, accept, &p, &why) != 0) abort();
  }
  if (pst_proxy_parse(data, n, accept, &p, &why) != rc) abort();
  check_addrs(&h, &p);
  /* The TLVs were checked: walking them reaches their end. */
  const unsigned char *t = h.tlv, *v;
  size_t tl = h.tlv_len, vl;
  unsigned type;
  int r;
  while ((r = pst_proxy_tlv_next(&t, &tl, &type, &v, &vl)) == 1) continue;
  if (r != 0 || tl != 0) abort();
  /* Written back as each version and read again: the same addresses. */
  pst_proxy_info_t info = {
      .src = h.local ? NULL : (const struct sockaddr *)&h.src,
      .dst = h.local ? NULL : (const struct sockaddr *)&h.dst,
      .alpn = "h2",
      .authority = "example.test",
      .ssl = 1,
      .ssl_version = "TLSv1.3",
      .unique_id = "1-0-1",
      .crc32c = size & 1,
  };
  for (pst_proxy_t ver = PST_PROXY_V1; ver <= PST_PROXY_V2; ver++) {
    pst_buf_t out = {0};
    if (pst_proxy_write(ver, &info, &out) != 0) abort();
    pst_proxy_hdr_t back;
    if (pst_proxy_parse(pst_buf_head(&out), out.len, ver, &back, &why) != (int)out.len) abort();
    check_addrs(&h, &back);
    pst_buf_free(&out);
  }
  return 0;
}
