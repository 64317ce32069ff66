/* postern: HTTP/1.1 parsing (llhttp, strict) and message writing. These are
 * engines: they are fed bytes and produce bytes or events, with no I/O. */
#ifndef POSTERN_HTTP_H
#define POSTERN_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "postern/buf.h"
#include "postern/http-t.h"

/* The most fields one message head may carry; past it the head is refused
 * as too large (431 for a request), whatever its size in bytes, so that many
 * tiny fields cannot cost much more memory than max_head_bytes suggests. */
#define PST_HTTP_MAX_FIELDS 256

/* ---- header lists ---- */

/* Appends a header (copies of both strings); name keeps its case. The bytes
 * are not checked here: parsers validate before adding, and the writers
 * refuse CR, LF and NUL. Returns 0 or -ENOMEM (list unchanged). */
int pst_headers_add(pst_headers_t *h, const char *name, size_t name_len, const char *value,
                    size_t value_len);
/* First value of name (compared without regard to case), or NULL. The
 * pointer is owned by the list and valid until the list changes. */
const char *pst_headers_get(const pst_headers_t *h, const char *name);
/* Removes every field called name (name_len bytes, compared without regard
 * to case), keeping the order of the others. Returns how many were removed. */
size_t pst_headers_del(pst_headers_t *h, const char *name, size_t name_len);
/* Returns a malloc'd copy of the n bytes at s (borrowed; NULL allowed when n
 * is 0) with a NUL after them, owned by the caller; NULL when out of
 * memory. */
char *pst_http_dup_n(const char *s, size_t n);
void pst_headers_free(pst_headers_t *h);             /* the list is empty and reusable after */
void pst_http_request_free(pst_http_request_t *r);   /* frees members; r itself not; NULL ok */
void pst_http_response_free(pst_http_response_t *r); /* frees members; r itself not; NULL ok */

/* A zeroed request struct, from the worker thread's free list (fl.h) or
 * malloc; NULL when out of memory. Give it back with pst_http_request_del(),
 * or with pst_http_request_free() + free(): a struct from calloc and one from
 * here are interchangeable. */
pst_http_request_t *pst_http_request_new(void);

/* pst_http_request_free(r), then r itself back to the free list; NULL ok. */
void pst_http_request_del(pst_http_request_t *r);

/* ---- request targets ---- */

/* Whether the n bytes at t (borrowed) are a request-target postern
 * forwards: origin-form, "/" then the rest of a path and query (RFC 9112
 * 3.2.1), or asterisk-form, "*" alone, when options is set (the request is
 * OPTIONS: RFC 9112 3.2.4); every byte one of RFC 3986's characters
 * (unreserved, reserved, "%"), and no "#" (RFC 9110 7.1). So a control,
 * space, DEL, 0x80-0xFF, " < > \ ^ ` { | } or # refuses the target.
 * Shared by the HTTP/1.1 parser and the HTTP/2 front end (RFC 9113 8.3.1),
 * so that both refuse the same targets. Returns 1 or 0. */
int pst_http_target_ok(const char *t, size_t n, int options);

/* ---- HTTP/1.1 request parser (client side, RFC 9112) ---- */

typedef struct pst_h1_req_parser_s pst_h1_req_parser_t;

typedef struct {
  /* A complete, validated request head. Ownership of *req (allocated with
   * malloc) passes to the callee: free with pst_http_request_free + free.
   * Each callback returns 0 to go on, or a nonzero value that stops parsing
   * and is returned by pst_h1_req_feed; *consumed then counts the bytes up to
   * and including what the callback was given, and the next feed goes on
   * from there (so a positive value works as "pause": backpressure).
   * A NULL callback is skipped (a head is then freed at once). Callbacks run
   * inside pst_h1_req_feed and must not free the parser: return nonzero and
   * free it after the feed returns. */
  int (*on_head)(void *arg, pst_http_request_t *req);
  /* Body bytes of the current request, de-chunked; data is borrowed for the
   * call (it points into the fed bytes). */
  int (*on_body)(void *arg, const char *data, size_t len);
  /* The current request is complete (trailers dropped). */
  int (*on_end)(void *arg);
} pst_h1_req_callbacks_t;

/* Returns a new parser (NULL when out of memory). cb is copied; arg is
 * passed to the callbacks. max_head_bytes bounds a request head (request
 * line plus fields, up to the blank line) and the trailer section: past it,
 * 431, or 414 when the request line alone passes it. Nothing the parser
 * holds grows past about that bound. */
pst_h1_req_parser_t *pst_h1_req_parser_new(const pst_h1_req_callbacks_t *cb, void *arg,
                                           size_t max_head_bytes);

