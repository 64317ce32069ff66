/* postern fuzz target: the HTTP/1.1 request parser (pst_h1_req_*, src/h1_parse.c
 * and src/h1_head.c: llhttp behind the strict head scan, chunked bodies and
 * trailers) the way the HTTP/1.1 front end (src/h1.c) drives it: the bytes
 * the client sent, fed in the pieces they arrived in, with the rest fed again
 * after each complete request (pipelining), until the parser refuses the
 * input or wants more.
 *
 * Input: one control byte, then the client's bytes. The control byte picks
 * the head limit (small limits reach the 414/431 paths) and the size of the
 * pieces (0: all at once). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "postern/buf.h"
#include "postern/common.h"
#include "postern/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
  int heads, ends;
  size_t body;
} pst_fuzz_req_t;

static int pst_fuzz_on_head(void *arg, pst_http_request_t *req) {
  pst_fuzz_req_t *t = arg;
  /* What the front end reads of every head: it must be NUL-ended text. */
  if (req->method == NULL || req->target == NULL) abort();
  (void)strlen(req->method);
  (void)strlen(req->target);
  for (size_t i = 0; i < req->headers.n; i++) {
    if (strlen(req->headers.v[i].name) != req->headers.v[i].name_len) abort();
    if (strlen(req->headers.v[i].value) != req->headers.v[i].value_len) abort();
  }
  /* Every request the parser accepts is forwarded: stream.c writes it to the
   * backend, and a refusal there (PST_EPROTO: a CR, LF or NUL that would
   * break the framing) means the parser let through what it must not. */
  pst_forward_info_t fwd = {.client_ip = "192.0.2.1", .mode = (pst_forwarded_t)(t->heads & 1)};
  pst_buf_t out = {0};
  int rc = pst_http_request_write(req, &fwd, &out);
  if (rc != 0 && rc != -ENOMEM) abort();
  pst_buf_free(&out);
  t->heads++;
  pst_http_request_free(req);
  free(req);
  return 0;
}

static int pst_fuzz_on_body(void *arg, const char *d, size_t len) {
  pst_fuzz_req_t *t = arg;
  t->body += len;
  return 0;
}

static int pst_fuzz_on_end(void *arg) {
  pst_fuzz_req_t *t = arg;
  t->ends++;
  return 0;
}

static const pst_h1_req_callbacks_t pst_fuzz_cb = {
    .on_head = pst_fuzz_on_head,
    .on_body = pst_fuzz_on_body,
    .on_end = pst_fuzz_on_end,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static const size_t limits[4] = {32768, 8192, 256, 64};
  size_t max_head = limits[data[0] & 3];
  size_t piece = data[0] >> 2; /* 0: everything at once */
  const char *in = (const char *)data + 1;
  size_t len = size - 1;

  pst_fuzz_req_t t = {0};
  pst_h1_req_parser_t *p = pst_h1_req_parser_new(&pst_fuzz_cb, &t, max_head);
  if (p == NULL) return 0;
  /* As h1.c: bytes that arrived wait in a buffer; the parser is fed from its
   * head and what it used is dropped. A piece arrives, then the buffer is
   * parsed until the parser wants more. */
  size_t arrived = 0, off = 0;
  while (arrived < len) {
    size_t n = piece == 0 ? len - arrived : piece;
    if (n > len - arrived) n = len - arrived;
    arrived += n;
    for (;;) {
      size_t used = 0;
      int status = 0;
      int rc = pst_h1_req_feed(p, in + off, arrived - off, &used, &status);
      if (used > arrived - off) abort();
      off += used;
      if (rc < 0) {
        if (status < 400 || status > 599 || pst_h1_req_why(p) == NULL) abort();
        goto done;
      }
      if (off == arrived || used == 0) break;
    }
  }
done:
  if (t.ends > t.heads) abort();
  pst_h1_req_parser_free(p);
  return 0;
}
