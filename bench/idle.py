"""Scenario `held` (issue 17, "Many connections"): N idle TLS 1.3 connections
held open at once (N = 2,000, 20,000 and 100,000; QUICK: 2,000), for each
server in a fresh process:

1. a warm-up, then full handshakes (c=16) on the empty server: CPU per
   handshake and rate;
2. N connections that finish their handshake and stay open (bench/loadgen.c
   idle mode, 64 handshakes in flight, source addresses spread over
   127.0.0.2..k+1 with --sources so that no (source, destination) pair runs
   out of ephemeral ports, and the measuring client's 127.0.0.1 has all of
   its own), then RSS per connection over the baseline;
3. while they are held, the same full handshakes again: what a new client
   pays on a server that holds N.

tcp-mode servers hold a backend connection per client: above ~25,000 they
reach the backend on several ports (the backend listens on eight; postern
and HAProxy balance over them), as one (source, destination) pair offers
only ip_local_port_range's ~28,000 ports. hitch has one backend address: it
is measured up to 20,000. The descriptor limit is raised for the driver and
everything it starts (`raise_nofile`: with CAP_SYS_RESOURCE up to
fs.nr_open); a size that does not fit under it is cut to what does
(`capacity`), and the report says so.

Run alone: bench/run.py --scenarios held [--held 2000,20000,100000]."""

import re
import resource
import subprocess
import time
from pathlib import Path

import procs
import scenarios
import servers

SIZES = (2000, 20000, 100000)
QUICK_SIZES = (2000,)
BACKEND_LISTENERS = 8
# Connections one (source, destination) pair can hold with Linux's default
# ip_local_port_range (32768-60999), with a margin.
PORTS_PER_PAIR = 25000


def raise_nofile(n):
    """Raises RLIMIT_NOFILE, soft and hard, to at least n where allowed (root:
    up to fs.nr_open); children started afterwards inherit it. Returns the
    soft limit now in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        nr_open = hard
    want = min(max(n, soft), nr_open)
    for lim in ((want, max(want, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, lim)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def descriptors_needed(sizes):
    """A tcp-mode proxy holds two descriptors per connection; the load
    generator and the backend one each."""
    return 2 * max(sizes) + 1000


def _config_path(argv):
    for a in argv:
        a = str(a)
        a = a.split("=", 1)[1] if a.startswith("--config=") else a
        if a.endswith((".yaml", ".cfg", ".conf")) and Path(a).exists():
            return Path(a)
    return None


def _fit(server, env, n):
    """Rewrites server's configuration (written by its command()) for n
    connections: the connection limits above n, and for n above one
    source/destination pair's ports, the backend on every port of the
    bench backend."""
    orig = server.command
    spread = n > PORTS_PER_PAIR and server.kind == "tcp" and len(env.backend_ports) > 1

    def command():
        argv = orig()
        cfg = _config_path(argv)
        if cfg is None:
            return argv
        text = cfg.read_text()
        limit = n + 1000
        if server.name.startswith("postern"):
            text = re.sub(r"max_connections: \d+", f"max_connections: {limit}", text)
            if spread:
                items = "".join(f'      - address: "127.0.0.1:{p}"\n' for p in env.backend_ports)
                text = text.replace("listeners:\n", f"backends:\n  app:\n    servers:\n{items}"
                                    "listeners:\n", 1)
                text = re.sub(r'backend: "127\.0\.0\.1:\d+"', "backend: app", text)
        elif server.name.startswith("haproxy"):
            text = re.sub(r"maxconn \d+", f"maxconn {n + 50}", text)
            if spread:
                lines = "".join(f"    server origin{i} 127.0.0.1:{p}\n"
                                for i, p in enumerate(env.backend_ports))
                text = re.sub(r"    server origin 127\.0\.0\.1:\d+\n",
                              "    balance roundrobin\n" + lines, text)
        cfg.write_text(text)
        return argv

    server.command = command
    return server


def _hold(env, server, n, log):
    """Starts a load generator that opens n idle connections. Returns
    (process, ready event or None, seconds to open them)."""
    sources = max(1, -(-n // PORTS_PER_PAIR))
    cmd = [env.loadgen, "--connect", f"127.0.0.1:{server.port}", "--sni", server.cert.sni,
           "--mode", "idle", "--count", n, "--conc", 64, "--timeout", 60, "--sources", sources]
    p = procs.spawn(cmd, env.client_cpus, log, stdout=subprocess.PIPE)
    dog = scenarios._watchdog(p, 120 + n / 200)
    t0 = time.monotonic()
    ready = None
    try:
        for ev in scenarios._events(p):
            if ev.get("event") == "idle_ready":
                ready = ev
                break
    finally:
        dog.cancel()
    return p, ready, time.monotonic() - t0


def capacity(name):
    """Connections the server can hold under this process's RLIMIT_NOFILE
    (which it inherits): a tcp-mode proxy, and HAProxy in either mode (it
    sizes its descriptors for maxconn that way), needs two descriptors per
    connection; postern in http mode one. Rounded down to a thousand."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cls = servers.SERVERS[name]
    per = 2 if cls.kind == "tcp" or name.startswith("haproxy") else 1
    return max(1000, (nofile - 300) // per // 1000 * 1000)


def one(env, name, cert, workdir, n, duration, warmup, log):
    """One server, one size: a result row (dict). A size above what the
    descriptor limit allows is cut to it (row["asked"] keeps the size
    asked for)."""
    cap = capacity(name)
    row = {"scenario": "held", "server": name, "held": min(n, cap), "asked": n, "errors": 0}
    n = row["held"]
    cls = servers.SERVERS[name]
    row["kind"] = cls.kind
    if cls.kind == "tcp" and n > PORTS_PER_PAIR and not cls.name.startswith(("postern",
                                                                              "haproxy")):
        row["skipped"] = "one backend address: its ports run out (~28,000)"
        return row
    s = _fit(cls(env, cert, Path(workdir) / f"held-{n}"), env, n)
    try:
        s.start()
    except RuntimeError as e:
        row.update(errors=1, failure=str(e), log_tail=_tail(s.log))
        return row
    hold = None
    try:
        empty = scenarios.handshakes(env, s, "full", 16, duration, warmup, log)
        time.sleep(0.5)  # the measured connections finish closing
        base = s.rss_kib()
        hold, ready, open_s = _hold(env, s, n, log)
        if ready is None:
            row.update(errors=1, failure="idle connections never ready")
            return row
        # The server sees each client's Finished (and connects its backend)
        # a moment after the client is done; more connections, more moments.
        time.sleep(1.0 + n / 50000)
        rss = s.rss_kib()
        held = scenarios.handshakes(env, s, "full", 16, duration, warmup, log)
        opened = ready["open"]
        row.update(
            opened=opened, errors=ready["errors"] + (n - opened) + empty["errors"] + held["errors"],
            open_s=open_s, open_rate=opened / open_s if open_s > 0 else None,
            base_rss_kib=base, rss_kib=rss,
            kib_per_conn=(rss - base) / opened if opened else None, fds=s.fds(),
            hs_us_empty=empty.get("cpu_us"), hs_us_held=held.get("cpu_us"),
            rate_empty=empty.get("rate"), rate_held=held.get("rate"),
            util_empty=empty.get("server_util"), util_held=held.get("server_util"),
            client_bound=bool(empty.get("client_saturated") or held.get("client_saturated")))
        if not s.alive():
            row.update(errors=row["errors"] + 1, failure="server exited")
    finally:
        if hold is not None:
            procs.stop(hold)
            hold.stdout.close()
        s.stop()
    return row


def run(env, names, cert, workdir, sizes, duration, warmup, log, say=print):
    """Every size, every server (interleaved per size). Returns the rows."""
    rows = []
    done = set()
    for n in sizes:
        for name in names:
            if (name, min(n, capacity(name))) in done:
                rows.append({"scenario": "held", "server": name, "held": n, "asked": n,
                             "errors": 0, "skipped": f"RLIMIT_NOFILE "
                             f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}: at most "
                             f"{capacity(name)} (measured above)"})
                say(f"held {n:>6} {name:<13} {rows[-1]['skipped']}")
                continue
            done.add((name, min(n, capacity(name))))
            r = one(env, name, cert, workdir, n, duration, warmup, log)
            rows.append(r)
            say(f"held {n:>6} {name:<13} " + (
                r.get("skipped") or r.get("failure") or
                f"{r['kib_per_conn']:.2f} KiB/conn, handshake {_f(r['hs_us_empty'])} -> "
                f"{_f(r['hs_us_held'])} us, opened at {_f(r['open_rate'])}/s"))
    return rows


