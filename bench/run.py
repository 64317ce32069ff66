#!/usr/bin/python3
"""postern's bench suite: handshake throughput and cost against hitch and
HAProxy, measured side by side in one run, for postern's tcp mode (against
hitch and HAProxy mode tcp) and its http mode (against HAProxy mode http).
See bench/README.md.

    bench/run.py                  the full run (about 13 minutes on 2 cores)
    bench/run.py --quick          one concurrency, one repetition, short runs
    bench/run.py --peers none     postern alone (both modes)
    bench/run.py --kinds http     http mode only

Writes a markdown table to stdout and OUT/latest.md, the figures as JSON
(OUT/latest.json) and a plot (OUT/latest.png); OUT is bench/results unless
--out says otherwise. Needs build/postern, build/bench/loadgen and
build/bench/backend (`make bench` builds them) and, for the peers, hitch and
haproxy (`make bench-deps`)."""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import procs  # noqa: E402
import report  # noqa: E402
import certs as certs_scenario  # noqa: E402
import idle as idle_scenario  # noqa: E402
import replay as replay_scenario  # noqa: E402
import keepalive as keepalive_scenario  # noqa: E402
import overload as overload_scenario  # noqa: E402
import scenarios  # noqa: E402
import servers  # noqa: E402

REPO = HERE.parent

ALL_SCENARIOS = ("full", "resumed", "early", "h1", "h2", "idle", "certs", "replay", "keepalive",
                 "overload", "held")


