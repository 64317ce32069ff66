/* postern: YAML configuration -> immutable pst_config_t. */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "postern/config-t.h"

/* Reads and validates the YAML file at path.
 * On success returns 0 and stores a new config in *out, owned by the caller
 * (free it with pst_config_free).
 * On failure returns PST_ECONFIG (or -ENOMEM), leaves *out untouched, and
 * writes one line "file:line:column: key: what is wrong and what is expected"
 * (NUL-terminated, truncated to errlen) into err.
 * Checks done here: YAML syntax, unknown keys, types, enumerations, durations,
 * addresses (resolved with getaddrinfo), that every named file is readable,
 * duplicate listener names or listen addresses. Certificate contents are
 * checked by the certificate module, not here. When the file itself cannot
 * be read the line is "file: cannot read: reason". */
int pst_config_load(const char *path, pst_config_t **out, char *err, size_t errlen);

/* Same, from a buffer; name is used in messages as the file name. */
int pst_config_parse(const char *name, const char *text, size_t len, pst_config_t **out, char *err,
                     size_t errlen);

/* Frees a config and everything it owns. NULL is allowed. */
void pst_config_free(pst_config_t *cfg);

/* Parses a duration: a non-negative integer followed by ms, s, m or h
 * ("250ms", "10s", "5m", "1h"). Returns 0 and stores milliseconds in *ms, or
 * PST_ECONFIG for anything else (no unit, unknown unit, sign, overflow). */
int pst_parse_duration(const char *text, uint64_t *ms);

/* Parses "host:port", "[v6]:port" or "*:port" (= 0.0.0.0), port 1..65535.
 * host may be a name, resolved with getaddrinfo (numeric service only; the
 * first answer wins), which may block: never call it on an event loop.
 * Returns 0 and fills *addr (addr->text = text), or PST_ECONFIG with
 * "reason; expected ..." in err (the text itself is not repeated) and *addr
 * untouched. */
int pst_parse_addr(const char *text, pst_addr_t *addr, char *err, size_t errlen);

/* Whether two addresses name the same socket: family, address, port (and
 * IPv6 scope). */
int pst_addr_equal(const pst_addr_t *a, const pst_addr_t *b);

#endif
