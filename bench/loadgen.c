/* bench/loadgen.c: the TLS load generator of the bench suite.
 *
 * One thread, one libuv loop, the tuned wolfSSL from deps/wolfssl used on
 * plain non-blocking sockets (uv_poll), so that the client spends as little
 * CPU per handshake as it can: TLS 1.3 only, one cipher suite
 * (TLS_AES_128_GCM_SHA256), one X25519 key share (so no HelloRetryRequest,
 * RFC 8446 4.1.4), no certificate verification, SNI set.
 *
 * Modes:
 *   full    N slots, each in a loop: connect, full handshake, one small
 *           HTTP/1.1 request with "Connection: close", read the whole
 *           response (headers, Content-Length body, then the close), close.
 *   resume  the same, but each slot keeps the session (ticket) of its last
 *           connection and offers it on the next (RFC 8446 2.2); the report
 *           counts how many handshakes were really resumed.
 *   early   resume, with the request sent as 0-RTT early data (RFC 8446
 *           2.3, 4.2.10) in the first flight, with wolfSSL_write_early_data;
 *           after the handshake, wolfSSL_get_early_data_status says whether
 *           the server accepted it (counted); when it did not, the request is
 *           sent again as ordinary data, as RFC 8446 4.2.10 asks.
 *   idle    open COUNT connections (at most N handshakes in flight), finish
 *           their handshakes, keep them open, print one line when all are
 *           up, and hold them until SIGTERM or SIGINT.
 *
 * --delay-ms D emulates a network round trip of D ms in the client alone: every
 * byte wolfSSL sends is held D ms before it is written to the socket (the
 * server's answers are read at once). A response then takes about D ms per
 * round trip the client waited for, so the round trips can be counted on
 * loopback, where the real round trip is a few microseconds. With it, the
 * result also counts the responses whose first byte arrived while the
 * client's Finished was still held: answers the server sent without waiting
 * for the client's Finished, in the first round trip (0.5-RTT data, RFC 8446
 * 2.3).
 *
 * Per connection the result has three latencies from connect(): the
 * handshake done (wolfSSL_connect returned), the whole response received
 * (head and Content-Length body), and the close after it (the figure the
 * bench calls latency).
 *
 * full and resume run a warm-up (not counted; in resume mode also until every
 * slot holds a ticket), print {"event":"measure"} when measuring starts, then
 * after DURATION seconds print one JSON result line and let the connections
 * in flight finish before exiting. The result carries the client's own CPU
 * time over the window (getrusage), so the caller can tell when the load
 * generator, not the server, was the limit.
 *
 * Usage: loadgen --connect HOST:PORT [--sni NAME] [--mode full|resume|early|idle]
 *          [--conc N] [--duration S] [--warmup S] [--count K] [--timeout S]
 *          [--delay-ms D] [--sni-count N] [--rate R] [--fixed-key-share 1]
 *          [--sigalgs LIST] [--group x25519|p256] [--sources N]
 * --sources N spreads the source addresses over 127.0.0.2..N+1 (idle mode's
 * 100,000 connections need several addresses' ephemeral ports).
 * --sigalgs sets the signature_algorithms the client offers (OpenSSL's
 * list syntax, e.g. "RSA-PSS+SHA256"): a client that can only verify RSA,
 * to measure a server holding an ECDSA and an RSA certificate for a name.
 * With --rate R the load is open-loop (the overload scenario): R connections
 * are started per second whatever becomes of the earlier ones, at most
 * --conc in flight (a start that finds none free counts as "client_full");
 * without it, each of --conc slots starts its next connection when the last
 * one ends. --fixed-key-share 1 makes every ClientHello carry the same X25519
 * key share, generated once (the server still makes its own, fresh): it halves
 * the client's cost per handshake, so that one client core can offer several
 * times what one server core sustains.
 * --group p256 offers (and sends a key share for) secp256r1 only instead of
 * X25519: the cost of a server's import and check of a P-256 key share.
 * With --sni-count N, NAME holds one "%u" and each connection sends it with
 * a random number below N (the many-certificates scenario: a random name of
 * N per handshake).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/curve25519.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#define HEAD_MAX 4096

/* ---- latency histogram: log-linear, 32 sub-buckets per power of two
 * (about 3% resolution), microseconds ---- */

#define HIST_SUB 32
#define HIST_LINEAR 64 /* values below this have a bucket each */
#define HIST_BUCKETS (HIST_LINEAR + 40 * HIST_SUB)

typedef struct {
  uint64_t count[HIST_BUCKETS];
  uint64_t n;
  double sum;
} hist_t;

