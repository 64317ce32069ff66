/* postern: TLS session ticket keys and the wolfSSL ticket callback (see
 * ticket.h for the key file and ticket formats). */
#include "postern/ticket.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include "postern/common.h"
#include "postern/log.h"
#include "postern/priv.h"

/* A key file is a few lines; anything bigger is a mistake. */
#define TICKET_FILE_MAX (64 * 1024)
#define TICKET_AES_BLOCK 16

struct pst_ticket_src_s {
  struct pst_ticket_src_s *next;              /* the registry list */
  unsigned refs;                              /* under registry_lock */
  char *path;                                 /* the key file; NULL for an in-memory ring */
  uint64_t rotation_ms;                       /* in-memory ring only */
  uint64_t lifetime_ms;                       /* in-memory ring only */
  pthread_mutex_t lock;                       /* guards everything below */
  pst_ticket_key_t keys[PST_TICKET_MAX_KEYS]; /* newest last */
  uint64_t retired_ms[PST_TICKET_MAX_KEYS];   /* ring: when each stopped sealing */
  time_t born[PST_TICKET_MAX_KEYS];           /* see pst_ticket_src_ages */
  size_t n;
  uint64_t current_since_ms; /* ring: when the newest key started sealing */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pst_ticket_src_t *registry;

/* ---- key lines and files ---- */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

int pst_ticket_key_parse(const char *line, size_t len, pst_ticket_key_t *key, char *err,
                         size_t errlen) {
  uint8_t raw[PST_TICKET_KEY_LEN + 3];
  while (len > 0 && is_space(line[0])) {
    line++;
    len--;
  }
  while (len > 0 && is_space(line[len - 1])) len--;
  long n = pst_base64_decode(line, len, raw, sizeof(raw));
  if (n < 0) {
    snprintf(err, errlen,
             "not a base64 key; expected base64 of %d random bytes "
             "(`postern ticket-key` prints one)",
             PST_TICKET_KEY_LEN);
    return PST_ECONFIG;
  }
  if (n != PST_TICKET_KEY_LEN) {
    snprintf(err, errlen,
             "the key decodes to %ld bytes; expected %d (`postern ticket-key` "
             "prints one)",
             n, PST_TICKET_KEY_LEN);
    explicit_bzero(raw, sizeof(raw));
    return PST_ECONFIG;
  }
  memcpy(key->name, raw, PST_TICKET_NAME_LEN);
  memcpy(key->aes, raw + PST_TICKET_NAME_LEN, PST_TICKET_AES_LEN);
  memcpy(key->hmac, raw + PST_TICKET_NAME_LEN + PST_TICKET_AES_LEN, PST_TICKET_HMAC_LEN);
  explicit_bzero(raw, sizeof(raw));
  return 0;
}

int pst_ticket_keys_parse(const char *name, const char *text, size_t len, pst_ticket_keyset_t *out,
                          char *err, size_t errlen) {
  char why[256];
  size_t n = 0;
  int line_no = 0;
  for (size_t i = 0; i < len;) {
    const char *line = text + i;
    const char *nl = memchr(line, '\n', len - i);
    size_t ll = nl != NULL ? (size_t)(nl - line) : len - i;
    i += ll + (nl != NULL);
    line_no++;
    size_t s = 0;
    while (s < ll && is_space(line[s])) s++;
    if (s == ll || line[s] == '#') continue;
    if (n == PST_TICKET_MAX_KEYS) {
      snprintf(err, errlen,
               "%s:%d: more than %d keys; expected at most %d (remove the oldest, "
               "at the top)",
               name, line_no, PST_TICKET_MAX_KEYS, PST_TICKET_MAX_KEYS);
      explicit_bzero(out, sizeof(*out));
      return PST_ECONFIG;
    }
    if (pst_ticket_key_parse(line, ll, &out->keys[n], why, sizeof(why)) != 0) {
      snprintf(err, errlen, "%s:%d: %s", name, line_no, why);
      explicit_bzero(out, sizeof(*out));
      return PST_ECONFIG;
    }
    for (size_t k = 0; k < n; k++) {
      if (memcmp(out->keys[k].name, out->keys[n].name, PST_TICKET_NAME_LEN) == 0) {
        snprintf(err, errlen,
                 "%s:%d: the key name (its first 16 bytes) is the same as another "
                 "key's; expected every key to be new (`postern ticket-key`)",
                 name, line_no);
        explicit_bzero(out, sizeof(*out));
        return PST_ECONFIG;
      }
    }
    n++;
  }
  if (n == 0) {
    snprintf(err, errlen, "%s: no key; expected at least one line made by `postern ticket-key`",
             name);
    return PST_ECONFIG;
  }
  out->n = n;
  return 0;
}

int pst_ticket_keys_load(const char *path, pst_ticket_keyset_t *out, char *err, size_t errlen) {
  char buf[TICKET_FILE_MAX + 1];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "%s: cannot read: %s%s", path, strerror(e),
             pst_priv_hint(-e, "readable"));
    return PST_ECONFIG;
  }
  struct stat st;
  out->mtime = fstat(fd, &st) == 0 ? st.st_mtime : time(NULL);
  size_t len = 0;
  int rc = 0;
  while (len < sizeof(buf)) {
    ssize_t r = read(fd, buf + len, sizeof(buf) - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
      rc = PST_ECONFIG;
      break;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  close(fd);
  if (rc == 0 && len > TICKET_FILE_MAX) {
    snprintf(err, errlen, "%s: larger than %d bytes; expected a few key lines", path,
             TICKET_FILE_MAX);
    rc = PST_ECONFIG;
  }
  if (rc == 0) rc = pst_ticket_keys_parse(path, buf, len, out, err, errlen);
  explicit_bzero(buf, len < sizeof(buf) ? len : sizeof(buf));
  return rc;
}

static int random_bytes(void *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom((char *)p + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    got += (size_t)r;
  }
  return 0;
}

/* Ticket IVs are public and only need to be unpredictable and distinct:
 * they are drawn from a per-thread pool refilled 64 tickets at a time, so
 * that issuing a ticket costs no getrandom(2) of its own (one system call
 * per handshake adds up at thousands of handshakes per second). */
#define IV_POOL_LEN 1024
static _Thread_local struct {
  uint8_t bytes[IV_POOL_LEN];
  size_t used; /* bytes taken; the pool starts empty */
  int filled;
} iv_pool;

static int ticket_iv(uint8_t iv[16]) {
  if (!iv_pool.filled || iv_pool.used + 16 > IV_POOL_LEN) {
    int rc = random_bytes(iv_pool.bytes, IV_POOL_LEN);
    if (rc != 0) return rc;
    iv_pool.filled = 1;
    iv_pool.used = 0;
  }
  memcpy(iv, iv_pool.bytes + iv_pool.used, 16);
  iv_pool.used += 16;
  return 0;
}

int pst_ticket_key_generate(char *line, size_t len) {
  uint8_t raw[PST_TICKET_KEY_LEN];
  if (len < PST_TICKET_KEY_B64_LEN + 1) return -EINVAL;
  int rc = random_bytes(raw, sizeof(raw));
  if (rc == 0) pst_base64_encode(raw, sizeof(raw), line);
  explicit_bzero(raw, sizeof(raw));
  return rc;
}

/* ---- key sources ---- */

uint64_t pst_ticket_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int ring_new_key(pst_ticket_key_t *key) {
  return random_bytes(key, sizeof(*key)) == 0 ? 0 : PST_ETLS;
}

/* An in-memory ring keeps a key that stopped sealing for lifetime_ms (the
 * longest a ticket it sealed can be valid), then forgets it. Called with
 * src->lock held. */
static void ring_expire(pst_ticket_src_t *src, uint64_t now) {
  if (src->path != NULL || src->n == 0) return;
  size_t keep = 0;
  for (size_t i = 0; i + 1 < src->n; i++) {
    /* A clock read before the key retired (another thread) is age 0. */
    uint64_t age = now > src->retired_ms[i] ? now - src->retired_ms[i] : 0;
    if (age < src->lifetime_ms) {
      src->keys[keep] = src->keys[i];
      src->born[keep] = src->born[i];
      src->retired_ms[keep++] = src->retired_ms[i];
    }
  }
  if (keep == src->n - 1) return;
  src->keys[keep] = src->keys[src->n - 1];
  src->born[keep] = src->born[src->n - 1];
  src->retired_ms[keep] = 0;
  explicit_bzero(&src->keys[keep + 1], (src->n - keep - 1) * sizeof(src->keys[0]));
  src->n = keep + 1;
}

/* An in-memory ring makes a new sealing key every rotation_ms (when a
 * ticket is sealed: an idle ring does not churn). Lock held. */
static int ring_rotate(pst_ticket_src_t *src, uint64_t now) {
  if (src->path != NULL) return 0;
  ring_expire(src, now);
  if (src->n > 0 &&
      (now < src->current_since_ms || now - src->current_since_ms < src->rotation_ms)) {
    return 0;
  }
  if (src->n == PST_TICKET_MAX_KEYS) { /* cannot happen with a checked rotation */
    memmove(&src->keys[0], &src->keys[1], (src->n - 1) * sizeof(src->keys[0]));
    memmove(&src->retired_ms[0], &src->retired_ms[1], (src->n - 1) * sizeof(src->retired_ms[0]));
    memmove(&src->born[0], &src->born[1], (src->n - 1) * sizeof(src->born[0]));
    src->n--;
  }
  pst_ticket_key_t key;
  if (ring_new_key(&key) != 0) return PST_ETLS;
  if (src->n > 0) src->retired_ms[src->n - 1] = now;
  src->keys[src->n] = key;
  src->retired_ms[src->n] = 0;
  src->born[src->n] = time(NULL);
  src->n++;
  src->current_since_ms = now;
  explicit_bzero(&key, sizeof(key));
  return 0;
}

static void src_free(pst_ticket_src_t *src) {
  pthread_mutex_destroy(&src->lock);
  explicit_bzero(src->keys, sizeof(src->keys));
  free(src->path);
  free(src);
}

/* The file holds secrets: warns when someone other than postern may read
 * it: others, or the members of a group postern does not run as. A group of
 * its own is fine: that is how Kubernetes gives a non-root pod a Secret
 * (group fsGroup, mode 0440). */
static void warn_if_readable(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return;
  int own_group = st.st_gid == getegid() || st.st_gid == getgid();
  if ((st.st_mode & 007) != 0 || ((st.st_mode & 070) != 0 && !own_group)) {
    pst_log_warn(
        "%s: the ticket key file can be read by group or others (mode %03o): anyone "
        "who reads it can decrypt recorded sessions; chmod 600 it",
        path, (unsigned)(st.st_mode & 0777));
  }
}

/* The registered source for path (or the in-memory ring with these
 * periods), with one more reference; NULL when there is none. Registry lock
 * held. */
static pst_ticket_src_t *registry_find(const char *path, uint64_t rotation_ms,
                                       uint64_t lifetime_ms) {
  for (pst_ticket_src_t *s = registry; s != NULL; s = s->next) {
    int same = path != NULL ? s->path != NULL && strcmp(s->path, path) == 0
                            : s->path == NULL && s->rotation_ms == rotation_ms &&
                                  s->lifetime_ms == lifetime_ms;
    if (same) {
      s->refs++;
      return s;
    }
  }
  return NULL;
}

/* A new source, not registered: the keys of path (read here), or an
 * in-memory ring with its first key. Returns 0, PST_ECONFIG, PST_ETLS or
 * -ENOMEM (err says why). */
static int src_new(const char *path, uint64_t rotation_ms, uint64_t lifetime_ms,
                   pst_ticket_src_t **out, char *err, size_t errlen) {
  pst_ticket_src_t *src = calloc(1, sizeof(*src));
  if (src == NULL || (path != NULL && (src->path = strdup(path)) == NULL)) {
    free(src);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  src->refs = 1;
  src->rotation_ms = rotation_ms;
  src->lifetime_ms = lifetime_ms;
  int rc = 0;
  if (path != NULL) {
    pst_ticket_keyset_t *ks = malloc(sizeof(*ks));
    rc = ks == NULL ? -ENOMEM : pst_ticket_keys_load(path, ks, err, errlen);
    if (rc == 0) {
      memcpy(src->keys, ks->keys, ks->n * sizeof(ks->keys[0]));
      src->n = ks->n;
      for (size_t i = 0; i < ks->n; i++) src->born[i] = ks->mtime;
    }
    if (ks != NULL) explicit_bzero(ks, sizeof(*ks));
    free(ks);
    if (rc == -ENOMEM) snprintf(err, errlen, "out of memory");
  } else if (ring_rotate(src, pst_ticket_now_ms()) != 0) {
    snprintf(err, errlen, "cannot make a ticket key: no randomness");
    rc = PST_ETLS;
  }
  if (rc != 0) {
    explicit_bzero(src->keys, sizeof(src->keys));
    free(src->path);
    free(src);
    return rc;
  }
  pthread_mutex_init(&src->lock, NULL);
  *out = src;
  return 0;
}

int pst_ticket_src_get(const char *path, uint64_t rotation_ms, uint64_t lifetime_ms,
                       pst_ticket_src_t **out, char *err, size_t errlen) {
  if (path == NULL && (rotation_ms == 0 || lifetime_ms / rotation_ms + 2 > PST_TICKET_MAX_KEYS)) {
    snprintf(err, errlen,
             "ticket_rotation must be at least 1/%d of ticket_lifetime, so that "
             "at most %d keys are kept",
             PST_TICKET_MAX_KEYS - 2, PST_TICKET_MAX_KEYS);
    return PST_ECONFIG;
  }
  pthread_mutex_lock(&registry_lock);
  pst_ticket_src_t *src = registry_find(path, rotation_ms, lifetime_ms);
  pthread_mutex_unlock(&registry_lock);
  if (src != NULL) {
    *out = src;
    return 0;
  }
  /* The file is read without the registry lock: workers drop references
   * (pst_ticket_src_put) under it, and must never wait for file I/O. */
  pst_ticket_src_t *made = NULL;
  int rc = src_new(path, rotation_ms, lifetime_ms, &made, err, errlen);
  if (rc != 0) return rc;
  if (path != NULL) warn_if_readable(path);
  pthread_mutex_lock(&registry_lock);
  src = registry_find(path, rotation_ms, lifetime_ms); /* made meanwhile by another thread? */
  if (src == NULL) {
    made->next = registry;
    registry = made;
    src = made;
    made = NULL;
  }
  pthread_mutex_unlock(&registry_lock);
  if (made != NULL) src_free(made);
  *out = src;
  return 0;
}

void pst_ticket_src_put(pst_ticket_src_t *src) {
  if (src == NULL) return;
  pthread_mutex_lock(&registry_lock);
  if (--src->refs > 0) {
    pthread_mutex_unlock(&registry_lock);
    return;
  }
  for (pst_ticket_src_t **pp = &registry; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == src) {
      *pp = src->next;
      break;
    }
  }
  pthread_mutex_unlock(&registry_lock);
  src_free(src);
}

/* A key the source already had keeps its birth (pst_ticket_src_ages); a
 * new one is dated by the file. Lock held. */
static time_t src_born(const pst_ticket_src_t *src, const pst_ticket_key_t *key, time_t mtime) {
  for (size_t i = 0; i < src->n; i++) {
    if (memcmp(src->keys[i].name, key->name, PST_TICKET_NAME_LEN) == 0) return src->born[i];
  }
  return mtime;
}

static void src_set_keys(pst_ticket_src_t *src, const pst_ticket_keyset_t *ks) {
  time_t born[PST_TICKET_MAX_KEYS];
  pthread_mutex_lock(&src->lock);
  for (size_t i = 0; i < ks->n; i++) born[i] = src_born(src, &ks->keys[i], ks->mtime);
  explicit_bzero(src->keys, sizeof(src->keys));
  memcpy(src->keys, ks->keys, ks->n * sizeof(ks->keys[0]));
  memcpy(src->born, born, ks->n * sizeof(born[0]));
  src->n = ks->n;
  pthread_mutex_unlock(&src->lock);
}

size_t pst_ticket_src_ages(pst_ticket_src_t *src, time_t now, double *ages, size_t max) {
  size_t n = 0;
  pthread_mutex_lock(&src->lock);
  ring_expire(src, pst_ticket_now_ms()); /* a key no ticket can use any more is not shown */
  for (size_t i = src->n; i-- > 0 && n < max;) ages[n++] = difftime(now, src->born[i]);
  pthread_mutex_unlock(&src->lock);
  return n;
}

/* The file sources in use (path NULL: all of them, else the one for path),
 * each with one more reference, in a malloc'ed array (*n entries; NULL when
 * none). Returns 0 or -ENOMEM. */
static int registry_files(const char *path, pst_ticket_src_t ***out, size_t *n) {
  pthread_mutex_lock(&registry_lock);
  size_t count = 0;
  for (pst_ticket_src_t *s = registry; s != NULL; s = s->next) {
    count += s->path != NULL && (path == NULL || strcmp(s->path, path) == 0);
  }
  pst_ticket_src_t **arr = count > 0 ? malloc(count * sizeof(*arr)) : NULL;
  if (count > 0 && arr == NULL) {
    pthread_mutex_unlock(&registry_lock);
    return -ENOMEM;
  }
  size_t i = 0;
  for (pst_ticket_src_t *s = registry; s != NULL; s = s->next) {
    if (s->path != NULL && (path == NULL || strcmp(s->path, path) == 0)) {
      s->refs++;
      arr[i++] = s;
    }
  }
  pthread_mutex_unlock(&registry_lock);
  *out = arr;
  *n = count;
  return 0;
}

/* Reads the files of srcs[0..n) and, when all are valid, gives each source
 * its file's keys; then drops the references registry_files took. */
static int reload_files(pst_ticket_src_t **srcs, size_t n, char *err, size_t errlen) {
  pst_ticket_keyset_t *ks = n > 0 ? malloc(n * sizeof(*ks)) : NULL;
  int rc = n > 0 && ks == NULL ? -ENOMEM : 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    rc = pst_ticket_keys_load(srcs[i]->path, &ks[i], err, errlen);
  }
  for (size_t i = 0; i < n; i++) {
    if (rc == 0) {
      src_set_keys(srcs[i], &ks[i]);
      warn_if_readable(srcs[i]->path);
    }
    pst_ticket_src_put(srcs[i]);
  }
  if (ks != NULL) explicit_bzero(ks, n * sizeof(*ks));
  free(ks);
  free(srcs);
  return rc;
}

