/* postern: the "builtin:info" backend's page.
 *
 * An in-process backend (pool.h leases it like any other) whose answer to
 * every GET or HEAD is a description of the TLS handshake of the connection
 * the request came on, as HTML or, when asked for, JSON. It is what the
 * shipped configuration routes to, so `make run` works without any other
 * server. It parses nothing: the HTTP front ends parsed the request (with
 * the same strict rules as for any backend), and its response goes back
 * through the same HTTP/1.1 response parser as a real backend's. */
#include "postern/info.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "postern/common.h"

/* Appends a string literal, its length counted by the compiler. */
#define APPEND_LIT(b, lit) pst_buf_append((b), (lit), sizeof(lit) - 1)

/* Room for an IMF-fixdate even with absurd struct tm fields: the compiler
 * checks the worst case of the format. */
#define INFO_DATE_MAX 160

static const pst_info_facts_t no_facts; /* every fact unknown */
/* ---- small helpers ---------------------------------------------------- */

/* Case-insensitive search of an ASCII needle in n bytes (not NUL-ended). */
static int contains_ci(const char *hay, size_t n, const char *needle) {
  size_t m = strlen(needle);
  for (size_t i = 0; m <= n && i <= n - m; i++) {
    if (strncasecmp(hay + i, needle, m) == 0) return 1;
  }
  return 0;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 4), or 0 when the
 * bytes there are not one: overlong forms, surrogates and truncated sequences
 * all count as invalid, so hostile bytes never reach the page unchanged. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (s[0] < 0x80) return 1;
  if (s[0] >= 0xC2 && s[0] <= 0xDF) {
    len = 2;
  } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
    len = 3;
    if (s[0] == 0xE0) lo = 0xA0;
    if (s[0] == 0xED) hi = 0x9F;
  } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
    len = 4;
    if (s[0] == 0xF0) lo = 0x90;
    if (s[0] == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++) {
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  }
  return len;
}

/* Formats t as "YYYY-MM-DD HH:MM:SS UTC". Returns 0, or -1 when t is out of
 * range for the calendar. */
static int fmt_utc(time_t t, char out[32]) {
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL) return -1;
  if (strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0) return -1;
  return 0;
}

/* Formats now as an IMF-fixdate (RFC 9110 5.6.7). Day and month names come
 * from tables because strftime's follow the locale. */
static void fmt_http_date(char out[INFO_DATE_MAX]) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t now = time(NULL);
  struct tm tm;
  if (gmtime_r(&now, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
      tm.tm_mon > 11) {
    memset(&tm, 0, sizeof(tm)); /* 1900-01-00: obviously wrong, still valid syntax */
  }
  snprintf(out, INFO_DATE_MAX, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
           months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- escaping --------------------------------------------------------- */

/* Appends s as a JSON string literal (RFC 8259 7), or null when s is NULL.
 * Quote, backslash and control characters are escaped; bytes that are not
 * UTF-8 become U+FFFD so the document stays valid (RFC 8259 8.1). */
static int json_str(pst_buf_t *b, const char *s) {
  if (s == NULL) return APPEND_LIT(b, "null");
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s), run = 0;
  int rc = APPEND_LIT(b, "\"");
  for (size_t i = 0; rc == 0 && i < n;) {
    size_t k = utf8_len(p + i, n - i);
    if (k > 0 && p[i] >= 0x20 && p[i] != '"' && p[i] != '\\') {
      run += k; /* copied later in one append */
      i += k;
      continue;
    }
    rc = pst_buf_append(b, p + i - run, run);
    run = 0;
    if (rc != 0) break;
    if (k == 0) {
      rc = APPEND_LIT(b, "\\ufffd");
      i++;
    } else if (p[i] == '"' || p[i] == '\\') {
      char esc[2] = {'\\', (char)p[i]};
      rc = pst_buf_append(b, esc, 2);
      i++;
    } else {
      rc = pst_buf_printf(b, "\\u%04x", p[i]);
      i++;
    }
  }
  if (rc == 0) rc = pst_buf_append(b, p + n - run, run);
  if (rc == 0) rc = APPEND_LIT(b, "\"");
  return rc;
}

/* Appends s as HTML text or attribute content: the five characters with a
 * meaning in markup become character references, and invalid UTF-8 and
 * control characters (other than tab, LF and CR) become U+FFFD. */
static int html_str(pst_buf_t *b, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s), run = 0;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n;) {
    size_t k = utf8_len(p + i, n - i);
    const char *rep = NULL;
    if (k == 0 || (p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') || p[i] == 0x7F) {
      rep = "\xEF\xBF\xBD";
    } else if (p[i] == '&') {
      rep = "&amp;";
    } else if (p[i] == '<') {
      rep = "&lt;";
    } else if (p[i] == '>') {
      rep = "&gt;";
    } else if (p[i] == '"') {
      rep = "&quot;";
    } else if (p[i] == '\'') {
      rep = "&#39;";
    }
    if (rep == NULL) {
      run += k;
      i += k;
      continue;
    }
    rc = pst_buf_append(b, p + i - run, run);
    run = 0;
    if (rc == 0) rc = pst_buf_append(b, rep, strlen(rep));
    i += k > 0 ? k : 1;
  }
  if (rc == 0) rc = pst_buf_append(b, p + n - run, run);
  return rc;
}