static int hist_index(uint64_t v) {
  if (v < HIST_LINEAR) return (int)v;
  int e = 63 - __builtin_clzll(v); /* >= 6 */
  int shift = e - 5;               /* keep the top 6 bits: 32..63 */
  int idx = HIST_LINEAR + (e - 6) * HIST_SUB + (int)((v >> shift) - HIST_SUB);
  return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The middle of bucket idx, in microseconds. */
static double hist_value(int idx) {
  if (idx < HIST_LINEAR) return idx;
  int e = (idx - HIST_LINEAR) / HIST_SUB + 6;
  int sub = (idx - HIST_LINEAR) % HIST_SUB + HIST_SUB;
  double lo = ldexp(sub, e - 5);
  return lo + ldexp(1, e - 5) / 2;
}

static void hist_add(hist_t *h, uint64_t us) {
  h->count[hist_index(us)]++;
  h->n++;
  h->sum += (double)us;
}

static double hist_quantile(const hist_t *h, double q) {
  if (h->n == 0) return 0;
  uint64_t want = (uint64_t)ceil(q * (double)h->n);
  if (want == 0) want = 1;
  uint64_t seen = 0;
  for (int i = 0; i < HIST_BUCKETS; i++) {
    seen += h->count[i];
    if (seen >= want) return hist_value(i);
  }
  return hist_value(HIST_BUCKETS - 1);
}

/* ---- options and state ---- */

typedef enum { MODE_FULL, MODE_RESUME, MODE_EARLY, MODE_IDLE } mode_t_;
static const char *mode_names[] = {"full", "resume", "early", "idle"};

static struct {
  struct sockaddr_in addr;
  const char *sni;
  mode_t_ mode;
  int conc;
  double duration, warmup, timeout;
  int count;
  uint64_t delay_ns; /* --delay-ms: emulated round trip, 0 for none */
  unsigned sni_count; /* --sni-count: names "sni" % [0, sni_count); 0: sni as it is */
  double rate;        /* --rate: connections started per second (open loop); 0: closed loop */
  int fixed_key;      /* --fixed-key-share */
  const char *sigalgs; /* --sigalgs: NULL for wolfSSL's default list */
  int group;           /* --group: the one group offered (WOLFSSL_ECC_*) */
  int sources;         /* --sources: source addresses 127.0.0.2..N+1; 0: the kernel's choice */
} opt = {.sni = "localhost", .mode = MODE_FULL, .conc = 16, .duration = 5, .warmup = 1,
         .timeout = 10, .count = 1000, .group = WOLFSSL_ECC_X25519};

/* Modes that keep each slot's session ticket and offer it on the next
 * connection. */
#define KEEPS_TICKET(m) ((m) == MODE_RESUME || (m) == MODE_EARLY)

typedef enum {
  SL_FREE = 0,    /* no connection */
  SL_CONNECTING,  /* connect(2) in progress: waiting for writable */
  SL_HANDSHAKE,   /* wolfSSL_connect running */
  SL_RESPONSE,    /* request sent, reading the response until the close */
  SL_IDLE,        /* idle mode: handshake done, held open */
  SL_CLOSING,     /* uv_close called on the poll handle */
} slot_state_t;

typedef enum { E_CONNECT, E_HANDSHAKE, E_IO, E_RESPONSE, E_TIMEOUT, E_FULL, E_KINDS } err_kind_t;
static const char *err_names[E_KINDS] = {"connect", "handshake", "io",
                                         "response", "timeout", "client_full"};

/* --delay-ms: bytes wolfSSL sent, held until due. */
typedef struct chunk {
  struct chunk *next;
  uint64_t due; /* uv_hrtime at which it goes to the socket */
  size_t len, off;
  int fin; /* holds the end of the client's Finished flight */
  char data[];
} chunk_t;

typedef struct {
  int fd;
  uv_poll_t poll;
  int events;  /* what poll waits for now */
  slot_state_t st;
  WOLFSSL *ssl;
  WOLFSSL_SESSION *sess; /* resume and early modes: the last ticket received */
  uint64_t t0;           /* connect start, uv_hrtime */
  uint64_t t_hs, t_resp; /* handshake done, whole response in (0: not yet) */
  int early_sent;        /* early mode: the request went out as early data */
  int early_accepted;    /* ... and the server accepted it */
  int fin_out;           /* --delay-ms: the client's Finished has left */
  int before_fin;        /* --delay-ms: response bytes came while it was held */
  chunk_t *q_head, *q_tail; /* --delay-ms: bytes held */
  uv_timer_t q_timer;
  char head[HEAD_MAX];
  size_t head_len;
  int head_done;
  int status;
  long long clen; /* Content-Length, -1 when absent */
  long long body;
} slot_t;

typedef struct {
  uint64_t ok, resumed, started;
  uint64_t early_sent, early_accepted, before_fin;
  uint64_t err[E_KINDS];
  hist_t lat;  /* connect() to the close after the response */
  hist_t hs;   /* connect() to the handshake done, client's view */
  hist_t resp; /* connect() to the whole response received */
} stats_t;

static uv_loop_t *loop;
static WOLFSSL_CTX *ctx;
static slot_t *slots;
static int n_slots;
static stats_t stats;
static int measuring, stopping;
static int active;       /* slots with a connection (not SL_FREE) */
static int idle_next, idle_up, idle_reported; /* idle mode: slots started, up */
static uint64_t t_measure;
static double cpu_measure;
static uv_timer_t phase_timer, tick_timer, drain_timer;
/* --rate: the slots without a connection, and the starts due so far. */
static int *free_slots, n_free;
static uint64_t t_rate0, launched;
static uv_timer_t rate_timer;
static uv_signal_t sig_term, sig_int;

static const char request[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
static char readbuf[16384];

static double cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void slot_start(slot_t *s);
static void slot_on_poll(uv_poll_t *p, int status, int events);
static void maybe_exit(void);
static uint64_t total_errors(void);

/* ---- --delay-ms: an emulated round trip, in the client alone ---- */

/* Forgets the bytes held (the connection is over). */
static void queue_drop(slot_t *s) {
  while (s->q_head != NULL) {
    chunk_t *c = s->q_head;
    s->q_head = c->next;
    free(c);
  }
  s->q_tail = NULL;
  if (opt.delay_ns) uv_timer_stop(&s->q_timer);
}

static void queue_flush(slot_t *s);

static void queue_on_timer(uv_timer_t *t) { queue_flush(t->data); }

/* Writes the held bytes that are due, in order, and re-arms the timer for
 * the rest. On a write error the rest is dropped: the server has gone, and
 * the next read says so. */
static void queue_flush(slot_t *s) {
  uint64_t now = uv_hrtime();
  /* libuv timers have millisecond steps: within 0.2 ms is on time. */
  while (s->q_head != NULL && s->q_head->due <= now + 200000) {
    chunk_t *c = s->q_head;
    ssize_t n = send(s->fd, c->data + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n < 0) {
      queue_drop(s);
      return;
    }
    c->off += (size_t)n;
    if (c->off < c->len) break;
    if (c->fin) s->fin_out = 1;
    s->q_head = c->next;
    if (s->q_head == NULL) s->q_tail = NULL;
    free(c);
  }
  if (s->q_head == NULL) return;
  uint64_t wait_ns = s->q_head->due > now ? s->q_head->due - now : 0;
  uint64_t wait_ms = (wait_ns + 999999) / 1000000;
  uv_timer_start(&s->q_timer, queue_on_timer, wait_ms > 0 ? wait_ms : 1, 0);
}

/* wolfSSL's send callback with --delay-ms: keeps a copy of the bytes, due
 * opt.delay_ns from now, and says they were sent. */
static int io_send_delayed(WOLFSSL *ssl, char *buf, int sz, void *arg) {
  slot_t *s = arg;
  chunk_t *c = malloc(sizeof(*c) + (size_t)sz);
  if (c == NULL) return WOLFSSL_CBIO_ERR_GENERAL;
  c->next = NULL;
  c->due = uv_hrtime() + opt.delay_ns;
  c->len = (size_t)sz;
  c->off = 0;
  c->fin = 0;
  memcpy(c->data, buf, (size_t)sz);
  if (s->q_tail != NULL) {
    s->q_tail->next = c;
  } else {
    s->q_head = c;
    uv_timer_start(&s->q_timer, queue_on_timer, (opt.delay_ns + 999999) / 1000000, 0);
  }
  s->q_tail = c;
  return sz;
}

/* ---- one connection ---- */

static void slot_on_closed(uv_handle_t *h) {
  slot_t *s = h->data;
  s->st = SL_FREE;
  active--;
  if (stopping) {
    maybe_exit();
    return;
  }
  if (opt.rate > 0) {
    /* Open loop: the rate timer decides when the next connection starts. */
    free_slots[n_free++] = (int)(s - slots);
    return;
  }
  if (opt.mode == MODE_IDLE && total_errors() > (uint64_t)opt.count) {
    /* The server refuses: give up, and say so. */
    idle_up = opt.count;
    maybe_exit();
    return;
  }
  slot_start(s); /* the next connection of this slot, or a retry */
}

static void slot_release(slot_t *s) {
  queue_drop(s);
  if (s->ssl != NULL) {
    wolfSSL_free(s->ssl);
    s->ssl = NULL;
  }
  s->st = SL_CLOSING;
  uv_close((uv_handle_t *)&s->poll, slot_on_closed);
  /* uv_close stops polling and removes the fd from epoll at once. */
  close(s->fd);
  s->fd = -1;
}

static uint64_t total_errors(void) {
  uint64_t errors = 0;
  for (int k = 0; k < E_KINDS; k++) errors += stats.err[k];
  return errors;
}

static void slot_fail(slot_t *s, err_kind_t kind) {
  if (measuring || opt.mode == MODE_IDLE) stats.err[kind]++;
  if (KEEPS_TICKET(opt.mode) && s->sess != NULL && kind == E_HANDSHAKE) {
    wolfSSL_SESSION_free(s->sess);
    s->sess = NULL;
  }
  slot_release(s);
}

static void slot_wait(slot_t *s, int events) {
  if (s->events == events) return;
  s->events = events;
  uv_poll_start(&s->poll, events, slot_on_poll);
}

static void slot_done(slot_t *s) {
  int good = s->head_done && s->status == 200 && (s->clen < 0 || s->body >= s->clen);
  if (!good) {
    slot_fail(s, E_RESPONSE);
    return;
  }
  if (KEEPS_TICKET(opt.mode)) {
    /* The NewSessionTicket (RFC 8446 4.6.1) came before the response. */
    WOLFSSL_SESSION *sess = wolfSSL_get1_session(s->ssl);
    if (sess != NULL) {
      if (s->sess != NULL) wolfSSL_SESSION_free(s->sess);
      s->sess = sess;
    }
  }
  if (measuring) {
    stats.ok++;
    if (wolfSSL_session_reused(s->ssl)) stats.resumed++;
    stats.early_sent += s->early_sent;
    stats.early_accepted += s->early_accepted;
    stats.before_fin += s->before_fin;
    hist_add(&stats.lat, (uv_hrtime() - s->t0) / 1000);
    hist_add(&stats.hs, (s->t_hs - s->t0) / 1000);
    if (s->t_resp) hist_add(&stats.resp, (s->t_resp - s->t0) / 1000);
  }
  slot_release(s);
}

static void slot_take_bytes(slot_t *s, const char *data, size_t n);

/* Parses what arrived of the response: status line and Content-Length from
 * the head, then counts body bytes; notes when the whole response is in. */
static void slot_take(slot_t *s, const char *data, size_t n) {
  /* An answer that came while the client's Finished was held was sent
   * before the server could have seen it. */
  if (opt.delay_ns && n > 0 && !s->fin_out) s->before_fin = 1;
  slot_take_bytes(s, data, n);
  if (!s->t_resp && s->head_done && s->clen >= 0 && s->body >= s->clen) s->t_resp = uv_hrtime();
}

static void slot_take_bytes(slot_t *s, const char *data, size_t n) {
  if (s->head_done) {
    s->body += (long long)n;
    return;
  }
  size_t room = HEAD_MAX - 1 - s->head_len;
  size_t take = n < room ? n : room;
  memcpy(s->head + s->head_len, data, take);
  s->head_len += take;
  s->head[s->head_len] = '\0';
  char *end = strstr(s->head, "\r\n\r\n");
  if (end == NULL) return;
  s->head_done = 1;
  size_t head_bytes = (size_t)(end - s->head) + 4;
  s->body = (long long)(s->head_len - head_bytes) + (long long)(n - take);
  if (strncmp(s->head, "HTTP/1.", 7) == 0 && s->head_len > 12) s->status = atoi(s->head + 9);
  for (char *p = s->head; p < end; p++) {
    if ((p == s->head || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
      s->clen = atoll(p + 15);
      break;
    }
  }
}

static void slot_read(slot_t *s) {
  for (;;) {
    int n = wolfSSL_read(s->ssl, readbuf, sizeof(readbuf));
    if (n > 0) {
      slot_take(s, readbuf, (size_t)n);
      continue;
    }
    int e = wolfSSL_get_error(s->ssl, n);
    if (e == WOLFSSL_ERROR_WANT_READ) {
      slot_wait(s, UV_READABLE);
      return;
    }
    if (e == WOLFSSL_ERROR_WANT_WRITE) {
      slot_wait(s, UV_WRITABLE);
      return;
    }
    /* close_notify (RFC 8446 6.1) or the TCP close: the response is over. */
    if (e == WOLFSSL_ERROR_ZERO_RETURN || e == SOCKET_PEER_CLOSED_E || e == SOCKET_ERROR_E) {
      slot_done(s);
      return;
    }
    slot_fail(s, E_IO);
    return;
  }
}

static void slot_handshake(slot_t *s) {
  int rc = wolfSSL_connect(s->ssl);
  if (rc != WOLFSSL_SUCCESS) {
    int e = wolfSSL_get_error(s->ssl, rc);
    if (e == WOLFSSL_ERROR_WANT_READ) {
      slot_wait(s, UV_READABLE);
    } else if (e == WOLFSSL_ERROR_WANT_WRITE) {
      slot_wait(s, UV_WRITABLE);
    } else {
      slot_fail(s, E_HANDSHAKE);
    }
    return;
  }
  if (opt.mode == MODE_IDLE) {
    s->st = SL_IDLE;
    uv_poll_stop(&s->poll);
    s->events = 0;
    idle_up++;
    active--; /* no longer in flight; the slot stays taken */
    if (idle_up >= opt.count) {
      maybe_exit();
      return;
    }
    if (idle_next < opt.count) slot_start(&slots[idle_next++]);
    return;
  }
  s->t_hs = uv_hrtime();
  if (opt.delay_ns) {
    /* wolfSSL_connect has just handed over the client's Finished (RFC 8446
     * 4.4.4): the last bytes held. */
    if (s->q_tail != NULL) s->q_tail->fin = 1;
    else s->fin_out = 1;
  }
  s->st = SL_RESPONSE;
  /* wolfSSL 5.5.4's client never leaves its early data state: it counts
   * every application byte it receives afterwards against its own
   * max_early_data (internal.c, DoApplicationData) and fails the read with a
   * fatal alert past it. Lift that bound once the handshake is done. */
  if (s->early_sent) wolfSSL_set_max_early_data(s->ssl, 0x7fffffff);
  if (s->early_sent && wolfSSL_get_early_data_status(s->ssl) == WOLFSSL_EARLY_DATA_ACCEPTED) {
    s->early_accepted = 1; /* the request is already there */
  } else {
    /* No early data, or refused: the request goes now (RFC 8446 4.2.10). */
    int n = wolfSSL_write(s->ssl, request, (int)sizeof(request) - 1);
    if (n != (int)sizeof(request) - 1) {
      /* A 45-byte record always fits in an empty socket buffer. */
      slot_fail(s, E_IO);
      return;
    }
  }
  slot_read(s);
}

/* Early mode: the ClientHello and, when the session allows early data, the
 * request as early data, in the first flight. Returns 0, or -1 when the
 * slot failed. */
static int slot_send_early(slot_t *s) {
  int out = 0;
  int n = wolfSSL_write_early_data(s->ssl, request, (int)sizeof(request) - 1, &out);
  if (n == (int)sizeof(request) - 1) {
    s->early_sent = 1;
    return 0;
  }
  /* A ticket that announced no early data: wolfSSL sent a plain
   * ClientHello and now waits for the ServerHello. */
  int e = wolfSSL_get_error(s->ssl, n);
  if (n < 0 && (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)) return 0;
  slot_fail(s, E_HANDSHAKE);
  return -1;
}

static void slot_connected(slot_t *s) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    slot_fail(s, E_CONNECT);
    return;
  }
  s->ssl = wolfSSL_new(ctx);
  if (s->ssl == NULL) {
    slot_fail(s, E_HANDSHAKE);
    return;
  }
  wolfSSL_set_fd(s->ssl, s->fd);
  const char *sni = opt.sni;
  char name[256];
  if (opt.sni_count > 0) {
    /* xorshift64: cheap, and the same sequence every run. */
    static uint64_t x = 88172645463325252ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    snprintf(name, sizeof(name), opt.sni, (unsigned)(x % opt.sni_count));
    sni = name;
  }
  wolfSSL_UseSNI(s->ssl, WOLFSSL_SNI_HOST_NAME, sni, (unsigned short)strlen(sni));
  /* One key share, X25519: the group every server in the bench prefers. */
  wolfSSL_UseKeyShare(s->ssl, WOLFSSL_ECC_X25519);
  if (opt.delay_ns) wolfSSL_SetIOWriteCtx(s->ssl, s);
  if (KEEPS_TICKET(opt.mode) && s->sess != NULL) wolfSSL_set_session(s->ssl, s->sess);
  s->st = SL_HANDSHAKE;
  if (opt.mode == MODE_EARLY && s->sess != NULL && slot_send_early(s) != 0) return;
  slot_handshake(s);
}

static void slot_on_poll(uv_poll_t *p, int status, int events) {
  slot_t *s = p->data;
  if (status < 0) {
    slot_fail(s, s->st == SL_CONNECTING ? E_CONNECT : E_IO);
    return;
  }
  switch (s->st) {
    case SL_CONNECTING: slot_connected(s); break;
    case SL_HANDSHAKE: slot_handshake(s); break;
    case SL_RESPONSE: slot_read(s); break;
    default: uv_poll_stop(p); break;
  }
}

/* --sources N: connections take their source address in turn from
 * 127.0.0.2 .. 127.0.0.N+1 (127.0.0.1's ports stay for another load
 * generator measuring meanwhile: bench/idle.py), so that more than one address's ephemeral ports
 * (ip_local_port_range, ~28,000) reach one server port. The port is chosen
 * at connect() (IP_BIND_ADDRESS_NO_PORT), per 4-tuple. */
static int slot_bind_source(int fd) {
  static unsigned next;
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(0x7f000002u + next++ % (unsigned)opt.sources);
  return bind(fd, (const struct sockaddr *)&a, sizeof(a));
}

static void slot_start(slot_t *s) {
  if (stopping) return;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
    exit(1);
  }
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (opt.sources > 0 && slot_bind_source(s->fd) != 0) {
    fprintf(stderr, "loadgen: bind: %s\n", strerror(errno));
    exit(1);
  }
  s->head_len = 0;
  s->head_done = 0;
  s->status = 0;
  s->clen = -1;
  s->body = 0;
  s->events = 0;
  s->t_hs = s->t_resp = 0;
  s->early_sent = s->early_accepted = s->fin_out = s->before_fin = 0;
  s->t0 = uv_hrtime();
  uv_poll_init(loop, &s->poll, s->fd);
  s->poll.data = s;
  active++;
  if (measuring) stats.started++;
  int rc = connect(s->fd, (const struct sockaddr *)&opt.addr, sizeof(opt.addr));
  if (rc == 0) {
    slot_connected(s);
    return;
  }
  if (errno != EINPROGRESS) {
    s->st = SL_CONNECTING;
    slot_fail(s, E_CONNECT);
    return;
  }
  s->st = SL_CONNECTING;
  slot_wait(s, UV_WRITABLE);
}

