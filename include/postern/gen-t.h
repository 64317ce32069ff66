/* postern: a configuration generation: the parsed config plus everything
 * built from it (certificates, TLS contexts, SNI and route maps). Immutable
 * once built and shared by every worker; each connection holds a reference
 * to the generation it was accepted under. */
#ifndef POSTERN_GEN_T_H
#define POSTERN_GEN_T_H

#include <stdatomic.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "postern/cert-t.h"
#include "postern/config-t.h"
#include "postern/sni.h"

/* The certificates that may serve one server name, in the order the
 * handshake tries them (tls.c): those naming it exactly, then those whose
 * wildcard covers it, each group ordered by pst_cert_kind_t (ECDSA P-256,
 * P-384, P-521, RSA, Ed25519). Two certificates of one kind never share a
 * name (a config error), so a group holds one certificate per kind. */
#define PST_CERT_SET_MAX (2 * PST_CERT_KIND_OTHER)
typedef struct {
  int16_t cert[PST_CERT_SET_MAX]; /* indexes into pst_gen_listener_t.certs */
  uint8_t kind[PST_CERT_SET_MAX]; /* pst_cert_kind_t of each */
  uint8_t n;
} pst_cert_set_t;

typedef struct {
  const pst_listener_conf_t *conf;
  /* The context every connection of this listener is created from: versions,
   * ciphers, groups, ALPN and SNI callbacks, and the default certificate. */
  WOLFSSL_CTX *ctx;
  /* One context per certificate, which the SNI callback switches to; only its
   * certificate, chain and key are used (see wolfSSL_set_SSL_CTX). */
  WOLFSSL_CTX **cert_ctx;
  pst_cert_t **certs;
  size_t n_certs;
  int default_cert;     /* index into certs: what ctx holds */
  pst_sni_map_t *sni;   /* server name -> index into sets */
  pst_cert_set_t *sets; /* candidates per server name (above) */
  size_t n_sets;
  int default_set; /* for no server name, or an unknown one (unknown_sni: default) */
  /* tls.client_auth.ca_file's bytes (PEM), checked at load; NULL without
   * client_auth. Every context verifies client certificates against it. */
  unsigned char *client_ca_pem;
  size_t client_ca_pem_len;
  pst_sni_map_t *routes;                 /* server name -> route index; NULL without routes */
  struct pst_access_file_s *access_file; /* the access log (one reference), NULL when off */
  /* Ticket keys (one reference): process-wide, shared with the listeners of
   * other generations that name the same keys, so tickets survive reloads. */
  struct pst_ticket_src_s *tickets;
} pst_gen_listener_t;

typedef struct pst_gen_s {
  atomic_uint refs;
  uint64_t number; /* 1 for the first generation, +1 per reload */
  pst_config_t *cfg;
  pst_gen_listener_t *listeners; /* cfg->n_listeners entries */
} pst_gen_t;

#endif
