/* postern fuzz target: the configuration loader (src/config*.c): YAML bytes
 * to a pst_config_t through pst_config_load, as postern -c and a reload read
 * the file: libyaml, the keyword tables, every value's validation and the
 * file:line:column errors. Files the configuration names (certificates,
 * keys, CA files) are only checked for readability here, so they mostly
 * fail, which is fine: the point is the YAML and validation code.
 *
 * The input is written to one file in a mkdtemp directory under /tmp made
 * once per process and removed at exit; nothing else is written. Host names
 * in addresses would go to the resolver (slow, and not the same answer
 * twice): this binary's getaddrinfo resolves numeric hosts only. */
#include <dlfcn.h>
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "postern/common.h"
#include "postern/config.h"
#include "postern/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef int (*pst_fuzz_gai_fn)(const char *, const char *, const struct addrinfo *,
                               struct addrinfo **);

/* Replaces libc's getaddrinfo (and the sanitizers' interceptor, which is
 * weak) for this binary: numeric hosts only, so no lookup leaves the
 * process and every run gives the same answer. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
  static pst_fuzz_gai_fn real;
  if (real == NULL) real = (pst_fuzz_gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
  if (real == NULL) return EAI_FAIL;
  struct addrinfo h = {0};
  if (hints != NULL) h = *hints;
  h.ai_flags |= AI_NUMERICHOST;
  return real(node, service, &h, res);
}

static char pst_fuzz_dir[] = "/tmp/postern-fuzz-config-XXXXXX";
static char pst_fuzz_path[64];

static void pst_fuzz_cleanup(void) {
  unlink(pst_fuzz_path);
  rmdir(pst_fuzz_dir);
}

static void pst_fuzz_init(void) {
  if (mkdtemp(pst_fuzz_dir) == NULL) abort();
  snprintf(pst_fuzz_path, sizeof(pst_fuzz_path), "%s/postern.yaml", pst_fuzz_dir);
  /* Errors are the expected outcome: keep the fuzzer's output readable. */
  pst_log_set_level(PST_LOG_ERROR);
  atexit(pst_fuzz_cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (pst_fuzz_path[0] == '\0') pst_fuzz_init();
  FILE *f = fopen(pst_fuzz_path, "w");
  if (f == NULL) abort();
  if (size > 0 && fwrite(data, 1, size, f) != size) abort();
  if (fclose(f) != 0) abort();
  char err[1024];
  err[0] = '\0';
  pst_config_t *cfg = NULL;
  int rc = pst_config_load(pst_fuzz_path, &cfg, err, sizeof(err));
  if (rc == 0) {
    if (cfg == NULL) abort();
    pst_config_free(cfg);
  } else {
    /* A refusal always says where and why. */
    if (cfg != NULL || err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL) abort();
    if (rc != PST_ECONFIG && rc != -ENOMEM) abort();
    /* POSTERN_FUZZ_VERBOSE=1: say why, to check what a seed reaches. */
    if (getenv("POSTERN_FUZZ_VERBOSE") != NULL) fprintf(stderr, "config: %s\n", err);
  }
  return 0;
}