/* ---- phases ---- */

static void print_result(void) {
  uint64_t now = uv_hrtime();
  double window = (double)(now - t_measure) / 1e9;
  double cpu = cpu_now() - cpu_measure;
  uint64_t errors = total_errors();
  printf("{\"event\":\"result\",\"mode\":\"%s\",\"conc\":%d,\"window_s\":%.4f,\"ok\":%llu,"
         "\"errors\":%llu,\"resumed\":%llu,\"rate\":%.2f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,"
         "\"mean_ms\":%.4f,\"cpu_s\":%.4f,\"cpu_frac\":%.4f,",
         mode_names[opt.mode], opt.conc, window, (unsigned long long)stats.ok,
         (unsigned long long)errors, (unsigned long long)stats.resumed,
         (double)stats.ok / window, hist_quantile(&stats.lat, 0.50) / 1000,
         hist_quantile(&stats.lat, 0.99) / 1000,
         stats.lat.n ? stats.lat.sum / (double)stats.lat.n / 1000 : 0.0, cpu, cpu / window);
  printf("\"offered\":%llu,\"offered_rate\":%.2f,\"hs_p99_ms\":%.4f,",
         (unsigned long long)(stats.started + stats.err[E_FULL]),
         (double)(stats.started + stats.err[E_FULL]) / window,
         hist_quantile(&stats.hs, 0.99) / 1000);
  printf("\"hs_p50_ms\":%.4f,\"resp_p50_ms\":%.4f,\"resp_p99_ms\":%.4f,\"delay_ms\":%.3f,"
         "\"early_sent\":%llu,\"early_accepted\":%llu,\"before_fin\":%llu,\"errors_by_kind\":{",
         hist_quantile(&stats.hs, 0.50) / 1000, hist_quantile(&stats.resp, 0.50) / 1000,
         hist_quantile(&stats.resp, 0.99) / 1000, (double)opt.delay_ns / 1e6,
         (unsigned long long)stats.early_sent, (unsigned long long)stats.early_accepted,
         (unsigned long long)stats.before_fin);
  for (int k = 0; k < E_KINDS; k++) {
    printf("%s\"%s\":%llu", k ? "," : "", err_names[k], (unsigned long long)stats.err[k]);
  }
  printf("}}\n");
  fflush(stdout);
}

