/* postern: the HTTP/2 front end (RFC 9113), the application of an http
 * connection whose ALPN is h2: an nghttp2 session fed the decrypted bytes,
 * each request stream forwarded as an HTTP/1.1 exchange (stream.h). */
#ifndef POSTERN_H2_H
#define POSTERN_H2_H

#include "postern/app-t.h"

/* Creates the HTTP/2 application for host; it queues its SETTINGS (the
 * server preface, RFC 9113 3.4) at once. Returns NULL when out of memory. */
pst_app_t *pst_h2_app_new(pst_host_t *host);

#endif
