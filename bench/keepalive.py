"""Scenario "keepalive": many concurrent requests over kept-alive backend
connections (issue 17).

h2load drives 128, 500 and 2,000 concurrent requests through each http-mode
server, HTTP/1.1 (that many connections, one request at a time each) and h2
(16 x 8, 50 x 10 and 100 x 20 connections x streams), every request going to
the bench backend as HTTP/1.1 over the server's pool of kept-alive
connections. Servers, alternately in the same run:
  - postern-http: the defaults (the pool keeps up to the recent peak in use);
  - postern-http-128: `backend_pool: {max_idle: 128}`, which under load is
    exactly the pool of before (a fixed bound of 128 idle connections);
  - haproxy-http (`http-reuse always`) and h2o (`proxy.reverse.url`), when
    installed.
Reported per server: requests per server-CPU-second (the server's CPU over
h2load's measured window, after a warm-up that covers the handshakes) and
backend connects per 1,000 requests over the same window (the bench
backend's accept count, read with SIGUSR1 before and after: steady state
should be ~0).

Run alone: python3 bench/keepalive.py [--quick] [--reps N] [--levels 128,500]
[--protos h1,h2]; or as part of bench/run.py (--scenarios keepalive)."""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import procs  # noqa: E402
from report import cell  # noqa: E402
import servers  # noqa: E402

# Concurrent requests -> h2 (connections, streams per connection).
H2_SHAPE = {128: (16, 8), 500: (50, 10), 2000: (100, 20)}
LEVELS = (128, 500, 2000)

_REQS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                   r"(\d+) failed, (\d+) errored, (\d+) timeout")
_CODES = re.compile(r"status codes: (\d+) 2xx")


class PosternBefore(servers.PosternHttp):
    """postern-http with the pool of before: max_idle 128, the old default."""
    name = "postern-http-128"

    def command(self):
        cmd = super().command()
        cfg = Path(cmd[-1])
        text = cfg.read_text()
        cfg.write_text(text.replace("    timeouts:", "    backend_pool: {max_idle: 128}\n"
                                    "    timeouts:", 1))
        return cmd


SERVER_CLASSES = {"postern-http": servers.PosternHttp, "postern-http-128": PosternBefore,
                  "haproxy-http": servers.HaproxyHttp, "h2o": servers.H2o}


class Accepts:
    """The bench backend's accepted-connection count (SIGUSR1 prints it)."""

    def __init__(self, backend):
        self.backend = backend
        self.lock = threading.Lock()

    def read(self):
        with self.lock:
            os.kill(self.backend.pid, signal.SIGUSR1)
            while True:
                line = self.backend.stdout.readline().decode()
                if not line:
                    raise RuntimeError("the backend exited")
                if line.startswith("accepted "):
                    return int(line.split()[1])