class Env:
    """Everything a measurement needs to know about the machine and the run."""

    def __init__(self, args, workdir):
        self.workdir = str(workdir)
        self.postern = args.postern
        self.loadgen = args.loadgen
        self.backend_bin = args.backend
        self.h2load = shutil.which("h2load")
        self.hitch = servers.peer_binary("hitch")
        self.haproxy = servers.peer_binary("haproxy")
        ncpu = os.cpu_count() or 1
        self.server_cpus = [args.server_cpu]
        self.client_cpus = [c for c in range(ncpu) if c != args.server_cpu] or [args.server_cpu]
        self.backend_port = None
        self.admin = args.admin  # postern with admin: on, scraped every second
        self.variant = args.postern_variant  # dual-cert | servers3 | proxy-v2 | None
        self.sigalgs = args.client_sigalgs  # the load generator's signature_algorithms
        self.backend_ports = []
        self.scrapes = {"ok": 0, "failed": 0}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: concurrency 16, one repetition, 1 s runs, 500 idle "
                         "connections (under a minute)")
    ap.add_argument("--peers", default="all",
                    help="comma-separated peers to compare with (hitch, haproxy-tcp, "
                         "haproxy-http; haproxy means both), 'all' (those installed) or 'none'")
    ap.add_argument("--kinds", default="tcp,http",
                    help="server kinds to run: tcp (postern-tcp, hitch, haproxy-tcp) and/or "
                         "http (postern-http, haproxy-http); default both")
    ap.add_argument("--reps", type=int, help="repetitions of every measurement (default 3)")
    ap.add_argument("--duration", type=float, help="seconds per measurement (default 2.5)")
    ap.add_argument("--warmup", type=float, help="seconds of warm-up before each (default 0.5)")
    ap.add_argument("--conc", help="handshake concurrencies (default 1,16,64)")
    ap.add_argument("--early-conc",
                    help="concurrencies of the 0-RTT runs (default 1,16; quick: 16)")
    ap.add_argument("--rtt-ms", type=float, default=10.0,
                    help="round trip emulated by the load generator for counting the round "
                         "trips of resumed and 0-RTT requests (default 10; 0: skip those runs)")
    ap.add_argument("--keepalive-conc", type=int, default=16,
                    help="h2load connections for the keep-alive runs (default 16)")
    ap.add_argument("--h2-streams", type=int, default=8,
                    help="concurrent streams per h2 connection (default 8)")
    ap.add_argument("--idle", type=int, help="idle TLS connections for RSS (default 5000)")
    ap.add_argument("--held", help="scenario held: connections held (default 2000,20000,100000;"
                    " quick: 2000)")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS),
                    help=f"which measurements, from {','.join(ALL_SCENARIOS)} (default all)")
    ap.add_argument("--cert-counts",
                    help="numbers of certificates of the certs scenario (default 1,1000,10000; "
                         "quick: 1,200)")
    ap.add_argument("--certs", help="certificate variants (default ecdsa,rsa; quick: ecdsa)")
    ap.add_argument("--out", default=str(HERE / "results"), help="output directory")
    ap.add_argument("--readme", action="store_true",
                    help="also put the results into bench/README.md")
    ap.add_argument("--postern", default=str(REPO / "build" / "postern"))
    ap.add_argument("--loadgen", default=str(REPO / "build" / "bench" / "loadgen"))
    ap.add_argument("--backend", default=str(REPO / "build" / "bench" / "backend"))
    ap.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to")
    ap.add_argument("--keep-workdir", action="store_true", help="keep configs, PKI and logs")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--postern-variant", choices=("dual-cert", "servers3", "proxy-v2"),
                    help="postern's configuration: dual-cert (an ECDSA and an RSA certificate "
                         "for the name), servers3 (a backend set of three servers with health "
                         "checks) or proxy-v2 (a PROXY v2 header to the server); compare with a "
                         "run without it")
    ap.add_argument("--client-sigalgs",
                    help="signature_algorithms the load generator offers (e.g. RSA-PSS+SHA256)")
    ap.add_argument("--admin", action="store_true",
                    help="run postern with its admin endpoint on (admin: listen:) and scrape "
                         "/metrics every second while each postern runs, as Prometheus would")
    ap.add_argument("--postern-before", metavar="BIN",
                    help="overload scenario: also run this postern binary (built before a "
                         "change), alternating with the current one")
    ap.add_argument("--from-json", metavar="FILE",
                    help="measure nothing: rebuild the report from a latest.json")
    a = ap.parse_args(argv)
    q = a.quick
    a.reps = a.reps or (1 if q else 3)
    a.duration = a.duration or (1.0 if q else 2.5)
    a.warmup = a.warmup if a.warmup is not None else (0.2 if q else 0.5)
    a.conc = [int(c) for c in (a.conc or ("16" if q else "1,16,64")).split(",")]
    a.early_conc = [int(c) for c in (a.early_conc or ("16" if q else "1,16")).split(",")]
    a.idle = a.idle or (500 if q else 5000)
    a.held = ([int(x) for x in a.held.split(",")] if a.held
              else list(idle_scenario.QUICK_SIZES if q else idle_scenario.SIZES))
    a.cert_counts = [int(c) for c in (a.cert_counts or ("1,200" if q else "1,1000,10000")).split(",")]
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    a.certs = [c for c in (a.certs or ("ecdsa" if q else "ecdsa,rsa")).split(",") if c]
    a.kinds = [k for k in a.kinds.split(",") if k]
    bad = [s for s in a.scenarios if s not in ALL_SCENARIOS]
    if bad:
        ap.error(f"unknown scenario {bad[0]!r}; expected some of {','.join(ALL_SCENARIOS)}")
    if not a.certs or any(c not in ("ecdsa", "rsa") for c in a.certs):
        ap.error("--certs: expected ecdsa and/or rsa")
    if not a.kinds or any(k not in servers.KINDS for k in a.kinds):
        ap.error("--kinds: expected tcp and/or http")
    # A resumed handshake sends no certificate and makes no signature: on
    # the RSA certificate it shows nothing the ECDSA run does not.
    a.resumed_certs = a.certs[:1]
    # The round-trip runs: few connections at a time, long enough for a
    # few hundred requests at 2 emulated round trips each.
    a.rtt_conc = 8
    a.rtt_duration = 0.3 if q else 1.0
    # Idle memory: the time the servers get to finish what the last
    # handshakes started before RSS is read.
    a.settle = 0.5 if q else 1.0
    return a


def choose_servers(args, env):
    """Names of the servers to run, each kind's postern before its peers, and
    notes about peers left out."""
    notes = []
    if args.peers in ("none", "all"):
        wanted = [] if args.peers == "none" else list(servers.PEERS)
    else:
        wanted = []
        for p in args.peers.split(","):
            for name in servers.PEER_ALIASES.get(p, (p,)):
                if name not in servers.PEERS:
                    sys.exit(f"bench: unknown peer {p!r}; expected some of "
                             f"{','.join(servers.PEERS)} or haproxy")
                wanted.append(name)
    names = []
    for name, cls in servers.SERVERS.items():
        if cls.kind not in args.kinds:
            continue
        if name != servers.postern_of(cls.kind) and name not in wanted:
            continue
        if cls.binary != "postern" and getattr(env, cls.binary) is None:
            if args.peers == "all":
                if f"{cls.binary} is not installed" not in " ".join(notes):
                    notes.append(f"{cls.binary} is not installed (make bench-deps): left out")
                continue
            sys.exit(f"bench: {cls.binary} is not installed; run `make bench-deps`")
        names.append(name)
    return names, notes


