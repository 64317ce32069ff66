/* postern: socket writes and reads shared by client and backend sides. */
#ifndef POSTERN_UVIO_H
#define POSTERN_UVIO_H

#include <stddef.h>
#include <uv.h>

/* Writes len bytes to s: straight to the socket when nothing is queued and
 * it takes them (no copy, no callback), else what is left is copied into a
 * write request, and cb runs when it completes. In cb, pst_uv_write_done
 * gives owner back and frees the request. Returns 0 or a negative error
 * (nothing queued then; bytes the socket took at once may have gone out,
 * so the caller must treat the stream as failed). */
int pst_uv_write(uv_stream_t *s, const char *data, size_t len, void *owner, uv_write_cb cb);

/* For a write callback: returns the owner given to pst_uv_write and frees
 * the request. */
void *pst_uv_write_done(uv_write_t *req);

/* libuv allocation callback handing out the worker's read slab (the loop's
 * data is its pst_worker_t): a read is processed before the next one, so
 * one buffer per worker serves every socket. */
void pst_uv_alloc_slab(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

#endif