/* Feeds len bytes (borrowed for the call). Parsing stops after each complete
 * request (after on_end), so that pipelined requests are handled one at a
 * time: *consumed tells how many bytes were used (the rest belongs to the
 * next request); feed the rest again once the response is done.
 * Returns 0 (all bytes used and more needed, or one request ended: on_end
 * ran), a callback's nonzero value, or a negative error after which the
 * connection must answer *status and close:
 * PST_EPROTO with 400 for a malformed or smuggling-prone request (both
 * Content-Length and Transfer-Encoding, several Content-Length fields, a
 * Transfer-Encoding on HTTP/1.0 or whose last coding is not chunked, a bad
 * chunk size or chunk line, obs-fold, bare CR or LF, a control byte or NUL,
 * an empty field name or whitespace before a colon, an invalid method token
 * or request target, a missing Host on HTTP/1.1, several Host fields or an
 * invalid or empty one); 501 for CONNECT and for transfer codings other
 * than chunked; 505 for HTTP versions other than 1.0 and 1.1; 417 for an
 * Expect other than 100-continue; PST_ELIMIT with 431 for a head, trailer
 * section or field count over the limits, 414 for a request line over the
 * head limit; -ENOMEM (answer 500 if anything). Every later call returns
 * the same error. After a request without keep-alive, later bytes are
 * discarded (consumed, no callback: RFC 9112 9.6). An HTTP/1.0 request
 * without Host gets an empty authority, which the caller fills in (RFC 9112
 * 3.3). Chunk extensions (RFC 9112 7.1.1) are checked and dropped; empty
 * elements of Transfer-Encoding are ignored (RFC 9110 5.6.1). */
int pst_h1_req_feed(pst_h1_req_parser_t *p, const char *data, size_t len, size_t *consumed,
                    int *status);

/* Why the parser refused the request (static text, for the error log and
 * the 4xx body), or NULL while it has not failed. */
const char *pst_h1_req_why(const pst_h1_req_parser_t *p);

/* Frees the parser (and a head not yet handed over). NULL allowed. */
void pst_h1_req_parser_free(pst_h1_req_parser_t *p);

/* Whether p is between requests: nothing of a next head read yet and not
 * failed, so that freeing it and making a new one later changes nothing
 * (h1.c frees it while the connection is idle). */
int pst_h1_req_parser_idle(const pst_h1_req_parser_t *p);

/* ---- HTTP/1.1 response parser (backend side) ---- */

typedef struct pst_h1_resp_parser_s pst_h1_resp_parser_t;

typedef struct {
  /* A response head; 1xx heads too (100 Continue, 103: body NONE, no
   * on_end, then the final head follows in the same feed). A 101 has
   * upgrade set and is followed by on_end: the HTTP exchange is over and the
   * bytes after it (the rest of what was fed beyond *consumed) belong to the
   * tunnel. The caller must refuse a 101 to a request that did not ask to
   * upgrade. Ownership of *resp (malloc) passes to the callee. Return values
   * as for the request parser. */
  int (*on_head)(void *arg, pst_http_response_t *resp);
  int (*on_body)(void *arg, const char *data, size_t len);
  int (*on_end)(void *arg);
} pst_h1_resp_callbacks_t;

/* Returns a new parser (NULL when out of memory); as for requests. */
pst_h1_resp_parser_t *pst_h1_resp_parser_new(const pst_h1_resp_callbacks_t *cb, void *arg,
                                             size_t max_head_bytes);

/* Prepares for the response to a request with this method: HEAD responses
 * have no body whatever their framing says (RFC 9110 9.3.2). Call it before
 * feeding each response; it lasts until the next final (non-1xx) response
 * ends. */
void pst_h1_resp_expect(pst_h1_resp_parser_t *p, const char *method);

/* Feeds bytes; like pst_h1_req_feed, stops after each complete response.
 * Returns 0, a callback's nonzero value, PST_EPROTO (malformed, a status
 * outside 100-599, a version other than 1.x, a transfer coding other than
 * chunked, several Content-Length fields) or PST_ELIMIT (head too large), or
 * -ENOMEM: the backend connection is then unusable. After a 101, nothing more
 * is consumed (*consumed 0); after a response without keep-alive, later bytes
 * are discarded. */
int pst_h1_resp_feed(pst_h1_resp_parser_t *p, const char *data, size_t len, size_t *consumed);

/* The backend closed: for a body delimited by close this ends it (on_end
 * runs, its value is returned); returns 0 when no response was in progress,
 * PST_EPROTO when a response was cut short (inside its head, or inside a
 * Content-Length or chunked body: the client must see the truncation). */
int pst_h1_resp_finish(pst_h1_resp_parser_t *p);

/* Why the parser refused the response (static text), or NULL. */
const char *pst_h1_resp_why(const pst_h1_resp_parser_t *p);

void pst_h1_resp_parser_free(pst_h1_resp_parser_t *p); /* NULL allowed */

/* ---- strict head checks (shared with other llhttp users) ---- */

/* Prepares s for a new head; request is 1 for a request head. */
void pst_h1_scan_init(pst_h1_scan_t *s, int request);

/* Prepares s for a chunked message's trailer section (RFC 9112 7.1.2):
 * field lines under the same rules, ended by an empty line. */
void pst_h1_scan_init_trailers(pst_h1_scan_t *s);