int pst_ticket_keys_reload(const char *path, char *err, size_t errlen) {
  pst_ticket_src_t **srcs = NULL;
  size_t n = 0;
  if (registry_files(path, &srcs, &n) != 0) return -ENOMEM;
  return reload_files(srcs, n, err, errlen);
}

int pst_ticket_keys_reload_all(char *err, size_t errlen) {
  pst_ticket_src_t **srcs = NULL;
  size_t n = 0;
  if (registry_files(NULL, &srcs, &n) != 0) return -ENOMEM;
  return reload_files(srcs, n, err, errlen);
}

int pst_ticket_src_seal_key(pst_ticket_src_t *src, uint64_t now_ms, pst_ticket_key_t *key) {
  pthread_mutex_lock(&src->lock);
  int rc = ring_rotate(src, now_ms);
  if (rc == 0 && src->n == 0) rc = PST_ETLS;
  if (rc == 0) *key = src->keys[src->n - 1];
  pthread_mutex_unlock(&src->lock);
  return rc;
}

int pst_ticket_src_open_key(pst_ticket_src_t *src, const uint8_t name[PST_TICKET_NAME_LEN],
                            uint64_t now_ms, pst_ticket_key_t *key, int *newest) {
  int rc = PST_ECONFIG;
  pthread_mutex_lock(&src->lock);
  ring_expire(src, now_ms); /* drops keys whose tickets have all expired */
  for (size_t i = src->n; i-- > 0;) {
    if (memcmp(src->keys[i].name, name, PST_TICKET_NAME_LEN) == 0) {
      *key = src->keys[i];
      *newest = i + 1 == src->n;
      rc = 0;
      break;
    }
  }
  pthread_mutex_unlock(&src->lock);
  return rc;
}

