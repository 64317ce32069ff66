"""Backend sets (issue 13): several servers per backend, balanced by smooth
weighted round robin, least connections or a consistent hash of the client
address; active health checks (tcp, http) with rise/fall; passive ejection
from live failures; retries on another server; tcp mode on the same
balancer; reloads that add and remove servers under load. The servers are
small real HTTP/1.1 servers that say who they are."""

import http.client
import re
import signal
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clients import HOST, client_context, config, connect_tls, free_port, listener, recv_until_close


class Who:
    """An HTTP/1.1 keep-alive server on 127.0.0.1 answering every path with
    its name, except /healthz (health_status after health_delay seconds).
    status: what ordinary requests get. stop() closes the listener and every
    open connection, like a killed process; start() comes back on the port."""

    def __init__(self, name, port=None):
        self.name = name
        self.port = port or free_port()
        self.addr = f"{HOST}:{self.port}"
        self.health_status = 200
        self.health_delay = 0.0
        self.status = 200
        self.count = 0
        self.health_count = 0
        self.lock = threading.Lock()
        self.conns = set()
        self.srv = None
        self.start()

    def start(self):
        who = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with who.lock:
                    who.conns.add(self.connection)

            def finish(self):
                with who.lock:
                    who.conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def log_message(self, *a):
                pass

            def answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                if self.path.startswith("/healthz"):
                    with who.lock:
                        who.health_count += 1
                    time.sleep(who.health_delay)
                    code, body = who.health_status, b"health\n"
                else:
                    with who.lock:
                        who.count += 1
                    code, body = who.status, who.name.encode()
                # One write: head and body apart would meet Nagle and the
                # delayed ACK (40 ms a request).
                self.wfile.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n"
                                 % (code, len(body)) + body)

            do_GET = answer
            do_POST = answer

        class S(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.srv = S((HOST, self.port), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        if self.srv is None:
            return
        self.srv.shutdown()
        self.srv.server_close()
        with self.lock:
            for c in list(self.conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.srv = None

    def take(self):
        with self.lock:
            n, self.count = self.count, 0
        return n


@pytest.fixture
def whos():
    made = []

    def make(n):
        for i in range(n):
            made.append(Who(f"s{len(made)}"))
        return made[-n:]

    yield make
    for w in made:
        w.stop()


class Client:
    """Keep-alive HTTPS requests through postern (a new connection when one
    breaks), from an optional source address."""

    def __init__(self, pki, port, source=None):
        self.pki, self.port, self.source = pki, port, source
        self.ctx = client_context(pki)
        self.conn = None

    def request(self, method="GET", path="/", body=None):
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(
                HOST, self.port, context=self.ctx, timeout=10,
                source_address=(self.source, 0) if self.source else None)
            self.conn.connect()
            self.conn.sock = self.conn.sock  # handshake done
        try:
            self.conn.request(method, path, body=body, headers={"Host": "example.test"})
            r = self.conn.getresponse()
            data = r.read()
            return r.status, data.decode(errors="replace")
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def https_context(pki):
    ctx = client_context(pki)
    ctx.check_hostname = True
    return ctx


def http_conf(pki, port, backends, backend="app", **top):
    item = listener("web", port, backend, pki, ["example.test"], mode="http",
                    alpn=["http/1.1"])
    # The server name example.test resolves nowhere: the client connects by
    # address and names it in SNI.
    return config([item], backends=backends, **top)


def servers(*ws, weights=None):
    out = []
    for i, w in enumerate(ws):
        s = {"address": w.addr}
        if weights:
            s["weight"] = weights[i]
        out.append(s)
    return out


class SniClient(Client):
    def request(self, method="GET", path="/", body=None):
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(
                "example.test", self.port, context=self.ctx, timeout=10,
                source_address=(self.source, 0) if self.source else None)
            raw = socket.create_connection((HOST, self.port), timeout=10,
                                           source_address=(self.source, 0) if self.source else None)
            self.conn.sock = self.ctx.wrap_socket(raw, server_hostname="example.test")
        return Client.request(self, method, path, body)


def run_requests(pki, port, n, clients=4, source=None):
    """n GETs over `clients` keep-alive connections; returns {name: count}."""
    counts = {}
    cs = [SniClient(pki, port, source) for _ in range(clients)]
    for i in range(n):
        status, body = cs[i % clients].request()
        assert status == 200, body
        counts[body] = counts.get(body, 0) + 1
    for c in cs:
        c.close()
    return counts


class Load:
    """Threads sending GETs in a loop until stopped; counts failures."""

    def __init__(self, pki, port, threads=3):
        self.stop_ev = threading.Event()
        self.ok = 0
        self.failed = []
        self.lock = threading.Lock()
        self.ts = [threading.Thread(target=self.run, args=(pki, port), daemon=True)
                   for _ in range(threads)]
        for t in self.ts:
            t.start()

    def run(self, pki, port):
        c = SniClient(pki, port)
        while not self.stop_ev.is_set():
            try:
                status, body = c.request()
                with self.lock:
                    if status == 200:
                        self.ok += 1
                    else:
                        self.failed.append((time.monotonic(), status, body))
            except Exception as e:  # noqa: BLE001 (a failed request is what we count)
                with self.lock:
                    self.failed.append((time.monotonic(), "exc", repr(e)))
        c.close()

    def finish(self):
        self.stop_ev.set()
        for t in self.ts:
            t.join(15)
        return self.ok, self.failed


# ------------------------------------------------------------- balancing --

def test_round_robin_weights(pki, start_postern, whos):
    a, b, c = whos(3)
    port = free_port()
    p = start_postern(http_conf(pki, port, {"app": {"servers": servers(a, b, c, weights=[2, 1, 1])}}),
                      [port])
    counts = run_requests(pki, port, 3000)
    assert abs(counts.get("s0", 0) - 1500) < 150, (counts, p.context())
    assert abs(counts.get("s1", 0) - 750) < 100, counts
    assert abs(counts.get("s2", 0) - 750) < 100, counts


def test_least_connections(pki, start_postern, whos):
    a, b, c = whos(3)
    port = free_port()
    p = start_postern(http_conf(pki, port, {"app": {"servers": servers(a, b, c),
                                                    "balance": "least_connections"}}), [port])
    counts = run_requests(pki, port, 3000)
    for name in ("s0", "s1", "s2"):
        assert abs(counts.get(name, 0) - 1000) < 150, (counts, p.context())


def test_client_ip_sticky(pki, start_postern, whos):
    a, b, c = whos(3)
    port = free_port()
    p = start_postern(http_conf(pki, port, {"app": {"servers": servers(a, b, c),
                                                    "balance": "client_ip"}}), [port])
    per_server = {}
    total = 0
    for i in range(60):
        ip = f"127.0.0.{i + 2}"
        counts = run_requests(pki, port, 50, clients=1, source=ip)
        assert len(counts) == 1, f"{ip} went to {counts}: not sticky" + p.context()
        name = next(iter(counts))
        per_server[name] = per_server.get(name, 0) + 50
        total += 50
    assert total == 3000
    for name in ("s0", "s1", "s2"):
        assert 300 <= per_server.get(name, 0) <= 1800, per_server


# ---------------------------------------------------------------- health --

def health(check="http", **kw):
    h = {"check": check, "interval": "300ms", "timeout": "200ms", "rise": 2, "fall": 2}
    if check == "http":
        h["path"] = "/healthz"
    h.update(kw)
    return h


def test_health_500_out_then_back(pki, start_postern, whos):
    a, b, c = whos(3)
    port = free_port()
    p = start_postern(http_conf(pki, port, {"app": {"servers": servers(a, b, c),
                                                    "health": health()}}), [port])
    run_requests(pki, port, 30)
    assert b.take() > 0
    b.health_status = 500
    p.wait_log(rf"backend app: server {re.escape(b.addr)} is down: status 500 \(2 checks")
    b.take()
    counts = run_requests(pki, port, 300)
    assert b.take() == 0 and "s1" not in counts, counts
    b.health_status = 200
    p.wait_log(rf"backend app: server {re.escape(b.addr)} is up: 2 checks passed")
    run_requests(pki, port, 60)
    assert b.take() > 0
    # One checker per process, not one per worker: about 1 check per interval.
    n = b.health_count
    time.sleep(1.5)
    assert b.health_count - n <= 8, f"{b.health_count - n} checks in 1.5 s at 300 ms"


def test_health_refused_and_timeout_out(pki, start_postern, whos):
    a, slow = whos(2)
    dead = Who("dead")
    dead.stop()
    slow.health_delay = 1.0
    port = free_port()
    p = start_postern(http_conf(pki, port, {"app": {"servers": servers(a, slow, dead),
                                                    "health": health()}}), [port])
    p.wait_log(rf"server {re.escape(dead.addr)} is down: connection refused")
    p.wait_log(rf"server {re.escape(slow.addr)} is down: timeout after 200 ms")
    slow.take()
    counts = run_requests(pki, port, 100)
    assert counts == {"s0": 100}, counts


def test_tcp_check(pki, start_postern, whos):
    (a,) = whos(1)
    dead = Who("dead")
    dead.stop()
    port = free_port()
    p = start_postern(http_conf(pki, port, {"app": {"servers": servers(a, dead),
                                                    "health": health("tcp")}}), [port])
    p.wait_log(rf"server {re.escape(dead.addr)} is down: connection refused")


def test_server_killed_under_load(pki, start_postern, whos):
    a, b, c = whos(3)
    port = free_port()
    p = start_postern(http_conf(pki, port, {"app": {"servers": servers(a, b, c),
                                                    "health": health()}}), [port])
    load = Load(pki, port)
    time.sleep(0.5)
    b.stop()
    # Refused connects may eject it passively first; back by its checks, it
    # takes requests again at once.
    p.wait_log(rf"server {re.escape(b.addr)} is down")
    time.sleep(0.5)
    b2 = Who("s1-again", port=b.port)
    p.wait_log(rf"server {re.escape(b.addr)} is up")
    time.sleep(0.5)
    ok, failed = load.finish()
    b2.stop()
    # Connect failures and dead pooled connections are retried elsewhere.
    assert not failed, f"{len(failed)} failed of {ok + len(failed)}: {failed[:3]}" + p.context()
    assert ok > 100
    assert b2.take() > 0, "no request reached the server once it was back"


def test_all_down_502_promptly(pki, start_postern):
    d1, d2 = Who("d1"), Who("d2")
    d1.stop()
    d2.stop()
    port = free_port()
    p = start_postern(http_conf(pki, port, {"app": {"servers": servers(d1, d2),
                                                    "health": health("tcp")}}), [port])
    p.wait_log(rf"server {re.escape(d2.addr)} is down")
    p.wait_log(rf"server {re.escape(d1.addr)} is down")
    c = SniClient(pki, port)
    t0 = time.monotonic()
    status, _ = c.request()
    assert status == 502
    assert time.monotonic() - t0 < 1.0
    c.close()
    # Still tried although marked down: one comes back, it is used at once.
    back = Who("back", port=d1.port)
    try:
        status, body = SniClient(pki, port).request()
        assert (status, body) == (200, "back"), p.context()
    finally:
        back.stop()


# --------------------------------------------------- passive and retries --

def test_passive_ejection(pki, start_postern, whos):
    a, b = whos(2)
    b.status = 503
    port = free_port()
    p = start_postern(http_conf(pki, port, {"app": {"servers": servers(a, b),
                                                    "passive": {"failures": 3, "cooldown": "2s"}}},
                                workers=1), [port])
    codes = [SniClient(pki, port).request()[0] for _ in range(10)]
    assert codes.count(503) == 3, codes
    p.wait_log(rf"backend app: server {re.escape(b.addr)} ejected for 2000 ms: 3 5xx responses")
    b.take()
    run_requests(pki, port, 50)
    assert b.take() == 0
    time.sleep(2.2)
    b.status = 200
    run_requests(pki, port, 50)
    assert b.take() > 0, "the server did not come back after the cooldown"
    p.wait_log(rf"backend app: server {re.escape(b.addr)} back after passive.cooldown")


def closer(port):
    """A server that reads a request head and closes without answering."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, port))
    s.listen(64)
    stop = threading.Event()

    def run():
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = s.accept()
            except OSError:
                continue
            c.settimeout(2)
            try:
                c.recv(65536)
            except OSError:
                pass
            c.close()
        s.close()

    threading.Thread(target=run, daemon=True).start()
    return stop


def test_retries(pki, start_postern, whos):
    (a,) = whos(1)
    dead = Who("dead")
    dead.stop()
    cport = free_port()
    stop = closer(cport)
    port = free_port()
    try:
        backends = {"app": {"servers": [{"address": dead.addr}, {"address": f"{HOST}:{cport}"},
                                        {"address": a.addr}],
                            "retries": 2, "passive": {"failures": 0}}}
        p = start_postern(http_conf(pki, port, backends, workers=1), [port])
        # Refused or closed without an answer: a GET goes on to the next server.
        for _ in range(9):
            assert SniClient(pki, port).request() == (200, "s0")
        # A POST that reached a server is not sent again: 502 when it is the closer.
        codes = [SniClient(pki, port).request("POST", "/", b"x=1")[0] for _ in range(3)]
        assert sorted(codes) == [200, 200, 502], codes
        # retries: 0 -> the refused one gives 502.
        backends["app"]["retries"] = 0
        p.config_path.write_text(http_conf(pki, port, backends, workers=1))
        mark = len(p.stderr())
        p.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reload ok" not in p.stderr()[mark:]:
            assert time.monotonic() < deadline, p.context()
            time.sleep(0.05)
        codes = [SniClient(pki, port).request()[0] for _ in range(6)]
        assert codes.count(502) == 4, codes
    finally:
        stop.set()


# -------------------------------------------------------------- tcp mode --

def name_server():
    """A TCP server that writes its port and closes."""
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(128)
    port = s.getsockname()[1]

    def run():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            c.sendall(str(port).encode())
            c.close()

    threading.Thread(target=run, daemon=True).start()
    return s, port


def test_tcp_mode_balancing(pki, start_postern):
    made = [name_server() for _ in range(3)]
    dead = Who("dead")
    dead.stop()
    port = free_port()
    backends = {"app": {"servers": [{"address": f"{HOST}:{pt}"} for _, pt in made]
                        + [{"address": dead.addr}],
                        "passive": {"failures": 0}}}
    p = start_postern(config([listener("t", port, "app", pki)], backends=backends, workers=1),
                      [port])
    counts = {}
    for _ in range(300):
        with connect_tls(port, "example.test", client_context(pki)) as s:
            data, _ = recv_until_close(s, timeout=5)
        counts[data] = counts.get(data, 0) + 1
    try:
        assert sorted(counts.values()) == [100, 100, 100], (counts, p.context())
    finally:
        for s, _ in made:
            s.close()


# ---------------------------------------------------------------- reload --

def test_reload_adds_and_removes_under_load(pki, start_postern, whos):
    a, b, c = whos(3)
    port = free_port()
    text = http_conf(pki, port, {"app": {"servers": servers(a, b), "health": health()}})
    p = start_postern(text, [port])
    load = Load(pki, port)
    time.sleep(0.5)
    p.config_path.write_text(
        http_conf(pki, port, {"app": {"servers": servers(b, c), "health": health()}}))
    mark = len(p.stderr())
    p.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload ok" not in p.stderr()[mark:]:
        assert time.monotonic() < deadline, p.context()
        time.sleep(0.05)
    assert re.search(rf"reload ok .*backend app: server {re.escape(c.addr)} added, "
                     rf"server {re.escape(a.addr)} removed", p.stderr()), p.context()
    time.sleep(0.5)
    a.take()
    c.take()
    # Connections of the old generation go on (to b only: a is retired);
    # new connections use the new one (b and c).
    counts = run_requests(pki, port, 100)
    time.sleep(0.5)
    ok, failed = load.finish()
    assert not failed, f"{len(failed)} failed: {failed[:3]}" + p.context()
    assert a.take() == 0, "the removed server still got requests"
    # Its idle pooled connections were closed by the reload.
    deadline = time.monotonic() + 3
    while a.conns and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not a.conns, f"{len(a.conns)} connections to the removed server still open"
    assert c.take() > 0 and 25 <= counts.get("s2", 0) <= 75, counts


# --------------------------------------------------------------- config --

def test_config_errors(pki, postern_bin, tmp_path):
    from conftest import run_postern
    port = free_port()
    cases = [
        ({"apq": {"servers": [{"address": "127.0.0.1:1"}]}}, "app",
         r":\d+:\d+: listeners\[0\]\.backend: unknown backend \"app\" \(did you mean \"apq\"\?\)"),
        ({"app": {"servers": [{"address": "127.0.0.1:1", "weight": 0}]}}, "app",
         r"backends\.app\.servers\[0\]\.weight: weight 0"),
        ({"app": {"servers": [{"address": "127.0.0.1:1"}], "tls": {"verify": "yes"}}}, "app",
         r"backends\.app\.tls\.verify: "),
    ]
    for backends, name, pattern in cases:
        path = tmp_path / "p.yaml"
        path.write_text(config([listener("t", port, name, pki)], backends=backends))
        r = run_postern(postern_bin, "-t", "-c", str(path))
        out = r.stdout + r.stderr if hasattr(r, "stdout") else str(r)
        assert r.returncode == 1, out
        assert re.search(pattern, out), out


def test_server_killed_under_h2load(pki, start_postern, whos):
    """h2load over h2 (4 streams per connection) while a server dies and
    comes back: every request succeeds (refused connects and requests cut
    short with no response byte go to another server), and the server takes
    requests again once its checks pass."""
    import subprocess
    a, b, c = whos(3)
    port = free_port()
    item = listener("web", port, "app", pki, ["example.test"], mode="http",
                    alpn=["h2", "http/1.1"])
    p = start_postern(config([item], backends={"app": {"servers": servers(a, b, c),
                                                       "health": health()}}), [port])
    h2 = subprocess.Popen(["h2load", "-D", "5", "-c", "8", "-m", "4", "-T", "10",
                           f"https://{HOST}:{port}/"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)
        b.stop()
        p.wait_log(rf"server {re.escape(b.addr)} is down")
        b2 = Who("s1-again", port=b.port)
        p.wait_log(rf"server {re.escape(b.addr)} is up")
        out, _ = h2.communicate(timeout=30)
    finally:
        if h2.poll() is None:
            h2.kill()
    b2.stop()
    from clients import h2load_counts
    req, codes = h2load_counts(out)
    assert req and req["succeeded"] == req["done"] > 500 and req["failed"] == 0 \
        and req["errored"] == 0 and req["timeout"] == 0, out[-1500:] + p.context()
    assert codes["5xx"] == 0, out[-1500:]
    assert b2.take() > 0, "the server took no request once back up"


def test_black_hole_server_shares_the_connect_budget(pki, start_postern, backend, whos):
    """A server whose connect hangs gets its share of timeouts.backend_connect
    (2 s over 2 possible attempts: 1 s), then the request goes to the other."""
    hole = backend.black_hole()
    (a,) = whos(1)
    port = free_port()
    item = listener("web", port, "app", pki, ["example.test"], mode="http", alpn=["http/1.1"],
                    timeouts={"backend_connect": "2s"})
    p = start_postern(config([item], workers=1, backends={
        "app": {"servers": [{"address": hole.addr}, {"address": a.addr}],
                "passive": {"failures": 0}}}), [port])
    times = []
    for _ in range(2):
        t0 = time.monotonic()
        assert SniClient(pki, port).request() == (200, "s0"), p.context()
        times.append(time.monotonic() - t0)
    slow = max(times)
    assert 0.8 < slow < 1.8, f"{times}: expected one request to wait about 1 s" + p.context()
    assert min(times) < 0.5, times
