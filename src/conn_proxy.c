/* postern: the PROXY protocol on a client connection (the conn module;
 * conn_int.h): on a listener with accept_proxy, the peer checked against
 * trusted_proxies at accept and the header read before any byte goes to
 * wolfSSL (state PST_CONN_PROXY); and the header postern sends first to a
 * server (host->ops->proxy_header), which says who the client is. The
 * parsing and writing themselves are proxy.c's. */
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_int.h"
#include "postern/common.h"
#include "postern/conn.h"
#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/proxy.h"
#include "postern/tls.h"

/* Refusals logged per second, process-wide, at most: a flood of bad
 * headers is counted (metrics) and summarised, not written line by line. */
#define PROXY_LOG_PER_SEC 10

static atomic_uint_fast64_t log_window; /* the second the count below is for */
static atomic_uint log_count;           /* refusals seen in that second */

/* Whether this refusal may be logged; when a new second starts, says how
 * many of the last one were not. Atomics only: workers share it. */
static int proxy_log_allowed(uint64_t now_s) {
  uint64_t w = atomic_load_explicit(&log_window, memory_order_relaxed);
  if (w != now_s && atomic_compare_exchange_strong_explicit(
                        &log_window, &w, now_s, memory_order_relaxed, memory_order_relaxed)) {
    unsigned before = atomic_exchange_explicit(&log_count, 0, memory_order_relaxed);
    if (before > PROXY_LOG_PER_SEC) {
      pst_log_warn("PROXY protocol: %u more refused connections not logged",
                   before - PROXY_LOG_PER_SEC);
    }
  }
  return atomic_fetch_add_explicit(&log_count, 1, memory_order_relaxed) < PROXY_LOG_PER_SEC;
}

/* Closes conn for its PROXY header (or its source): counted, logged once
 * with the peer and the reason (rate-limited), then the usual close. */
static void proxy_refuse(pst_conn_t *conn, pst_metric_t m, int err, const char *why) {
  pst_metric_inc(m);
  conn->proxy_logged = 1;
  if (proxy_log_allowed(uv_hrtime() / 1000000000u)) {
    pst_log_warn("conn %llu: client %s on listener %s refused: %s",
                 (unsigned long long)conn->host.id, conn->host.peer, conn->gl->conf->name, why);
  }
  pst_conn_close(conn, err, why);
}

int pst_conn_proxy_start(pst_conn_t *conn) {
  const pst_listener_conf_t *lc = conn->gl->conf;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  assert(conn->state == PST_CONN_PROXY);
  int rc = uv_tcp_getpeername(&conn->client.tcp, (struct sockaddr *)&ss, &len);
  if (rc != 0) {
    pst_conn_close(conn, rc, "cannot read the client's address");
    return rc;
  }
  if (!pst_proxy_cidr_match(lc->trusted_proxies, lc->n_trusted_proxies, (struct sockaddr *)&ss)) {
    proxy_refuse(conn, PST_M_PROXY_UNTRUSTED, PST_EPROTO,
                 "not in trusted_proxies: only those may send PROXY headers (accept_proxy)");
    return PST_EPROTO;
  }
  return 0;
}

/* The header is whole: its addresses become the connection's. */
static int proxy_apply(pst_conn_t *conn, const pst_proxy_hdr_t *h) {
  if (h->local) return 0; /* the balancer's own connection: the socket's addresses */
  conn->proxied = malloc(sizeof(*conn->proxied));
  if (conn->proxied == NULL) return -ENOMEM;
  conn->proxied->src = h->src;
  conn->proxied->dst = h->dst;
  return pst_conn_peer_set(conn, (const struct sockaddr *)&h->src);
}