/* ---- sealing ---- */

static int ticket_mac(const pst_ticket_key_t *key, const uint8_t name[PST_TICKET_NAME_LEN],
                      const uint8_t iv[16], const uint8_t *body, int len, uint8_t out[32]) {
  Hmac hmac;
  uint8_t len_be[2] = {(uint8_t)(len >> 8), (uint8_t)len};
  int ok = wc_HmacInit(&hmac, NULL, INVALID_DEVID) == 0;
  if (ok) {
    ok = wc_HmacSetKey(&hmac, WC_SHA256, key->hmac, PST_TICKET_HMAC_LEN) == 0 &&
         wc_HmacUpdate(&hmac, name, PST_TICKET_NAME_LEN) == 0 &&
         wc_HmacUpdate(&hmac, iv, 16) == 0 && wc_HmacUpdate(&hmac, len_be, 2) == 0 &&
         wc_HmacUpdate(&hmac, body, (word32)len) == 0 && wc_HmacFinal(&hmac, out) == 0;
    wc_HmacFree(&hmac);
  }
  return ok ? 0 : PST_ETLS;
}

static int ticket_cbc(const pst_ticket_key_t *key, const uint8_t iv[16], uint8_t *body, int len,
                      int dir) {
  Aes aes;
  int ok = wc_AesInit(&aes, NULL, INVALID_DEVID) == 0;
  if (!ok) return PST_ETLS;
  ok = wc_AesSetKey(&aes, key->aes, PST_TICKET_AES_LEN, iv, dir) == 0;
  if (ok && dir == AES_ENCRYPTION) ok = wc_AesCbcEncrypt(&aes, body, body, (word32)len) == 0;
  if (ok && dir == AES_DECRYPTION) ok = wc_AesCbcDecrypt(&aes, body, body, (word32)len) == 0;
  wc_AesFree(&aes);
  return ok ? 0 : PST_ETLS;
}

