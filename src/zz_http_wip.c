/* TEMPORARY (lead's work in progress, removed before commit): weak stand-ins
 * so the binary links while the HTTP engine files are being written. */
#include <stdlib.h>
#include "postern/common.h"
#include "postern/front.h"
#include "postern/http.h"
#define W __attribute__((weak))
W void pst_http_response_free(pst_http_response_t *r) { (void)r; }
W void pst_http_request_free(pst_http_request_t *r) { (void)r; }
W void pst_h1_resp_expect(pst_h1_resp_parser_t *p, const char *m) { (void)p; (void)m; }
W int pst_http_request_write(const pst_http_request_t *r, const pst_forward_info_t *f, pst_buf_t *o) { (void)r; (void)f; (void)o; return PST_EPROTO; }
W int pst_http_chunk(pst_buf_t *o, const char *d, size_t n) { (void)o; (void)d; (void)n; return PST_EPROTO; }
W const char *pst_http_reason(int s) { (void)s; return ""; }
W int pst_h1_req_feed(pst_h1_req_parser_t *p, const char *d, size_t n, size_t *c, int *s) { (void)p; (void)d; (void)n; *c = 0; *s = 501; return PST_EPROTO; }
W void pst_h1_req_parser_free(pst_h1_req_parser_t *p) { (void)p; }
W pst_h1_req_parser_t *pst_h1_req_parser_new(const pst_h1_req_callbacks_t *cb, void *a, size_t m) { (void)cb; (void)a; (void)m; return NULL; }
W int pst_http_error_write(pst_buf_t *o, int s, const char *b, int c) { (void)o; (void)s; (void)b; (void)c; return PST_EPROTO; }
W int pst_http_response_write(const pst_http_response_t *r, int m, int k, int h, pst_buf_t *o, int *c) { (void)r; (void)m; (void)k; (void)h; (void)o; (void)c; return PST_EPROTO; }
W pst_front_t *pst_h2_front_new(pst_conn_t *c) { (void)c; return NULL; }
W int pst_h1_resp_finish(pst_h1_resp_parser_t *p) { (void)p; return PST_EPROTO; }
W int pst_h1_resp_feed(pst_h1_resp_parser_t *p, const char *d, size_t n, size_t *c) { (void)p; (void)d; (void)n; *c = 0; return PST_EPROTO; }
W pst_h1_resp_parser_t *pst_h1_resp_parser_new(const pst_h1_resp_callbacks_t *cb, void *a, size_t m) { (void)cb; (void)a; (void)m; return NULL; }
W void pst_h1_resp_parser_free(pst_h1_resp_parser_t *p) { (void)p; }
