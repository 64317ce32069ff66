"""Backend TLS (issue 13): a backend set with tls: re-encrypts to its servers.
Real TLS servers with the test PKI: `openssl s_server -www` (which prints
whether each handshake was New or Reused in its page) and Debian's nginx (its
access log says which TLS connection served each request, $connection, and
whether it resumed, $ssl_session_reused). Verified OK in http and tcp mode;
an expired certificate, a wrong name and an unknown CA each give 502 with the
cause in postern's log; sessions resume to each server; kept-alive TLS
connections are pooled (one handshake for several requests); verify: false
warns at load and works."""

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from clients import HOST, client_context, config, connect_tls, free_port, listener, recv_until_close
from conftest import run_postern

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _wait_port(port, proc, what, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port}")


class SServer:
    """openssl s_server -www on a free port serving leaf `name` of the PKI
    (with the intermediate). Its page says "New, TLSv1.3, ..." or "Reused,
    ..." for the handshake that served it."""

    def __init__(self, pki, name, tmp, extra=()):
        self.port = free_port()
        self.log = open(tmp / f"s_server-{name}-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"{HOST}:{self.port}", "-cert",
             str(pki.cert(name)), "-key", str(pki.key(name)), "-cert_chain",
             str(pki.intermediate), "-www", "-quiet", *extra],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "openssl s_server")

    @property
    def addr(self):
        return f"{HOST}:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.log.close()


class Nginx:
    """Debian's nginx serving `name` over TLS with HTTP/1.1 keep-alive; each
    request's line in the access log: connection serial, requests on it,
    session reused ("r" or "."), protocol, SNI."""

    def __init__(self, pki, name, tmp, proxy_protocol=False):
        self.port = free_port()
        self.dir = tmp / f"nginx-{self.port}"
        self.dir.mkdir()
        (self.dir / "www").mkdir()
        # 3 MB of bytes that repeat only every 251: a body whose corruption shows.
        self.big = bytes(i % 251 for i in range(3 * 1024 * 1024))
        (self.dir / "www" / "big").write_bytes(self.big)
        pp = " proxy_protocol" if proxy_protocol else ""
        self.access = self.dir / "access.log"
        conf = self.dir / "nginx.conf"
        d = self.dir
        conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  log_format tls '$connection $connection_requests $ssl_session_reused $ssl_protocol $ssl_server_name $request_uri $proxy_protocol_addr';
  access_log {d}/access.log tls;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 1000;
  keepalive_timeout 60s;
  server {{
    listen {HOST}:{self.port} ssl{pp};
    ssl_certificate {pki.chain(name)};
    ssl_certificate_key {pki.key(name)};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ return 200 "nginx says hello\\n"; }}
    location /big {{ root {d}/www; }}
  }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(d), "-e",
                                      str(d / "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, "nginx")

    @property
    def addr(self):
        return f"{HOST}:{self.port}"

    def lines(self, path_prefix="/t", n=1):
        """[(connection, requests, reused, protocol, sni, uri, proxy addr)] of the
        requests under path_prefix (the readiness probe made none), once
        there are n of them (nginx logs a request after answering it)."""
        deadline = time.monotonic() + 5
        out = []
        while time.monotonic() < deadline:
            text = self.access.read_text() if self.access.exists() else ""
            out = [tuple(line.split(" ")) for line in text.splitlines() if line]
            out = [x for x in out if len(x) == 7 and x[5].startswith(path_prefix)]
            if len(out) >= n:
                break
            time.sleep(0.05)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def servers(tmp_path):
    made = []

    def make(kind, *args, **kw):
        s = kind(*args, tmp=tmp_path, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def http_conf(pki, port, backends, mode="http", **top):
    extra = {"alpn": ["http/1.1"]} if mode == "http" else {}
    item = listener("web", port, "app", pki, ["example.test"], mode=mode, **extra)
    return config([item], backends=backends, **top)


def tls_set(server, **tls):
    return {"app": {"servers": [{"address": server.addr}], "retries": 0, "tls": tls}}


def get(pki, port, path="/"):
    """One GET on a new client connection; returns (status, body text)."""
    s = connect_tls(port, "example.test", client_context(pki))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode())
    data, _ = recv_until_close(s)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3})", head)
    assert m, f"no status line in {data[:200]!r}"
    return int(m.group(1)), body.decode(errors="replace")


