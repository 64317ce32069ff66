"""The TLS terminators the bench compares, each started with equal settings:
TLS 1.3 only, the same certificate and chain, X25519, AES-128-GCM preferred,
ALPN h2 and http/1.1, one worker (process or thread), logging off or at
warnings, pinned to the server CPU, in front of the same backend.

A server kind is "tcp" (forwards the decrypted byte stream: postern-tcp,
hitch, haproxy-tcp) or "http" (terminates HTTP/1.1 and h2 and forwards each
request to the backend as HTTP/1.1 over kept-alive connections:
postern-http, haproxy-http). Figures are only compared between servers of
one kind, and in each kind with the postern server of that kind (a name
starting with "postern").

Every server can also be started for the 0-RTT scenario (early=True): postern
with `early_data: accept` (tcp mode: `tcp_early_data: forward`, so that the
early request reaches the backend at once), HAProxy with `allow-0rtt`.
hitch cannot accept early data (supports_early = False). The other scenarios
run the servers with early data off, their default."""

import os
import pwd
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import procs

TLS13_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


class Cert:
    """One certificate variant of the bench PKI: leaf + intermediate, and
    the same as one PEM with the key (what hitch and HAProxy read)."""

    def __init__(self, pki_dir, name, variant):
        d = Path(pki_dir)
        stem = name if variant == "ecdsa" else f"{name}-rsa"
        self.variant = variant
        self.sni = name
        self.chain = d / f"{stem}.chain.pem"
        self.key = d / f"{stem}.key.pem"
        self.root = d / "root.pem"
        self.combined = d / f"{stem}.combined.pem"
        if not self.combined.exists():
            self.combined.write_bytes(self.key.read_bytes() + self.chain.read_bytes())
            os.chmod(self.combined, 0o600)


class Server:
    """A running server. Subclasses write their configuration in start()."""

    name = "?"
    kind = "tcp"
    binary = None  # the attribute of run.Env that holds the executable
    supports_early = True

    def __init__(self, env, cert, workdir, early=False):
        self.env = env  # run.Env: binaries, CPUs, backend port
        self.cert = cert
        self.early = early
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = procs.free_port()
        self.stem = f"{self.name}-{cert.variant}" + ("-early" if early else "")
        self.log = self.workdir / f"{self.stem}.log"
        self.proc = None

    def command(self):
        raise NotImplementedError

    def start(self):
        self.proc = procs.spawn(self.command(), self.env.server_cpus, self.log)
        procs.wait_listening(self.port, self.proc, 15, self.name)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self):
        return procs.tree_cpu_seconds(self.pid)

    def rss_kib(self):
        return procs.tree_rss_kib(self.pid)

    def fds(self):
        return procs.tree_fds(self.pid)

    def stop(self):
        if self.proc is not None:
            procs.stop(self.proc)

    def log_problems(self):
        """Lines of the server's log that report errors or sanitizer findings."""
        marks = ("ERROR", "AddressSanitizer", "LeakSanitizer", "runtime error:", "[ALERT]")
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if any(m in line for m in marks)]


class Scraper:
    """What Prometheus does to postern's admin endpoint: GET /metrics every
    second, on a thread of the driver (which runs on the client CPUs), for
    as long as the server runs. counts gets "ok" and "failed" added."""

    def __init__(self, port, counts, interval=1.0):
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.counts = counts
        self.interval = interval
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                self.counts["ok"] += 1
            except OSError:
                self.counts["failed"] += 1

    def stop(self):
        self.done.set()
        self.thread.join(10)


