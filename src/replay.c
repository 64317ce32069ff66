/* postern: the strike register against replayed 0-RTT early data (see
 * replay.h for what it guarantees and why it is shaped this way). */
#include "postern/replay.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "postern/common.h"

#define REPLAY_SHARDS 16

enum { SLOT_EMPTY = 0, SLOT_USED = 1 };

/* Linear probing; a release shifts the entries after it back instead of
 * leaving a tombstone, so released slots are free at once. */
typedef struct {
  uint8_t (*keys)[PST_REPLAY_KEY_LEN];
  uint8_t *state; /* SLOT_* per slot */
  size_t used;    /* SLOT_USED slots */
} replay_table_t;

typedef struct {
  pthread_mutex_t lock;
  uint64_t window; /* number of the window cur belongs to */
  replay_table_t t[2];
  int cur; /* index of the current window's table; the other is the previous */
} replay_shard_t;

struct pst_replay_s {
  uint64_t window_ms;
  size_t max_used; /* per table: past it, claims fail */
  size_t mask;     /* slots per table - 1 */
  replay_shard_t shards[REPLAY_SHARDS];
};

static void table_clear(replay_table_t *t, size_t slots) {
  if (t->used == 0) return; /* never touched: keep the pages unmapped */
  memset(t->state, 0, slots);
  t->used = 0;
}

/* Moves the shard to window w, clearing what aged out. Lock held. */
static void shard_advance(pst_replay_t *r, replay_shard_t *s, uint64_t w) {
  if (w <= s->window) return; /* the same window (or a clock that went back) */
  size_t slots = r->mask + 1;
  if (w == s->window + 1) {
    s->cur ^= 1; /* the current table becomes the previous one */
    table_clear(&s->t[s->cur], slots);
  } else {
    table_clear(&s->t[0], slots);
    table_clear(&s->t[1], slots);
  }
  s->window = w;
}

/* Where key's probe sequence starts. The key is a hash already. */
static size_t home_of(const pst_replay_t *r, const uint8_t *key) {
  size_t h;
  memcpy(&h, key + 8, sizeof(h));
  return h & r->mask;
}

/* The slot holding key (*found = 1), or the free slot where it would go
 * (*found = 0); the table always has a free slot (used <= slots / 2). */
static size_t table_find(const pst_replay_t *r, const replay_table_t *t, const uint8_t *key,
                         int *found) {
  size_t slot = home_of(r, key);
  while (t->state[slot] == SLOT_USED) {
    if (memcmp(t->keys[slot], key, PST_REPLAY_KEY_LEN) == 0) {
      *found = 1;
      return slot;
    }
    slot = (slot + 1) & r->mask;
  }
  *found = 0;
  return slot;
}

/* Empties slot i and moves back every following entry whose probe sequence
 * passes over i (backward-shift deletion), so that no lookup stops short. */
static void table_remove(const pst_replay_t *r, replay_table_t *t, size_t i) {
  size_t j = i;
  for (;;) {
    j = (j + 1) & r->mask;
    if (t->state[j] == SLOT_EMPTY) break;
    size_t k = home_of(r, t->keys[j]);
    /* The entry at j may stay when its home k lies cyclically in (i, j]. */
    int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    memcpy(t->keys[i], t->keys[j], PST_REPLAY_KEY_LEN);
    i = j;
  }
  t->state[i] = SLOT_EMPTY;
  t->used--;
}

static replay_shard_t *shard_of(pst_replay_t *r, const uint8_t *key) {
  return &r->shards[key[0] % REPLAY_SHARDS];
}

