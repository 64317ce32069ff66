/* postern fuzz target: session-ticket decoding (src/ticket.c). A ticket is
 * what a client hands back to resume: wolfSSL splits it into key name, IV,
 * MAC and body and asks pst_ticket_cb to open it, so every byte of it is the
 * client's. Key files are the operator's, but their parser
 * (pst_ticket_keys_parse, pst_ticket_key_parse) takes text too.
 *
 * Input: one mode byte, then, for modes 0-2, key name (16) | IV (16) |
 * MAC (32) | body; for mode 3, the text of a key file.
 *  0: the ticket as given (almost always an unknown key name);
 *  1: the key name of the process's key and a MAC the harness computes over
 *     the given body, so that decryption and the padding check run on it;
 *  2: as 1, with the body encrypted by the harness first, so that the
 *     padding check runs on plaintext the fuzzer chooses; a ticket opened
 *     must give back that plaintext, and a ticket sealed by the callback
 *     must open to what was sealed;
 *  3: the key-file parsers.
 * The key file is written once per process into a mkdtemp directory under
 * /tmp, removed at exit. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include "postern/common.h"
#include "postern/ticket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bytes 0..79: name 0..15, AES key 16..47, HMAC key 48..79. */
static const char pst_fuzz_key_line[] =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"
    "P0BBQkNERUZH"
    "SElKS0xNTk8=";
#define PST_FUZZ_BODY_MAX 4096

static char pst_fuzz_dir[] = "/tmp/postern-fuzz-ticket-XXXXXX";
static char pst_fuzz_path[64];
static pst_ticket_src_t *pst_fuzz_src;
static pst_ticket_key_t pst_fuzz_key;

static void pst_fuzz_cleanup(void) {
  pst_ticket_src_put(pst_fuzz_src);
  unlink(pst_fuzz_path);
  rmdir(pst_fuzz_dir);
}

static void pst_fuzz_init(void) {
  char err[256];
  if (mkdtemp(pst_fuzz_dir) == NULL) abort();
  snprintf(pst_fuzz_path, sizeof(pst_fuzz_path), "%s/tickets.keys", pst_fuzz_dir);
  FILE *f = fopen(pst_fuzz_path, "w");
  if (f == NULL) abort();
  fprintf(f, "%s\n", pst_fuzz_key_line);
  if (fclose(f) != 0 || chmod(pst_fuzz_path, 0600) != 0) abort();
  if (pst_ticket_src_get(pst_fuzz_path, 0, 0, &pst_fuzz_src, err, sizeof(err)) != 0) abort();
  if (pst_ticket_key_parse(pst_fuzz_key_line, strlen(pst_fuzz_key_line), &pst_fuzz_key, err,
                           sizeof(err)) != 0) {
    abort();
  }
  atexit(pst_fuzz_cleanup);
}

/* The MAC src/ticket.c checks: HMAC-SHA-256 over name | iv | length | body. */
static void pst_fuzz_mac(const uint8_t *name, const uint8_t *iv, const uint8_t *body, int len,
                         uint8_t mac[32]) {
  Hmac h;
  uint8_t len_be[2] = {(uint8_t)(len >> 8), (uint8_t)len};
  if (wc_HmacInit(&h, NULL, INVALID_DEVID) != 0 ||
      wc_HmacSetKey(&h, WC_SHA256, pst_fuzz_key.hmac, PST_TICKET_HMAC_LEN) != 0 ||
      wc_HmacUpdate(&h, name, PST_TICKET_NAME_LEN) != 0 || wc_HmacUpdate(&h, iv, 16) != 0 ||
      wc_HmacUpdate(&h, len_be, 2) != 0 || wc_HmacUpdate(&h, body, (word32)len) != 0 ||
      wc_HmacFinal(&h, mac) != 0) {
    abort();
  }
  wc_HmacFree(&h);
}

