/* postern: leveled logging to stderr, as text or JSON lines. */
#include "postern/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* One line at most; a longer message is cut (keeping the newline, and in
 * JSON the closing quote and brace). */
#define LOG_LINE 2048

static _Atomic int log_level = PST_LOG_INFO;
static _Atomic int log_format = PST_LOG_TEXT;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const level_json[] = {"error", "warn", "info", "debug"};

void pst_log_set_level(pst_log_level_t level) { atomic_store(&log_level, (int)level); }

int pst_log_enabled(pst_log_level_t level) { return (int)level <= atomic_load(&log_level); }

void pst_log_set_format(pst_log_format_t format) { atomic_store(&log_format, (int)format); }

pst_log_format_t pst_log_format(void) { return (pst_log_format_t)atomic_load(&log_format); }

const char *pst_log_time(char *out, size_t len) {
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, len - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
  return out;
}

/* The escape of byte c into e (at most 6 bytes). Returns its length. */
static size_t json_escape_byte(unsigned char c, char e[6]) {
  static const char hex[] = "0123456789abcdef";
  if (c == '"' || c == '\\') {
    e[0] = '\\';
    e[1] = (char)c;
    return 2;
  }
  if (c == '\n' || c == '\r' || c == '\t') {
    e[0] = '\\';
    e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
    return 2;
  }
  if (c < 0x20 || c >= 0x7f) {
    memcpy(e, "\\u00", 4);
    e[4] = hex[c >> 4];
    e[5] = hex[c & 15];
    return 6;
  }
  e[0] = (char)c;
  return 1;
}

const char *pst_json_escape(const char *s, char *out, size_t len) {
  size_t o = 0;
  if (len == 0) return out;
  for (; s != NULL && *s != '\0'; s++) {
    char e[6];
    size_t n = json_escape_byte((unsigned char)*s, e);
    if (o + n >= len) break;
    memcpy(out + o, e, n);
    o += n;
  }
  out[o] = '\0';
  return out;
}

size_t pst_json_escaped_len(const char *s) {
  size_t o = 0;
  for (; s != NULL && *s != '\0'; s++) {
    char e[6];
    o += json_escape_byte((unsigned char)*s, e);
  }
  return o;
}

void pst_log(pst_log_level_t level, const char *fmt, ...) {
  if (!pst_log_enabled(level)) return;
  char line[LOG_LINE], msg[LOG_LINE], ts[40];
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (m < 0) msg[0] = '\0';
  pst_log_time(ts, sizeof(ts));
  size_t n;
  if (pst_log_format() == PST_LOG_JSON) {
    char esc[LOG_LINE];
    int k = snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                     level_json[level]);
    /* What is left after the head, less the closing "}\n: the escaped
     * message is cut to fit (k is under 100: a time and a level). */
    pst_json_escape(msg, esc, sizeof(line) - (size_t)k - 3);
    n = (size_t)k;
    size_t el = strlen(esc);
    memcpy(line + n, esc, el);
    n += el;
    memcpy(line + n, "\"}\n", 3);
    n += 3;
  } else {
    int k = snprintf(line, sizeof(line), "%s %s %s", ts, level_names[level], msg);
    n = k < 0 ? 0 : (size_t)k;
    if (n > sizeof(line) - 2) n = sizeof(line) - 2; /* truncated: keep the newline */
    line[n++] = '\n';
  }
  /* One write(2) per line: lines of different workers never interleave. */
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
}
