/* postern: TLS types shared beyond the TLS module. */
#ifndef POSTERN_TLS_T_H
#define POSTERN_TLS_T_H

/* A client certificate that verified against tls.client_auth.ca_file
 * (tls.c). Made in the handshake, only for connections that sent one, and
 * freed with the connection (pst_tls_conn_release): a connection without
 * client_auth never has one. Read-only once the handshake is done. */
typedef struct pst_client_cert_s {
  char *subject;   /* the leaf's subject, one line ("/O=Example/CN=alice") */
  char *issuer;    /* the leaf's issuer, one line */
  char *cn;        /* the subject's common name; NULL when it has none (PROXY v2's
                    * PP2_SUBTYPE_SSL_CN) */
  char *not_after; /* "2027-03-03 15:29:24 UTC" */
  /* RFC 9440 2: the Client-Cert field value, ":<base64 DER of the leaf>:",
   * and Client-Cert-Chain, the rest of the chain the client sent, each
   * ":<base64 DER>:" joined by ", " (NULL when it sent the leaf alone).
   * Both NULL unless the listener forwards them (client_auth.forward:
   * headers). */
  char *header;
  char *chain_header;
} pst_client_cert_t;

#endif
