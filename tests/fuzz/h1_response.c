/* postern fuzz target: the HTTP/1.1 response parser (pst_h1_resp_*, src/h1_parse.c)
 * the way src/stream.c drives it on a backend's bytes: expect the method of the
 * request, feed what arrived in the pieces it arrived in, start the next
 * response after each complete one (a kept-alive backend connection), stop
 * after a 101 (the rest is a tunnel), and end with the backend's close
 * (pst_h1_resp_finish). Each head is then written for an HTTP/1.x client
 * as src/h1.c does (pst_http_response_write), which must not refuse what the
 * parser accepted.
 *
 * Input: one control byte, then the backend's bytes. The control byte picks
 * the request method (HEAD responses have no body), the head limit, the
 * client's HTTP minor version and the size of the pieces (0: all at once). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "postern/buf.h"
#include "postern/common.h"
#include "postern/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
  int heads, ends, minor, head_request, tunnel;
  size_t body;
} pst_fuzz_resp_t;

static int pst_fuzz_on_head(void *arg, pst_http_response_t *resp) {
  pst_fuzz_resp_t *t = arg;
  if (resp->status < 100 || resp->status > 599) abort();
  for (size_t i = 0; i < resp->headers.n; i++) {
    if (strlen(resp->headers.v[i].name) != resp->headers.v[i].name_len) abort();
    if (strlen(resp->headers.v[i].value) != resp->headers.v[i].value_len) abort();
  }
  pst_buf_t out = {0};
  int chunked = 0;
  int rc =
      pst_http_response_write(resp, t->minor, resp->keep_alive, t->head_request, &out, &chunked);
  if (rc != 0 && rc != -ENOMEM) abort();
  (void)pst_http_response_needs_close(resp, t->minor, t->head_request);
  pst_buf_free(&out);
  if (resp->status == 101) t->tunnel = 1;
  t->heads++;
  pst_http_response_free(resp);
  free(resp);
  return 0;
}

static int pst_fuzz_on_body(void *arg, const char *d, size_t len) {
  pst_fuzz_resp_t *t = arg;
  /* As h1.c relays a body of unknown length to an HTTP/1.1 client. */
  pst_buf_t out = {0};
  if (pst_http_chunk(&out, d, len) != 0) abort();
  pst_buf_free(&out);
  t->body += len;
  return 0;
}

static int pst_fuzz_on_end(void *arg) {
  pst_fuzz_resp_t *t = arg;
  t->ends++;
  return 0;
}

static const pst_h1_resp_callbacks_t pst_fuzz_cb = {
    .on_head = pst_fuzz_on_head,
    .on_body = pst_fuzz_on_body,
    .on_end = pst_fuzz_on_end,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static const char *const methods[4] = {"GET", "HEAD", "POST", "OPTIONS"};
  static const size_t limits[2] = {32768, 128};
  const char *method = methods[data[0] & 3];
  size_t max_head = limits[(data[0] >> 2) & 1];
  size_t piece = data[0] >> 4; /* 0: everything at once */
  const char *in = (const char *)data + 1;
  size_t len = size - 1;

  pst_fuzz_resp_t t = {.minor = (data[0] >> 3) & 1, .head_request = (data[0] & 3) == 1};
  pst_h1_resp_parser_t *p = pst_h1_resp_parser_new(&pst_fuzz_cb, &t, max_head);
  if (p == NULL) return 0;
  pst_h1_resp_expect(p, method);
  size_t arrived = 0, off = 0;
  int failed = 0;
  while (arrived < len && !failed && !t.tunnel) {
    size_t n = piece == 0 ? len - arrived : piece;
    if (n > len - arrived) n = len - arrived;
    arrived += n;
    while (off < arrived && !t.tunnel) {
      int ends = t.ends;
      size_t used = 0;
      int rc = pst_h1_resp_feed(p, in + off, arrived - off, &used);
      if (used > arrived - off) abort();
      off += used;
      if (rc != 0) {
        if (pst_h1_resp_why(p) == NULL && rc != -ENOMEM) abort();
        failed = 1;
        break;
      }
      /* The next response on the same connection answers the next request. */
      if (t.ends > ends && !t.tunnel) pst_h1_resp_expect(p, method);
      if (used == 0) break;
    }
  }
  if (!failed && !t.tunnel) (void)pst_h1_resp_finish(p);
  if (t.ends > t.heads) abort();
  pst_h1_resp_parser_free(p);
  return 0;
}
