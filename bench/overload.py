"""Scenario "overload": a handshake flood, open loop (issue 17).

First a closed loop finds the rate of full handshakes postern sustains on
its one core (loadgen --mode full, 32 connections, --fixed-key-share 1 so
that the one client core can offer a multiple of it). Then every server is
offered full handshakes open loop (loadgen --rate: connections started at a
fixed rate whatever becomes of the earlier ones) at 1x, 2x and 4x that rate,
each connection given HANDSHAKE_TIMEOUT_S to finish (client and server
alike). Reported per server and rate: goodput (exchanges completed within
the timeout, per second) and its share of the server's own closed-loop peak,
p50/p99 of the completed handshakes (connect() to handshake done) and of the
whole exchange, the errors by kind (a shed connection is a reset: "connect",
"handshake" or "io"), and the server's peak RSS during the run.

Servers: postern-tcp (default max_handshakes_in_flight), postern-tcp with a
low bound (64), HAProxy in mode tcp when installed, and with --postern-before
BIN a postern binary built before the change, all run alternately.

Run alone: python3 bench/overload.py [--quick] [--postern-before BIN]; or as
part of bench/run.py (--scenarios overload)."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import procs  # noqa: E402
from report import cell  # noqa: E402
import servers  # noqa: E402

# The time a client gives its connection (connect to response), and the
# servers' handshake timeout in this scenario.
HANDSHAKE_TIMEOUT_S = 2
PEAK_CONC = 32
LOW_BOUND = 64


class PosternOverload(servers.Postern):
    """postern-tcp with the scenario's handshake timeout, an optional
    max_handshakes_in_flight, and optionally another binary (before)."""

    def __init__(self, env, cert, workdir, name, bound=None, binary=None):
        self.name, self.bound, self.binary_path = name, bound, binary
        super().__init__(env, cert, workdir)

    def command(self):
        cmd = super().command()
        cfg = Path(cmd[-1])
        text = cfg.read_text().replace("handshake: 10s", f"handshake: {HANDSHAKE_TIMEOUT_S}s")
        if self.bound is not None:
            text = text.replace("    max_connections: 20000\n",
                                f"    max_connections: 20000\n"
                                f"    max_handshakes_in_flight: {self.bound}\n")
        cfg.write_text(text)
        if self.binary_path:
            cmd[0] = self.binary_path
        return cmd


class RssPeak:
    """Samples a server's RSS every 100 ms until stopped; keeps the peak."""

    def __init__(self, server):
        self.server, self.peak = server, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.wait(0.1):
            try:
                self.peak = max(self.peak, self.server.rss_kib())
            except OSError:
                pass

    def stop(self):
        self.done.set()
        self.thread.join(5)
        return self.peak


def loadgen(env, server, log, duration, warmup, rate=None, conc=PEAK_CONC):
    """One loadgen run against server; returns its result line (dict, with
    server_cpu_s and rss_peak_kib added) or None."""
    cmd = [env.loadgen, "--connect", f"127.0.0.1:{server.port}", "--sni", server.cert.sni,
           "--mode", "full", "--conc", conc, "--duration", duration, "--warmup", warmup,
           "--timeout", HANDSHAKE_TIMEOUT_S, "--fixed-key-share", 1]
    if rate:
        cmd += ["--rate", f"{rate:.0f}"]
    p = procs.spawn(cmd, env.client_cpus, log, stdout=subprocess.PIPE)
    timer = threading.Timer(warmup + duration + 30, lambda: p.kill())
    timer.start()
    rss = RssPeak(server)
    result, s0 = None, None
    try:
        for raw in p.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            if ev.get("event") == "measure":
                s0 = server.cpu_seconds()
            elif ev.get("event") == "result":
                result = ev
                if s0 is not None:
                    result["server_cpu_s"] = server.cpu_seconds() - s0
        p.wait()
    finally:
        timer.cancel()
        p.stdout.close()
        peak = rss.stop()
    if result is not None:
        result["rss_peak_kib"] = peak
    return result


