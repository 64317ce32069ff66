/* postern: internals shared by src/h1_parse.c (the parsers: llhttp driven
 * behind the strict scans, the feed loop and the public API) and
 * src/h1_head.c (header field collection and the interpretation of request
 * and response heads). Not a public header: nothing outside these two files
 * uses it. */
#ifndef POSTERN_H1_INT_H
#define POSTERN_H1_INT_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "postern/buf.h"
#include "postern/http-t.h"

/* ---- chunked framing scan (h1_parse.c) ------------------------------------ */

typedef enum {
  CK_SIZE0 = 0, /* at the start of a chunk-size line: a hex digit must come */
  CK_SIZE,      /* in the chunk size */
  CK_EXT,       /* in chunk extensions (ext says where), checked and dropped up to the CR */
  CK_SIZE_LF,   /* after the CR ending a chunk-size line */
  CK_DATA,      /* in chunk data, `left` bytes to go */
  CK_DATA_CR,   /* after chunk data: CR must come */
  CK_DATA_LF,   /* after that CR: LF must come */
  CK_TRAILER,   /* after the last chunk: trailer section, checked like a head */
} h1_ck_state_t;

/* Where the scan of a chunk's extensions stands (RFC 9112 7.1.1):
 *   chunk-ext     = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-val = token / quoted-string */
typedef enum {
  EXT_BWS = 0,  /* BWS before a ";": only SP, HTAB or ";" may come */
  EXT_NAME0,    /* after ";": BWS, then the name's first tchar */
  EXT_NAME,     /* in a name: tchar, BWS, "=", ";" or the CR */
  EXT_NAME_BWS, /* BWS after a name: "=" or ";" must come */
  EXT_VAL0,     /* after "=": BWS, then a token or a quoted-string */
  EXT_TOKEN,    /* in a token value: tchar, BWS, ";" or the CR */
  EXT_QUOTED,   /* in a quoted-string */
  EXT_QPAIR,    /* after a backslash in a quoted-string */
  EXT_END,      /* after a quoted-string: BWS, ";" or the CR */
} h1_ext_state_t;

typedef struct {
  h1_ck_state_t state;
  h1_ext_state_t ext;   /* CK_EXT only */
  uint64_t left;        /* chunk size, then data bytes still to skip */
  size_t line;          /* bytes in the current chunk-size line */
  size_t trailer_bytes; /* bytes of the trailer section so far */
  pst_h1_scan_t trailer;
  const char *why; /* NULL or why the framing is refused */
  int limit;       /* why is a size limit (431), not a syntax error */
  int done;        /* the trailer section ended: the message is complete */
} h1_chunk_scan_t;

/* ---- parser state --------------------------------------------------------- */

typedef enum {
  PH_HEAD = 0, /* reading a head (or waiting for the first byte of one) */
  PH_BODY,     /* the head was handed over; reading the body */
  PH_CLOSED,   /* the last message on this connection ended: discard the rest */
  PH_UPGRADED, /* a 101 ended HTTP on this connection: consume nothing */
  PH_FAILED,   /* refused: every feed returns err */
} h1_phase_t;

typedef enum {
  PAUSE_NONE = 0,
  PAUSE_HEAD, /* on_headers_complete: a head is ready to hand over */
  PAUSE_END,  /* on_message_complete */
  PAUSE_USER, /* a user callback returned nonzero */
} h1_pause_t;

/* One parser, request or response: the llhttp state, the strict scans of
 * the current message and the head being collected. The public parser types
 * (pst_h1_req_parser_t, pst_h1_resp_parser_t) each wrap one. */
typedef struct {
  llhttp_t ll;
  llhttp_settings_t settings; /* must outlive ll (llhttp_init) */
  int is_request;
  size_t max_head;
  void *arg;
  int (*on_req_head)(void *arg, pst_http_request_t *req);
  int (*on_resp_head)(void *arg, pst_http_response_t *resp);
  int (*on_body)(void *arg, const char *data, size_t len);
  int (*on_end)(void *arg);

  h1_phase_t phase;
  h1_pause_t pause;      /* set by the callback that paused llhttp */
  int ll_paused;         /* llhttp is paused: resume before the next execute */
  int end_pending;       /* the message ended but its end was not handled yet */
  int user_rc;           /* what a user callback returned */
  int err, status;       /* the failure, once PH_FAILED */
  int cb_err, cb_status; /* a failure found inside a llhttp callback */
  const char *why;
  int nomem;

  /* Strict checks and limits of the current message. */
  pst_h1_scan_t scan;
  size_t head_bytes;
  h1_chunk_scan_t ck;
  int chunked;
  int keep_alive;
  pst_body_kind_t body;
  int expect_head; /* response parser: the request was HEAD */
  int after_1xx;   /* response parser: a 1xx came, the final head is due */

  /* The head being collected (reset at message begin). */
  pst_buf_t name, value, line; /* line: request target or reason phrase */
  pst_headers_t headers;
  pst_buf_t te, conn, upgrade; /* list fields, combined with ", " */
  char *host;
  unsigned host_n, fields;
  int te_seen, expect_continue, expect_other;
  pst_http_request_t *req; /* built, not yet handed over */
  pst_http_response_t *resp;
} h1_t;

/* ---- shared by the two files ---------------------------------------------- */

/* The value of hex digit c, or -1 when c is not one. (h1_parse.c) */
int pst_h1_hexval(unsigned char c);

/* Records that an allocation failed in a llhttp callback; returns what makes
 * llhttp stop (the feed then fails with -ENOMEM). (h1_parse.c) */
int pst_h1_nomem(h1_t *h);

/* Files one complete field from h->name and h->value (both cleared): framing
 * and connection fields are kept aside, the others go to h->headers. Returns
 * 0, or -1 after recording a refusal (431: too many fields) or an allocation
 * failure in h: what makes llhttp stop. (h1_head.c) */
int pst_h1_field_done(h1_t *h);

/* Validate the head that llhttp has just finished (RFC 9112, RFC 9110) and
 * build h->req or h->resp from it, owned by h until handed over. They return
 * llhttp's answer for on_headers_complete: HPE_PAUSED (h->pause set to
 * PAUSE_HEAD), 1 (a response without body: message complete follows at
 * once), or -1 after recording a refusal or an allocation failure in h.
 * (h1_head.c) */
int pst_h1_request_head(h1_t *h);
int pst_h1_response_head(h1_t *h);

#endif