def _tail(path, n=5):
    try:
        return Path(path).read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _f(v, fmt="{:.0f}"):
    return fmt.format(v) if isinstance(v, (int, float)) else "-"


def markdown(rows):
    """The report's table: per size and server, RSS per connection and what a
    new handshake costs with them held."""
    L = ["", "### Connections held (idle TLS 1.3): RSS per connection and new handshakes", "",
         "| held | server | KiB per connection | RSS MiB (baseline) | opened per s | "
         "handshake µs empty | held | ratio | handshakes/s empty | held | server CPU busy empty | held | "
         "errors |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("asked", r["held"]) != r["held"]:
            r = dict(r, held=f"{r['held']} (of {r['asked']}: RLIMIT_NOFILE)")
        if r.get("skipped") or r.get("failure"):
            L.append(f"| {r['held']} | {r['server']} | {r.get('skipped') or r.get('failure')} "
                     f"| | | | | | | | | | {r['errors']} |")
            continue
        ratio = (r["hs_us_held"] / r["hs_us_empty"]
                 if r.get("hs_us_held") and r.get("hs_us_empty") else None)
        L.append(f"| {r['held']} | {r['server']} | {_f(r['kib_per_conn'], '{:.2f}')} | "
                 f"{r['rss_kib'] / 1024:.1f} ({r['base_rss_kib'] / 1024:.1f}) | "
                 f"{_f(r['open_rate'])} | {_f(r['hs_us_empty'])} | {_f(r['hs_us_held'])} | "
                 f"{_f(ratio, '{:.3f}')} | {_f(r['rate_empty'])} | {_f(r['rate_held'])} | "
                 f"{_f(r.get('util_empty'), '{:.2f}')} | {_f(r.get('util_held'), '{:.2f}')} | "
                 f"{r['errors']} |")
    L += ["", "RSS per connection: (RSS with them held - RSS before) / connections opened, "
          "summed over the server's processes; tcp-mode servers hold a backend connection each. "
          "Handshake µs: server CPU per full handshake at c=16 (bench/README.md, how it is "
          "measured), empty server then with the connections held; on a loaded 2-core machine trust it, "
          "not the rates: a rate is the client's or the machine's limit when the server's CPU "
          "was not busy (its busy fraction is shown)."]
    return L
