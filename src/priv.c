/* postern: giving up root. See include/postern/priv.h. */
#include "postern/priv.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The user files are read as, for pst_priv_hint; written once before other
 * threads start, read-only afterwards. */
static char priv_user[64];

/* Most supplementary groups a user may have here (NGROUPS_MAX is 65536;
 * a proxy's service user has a handful). */
#define PRIV_MAX_GROUPS 256

static int priv_fail(char *err, size_t errlen, int rc, const char *step) {
  snprintf(err, errlen, "%s: %s", step, strerror(-rc));
  return rc;
}

/* The calling thread's capability sets, through the raw syscalls of
 * <linux/capability.h> (libcap is not needed for three words). pid 0 is
 * the calling thread: capabilities are per thread. */
static int caps_get(struct __user_cap_data_struct d[2]) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  memset(d, 0, 2 * sizeof(*d));
  return syscall(SYS_capget, &h, d) == 0 ? 0 : -errno;
}

static int caps_set_only_bind(void) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof(d));
  d[CAP_TO_INDEX(CAP_NET_BIND_SERVICE)].effective = CAP_TO_MASK(CAP_NET_BIND_SERVICE);
  d[CAP_TO_INDEX(CAP_NET_BIND_SERVICE)].permitted = CAP_TO_MASK(CAP_NET_BIND_SERVICE);
  return syscall(SYS_capset, &h, d) == 0 ? 0 : -errno;
}

/* Threads: line of /proc/self/status, or -errno when it cannot be read:
 * without it the drop cannot know that it is alone, and a thread it does
 * not know of would keep root's capabilities, so the caller refuses (fails
 * closed) rather than skipping the check. */
static int thread_count(void) {
  FILE *f = fopen("/proc/self/status", "re");
  if (f == NULL) return -errno;
  char line[256];
  int n = -ENOENT;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (sscanf(line, "Threads: %d", &n) == 1) break;
  }
  fclose(f);
  return n > 0 ? n : -ENOENT;
}

/* The checks after the drop that pst_priv_caps does not cover: nothing
 * inheritable, no ambient capability, and a bounding set of
 * CAP_NET_BIND_SERVICE alone. Returns 0, or -EPERM with the finding in
 * *what. */
static int caps_rest_check(const char **what) {
  struct __user_cap_data_struct d[2];
  int rc = caps_get(d);
  if (rc != 0) {
    *what = "capget";
    return rc;
  }
  if (d[0].inheritable != 0 || d[1].inheritable != 0) {
    *what = "inheritable capabilities remain";
    return -EPERM;
  }
  for (int cap = 0; cap < 64; cap++) {
    int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (r < 0) break; /* past the kernel's last capability */
    if (r != (cap == CAP_NET_BIND_SERVICE)) {
      *what = "the bounding set holds other capabilities than CAP_NET_BIND_SERVICE";
      return -EPERM;
    }
    /* EINVAL: a kernel before 4.3 has no ambient set, so nothing in it. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) > 0) {
      *what = "ambient capabilities remain";
      return -EPERM;
    }
  }
  return 0;
}

/* Removes every capability but CAP_NET_BIND_SERVICE from the bounding set,
 * so that nothing postern runs later can regain one (needs CAP_SETPCAP,
 * which root has). The highest capability number depends on the kernel:
 * PR_CAPBSET_READ fails with EINVAL past it. */
static int bounding_set_drop(void) {
  for (int cap = 0; cap < 64; cap++) {
    int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (r < 0) break; /* past the kernel's last capability */
    if (r == 0 || cap == CAP_NET_BIND_SERVICE) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return -errno;
  }
  return 0;
}

int pst_priv_drop(const char *user, uid_t uid, gid_t gid, char *err, size_t errlen) {
  if (geteuid() != 0) return priv_fail(err, errlen, -EPERM, "not running as root");
  int threads = thread_count();
  if (threads < 0) {
    return priv_fail(err, errlen, threads, "counting threads (/proc/self/status, Threads:)");
  }
  if (threads > 1) {
    snprintf(err, errlen,
             "%d threads already run: capabilities are per thread, the drop must come first",
             threads);
    return -EBUSY;
  }
  /* Root's group opens every file made 0640 or 0660 root:root (logs,
   * keys, configuration): never kept, as primary group (config.c refuses
   * it already; checked again here) or supplementary. */
  if (gid == 0) return priv_fail(err, errlen, -EPERM, "group gid 0 (root's group)");
  gid_t groups[PRIV_MAX_GROUPS];
  int n = PRIV_MAX_GROUPS;
  if (getgrouplist(user, gid, groups, &n) < 0) {
    return priv_fail(err, errlen, -E2BIG, "getgrouplist: too many supplementary groups");
  }
  /* A user listed as a member of group 0 in /etc/group would get it back
   * as a supplementary group: it is left out. */
  int kept = 0;
  for (int i = 0; i < n; i++) {
    if (groups[i] != 0) groups[kept++] = groups[i];
  }
  n = kept;
  /* Keep the permitted set across setuid (cleared again by execve). */
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return priv_fail(err, errlen, -errno, "KEEPCAPS");
  int rc = bounding_set_drop();
  if (rc != 0) return priv_fail(err, errlen, rc, "dropping the capability bounding set");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return priv_fail(err, errlen, -errno, "clearing the ambient capabilities");
  }
  /* Groups first: after setuid, root's right to change them is gone. */
  if (setgroups((size_t)n, groups) != 0) return priv_fail(err, errlen, -errno, "setgroups");
  gid_t now[PRIV_MAX_GROUPS];
  int m = getgroups(PRIV_MAX_GROUPS, now);
  if (m < 0) return priv_fail(err, errlen, -errno, "getgroups");
  for (int i = 0; i < m; i++) {
    if (now[i] == 0) return priv_fail(err, errlen, -EPERM, "gid 0 still a supplementary group");
  }
  if (m != n) return priv_fail(err, errlen, -EPERM, "setgroups set other groups than asked");
  if (setgid(gid) != 0) return priv_fail(err, errlen, -errno, "setgid");
  if (setuid(uid) != 0) return priv_fail(err, errlen, -errno, "setuid");
  rc = caps_set_only_bind();
  if (rc != 0) return priv_fail(err, errlen, rc, "capset CAP_NET_BIND_SERVICE");
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return priv_fail(err, errlen, -errno, "KEEPCAPS");
  /* Proof rather than trust: the way back must be closed. */
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 || ru != uid || eu != uid ||
      su != uid || rg != gid || eg != gid || sg != gid) {
    return priv_fail(err, errlen, -EPERM, "the user and group ids did not all change");
  }
  if (setuid(0) == 0) return priv_fail(err, errlen, -EPERM, "setuid(0) still works");
  unsigned long long eff, prm;
  rc = pst_priv_caps(&eff, &prm);
  if (rc != 0) return priv_fail(err, errlen, rc, "capget");
  if (eff != 1ull << CAP_NET_BIND_SERVICE || prm != eff) {
    return priv_fail(err, errlen, -EPERM, "capabilities other than CAP_NET_BIND_SERVICE remain");
  }
  const char *what = NULL;
  rc = caps_rest_check(&what);
  if (rc != 0) return priv_fail(err, errlen, rc, what);
#if defined(__SANITIZE_ADDRESS__)
  /* LeakSanitizer's exit check ptraces the process from a helper task,
   * which a non-dumpable process forbids. Only in the sanitizer build. */
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#else
  /* Non-dumpable: no process of the same user may ptrace postern or read
   * its memory (the keys) through /proc, and no core file is written.
   * setuid already does this unless fs.suid_dumpable is 1 or 2 (a core
   * pattern for debugging): not left to the sysctl. */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return priv_fail(err, errlen, -errno, "DUMPABLE");
  if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return priv_fail(err, errlen, -EPERM, "the process is still dumpable");
  }