def row(server, label, rate, res, peak):
    r = {"scenario": "overload", "server": server.name, "load": label, "rate_asked": rate}
    if res is None:
        r.update(errors=1, failure="loadgen produced no result")
        return r
    window = res["window_s"] or 1
    r.update(offered=res.get("offered_rate"), goodput=res["ok"] / window,
             hs_p50_ms=res.get("hs_p50_ms"), hs_p99_ms=res.get("hs_p99_ms"),
             p50_ms=res.get("p50_ms"), p99_ms=res.get("p99_ms"), errors=res["errors"],
             errors_by_kind=res.get("errors_by_kind", {}),
             rss_mib=res.get("rss_peak_kib", 0) / 1024, client_cpu=res.get("cpu_frac"),
             server_util=res.get("server_cpu_s", 0) / window)
    # Server CPU per completed exchange: what the goodput cost, robust to
    # the share of the core other processes took (a loaded machine).
    if res.get("server_cpu_s") and res["ok"]:
        r["cpu_us"] = res["server_cpu_s"] / res["ok"] * 1e6
    r["of_peak"] = r["goodput"] / peak if peak else (1.0 if label == "closed loop" else None)
    return r


def run(env, cert, workdir, reps=2, duration=3.0, warmup=0.5, multiples=(1, 2, 4),
        before=None, haproxy=True, low_bound=True, say=print):
    """The scenario; returns the summary rows (one per server and load).
    haproxy: run HAProxy too when installed; low_bound: run postern with
    max_handshakes_in_flight LOW_BOUND too; before: a postern binary built
    before the change, run alongside."""
    workdir = Path(workdir) / "overload"
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "clients.log"
    procs.raise_nofile()
    fleet = [PosternOverload(env, cert, workdir, "postern-tcp")]
    if low_bound:
        fleet.append(PosternOverload(env, cert, workdir, f"postern-tcp-max{LOW_BOUND}",
                                     bound=LOW_BOUND))
    if before:
        fleet.append(PosternOverload(env, cert, workdir, "postern-tcp-before", binary=before))
    if haproxy and env.haproxy:
        fleet.append(servers.Haproxy(env, cert, workdir))
    rows = []
    try:
        for s in fleet:
            s.start()
        # The closed-loop peak of each server (its own), the first
        # postern's setting the offered rates.
        closed = []
        for rep in range(reps):
            for s in fleet[rep % len(fleet):] + fleet[:rep % len(fleet)]:
                r = row(s, "closed loop", None, loadgen(env, s, log, duration, warmup), None)
                r["rep"] = rep
                closed.append(r)
        peak = {s.name: _median([r.get("goodput") for r in closed if r["server"] == s.name])
                for s in fleet}
        rows.extend(closed)
        base = peak.get("postern-tcp")
        if not base:
            say("overload: no closed-loop rate for postern: scenario skipped")
            return []
        say("overload: closed-loop peaks " +
            ", ".join(f"{k} {v:.0f}/s" for k, v in peak.items() if v))
        for rep in range(reps):
            for i, m in enumerate(multiples):
                k = (rep + i) % len(fleet)
                for s in fleet[k:] + fleet[:k]:
                    rate = base * m
                    # Slots for every connection the timeout lets live.
                    conc = int(min(20000, rate * HANDSHAKE_TIMEOUT_S * 1.2 + 64))
                    res = loadgen(env, s, log, duration, warmup, rate=rate, conc=conc)
                    r = row(s, f"{m}x", rate, res, peak.get(s.name))
                    r["rep"] = rep
                    rows.append(r)
                    say(f"overload {s.name} {m}x ({rate:.0f}/s): goodput {r.get('goodput', 0):.0f}/s"
                        f" ({r.get('of_peak', 0):.0%} of its peak), handshake p50/p99 "
                        f"{r.get('hs_p50_ms')}/{r.get('hs_p99_ms')} ms, errors "
                        f"{r.get('errors_by_kind')}, RSS {r.get('rss_mib', 0):.0f} MiB")
                    if not s.alive():
                        say(f"overload: {s.name} exited; restarting it")
                        s.start()
    finally:
        for s in fleet:
            s.stop()
    return summarize(rows)