/* ---- response bodies -------------------------------------------------- */

/* Appends the JSON description of the connection. The keys are a contract
 * (tests and users' scripts read them); unknown facts are null. */
static int build_json(pst_buf_t *b, const pst_info_facts_t *f) {
  static const char *const keys[] = {"listener", "client", "sni",  "alpn",
                                     "version",  "cipher", "group"};
  const char *vals[] = {f->listener, f->client, f->sni, f->alpn, f->version, f->cipher, f->group};
  int rc = APPEND_LIT(b, "{");
  for (size_t i = 0; rc == 0 && i < PST_ARRAY_SIZE(keys); i++) {
    rc = pst_buf_printf(b, "%s\"%s\":", i > 0 ? "," : "", keys[i]);
    if (rc == 0) rc = json_str(b, vals[i]);
  }
  if (rc == 0)
    rc = pst_buf_printf(b, ",\"resumed\":%s,\"early_data\":", f->resumed ? "true" : "false");
  if (rc == 0) rc = json_str(b, f->early_data);
  /* JSON has no NaN or infinity (RFC 8259 6). */
  if (rc == 0 && isfinite(f->handshake_ms)) {
    rc = pst_buf_printf(b, ",\"handshake_ms\":%.2f", f->handshake_ms);
  } else if (rc == 0) {
    rc = pst_buf_printf(b, ",\"handshake_ms\":null");
  }
  /* The served certificate's OCSP response, or null without one. */
  if (rc == 0 && f->ocsp != NULL) {
    char when[32];
    rc = APPEND_LIT(b, ",\"ocsp\":{\"status\":");
    if (rc == 0) rc = json_str(b, f->ocsp);
    if (rc == 0) rc = APPEND_LIT(b, ",\"next_update\":");
    if (rc == 0) {
      rc = json_str(
          b, f->ocsp_next_update != 0 && fmt_utc(f->ocsp_next_update, when) == 0 ? when : NULL);
    }
    if (rc == 0) rc = APPEND_LIT(b, "}");
  } else if (rc == 0) {
    rc = APPEND_LIT(b, ",\"ocsp\":null");
  }
  /* The verified client certificate (tls.client_auth), or null. */
  if (rc == 0 && f->client_subject != NULL) {
    rc = APPEND_LIT(b, ",\"client_cert\":{\"subject\":");
    if (rc == 0) rc = json_str(b, f->client_subject);
    if (rc == 0) rc = APPEND_LIT(b, ",\"issuer\":");
    if (rc == 0) rc = json_str(b, f->client_issuer);
    if (rc == 0) rc = APPEND_LIT(b, ",\"not_after\":");
    if (rc == 0) rc = json_str(b, f->client_not_after);
    if (rc == 0) rc = APPEND_LIT(b, "}");
  } else if (rc == 0) {
    rc = APPEND_LIT(b, ",\"client_cert\":null");
  }
  if (rc == 0) rc = APPEND_LIT(b, ",\"chain\":[");
  for (size_t i = 0; rc == 0 && f->chain != NULL && i < f->chain_len; i++) {
    const pst_cert_info_t *c = &f->chain[i];
    char when[32];
    rc = i > 0 ? APPEND_LIT(b, ",") : 0;
    if (rc == 0) rc = APPEND_LIT(b, "{\"subject\":");
    if (rc == 0) rc = json_str(b, c->subject);
    if (rc == 0) rc = APPEND_LIT(b, ",\"issuer\":");
    if (rc == 0) rc = json_str(b, c->issuer);
    if (rc == 0) rc = APPEND_LIT(b, ",\"serial\":");
    if (rc == 0) rc = json_str(b, c->serial_hex);
    /* The leaf's says which of a name's certificates served (ECDSA, RSA). */
    if (rc == 0) rc = APPEND_LIT(b, ",\"key\":");
    if (rc == 0) rc = json_str(b, c->key_desc);
    if (rc == 0) rc = APPEND_LIT(b, ",\"not_after\":");
    if (rc == 0) rc = json_str(b, fmt_utc(c->not_after, when) == 0 ? when : NULL);
    if (rc == 0) rc = APPEND_LIT(b, "}");
  }
  if (rc == 0) rc = APPEND_LIT(b, "]}\n");
  return rc;
}