class Postern(Server):
    """postern in tcp mode."""
    name = "postern-tcp"
    binary = "postern"
    mode = "tcp"

    def early_keys(self):
        if not self.early:
            return ""
        keys = "      early_data: accept\n"
        if self.mode == "tcp":
            # The early request goes to the backend before the handshake
            # completes (docs/config.md, tcp_early_data).
            keys += "      tcp_early_data: forward\n"
        return keys

    def admin_keys(self):
        """With --admin, the admin endpoint on a port of its own."""
        if not self.env.admin:
            return ""
        self.admin_port = procs.free_port()
        return f'admin:\n  listen: "127.0.0.1:{self.admin_port}"\n'

    def start(self):
        super().start()
        if self.env.admin:
            self._scraper = Scraper(self.admin_port, self.env.scrapes)
        return self

    def stop(self):
        scraper = getattr(self, "_scraper", None)
        if scraper is not None:
            scraper.stop()
            self._scraper = None
        super().stop()

    def cert_items(self):
        """The certificates: the run's, and with --postern-variant dual-cert
        the other key type's for the same name too (issue 15: the cost of
        choosing between them per handshake)."""
        certs = [self.cert]
        if self.env.variant == "dual-cert":
            other = "rsa" if self.cert.variant == "ecdsa" else "ecdsa"
            certs.append(Cert(self.cert.root.parent, self.cert.sni, other))
        return "".join(f"        - cert: {c.chain}\n          key: {c.key}\n" for c in certs)

    def backend_keys(self):
        """(top-level keys, the listener's backend): one address, or with
        --postern-variant servers3 a set of three servers, balanced, with
        http health checks every second, or with proxy-v2 one server that
        gets a PROXY v2 header (issue 13: what each costs)."""
        if self.env.variant == "proxy-v2":
            # issue 13: a PROXY v2 header (with its TLVs) on every server
            # connection; the bench backend skips it.
            return (f'backends:\n  app:\n    servers: ["127.0.0.1:{self.env.backend_port}"]\n'
                    "    proxy_protocol: v2\n", "app")
        if self.env.variant != "servers3":
            return "", f'"127.0.0.1:{self.env.backend_port}"'
        servers = "".join(f'      - address: "127.0.0.1:{p}"\n' for p in self.env.backend_ports)
        return (f"backends:\n  app:\n    servers:\n{servers}"
                "    health: {check: http, path: /, interval: 1s, timeout: 500ms}\n", "app")

    def command(self):
        cfg = self.workdir / f"{self.stem}.yaml"
        top, backend = self.backend_keys()
        # http mode: the default backend pool (max_idle 128) holds the
        # connections of 16 h2 connections x 8 streams.
        cfg.write_text(f"""# postern for the bench: {self.mode} mode, one worker, warnings only
workers: 1
log_level: warn
shutdown_timeout: 1s
{self.admin_keys()}{top}listeners:
  - name: bench
    listen: "127.0.0.1:{self.port}"
    mode: {self.mode}
    alpn: [h2, http/1.1]
    tls:
      versions: [tls1.3]
      certificates:
{self.cert_items()}      ca_file: {self.cert.root}
{self.early_keys()}    backend: {backend}
    timeouts: {{handshake: 10s, idle: 10m, backend_connect: 5s}}
    max_connections: 20000
""")
        return [self.env.postern, "-c", cfg]


class PosternHttp(Postern):
    """postern in http mode: HTTP/1.1 and h2 in front, HTTP/1.1 to the
    backend over its keep-alive pool; X-Forwarded-For, -Proto and -Host
    added (the default, `forwarded: xff`)."""
    name = "postern-http"
    kind = "http"
    mode = "http"


class Hitch(Server):
    name = "hitch"
    binary = "hitch"
    supports_early = False  # hitch has no early data setting

    def command(self):
        ocsp = self.workdir / "hitch-ocsp"
        ocsp.mkdir(exist_ok=True)
        os.chmod(ocsp, 0o777)
        # hitch refuses to run its workers as root.
        user = ""
        if os.geteuid() == 0:
            for u in ("_hitch", "hitch", "nobody"):
                try:
                    pwd.getpwnam(u)
                except KeyError:
                    continue
                user = f'user = "{u}"\n'
                break
        cfg = self.workdir / f"{self.stem}.conf"
        cfg.write_text(f"""# hitch for the bench: one worker, TLS 1.3 only, X25519
frontend = "[127.0.0.1]:{self.port}"
backend = "[127.0.0.1]:{self.env.backend_port}"
pem-file = "{self.cert.combined}"
workers = 1
backlog = 1024
daemon = off
tls-protos = TLSv1.3
ciphersuites = "{TLS13_SUITES}"
prefer-server-ciphers = on
ecdh-curve = "X25519"
alpn-protos = "h2, http/1.1"
log-level = 1
ocsp-dir = "{ocsp}"
{user}""")
        return [self.env.hitch, f"--config={cfg}"]


