#!/usr/bin/python3
"""A/B of two postern builds in tcp mode, full TLS 1.3 handshakes, with hitch in
the same run: the cost of a change measured on a machine that others share.

    bench/ab.py --a OLD_BINARY --b NEW_BINARY [--conc 1,16,64] [--rounds 6]

Every round measures each server at each concurrency, the servers' order
alternating from round to round, all of them running side by side (pinned to
the server CPU) behind the bench backend, with the load generator on the other
CPU, as bench/run.py does. Per measurement: the server's CPU time per handshake
(utime + stime of its process tree over loadgen's window), the rate, p50, and
the voluntary context switches per handshake of the server and of the backend
(each is a wakeup: a sleep and the wakeup that ends it). The summary gives the
medians and, per concurrency, the median of the paired ratios b/a (same round)
and of each postern against hitch. QUICK=1: one round at c=16, 1 s.

Nothing here is a test: it prints figures (JSON lines, then a table)."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procs  # noqa: E402
import servers  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def voluntary_switches(root):
    """Voluntary context switches of every thread of root's process tree."""
    n = 0
    for pid in procs.tree_pids(root):
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches"):
                            n += int(line.split()[1])
        except OSError:
            pass
    return n


def measure(env, server, backend, conc, duration, warmup, log):
    """One loadgen run against server; returns the figures of its window."""
    cmd = [env.loadgen, "--connect", f"127.0.0.1:{server.port}", "--sni", server.cert.sni,
           "--mode", "full", "--conc", conc, "--duration", duration, "--warmup", warmup]
    p = procs.spawn(cmd, env.client_cpus, log, stdout=subprocess.PIPE)
    start = result = None
    for line in p.stdout:
        ev = json.loads(line) if line.startswith(b"{") else {}
        if ev.get("event") == "measure":
            start = (server.cpu_seconds(), voluntary_switches(server.pid),
                     voluntary_switches(backend.pid))
        elif ev.get("event") == "result":
            end = (server.cpu_seconds(), voluntary_switches(server.pid),
                   voluntary_switches(backend.pid))
            result = ev
    procs.stop(p)
    if start is None or result is None or result["ok"] == 0:
        return None
    ok = result["ok"]
    return {"us": round((end[0] - start[0]) * 1e6 / ok, 1), "rate": result["rate"],
            "p50_ms": result["p50_ms"], "errors": result["errors"],
            "vcsw": round((end[1] - start[1]) / ok, 2), "backend_vcsw": round((end[2] - start[2]) / ok, 2)}


def summary(rows, concs, names):
    med = statistics.median
    print("\n| conc | server | µs/handshake | rate | p50 ms | wakeups/hs (server, backend) |")
    print("|---|---|---|---|---|---|")
    for c in concs:
        for n in names:
            rs = [r for r in rows if r["conc"] == c and r["server"] == n]
            if rs:
                print(f"| {c} | {n} | {med(r['us'] for r in rs):.0f} | {med(r['rate'] for r in rs):.0f} "
                      f"| {med(r['p50_ms'] for r in rs):.2f} | {med(r['vcsw'] for r in rs):.2f}, "
                      f"{med(r['backend_vcsw'] for r in rs):.2f} |")
    print("\n| conc | b ÷ a: µs | b ÷ a: rate | a ÷ hitch: µs | b ÷ hitch: µs | rounds |")
    print("|---|---|---|---|---|---|")
    for c in concs:
        by = {(r["round"], r["server"]): r for r in rows if r["conc"] == c}
        rounds = sorted({k[0] for k in by})

        def ratio(x, y, key="us"):
            v = [by[(i, x)][key] / by[(i, y)][key] for i in rounds if (i, x) in by and (i, y) in by]
            return f"{med(v):.2f}" if v else "-"
        print(f"| {c} | {ratio('b', 'a')} | {ratio('b', 'a', 'rate')} | {ratio('a', 'hitch')} "
              f"| {ratio('b', 'hitch')} | {len(rounds)} |")


def main():
    quick = os.environ.get("QUICK") == "1"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="postern binary A (before)")
    ap.add_argument("--b", required=True, help="postern binary B (after)")
    ap.add_argument("--conc", default="16" if quick else "1,16,64")
    ap.add_argument("--rounds", type=int, default=1 if quick else 6)
    ap.add_argument("--duration", type=float, default=1.0 if quick else 2.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--no-hitch", action="store_true")
    args = ap.parse_args()
    concs = [int(c) for c in args.conc.split(",")]
    procs.raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="postern-ab-"))
    ncpu = os.cpu_count() or 1
    env = SimpleNamespace(loadgen=str(REPO / "build" / "bench" / "loadgen"), server_cpus=[0],
                          client_cpus=[c for c in range(ncpu) if c != 0] or [0], admin=False,
                          variant=None, scrapes=None, backend_ports=[], hitch=servers.peer_binary("hitch"))
    subprocess.run([str(REPO / "conf" / "mkpki.sh"), str(work / "pki")], check=True,
                   stdout=subprocess.DEVNULL)
    cert = servers.Cert(work / "pki", "localhost", "ecdsa")
    backend = procs.spawn([REPO / "build" / "bench" / "backend"], env.client_cpus, work / "backend.log",
                          stdout=subprocess.PIPE)
    env.backend_port = int(backend.stdout.readline().split()[1])
    env.backend_ports.append(env.backend_port)
    running = {}
    try:
        for name, binary in (("a", args.a), ("b", args.b)):
            s_env = SimpleNamespace(**vars(env), postern=str(Path(binary).resolve()))
            srv = servers.Postern(s_env, cert, work / name)
            running[name] = srv.start()
        if not args.no_hitch and env.hitch:
            running["hitch"] = servers.Hitch(env, cert, work / "hitch").start()
        names = list(running)
        rows = []
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            for c in concs:
                for n in order:
                    m = measure(env, running[n], backend, c, args.duration, args.warmup,
                                work / "loadgen.log")
                    if m is None:
                        print(f"ab: {n} c={c}: no result", file=sys.stderr)
                        continue
                    row = {"round": rnd, "conc": c, "server": n, **m}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        summary(rows, concs, names)
        print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; a={args.a} b={args.b}; "
              f"1-minute load average {os.getloadavg()[0]:.2f} on {ncpu} CPUs at the end")
    finally:
        for s in running.values():
            s.stop()
        procs.stop(backend)


if __name__ == "__main__":
    main()
