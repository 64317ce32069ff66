/* postern: unit tests for session ticket keys (src/ticket.c): key lines and
 * files, sealing and opening, the wolfSSL callback's answers, key sources
 * (sharing, reload, the in-memory ring's rotation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <utime.h>
#include <unistd.h>

#include <cmocka.h>

#include "postern/common.h"
#include "postern/ticket.h"

/* 80 bytes 0x00..0x4f, base64. */
static const char key_0_79[] =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"
    "P0BBQkNERUZHSElKS0xNTk8=";

/* Large enough for a wolfSSL InternalTicket (about 200 bytes) plus padding. */
#define BODY 512

static char tmpdir[64];

static int setup_dir(void **state) {
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_ticket.XXXXXX");
  return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_dir(void **state) {
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  chmod(path, 0600);
}

static void new_line(char line[PST_TICKET_KEY_B64_LEN + 1]) {
  assert_int_equal(pst_ticket_key_generate(line, PST_TICKET_KEY_B64_LEN + 1), 0);
}

static void test_key_parse(void **state) {
  pst_ticket_key_t k;
  char err[256];
  assert_int_equal(pst_ticket_key_parse(key_0_79, strlen(key_0_79), &k, err, sizeof(err)), 0);
  for (int i = 0; i < 16; i++) assert_int_equal(k.name[i], i);
  for (int i = 0; i < 32; i++) assert_int_equal(k.aes[i], 16 + i);
  for (int i = 0; i < 32; i++) assert_int_equal(k.hmac[i], 48 + i);
  /* Spaces around it are fine. */
  char padded[200];
  snprintf(padded, sizeof(padded), "  %s \t\r", key_0_79);
  assert_int_equal(pst_ticket_key_parse(padded, strlen(padded), &k, err, sizeof(err)), 0);
  /* Not base64, wrong length, missing padding, bits set past the end. */
  assert_int_equal(pst_ticket_key_parse("!!!!", 4, &k, err, sizeof(err)), PST_ECONFIG);
  assert_non_null(strstr(err, "not a base64 key"));
  assert_int_equal(pst_ticket_key_parse("AAAA", 4, &k, err, sizeof(err)), PST_ECONFIG);
  assert_non_null(strstr(err, "decodes to 3 bytes; expected 80"));
  char s[200];
  snprintf(s, sizeof(s), "%.*s", (int)strlen(key_0_79) - 1, key_0_79); /* no '=' */
  assert_int_equal(pst_ticket_key_parse(s, strlen(s), &k, err, sizeof(err)), PST_ECONFIG);
  snprintf(s, sizeof(s), "%s", key_0_79);
  s[strlen(s) - 2] = 'P'; /* "Tw=" -> "TP=": bits past the last byte */
  assert_int_equal(pst_ticket_key_parse(s, strlen(s), &k, err, sizeof(err)), PST_ECONFIG);
  snprintf(s, sizeof(s), "%s", key_0_79);
  s[10] = ' '; /* a space inside */
  assert_int_equal(pst_ticket_key_parse(s, strlen(s), &k, err, sizeof(err)), PST_ECONFIG);
}

static void test_key_generate(void **state) {
  char a[PST_TICKET_KEY_B64_LEN + 1], b[PST_TICKET_KEY_B64_LEN + 1];
  char err[256];
  new_line(a);
  new_line(b);
  assert_int_equal(strlen(a), PST_TICKET_KEY_B64_LEN);
  assert_string_not_equal(a, b);
  pst_ticket_key_t k;
  assert_int_equal(pst_ticket_key_parse(a, strlen(a), &k, err, sizeof(err)), 0);
  char small[10];
  assert_int_equal(pst_ticket_key_generate(small, sizeof(small)), -EINVAL);
}

static void test_keys_parse_file(void **state) {
  char a[PST_TICKET_KEY_B64_LEN + 1], b[PST_TICKET_KEY_B64_LEN + 1], text[1024], err[256];
  pst_ticket_keyset_t ks;
  new_line(a);
  new_line(b);
  snprintf(text, sizeof(text), "# keys\n\n  %s\n# newest last\n%s", a, b); /* no final newline */
  assert_int_equal(pst_ticket_keys_parse("k.txt", text, strlen(text), &ks, err, sizeof(err)), 0);
  assert_int_equal(ks.n, 2);
  pst_ticket_key_t kb;
  pst_ticket_key_parse(b, strlen(b), &kb, err, sizeof(err));
  assert_memory_equal(&ks.keys[1], &kb, sizeof(kb));
  /* A bad line names its line number. */
  snprintf(text, sizeof(text), "%s\n# x\nnot a key\n", a);
  assert_int_equal(pst_ticket_keys_parse("k.txt", text, strlen(text), &ks, err, sizeof(err)),
                   PST_ECONFIG);
  assert_non_null(strstr(err, "k.txt:3: not a base64 key"));
  /* No key at all. */
  assert_int_equal(pst_ticket_keys_parse("k.txt", "# nothing\n\n", 11, &ks, err, sizeof(err)),
                   PST_ECONFIG);
  assert_non_null(strstr(err, "k.txt: no key"));
  /* The same key twice. */
  snprintf(text, sizeof(text), "%s\n%s\n", a, a);
  assert_int_equal(pst_ticket_keys_parse("k.txt", text, strlen(text), &ks, err, sizeof(err)),
                   PST_ECONFIG);
  assert_non_null(strstr(err, "k.txt:2: the key name"));
  /* Too many keys. */
  char *big = malloc((PST_TICKET_MAX_KEYS + 1) * (PST_TICKET_KEY_B64_LEN + 1) + 1);
  big[0] = '\0';
  for (int i = 0; i <= PST_TICKET_MAX_KEYS; i++) {
    new_line(a);
    strcat(big, a);
    strcat(big, "\n");
  }
  assert_int_equal(pst_ticket_keys_parse("k.txt", big, strlen(big), &ks, err, sizeof(err)),
                   PST_ECONFIG);
  assert_non_null(strstr(err, "k.txt:33: more than 32 keys"));
  free(big);
  /* A file that cannot be read. */
  assert_int_equal(pst_ticket_keys_load("/nonexistent/k", &ks, err, sizeof(err)), PST_ECONFIG);
  assert_non_null(strstr(err, "/nonexistent/k: cannot read"));
}

static void test_seal_open(void **state) {
  pst_ticket_key_t key, other;
  char line[PST_TICKET_KEY_B64_LEN + 1], err[256];
  new_line(line);
  pst_ticket_key_parse(line, strlen(line), &key, err, sizeof(err));
  new_line(line);
  pst_ticket_key_parse(line, strlen(line), &other, err, sizeof(err));
  for (int len = 0; len <= 250; len += 25) {
    uint8_t body[BODY], orig[BODY], name[16], iv[16], mac[32];
    for (int i = 0; i < len; i++) orig[i] = body[i] = (uint8_t)(i * 7 + len);
    int out = 0, plain = 0;
    assert_int_equal(pst_ticket_seal(&key, name, iv, mac, body, len, &out), 0);
    assert_true(out > len && out <= len + 16 && out % 16 == 0);
    assert_memory_equal(name, key.name, 16);
    uint8_t sealed[BODY];
    memcpy(sealed, body, (size_t)out);
    assert_int_equal(pst_ticket_open(&key, name, iv, mac, body, out, &plain), 0);
    assert_int_equal(plain, len);
    assert_memory_equal(body, orig, (size_t)len);
    /* Any change is refused: body, IV, name, MAC, another key, a length. */
    uint8_t copy[BODY];
    memcpy(copy, sealed, (size_t)out);
    copy[out / 2] ^= 1;
    assert_int_equal(pst_ticket_open(&key, name, iv, mac, copy, out, &plain), PST_EPROTO);
    memcpy(copy, sealed, (size_t)out);
    iv[3] ^= 0x80;
    assert_int_equal(pst_ticket_open(&key, name, iv, mac, copy, out, &plain), PST_EPROTO);
    iv[3] ^= 0x80;
    name[0] ^= 1;
    assert_int_equal(pst_ticket_open(&key, name, iv, mac, copy, out, &plain), PST_EPROTO);
    name[0] ^= 1;
    mac[31] ^= 1;
    assert_int_equal(pst_ticket_open(&key, name, iv, mac, copy, out, &plain), PST_EPROTO);
    mac[31] ^= 1;
    assert_int_equal(pst_ticket_open(&other, name, iv, mac, copy, out, &plain), PST_EPROTO);
    assert_int_equal(pst_ticket_open(&key, name, iv, mac, copy, out - 16, &plain), PST_EPROTO);
    assert_int_equal(pst_ticket_open(&key, name, iv, mac, copy, out - 1, &plain), PST_EPROTO);
    assert_int_equal(pst_ticket_open(&key, name, iv, mac, copy, 0, &plain), PST_EPROTO);
    /* Two seals of the same body differ (random IV). */
    uint8_t iv2[16], mac2[32], body2[BODY];
    memcpy(body2, orig, (size_t)len);
    assert_int_equal(pst_ticket_seal(&key, name, iv2, mac2, body2, len, &out), 0);
    assert_memory_not_equal(iv, iv2, 16);
  }
}

/* Seals len bytes the way wolfSSL asks the callback to. */
static int cb_seal(pst_ticket_src_t *src, uint8_t *name, uint8_t *iv, uint8_t *mac, uint8_t *body,
                   int len, int *out) {
  return pst_ticket_cb(NULL, name, iv, mac, 1, body, len, out, src);
}

static int cb_open(pst_ticket_src_t *src, uint8_t *name, uint8_t *iv, uint8_t *mac, uint8_t *body,
                   int len, int *out) {
  return pst_ticket_cb(NULL, name, iv, mac, 0, body, len, out, src);
}

static void test_file_source_and_callback(void **state) {
  char path[128], a[PST_TICKET_KEY_B64_LEN + 1], b[PST_TICKET_KEY_B64_LEN + 1],
      c[PST_TICKET_KEY_B64_LEN + 1], text[512], err[256];
  snprintf(path, sizeof(path), "%s/tickets.keys", tmpdir);
  new_line(a);
  new_line(b);
  new_line(c);
  snprintf(text, sizeof(text), "%s\n%s\n", a, b);
  write_file(path, text);
  pst_ticket_src_t *src = NULL, *again = NULL;
  assert_int_equal(pst_ticket_src_get(path, 0, 0, &src, err, sizeof(err)), 0);
  /* The same path is the same source. */
  assert_int_equal(pst_ticket_src_get(path, 0, 0, &again, err, sizeof(err)), 0);
  assert_ptr_equal(src, again);
  pst_ticket_src_put(again);

  pst_ticket_key_t ka, kb;
  pst_ticket_key_parse(a, strlen(a), &ka, err, sizeof(err));
  pst_ticket_key_parse(b, strlen(b), &kb, err, sizeof(err));
  uint8_t body[BODY] = {1, 2, 3}, name[16], iv[16], mac[32];
  int out = 0, plain = 0;
  /* The newest key (last line) seals. */
  assert_int_equal(cb_seal(src, name, iv, mac, body, 200, &out), WOLFSSL_TICKET_RET_OK);
  assert_memory_equal(name, kb.name, 16);
  uint8_t sealed_b[BODY], iv_b[16], mac_b[32];
  memcpy(sealed_b, body, BODY);
  memcpy(iv_b, iv, 16);
  memcpy(mac_b, mac, 32);
  int out_b = out;
  assert_int_equal(cb_open(src, name, iv, mac, body, out, &plain), WOLFSSL_TICKET_RET_OK);
  assert_int_equal(plain, 200);
  assert_int_equal(body[0], 1);
  /* An older key of the file opens too: OK under TLS 1.3 (ssl NULL). */
  uint8_t name_a[16];
  memset(body, 9, 200);
  assert_int_equal(pst_ticket_seal(&ka, name_a, iv, mac, body, 200, &out), 0);
  uint8_t sealed_a[BODY], iv_a[16], mac_a[32];
  memcpy(sealed_a, body, BODY);
  memcpy(iv_a, iv, 16);
  memcpy(mac_a, mac, 32);
  int out_a = out;
  assert_int_equal(cb_open(src, name_a, iv, mac, body, out, &plain), WOLFSSL_TICKET_RET_OK);
  /* A forged MAC, or an unknown name: a full handshake, not an error. */
  memcpy(body, sealed_a, BODY);
  mac[0] ^= 1;
  assert_int_equal(cb_open(src, name_a, iv_a, mac, body, out_a, &plain), WOLFSSL_TICKET_RET_REJECT);
  uint8_t unknown[16] = {0xee};
  memcpy(body, sealed_a, BODY);
  assert_int_equal(cb_open(src, unknown, iv_a, mac_a, body, out_a, &plain),
                   WOLFSSL_TICKET_RET_REJECT);

  /* Reload with a file that has only c: a and b no longer open. */
  snprintf(text, sizeof(text), "# rotated\n%s\n", c);
  write_file(path, text);
  assert_int_equal(pst_ticket_keys_reload(path, err, sizeof(err)), 0);
  memcpy(body, sealed_b, BODY);
  assert_int_equal(cb_open(src, kb.name, iv_b, mac_b, body, out_b, &plain),
                   WOLFSSL_TICKET_RET_REJECT);
  /* A bad file is refused and the keys stay. */
  write_file(path, "garbage\n");
  assert_int_equal(pst_ticket_keys_reload(path, err, sizeof(err)), PST_ECONFIG);
  assert_non_null(strstr(err, ":1: not a base64 key"));
  assert_int_equal(pst_ticket_keys_reload_all(err, sizeof(err)), PST_ECONFIG);
  pst_ticket_key_t kc;
  pst_ticket_key_parse(c, strlen(c), &kc, err, sizeof(err));
  memset(body, 5, 100);
  assert_int_equal(cb_seal(src, name, iv, mac, body, 100, &out), WOLFSSL_TICKET_RET_OK);
  assert_memory_equal(name, kc.name, 16);
  /* Back to a and b with reload_all. */
  snprintf(text, sizeof(text), "%s\n%s\n", a, b);
  write_file(path, text);
  assert_int_equal(pst_ticket_keys_reload_all(err, sizeof(err)), 0);
  memcpy(body, sealed_b, BODY);
  assert_int_equal(cb_open(src, kb.name, iv_b, mac_b, body, out_b, &plain), WOLFSSL_TICKET_RET_OK);
  /* A path no source uses: nothing to do. */
  assert_int_equal(pst_ticket_keys_reload("/nonexistent/other", err, sizeof(err)), 0);
  pst_ticket_src_put(src);
  /* Gone: the next get reads the file again. */
  write_file(path, "bad\n");
  assert_int_equal(pst_ticket_src_get(path, 0, 0, &src, err, sizeof(err)), PST_ECONFIG);
}

static void test_memory_ring(void **state) {
  char err[256];
  pst_ticket_src_t *src = NULL, *same = NULL, *other = NULL;
  /* Rotation every 1 s, tickets valid 3 s. */
  assert_int_equal(pst_ticket_src_get(NULL, 1000, 3000, &src, err, sizeof(err)), 0);
  uint64_t t0 = pst_ticket_now_ms();
  assert_int_equal(pst_ticket_src_get(NULL, 1000, 3000, &same, err, sizeof(err)), 0);
  assert_ptr_equal(src, same);
  assert_int_equal(pst_ticket_src_get(NULL, 2000, 3000, &other, err, sizeof(err)), 0);
  assert_ptr_not_equal(src, other);
  pst_ticket_src_put(other);
  pst_ticket_src_put(same);

  pst_ticket_key_t k1, k1b, k2, k3, found;
  int newest = -1;
  assert_int_equal(pst_ticket_src_seal_key(src, t0, &k1), 0);
  assert_int_equal(pst_ticket_src_seal_key(src, t0 + 500, &k1b), 0);
  assert_memory_equal(&k1, &k1b, sizeof(k1));
  /* Up to a second after the first key was made (at most t0), a new key. */
  assert_int_equal(pst_ticket_src_seal_key(src, t0 + 1000, &k2), 0);
  assert_memory_not_equal(k1.name, k2.name, 16);
  assert_int_equal(pst_ticket_src_open_key(src, k1.name, t0 + 1000, &found, &newest), 0);
  assert_int_equal(newest, 0);
  assert_int_equal(pst_ticket_src_open_key(src, k2.name, t0 + 1000, &found, &newest), 0);
  assert_int_equal(newest, 1);
  assert_int_equal(pst_ticket_src_seal_key(src, t0 + 2500, &k3), 0);
  assert_memory_not_equal(k3.name, k2.name, 16);
  /* Opening never rotates: k3 stays the newest however late it is. */
  assert_int_equal(pst_ticket_src_open_key(src, k3.name, t0 + 3999, &found, &newest), 0);
  assert_int_equal(newest, 1);
  /* k1 stopped sealing at t0+1000: it opens until t0+4000. */
  assert_int_equal(pst_ticket_src_open_key(src, k1.name, t0 + 3999, &found, &newest), 0);
  assert_int_equal(pst_ticket_src_open_key(src, k1.name, t0 + 4000, &found, &newest), PST_ECONFIG);
  assert_int_equal(pst_ticket_src_open_key(src, k2.name, t0 + 4000, &found, &newest), 0);
  /* Long idle: the current key rotates at the next seal, old ones expire. */
  pst_ticket_key_t k4;
  assert_int_equal(pst_ticket_src_seal_key(src, t0 + 100000, &k4), 0);
  assert_int_equal(pst_ticket_src_open_key(src, k2.name, t0 + 100000, &found, &newest),
                   PST_ECONFIG);
  assert_int_equal(pst_ticket_src_open_key(src, k3.name, t0 + 100000, &found, &newest), 0);
  pst_ticket_src_put(src);
  /* A rotation that would need too many keys. */
  assert_int_equal(pst_ticket_src_get(NULL, 1000, 31000, &src, err, sizeof(err)), PST_ECONFIG);
  assert_int_equal(pst_ticket_src_get(NULL, 0, 1000, &src, err, sizeof(err)), PST_ECONFIG);
}

/* The admin endpoint's ages: a file's keys are dated by the file's mtime
 * when first read; a key kept across a re-read keeps its date. */
static void test_key_ages(void **state) {
  char path[128], a[PST_TICKET_KEY_B64_LEN + 1], b[PST_TICKET_KEY_B64_LEN + 1],
      c[PST_TICKET_KEY_B64_LEN + 1], text[512], err[256];
  double ages[PST_TICKET_MAX_KEYS];
  snprintf(path, sizeof(path), "%s/ages.keys", tmpdir);
  new_line(a);
  new_line(b);
  new_line(c);
  snprintf(text, sizeof(text), "%s\n%s\n", a, b);
  write_file(path, text);
  time_t now = time(NULL);
  struct utimbuf old = {now - 1000, now - 1000};
  assert_int_equal(utime(path, &old), 0);
  pst_ticket_src_t *src = NULL;
  assert_int_equal(pst_ticket_src_get(path, 0, 0, &src, err, sizeof(err)), 0);
  assert_int_equal(pst_ticket_src_ages(src, now, ages, PST_TICKET_MAX_KEYS), 2);
  assert_true(ages[0] == 1000 && ages[1] == 1000);
  /* c appended 10 s ago: the newest (sealing) key is 10 s old, a and b
   * keep their date. */
  snprintf(text, sizeof(text), "%s\n%s\n%s\n", a, b, c);
  write_file(path, text);
  struct utimbuf recent = {now - 10, now - 10};
  assert_int_equal(utime(path, &recent), 0);
  assert_int_equal(pst_ticket_keys_reload(path, err, sizeof(err)), 0);
  assert_int_equal(pst_ticket_src_ages(src, now, ages, PST_TICKET_MAX_KEYS), 3);
  assert_true(ages[0] == 10 && ages[1] == 1000 && ages[2] == 1000);
  assert_int_equal(pst_ticket_src_ages(src, now, ages, 1), 1);
  pst_ticket_src_put(src);
  /* An in-memory ring: its first key was just made. */
  assert_int_equal(pst_ticket_src_get(NULL, 5000, 10000, &src, err, sizeof(err)), 0);
  assert_int_equal(pst_ticket_src_ages(src, time(NULL), ages, PST_TICKET_MAX_KEYS), 1);
  assert_true(ages[0] >= 0 && ages[0] < 5);
  pst_ticket_src_put(src);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_key_parse),
      cmocka_unit_test(test_key_generate),
      cmocka_unit_test(test_keys_parse_file),
      cmocka_unit_test(test_seal_open),
      cmocka_unit_test_setup_teardown(test_file_source_and_callback, setup_dir, teardown_dir),
      cmocka_unit_test(test_memory_ring),
      cmocka_unit_test_setup_teardown(test_key_ages, setup_dir, teardown_dir),
  };
  return cmocka_run_group_tests_name("ticket", tests, NULL, NULL);
}