#endif
  pst_priv_set_user(user);
  return 0;
}

/* In the child of pst_priv_check_files: 1 when path cannot be opened. */
static int check_one(FILE *out, const char *user, const char *path, int writable) {
  int flags = writable ? O_WRONLY | O_APPEND : O_RDONLY;
  /* O_NONBLOCK: a FIFO must not hang the check (the open of a log that is
   * not a regular file fails at start anyway: access_log.c). */
  int fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  if (errno == ENOENT && writable) {
    /* Created when opened: the user must be able to make it in its
     * directory (a reopen after logrotate's rename creates it as the
     * user). */
    char dir[PATH_MAX];
    pst_priv_dir_of(path, dir, sizeof(dir));
    if (access(dir, W_OK | X_OK) == 0) return 0;
    fprintf(out,
            "error: %s: cannot be created by user %s: directory %s: %s (a reopen after "
            "SIGUSR1 creates it as that user)\n",
            path, user, dir, strerror(errno));
    return 1;
  }
  fprintf(out, "error: %s: not %s by user %s: %s (%s opens it as that user)\n", path,
          writable ? "writable" : "readable", user, strerror(errno),
          writable ? "SIGUSR1 or a reload naming a new file" : "a reload");
  return 1;
}

int pst_priv_check_files(const char *user, uid_t uid, gid_t gid, const char *const *paths,
                         const int *writable, size_t n, FILE *out) {
  fflush(out); /* the child's buffer must not repeat the parent's lines */
  pid_t pid = fork();
  if (pid < 0) return -errno;
  if (pid == 0) {
    char err[256];
    int bad = 0;
    if (pst_priv_drop(user, uid, gid, err, sizeof(err)) != 0) {
      fprintf(out, "error: user: cannot become user %s: %s\n", user, err);
      fflush(out);
      _exit(1);
    }
    for (size_t i = 0; i < n; i++) bad += check_one(out, user, paths[i], writable[i]);
    fflush(out);
    _exit(bad > 255 ? 255 : bad);
  }
  int status = 0;
  pid_t w;
  do {
    w = waitpid(pid, &status, 0);
  } while (w < 0 && errno == EINTR);
  if (w != pid) return -errno;
  if (!WIFEXITED(status)) return -ECHILD;
  return WEXITSTATUS(status);
}

void pst_priv_set_user(const char *name) { snprintf(priv_user, sizeof(priv_user), "%s", name); }

const char *pst_priv_hint(int err, const char *what) {
  static _Thread_local char hint[128];
  if ((err != -EACCES && err != -EPERM) || geteuid() == 0 || priv_user[0] == '\0') return "";
  snprintf(hint, sizeof(hint), " (not %s by user %s)", what, priv_user);
  return hint;
}

int pst_priv_caps(unsigned long long *eff, unsigned long long *prm) {
  struct __user_cap_data_struct d[2];
  int rc = caps_get(d);
  if (rc != 0) return rc;
  *eff = (unsigned long long)d[1].effective << 32 | d[0].effective;
  *prm = (unsigned long long)d[1].permitted << 32 | d[0].permitted;
  return 0;
}

void pst_priv_dir_of(const char *path, char *dir, size_t len) {
  snprintf(dir, len, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) {
    dir[1] = '\0';
  } else if (slash != NULL) {
    *slash = '\0';
  } else {
    snprintf(dir, len, ".");
  }
}
