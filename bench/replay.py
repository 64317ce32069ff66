"""Scenario "replay": what the fleet's shared 0-RTT strike register costs.

postern in http mode with `early_data: accept`, measured twice in the same
run, alternately: with `early_data_replay: {store: local}` (each instance's
own register) and with `store: redis` (a redis-server on this host, started
by the bench, no persistence). The load generator resumes with 0-RTT and
sends its request as early data (loadgen --mode early). Reported per store:
0-RTT requests per server-CPU-second (postern's CPU; Redis' own CPU is
reported apart), the share of early data accepted, and the response time
p50/p99; the redis figures also as a ratio to local and as p99 added.

Run alone: python3 bench/replay.py [--quick]; or as part of bench/run.py
(--scenarios replay)."""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import procs  # noqa: E402
from report import cell  # noqa: E402
import scenarios  # noqa: E402
import servers  # noqa: E402


class PosternReplay(servers.PosternHttp):
    """postern-http with early data accepted and the given register."""

    def __init__(self, env, cert, workdir, store, redis_port=None):
        self.store, self.redis_port = store, redis_port
        self.name = f"postern-http-{store}"
        super().__init__(env, cert, workdir, early=True)

    def command(self):
        cmd = super().command()
        cfg = Path(cmd[-1])
        text = cfg.read_text()
        block = "early_data_replay:\n  store: local\n"
        if self.store == "redis":
            block = (f"early_data_replay:\n  store: redis\n  redis:\n"
                     f"    address: \"127.0.0.1:{self.redis_port}\"\n    timeout: 5ms\n")
        cfg.write_text(text.replace("listeners:\n", block + "listeners:\n", 1))
        return cmd


def start_redis(workdir, cpus):
    port = procs.free_port()
    log = Path(workdir) / "redis.log"
    p = procs.spawn(["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--maxmemory-policy", "noeviction"], cpus, log)
    procs.wait_listening(port, p, 10, "redis-server")
    return p, port


def run(env, cert, workdir, reps=3, conc=16, duration=2.0, warmup=0.5, say=print):
    if shutil.which("redis-server") is None:
        say("replay: redis-server is not installed: scenario skipped")
        return []
    workdir = Path(workdir) / "replay"
    workdir.mkdir(parents=True, exist_ok=True)
    # Redis runs next to the load generator, off the server's CPU: the
    # figure is postern's CPU per request; Redis' is reported apart.
    redis, port = start_redis(workdir, env.client_cpus)
    rows = []
    try:
        fleet = {s: PosternReplay(env, cert, workdir, s, port).start() for s in ("local", "redis")}
        try:
            for rep in range(reps):
                for store in (("local", "redis") if rep % 2 == 0 else ("redis", "local")):
                    s = fleet[store]
                    r0 = procs.tree_cpu_seconds(redis.pid)
                    r = scenarios.handshakes(env, s, "early", conc, duration, warmup,
                                             workdir / "clients.log")
                    r["redis_cpu_s"] = procs.tree_cpu_seconds(redis.pid) - r0
                    r.update(scenario="replay", store=store, rep=rep)
                    rows.append(r)
                    say(f"replay {store} rep {rep}: {r.get('ok', 0) / r['server_cpu_s'] if r.get('server_cpu_s') else 0:.0f} "
                        f"req per server-CPU-s, early accepted {r.get('early_frac', 0):.0%}, "
                        f"p99 {r.get('resp_p99_ms')} ms, errors {r.get('errors')}")
        finally:
            for s in fleet.values():
                s.stop()
    finally:
        procs.stop(redis)
    return summarize(rows)


def _median(vals):
    vals = sorted(v for v in vals if v is not None)
    return vals[len(vals) // 2] if vals else None


def summarize(rows):
    out = []
    for store in ("local", "redis"):
        sel = [r for r in rows if r["store"] == store]
        if not sel:
            continue
        per_cpu = [r["ok"] / r["server_cpu_s"] for r in sel if r.get("server_cpu_s")]
        out.append({"scenario": "replay", "store": store, "runs": len(sel),
                    "req_per_cpu_s": _median(per_cpu),
                    "early_frac": _median([r.get("early_frac") for r in sel]),
                    "p50_ms": _median([r.get("resp_p50_ms") for r in sel]),
                    "p99_ms": _median([r.get("resp_p99_ms") for r in sel]),
                    "redis_cpu_per_req_us": _median(
                        [r["redis_cpu_s"] / r["ok"] * 1e6 for r in sel if r.get("ok")]),
                    "errors": sum(r.get("errors", 0) for r in sel)})
    local = next((r for r in out if r["store"] == "local"), None)
    for r in out:
        if r["store"] == "redis" and local and local["req_per_cpu_s"]:
            r["ratio_vs_local"] = r["req_per_cpu_s"] / local["req_per_cpu_s"]
            if r["p99_ms"] is not None and local["p99_ms"] is not None:
                r["p99_added_ms"] = r["p99_ms"] - local["p99_ms"]
    return out




def markdown(rows):
    if not rows:
        return []
    L = ["### 0-RTT with the shared strike register (scenario `replay`)", "",
         "postern-http, `early_data: accept`, 0-RTT requests (loadgen --mode early, c=16), "
         "`early_data_replay` local against redis (a redis-server on this host, off the "
         "server's CPU). Goal: redis at least 85% of local per server-CPU-second.", "",
         "| store | 0-RTT requests per server-CPU-s | vs local | early data accepted | "
         "p50 ms | p99 ms | p99 added ms | Redis CPU per request us | errors |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['store']} | {cell(r['req_per_cpu_s'])} | "
                 f"{cell(r.get('ratio_vs_local'), '{:.2f}')} | {cell(r['early_frac'], '{:.0%}')} | "
                 f"{cell(r['p50_ms'], '{:.2f}')} | {cell(r['p99_ms'], '{:.2f}')} | "
                 f"{cell(r.get('p99_added_ms'), '{:.2f}')} | "
                 f"{cell(r['redis_cpu_per_req_us'], '{:.1f}')} | {r['errors']} |")
    L.append("")
    return L


def main(argv=None):
    import run as runmod
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    a = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="postern-bench-replay-"))
    env = runmod.Env(runmod.parse_args(["--scenarios", "early"]), workdir)
    os.sched_setaffinity(0, env.client_cpus)
    backend = runmod.start_backend(env, workdir)
    try:
        cert = servers.Cert(runmod.make_pki(workdir), "localhost", "ecdsa")
        rows = run(env, cert, workdir, reps=a.reps or (1 if a.quick else 3),
                   duration=1.0 if a.quick else 2.5)
    finally:
        procs.stop(backend)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(markdown(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