def measure(env, server, proto, level, duration, warmup, log, accepts):
    """One h2load run at level concurrent requests. Server CPU and backend
    accepts are read after the warm-up and when h2load is done."""
    run = {"scenario": "keepalive", "proto": proto, "conc": level, "server": server.name}
    cmd = [env.h2load, "-t", 1, "-D", f"{int(duration * 1000)}ms",
           f"--warm-up-time={int(warmup * 1000)}ms"]
    if proto == "h1":
        cmd += ["--h1", "-c", level]
    else:
        c, m = H2_SHAPE.get(level, (max(1, level // 10), 10))
        cmd += ["-c", c, "-m", m]
    cmd += [f"https://127.0.0.1:{server.port}/"]
    p = procs.spawn(cmd, env.client_cpus, log, stdout=subprocess.PIPE)
    out = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True)
    reader.start()
    time.sleep(warmup)
    s0, a0, t0 = server.cpu_seconds(), accepts.read(), time.monotonic()
    c0 = procs.cpus_busy(env.client_cpus)
    try:
        p.wait(duration + warmup + 60)
    except subprocess.TimeoutExpired:
        procs.stop(p)
    reader.join(10)
    s1, a1, t1 = server.cpu_seconds(), accepts.read(), time.monotonic()
    c1 = procs.cpus_busy(env.client_cpus)
    p.stdout.close()
    text = (out[0] if out else b"").decode(errors="replace")
    with open(log, "a") as f:
        f.write(text)
    m = _REQS.search(text)
    if m is None:
        run.update(ok=0, errors=1, failure=f"h2load printed no summary (exit {p.returncode})")
        return run
    _, _, _, ok, failed, errored, timeout = map(int, m.groups())
    codes = _CODES.search(text)
    ok2xx = min(int(codes.group(1)), ok) if codes else 0
    cpu = s1 - s0
    run.update(ok=ok2xx, errors=failed + errored + timeout + (ok - ok2xx), server_cpu_s=cpu,
               window_s=t1 - t0, rate=ok2xx / duration,
               req_per_cpu_s=ok2xx / cpu if cpu > 0 else None,
               server_util=cpu / (t1 - t0) if t1 > t0 else 0.0,
               connects=a1 - a0,
               connects_per_1k=(a1 - a0) * 1000.0 / ok2xx if ok2xx else None,
               client_busy=procs.busy_fraction(c0, c1))
    if not server.alive():
        run["errors"] += 1
        run["failure"] = "server exited"
    return run


def _median(vals):
    vals = sorted(v for v in vals if v is not None)
    return vals[len(vals) // 2] if vals else None


def summarize(rows):
    out = []
    keys = sorted({(r["proto"], r["conc"], r["server"]) for r in rows},
                  key=lambda k: (k[0], k[1], list(SERVER_CLASSES).index(k[2])))
    for proto, conc, name in keys:
        sel = [r for r in rows if (r["proto"], r["conc"], r["server"]) == (proto, conc, name)]
        out.append({"scenario": "keepalive", "proto": proto, "conc": conc, "server": name,
                    "runs": len(sel), "req_per_cpu_s": _median([r.get("req_per_cpu_s")
                                                                for r in sel]),
                    "rate": _median([r.get("rate") for r in sel]),
                    "connects_per_1k": _median([r.get("connects_per_1k") for r in sel]),
                    "server_util": _median([r.get("server_util") for r in sel]),
                    "client_busy": _median([r.get("client_busy") for r in sel]),
                    "errors": sum(r.get("errors", 0) for r in sel)})
    for r in out:
        post = next((x for x in out if (x["proto"], x["conc"], x["server"]) ==
                     (r["proto"], r["conc"], "postern-http")), None)
        if post and post is not r and r["req_per_cpu_s"] and post["req_per_cpu_s"]:
            r["postern_ratio"] = post["req_per_cpu_s"] / r["req_per_cpu_s"]
    return out




def markdown(rows):
    if not rows:
        return []
    L = ["### Keep-alive at 128, 500 and 2,000 concurrent requests (scenario `keepalive`)", "",
         "h2load through each http-mode server to the bench backend (HTTP/1.1, kept alive); "
         "h1: that many connections, h2: 16 x 8, 50 x 10, 100 x 20 connections x streams. "
         "postern-http-128 is postern with `backend_pool: {max_idle: 128}` (the pool of "
         "before). Connects: the backend's accepts per 1,000 requests in the measured window "
         "(after the warm-up). Goal (h2): postern-http >= 1.25x haproxy-http and >= h2o.", "",
         "| proto | concurrent | server | requests per server-CPU-s | postern-http / this | "
         "requests/s | backend connects per 1,000 requests | server CPU busy | client CPU busy "
         "| errors |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['proto']} | {r['conc']} | {r['server']} | {cell(r['req_per_cpu_s'])} | "
                 f"{cell(r.get('postern_ratio'), '{:.2f}')} | {cell(r['rate'])} | "
                 f"{cell(r['connects_per_1k'], '{:.2f}')} | {cell(r['server_util'], '{:.0%}')} | "
                 f"{cell(r['client_busy'], '{:.0%}')} | {r['errors']} |")
    L.append("")
    return L


def available(env, peers=None):
    """The servers of this scenario that can run here (postern's, and the
    peers named in peers, None: every one), and notes on the others."""
    env.h2o = getattr(env, "h2o", None) or servers.peer_binary("h2o")
    names, notes = [], []
    for name, cls in SERVER_CLASSES.items():
        if cls.binary != "postern" and peers is not None and name not in peers:
            continue
        if cls.binary != "postern" and getattr(env, cls.binary, None) is None:
            notes.append(f"keepalive: {cls.binary} is not installed: {name} left out")
            continue
        names.append(name)
    return names, notes


def run(env, cert, workdir, backend, reps=3, duration=3.0, levels=LEVELS, protos=("h1", "h2"),
        peers=None, say=print):
    """Runs the scenario; returns the summary rows (markdown() renders
    them). backend: the bench backend's Popen (its stdout a pipe); peers:
    the peers to compare with (haproxy-http, h2o; None: those installed)."""
    if env.h2load is None:
        say("keepalive: h2load is not installed: scenario skipped")
        return []
    names, notes = available(env, peers)
    for n in notes:
        say(n)
    workdir = Path(workdir) / "keepalive"
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "clients.log"
    accepts = Accepts(backend)
    rows = []
    fleet = {}
    try:
        for name in names:
            fleet[name] = SERVER_CLASSES[name](env, cert, workdir).start()
        plan = [(proto, level) for level in levels for proto in protos]
        for rep in range(reps):
            for i, (proto, level) in enumerate(plan):
                k = (rep + i) % len(names)
                for name in names[k:] + names[:k]:
                    s = fleet[name]
                    if not s.alive():
                        say(f"keepalive: {name} exited; restarting it")
                        s.stop()
                        s = fleet[name] = SERVER_CLASSES[name](env, cert, workdir).start()
                    # The handshakes of 2,000 h1 connections on a loaded
                    # machine: the warm-up covers them.
                    warmup = 1.0 + level / 1000.0
                    r = measure(env, s, proto, level, duration, warmup, log, accepts)
                    r["rep"] = rep
                    rows.append(r)
                    say(f"keepalive {proto} c={level} {name} rep {rep}: "
                        f"{cell(r.get('req_per_cpu_s'))} req per server-CPU-s, "
                        f"{cell(r.get('connects_per_1k'), '{:.2f}')} connects per 1k, "
                        f"errors {r.get('errors')} {r.get('failure', '')}")
    finally:
        for s in fleet.values():
            s.stop()
    return summarize(rows)


def main(argv=None):
    import run as runmod
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--levels", help="concurrent requests, comma-separated (default "
                    "128,500,2000; quick: 500)")
    ap.add_argument("--protos", default="h1,h2")
    a = ap.parse_args(argv)
    levels = tuple(int(x) for x in a.levels.split(",")) if a.levels else (
        (500,) if a.quick else LEVELS)
    workdir = Path(tempfile.mkdtemp(prefix="postern-bench-keepalive-"))
    env = runmod.Env(runmod.parse_args(["--scenarios", "keepalive"]), workdir)
    runmod.check_binaries(runmod.parse_args(["--scenarios", "h2"]), env)
    procs.raise_nofile()
    os.sched_setaffinity(0, env.client_cpus)
    backend = runmod.start_backend(env, workdir)
    try:
        cert = servers.Cert(runmod.make_pki(workdir), "localhost", "ecdsa")
        rows = run(env, cert, workdir, backend, reps=a.reps or (1 if a.quick else 3),
                   duration=a.duration or (1.0 if a.quick else 3.0), levels=levels,
                   protos=tuple(a.protos.split(",")), say=runmod.say)
    finally:
        procs.stop(backend)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(markdown(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
