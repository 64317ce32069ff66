/* postern: error codes and small helpers shared by every module. */
#ifndef POSTERN_COMMON_H
#define POSTERN_COMMON_H

#include <errno.h>
#include <stddef.h>

#define PST_VERSION "0.1.0"

/* Error codes: 0 is success, system errors are -errno, and postern's own
 * errors sit below -10000 so the two never collide. */
enum {
  PST_ECONFIG = -10001,   /* invalid configuration */
  PST_ECERT = -10002,     /* a certificate or key failed a check */
  PST_ETLS = -10003,      /* a TLS library call failed */
  PST_EPROTO = -10004,    /* the peer broke the protocol */
  PST_ETIMEDOUT = -10005, /* a postern timeout fired */
  PST_ESHUTDOWN = -10006, /* the process is shutting down */
  PST_ELIMIT = -10007,    /* a configured limit was reached */
  PST_EBACKEND = -10008,  /* the backend failed */
  PST_ENOTFILE = -10009,  /* a path names a FIFO, device, socket or directory, not a file */
};

/* Returns a static, human-readable description of err (0, -errno, PST_E*). */
const char *pst_strerror(int err);

/* Base64 (RFC 4648 4, padded; base64.c). pst_base64_len(n) is the length
 * of the encoding of n bytes. */
#define pst_base64_len(n) (((n) + 2) / 3 * 4)

/* Writes the base64 of len bytes at out, which has room for
 * pst_base64_len(len) + 1 bytes, NUL-terminated. Returns the characters
 * written (the NUL not counted). */
size_t pst_base64_encode(const void *in, size_t len, char *out);

/* Decodes len characters of canonical padded base64 (no whitespace, zero
 * bits where padding drops them) into out, room for cap bytes. Returns the
 * number of bytes, -EINVAL for anything else, or -ENOSPC. */
long pst_base64_decode(const char *in, size_t len, void *out, size_t cap);

/* Largest TLS plaintext record (RFC 8446 5.1). */
#define PST_RECORD_MAX (16 * 1024)

#define PST_CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

#define PST_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define PST_UNUSED(x) ((void)(x))

#endif
