/* postern: HTTP message types shared by the HTTP/1.1 and HTTP/2 front ends
 * and the HTTP/1.1 backend side. */
#ifndef POSTERN_HTTP_T_H
#define POSTERN_HTTP_T_H

#include <stddef.h>
#include <stdint.h>

#include "postern/config-t.h"

/* One header field. Names are lower-case (RFC 9110 5.1: case-insensitive;
 * RFC 9113 8.2.1 requires lower case on h2). Both strings NUL-terminated and
 * owned by the list. */
typedef struct {
  char *name;
  char *value;
  size_t name_len;
  size_t value_len;
} pst_header_t;

typedef struct {
  pst_header_t *v;
  size_t n;
  size_t cap;
  size_t bytes; /* sum of name and value lengths, for limits */
} pst_headers_t;

typedef enum {
  PST_BODY_NONE = 0,        /* no body (GET without framing, HEAD response, 204, 304) */
  PST_BODY_LENGTH = 1,      /* Content-Length bytes */
  PST_BODY_CHUNKED = 2,     /* chunked transfer coding (h1) */
  PST_BODY_UNTIL_CLOSE = 3, /* response delimited by the backend closing (RFC 9112 6.3 item 8) */
  PST_BODY_STREAM = 4,      /* h2 request/response body of unknown length (DATA until END_STREAM) */
} pst_body_kind_t;

/* A request as postern forwards it. Hop-by-hop fields (RFC 9110 7.6.1:
 * Connection and the fields it names, Keep-Alive, Proxy-Connection, TE,
 * Transfer-Encoding, Upgrade, Trailer) and framing fields are NOT in headers:
 * they are described by the flags and rebuilt when the request is written. */
typedef struct {
  char *method;
  char *target;    /* origin-form: path and query ("/a?b") */
  char *authority; /* Host or :authority, without userinfo */
  pst_headers_t headers;
  pst_body_kind_t body;
  uint64_t content_length;      /* PST_BODY_LENGTH only */
  int http_minor;               /* h1 client: 0 or 1; h2: 1 */
  unsigned keep_alive : 1;      /* the client keeps the connection after this exchange (h1) */
  unsigned expect_continue : 1; /* Expect: 100-continue (RFC 9110 10.1.1) */
  unsigned upgrade : 1;         /* Connection: Upgrade with an Upgrade field (h1 only) */
  char *upgrade_proto;          /* the Upgrade field's value, when upgrade */
} pst_http_request_t;

/* A response head from the backend. Hop-by-hop and framing fields removed as
 * for requests. */
typedef struct {
  int status;
  char *reason;
  pst_headers_t headers;
  pst_body_kind_t body;
  uint64_t content_length; /* PST_BODY_LENGTH only */
  unsigned keep_alive : 1; /* the backend connection can be reused afterwards */
  unsigned upgrade : 1;    /* 101 Switching Protocols to the requested protocol */
  char *upgrade_proto;     /* the 101's Upgrade field value ("websocket"), or NULL */
} pst_http_response_t;

typedef struct {
  const char *client_ip; /* "192.0.2.1" or "2001:db8::1" (no port, no brackets) */
  pst_forwarded_t mode;
  int early_data; /* add Early-Data: 1 (RFC 8470 5.1) */
  /* RFC 9440 2: Client-Cert and Client-Cert-Chain field values of the
   * verified client certificate (tls-t.h), NULL for none. Whatever the
   * client sent in these fields is always dropped. */
  const char *client_cert;
  const char *client_cert_chain;
} pst_forward_info_t;

/* State of pst_h1_head_scan() over one HTTP/1.1 message head. Zero it with
 * pst_h1_scan_init() before each head; the fields after why are private. */
typedef struct {
  const char *why;       /* NULL, or why the head is malformed (static text) */
  unsigned char done;    /* the blank line that ends the head was seen */
  unsigned char request; /* a request head: the request line is checked too */
  unsigned char eol;     /* line-end state: mid-line, after CR, at a line start */
  unsigned char line;    /* 0 in the start line, 1 in the field lines */
  unsigned char started; /* a non-empty line began (earlier empty lines skipped) */
  unsigned char in_name; /* in a field line, before its colon */
  unsigned char blank;   /* the line ended by the pending CR was empty */
  unsigned char prev_sp; /* the previous start-line byte was SP */
} pst_h1_scan_t;

#endif
