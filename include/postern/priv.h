/* postern: giving up root (the top-level `user:` and `group:` keys).
 *
 * Started as root, postern binds its listeners and reads its keys, then
 * becomes the configured user and group for good, keeping one capability,
 * CAP_NET_BIND_SERVICE, so that a reload can still add a listener on a port
 * below 1024. Everything a reload reads afterwards (the configuration file,
 * certificates, keys, ticket key files) it reads as that user; messages about
 * a file it may not open say so (pst_priv_hint).
 *
 * Capabilities belong to threads on Linux, not to the process: each thread
 * keeps the sets it was created with, and capset(2) changes only the
 * calling thread's. pst_priv_drop therefore runs while the main thread is
 * the only one (it checks), before the workers and libuv's thread pool
 * exist; every thread started afterwards inherits the reduced sets. */
#ifndef POSTERN_PRIV_H
#define POSTERN_PRIV_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* Becomes user (uid) with primary group gid and the user's supplementary
 * groups (getgrouplist(3), as login does, less gid 0, which is dropped and
 * then checked absent with getgroups(2)), in this order: the bounding set
 * is reduced to CAP_NET_BIND_SERVICE, then setgroups(2), setgid(2),
 * setuid(2), each checked; then the effective and permitted sets hold
 * CAP_NET_BIND_SERVICE only (PR_SET_KEEPCAPS kept them across setuid),
 * inheritable and ambient are empty, and setuid(0) must fail; each of
 * these is checked afterwards (the bounding set with PR_CAPBSET_READ, the
 * ambient set with PR_CAP_AMBIENT_IS_SET). Outside the ASan build the
 * process is made non-dumpable (PR_SET_DUMPABLE 0, checked), whatever
 * fs.suid_dumpable says. Must be called by root, before any other thread
 * exists; the count comes from /proc/self/status, and when it cannot be
 * read the drop fails.
 * Returns 0, or a negative errno code with the step that failed written to
 * err (errlen bytes): -EBUSY when other threads exist, -ENOENT (or
 * open's -errno) when /proc/self/status has no Threads: line, -EPERM when
 * not root, when gid is 0 or when a check after the drop fails, or the failing call's -errno. A
 * failure leaves the process in an unknown state: the caller must exit. */
int pst_priv_drop(const char *user, uid_t uid, gid_t gid, char *err, size_t errlen);

/* What a reload will be able to open, asked before it happens (`postern
 * -t` run as root): a child process becomes user (pst_priv_drop) and opens
 * each of the n paths, for reading, or for appending where writable[i] is
 * nonzero (a missing file to write is fine when the user may write and
 * search its directory: it is created then; nothing is created here). Each
 * failure is
 * one line on out: "error: PATH: not readable by user NAME: CAUSE ...".
 * Returns how many failed (0..255), or -errno when the child could not be
 * made or did not finish (a failed drop counts as one failure, printed). */
int pst_priv_check_files(const char *user, uid_t uid, gid_t gid, const char *const *paths,
                         const int *writable, size_t n, FILE *out);

/* Remembers the name of the user postern runs as, for pst_priv_hint:
 * the user pst_priv_drop switched to, or the user that started postern.
 * Called once on the main thread before other threads start. */
void pst_priv_set_user(const char *name);

/* " (not readable by user NAME)" when err is -EACCES or -EPERM and postern
 * does not run as root (a file root could read but the user cannot), else
 * "". what is "readable" or "writable". The text is static per call site:
 * use it before the next call on the same thread. Thread-safe. */
const char *pst_priv_hint(int err, const char *what);

/* Writes the capability sets of the calling thread into *eff and *prm
 * (bit n = capability n). Returns 0 or -errno. For checks and tests. */
int pst_priv_caps(unsigned long long *eff, unsigned long long *prm);

/* The directory of path into dir (len bytes, at least 2): "/" for a file at
 * the root, "." for a bare name; where a file is created, and so what a
 * user needs write and search permission on. */
void pst_priv_dir_of(const char *path, char *dir, size_t len);

#endif
