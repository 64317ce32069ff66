/* postern: the "builtin:info" backend's page: a description of the TLS
 * handshake of the connection a request came on. Pure rendering, no I/O:
 * the backend module (pool.h) serves it as an in-process backend. */
#ifndef POSTERN_INFO_H
#define POSTERN_INFO_H

#include <stddef.h>

#include "postern/buf.h"
#include "postern/cert-t.h"

/* Facts about the connection, owned by the caller, valid during the call. */
typedef struct {
  const char *client;     /* "127.0.0.1:51234" */
  const char *sni;        /* NULL when the client sent none */
  const char *alpn;       /* NULL when none was negotiated */
  const char *version;    /* "TLSv1.3" */
  const char *cipher;     /* "TLS_AES_128_GCM_SHA256" */
  const char *group;      /* "X25519" */
  int resumed;            /* nonzero for a resumed session */
  const char *early_data; /* "not sent", "rejected", "accepted" */
  double handshake_ms;
  const pst_cert_info_t *chain; /* the chain served, leaf first */
  size_t chain_len;
  /* The served certificate's OCSP response (cert_ocsp.c): "good", "not
   * stapled", "revoked", or NULL with none configured; its nextUpdate
   * (0: none or unknown). */
  const char *ocsp;
  time_t ocsp_next_update;
  const char *listener; /* listener name */
  /* The verified client certificate (tls.client_auth), NULL for none. */
  const char *client_subject;
  const char *client_issuer;
  const char *client_not_after;
} pst_info_facts_t;

/* Appends to out the complete HTTP/1.1 response builtin:info gives to a
 * request with this method and Accept field value (NULL: none; several
 * Accept fields joined with ", " by the caller): for GET
 * 200 with the page (JSON when Accept contains "application/json", else
 * HTML; Vary: Accept), for HEAD the same head without content (RFC 9110
 * 9.3.2), for any other method 405 with Allow (RFC 9110 15.5.6). No
 * Connection field: the front end decides about its client connection.
 * facts is borrowed (NULL: every fact unknown). Returns 0 or -ENOMEM (out
 * unchanged). */
int pst_info_respond(const char *method, const char *accept, const pst_info_facts_t *facts,
                     pst_buf_t *out);

/* Builds the page for facts, without an HTTP head: JSON when json is set,
 * else HTML; *content_type gets the matching static media type. Returns 0
 * or -ENOMEM. */
int pst_info_render(const pst_info_facts_t *facts, int json, pst_buf_t *body,
                    const char **content_type);

#endif