static void pst_fuzz_encrypt(const uint8_t *iv, uint8_t *body, int len) {
  Aes aes;
  if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0 ||
      wc_AesSetKey(&aes, pst_fuzz_key.aes, PST_TICKET_AES_LEN, iv, AES_ENCRYPTION) != 0 ||
      wc_AesCbcEncrypt(&aes, body, body, (word32)len) != 0) {
    abort();
  }
  wc_AesFree(&aes);
}

static void pst_fuzz_keys(const uint8_t *data, size_t size) {
  char err[256];
  pst_ticket_keyset_t *set = malloc(sizeof(*set));
  if (set == NULL) return;
  int rc = pst_ticket_keys_parse("fuzz.keys", (const char *)data, size, set, err, sizeof(err));
  if (rc == 0 && (set->n == 0 || set->n > PST_TICKET_MAX_KEYS)) abort();
  if (rc != 0 && rc != PST_ECONFIG && rc != -ENOMEM) abort();
  free(set);
  pst_ticket_key_t key;
  rc = pst_ticket_key_parse((const char *)data, size, &key, err, sizeof(err));
  if (rc != 0 && rc != PST_ECONFIG) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (pst_fuzz_src == NULL) pst_fuzz_init();
  if (size < 1) return 0;
  int mode = data[0] & 3;
  data++;
  size--;
  if (mode == 3) {
    pst_fuzz_keys(data, size);
    return 0;
  }
  if (size < 64) return 0;
  uint8_t name[16], iv[16], mac[32];
  memcpy(name, data, 16);
  memcpy(iv, data + 16, 16);
  memcpy(mac, data + 32, 32);
  size_t n = size - 64;
  if (n > PST_FUZZ_BODY_MAX) n = PST_FUZZ_BODY_MAX;
  if (mode == 2) n -= n % 16;
  /* As wolfSSL's buffer: room for the padding a seal adds. */
  uint8_t *body = malloc(n + 32);
  if (body == NULL) return 0;
  memcpy(body, data + 64, n);
  int len = (int)n, out = -1;
  if (mode >= 1) memcpy(name, pst_fuzz_key.name, 16);
  if (mode == 2) pst_fuzz_encrypt(iv, body, len);
  if (mode >= 1) pst_fuzz_mac(name, iv, body, len, mac);
  int rc = pst_ticket_cb(NULL, name, iv, mac, 0, body, len, &out, pst_fuzz_src);
  if (rc != WOLFSSL_TICKET_RET_OK && rc != WOLFSSL_TICKET_RET_REJECT) abort();
  /* POSTERN_FUZZ_VERBOSE=1: whether a seed opens. */
  if (getenv("POSTERN_FUZZ_VERBOSE") != NULL) {
    fprintf(stderr, "ticket: mode %d, %d bytes: %s\n", mode, len,
            rc == WOLFSSL_TICKET_RET_OK ? "opened" : "rejected");
  }
  if (rc == WOLFSSL_TICKET_RET_OK && (out < 0 || out >= len || len - out > 16)) abort();
  if (mode == 2 && rc == WOLFSSL_TICKET_RET_OK && memcmp(body, data + 64, (size_t)out) != 0) {
    abort();
  }
  if (mode == 2) {
    /* Seal the plaintext as wolfSSL asks for a new ticket, then open it. */
    int plain = len > 4000 ? 4000 : len, sealed = -1, opened = -1;
    memcpy(body, data + 64, (size_t)plain);
    if (pst_ticket_cb(NULL, name, iv, mac, 1, body, plain, &sealed, pst_fuzz_src) !=
        WOLFSSL_TICKET_RET_OK) {
      abort();
    }
    if (pst_ticket_cb(NULL, name, iv, mac, 0, body, sealed, &opened, pst_fuzz_src) !=
            WOLFSSL_TICKET_RET_OK ||
        opened != plain || memcmp(body, data + 64, (size_t)plain) != 0) {
      abort();
    }
  }
  free(body);
  return 0;
}