static void maybe_exit(void) {
  if (opt.mode == MODE_IDLE) {
    if (!idle_reported && idle_up >= opt.count) {
      idle_reported = 1;
      int open = 0;
      for (int i = 0; i < n_slots; i++) open += slots[i].st == SL_IDLE;
      printf("{\"event\":\"idle_ready\",\"open\":%d,\"errors\":%llu,\"seconds\":%.3f}\n", open,
             (unsigned long long)total_errors(), (double)(uv_hrtime() - t_measure) / 1e9);
      fflush(stdout);
      uv_timer_stop(&tick_timer);
    }
    return;
  }
  if (stopping && active == 0) uv_stop(loop);
}

static void on_drain_timeout(uv_timer_t *t) { uv_stop(loop); }

static void on_phase(uv_timer_t *t) {
  if (!measuring) {
    /* Resume and early modes measure resumed handshakes: wait (a little)
     * until every slot holds a ticket. */
    if (KEEPS_TICKET(opt.mode)) {
      int missing = 0;
      for (int i = 0; i < n_slots; i++) missing += slots[i].sess == NULL;
      if (missing > 0 && (double)(uv_hrtime() - t_measure) / 1e9 < opt.warmup + 5) {
        uv_timer_start(&phase_timer, on_phase, 50, 0);
        return;
      }
    }
    memset(&stats, 0, sizeof(stats));
    measuring = 1;
    t_measure = uv_hrtime();
    cpu_measure = cpu_now();
    printf("{\"event\":\"measure\"}\n");
    fflush(stdout);
    uv_timer_start(&phase_timer, on_phase, (uint64_t)(opt.duration * 1000), 0);
    return;
  }
  print_result();
  measuring = 0;
  stopping = 1;
  /* Connections in flight finish (bounded), so the server sees clean ends. */
  uv_timer_start(&drain_timer, on_drain_timeout, 2000, 0);
  maybe_exit();
}

