/* postern: error strings. */
#include <string.h>
#include <uv.h>

#include "postern/common.h"

const char *pst_strerror(int err) {
  switch (err) {
    case 0: return "success";
    case PST_ECONFIG: return "invalid configuration";
    case PST_ECERT: return "certificate check failed";
    case PST_ETLS: return "TLS error";
    case PST_EPROTO: return "protocol error";
    case PST_ETIMEDOUT: return "timed out";
    case PST_ESHUTDOWN: return "shutting down";
    case PST_ELIMIT: return "limit reached";
    case PST_EBACKEND: return "backend error";
    case PST_ENOTFILE: return "not a regular file";
    default: break;
  }
  /* libuv's UV_E* codes are -errno on Unix, so uv_strerror covers both. */
  if (err < 0) return uv_strerror(err);
  return "unknown error";
}