/* Checks n more bytes of a message head for what llhttp 8, built without
 * LLHTTP_STRICT_MODE, lets through: every line must end in CRLF (no bare CR
 * or LF: RFC 9112 2.2), no obs-fold (5.2), no whitespace or nothing before a
 * field's colon (5.1), no control byte other than HTAB (5.5), and in a
 * request line no HTAB or doubled SP (3). Empty lines before the start line
 * are skipped (2.2). Returns how many bytes it consumed: it stops after the
 * blank line ending the head (s->done set) or at the first bad byte (s->why
 * set, the return value is that byte's offset); otherwise n. */
size_t pst_h1_head_scan(pst_h1_scan_t *s, const char *p, size_t n);

/* ---- writing ---- */

/* Appends the request head as sent to a backend: request line (HTTP/1.1),
 * Host from authority (from a host header when authority is NULL, empty when
 * neither: RFC 9112 3.2), the end-to-end headers, the forwarding headers
 * (fwd: X-Forwarded-For appended to any received ones, X-Forwarded-Proto:
 * https and X-Forwarded-Host: authority replacing received ones; or, in
 * RFC 7239 mode, Forwarded: for=...;proto=https;host=... appended to any
 * received ones, the other scheme's fields passed unchanged), Early-Data: 1
 * when fwd->early_data (a received Early-Data is never passed on), framing
 * (Content-Length, or Transfer-Encoding: chunked for PST_BODY_CHUNKED and
 * PST_BODY_STREAM; Content-Length: 0 for a POST, PUT or PATCH without body),
 * Connection: upgrade + Upgrade when req->upgrade, and Expect: 100-continue
 * when set. Hop-by-hop fields still in req->headers are skipped.
 * Returns 0, -ENOMEM, or PST_EPROTO when a string would break the framing (CR,
 * LF or NUL anywhere, a space in the method or target); out is unchanged on
 * error. */
int pst_http_request_write(const pst_http_request_t *req, const pst_forward_info_t *fwd,
                           pst_buf_t *out);

/* Appends a response head for an HTTP/1.x client: status line (HTTP/1.1,
 * resp->reason or the standard phrase), headers, framing, and Connection.
 * Framing: Content-Length for LENGTH; chunked for CHUNKED, STREAM and
 * UNTIL_CLOSE when client_minor is 1 (*chunked set: the caller encodes the
 * body with pst_http_chunk); for a 1.0 client those bodies end when the
 * connection closes (Connection: close written: see
 * pst_http_response_needs_close); Content-Length: 0 for NONE; nothing for
 * 1xx, 204, 304 and HEAD responses (head_request), which keep a
 * content-length field of their own if they have one (RFC 9110 8.6). A 1xx is
 * written as it is (101 with Connection: upgrade and Upgrade). Connection:
 * close when !keep_alive, Connection: keep-alive for a 1.0 client that keeps
 * it. Returns 0, -ENOMEM or PST_EPROTO (CR, LF or NUL in a string); out is
 * unchanged on error. */
int pst_http_response_write(const pst_http_response_t *resp, int client_minor, int keep_alive,
                            int head_request, pst_buf_t *out, int *chunked);

/* Whether the response's body can only be delimited by closing the client
 * connection (a body of unknown length to an HTTP/1.0 client, RFC 9112 6.3):
 * the connection must then close after the body whatever keep-alive said. */
int pst_http_response_needs_close(const pst_http_response_t *resp, int client_minor,
                                  int head_request);

/* Appends one chunk (RFC 9112 7.1): size line, data, CRLF; len 0 writes the
 * last chunk and the empty trailer section "0\r\n\r\n". Returns 0 or -ENOMEM
 * (out unchanged). */
int pst_http_chunk(pst_buf_t *out, const char *data, size_t len);

/* Appends a complete short response generated by postern (502, 504, 400,
 * 431, ...): "HTTP/1.1 502 Bad Gateway", Content-Type: text/plain;
 * charset=utf-8, Content-Length, Connection: close when close, then body
 * (NULL: "502 Bad Gateway\n"). Returns 0 or -ENOMEM (out unchanged). */
int pst_http_error_write(pst_buf_t *out, int status, const char *body, int close);

/* Reason phrase for a status code ("Bad Gateway"), "" when unknown. */
const char *pst_http_reason(int status);

/* Whether the n bytes at s (borrowed) are a valid Host value: uri-host
 * [ ":" port ] without userinfo (RFC 9110 7.2, RFC 3986 3.2.2). The empty
 * string passes (an empty reg-name): callers that need a name check n. */
int pst_http_authority_ok(const char *s, size_t n);

/* Whether c may appear in a token (RFC 9110 5.6.2): a field name, a
 * method, a transfer coding, a chunk extension's name. */
int pst_http_tchar(unsigned char c);

/* Whether name (len bytes, any case) is a connection-specific field that
 * must not be forwarded: Connection, Keep-Alive, Proxy-Connection, TE,
 * Transfer-Encoding, Upgrade, Trailer (RFC 9110 7.6.1; RFC 9113 8.2.2 for
 * h2, where "te: trailers" is the caller's exception). Fields named by a
 * Connection field are hop-by-hop too; the parsers remove them. */
int pst_http_hop_by_hop(const char *name, size_t len);

#endif