/* --rate: starts the connections due since the last turn (libuv timers tick
 * by the millisecond, so several may be due at once). */
static void on_rate(uv_timer_t *t) {
  if (stopping) return;
  uint64_t due = (uint64_t)((double)(uv_hrtime() - t_rate0) / 1e9 * opt.rate);
  while (launched < due) {
    launched++;
    if (n_free == 0) {
      if (measuring) stats.err[E_FULL]++;
      continue;
    }
    slot_start(&slots[free_slots[--n_free]]);
  }
}

/* Aborts connections that have taken longer than the timeout. */
static void on_tick(uv_timer_t *t) {
  uint64_t now = uv_hrtime();
  uint64_t limit = (uint64_t)(opt.timeout * 1e9);
  for (int i = 0; i < n_slots; i++) {
    slot_t *s = &slots[i];
    if ((s->st == SL_CONNECTING || s->st == SL_HANDSHAKE || s->st == SL_RESPONSE) &&
        now - s->t0 > limit) {
      slot_fail(s, E_TIMEOUT);
    }
  }
}

static void on_signal(uv_signal_t *s, int signum) { uv_stop(loop); }

/* ---- set-up ---- */

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s --connect HOST:PORT [--sni NAME] [--mode full|resume|early|idle]\n"
          "          [--conc N] [--duration S] [--warmup S] [--count K] [--timeout S]\n"
          "          [--delay-ms D] [--sni-count N] [--rate R] [--fixed-key-share 1]\n"
          "          [--group x25519|p256] [--sigalgs LIST] [--sources N]\n",
          argv0);
  exit(2);
}