/* Everything above the facts table: self-contained, so the page works on a
 * host with no other server and leaks nothing to third parties. The empty
 * data: icon stops browsers from asking for /favicon.ico. */
static const char html_top[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<link rel=\"icon\" href=\"data:,\">\n"
    "<title>postern: your TLS connection</title>\n"
    "<style>\n"
    ":root{color-scheme:light dark;--bg:#f5f6f8;--card:#fff;--fg:#1c2128;"
    "--muted:#5b6570;--line:#e3e6ea;--head:#eef1f4;--accent:#1f7a4d}\n"
    "@media (prefers-color-scheme:dark){:root{--bg:#14171b;--card:#1c2026;"
    "--fg:#e3e6ea;--muted:#98a2ad;--line:#2b3139;--head:#232830;--accent:#4cc38a}}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;padding:2.5rem 1rem;background:var(--bg);color:var(--fg);"
    "font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\n"
    "main{max-width:56rem;margin:0 auto}\n"
    "h1{margin:0 0 .4rem;font-size:1.7rem;letter-spacing:-.01em}\n"
    "h1 span{color:var(--accent)}\n"
    "h2{margin:2.2rem 0 .7rem;font-size:1.15rem}\n"
    "p{margin:0 0 1.6rem;color:var(--muted)}\n"
    "table{width:100%;border-collapse:separate;border-spacing:0;background:var(--card);"
    "border:1px solid var(--line);border-radius:10px;overflow:hidden}\n"
    "th,td{padding:.6rem .9rem;text-align:left;vertical-align:top;"
    "border-bottom:1px solid var(--line)}\n"
    "tr:last-child>th,tr:last-child>td{border-bottom:0}\n"
    "tbody th{width:13rem;font-weight:600;color:var(--muted);white-space:nowrap}\n"
    "thead th{background:var(--head);font-size:.8rem;text-transform:uppercase;"
    "letter-spacing:.05em;color:var(--muted)}\n"
    "td{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;"
    "font-size:.92rem;overflow-wrap:anywhere}\n"
    ".none{color:var(--muted);font-style:italic;font-family:inherit}\n"
    "footer{margin-top:2rem;font-size:.85rem;color:var(--muted)}\n"
    "@media (max-width:40rem){tbody th{width:auto;white-space:normal}}\n"
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<main>\n"
    "<h1><span>postern</span>: your TLS connection</h1>\n"
    "<p>This page was served by postern's builtin:info backend over the TLS "
    "connection your client just made.</p>\n"
    "<table>\n"
    "<tbody>\n";

/* Appends one row of the facts table; a NULL value shows as "none". */
static int html_row(pst_buf_t *b, const char *label, const char *val) {
  int rc = pst_buf_printf(b, "<tr><th scope=\"row\">%s</th><td>", label);
  if (rc == 0 && val == NULL) rc = APPEND_LIT(b, "<span class=\"none\">none</span>");
  if (rc == 0 && val != NULL) rc = html_str(b, val);
  if (rc == 0) rc = APPEND_LIT(b, "</td></tr>\n");
  return rc;
}

/* Appends the certificate chain table, leaf first. */
static int html_chain(pst_buf_t *b, const pst_info_facts_t *f) {
  int rc = pst_buf_printf(b,
                          "<h2>Certificate chain</h2>\n<table>\n<thead><tr>"
                          "<th scope=\"col\">#</th><th scope=\"col\">Subject</th>"
                          "<th scope=\"col\">Issuer</th><th scope=\"col\">Key</th>"
                          "<th scope=\"col\">Not after</th></tr></thead>\n"
                          "<tbody>\n");
  size_t n = f->chain != NULL ? f->chain_len : 0;
  if (rc == 0 && n == 0) {
    rc = pst_buf_printf(b,
                        "<tr><td colspan=\"5\"><span class=\"none\">"
                        "no certificate</span></td></tr>\n");
  }
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const pst_cert_info_t *c = &f->chain[i];
    char when[32];
    const char *cells[4] = {c->subject, c->issuer, c->key_desc,
                            fmt_utc(c->not_after, when) == 0 ? when : NULL};
    rc = pst_buf_printf(b, "<tr><td>%zu%s</td>", i, i == 0 ? " (leaf)" : "");
    for (size_t j = 0; rc == 0 && j < PST_ARRAY_SIZE(cells); j++) {
      rc = APPEND_LIT(b, "<td>");
      if (rc == 0 && cells[j] != NULL) rc = html_str(b, cells[j]);
      if (rc == 0 && cells[j] == NULL) rc = APPEND_LIT(b, "<span class=\"none\">unknown</span>");
      if (rc == 0) rc = APPEND_LIT(b, "</td>");
    }
    if (rc == 0) rc = APPEND_LIT(b, "</tr>\n");
  }
  if (rc == 0) rc = APPEND_LIT(b, "</tbody>\n</table>\n");
  return rc;
}