def check_binaries(args, env):
    for path, what in ((args.postern, "postern"), (args.loadgen, "loadgen"),
                       (args.backend, "backend")):
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {what} binary {path} is missing; run `make bench` (or make "
                     f"{os.path.relpath(path, REPO)})")
    if env.h2load is None and ({"h1", "h2", "keepalive"} & set(args.scenarios)):
        sys.exit("bench: h2load not found; run `make bench-deps` (nghttp2-client)")


def make_pki(workdir):
    pki = Path(workdir) / "pki"
    subprocess.run([str(REPO / "conf" / "mkpki.sh"), str(pki)], check=True,
                   stdout=subprocess.DEVNULL)
    return pki


def start_backend(env, workdir, listeners=1):
    """The bench backend; with listeners > 1 one process serving on that many
    ports (env.backend_ports), as the servers of a backend set."""
    log = Path(workdir) / "backend.log"
    p = procs.spawn([env.backend_bin, "--listeners", listeners], env.client_cpus, log,
                    stdout=subprocess.PIPE)
    for _ in range(listeners):
        line = p.stdout.readline().decode()
        if not line.startswith("listening "):
            procs.stop(p)
            sys.exit(f"bench: the backend did not start: {log.read_text()}")
        env.backend_ports.append(int(line.split()[1]))
    env.backend_port = env.backend_ports[0]
    return p


_T0 = time.monotonic()


def say(msg):
    print(f"bench: [{time.monotonic() - _T0:4.0f} s] {msg}", file=sys.stderr, flush=True)


class Fleet:
    """The servers under test, one per (name, certificate variant, early
    data on or off), started lazily and restarted when one died."""

    def __init__(self, env, names, certs, workdir):
        self.env, self.names, self.certs = env, names, certs
        self.workdir = Path(workdir)
        self.running = {}

    def get(self, name, variant, early=False):
        s = self.running.get((name, variant, early))
        if s is not None and s.alive():
            return s
        if s is not None:
            say(f"{s.stem} exited; restarting it")
            s.stop()
        s = servers.SERVERS[name](self.env, self.certs[variant], self.workdir, early).start()
        self.running[(name, variant, early)] = s
        return s

    def stop_all(self):
        problems = {}
        for s in self.running.values():
            s.stop()
            found = s.log_problems()
            if found:
                problems[s.stem] = found[:5]
        self.running.clear()
        return problems


def rotated(names, k):
    """names rotated by k: each repetition starts with a different server."""
    k %= len(names)
    return names[k:] + names[:k]


def run_all(args, env, names, certs, workdir):
    runs = []
    logdir = Path(workdir) / "logs"
    logdir.mkdir(exist_ok=True)
    fleet = Fleet(env, names, certs, workdir)
    client_log = logdir / "clients.log"
    plan = []
    for mode, scen in (("full", "full"), ("resume", "resumed")):
        if scen in args.scenarios:
            for variant in (args.certs if scen == "full" else args.resumed_certs):
                for conc in args.conc:
                    plan.append(("hs", mode, variant, conc))
    early_names = [n for n in names if servers.SERVERS[n].supports_early]
    if "early" in args.scenarios:
        for conc in args.early_conc:
            plan.append(("early", "early", args.certs[0], conc))
        if args.rtt_ms > 0:
            # The same early-data server, resumed with and without early data.
            for mode in ("resume", "early"):
                plan.append(("rtt", mode, args.certs[0], args.rtt_conc))
    for proto in ("h1", "h2"):
        if proto in args.scenarios:
            plan.append(("ka", proto, args.certs[0], args.keepalive_conc))
    server_problems = {}
    try:
        for rep in range(args.reps):
            for i, (what, mode, variant, conc) in enumerate(plan):
                for name in rotated(early_names if what in ("early", "rtt") else names, rep + i):
                    s = fleet.get(name, variant, early=what in ("early", "rtt"))
                    if what in ("hs", "early"):
                        r = scenarios.handshakes(env, s, mode, conc, args.duration, args.warmup,
                                                 client_log)
                    elif what == "rtt":
                        r = scenarios.handshakes(env, s, mode, conc, args.rtt_duration,
                                                 args.warmup, client_log, delay_ms=args.rtt_ms)
                    else:
                        r = scenarios.keepalive(env, s, mode, conc, args.h2_streams,
                                                args.duration, client_log)
                    r["rep"] = rep
                    runs.append(r)
                    say(report.one_line(r))
            if "idle" in args.scenarios:
                for name in rotated(names, rep):
                    # A fresh server, so that the baseline is a server's own.
                    s = servers.SERVERS[name](env, certs[args.certs[0]],
                                              Path(workdir) / f"idle-{rep}").start()
                    try:
                        r = scenarios.idle_memory(env, s, args.idle, client_log,
                                                  settle=args.settle)
                    finally:
                        s.stop()
                    for k, v in {f"{name}-idle": s.log_problems()}.items():
                        if v:
                            server_problems[k] = v[:5]
                    r["rep"] = rep
                    runs.append(r)
                    say(report.one_line(r))
    finally:
        server_problems.update(fleet.stop_all())
    return runs, server_problems


