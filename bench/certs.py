"""Scenario "certs": how postern's cost grows with the number of
certificates it serves, next to HAProxy (crt-list) in the same run.

For each N (default 1, 1,000 and 10,000; quick: 1 and 200) both servers load
N certificates for N distinct names (one ECDSA P-256 leaf each, all under one
intermediate) and the bench reports, per server:
- start-up: from the spawn to the first completed handshake (from outside);
- RSS once started, and RSS per certificate over the N = 1 baseline;
- the server CPU per full handshake for a random name of the N (the load
  generator's --sni-count), and its ratio to N = 1;
postern also:
- `postern -t`: its wall time (every certificate loaded and checked, as at
  start-up, without serving) and how many lines it prints (a listener with
  thousands of certificates is summarized: a few lines whatever N);
- reload: SIGHUP to postern's READY=1 for the new generation (it speaks the
  sd_notify protocol to the bench's socket);
- a reload under handshake load: failed handshakes and p99 handshake latency
  against a run of the same length without a reload.

The certificates are made with Python's cryptography (a few seconds for
10,000) and cached under build/bench-certs, so a second run starts at once.

Run alone: python3 bench/certs.py [--counts 1,1000,10000] [--quick];
or as part of bench/run.py (--scenarios certs)."""

import argparse
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import procs  # noqa: E402
from report import cell  # noqa: E402
import scenarios  # noqa: E402

REPO = HERE.parent
CACHE = REPO / "build" / "bench-certs"
NAME_FMT = "n{}.certs.bench.test"
LOADGEN_FMT = "n%u.certs.bench.test"


# ----------------------------------------------------------- certificates --

def make_certs(n, cache=CACHE):
    """At least n leaves in cache (made once, reused): cache/leaf/{i}.chain.pem,
    {i}.key.pem and {i}.pem (key + chain, HAProxy's form), root.pem."""
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / "count"
    have = int(stamp.read_text()) if stamp.exists() else 0
    if have >= n:
        return cache
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    pem = serialization.Encoding.PEM

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "postern bench"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key_pem(k):
        return k.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    def ca(subject, key, issuer, issuer_key, pathlen):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=3650))
             .add_extension(x509.BasicConstraints(ca=True, path_length=pathlen), critical=True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                          False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                            critical=False))
        return b.sign(issuer_key, hashes.SHA256())

    if have == 0 or not (cache / "intermediate.key.pem").exists():
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = ca(name("bench root"), root_key, name("bench root"), root_key, 1)
        int_key = ec.generate_private_key(ec.SECP256R1())
        inter = ca(name("bench intermediate"), int_key, root.subject, root_key, 0)
        (cache / "root.pem").write_bytes(root.public_bytes(pem))
        (cache / "intermediate.pem").write_bytes(inter.public_bytes(pem))
        (cache / "intermediate.key.pem").write_bytes(key_pem(int_key))
        have = 0
    inter = x509.load_pem_x509_certificate((cache / "intermediate.pem").read_bytes())
    int_key = serialization.load_pem_private_key(
        (cache / "intermediate.key.pem").read_bytes(), None)
    inter_pem = inter.public_bytes(pem)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(int_key.public_key())
    leaves = cache / "leaf"
    leaves.mkdir(exist_ok=True)
    t0 = time.monotonic()
    for i in range(have, n):
        k = ec.generate_private_key(ec.SECP256R1())
        dns = NAME_FMT.format(i)
        cert = (x509.CertificateBuilder().subject_name(name(dns)).issuer_name(inter.subject)
                .public_key(k.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=90))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                             False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(aki, critical=False)
                .sign(int_key, hashes.SHA256()))
        chain = cert.public_bytes(pem) + inter_pem
        kp = key_pem(k)
        (leaves / f"{i}.chain.pem").write_bytes(chain)
        (leaves / f"{i}.key.pem").write_bytes(kp)
        (leaves / f"{i}.pem").write_bytes(kp + chain)
    stamp.write_text(str(n))
    print(f"certs: made {n - have} certificates in {time.monotonic() - t0:.1f} s", flush=True)
    return cache


# ---------------------------------------------------------------- servers --

def postern_config(path, port, backend_port, n, cache, log_level="warn"):
    leaves = cache / "leaf"
    lines = [f"""# postern for the bench's certs scenario: {n} certificates
workers: 1
log_level: {log_level}
shutdown_timeout: 1s
listeners:
  - name: certs
    listen: "127.0.0.1:{port}"
    mode: tcp
    tls:
      versions: [tls1.3]
      ca_file: {cache / 'root.pem'}
      certificates:
"""]
    for i in range(n):
        lines.append(f"        - {{cert: {leaves / f'{i}.chain.pem'}, key: {leaves / f'{i}.key.pem'}}}\n")
    lines.append(f"""    backend: "127.0.0.1:{backend_port}"
    max_connections: 20000
""")
    path.write_text("".join(lines))
    return path