static void parse_args(int argc, char **argv) {
  int have_addr = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) usage(argv[0]);
    i++;
    if (strcmp(a, "--connect") == 0) {
      char host[64];
      const char *colon = strrchr(v, ':');
      if (colon == NULL || (size_t)(colon - v) >= sizeof(host)) usage(argv[0]);
      memcpy(host, v, (size_t)(colon - v));
      host[colon - v] = '\0';
      if (uv_ip4_addr(host, atoi(colon + 1), &opt.addr) != 0) usage(argv[0]);
      have_addr = 1;
    } else if (strcmp(a, "--sni") == 0) {
      opt.sni = v;
    } else if (strcmp(a, "--mode") == 0) {
      if (strcmp(v, "full") == 0) opt.mode = MODE_FULL;
      else if (strcmp(v, "resume") == 0) opt.mode = MODE_RESUME;
      else if (strcmp(v, "early") == 0) opt.mode = MODE_EARLY;
      else if (strcmp(v, "idle") == 0) opt.mode = MODE_IDLE;
      else usage(argv[0]);
    } else if (strcmp(a, "--conc") == 0) {
      opt.conc = atoi(v);
    } else if (strcmp(a, "--duration") == 0) {
      opt.duration = atof(v);
    } else if (strcmp(a, "--warmup") == 0) {
      opt.warmup = atof(v);
    } else if (strcmp(a, "--count") == 0) {
      opt.count = atoi(v);
    } else if (strcmp(a, "--timeout") == 0) {
      opt.timeout = atof(v);
    } else if (strcmp(a, "--rate") == 0) {
      opt.rate = atof(v);
      if (opt.rate < 0 || opt.rate > 1e6) usage(argv[0]);
    } else if (strcmp(a, "--sigalgs") == 0) {
      opt.sigalgs = v;
    } else if (strcmp(a, "--fixed-key-share") == 0) {
      opt.fixed_key = atoi(v) != 0;
    } else if (strcmp(a, "--group") == 0) {
      if (strcmp(v, "x25519") == 0) opt.group = WOLFSSL_ECC_X25519;
      else if (strcmp(v, "p256") == 0) opt.group = WOLFSSL_ECC_SECP256R1;
      else usage(argv[0]);
    } else if (strcmp(a, "--sni-count") == 0) {
      opt.sni_count = (unsigned)atoi(v);
    } else if (strcmp(a, "--sources") == 0) {
      opt.sources = atoi(v);
    } else if (strcmp(a, "--delay-ms") == 0) {
      double d = atof(v);
      if (d < 0 || d > 10000) usage(argv[0]);
      opt.delay_ns = (uint64_t)(d * 1e6);
    } else {
      usage(argv[0]);
    }
  }
  if (!have_addr || opt.conc < 1 || opt.duration <= 0 || opt.count < 1) usage(argv[0]);
  if (opt.sni_count > 0) {
    /* The name is a format: exactly one conversion, and it must be %u. */
    const char *pct = strchr(opt.sni, '%');
    if (pct == NULL || pct[1] != 'u' || strchr(pct + 2, '%') != NULL || strlen(opt.sni) > 200) {
      usage(argv[0]);
    }
  }
}