int pst_replay_new(size_t capacity, uint64_t window_ms, pst_replay_t **out) {
  if (capacity == 0 || window_ms == 0) return -EINVAL;
  pst_replay_t *r = calloc(1, sizeof(*r));
  if (r == NULL) return -ENOMEM;
  r->window_ms = window_ms;
  r->max_used = (capacity + REPLAY_SHARDS - 1) / REPLAY_SHARDS;
  /* At most half full: probe sequences stay short. */
  size_t slots = 8;
  while (slots < 2 * r->max_used) slots *= 2;
  r->mask = slots - 1;
  for (int i = 0; i < REPLAY_SHARDS; i++) {
    replay_shard_t *s = &r->shards[i];
    pthread_mutex_init(&s->lock, NULL);
    for (int k = 0; k < 2; k++) {
      s->t[k].keys = calloc(slots, sizeof(*s->t[k].keys));
      s->t[k].state = calloc(slots, 1);
      if (s->t[k].keys == NULL || s->t[k].state == NULL) {
        pst_replay_free(r);
        return -ENOMEM;
      }
    }
  }
  *out = r;
  return 0;
}

void pst_replay_free(pst_replay_t *r) {
  if (r == NULL) return;
  for (int i = 0; i < REPLAY_SHARDS; i++) {
    replay_shard_t *s = &r->shards[i];
    for (int k = 0; k < 2; k++) {
      free(s->t[k].keys);
      free(s->t[k].state);
    }
    pthread_mutex_destroy(&s->lock);
  }
  free(r);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static pst_replay_t *global_register;

static void global_init(void) {
  if (pst_replay_new(PST_REPLAY_CAPACITY, PST_REPLAY_WINDOW_MS, &global_register) != 0) {
    global_register = NULL;
  }
}

pst_replay_t *pst_replay_global(void) {
  pthread_once(&global_once, global_init);
  return global_register;
}

void pst_replay_key(const uint8_t *binder, size_t len, uint8_t key[PST_REPLAY_KEY_LEN]) {
  uint8_t digest[WC_SHA256_DIGEST_SIZE];
  if (wc_Sha256Hash(binder, (word32)len, digest) != 0) memset(digest, 0, sizeof(digest));
  memcpy(key, digest, PST_REPLAY_KEY_LEN);
  /* An all-zero key is as good as any other, but keep the invariant cheap
   * to state: no key is all zero. */
  uint8_t any = 0;
  for (int i = 0; i < PST_REPLAY_KEY_LEN; i++) any |= key[i];
  if (any == 0) key[0] = 1;
}

int pst_replay_claim(pst_replay_t *r, const uint8_t key[PST_REPLAY_KEY_LEN], uint64_t now_ms) {
  replay_shard_t *s = shard_of(r, key);
  int found = 0, rc;
  pthread_mutex_lock(&s->lock);
  shard_advance(r, s, now_ms / r->window_ms);
  replay_table_t *cur = &s->t[s->cur], *prev = &s->t[s->cur ^ 1];
  table_find(r, prev, key, &found);
  if (found) {
    rc = PST_REPLAY_SEEN;
  } else {
    size_t slot = table_find(r, cur, key, &found);
    if (found) {
      rc = PST_REPLAY_SEEN;
    } else if (cur->used >= r->max_used) {
      rc = PST_ELIMIT;
    } else {
      cur->used++;
      memcpy(cur->keys[slot], key, PST_REPLAY_KEY_LEN);
      cur->state[slot] = SLOT_USED;
      rc = 0;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

void pst_replay_release(pst_replay_t *r, const uint8_t key[PST_REPLAY_KEY_LEN], uint64_t now_ms) {
  replay_shard_t *s = shard_of(r, key);
  int found = 0;
  pthread_mutex_lock(&s->lock);
  shard_advance(r, s, now_ms / r->window_ms);
  for (int k = 0; k < 2; k++) {
    replay_table_t *t = &s->t[k];
    size_t slot = table_find(r, t, key, &found);
    if (found) {
      table_remove(r, t, slot);
      break;
    }
  }
  pthread_mutex_unlock(&s->lock);
}

size_t pst_replay_count(pst_replay_t *r, uint64_t now_ms) {
  size_t n = 0;
  for (int i = 0; i < REPLAY_SHARDS; i++) {
    replay_shard_t *s = &r->shards[i];
    pthread_mutex_lock(&s->lock);
    shard_advance(r, s, now_ms / r->window_ms);
    n += s->t[s->cur].used;
    pthread_mutex_unlock(&s->lock);
  }
  return n;
}
