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
  int default_cert;                      /* index into certs */
  pst_sni_map_t *sni;                    /* server name -> certificate index */
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
