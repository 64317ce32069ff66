/* postern: the "builtin:info" backend.
 *
 * A tiny HTTP/1.1 origin server that lives on the decrypted side of a client
 * connection and answers every GET or HEAD with a description of the TLS
 * handshake of that same connection, as HTML or, when asked for, JSON. It is
 * what the shipped configuration routes to, so `make run` works without any
 * other server. Like every protocol engine in postern it does no I/O: the
 * connection feeds it plaintext and sends whatever it appends to `out`.
 *
 * Parsing is llhttp with no lenient flag, so invalid header bytes and
 * ambiguous framing (Content-Length with Transfer-Encoding, RFC 9112 6.3) are
 * rejected with 400 and the connection closes. llhttp 8 built without
 * LLHTTP_STRICT_MODE still tolerates a few things in the head (a bare LF
 * after the request line or as the blank line, obs-fold, whitespace before a
 * field's colon); every head byte llhttp used also goes through the strict
 * scan the HTTP/1.1 parsers run (pst_h1_head_scan), so the head is as strict
 * here as on a proxied connection. */
#include "postern/info.h"

#include <llhttp.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "postern/common.h"
#include "postern/http.h"

/* The most bytes one request head may take, from the end of the previous
 * request to the blank line, request line included. Browsers send 1-2 KiB;
 * past this we answer 431 (RFC 6585 5) and close. Feeding llhttp at most this
 * many head bytes at a time also bounds what the callbacks can accumulate. */
#define INFO_HEAD_MAX 8192

/* Longer field names cannot be "Accept", so only a prefix is kept. */
#define INFO_NAME_MAX 16

/* Appends a string literal, its length counted by the compiler. */
#define APPEND_LIT(b, lit) pst_buf_append((b), (lit), sizeof(lit) - 1)

/* Room for an IMF-fixdate even with absurd struct tm fields: the compiler
 * checks the worst case of the format. */
#define INFO_DATE_MAX 160

/* Why llhttp_execute() returned HPE_PAUSED: our callbacks pause at the two
 * points where pst_info_feed() must act. */
typedef enum {
  INFO_PAUSE_NONE = 0, /* no callback paused (llhttp wants more bytes) */
  INFO_PAUSE_HEAD,     /* on_headers_complete: the head ended, stop counting it */
  INFO_PAUSE_MESSAGE,  /* on_message_complete: the request is whole, answer it */
} info_pause_t;

struct pst_info_s {
  llhttp_t parser;
  llhttp_settings_t settings; /* must outlive parser (llhttp_init) */
  int done;           /* 0 while reading; otherwise what every later feed returns */
  info_pause_t pause; /* set by the callback that paused llhttp */
  int nomem;          /* a callback ran out of memory */

