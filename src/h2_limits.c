/* postern: the HTTP/2 abuse budgets of one front-end connection (h2.c):
 * stream ids the client skipped (RFC 9113 5.1.1), PRIORITY frames (5.3.2),
 * and streams that end before their response (rapid reset, "MadeYouReset").
 * Past a budget the connection ends with GOAWAY ENHANCE_YOUR_CALM
 * (RFC 9113 5.4.1, 10.5). */
#include <stdint.h>

#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "h2_int.h"
#include "postern/log.h"

/* RFC 9113 5.1.1: opening stream N closes every idle stream below N, so a
 * HEADERS frame on an id the client skipped is a connection error
 * (PROTOCOL_ERROR). nghttp2 ignores HEADERS on ids below the last one when
 * it has no record of the stream, because trailers may legitimately follow
 * our RST_STREAM on a stream that did exist; so postern remembers which of
 * the last H2_ID_WINDOW odd ids were really used and refuses only the
 * others. */
static int id_used(const h2_front_t *h2, int64_t id) {
  unsigned bit = (unsigned)(((id - 1) / 2) % H2_ID_WINDOW);
  return (h2->used[bit / 8] >> (bit % 8)) & 1;
}

static void id_mark(h2_front_t *h2, int64_t id, int used) {
  unsigned bit = (unsigned)(((id - 1) / 2) % H2_ID_WINDOW);
  uint8_t mask = (uint8_t)(1u << (bit % 8));
  h2->used[bit / 8] = (uint8_t)(used ? h2->used[bit / 8] | mask : h2->used[bit / 8] & ~mask);
}

/* PRIORITY frames (RFC 9113 5.3.2, 6.3) need no answer and nghttp2 1.52
 * takes any number of them, each costing a walk of the priority tree
 * (~350 ns): a flood of them is work the client gets for nothing. Browsers
 * send a few per stream at most, so a connection may send
 * H2_PRIORITY_BURST plus H2_PRIORITY_PER_STREAM for each stream it opens
 * (up to H2_PRIORITY_MAX in hand); past that, GOAWAY ENHANCE_YOUR_CALM
 * (RFC 9113 5.4.1, 10.5). */
static void count_priority(h2_front_t *h2) {
  if (h2->priority_budget > 0) {
    h2->priority_budget--;
    return;
  }
  if (h2->calm) return;
  h2->calm = 1;
  pst_log_debug("conn %llu: h2: more PRIORITY frames than streams justify: GOAWAY",
                (unsigned long long)h2->base.host->id);
  nghttp2_session_terminate_session(h2->session, NGHTTP2_ENHANCE_YOUR_CALM);
}

void pst_h2_limit_frame(h2_front_t *h2, const nghttp2_frame_hd *hd) {
  nghttp2_session *session = h2->session;
  int64_t id = hd->stream_id;
  if (hd->type == NGHTTP2_PRIORITY) count_priority(h2);
  if (hd->type != NGHTTP2_HEADERS || id <= 0 || id % 2 == 0) return; /* nghttp2 checks */
  if (id > h2->last_id) {
    if (h2->priority_budget < H2_PRIORITY_MAX - H2_PRIORITY_PER_STREAM)
      h2->priority_budget += H2_PRIORITY_PER_STREAM;
    int64_t from = h2->last_id + 2;
    if (id - from > 2 * H2_ID_WINDOW) from = id - 2 * H2_ID_WINDOW;
    for (int64_t k = from; k < id; k += 2) id_mark(h2, k, 0); /* skipped */
    id_mark(h2, id, 1);
    h2->last_id = id;
    return;
  }
  if (h2->last_id - id < 2 * H2_ID_WINDOW && !id_used(h2, id) &&
      nghttp2_session_find_stream(session, (int32_t)id) == NULL) {
    pst_log_debug("conn %llu: h2: HEADERS on stream %lld, closed since %lld opened",
                  (unsigned long long)h2->base.host->id, (long long)id, (long long)h2->last_id);
    nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR);
  }
}

/* Streams that end before their response is complete, whoever ends them
 * (the client's RST_STREAM, postern refusing a malformed request or one
 * over the stream limit, or nghttp2 resetting a stream that broke the
 * protocol, such as DATA beyond its declared content-length: the
 * "MadeYouReset" attack, CVE-2025-8671), share one budget with the
 * rapid-reset limits of the listener (h2.stream_reset_rate per second
 * after h2.stream_reset_burst): each may have cost a backend connection,
 * and none gave the client an answer. Past it the connection ends with
 * GOAWAY ENHANCE_YOUR_CALM (RFC 9113 5.4.1, 7). nghttp2's own limit
 * (h2_options) still counts the client's RST_STREAM frames. The streams a
 * client leaves unfinished by ending its side (h2_client_eof) do not count:
 * the connection ends anyway, and the complete requests keep their
 * answers. */
void pst_h2_count_early_end(h2_front_t *h2) {
  if (h2->client_eof) return;
  uint64_t now = uv_hrtime() / 1000000; /* ms */
  uint64_t cap = (uint64_t)h2->conf->h2_stream_reset_burst * 1000;
  uint64_t rate = h2->conf->h2_stream_reset_rate; /* thousandths per ms */
  uint64_t elapsed = now - h2->early_at;
  h2->early_at = now;
  if (rate > 0 && elapsed >= cap / rate) {
    h2->early_tokens = cap;
  } else if ((h2->early_tokens += elapsed * rate) > cap) {
    h2->early_tokens = cap;
  }
  if (h2->early_tokens >= 1000) {
    h2->early_tokens -= 1000;
    return;
  }
  if (h2->calm) return;
  h2->calm = 1;
  pst_log_debug(
      "conn %llu: h2: streams end before their responses faster than "
      "h2.stream_reset_rate allows: GOAWAY",
      (unsigned long long)h2->base.host->id);
  nghttp2_session_terminate_session(h2->session, NGHTTP2_ENHANCE_YOUR_CALM);
}
