/* postern: the "builtin:info" backend. An HTTP/1.1 responder (llhttp, strict)
 * that describes the TLS handshake of the connection it runs on. It does no
 * I/O: it is fed the decrypted request bytes and appends response bytes to a
 * buffer that the connection encrypts and sends. */
#ifndef POSTERN_INFO_H
#define POSTERN_INFO_H

#include <stddef.h>

#include "postern/buf.h"
#include "postern/cert-t.h"

/* Facts about the connection, owned by the caller, valid during the call. */
typedef struct {
  const char *client;      /* "127.0.0.1:51234" */
  const char *sni;         /* NULL when the client sent none */
  const char *alpn;        /* NULL when none was negotiated */
  const char *version;     /* "TLSv1.3" */
  const char *cipher;      /* "TLS_AES_128_GCM_SHA256" */
  const char *group;       /* "X25519" */
  int resumed;             /* nonzero for a resumed session */
  const char *early_data;  /* "not sent", "rejected", "accepted" */
  double handshake_ms;
  const pst_cert_info_t *chain; /* the chain served, leaf first */
  size_t chain_len;
  const char *listener;    /* listener name */
} pst_info_facts_t;

typedef struct pst_info_s pst_info_t;

/* Returns a new responder, or NULL when out of memory. */
pst_info_t *pst_info_new(void);

/* Feeds request bytes. Each complete request gets a response appended to out:
 * 200 with an HTML page, or JSON when the request's Accept header contains
 * "application/json"; GET and HEAD only (405 otherwise); keep-alive as
 * HTTP/1.1 says (RFC 9112 9.3), answering pipelined requests in order.
 * Returns 0 to keep reading, 1 when the connection should close once out is
 * sent ("Connection: close", an HTTP/1.0 request, or a request head over
 * 8 KiB, answered with 431), PST_EPROTO after a malformed request (a 400
 * response has been appended; close after sending), or -ENOMEM (out holds
 * only whole responses). After a nonzero return every later call returns the
 * same value and appends nothing. */
int pst_info_feed(pst_info_t *info, const char *data, size_t len,
                  const pst_info_facts_t *facts, pst_buf_t *out);

/* Builds the page for facts, without an HTTP head: JSON when json is set,
 * else HTML; *content_type gets the matching static media type. Used by the
 * HTTP/2 front end. Returns 0 or -ENOMEM. */
int pst_info_render(const pst_info_facts_t *facts, int json, pst_buf_t *body,
                    const char **content_type);

/* Frees the responder. NULL is allowed. */
void pst_info_free(pst_info_t *info);

#endif
