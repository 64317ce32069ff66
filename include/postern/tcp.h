/* postern: the tcp relay, the application of a tcp-mode listener whose
 * route is an address: the decrypted byte stream goes to a backend
 * connection of its own (pool.h, never pooled) and the backend's bytes come
 * back, with backpressure both ways and half-close both ways (RFC 8446 6.1
 * lets each side go on sending after the other's close_notify). */
#ifndef POSTERN_TCP_H
#define POSTERN_TCP_H

#include "postern/app-t.h"

/* Starts the relay for host: leases a fresh backend connection to
 * host->backend and starts connecting (bytes fed meanwhile wait for the
 * connection). Returns the application, or NULL with *err set: -ENOMEM, or
 * the error that kept the socket from being created. */
pst_app_t *pst_tcp_app_new(pst_host_t *host, int *err);

#endif