#ifdef HAVE_PK_CALLBACKS
/* The client does not authenticate the server (make_ctx): the server's
 * CertificateVerify signature is taken as valid without the ECDSA
 * verification, which was a third of the load generator's CPU. The server
 * signs as always; the load generator just stops being the limit sooner. */
static int skip_ecc_verify(WOLFSSL *ssl, const unsigned char *sig, unsigned int sig_len,
                           const unsigned char *hash, unsigned int hash_len,
                           const unsigned char *key_der, unsigned int key_len, int *result,
                           void *arg) {
  (void)ssl, (void)sig, (void)sig_len, (void)hash, (void)hash_len, (void)key_der;
  (void)key_len, (void)arg;
  *result = 1;
  return 0;
}
#endif

/* --fixed-key-share: the one X25519 key every ClientHello offers. */
static unsigned char fixed_priv[CURVE25519_KEYSIZE], fixed_pub[CURVE25519_KEYSIZE];

static int fixed_key_gen(WOLFSSL *ssl, struct curve25519_key *key, unsigned int size, void *arg) {
  (void)ssl, (void)size, (void)arg;
  return wc_curve25519_import_private_raw_ex(fixed_priv, sizeof(fixed_priv), fixed_pub,
                                             sizeof(fixed_pub), key, EC25519_LITTLE_ENDIAN);
}