def _median(vals):
    vals = sorted(v for v in vals if v is not None)
    return vals[len(vals) // 2] if vals else None


def summarize(rows):
    out = []
    servers_ = list(dict.fromkeys(r["server"] for r in rows))
    loads = list(dict.fromkeys(r["load"] for r in rows))
    for s in servers_:
        for load in loads:
            sel = [r for r in rows if r["server"] == s and r["load"] == load]
            if not sel:
                continue
            m = {"scenario": "overload", "server": s, "load": load, "runs": len(sel),
                 "errors": sum(r.get("errors", 0) for r in sel)}
            for k in ("offered", "goodput", "of_peak", "hs_p50_ms", "hs_p99_ms", "p50_ms",
                      "p99_ms", "rss_mib", "client_cpu", "server_util", "rate_asked", "cpu_us"):
                m[k] = _median([r.get(k) for r in sel])
            kinds = {}
            for r in sel:
                for k, v in (r.get("errors_by_kind") or {}).items():
                    kinds[k] = kinds.get(k, 0) + v
            m["errors_by_kind"] = {k: v for k, v in kinds.items() if v}
            out.append(m)
    # The cost of a completed exchange under load against the closed loop's.
    for m in out:
        c = next((x for x in out if x["server"] == m["server"] and x["load"] == "closed loop"),
                 None)
        if c and c.get("cpu_us") and m.get("cpu_us"):
            m["cpu_vs_closed"] = m["cpu_us"] / c["cpu_us"]
    return out




def markdown(rows):
    if not rows:
        return []
    L = ["### Overload: a handshake flood, open loop (scenario `overload`)", "",
         f"Full handshakes (one request each) offered open loop at 1x, 2x and 4x the rate "
         f"postern-tcp sustains on its core in a closed loop ({PEAK_CONC} connections), each "
         f"connection given {HANDSHAKE_TIMEOUT_S} s (client timeout = server handshake "
         f"timeout). Goodput: exchanges completed within it, per second; '% of peak' against "
         f"the server's own closed-loop rate (goal: at least 90% at 2x and 4x). Latencies of "
         f"the completed ones. Errors summed over runs (a shed connection is reset at once: "
         f"connect, handshake or io; timeout: not done in {HANDSHAKE_TIMEOUT_S} s; full: no "
         f"client slot free). Server CPU: its busy share of its core (other processes on a "
         f"loaded machine take the rest); µs per completed exchange: what the goodput cost, "
         f"and its ratio to the closed loop's (1.00: nothing wasted on connections that did "
         f"not complete). RSS: the server's peak during the run.", "",
         "| server | load | offered/s | goodput/s | % of peak | handshake p50 ms | "
         "handshake p99 ms | exchange p99 ms | server CPU | server µs per completed | "
         "vs closed loop | peak RSS MiB | errors by kind |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.get("errors_by_kind", {}).items()))
        L.append(f"| {r['server']} | {r['load']} | {cell(r.get('offered'))} | "
                 f"{cell(r.get('goodput'))} | {cell(r.get('of_peak'), '{:.0%}')} | "
                 f"{cell(r.get('hs_p50_ms'), '{:.1f}')} | {cell(r.get('hs_p99_ms'), '{:.1f}')} | "
                 f"{cell(r.get('p99_ms'), '{:.1f}')} | {cell(r.get('server_util'), '{:.0%}')} | "
                 f"{cell(r.get('cpu_us'))} | {cell(r.get('cpu_vs_closed'), '{:.2f}')} | "
                 f"{cell(r.get('rss_mib'), '{:.1f}')} | {kinds or '-'} |")
    L.append("")
    return L


def main(argv=None):
    import run as runmod
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--postern-before", help="a postern binary built before the change")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="postern-bench-overload-"))
    env = runmod.Env(runmod.parse_args(["--scenarios", "full"]), workdir)
    os.sched_setaffinity(0, env.client_cpus)
    backend = runmod.start_backend(env, workdir)
    try:
        cert = servers.Cert(runmod.make_pki(workdir), "localhost", "ecdsa")
        rows = run(env, cert, workdir, reps=a.reps or (1 if a.quick else 2),
                   duration=a.duration or (1.5 if a.quick else 3.0),
                   multiples=(1, 4) if a.quick else (1, 2, 4), before=a.postern_before,
                   say=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        procs.stop(backend)
        shutil.rmtree(workdir, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(markdown(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
