"""Process plumbing for the bench: start pinned processes, find a process
tree, and read its CPU time and RSS from /proc.

Every process the bench starts runs in its own session (so that a server and
the children it forks can be stopped together, by the id of the process the
bench started), with RLIMIT_NOFILE raised to the hard limit (5,000 idle TLS
connections need 10,000 descriptors in a proxy), pinned with taskset."""

import os
import resource
import shutil
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile():
    """Raises this process's soft RLIMIT_NOFILE to its hard limit (children
    inherit it). Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_list(cpus):
    """taskset's list syntax for a list of CPU numbers."""
    return ",".join(str(c) for c in cpus)


def spawn(cmd, cpus, log_path, stdout=None, env=None, cwd=None):
    """Starts cmd pinned to cpus (None: not pinned), stderr (and stdout unless
    stdout is given, e.g. subprocess.PIPE) to log_path. Returns the Popen;
    the caller owns it and stops it with stop()."""
    argv = list(map(str, cmd))
    if cpus and shutil.which("taskset"):
        argv = ["taskset", "-c", cpu_list(cpus)] + argv
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=stdout if stdout is not None else log, stderr=log,
                                env=env, cwd=cwd, start_new_session=True)
    finally:
        log.close()


def stop(proc, timeout=10.0, sig=signal.SIGTERM):
    """Sends sig to the process the bench started, waits, and kills its
    process group if it does not exit (hitch's workers, a hung server).
    Returns the exit status (negative: killed by that signal)."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    # Children that outlived their parent (none expected) go with the group.
    try:
        os.killpg(proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        pass
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.returncode


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode()
    # The command name may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(")") + 2:].split()
    return rest  # rest[0] is field 3 (state)


def tree_pids(root):
    """root and all its descendants that are alive now."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(name)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_seconds(root):
    """User + system CPU time of root and its live descendants, all threads
    (/proc/PID/stat utime + stime), in seconds."""
    total = 0
    for pid in tree_pids(root):
        try:
            f = _stat_fields(pid)
        except (OSError, ValueError):
            continue
        total += int(f[11]) + int(f[12])  # fields 14 and 15
    return total / CLK_TCK


def tree_rss_kib(root):
    """Resident set size (VmRSS) of root and its live descendants, KiB."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def tree_fds(root):
    """Open file descriptors of root and its live descendants."""
    n = 0
    for pid in tree_pids(root):
        try:
            n += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return n


def cpus_busy(cpus):
    """(busy, total) jiffies summed over the given CPUs, from /proc/stat."""
    busy = total = 0
    want = {f"cpu{c}" for c in cpus}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in want:
                vals = [int(v) for v in parts[1:]]
                t = sum(vals[:8])  # user nice system idle iowait irq softirq steal
                idle = vals[3] + vals[4]
                busy += t - idle
                total += t
    return busy, total


def busy_fraction(before, after):
    """Fraction of the CPUs' time spent busy between two cpus_busy() reads."""
    db, dt = after[0] - before[0], after[1] - before[1]
    return db / dt if dt > 0 else 0.0


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, seconds, what):
    """Waits until 127.0.0.1:port accepts connections. Raises RuntimeError
    when proc exits first or the time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} during start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {seconds} s")
        time.sleep(0.05)