static void make_fixed_key(void) {
  WC_RNG rng;
  curve25519_key key;
  word32 priv_len = sizeof(fixed_priv), pub_len = sizeof(fixed_pub);
  if (wc_InitRng(&rng) != 0 || wc_curve25519_init(&key) != 0 ||
      wc_curve25519_make_key(&rng, CURVE25519_KEYSIZE, &key) != 0 ||
      wc_curve25519_export_key_raw_ex(&key, fixed_priv, &priv_len, fixed_pub, &pub_len,
                                      EC25519_LITTLE_ENDIAN) != 0) {
    abort();
  }
  wc_curve25519_free(&key);
  wc_FreeRng(&rng);
}

static void make_ctx(void) {
  if (wolfSSL_Init() != WOLFSSL_SUCCESS) abort();
  ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
  if (ctx == NULL) abort();
  /* The bench measures servers: the client skips chain verification. */
  wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
#ifdef HAVE_PK_CALLBACKS
  wolfSSL_CTX_SetEccVerifyCb(ctx, skip_ecc_verify);
#endif
  if (wolfSSL_CTX_set_cipher_list(ctx, "TLS13-AES128-GCM-SHA256") != WOLFSSL_SUCCESS) abort();
  int groups[] = {opt.group};
  if (wolfSSL_CTX_set_groups(ctx, groups, 1) != WOLFSSL_SUCCESS) abort();
  /* Sessions are kept per slot, by reference: no client cache. */
  wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
  if (opt.delay_ns) wolfSSL_CTX_SetIOSend(ctx, io_send_delayed);
  if (opt.sigalgs != NULL && wolfSSL_CTX_set1_sigalgs_list(ctx, opt.sigalgs) != WOLFSSL_SUCCESS) {
    fprintf(stderr, "loadgen: --sigalgs %s: not a list wolfSSL takes\n", opt.sigalgs);
    exit(2);
  }
  if (opt.fixed_key) {
#ifdef HAVE_PK_CALLBACKS
    make_fixed_key();
    wolfSSL_CTX_SetX25519KeyGenCb(ctx, fixed_key_gen);
#else
    fprintf(stderr, "loadgen: --fixed-key-share needs wolfSSL's PK callbacks\n");
    exit(2);
#endif
  }
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  make_ctx();
  loop = uv_default_loop();
  n_slots = opt.mode == MODE_IDLE ? opt.count : opt.conc;
  slots = calloc((size_t)n_slots, sizeof(*slots));
  if (slots == NULL) abort();
  for (int i = 0; i < n_slots; i++) {
    slots[i].fd = -1;
    if (opt.delay_ns) {
      uv_timer_init(loop, &slots[i].q_timer);
      slots[i].q_timer.data = &slots[i];
    }
  }

  uv_timer_init(loop, &phase_timer);
  uv_timer_init(loop, &tick_timer);
  uv_timer_init(loop, &drain_timer);
  uv_signal_init(loop, &sig_term);
  uv_signal_init(loop, &sig_int);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  uv_timer_start(&tick_timer, on_tick, 100, 100);

  t_measure = uv_hrtime();
  if (opt.mode == MODE_IDLE) {
    while (idle_next < opt.conc && idle_next < opt.count) slot_start(&slots[idle_next++]);
  } else if (opt.rate > 0) {
    free_slots = malloc((size_t)n_slots * sizeof(*free_slots));
    if (free_slots == NULL) abort();
    for (int i = n_slots - 1; i >= 0; i--) free_slots[n_free++] = i;
    uv_timer_init(loop, &rate_timer);
    t_rate0 = uv_hrtime();
    uv_timer_start(&rate_timer, on_rate, 1, 1);
    uv_timer_start(&phase_timer, on_phase, (uint64_t)(opt.warmup * 1000), 0);
  } else {
    for (int i = 0; i < n_slots; i++) slot_start(&slots[i]);
    uv_timer_start(&phase_timer, on_phase, (uint64_t)(opt.warmup * 1000), 0);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
