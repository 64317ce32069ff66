/* postern: what a connection says about itself: the client's address, the
 * server name it asked for (kept escaped), the reasons it closes for, its
 * log line and the facts builtin:info shows. Part of the conn module
 * (src/conn_int.h declares these); conn.c drives the connection. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"
#include "postern/cert.h"
#include "postern/common.h"
#include "postern/early.h"
#include "postern/log.h"
#include "postern/tls.h"

/* The longest server name kept (RFC 6066 3: a DNS host name, at most 255
 * bytes); a longer one is cut, as it always was. */
#define CONN_SNI_MAX 255

int pst_conn_peer_name(pst_conn_t *conn) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&conn->client.tcp, (struct sockaddr *)&ss, &len) != 0) {
    ss.ss_family = AF_UNSPEC;
  }
  return pst_conn_peer_set(conn, (struct sockaddr *)&ss);
}

int pst_conn_peer_set(pst_conn_t *conn, const struct sockaddr *sa) {
  char host[48] = "?";
  char peer[80];
  int port = 0;
  const char *fmt = "%s:%d";
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(sin6, host, sizeof(host));
    port = ntohs(sin6->sin6_port);
    fmt = "[%s]:%d";
  } else if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
    uv_ip4_name(sin, host, sizeof(host));
    port = ntohs(sin->sin_port);
  }
  int n = snprintf(peer, sizeof(peer), fmt, host, port);
  if (n < 0 || (size_t)n >= sizeof(peer)) n = (int)strlen(peer);
  size_t hlen = strlen(host);
  char *buf = malloc((size_t)n + 1 + hlen + 1);
  if (buf == NULL) return -ENOMEM;
  memcpy(buf, peer, (size_t)n + 1);
  memcpy(buf + n + 1, host, hlen + 1);
  free(conn->peer_buf);
  conn->peer_buf = buf;
  conn->host.peer = buf;
  conn->host.peer_ip = buf + n + 1;
  return 0;
}

void pst_conn_keep_sni(pst_conn_t *conn, const unsigned char *name, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (conn->sni_buf != NULL || n == 0) return;
  if (n > CONN_SNI_MAX) n = CONN_SNI_MAX;
  char *sni = malloc(n * 4 + 1);
  if (sni == NULL) return;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = name[i];
    if (c >= 'A' && c <= 'Z') {
      sni[o++] = (char)(c + ('a' - 'A'));
    } else if (c > 0x20 && c < 0x7f && c != '\\') {
      sni[o++] = (char)c;
    } else {
      sni[o++] = '\\';
      sni[o++] = 'x';
      sni[o++] = hex[c >> 4];
      sni[o++] = hex[c & 0xf];
    }
  }
  sni[o] = '\0';
  conn->sni_buf = sni;
  conn->host.sni = sni;
}

void pst_conn_record_sni(pst_conn_t *conn) {
  void *name = NULL;
  unsigned short n = wolfSSL_SNI_GetRequest(conn->ssl, WOLFSSL_SNI_HOST_NAME, &name);
  if (name != NULL) pst_conn_keep_sni(conn, name, n);
}

const char *pst_conn_vwhy(pst_conn_t *conn, const char *fmt, va_list ap) {
  /* Allocated once and then reused, so that a reason already handed to
   * pst_conn_close stays valid memory however often it is rewritten. */
  if (conn->why == NULL && (conn->why = malloc(PST_CONN_WHY_LEN)) == NULL) {
    return "out of memory (the reason could not be recorded)";
  }
  vsnprintf(conn->why, PST_CONN_WHY_LEN, fmt, ap);
  return conn->why;
}

void pst_conn_log(pst_conn_t *conn, const char *reason) {
  /* A connection refused for its PROXY header was logged by conn_proxy.c,
   * rate-limited: a flood of them must not flood the log. */
  if (!pst_log_enabled(PST_LOG_INFO) || conn->proxy_logged) return;
  const char *alpn = conn->alpn != NULL ? conn->alpn : "-";
  const char *version = conn->version, *cipher = conn->cipher;
  const pst_early_status_t early = conn->early.status;
  double dur = (double)(uv_hrtime() - conn->t_start_ns) / 1e6;
  pst_log_info(
      "conn %llu client=%s listener=%s sni=%s alpn=%s version=%s cipher=%s "
      "handshake_ms=%.2f resumed=%d early_data=%s backend=%s bytes_in=%llu "
      "bytes_out=%llu duration_ms=%.1f close=%s%s%s",
      (unsigned long long)conn->host.id, conn->host.peer, conn->gl->conf->name,
      conn->host.sni[0] ? conn->host.sni : "-", alpn, version ? version : "-",
      cipher ? cipher : "-", conn->handshake_ms,
      conn->handshake_ms > 0 && wolfSSL_session_reused(conn->ssl),
      early == PST_EARLY_NOT_SENT   ? "none"
      : early == PST_EARLY_REPLAYED ? "replayed"
                                    : pst_early_status_name(early),
      conn->host.backend != NULL ? conn->host.backend->addr.text : "-",
      (unsigned long long)conn->bytes_in, (unsigned long long)conn->bytes_out, dur,
      conn->err == 0 ? "ok" : reason, conn->err == 0 || conn->err == PST_ETLS ? "" : ": ",
      conn->err == 0 || conn->err == PST_ETLS ? "" : pst_strerror(conn->err));
}

void pst_conn_facts(pst_conn_t *conn, pst_info_facts_t *f) {
  WOLFSSL *ssl = conn->ssl;
  memset(f, 0, sizeof(*f));
  f->listener = conn->gl->conf->name;
  f->client = conn->host.peer;
  f->sni = conn->host.sni[0] ? conn->host.sni : NULL;
  f->alpn = conn->alpn;
  f->version = conn->version;
  f->cipher = conn->cipher;
  f->group = pst_tls_group_name(ssl);
  f->resumed = wolfSSL_session_reused(ssl);
  f->early_data = pst_early_status_name(conn->early.status);
  f->handshake_ms = conn->handshake_ms;
  const pst_cert_t *cert = conn->gl->certs[pst_tls_cert_index(conn->gl, ssl)];
  f->chain = cert->chain;
  f->chain_len = cert->chain_len;
  if (cert->ocsp_path != NULL || cert->must_staple) {
    f->ocsp = pst_cert_staple_desc(cert);
    f->ocsp_next_update = cert->staple != NULL ? cert->staple_next_update : 0;
  }
  const pst_client_cert_t *cc = ssl != NULL ? pst_tls_client_cert(ssl) : NULL;
  if (cc != NULL) {
    f->client_subject = cc->subject;
    f->client_issuer = cc->issuer;
    f->client_not_after = cc->not_after;
  }
}
