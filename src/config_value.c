/* postern: parsers for the value types of the configuration that are useful
 * outside it too: durations ("10s") and socket addresses ("[::1]:8443"). */
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "postern/common.h"
#include "postern/config.h"

#define ADDR_EXPECTED "expected host:port or [ipv6]:port, port 1..65535 (e.g. 127.0.0.1:8443)"

int pst_parse_duration(const char *text, uint64_t *ms) {
  static const struct {
    const char *unit;
    uint64_t ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  uint64_t v = 0;
  const char *s = text;
  if (s == NULL || *s < '0' || *s > '9') return PST_ECONFIG;
  for (; *s >= '0' && *s <= '9'; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return PST_ECONFIG;
    v = v * 10 + d;
  }
  for (size_t i = 0; i < PST_ARRAY_SIZE(units); i++) {
    if (strcmp(s, units[i].unit) != 0) continue;
    if (v > UINT64_MAX / units[i].ms) return PST_ECONFIG;
    *ms = v * units[i].ms;
    return 0;
  }
  return PST_ECONFIG;
}

static int addr_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "REASON; expected ..." into err. Returns PST_ECONFIG. The caller
 * quotes the whole value, so reasons do not repeat what the user wrote. */
static int addr_error(char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s; %s", msg, ADDR_EXPECTED);
  }
  return PST_ECONFIG;
}

/* Host names are checked before getaddrinfo so that garbage is reported as
 * such instead of being sent to the resolver. '%' introduces an IPv6 zone. */
static int host_chars_ok(const char *host) {
  for (const char *s = host; *s != '\0'; s++) {
    char c = *s;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '.' || c == '_' || c == ':' || c == '%';
    if (!ok) return 0;
  }
  return 1;
}

/* Splits text into host and port (copied, NUL-terminated). "[v6]:port" sets
 * *bracketed. Returns 0 or PST_ECONFIG. */
static int split_host_port(const char *text, char host[static 256], char port[static 16],
                           int *bracketed, char *err, size_t errlen) {
  const char *h = text, *colon;
  size_t hlen;
  *bracketed = text[0] == '[';
  if (*bracketed) {
    const char *close = strchr(text, ']');
    if (close == NULL) return addr_error(err, errlen, "missing \"]\" after the IPv6 address");
    if (close[1] != ':') return addr_error(err, errlen, "missing port after \"]\"");
    h = text + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(text, ':');
    if (colon == NULL) return addr_error(err, errlen, "missing port");
    hlen = (size_t)(colon - text);
    if (memchr(text, ':', hlen) != NULL) {
      return addr_error(err, errlen, "an IPv6 address needs brackets, as in [::1]:8443");
    }
  }
  if (hlen == 0) return addr_error(err, errlen, "missing host");
  if (hlen >= 256) return addr_error(err, errlen, "host too long");
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  if (strlen(colon + 1) >= 16) return addr_error(err, errlen, "invalid port");
  strcpy(port, colon + 1);
  return 0;
}

/* RFC 793 ports are 16 bits; port 0 means "any" and is never useful here. */
static int check_port(const char *port, char *err, size_t errlen) {
  unsigned long v = 0;
  if (port[0] == '\0') return addr_error(err, errlen, "missing port");
  for (const char *s = port; *s != '\0'; s++) {
    if (*s < '0' || *s > '9') return addr_error(err, errlen, "invalid port");
    v = v * 10 + (unsigned long)(*s - '0');
    if (v > 65535) return addr_error(err, errlen, "port out of range");
  }
  if (v == 0) return addr_error(err, errlen, "port 0 is not allowed");
  return 0;
}

static int resolve(const char *host, const char *port, int bracketed, pst_addr_t *addr, char *err,
                   size_t errlen) {
  struct addrinfo hints, *res = NULL;
  char ebuf[128];
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = bracketed ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (bracketed ? AI_NUMERICHOST : 0);
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0 || res == NULL) {
    if (bracketed) return addr_error(err, errlen, "not an IPv6 address inside the brackets");
    return addr_error(err, errlen, "cannot resolve the host: %s",
                      rc == EAI_SYSTEM ? strerror_r(errno, ebuf, sizeof(ebuf)) : gai_strerror(rc));
  }
  /* The resolver's first answer is the preferred one (RFC 6724 ordering). */
  memcpy(&addr->ss, res->ai_addr, res->ai_addrlen);
  addr->len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

int pst_parse_addr(const char *text, pst_addr_t *addr, char *err, size_t errlen) {
  char host[256], port[16];
  int bracketed, rc;
  if (text == NULL || text[0] == '\0') return addr_error(err, errlen, "empty address");
  if (strlen(text) >= sizeof(addr->text)) return addr_error(err, errlen, "address too long");
  rc = split_host_port(text, host, port, &bracketed, err, errlen);
  if (rc != 0) return rc;
  rc = check_port(port, err, errlen);
  if (rc != 0) return rc;
  if (!bracketed && strcmp(host, "*") == 0) strcpy(host, "0.0.0.0");
  if (!host_chars_ok(host)) return addr_error(err, errlen, "invalid character in the host");
  pst_addr_t tmp;
  memset(&tmp, 0, sizeof(tmp));
  rc = resolve(host, port, bracketed, &tmp, err, errlen);
  if (rc != 0) return rc;
  strcpy(tmp.text, text);
  *addr = tmp;
  return 0;
}

int pst_addr_equal(const pst_addr_t *a, const pst_addr_t *b) {
  if (a->ss.ss_family != b->ss.ss_family) return 0;
  if (a->ss.ss_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a->ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;
    return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
  }
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}
