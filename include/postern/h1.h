/* postern: the HTTP/1.1 front end (RFC 9112), the application of an http
 * connection whose ALPN is not h2, and of a tcp-mode route to builtin:info.
 * Requests are parsed strictly (http.h) and forwarded one at a time as
 * streams (stream.h); pipelined requests wait for the response before them. */
#ifndef POSTERN_H1_H
#define POSTERN_H1_H

#include "postern/app-t.h"

/* Creates the HTTP/1.1 application for host. Returns NULL when out of
 * memory. */
pst_app_t *pst_h1_app_new(pst_host_t *host);

#endif