int pst_conn_proxy_input(pst_conn_t *conn, const char *data, size_t n) {
  const pst_listener_conf_t *lc = conn->gl->conf;
  const char *p = data, *why;
  size_t len = n;
  assert(conn->state == PST_CONN_PROXY);
  if (conn->cin.len > 0) {
    /* Kept bytes: a header is at most PST_PROXY_MAX, so no more than that
     * is ever held while waiting; the rest of this read stays in the read
     * slab until the header is known. */
    size_t room = PST_PROXY_MAX - conn->cin.len, k = n < room ? n : room;
    if (pst_buf_append(&conn->cin, data, k) != 0) {
      pst_conn_close(conn, -ENOMEM, "out of memory");
      return -ENOMEM;
    }
    data += k;
    n -= k;
    p = pst_buf_head(&conn->cin);
    len = conn->cin.len;
  }
  pst_proxy_hdr_t h;
  int hlen = pst_proxy_parse(p, len, lc->accept_proxy, &h, &why);
  if (hlen < 0) {
    proxy_refuse(conn, PST_M_PROXY_REFUSED, PST_EPROTO,
                 pst_conn_why(conn, "bad PROXY header: %s", why));
    return hlen;
  }
  if (hlen == 0) {
    /* A valid beginning, shorter than the bound (pst_proxy_parse): kept. */
    if (p == data && pst_buf_append(&conn->cin, data, n) != 0) {
      pst_conn_close(conn, -ENOMEM, "out of memory");
      return -ENOMEM;
    }
    return 0;
  }
  int rc = proxy_apply(conn, &h);
  if (rc != 0) {
    pst_conn_close(conn, rc, "out of memory");
    return rc;
  }
  /* What follows the header is the client's TLS stream. */
  if (p == data) {
    conn->in_ptr = data + hlen;
    conn->in_len = n - (size_t)hlen;
    conn->in_is_cin = 0;
  } else {
    pst_buf_consume(&conn->cin, (size_t)hlen);
    if (n > 0 && pst_buf_append(&conn->cin, data, n) != 0) {
      pst_conn_close(conn, -ENOMEM, "out of memory");
      return -ENOMEM;
    }
    conn->in_ptr = pst_buf_head(&conn->cin);
    conn->in_len = conn->cin.len;
    conn->in_is_cin = 1;
  }
  pst_conn_set_state(conn, PST_CONN_HANDSHAKE);
  return 1;
}

void pst_conn_proxy_fail(pst_conn_t *conn, int err) {
  const char *why = err == PST_ETIMEDOUT ? "no whole PROXY header within the handshake timeout"
                    : conn->cin.len > 0  ? "the client closed within its PROXY header (truncated)"
                                         : "the client closed before sending a PROXY header";
  proxy_refuse(conn, PST_M_PROXY_REFUSED, err, why);
}

/* PP2_SUBTYPE_SSL_KEY_ALG: the served certificate's key, as HAProxy names
 * it ("RSA2048", "EC256"). */
static const char *key_alg(const pst_cert_info_t *leaf, char *buf, size_t len) {
  switch (leaf->key_type) {
    case PST_KEY_RSA: snprintf(buf, len, "RSA%d", leaf->key_bits); return buf;
    case PST_KEY_ECDSA: snprintf(buf, len, "EC%d", leaf->key_bits); return buf;
    case PST_KEY_ED25519: return "ED25519";
    case PST_KEY_OTHER: break;
  }
  return NULL;
}

int pst_conn_proxy_header(pst_conn_t *conn, pst_proxy_t version, pst_buf_t *out) {
  struct sockaddr_storage peer, local;
  const struct sockaddr *src = NULL, *dst = NULL;
  if (conn->proxied != NULL) {
    src = (const struct sockaddr *)&conn->proxied->src;
    dst = (const struct sockaddr *)&conn->proxied->dst;
  } else {
    int plen = sizeof(peer), llen = sizeof(local);
    if (uv_tcp_getpeername(&conn->client.tcp, (struct sockaddr *)&peer, &plen) == 0 &&
        uv_tcp_getsockname(&conn->client.tcp, (struct sockaddr *)&local, &llen) == 0) {
      src = (const struct sockaddr *)&peer;
      dst = (const struct sockaddr *)&local;
    }
  }
  char uid[64], kbuf[32];
  snprintf(uid, sizeof(uid), "%ld-%u-%llu", (long)getpid(), conn->worker->id,
           (unsigned long long)conn->host.id);
  const pst_cert_t *cert = conn->gl->certs[pst_tls_cert_index(conn->gl, conn->ssl)];
  WOLFSSL_X509 *x = wolfSSL_get_certificate(conn->ssl);
  const char *sig = x != NULL ? wolfSSL_OBJ_nid2sn(wolfSSL_X509_get_signature_nid(x)) : NULL;
  const pst_client_cert_t *cc = pst_tls_client_cert(conn->ssl); /* tls.client_auth */
  pst_proxy_info_t info = {
      .src = src,
      .dst = dst,
      .alpn = conn->alpn,
      .authority = conn->host.sni,
      .ssl = 1,
      /* Read from the session, not conn->version: an application started
       * on 0-RTT data asks before the handshake completes. */
      .ssl_version = wolfSSL_get_version(conn->ssl),
      .ssl_cipher = pst_tls_cipher_name(conn->ssl),
      .ssl_sig_alg = sig,
      .ssl_key_alg = cert->chain_len > 0 ? key_alg(&cert->chain[0], kbuf, sizeof(kbuf)) : NULL,
      .ssl_client_cert = cc != NULL,
      .ssl_cn = cc != NULL ? cc->cn : NULL,
      .unique_id = uid,
  };
  return pst_proxy_write(version, &info, out);
}