int pst_ticket_seal(const pst_ticket_key_t *key, uint8_t name[PST_TICKET_NAME_LEN], uint8_t iv[16],
                    uint8_t mac[32], uint8_t *body, int in_len, int *out_len) {
  if (in_len < 0) return PST_ETLS;
  /* PKCS#7 padding (RFC 5652 6.3): 1..16 bytes, each the pad length. */
  int pad = TICKET_AES_BLOCK - in_len % TICKET_AES_BLOCK;
  memset(body + in_len, pad, (size_t)pad);
  int len = in_len + pad;
  memcpy(name, key->name, PST_TICKET_NAME_LEN);
  if (ticket_iv(iv) != 0) return PST_ETLS;
  int rc = ticket_cbc(key, iv, body, len, AES_ENCRYPTION);
  if (rc == 0) rc = ticket_mac(key, name, iv, body, len, mac);
  if (rc == 0) *out_len = len;
  return rc;
}

int pst_ticket_open(const pst_ticket_key_t *key, const uint8_t name[PST_TICKET_NAME_LEN],
                    const uint8_t iv[16], const uint8_t mac[32], uint8_t *body, int in_len,
                    int *out_len) {
  uint8_t want[32];
  if (in_len <= 0 || in_len % TICKET_AES_BLOCK != 0 || in_len > 0xffff) return PST_EPROTO;
  if (ticket_mac(key, name, iv, body, in_len, want) != 0) return PST_EPROTO;
  /* Constant time: the comparison must not tell how many bytes matched. */
  uint8_t diff = 0;
  for (int i = 0; i < 32; i++) diff |= (uint8_t)(want[i] ^ mac[i]);
  if (diff != 0) return PST_EPROTO;
  if (ticket_cbc(key, iv, body, in_len, AES_DECRYPTION) != 0) return PST_EPROTO;
  int pad = body[in_len - 1];
  if (pad < 1 || pad > TICKET_AES_BLOCK) return PST_EPROTO;
  for (int i = 1; i <= pad; i++) {
    if (body[in_len - i] != pad) return PST_EPROTO;
  }
  *out_len = in_len - pad;
  return 0;
}