def machine_info(env):
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = (x.strip() for x in line.split(":", 1))
                    info.setdefault(k, v)
    except OSError:
        pass
    cpu = info.get("model name", "")
    if info.get("cpu family"):
        cpu += f" (family {info['cpu family']} model {info.get('model', '?')}"
        # The extensions that decide crypto speed (OpenSSL uses SHA-NI and
        # AVX-512 where wolfSSL 5.5.4 does not).
        flags = [f for f in ("aes", "vaes", "avx2", "avx512f", "sha_ni", "bmi2", "adx")
                 if f in info.get("flags", "").split()]
        cpu += f"; {' '.join(flags)})" if flags else ")"
    wolfssl = ""
    try:
        ver = (REPO / "deps" / "wolfssl" / "include" / "wolfssl" / "version.h").read_text()
        for line in ver.splitlines():
            if "LIBWOLFSSL_VERSION_STRING" in line:
                wolfssl = line.split('"')[1]
    except (OSError, IndexError):
        pass

    def deb(pkg):
        try:
            return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "cpu": cpu, "cores": os.cpu_count(), "kernel": os.uname().release,
        "wolfssl": wolfssl + " (tuned, deps/wolfssl)" if wolfssl else "",
        "libuv": deb("libuv1"), "openssl": deb("libssl3"),
        "postern": servers.version_of([env.postern, "--version"]),
        "postern_tree": postern_tree(),
        "hitch": servers.version_of([env.hitch, "--version"]) if env.hitch else "",
        "haproxy": servers.version_of([env.haproxy, "-v"]) if env.haproxy else "",
        "h2load": servers.version_of([env.h2load, "--version"]) if env.h2load else "",
        "server_cpus": env.server_cpus, "client_cpus": env.client_cpus,
    }


def loadavg():
    """The 1-minute load average now (other processes on a shared machine
    show in it), or None."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def postern_tree():
    """The commit the postern binary was built from, and whether the tree had
    changes then ("" when git is not there)."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src",
                                "include"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + (" with changes in src/ or include/" if dirty else "") if head else ""