def wait_log(p, pattern, seconds=5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if re.search(pattern, p.stderr()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in postern's log" + p.context())


# ------------------------------------------------------- verified, OK --


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_http_mode_verified_and_resumed(pki, start_postern, servers, version):
    extra = ["-tls1_2"] if version == "TLSv1.2" else []
    srv = servers(SServer, pki, "localhost", extra=extra)
    port = free_port()
    # One worker: sessions are kept per server per worker.
    p = start_postern(http_conf(pki, port, tls_set(srv, ca_file=str(pki.root),
                                                   server_name="localhost"), workers=1), [port])
    seen = []
    for _ in range(3):
        status, body = get(pki, port)
        assert status == 200, body + p.context()
        m = re.search(r"(New|Reused), (TLSv1\.[23])", body)
        assert m, body
        seen.append(m.groups())
    # s_server -www closes after each answer: three TLS connections, the
    # first a full handshake, the next two resumed from its ticket.
    assert seen[0] == ("New", version), seen
    assert seen[1][0] == "Reused" and seen[2][0] == "Reused", seen


def test_tcp_mode_verified(pki, start_postern, servers):
    srv = servers(SServer, pki, "localhost")
    port = free_port()
    p = start_postern(http_conf(pki, port, tls_set(srv, ca_file=str(pki.root),
                                                   server_name="localhost"), mode="tcp",
                                workers=1), [port])
    for want in ("New", "Reused"):
        s = connect_tls(port, "example.test", client_context(pki))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data, _ = recv_until_close(s)
        s.close()
        assert data.startswith(b"HTTP/1.0 200 ok"), data[:300] + p.context().encode()
        assert f"{want}, TLSv1.3".encode() in data, data[:600]


def test_default_server_name_is_the_host(pki, start_postern, servers, tmp_path):
    """Without server_name the address's host is the name checked: a server
    written as localhost:port is verified against "localhost"."""
    srv = servers(SServer, pki, "localhost")
    port = free_port()
    backends = {"app": {"servers": [{"address": f"localhost:{srv.port}"}], "retries": 0,
                        "tls": {"ca_file": str(pki.root)}}}
    p = start_postern(http_conf(pki, port, backends), [port])
    status, body = get(pki, port)
    assert status == 200 and "TLSv1.3" in body, body + p.context()


# --------------------------------------------- verification failures --


@pytest.mark.parametrize("leaf,name,cause", [
    ("expired", "expired.example.test", r"certificate expired"),
    ("example.test", "localhost", r"name mismatch"),
    ("selfsigned", "selfsigned.example.test", r"unknown issuer|self-signed"),
])
def test_verification_failure_is_502_with_cause(pki, start_postern, servers, leaf, name, cause):
    srv = servers(SServer, pki, leaf)
    port = free_port()
    backends = tls_set(srv, ca_file=str(pki.root), server_name=name)
    backends["app"]["passive"] = {"failures": 0}
    p = start_postern(http_conf(pki, port, backends), [port])
    status, body = get(pki, port)
    assert status == 502, body + p.context()
    wait_log(p, rf"backend server {re.escape(srv.addr)}: TLS handshake failed "
                rf"\(server name {re.escape(name)}\): .*({cause})")
    # Never a plaintext fallback: the server saw no HTTP request.
    log = open(srv.log.name, "rb").read()
    assert b"GET /" not in log


def test_verification_failure_retries_another_server(pki, start_postern, servers):
    """A handshake that fails verification is a connect failure: the
    balancer goes on to the next server within retries."""
    bad = servers(SServer, pki, "expired")
    good = servers(SServer, pki, "localhost")
    port = free_port()
    backends = {"app": {"servers": [{"address": bad.addr}, {"address": good.addr}],
                        "retries": 1, "tls": {"ca_file": str(pki.root),
                                              "server_name": "localhost"}}}
    p = start_postern(http_conf(pki, port, backends), [port])
    for _ in range(4):
        status, body = get(pki, port)
        assert status == 200, body + p.context()


def test_verify_false_warns_and_works(pki, start_postern, servers):
    srv = servers(SServer, pki, "selfsigned")
    port = free_port()
    p = start_postern(http_conf(pki, port, tls_set(srv, verify=False)), [port])
    assert re.search(r"backends\.app\.tls: verify: false: the servers' certificates are NOT "
                     r"checked", p.stderr()), p.context()
    status, body = get(pki, port)
    assert status == 200 and "TLSv1.3" in body, body + p.context()


def test_http_health_check_speaks_tls(pki, start_postern, servers):
    """An http check of a tls set is a GET over TLS, verified like the
    traffic: the server with an expired certificate goes down with the
    cause, the good one stays up and serves everything."""
    good = servers(SServer, pki, "localhost")
    bad = servers(SServer, pki, "expired")
    port = free_port()
    backends = {"app": {"servers": [{"address": good.addr}, {"address": bad.addr}],
                        "retries": 0, "passive": {"failures": 0},
                        "health": {"check": "http", "path": "/healthz", "interval": "200ms",
                                   "timeout": "150ms", "fall": 1, "rise": 1},
                        "tls": {"ca_file": str(pki.root), "server_name": "localhost"}}}
    p = start_postern(http_conf(pki, port, backends), [port])
    wait_log(p, rf"backend app: server {re.escape(bad.addr)} is down: TLS \(server name "
                rf"localhost\): certificate expired")
    time.sleep(0.5)
    assert not re.search(rf"server {re.escape(good.addr)} is down", p.stderr()), p.context()
    for _ in range(4):
        status, body = get(pki, port)
        assert status == 200 and "TLSv1.3" in body, body + p.context()
    # Never a plaintext request to the server that failed verification.
    assert b"GET /healthz" not in open(bad.log.name, "rb").read()


# ----------------------------------------------- nginx: pool, resume --


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed (.ci/deps.sh)")
def test_nginx_pooled_tls_connections_reused(pki, start_postern, servers):
    ng = servers(Nginx, pki, "localhost")
    port = free_port()
    p = start_postern(http_conf(pki, port, tls_set(ng, ca_file=str(pki.root),
                                                   server_name="localhost"),
                                workers=1), [port])
    for i in range(5):
        status, body = get(pki, port, f"/t{i}")
        assert status == 200 and body == "nginx says hello\n", body + p.context()
    lines = ng.lines(n=5)
    assert len(lines) == 5, lines
    # One TLS connection (one handshake) carried every request, in order.
    assert len({x[0] for x in lines}) == 1, lines
    assert [int(x[1]) for x in lines] == [1, 2, 3, 4, 5], lines
    assert all(x[4] == "localhost" for x in lines), lines  # SNI sent


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed (.ci/deps.sh)")
def test_nginx_session_resumed_on_new_connection(pki, start_postern, servers):
    """backend_pool.max_idle 0: every request on a TLS connection of its own;
    the first is a full handshake, the others resume its session."""
    ng = servers(Nginx, pki, "localhost")
    port = free_port()
    item = listener("web", port, "app", pki, ["example.test"], mode="http", alpn=["http/1.1"],
                    backend_pool={"max_idle": 0})
    backends = tls_set(ng, ca_file=str(pki.root), server_name="localhost")
    p = start_postern(config([item], backends=backends, workers=1), [port])
    for i in range(3):
        status, body = get(pki, port, f"/t{i}")
        assert status == 200 and body == "nginx says hello\n", body + p.context()
    lines = ng.lines(n=3)
    assert len(lines) == 3, lines
    assert len({x[0] for x in lines}) == 3, lines  # three TLS connections
    assert [x[2] for x in lines] == [".", "r", "r"], lines
    assert all(x[3] == "TLSv1.3" for x in lines), lines


def test_config_errors_name_the_place(pki, postern_bin, tmp_path):
    port = free_port()
    cases = [
        ({"ca_file": str(tmp_path / "missing.pem")}, r"backends\.app\.tls\.ca_file"),
        ({"server_name": "bad name!"}, r"invalid server_name"),
        ({"verify": "maybe"}, r"verify"),
        ({"sni": "x"}, r"sni"),
    ]
    for tls, want in cases:
        backends = {"app": {"servers": [{"address": f"{HOST}:1"}], "tls": tls}}
        path = tmp_path / "bad.yaml"
        path.write_text(http_conf(pki, port, backends))
        r = run_postern(postern_bin, "-t", "-c", path)
        assert r.returncode == 1, r.stdout + r.stderr
        out = r.stdout + r.stderr
        assert re.search(rf"{re.escape(str(path))}:\d+:\d+: .*{want}", out), out
    # A ca_file without a single certificate is refused when the generation
    # is built, at the tls: key.
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    backends = {"app": {"servers": [{"address": f"{HOST}:1"}], "tls": {"ca_file": str(junk)}}}
    path.write_text(http_conf(pki, port, backends))
    r = run_postern(postern_bin, "-t", "-c", path)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and re.search(
        rf"{re.escape(str(path))}:\d+:\d+: backends\.app\.tls: tls\.ca_file .*no CA certificate",
        out), out


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed (.ci/deps.sh)")
def test_nginx_big_bodies_with_a_slow_client(pki, start_postern, servers):
    """3 MB responses read slowly: the backend connection is paused and
    resumed many times (records held while paused, delivered after), and
    the bytes arrive whole; then the same pooled TLS connection serves the
    next request."""
    ng = servers(Nginx, pki, "localhost")
    port = free_port()
    p = start_postern(http_conf(pki, port, tls_set(ng, ca_file=str(pki.root),
                                                   server_name="localhost"), workers=1), [port])
    for i in range(2):
        s = connect_tls(port, "example.test", client_context(pki))
        s.sendall(b"GET /big HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        s.settimeout(20)
        data = b""
        while True:
            d = s.recv(16384)
            if not d:
                break
            data += d
            if len(data) < 1024 * 1024:
                time.sleep(0.002)  # slow at first: postern's output fills, the backend waits
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head + p.context().encode()
        assert body == ng.big, (len(body), len(ng.big))
    status, body = get(pki, port, "/t-after")
    assert status == 200, body + p.context()
    lines = ng.lines("/", n=3)
    assert len({x[0] for x in lines}) == 1, lines  # one TLS connection for all


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed (.ci/deps.sh)")
def test_nginx_proxy_protocol_then_tls(pki, start_postern, servers):
    """proxy_protocol with tls: the PROXY header goes in the clear before
    the ClientHello, as nginx's `listen ... ssl proxy_protocol` expects."""
    ng = servers(Nginx, pki, "localhost", proxy_protocol=True)
    port = free_port()
    backends = tls_set(ng, ca_file=str(pki.root), server_name="localhost")
    backends["app"]["proxy_protocol"] = "v1"
    p = start_postern(http_conf(pki, port, backends), [port])
    for i in range(2):
        status, body = get(pki, port, f"/t{i}")
        assert status == 200 and body == "nginx says hello\n", body + p.context()
    lines = ng.lines(n=2)
    assert len(lines) == 2 and all(x[6] == "127.0.0.1" for x in lines), lines


class HalfCloseServer:
    """A TLS server (Python's ssl, leaf localhost) that reads until the
    client's close_notify, then answers how many bytes and how the client
    ended, and closes with its own close_notify: TLS half-close both ways
    (RFC 8446 6.1)."""

    def __init__(self, pki, tmp):
        import ssl as _ssl
        import threading
        self.ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(pki.chain("localhost")), str(pki.key("localhost")))
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.ends = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return f"{HOST}:{self.port}"

    def _serve(self):
        import ssl as _ssl
        while True:
            try:
                raw, _ = self.lsock.accept()
            except OSError:
                return
            try:
                s = self.ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
                s.settimeout(10)
                n, how = 0, "?"
                try:
                    while True:
                        d = s.recv(65536)
                        if not d:
                            how = "close_notify"
                            break
                        n += len(d)
                except _ssl.SSLEOFError:
                    how = "eof"
                self.ends.append(how)
                s.sendall(f"got {n} bytes, then {how}\n".encode())
                s.unwrap()
            except (OSError, _ssl.SSLError) as e:
                self.ends.append(f"error {e}")
            finally:
                raw.close()

    def stop(self):
        self.lsock.close()


def test_tcp_mode_half_close_sends_close_notify(pki, start_postern, servers):
    """The client's close_notify becomes postern's close_notify to the
    server (pst_bconn_shutdown), whose answer still comes back; then the
    server's close_notify ends the client's connection cleanly."""
    from clients import MemTls
    srv = servers(HalfCloseServer, pki)
    port = free_port()
    p = start_postern(http_conf(pki, port, tls_set(srv, ca_file=str(pki.root),
                                                   server_name="localhost"), mode="tcp"), [port])
    c = MemTls(port, "example.test", client_context(pki))
    c.handshake()
    c.send(b"x" * 5000)
    c.send_close_notify()
    data, how = c.read_until_close()
    c.close()
    assert data == b"got 5000 bytes, then close_notify\n", data + p.context().encode()
    assert how == "close_notify", how
    assert srv.ends == ["close_notify"], srv.ends


def _reload(p):
    import signal
    mark = len(p.stderr())
    p.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload ok" not in p.stderr()[mark:]:
        assert time.monotonic() < deadline, p.context()
        time.sleep(0.05)


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed (.ci/deps.sh)")
def test_nginx_reload(pki, start_postern, servers, tmp_path):
    """A reload builds a new context and frees the old one with its
    generation: a pooled connection made under the old one lives on (its
    WOLFSSL holds a reference) and is reused when the tls: settings are the
    same; other settings (another ca_file) never get it. Clean exit under
    ASan proves the references."""
    ng = servers(Nginx, pki, "localhost")
    port = free_port()
    p = start_postern(http_conf(pki, port, tls_set(ng, ca_file=str(pki.root),
                                                   server_name="localhost"), workers=1), [port])
    status, body = get(pki, port, "/t0")
    assert status == 200, body + p.context()
    _reload(p)
    status, body = get(pki, port, "/t1")
    assert status == 200, body + p.context()
    ca2 = tmp_path / "ca2.pem"
    ca2.write_text(pki.root.read_text())
    p.config_path.write_text(p.config_path.read_text().replace(str(pki.root) + "\n",
                                                               str(ca2) + "\n"))
    assert str(ca2) in p.config_path.read_text()
    _reload(p)
    status, body = get(pki, port, "/t2")
    assert status == 200, body + p.context()
    lines = ng.lines(n=3)
    conns = [x[0] for x in lines]
    assert conns[0] == conns[1] != conns[2], lines
    # Sessions are kept per pool: one verified under other settings is not
    # offered (a full handshake, verified against the new ca_file).
    assert lines[2][2] == ".", lines


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed (.ci/deps.sh)")
def test_nginx_through_http2(pki, start_postern, servers):
    """HTTP/2 clients reach a tls set the same way (each stream an HTTP/1.1
    exchange on a pooled TLS connection)."""
    from clients import curl
    ng = servers(Nginx, pki, "localhost")
    port = free_port()
    item = listener("web", port, "app", pki, ["example.test"], mode="http",
                    alpn=["h2", "http/1.1"])
    backends = tls_set(ng, ca_file=str(pki.root), server_name="localhost")
    p = start_postern(config([item], backends=backends, workers=1), [port])
    urls = [f"https://example.test:{port}/t{i}" for i in range(4)]
    rc, out, err = curl(urls[0], *urls[1:], "--http2", "--cacert", str(pki.root), "--resolve",
                        f"example.test:{port}:{HOST}", "-w", "%{http_version} %{http_code}\\n")
    assert rc == 0, err + p.context()
    assert out.count("nginx says hello") == 4 and out.count("2 200") == 4, out
    lines = ng.lines(n=4)
    assert len({x[0] for x in lines}) == 1, lines


def test_default_ca_is_the_system_store(pki, start_postern, servers):
    """Without ca_file, tls: verifies against the system's store, which does
    not hold the test root: the server is refused as an unknown issuer (and
    the store loads: the generation builds)."""
    srv = servers(SServer, pki, "localhost")
    port = free_port()
    backends = {"app": {"servers": [{"address": f"localhost:{srv.port}"}], "retries": 0,
                        "passive": {"failures": 0}, "tls": {"verify": True}}}
    p = start_postern(http_conf(pki, port, backends), [port])
    status, body = get(pki, port)
    assert status == 502, body + p.context()
    wait_log(p, r"TLS handshake failed \(server name localhost\): unknown issuer")
