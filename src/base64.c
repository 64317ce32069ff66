/* postern: base64 (RFC 4648 4), the one encoder and strict decoder that
 * ticket key lines and RFC 9440 Client-Cert fields share (common.h). */
#include <stdint.h>

#include "postern/common.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -EINVAL;
}

size_t pst_base64_encode(const void *in, size_t len, char *out) {
  const uint8_t *p = in;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t w = (uint32_t)p[i] << 16;
    if (i + 1 < len) w |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < len) w |= p[i + 2];
    out[o++] = b64_alphabet[(w >> 18) & 63];
    out[o++] = b64_alphabet[(w >> 12) & 63];
    out[o++] = i + 1 < len ? b64_alphabet[(w >> 6) & 63] : '=';
    out[o++] = i + 2 < len ? b64_alphabet[w & 63] : '=';
  }
  out[o] = '\0';
  return o;
}

long pst_base64_decode(const char *in, size_t len, void *out, size_t cap) {
  uint8_t *dst = out;
  size_t o = 0;
  if (len % 4 != 0) return -EINVAL;
  for (size_t i = 0; i < len; i += 4) {
    int v[4], pad = 0;
    for (int k = 0; k < 4; k++) {
      char c = in[i + (size_t)k];
      if (c == '=' && i + 4 == len && k >= 2) {
        pad++;
        v[k] = 0;
        continue;
      }
      if (pad > 0) return -EINVAL; /* data after '=' */
      v[k] = b64_value(c);
      if (v[k] < 0) return -EINVAL;
    }
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    /* Canonical form: the bits that padding drops must be zero. */
    if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0)) return -EINVAL;
    uint8_t bytes[3] = {(uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w};
    for (int k = 0; k < 3 - pad; k++) {
      if (o == cap) return -ENOSPC;
      dst[o++] = bytes[k];
    }
  }
  return (long)o;
}