def write_outputs(args, doc):
    """Writes latest.md, latest.json and latest.png into args.out (and the
    README's results section with --readme); prints the table."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_plot:
        plot = report.plot(doc, out / "latest.png", workdir=out)
        if plot:
            doc["plot"] = plot
        scale = report.scale_plot(doc, out / "scale.png")
        if scale:
            doc["scale_plot"] = scale
        if not plot and not scale and (doc["rows"] or doc.get("certs") or doc.get("held")):
            doc["notes"].append("no plot: neither gnuplot nor python3-matplotlib is installed "
                                "(make bench-deps)")
    md = report.markdown(doc)
    (out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "latest.md").write_text(md)
    if args.readme:
        report.update_readme(HERE / "README.md", md)
    print(md)
    say(f"wrote {out / 'latest.md'}, {out / 'latest.json'}"
        + (f", {out / 'latest.png'}" if doc.get("plot") else "")
        + (f", {out / 'scale.png'}" if doc.get("scale_plot") else ""))


def rebuild(args):
    old = json.loads(Path(args.from_json).read_text())
    derived = ("rows marked", "no plot", "other processes used", "1-minute load average")
    notes = old.get("notes_in")
    if notes is None:
        notes = [n for n in old.get("notes", []) if not n.startswith(derived)]
    doc = report.build(old["runs"], old["settings"], old["machine"], notes,
                       old.get("server_log_problems", {}), old["elapsed_s"], old["when"])
    doc["certs"] = old.get("certs", [])
    doc["replay"] = old.get("replay", [])
    doc["overload"] = old.get("overload", [])
    write_outputs(args, doc)
    return 1 if doc["total_errors"] else 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        return rebuild(args)
    workdir = Path(tempfile.mkdtemp(prefix="postern-bench-"))
    env = Env(args, workdir)
    check_binaries(args, env)
    names, notes = choose_servers(args, env)
    nofile = procs.raise_nofile()
    if "held" in args.scenarios:
        nofile = idle_scenario.raise_nofile(idle_scenario.descriptors_needed(args.held))
    if "idle" in args.scenarios and nofile < 2 * args.idle + 200:
        notes.append(f"RLIMIT_NOFILE is {nofile}: idle connections cut to "
                     f"{(nofile - 200) // 2}")
        args.idle = (nofile - 200) // 2
    if len(env.client_cpus) == 1 and env.client_cpus == env.server_cpus:
        notes.append("one CPU only: client and server share it; rates mean little")
    # The driver stays off the server's CPU too.
    try:
        os.sched_setaffinity(0, env.client_cpus)
    except OSError:
        pass
    started = time.monotonic()
    load_start = loadavg()
    backend = None
    try:
        pki = make_pki(workdir)
        certs = {v: servers.Cert(pki, "localhost", v) for v in args.certs}
        backend = start_backend(env, workdir,
                                listeners=3 if args.postern_variant == "servers3" else
                                idle_scenario.BACKEND_LISTENERS if "held" in args.scenarios
                                else 1)
        say(f"servers: {', '.join(names)} on CPU {procs.cpu_list(env.server_cpus)}; "
            f"load generator and backend on CPU {procs.cpu_list(env.client_cpus)}; "
            f"work directory {workdir}")
        runs, problems = run_all(args, env, names, certs, workdir)
        cert_rows = []
        if "certs" in args.scenarios:
            cert_rows = certs_scenario.run(env, args.cert_counts, workdir,
                                           duration=args.duration, warmup=args.warmup, say=say,
                                           servers_=("postern", "haproxy") if env.haproxy
                                           else ("postern",))
        held_rows = []
        if "held" in args.scenarios:
            held_rows = idle_scenario.run(env, names, certs[args.certs[0]], workdir, args.held,
                                          args.duration, args.warmup,
                                          Path(workdir) / "logs" / "clients.log", say=say)
        replay_rows = []
        if "replay" in args.scenarios and "http" in args.kinds:
            replay_rows = replay_scenario.run(env, certs[args.certs[0]], workdir,
                                              reps=args.reps, duration=args.duration,
                                              warmup=args.warmup, say=say)
        keepalive_rows = []
        if "keepalive" in args.scenarios and "http" in args.kinds:
            keepalive_rows = keepalive_scenario.run(
                env, certs[args.certs[0]], workdir, backend, reps=args.reps,
                duration=args.duration, levels=(500,) if args.quick else keepalive_scenario.LEVELS,
                protos=("h2",) if args.quick else ("h1", "h2"),
                peers=names + (["h2o"] if args.peers == "all" else []), say=say)
        overload_rows = []
        if "overload" in args.scenarios and "tcp" in args.kinds:
            overload_rows = overload_scenario.run(
                env, certs[args.certs[0]], workdir, reps=1 if args.quick else 2,
                duration=1.5 if args.quick else 3.0, warmup=args.warmup,
                multiples=(1, 4) if args.quick else (1, 2, 4), before=args.postern_before,
                haproxy="haproxy-tcp" in names, low_bound=not args.quick, say=say)
        if args.admin:
            notes.append(f"postern ran with admin: on and /metrics scraped every second: "
                         f"{env.scrapes['ok']} scrapes, {env.scrapes['failed']} failed")
        if args.postern_variant or args.client_sigalgs:
            notes.append(f"postern variant: {args.postern_variant or 'none'}; load generator "
                         f"signature_algorithms: {args.client_sigalgs or 'default'}")
    finally:
        if backend is not None:
            procs.stop(backend)
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    settings = {
        "quick": args.quick, "reps": args.reps, "duration_s": args.duration,
        "warmup_s": args.warmup, "conc": args.conc, "keepalive_conc": args.keepalive_conc,
        "h2_streams": args.h2_streams, "idle": args.idle, "scenarios": args.scenarios,
        "certs": args.certs, "resumed_certs": args.resumed_certs, "servers": names,
        "kinds": args.kinds, "early_conc": args.early_conc, "rtt_ms": args.rtt_ms,
        "rtt_conc": args.rtt_conc, "rtt_duration_s": args.rtt_duration, "admin": args.admin,
        "cert_counts": args.cert_counts, "postern_variant": args.postern_variant,
        "client_sigalgs": args.client_sigalgs,
    }
    machine = machine_info(env)
    machine["loadavg"] = [load_start, loadavg()]
    doc = report.build(runs, settings, machine, notes, problems, elapsed,
                       datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    doc["certs"] = cert_rows
    doc["replay"] = replay_rows
    doc["keepalive"] = keepalive_rows
    doc["overload"] = overload_rows
    doc["held"] = held_rows
    write_outputs(args, doc)
    say(f"done in {elapsed:.0f} s")
    return 1 if doc["total_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