  /* The request being parsed; request_reset() clears these. */
  int in_head;          /* still before the blank line ending the head */
  size_t head_bytes;    /* head bytes so far, limited to INFO_HEAD_MAX */
  char name[INFO_NAME_MAX];
  size_t name_len;      /* full length, may exceed INFO_NAME_MAX */
  pst_h1_scan_t scan;   /* the strict checks over the head bytes llhttp used */
  int value_is_accept;  /* the current field value belongs to Accept */
  pst_buf_t accept;     /* the current Accept value, from its pieces */
  int wants_json;       /* some Accept field contains application/json */
  int keep_alive;       /* llhttp_should_keep_alive() at message complete */
  uint8_t method;       /* llhttp_method_t */
  uint8_t major, minor; /* HTTP version of the request */
};

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
  if (gmtime_r(&now, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
      tm.tm_mon < 0 || tm.tm_mon > 11) {
    memset(&tm, 0, sizeof(tm)); /* 1900-01-00: obviously wrong, still valid syntax */
  }
  snprintf(out, INFO_DATE_MAX, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
           tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
           tm.tm_min, tm.tm_sec);
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
    if (k == 0 || (p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') ||
        p[i] == 0x7F) {
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
  static const char *const keys[] = {"listener", "client",  "sni",
                                     "alpn",     "version", "cipher",
                                     "group"};
  const char *vals[] = {f->listener, f->client, f->sni,  f->alpn,
                        f->version,  f->cipher, f->group};
  int rc = APPEND_LIT(b, "{");
  for (size_t i = 0; rc == 0 && i < PST_ARRAY_SIZE(keys); i++) {
    rc = pst_buf_printf(b, "%s\"%s\":", i > 0 ? "," : "", keys[i]);
    if (rc == 0) rc = json_str(b, vals[i]);
  }
  if (rc == 0) rc = pst_buf_printf(b, ",\"resumed\":%s,\"early_data\":",
                                   f->resumed ? "true" : "false");
  if (rc == 0) rc = json_str(b, f->early_data);
  /* JSON has no NaN or infinity (RFC 8259 6). */
  if (rc == 0 && isfinite(f->handshake_ms)) {
    rc = pst_buf_printf(b, ",\"handshake_ms\":%.2f", f->handshake_ms);
  } else if (rc == 0) {
    rc = pst_buf_printf(b, ",\"handshake_ms\":null");
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
  int rc = pst_buf_printf(b, "<h2>Certificate chain</h2>\n<table>\n<thead><tr>"
                             "<th scope=\"col\">#</th><th scope=\"col\">Subject</th>"
                             "<th scope=\"col\">Issuer</th>"
                             "<th scope=\"col\">Not after</th></tr></thead>\n"
                             "<tbody>\n");
  size_t n = f->chain != NULL ? f->chain_len : 0;
  if (rc == 0 && n == 0) {
    rc = pst_buf_printf(b, "<tr><td colspan=\"4\"><span class=\"none\">"
                           "no certificate</span></td></tr>\n");
  }
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const pst_cert_info_t *c = &f->chain[i];
    char when[32];
    const char *cells[3] = {c->subject, c->issuer,
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
  char ms[32] = "";
  if (isfinite(f->handshake_ms)) {
    snprintf(ms, sizeof(ms), "%.2f ms", f->handshake_ms);
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
  };
  int rc = pst_buf_append(b, html_top, sizeof(html_top) - 1);
  for (size_t i = 0; rc == 0 && i < PST_ARRAY_SIZE(rows); i++) {
    rc = html_row(b, rows[i][0], rows[i][1]);
  }
  if (rc == 0) rc = APPEND_LIT(b, "</tbody>\n</table>\n");
  if (rc == 0) rc = html_chain(b, f);
  if (rc == 0) {
    rc = pst_buf_printf(b, "<footer>postern %s &middot; add <code>Accept: "
                           "application/json</code> for a JSON answer</footer>\n"
                           "</main>\n</body>\n</html>\n",
                        PST_VERSION);
  }
  return rc;
}

/* ---- responses -------------------------------------------------------- */

typedef struct {
  int status;               /* 200, 400, ... */
  const char *reason;       /* reason phrase */
  const char *content_type;
  const char *extra;        /* more header lines, each ending in CRLF, or "" */
  int send_body;            /* 0 for HEAD: headers only (RFC 9110 9.3.2) */
  int close;                /* say "Connection: close" */
  int http10_keep_alive;    /* a 1.0 client asked to keep the connection */
} info_resp_t;

/* Appends a whole response with body to out, or nothing: on -ENOMEM out is
 * cut back to its previous length so no half response is ever sent. */
static int write_response(pst_buf_t *out, const info_resp_t *r, const pst_buf_t *body) {
  char date[INFO_DATE_MAX];
  size_t saved = out->len;
  fmt_http_date(date);
  const char *conn = r->close ? "Connection: close\r\n"
                     : r->http10_keep_alive ? "Connection: keep-alive\r\n"
                                            : "";
  int rc = pst_buf_printf(out,
                          "HTTP/1.1 %d %s\r\n"
                          "Server: postern\r\n"
                          "Date: %s\r\n"
                          "Content-Type: %s\r\n"
                          "Content-Length: %zu\r\n"
                          "Cache-Control: no-store\r\n"
                          "%s%s\r\n",
                          r->status, r->reason, date, r->content_type, body->len,
                          r->extra, conn);
  if (rc == 0 && r->send_body && body->len > 0) {
    rc = pst_buf_append(out, pst_buf_head(body), body->len);
  }
  /* Growing the buffer may move its bytes to the front, but never drops any
   * of the first `saved`, so restoring the length undoes our appends. */
  if (rc != 0) out->len = saved;
  return rc;
}

/* Answers the request whose message just completed. Returns 0 or -ENOMEM. */
static int respond(pst_info_t *info, const pst_info_facts_t *f, pst_buf_t *out) {
  pst_buf_t body = {0};
  info_resp_t r = {.status = 200, .reason = "OK", .extra = "", .send_body = 1};
  int rc;
  if (info->major != 1) {
    /* RFC 9110 15.6.6; llhttp accepts e.g. "HTTP/2.0" in a request line. */
    r.status = 505;
    r.reason = "HTTP Version Not Supported";
    r.content_type = "text/plain; charset=utf-8";
    info->keep_alive = 0;
    rc = pst_buf_printf(&body, "505 HTTP Version Not Supported: use HTTP/1.1.\n");
  } else if (info->method != HTTP_GET && info->method != HTTP_HEAD) {
    /* RFC 9110 15.5.6: a 405 must list the allowed methods. After CONNECT the
     * client may already be sending tunnel bytes, so that connection ends. */
    r.status = 405;
    r.reason = "Method Not Allowed";
    r.content_type = "text/plain; charset=utf-8";
    r.extra = "Allow: GET, HEAD\r\n";
    if (info->method == HTTP_CONNECT) info->keep_alive = 0;
    rc = pst_buf_printf(&body, "405 Method Not Allowed: this backend answers GET and HEAD only.\n");
  } else {
    /* The representation depends on Accept (RFC 9110 12.5.5). */
    r.extra = "Vary: Accept\r\n";
    r.send_body = info->method == HTTP_GET;
    r.content_type = info->wants_json ? "application/json" : "text/html; charset=utf-8";
    rc = info->wants_json ? build_json(&body, f) : build_html(&body, f);
  }
  r.close = !info->keep_alive;
  r.http10_keep_alive = info->keep_alive && info->minor == 0;
  if (rc == 0) rc = write_response(out, &r, &body);
  pst_buf_free(&body);
  return rc;
}

/* Answers a request that cannot be served (400 or 431), marks the responder
 * done and returns what pst_info_feed() reports: PST_EPROTO for a malformed
 * request, 1 for an oversized head, -ENOMEM when the answer did not fit.
 * why says what is malformed; NULL means ask llhttp. */
static int fail(pst_info_t *info, pst_buf_t *out, int status, const char *why) {
  pst_buf_t body = {0};
  info_resp_t r = {.status = status, .content_type = "text/plain; charset=utf-8",
                   .extra = "", .send_body = 1, .close = 1};
  int rc;
  if (status == 431) {
    r.reason = "Request Header Fields Too Large";
    rc = pst_buf_printf(&body, "431 Request Header Fields Too Large: the request "
                               "head is limited to %d bytes.\n", INFO_HEAD_MAX);
  } else {
    /* llhttp's reasons are fixed ASCII strings, safe to echo. */
    if (why == NULL) why = llhttp_get_error_reason(&info->parser);
    r.reason = "Bad Request";
    rc = pst_buf_printf(&body, "400 Bad Request: %s.\n",
                        why != NULL ? why : "malformed request");
  }
  if (rc == 0) rc = write_response(out, &r, &body);
  pst_buf_free(&body);
  info->done = rc != 0 ? rc : status == 431 ? 1 : PST_EPROTO;
  return info->done;
}

/* ---- llhttp callbacks ------------------------------------------------- */

static void request_reset(pst_info_t *info) {
  pst_buf_free(&info->accept);
  info->in_head = 1;
  info->head_bytes = 0;
  info->name_len = 0;
  pst_h1_scan_init(&info->scan, 1);
  info->value_is_accept = 0;
  info->wants_json = 0;
  info->keep_alive = 0;
  info->method = 0;
  info->major = info->minor = 0;
}

/* Names may arrive in several pieces; keep the start of the name. */
static int info_on_header_field(llhttp_t *p, const char *at, size_t n) {
  pst_info_t *info = p->data;
  if (info->name_len < INFO_NAME_MAX) {
    size_t k = INFO_NAME_MAX - info->name_len;
    memcpy(info->name + info->name_len, at, n < k ? n : k);
  }
  info->name_len += n;
  return 0;
}

static int info_on_header_field_complete(llhttp_t *p) {
  pst_info_t *info = p->data;
  /* llhttp's loose build passes "Name :" with the space in the name; the
   * head scan refuses it (RFC 9112 5.1: a server MUST answer 400). Field
   * names are case-insensitive (RFC 9110 5.1). */
  info->value_is_accept = info->name_len == 6 && strncasecmp(info->name, "accept", 6) == 0;
  info->name_len = 0;
  return 0;
}

/* Values may arrive in several pieces too; only Accept's are kept, and the
 * head limit in pst_info_feed() bounds how much that can be. */
static int info_on_header_value(llhttp_t *p, const char *at, size_t n) {
  pst_info_t *info = p->data;
  if (!info->value_is_accept) return 0;
  if (pst_buf_append(&info->accept, at, n) != 0) {
    info->nomem = 1;
    return HPE_USER;
  }
  return 0;
}

static int info_on_header_value_complete(llhttp_t *p) {
  pst_info_t *info = p->data;
  /* Media types are case-insensitive (RFC 9110 8.3.1). Several Accept lines
   * form one list (RFC 9110 5.3), so any of them may ask for JSON. */
  if (info->value_is_accept && info->accept.len > 0 &&
      contains_ci(pst_buf_head(&info->accept), info->accept.len, "application/json")) {
    info->wants_json = 1;
  }
  pst_buf_free(&info->accept);
  info->value_is_accept = 0;
  return 0;
}

static int info_on_headers_complete(llhttp_t *p) {
  pst_info_t *info = p->data;
  info->pause = INFO_PAUSE_HEAD;
  return HPE_PAUSED;
}

static int info_on_message_complete(llhttp_t *p) {
  pst_info_t *info = p->data;
  /* The parser forgets the connection flags once this returns, so read
   * everything the answer depends on now (RFC 9112 9.3). */
  info->keep_alive = llhttp_should_keep_alive(p);
  info->method = llhttp_get_method(p);
  info->major = llhttp_get_http_major(p);
  info->minor = llhttp_get_http_minor(p);
  info->pause = INFO_PAUSE_MESSAGE;
  return HPE_PAUSED;
}

/* ---- public API ------------------------------------------------------- */

/* Returns a new responder owned by the caller (free with pst_info_free()),
 * or NULL when out of memory. */
pst_info_t *pst_info_new(void) {
  pst_info_t *info = calloc(1, sizeof(*info));
  if (info == NULL) return NULL;
  llhttp_settings_init(&info->settings);
  info->settings.on_header_field = info_on_header_field;
  info->settings.on_header_field_complete = info_on_header_field_complete;
  info->settings.on_header_value = info_on_header_value;
  info->settings.on_header_value_complete = info_on_header_value_complete;
  info->settings.on_headers_complete = info_on_headers_complete;
  info->settings.on_message_complete = info_on_message_complete;
  llhttp_init(&info->parser, HTTP_REQUEST, &info->settings);
  info->parser.data = info;
  request_reset(info);
  return info;
}

/* Parses len bytes of data (borrowed for the call) and appends the answer to
 * every request they complete to out (owned by the caller). facts is
 * borrowed too; NULL shows every fact as unknown. Returns 0 to keep reading,
 * 1 to close once out is sent, PST_EPROTO after a 400, or -ENOMEM; see
 * info.h. Once nonzero, the same value forever. */
int pst_info_feed(pst_info_t *info, const char *data, size_t len,
                  const pst_info_facts_t *facts, pst_buf_t *out) {
  if (info->done != 0) return info->done;
  if (len == 0) return 0; /* nothing is ever left pending between feeds */
  if (facts == NULL) facts = &no_facts;
  /* Each pass runs llhttp until it needs bytes or one of our callbacks
   * pauses it; a pause may leave len at 0 with work still to do, so the loop
   * ends only when llhttp has consumed everything. */
  for (;;) {
    size_t n = len;
    if (info->in_head && n > INFO_HEAD_MAX + 1 - info->head_bytes) {
      n = INFO_HEAD_MAX + 1 - info->head_bytes;
    }
    info->pause = INFO_PAUSE_NONE;
    llhttp_errno_t err = llhttp_execute(&info->parser, data, n);
    if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
      if (info->nomem) return info->done = -ENOMEM;
      return fail(info, out, 400, NULL);
    }
    size_t used = err == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&info->parser) - data);
    if (info->in_head) {
      pst_h1_head_scan(&info->scan, data, used);
      if (info->scan.why != NULL) return fail(info, out, 400, info->scan.why);
      info->head_bytes += used;
      if (info->head_bytes > INFO_HEAD_MAX) return fail(info, out, 431, NULL);
    }
    data += used;
    len -= used;
    if (err == HPE_OK) {
      if (len == 0) return 0;
    } else if (err == HPE_PAUSED_UPGRADE) {
      /* We never switch protocols: the answer above was a plain one, and the
       * client goes on speaking HTTP/1.1 (RFC 9110 7.8). CONNECT, the other
       * way here, already closed the connection. */
      llhttp_resume_after_upgrade(&info->parser);
    } else if (info->pause == INFO_PAUSE_HEAD) {
      info->in_head = 0;
      llhttp_resume(&info->parser);
    } else {
      int rc = respond(info, facts, out);
      if (rc != 0) return info->done = rc;
      if (!info->keep_alive) return info->done = 1;
      request_reset(info);
      llhttp_resume(&info->parser);
    }
  }
}

/* Frees the responder and what it holds; NULL is allowed. */
void pst_info_free(pst_info_t *info) {
  if (info == NULL) return;
  pst_buf_free(&info->accept);
  free(info);
}

int pst_info_render(const pst_info_facts_t *facts, int json, pst_buf_t *body,
                    const char **content_type) {
  if (facts == NULL) facts = &no_facts;
  *content_type = json ? "application/json" : "text/html; charset=utf-8";
  return json ? build_json(body, facts) : build_html(body, facts);
}
