/* postern: the service manager's notification protocol (sd_notify(3)).
 *
 * systemd starts a Type=notify service with NOTIFY_SOCKET naming an AF_UNIX
 * datagram socket (a path, or an abstract name written with a leading '@')
 * and waits for "READY=1" on it before it calls the service started. The
 * protocol is documented and small: one datagram of newline-separated
 * VARIABLE=value lines per message. postern speaks it itself rather than
 * linking libsystemd for one sendto(2).
 *
 * Without NOTIFY_SOCKET every call here does nothing, so postern behaves
 * the same under a terminal, a container runtime or another supervisor.
 * A STATUS-only message is sent without blocking: a manager that stopped
 * reading loses a status line, it never stalls a loop. READY=1,
 * RELOADING=1 and STOPPING=1, which systemd waits for, wait up to 100 ms
 * for room in its queue, and a READY=1 that still cannot go is logged.
 * Main thread only. */
#ifndef POSTERN_NOTIFY_H
#define POSTERN_NOTIFY_H

#include <stdint.h>

/* Reads NOTIFY_SOCKET and opens the socket messages go out on. Without the
 * variable, notifications stay off and this returns 0.
 * Returns 0, -EINVAL when the variable is set but names no usable address
 * (not absolute, not '@', or too long for sun_path: a path up to 107
 * bytes, an abstract name up to 108 with its '@'), or -errno from socket(2)
 * or setsockopt(2). On error notifications stay off. */
int pst_notify_init(void);

/* Nonzero when a manager listens (pst_notify_init found NOTIFY_SOCKET). */
int pst_notify_enabled(void);

/* Sends one message made of the given lines (printf format; lines
 * separated by '\n', e.g. "READY=1\nSTATUS=serving 2 listeners"). A
 * newline inside a STATUS value would start a new variable: callers pass
 * one-line text (pst_notify_status does the cleaning).
 * Returns 0 (also when notifications are off), -EMSGSIZE when the message
 * does not fit in 4 KiB, or -errno from sendto(2) (-EAGAIN when the
 * manager's queue is full: at once for a STATUS-only message, after 100 ms
 * for READY=1, RELOADING=1 or STOPPING=1, and a failed READY=1 is logged
 * here). */
int pst_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sends "<state>STATUS=<text>" with text cut to one line (newlines and
 * other control bytes become spaces). state is "" or lines ending in '\n'
 * ("READY=1\n"). Returns as pst_notify. */
int pst_notify_status(const char *state, const char *text);

/* CLOCK_MONOTONIC in microseconds, the clock of MONOTONIC_USEC (which
 * systemd requires with RELOADING=1 to tell one reload from the next). */
uint64_t pst_notify_monotonic_usec(void);

/* Closes the socket; notifications are off afterwards. */
void pst_notify_close(void);

#endif