/* Appends the HTML page describing the connection. */
static int build_html(pst_buf_t *b, const pst_info_facts_t *f) {
  char ms[32] = "", ocsp[96] = "", when[32];
  if (isfinite(f->handshake_ms)) {
    snprintf(ms, sizeof(ms), "%.2f ms", f->handshake_ms);
  }
  if (f->ocsp != NULL && f->ocsp_next_update != 0 && fmt_utc(f->ocsp_next_update, when) == 0) {
    snprintf(ocsp, sizeof(ocsp), "%s, next update %s", f->ocsp, when);
  } else if (f->ocsp != NULL) {
    snprintf(ocsp, sizeof(ocsp), "%s", f->ocsp);
  }
  const char *rows[][2] = {
      {"Listener", f->listener},
      {"Client", f->client},
      {"Server name (SNI)", f->sni},
      {"ALPN protocol", f->alpn},
      {"TLS version", f->version},
      {"Cipher suite", f->cipher},
      {"Key exchange group", f->group},
      {"Session resumed", f->resumed ? "yes" : "no"},
      {"Early data (0-RTT)", f->early_data},
      {"Handshake time", isfinite(f->handshake_ms) ? ms : NULL},
      {"OCSP response", f->ocsp != NULL ? ocsp : NULL},
      {"Client certificate", f->client_subject},
      {"Client certificate issuer", f->client_issuer},
      {"Client certificate expires", f->client_not_after},
  };
  int rc = pst_buf_append(b, html_top, sizeof(html_top) - 1);
  for (size_t i = 0; rc == 0 && i < PST_ARRAY_SIZE(rows); i++) {
    rc = html_row(b, rows[i][0], rows[i][1]);
  }
  if (rc == 0) rc = APPEND_LIT(b, "</tbody>\n</table>\n");
  if (rc == 0) rc = html_chain(b, f);
  if (rc == 0) {
    rc = pst_buf_printf(b,
                        "<footer>postern %s &middot; add <code>Accept: "
                        "application/json</code> for a JSON answer</footer>\n"
                        "</main>\n</body>\n</html>\n",
                        PST_VERSION);
  }
  return rc;
}