def haproxy_config(path, port, backend_port, n, cache):
    crt_list = path.with_suffix(".crt-list")
    crt_list.write_text("".join(f"{cache / 'leaf' / f'{i}.pem'}\n" for i in range(n)))
    path.write_text(f"""# HAProxy for the bench's certs scenario: {n} certificates (crt-list)
global
    nbthread 1
    maxconn 5000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend certs
    bind 127.0.0.1:{port} ssl crt-list {crt_list} ssl-min-ver TLSv1.3 curves X25519
    default_backend origin
backend origin
    server origin 127.0.0.1:{backend_port}
""")
    return path


def handshake_once(port, sni, timeout=1.0):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return s.getpeercert(binary_form=True)


class Notify:
    """The service manager's side of sd_notify: a datagram socket postern
    reports READY=1 to, after start-up and after each reload (its STATUS
    names the generation), whatever its log level."""

    def __init__(self, workdir):
        self.path = str(Path(workdir) / f"notify-{os.getpid()}-{time.monotonic_ns()}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def wait_ready(self, generation, limit):
        deadline = time.monotonic() + limit
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no READY=1 for generation {generation} within {limit} s")
            self.sock.settimeout(left)
            msg = self.sock.recv(4096).decode(errors="replace")
            if "READY=1" in msg and f"generation {generation}" in msg:
                return

    def close(self):
        self.sock.close()
        os.unlink(self.path)


def start_timed(cmd, port, cpus, log, sni, limit=300.0, env=None):
    """Spawns cmd and returns (proc, seconds to the first handshake)."""
    t0 = time.monotonic()
    proc = procs.spawn(cmd, cpus, log, env=env)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited ({proc.returncode}); see {log}")
        try:
            handshake_once(port, sni)
            return proc, time.monotonic() - t0
        except OSError:
            if time.monotonic() - t0 > limit:
                procs.stop(proc)
                raise RuntimeError(f"{cmd[0]} did not serve within {limit} s")
            time.sleep(0.005)


def reload_timed(proc, notify, generation, limit=300.0):
    """SIGHUP, then the wall time until postern reports the new generation
    live (every worker switched)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    notify.wait_ready(generation, limit)
    return time.monotonic() - t0


class _Srv:
    """What scenarios.handshakes needs of a server."""

    def __init__(self, name, proc, port, n):
        self.name, self.proc, self.port = name, proc, port
        self.kind = "tcp"
        self.cert = type("C", (), {"sni": LOADGEN_FMT if n > 1 else NAME_FMT.format(0),
                                   "variant": "ecdsa"})()

    @property
    def pid(self):
        return self.proc.pid

    def cpu_seconds(self):
        return procs.tree_cpu_seconds(self.pid)

    def alive(self):
        return self.proc.poll() is None


def handshake_cost(env, srv, n, duration, warmup, log, on_measure=None):
    extra = ["--sni-count", str(n)] if n > 1 else []
    return scenarios.handshakes(env, srv, "full", 16, duration, warmup, log, extra_args=extra,
                                on_measure=on_measure)


def check_timed(env, cfg_path, log, limit=600.0):
    """`postern -t -c cfg_path` on the server CPU: (seconds, exit status,
    lines printed)."""
    t0 = time.monotonic()
    proc = procs.spawn([env.postern, "-t", "-c", cfg_path], env.server_cpus, log,
                       stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=limit)
    return time.monotonic() - t0, proc.returncode, len(out.splitlines())


def measure(env, server, n, cache, workdir, duration, warmup):
    """One server at one N: a result row."""
    port = procs.free_port()
    log = workdir / f"{server}-{n}.log"
    cfg_path = workdir / f"{server}-{n}.{'yaml' if server == 'postern' else 'cfg'}"
    if server == "postern":
        cmd = [env.postern, "-c", postern_config(cfg_path, port, env.backend_port, n, cache)]
    else:
        cmd = [env.haproxy, "-db", "-f", haproxy_config(cfg_path, port, env.backend_port, n, cache)]
    row = {"scenario": "certs", "server": server, "n": n}
    if server == "postern":
        row["check_s"], row["check_rc"], row["check_lines"] = check_timed(env, cfg_path, log)
    notify = Notify(workdir) if server == "postern" else None
    penv = dict(os.environ, NOTIFY_SOCKET=notify.path) if notify else None
    proc, row["startup_s"] = start_timed(cmd, port, env.server_cpus, log, NAME_FMT.format(0),
                                         env=penv)
    try:
        row["rss_kib"] = procs.tree_rss_kib(proc.pid)
        srv = _Srv(server, proc, port, n)
        hs = handshake_cost(env, srv, n, duration, warmup, workdir / "clients.log")
        row.update(cpu_us=hs.get("cpu_us"), hs_errors=hs.get("errors"), p99_ms=hs.get("p99_ms"))
        if server == "postern":
            row["reload_s"] = reload_timed(proc, notify, 2)
            # A reload in the middle of a handshake run: nothing may fail,
            # and the tail latency is compared with the run before.
            state = {}

            def hup():
                state["t"] = time.monotonic()
                proc.send_signal(signal.SIGHUP)

            timer = None

            def on_measure():
                nonlocal timer
                import threading
                timer = threading.Timer(duration / 3, hup)
                timer.start()

            under = handshake_cost(env, srv, n, duration, warmup, workdir / "clients.log",
                                   on_measure=on_measure)
            if timer is not None:
                timer.join()
            row.update(reload_load_errors=under.get("errors"), reload_load_p99_ms=under.get("p99_ms"),
                       reload_load_ok=under.get("ok"))
            row["rss_after_reloads_kib"] = procs.tree_rss_kib(proc.pid)
    finally:
        procs.stop(proc)
        if notify is not None:
            notify.close()
    return row


def run(env, counts, workdir, duration=2.0, warmup=0.5, servers_=("postern", "haproxy"),
        say=print):
    make_certs(max(counts))
    workdir = Path(workdir) / "certs"
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in counts:
        for server in servers_:
            if server == "haproxy" and env.haproxy is None:
                continue
            r = measure(env, server, n, CACHE, workdir, duration, warmup)
            rows.append(r)
            say(one_line(r))
    base = {r["server"]: r for r in rows if r["n"] == min(counts)}
    for r in rows:
        b = base.get(r["server"])
        if b is None or r["n"] == b["n"]:
            continue
        r["rss_per_cert_kib"] = (r["rss_kib"] - b["rss_kib"]) / (r["n"] - b["n"])
        if r.get("cpu_us") and b.get("cpu_us"):
            r["cpu_ratio_vs_1"] = r["cpu_us"] / b["cpu_us"]
    return rows




def one_line(r):
    s = (f"certs n={r['n']} {r['server']}: start {cell(r['startup_s'], '{:.2f}')} s, "
         f"RSS {r['rss_kib'] / 1024:.1f} MiB, {cell(r.get('cpu_us'), '{:.0f}')} us/handshake")
    if "check_s" in r:
        s += f", -t {cell(r['check_s'], '{:.2f}')} s ({r['check_lines']} lines, rc {r['check_rc']})"
    if "reload_s" in r:
        s += (f", reload {cell(r['reload_s'], '{:.2f}')} s, "
              f"under load: {r.get('reload_load_errors')} errors, p99 "
              f"{cell(r.get('reload_load_p99_ms'), '{:.2f}')} ms vs {cell(r.get('p99_ms'), '{:.2f}')} ms")
    return s


def markdown(rows):
    if not rows:
        return []
    L = ["### Many certificates (scenario `certs`)", "",
         "Start-up: spawn to the first completed handshake. Reload: SIGHUP to the new generation "
         "live (postern's READY=1 to the service manager). Handshake: "
         "server CPU per full ECDSA handshake for a random name of the N, c=16, and its ratio "
         "to N = 1. Under load: a reload sent a third into a handshake run. `-t`: "
         "`postern -t` wall time, and the lines it printed.", "",
         "| N | server | start-up s | reload s | `-t` s (lines) | RSS MiB | RSS/cert KiB "
         "| us/handshake | vs N=1 | reload under load: errors, p99 ms (without) |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reload = f"{r['reload_s']:.2f}" if "reload_s" in r else "-"
        load = (f"{r.get('reload_load_errors')}, {cell(r.get('reload_load_p99_ms'), '{:.2f}')} "
                f"({cell(r.get('p99_ms'), '{:.2f}')})" if "reload_s" in r else "-")
        check = f"{r['check_s']:.2f} ({r['check_lines']})" if "check_s" in r else "-"
        L.append(f"| {r['n']:,} | {r['server']} | {r['startup_s']:.2f} | {reload} | {check} | "
                 f"{r['rss_kib'] / 1024:.1f} | {cell(r.get('rss_per_cert_kib'), '{:.2f}')} | "
                 f"{cell(r.get('cpu_us'), '{:.0f}')} | {cell(r.get('cpu_ratio_vs_1'), '{:.3f}')} | "
                 f"{load} |")
    L.append("")
    return L


def main(argv=None):
    import run as runmod
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", help="numbers of certificates (default 1,1000,10000)")
    ap.add_argument("--quick", action="store_true", help="1 and 200 certificates, 1 s runs")
    ap.add_argument("--duration", type=float)
    ap.add_argument("--no-haproxy", action="store_true")
    ap.add_argument("--postern", help="the postern binary (default build/postern)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    counts = [int(c) for c in (a.counts or ("1,200" if a.quick else "1,1000,10000")).split(",")]
    duration = a.duration or (1.0 if a.quick else 3.0)
    workdir = Path(tempfile.mkdtemp(prefix="postern-bench-certs-"))
    env = runmod.Env(runmod.parse_args(["--scenarios", "full"] +
                                       (["--postern", a.postern] if a.postern else [])), workdir)
    procs.raise_nofile()
    os.sched_setaffinity(0, env.client_cpus)
    backend = runmod.start_backend(env, workdir)
    try:
        rows = run(env, counts, workdir, duration=duration,
                   servers_=("postern",) if a.no_haproxy else ("postern", "haproxy"))
    finally:
        procs.stop(backend)
    print("\n".join(markdown(rows)))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