class Haproxy(Server):
    """HAProxy in mode tcp."""
    name = "haproxy-tcp"
    binary = "haproxy"
    mode = "tcp"

    def mode_lines(self):
        """Frontend and backend lines of this mode."""
        return "", ""

    def command(self):
        cfg = self.workdir / f"{self.stem}.cfg"
        # maxconn: 2 descriptors per proxied connection must fit under the
        # descriptor limit (HAProxy refuses to start otherwise).
        maxconn = max(1000, min(20000, (procs.raise_nofile() - 100) // 2 - 10))
        early = " allow-0rtt" if self.early else ""
        front, back = self.mode_lines()
        cfg.write_text(f"""# HAProxy for the bench: mode {self.mode}, one thread, TLS 1.3 only, X25519
global
    nbthread 1
    maxconn {maxconn}
defaults
    mode {self.mode}
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    maxconn {maxconn}
frontend bench
    bind 127.0.0.1:{self.port} ssl crt {self.cert.combined} ssl-min-ver TLSv1.3 curves X25519 ciphersuites {TLS13_SUITES} alpn h2,http/1.1{early}
{front}    default_backend origin
backend origin
{back}    server origin 127.0.0.1:{self.env.backend_port}
""")
        return [self.env.haproxy, "-db", "-f", cfg]


class HaproxyHttp(Haproxy):
    """HAProxy in mode http, doing what postern's http mode does: the
    X-Forwarded-For, -Proto and -Host headers, and every request to the
    backend over reused keep-alive connections (http-reuse always)."""
    name = "haproxy-http"
    kind = "http"
    mode = "http"

    def mode_lines(self):
        front = ("    option forwardfor\n"
                 "    http-request set-header X-Forwarded-Proto https\n"
                 "    http-request set-header X-Forwarded-Host %[req.hdr(host)]\n")
        back = "    http-reuse always\n"
        return front, back


class H2o(Server):
    """h2o (Debian's package, 2.2 on OpenSSL 3) as a TLS-terminating reverse
    proxy in http mode: HTTP/1.1 and h2 in front, each request to the same
    backend over its kept-alive connections (proxy.reverse.url), one thread.
    It sends X-Forwarded-For and -Proto and a Via header by default (what
    postern's `forwarded: xff` does but Via). Used by the keep-alive
    scenario (bench/keepalive.py); left out when h2o is not installed."""
    name = "h2o"
    kind = "http"
    binary = "h2o"
    supports_early = False

    def command(self):
        cfg = self.workdir / f"{self.stem}.conf"
        user = ""
        if os.geteuid() == 0:
            for u in ("nobody", "www-data"):
                try:
                    pwd.getpwnam(u)
                except KeyError:
                    continue
                user = f"user: {u}\n"
                break
        # max-connections: h2o's default (1024) would refuse the 2,000
        # connections of the h1 run; 100 concurrent streams per h2
        # connection (its default) covers the bench's 20.
        cfg.write_text(f"""# h2o for the bench: one thread, TLS 1.3 only, reverse proxy to the backend
num-threads: 1
max-connections: 20000
{user}listen:
  host: 127.0.0.1
  port: {self.port}
  ssl:
    certificate-file: {self.cert.chain}
    key-file: {self.cert.key}
    minimum-version: TLSv1.3
    cipher-preference: server
    ocsp-update-interval: 0
hosts:
  default:
    paths:
      "/":
        proxy.reverse.url: http://127.0.0.1:{self.env.backend_port}/
        proxy.timeout.keepalive: 60000
""")
        return [self.env.h2o, "-c", cfg]


# Every server the bench knows, by name: postern of each kind first, then
# its peers.
SERVERS = {"postern-tcp": Postern, "hitch": Hitch, "haproxy-tcp": Haproxy,
           "postern-http": PosternHttp, "haproxy-http": HaproxyHttp}
KINDS = ("tcp", "http")
PEERS = ("hitch", "haproxy-tcp", "haproxy-http")
# Names accepted by --peers for several servers.
PEER_ALIASES = {"haproxy": ("haproxy-tcp", "haproxy-http")}


def postern_of(kind):
    """The name of postern's server of this kind."""
    return f"postern-{kind}"


def peer_binary(name):
    """Path of a peer's executable, or None when it is not installed."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK)
                                  else None)
    return path


def version_of(cmd):
    """First line of a --version style command, or "" when it fails."""
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10,
                             text=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""