/* ---- responses -------------------------------------------------------- */

/* Appends the whole response to out, or nothing: on -ENOMEM out is cut back
 * to its previous length so no half response is ever sent. */
static int write_response(pst_buf_t *out, int status, const char *reason, const char *ctype,
                          const char *extra, const pst_buf_t *body, int send_body) {
  char date[INFO_DATE_MAX];
  size_t saved = out->len;
  fmt_http_date(date);
  int rc = pst_buf_printf(out,
                          "HTTP/1.1 %d %s\r\n"
                          "Server: postern\r\n"
                          "Date: %s\r\n"
                          "Content-Type: %s\r\n"
                          "Content-Length: %zu\r\n"
                          "Cache-Control: no-store\r\n"
                          "%s\r\n",
                          status, reason, date, ctype, body->len, extra);
  if (rc == 0 && send_body && body->len > 0) {
    rc = pst_buf_append(out, pst_buf_head(body), body->len);
  }
  /* Growing the buffer may move its bytes to the front, but never drops any
   * of the first `saved`, so restoring the length undoes our appends. */
  if (rc != 0) out->len = saved;
  return rc;
}

int pst_info_respond(const char *method, const char *accept, const pst_info_facts_t *facts,
                     pst_buf_t *out) {
  pst_buf_t body = {0};
  int rc;
  int get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0;
  if (!get && !head) {
    /* RFC 9110 15.5.6: a 405 lists the allowed methods. */
    rc = pst_buf_printf(&body, "405 Method Not Allowed: this backend answers GET and HEAD only.\n");
    if (rc == 0) {
      rc = write_response(out, 405, "Method Not Allowed", "text/plain; charset=utf-8",
                          "Allow: GET, HEAD\r\n", &body, 1);
    }
    pst_buf_free(&body);
    return rc;
  }
  /* Media types are case-insensitive (RFC 9110 8.3.1); the caller joins
   * several Accept fields into one list (RFC 9110 5.3). */
  int json = accept != NULL && contains_ci(accept, strlen(accept), "application/json");
  const char *ctype;
  rc = pst_info_render(facts, json, &body, &ctype);
  /* The representation depends on Accept (RFC 9110 12.5.5); a HEAD gets the
   * GET's head without its content (RFC 9110 9.3.2). */
  if (rc == 0) rc = write_response(out, 200, "OK", ctype, "Vary: Accept\r\n", &body, get);
  pst_buf_free(&body);
  return rc;
}

int pst_info_render(const pst_info_facts_t *facts, int json, pst_buf_t *body,
                    const char **content_type) {
  if (facts == NULL) facts = &no_facts;
  *content_type = json ? "application/json" : "text/html; charset=utf-8";
  return json ? build_json(body, facts) : build_html(body, facts);
}