/* ---- wolfSSL ---- */

int pst_ticket_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
                  unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ],
                  int enc, unsigned char *ticket, int in_len, int *out_len, void *user) {
  pst_ticket_src_t *src = user;
  pst_ticket_key_t key;
  int rc;
  if (src == NULL) return WOLFSSL_TICKET_RET_FATAL;
  if (enc) {
    /* wolfSSL's buffer has WOLFSSL_TICKET_EXTRA_PADDING_SZ (32) spare bytes
     * after the state, enough for our at most 16 bytes of padding. */
    if (pst_ticket_src_seal_key(src, pst_ticket_now_ms(), &key) != 0) {
      return WOLFSSL_TICKET_RET_FATAL;
    }
    rc = pst_ticket_seal(&key, key_name, iv, mac, ticket, in_len, out_len);
    explicit_bzero(&key, sizeof(key));
    return rc == 0 ? WOLFSSL_TICKET_RET_OK : WOLFSSL_TICKET_RET_FATAL;
  }
  /* Opening runs once per cipher suite the client offers until one fits:
   * an unknown name is the cheap, common way out (a key that left the
   * file, or another fleet's ticket). */
  int newest = 0;
  if (pst_ticket_src_open_key(src, key_name, pst_ticket_now_ms(), &key, &newest) != 0) {
    return WOLFSSL_TICKET_RET_REJECT;
  }
  rc = pst_ticket_open(&key, key_name, iv, mac, ticket, in_len, out_len);
  explicit_bzero(&key, sizeof(key));
  if (rc != 0) return WOLFSSL_TICKET_RET_REJECT;
  /* wolfSSL 5.5.4's TLS 1.3 server resumes only on RET_OK (tls13.c,
   * DoPreSharedKeys: RET_CREATE falls through to "not this PSK"); it sends a
   * new ticket after every resumption anyway, sealed under the newest key. */
  if (newest || ssl == NULL || wolfSSL_GetVersion(ssl) == WOLFSSL_TLSV1_3) {
    return WOLFSSL_TICKET_RET_OK;
  }
  return WOLFSSL_TICKET_RET_CREATE;
}

int pst_ticket_install(WOLFSSL_CTX *ctx, pst_ticket_src_t *src, uint64_t lifetime_ms) {
  unsigned secs = (unsigned)(lifetime_ms / 1000);
  if (secs == 0) secs = 1;
  if (wolfSSL_CTX_set_TicketEncCb(ctx, pst_ticket_cb) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_set_TicketEncCtx(ctx, src) != WOLFSSL_SUCCESS) {
    return PST_ETLS;
  }
  /* RFC 8446 4.6.1 ticket_lifetime. wolfSSL refuses a ticket older than the
   * context's timeout and announces the ticket hint: the smaller of the two
   * (and 7 days) is what a ticket lasts, so both get the same value. With
   * WOLFSSL_ERROR_CODE_OPENSSL set_timeout returns the previous timeout, not
   * WOLFSSL_SUCCESS: only a negative value is an error. */
  if (wolfSSL_CTX_set_timeout(ctx, secs) < 0) return PST_ETLS;
  if (wolfSSL_CTX_set_TicketHint(ctx, (int)secs) != WOLFSSL_SUCCESS) return PST_ETLS;
  return 0;
}
