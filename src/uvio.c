/* postern: socket writes and reads shared by client and backend sides. */
#include "postern/uvio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "postern/common.h"
#include "postern/worker-t.h"

typedef struct {
  uv_write_t req;
  void *owner;
  char data[];
} uvio_wreq_t;

int pst_uv_write(uv_stream_t *s, const char *data, size_t len, void *owner, uv_write_cb cb) {
  if (len == 0) return 0;
  if (uv_stream_get_write_queue_size(s) == 0) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    if (n == (int)len) return 0;
    if (n < 0 && n != UV_EAGAIN) return n;
    if (n > 0) {
      data += n;
      len -= (size_t)n;
    }
  }
  uvio_wreq_t *w = malloc(sizeof(*w) + len);
  if (w == NULL) return -ENOMEM;
  w->owner = owner;
  memcpy(w->data, data, len);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  int rc = uv_write(&w->req, s, &b, 1, cb);
  if (rc != 0) free(w);
  return rc;
}

void *pst_uv_write_done(uv_write_t *req) {
  uvio_wreq_t *w = PST_CONTAINER_OF(req, uvio_wreq_t, req);
  void *owner = w->owner;
  free(w);
  return owner;
}

void pst_uv_alloc_slab(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  pst_worker_t *worker = h->loop->data;
  *buf = uv_buf_init(worker->slab, PST_READ_SLAB);
}
