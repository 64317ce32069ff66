"""The admin endpoint (`admin: listen:`): plain HTTP/1.1 on its own socket,
served on postern's main loop. /metrics (checked by promtool and scraped by a
real Prometheus server), /healthz, /readyz (503 from the first moment of a
graceful shutdown, served while connections drain), the HTTP rules (GET and
HEAD only, 404, bounded heads and connections, keep-alive and pipelining),
the admin: key's errors, and what a reload does to it."""

import calendar
import json
import os
import re
import resource
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import run_postern
from clients import HOST, config, curl, free_port, listener, tls_block
from test_privdrop import start_world, world  # noqa: F401 (fixtures)

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQ_200 = b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"


# ---------------------------------------------------------------- helpers --

def admin_config(pki, tls_port, admin_port, mode="http", **top):
    """One http-mode listener answering with builtin:info (early data
    accepted, so that 0-RTT can be counted), and the admin endpoint."""
    item = listener("web", tls_port, "builtin:info", pki, alpn=["http/1.1"],
                    tls=tls_block(pki, early_data="accept"))
    item["mode"] = mode
    if admin_port is not None:
        top.setdefault("admin", {"listen": f"{HOST}:{admin_port}"})
    return config([item], **top)


def start(pki, start_postern, **top):
    tls_port, admin_port = free_port(), free_port()
    p = start_postern(admin_config(pki, tls_port, admin_port, **top), [tls_port, admin_port])
    return p, tls_port, admin_port


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body


class Conn:
    """A raw HTTP/1.1 connection to the admin endpoint, reading responses
    one at a time from what arrives (so that pipelined answers and HEAD's
    missing body are seen as they are)."""

    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"EOF with {self.buf[:200]!r} unread")
        self.buf += data

    def response(self, head_request=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = 0 if head_request else int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return Response(status, headers, body)

    def closed(self, timeout=3):
        """Whether the server ends the connection (EOF or reset) within
        timeout, with nothing more sent."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        return data == b"" and self.buf == b""

    def close(self):
        self.sock.close()


def get(port, path, method="GET"):
    c = Conn(port)
    try:
        c.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return c.response(head_request=method == "HEAD")
    finally:
        c.close()


def scrape(port):
    r = get(port, "/metrics")
    assert r.status == 200, (r.status, r.body)
    return r.body.decode()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """[(name, {label: value}, float)] of an exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = {k: bytes(v, "utf-8").decode("unicode_escape") for k, v in _LABEL.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def total(samples, name, **match):
    """The sum of name's samples whose labels include match; None when the
    family has no sample at all."""
    found = [v for n, labels, v in samples if n == name]
    if not found:
        return None
    return sum(v for n, labels, v in samples
               if n == name and all(labels.get(k) == w for k, w in match.items()))


def value(samples, name, **match):
    vals = [v for n, labels, v in samples
            if n == name and all(labels.get(k) == w for k, w in match.items())]
    assert len(vals) == 1, f"{name}{match}: {vals}"
    return vals[0]


def promtool_check(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    assert p.returncode == 0, f"promtool check metrics: {p.stdout.decode()}\n--- scrape:\n{text}"


def need_family(text, name):
    if f"# TYPE {name} " not in text:
        pytest.skip(f"{name} is not rendered yet: it comes from the metrics branch's per-worker "
                    "counter families (git merge metrics)")


def s_client(port, *args, stdin=b"", timeout=20):
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", "example.test",
           "-ign_eof", *map(str, args)]
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.stdout.decode(errors="replace")


def refused(port):
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


# ------------------------------------------------------------ endpoints --

def test_health_ready_and_metrics(pki, start_postern):
    p, tls_port, admin_port = start(pki, start_postern)
    p.wait_log(rf"admin endpoint on http://127.0.0.1:{admin_port}/ \(/metrics, /healthz, /readyz\)")
    r = get(admin_port, "/healthz")
    assert (r.status, r.body) == (200, b"ok\n")
    r = get(admin_port, "/readyz")
    assert (r.status, r.body) == (200, b"ready\n")
    r = get(admin_port, "/metrics?x=1")  # the query is ignored
    assert r.status == 200 and r.headers["content-type"] == METRICS_TYPE, r.headers
    text = r.body.decode()
    promtool_check(text)
    s = parse(text)
    assert value(s, "postern_build_info", version="0.1.0") == 1
    assert value(s, "postern_workers") == 2
    assert value(s, "postern_ready") == 1
    assert value(s, "postern_config_generation") == 1
    assert value(s, "postern_config_last_reload_success") == 1
    assert abs(value(s, "postern_config_last_reload_timestamp_seconds") - time.time()) < 60
    start_time = value(s, "process_start_time_seconds")
    assert time.time() - 60 < start_time <= time.time() + 1, start_time
    assert value(s, "process_open_fds") >= 5
    assert value(s, "process_max_fds") == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert value(s, "process_resident_memory_bytes") > 1 << 20
    assert value(s, "process_virtual_memory_bytes") >= value(s, "process_resident_memory_bytes")
    assert value(s, "process_cpu_seconds_total") >= 0
    # In-memory ticket keys: one sealing key, made at start.
    age = value(s, "postern_ticket_key_age_seconds", listener="web", key="encrypt")
    assert 0 <= age < 60


def test_methods_paths_and_head(pki, start_postern):
    p, tls_port, admin_port = start(pki, start_postern)
    r = get(admin_port, "/nothing")
    assert r.status == 404
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        r = get(admin_port, "/metrics", method)
        assert r.status == 405 and r.headers.get("allow") == "GET, HEAD", (method, r.headers)
    r = get(admin_port, "/config")
    assert r.status == 404, "/config is not offered"
    # HEAD: GET's fields, Content-Length included, and no body: the GET
    # pipelined behind it is read right after HEAD's head.
    c = Conn(admin_port)
    c.send(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    h = c.response(head_request=True)
    g = c.response()
    assert h.status == 200 and h.headers["content-length"] == "3", h.headers
    assert g.status == 200 and g.body == b"ok\n"
    c.send(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    h = c.response(head_request=True)
    assert h.status == 200 and h.headers["content-type"] == METRICS_TYPE
    assert int(h.headers["content-length"]) > 1000
    assert not c.closed(timeout=0.5), "HEAD sent bytes after its head (a body)"
    c.close()


def test_keepalive_and_pipelining(pki, start_postern):
    p, tls_port, admin_port = start(pki, start_postern)
    c = Conn(admin_port)
    reqs = b"".join(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                    for path in ("/healthz", "/nope", "/readyz", "/metrics", "/healthz"))
    c.send(reqs)
    statuses = [c.response().status for _ in range(5)]
    assert statuses == [200, 404, 200, 200, 200]
    # Kept alive: one more on the same connection, then one that closes it.
    c.send(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.response().status == 200
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    r = c.response()
    assert r.status == 200 and r.headers.get("connection") == "close"
    assert c.closed(), "Connection: close did not end the connection"
    c.close()
    # HTTP/1.0 without keep-alive ends after the answer too.
    c = Conn(admin_port)
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert c.response().status == 200 and c.closed()
    c.close()


def test_bad_and_oversized_heads(pki, start_postern):
    p, tls_port, admin_port = start(pki, start_postern)
    c = Conn(admin_port)
    c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    r = c.response()
    assert r.status == 431, r.status
    assert c.closed(), "the connection stayed open after 431"
    c.close()
    c = Conn(admin_port)
    c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Field: y\r\n\r\n")
    assert c.response().status == 400
    assert c.closed()
    c.close()
    c = Conn(admin_port)
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    r = c.response()
    assert r.status == 200 and r.headers.get("connection") == "close", r.headers
    assert c.closed(), "a request with a body did not end the connection"
    c.close()
    assert get(admin_port, "/healthz").status == 200, "the endpoint suffered" + p.context()


def test_connection_limit(pki, start_postern):
    p, tls_port, admin_port = start(pki, start_postern)
    conns = []
    for _ in range(64):
        c = Conn(admin_port)
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.response().status == 200
        conns.append(c)
    # The 65th: the connection idle longest (the first) makes room.
    extra = Conn(admin_port)
    extra.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert extra.response().status == 200
    assert conns[0].closed(), "the oldest idle connection was not closed to make room"
    conns[0].close()
    conns[0] = extra
    # Every one in the middle of a request: the one waiting longest (the
    # first to start its request) makes room; the newcomer is served.
    for i, c in enumerate(conns):
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3 if i == 0 else 0.002)  # conns[0] first, clearly
    time.sleep(0.5)
    new = Conn(admin_port)
    new.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert new.response().status == 200, "a newcomer was not served while 64 were busy"
    assert conns[0].closed(), "the connection waiting longest was not closed"
    conns[0].close()
    new.close()
    p.wait_log(r"admin endpoint: 64 connections, each in a request: the slowest was closed")
    # The other busy ones finish their requests and are answered.
    for c in conns[1:]:
        c.send(b"\r\n")
        assert c.response().status == 200
        c.close()
    assert get(admin_port, "/healthz").status == 200


def test_not_served_on_tls_listener(pki, start_postern):
    p, tls_port, admin_port = start(pki, start_postern)
    rc, out, err = curl(f"https://example.test:{tls_port}/metrics", "--cacert", str(pki.root),
                        "--resolve", f"example.test:{tls_port}:127.0.0.1")
    assert rc == 0, err
    assert "postern_config_generation" not in out and "# TYPE" not in out, out[:500]
    # And the admin socket speaks no TLS.
    rc, out, err = curl(f"https://127.0.0.1:{admin_port}/metrics", "-k")
    assert rc != 0, "the admin endpoint answered TLS"


def test_cert_gauges_match_pem(pki, start_postern):
    p, tls_port, admin_port = start(pki, start_postern, expiry_warn_days=3650)
    cert = str(pki.cert("example.test"))
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-enddate", "-serial",
                          "-subject", "-nameopt", "RFC2253"],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    end = re.search(r"notAfter=(.*)", out).group(1).strip()
    not_after = calendar.timegm(time.strptime(end, "%b %d %H:%M:%S %Y GMT"))
    serial = re.search(r"serial=(\w+)", out).group(1).upper().lstrip("0")
    s = parse(scrape(admin_port))
    labels = [lb for n, lb, v in s if n == "postern_certificate_not_after_seconds"]
    assert len(labels) == 1, labels
    lb = labels[0]
    assert lb["listener"] == "web" and lb["cert_file"] == str(pki.chain("example.test")), lb
    assert lb["serial"].lstrip("0") == serial, (lb, serial)
    assert "CN=example.test" in lb["subject"], lb
    assert value(s, "postern_certificate_not_after_seconds", listener="web") == not_after
    # expiry_warn_days 3650: the test leaf expires within it.
    assert value(s, "postern_certificate_expiring", listener="web") == 1


def test_readyz_503_while_draining(pki, start_postern, backend):
    """A relayed tcp-mode connection keeps postern draining (up to
    shutdown_timeout) after SIGTERM."""
    from clients import client_context, connect_tls
    echo = backend.echo()
    tls_port, relay_port, admin_port = free_port(), free_port(), free_port()
    web = listener("web", tls_port, "builtin:info", pki, alpn=["http/1.1"])
    web["mode"] = "http"
    relay = listener("relay", relay_port, echo.addr, pki)
    p = start_postern(config([web, relay], shutdown_timeout="20s",
                             admin={"listen": f"{HOST}:{admin_port}"}),
                      [tls_port, relay_port, admin_port])
    held = connect_tls(relay_port, "example.test", client_context(pki))
    held.sendall(b"hi\n")
    held.settimeout(5)
    assert held.recv(100) == b"hi\n", "no echo on the held connection"
    assert get(admin_port, "/readyz").status == 200
    p.signal(signal.SIGTERM)
    t0 = time.monotonic()
    # The TLS listener is probed first, /readyz right after: a refused
    # connect followed by a 200 would mean the listeners closed while
    # postern still said it was ready.
    while True:
        closed = refused(relay_port)
        status = get(admin_port, "/readyz").status
        assert not (closed and status == 200), (
            "a TLS listener closed before /readyz turned 503" + p.context())
        if status == 503:
            break
        assert time.monotonic() - t0 < 2, "/readyz did not turn 503 at SIGTERM" + p.context()
    # Draining: the held connection keeps postern up; the admin endpoint
    # serves on, not ready but healthy, and says so in /metrics.
    deadline = time.monotonic() + 2
    while not (refused(tls_port) and refused(relay_port)):
        assert time.monotonic() < deadline, "the TLS listener still accepts" + p.context()
        time.sleep(0.05)
    time.sleep(0.5)
    assert p.proc.poll() is None, "postern exited while a connection was open" + p.context()
    r = get(admin_port, "/readyz")
    assert r.status == 503 and b"shutting down" in r.body, r.body
    assert get(admin_port, "/healthz").status == 200
    assert value(parse(scrape(admin_port)), "postern_ready") == 0
    held.sendall(b"still\n")
    assert held.recv(100) == b"still\n", "the held connection stopped relaying"
    held.close()
    assert p.wait(10) == 0, "postern did not exit after the last connection" + p.context()
    p.check_exit()
    assert refused(admin_port), "the admin socket outlived the process"


# -------------------------------------------------------------- config --

def check(postern_bin, tmp_path, text):
    path = tmp_path / "postern.yaml"
    path.write_text(text)
    return run_postern(postern_bin, "-t", "-c", path), path


def test_admin_key_errors(pki, postern_bin, tmp_path):
    tls_port = free_port()
    base = admin_config(pki, tls_port, None)
    r, path = check(postern_bin, tmp_path, base + "admin:\n  lisen: 127.0.0.1:9\n")
    assert r.returncode == 1
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: admin\.lisen: unknown key", r.stderr), r.stderr
    r, path = check(postern_bin, tmp_path, base + "admin: {}\n")
    assert r.returncode == 1 and "admin" in r.stderr and "listen" in r.stderr, r.stderr
    r, path = check(postern_bin, tmp_path, base + "admin:\n  listen: nowhere\n")
    assert r.returncode == 1 and re.search(r":\d+:\d+: admin.listen: invalid address", r.stderr), r.stderr
    # A listener's address: refused whichever comes first in the file.
    r, path = check(postern_bin, tmp_path, base + f"admin:\n  listen: {HOST}:{tls_port}\n")
    assert r.returncode == 1 and "already used by listener \"web\"" in r.stderr, r.stderr
    r, path = check(postern_bin, tmp_path, f"admin:\n  listen: {HOST}:{tls_port}\n" + base)
    assert r.returncode == 1 and "already used by admin.listen" in r.stderr, r.stderr
    # Not loopback: a warning, still a good configuration.
    r, path = check(postern_bin, tmp_path, base + f"admin:\n  listen: 0.0.0.0:{free_port()}\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^admin endpoint on http://0.0.0.0:\d+/$", r.stdout, re.M), r.stdout
    assert re.search(r"warning: .*:\d+:\d+: admin.listen: 0.0.0.0:\d+ is not a loopback address",
                     r.stdout), r.stdout


def test_admin_port_taken_at_start(pki, postern_bin, tmp_path):
    blocker = socket.socket()
    blocker.bind((HOST, 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    path = tmp_path / "postern.yaml"
    path.write_text(admin_config(pki, free_port(), port))
    r = run_postern(postern_bin, "-c", path)
    blocker.close()
    assert r.returncode == 1
    assert re.search(rf":\d+:\d+: admin.listen: cannot listen on {HOST}:{port}: ", r.stderr), r.stderr


def test_reload_moves_and_reports(pki, start_postern):
    p, tls_port, port_a = start(pki, start_postern)
    s = parse(scrape(port_a))
    assert value(s, "postern_config_generation") == 1
    # admin.listen changed: the endpoint moves.
    port_b = free_port()
    p.config_path.write_text(admin_config(pki, tls_port, port_b))
    p.signal(signal.SIGHUP)
    p.wait_log(rf"admin endpoint moved to http://{HOST}:{port_b}/ \(was {HOST}:{port_a}\)")
    assert refused(port_a), "the old admin address still accepts"
    s = parse(scrape(port_b))
    assert value(s, "postern_config_generation") == 2
    assert value(s, "postern_config_last_reload_success") == 1
    t_ok = value(s, "postern_config_last_reload_timestamp_seconds")
    # A refused reload: the gauges say so, the generation stays.
    p.config_path.write_text("listeners: [\n")
    p.signal(signal.SIGHUP)
    p.wait_log(r"reload failed")
    s = parse(scrape(port_b))
    assert value(s, "postern_config_generation") == 2
    assert value(s, "postern_config_last_reload_success") == 0
    assert value(s, "postern_config_last_reload_timestamp_seconds") >= t_ok
    # The new address is taken: the reload commits, the endpoint stays.
    blocker = socket.socket()
    blocker.bind((HOST, 0))
    blocker.listen()
    port_c = blocker.getsockname()[1]
    p.config_path.write_text(admin_config(pki, tls_port, port_c))
    p.signal(signal.SIGHUP)
    p.wait_log(rf"admin.listen: cannot listen on {HOST}:{port_c}: .*the admin endpoint stays where it was")
    blocker.close()
    s = parse(scrape(port_b))
    assert value(s, "postern_config_generation") == 3
    assert value(s, "postern_config_last_reload_success") == 1
    # Removed: it closes; back: it opens.
    p.config_path.write_text(admin_config(pki, tls_port, None))
    p.signal(signal.SIGHUP)
    p.wait_log(rf"admin endpoint on {HOST}:{port_b} closed: admin.listen was removed")
    assert refused(port_b)
    p.config_path.write_text(admin_config(pki, tls_port, port_a))
    p.signal(signal.SIGHUP)
    p.wait_log(rf"admin endpoint moved to http://{HOST}:{port_a}/ \(was off\)")
    assert value(parse(scrape(port_a)), "postern_config_generation") == 5


# ------------------------------------------------------------ counters --

def handshake_total(s):
    return total(s, "postern_tls_handshakes_total")


@pytest.mark.deadline(120)
def test_promtool_under_load(pki, start_postern):
    p, tls_port, admin_port = start(pki, start_postern)
    load = subprocess.Popen(["h2load", "-n", "3000", "-c", "4", "-m", "1", "--h1",
                             f"https://127.0.0.1:{tls_port}/"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    scrapes = 0
    try:
        while load.poll() is None or scrapes < 5:
            promtool_check(scrape(admin_port))
            scrapes += 1
            time.sleep(0.1)
    finally:
        out = load.communicate(timeout=60)[0].decode(errors="replace")
    assert "3000 succeeded" in out, out
    assert scrapes >= 5
    text = scrape(admin_port)
    promtool_check(text)
    need_family(text, "postern_tls_handshakes_total")
    assert handshake_total(parse(text)) == 4, "h2load made 4 connections"


@pytest.mark.deadline(120)
def test_counters_match(pki, start_postern, tmp_path):
    tls_port, rej_port, admin_port = free_port(), free_port(), free_port()
    web = listener("web", tls_port, "builtin:info", pki, alpn=["http/1.1"],
                   tls=tls_block(pki, early_data="accept"))
    rej = listener("rej", rej_port, "builtin:info", pki, alpn=["http/1.1"])
    web["mode"] = rej["mode"] = "http"
    p = start_postern(config([web, rej], admin={"listen": f"{HOST}:{admin_port}"}),
                      [tls_port, rej_port, admin_port])
    text = scrape(admin_port)
    need_family(text, "postern_tls_handshakes_total")
    need_family(text, "postern_tls_early_data_total")
    need_family(text, "postern_http_requests_total")
    need_family(text, "postern_reloads_total")
    n_full = 3
    sess = tmp_path / "sess.pem"
    for i in range(n_full):
        out = s_client(tls_port, "-CAfile", pki.root, "-sess_out", sess, stdin=REQ_200)
        assert "HTTP/1.1 200" in out, out
    # One resumption with 0-RTT accepted.
    early = tmp_path / "early.txt"
    early.write_bytes(REQ_200)
    out = s_client(tls_port, "-CAfile", pki.root, "-sess_in", sess, "-early_data", early)
    assert "Reused, TLSv1.3" in out and "Early data was accepted" in out, out
    # The same ticket on a listener that refuses early data (the in-memory
    # ticket keys are shared): resumed, 0-RTT rejected, the request sent again.
    out = s_client(rej_port, "-CAfile", pki.root, "-sess_in", sess, "-early_data", early,
                   stdin=REQ_200)
    assert "Reused, TLSv1.3" in out and "Early data was rejected" in out, out
    assert "HTTP/1.1 200" in out, out
    # One request refused with 400 (two Host fields).
    out = s_client(tls_port, "-CAfile", pki.root,
                   stdin=b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert "HTTP/1.1 400" in out, out
    # One reload that commits, one that fails.
    good = p.config_path.read_text()
    p.signal(signal.SIGHUP)
    p.wait_log(r"reload ok")
    p.config_path.write_text("listeners: [\n")
    p.signal(signal.SIGHUP)
    p.wait_log(r"reload failed")
    p.config_path.write_text(good)
    s = parse(scrape(admin_port))
    hs = n_full + 1 + 1
    assert total(s, "postern_tls_handshakes_total", listener="web") == hs, text
    assert total(s, "postern_tls_handshakes_total", listener="web", resumed="true") == 1
    assert total(s, "postern_tls_early_data_total", listener="web", outcome="accepted") == 1
    assert total(s, "postern_tls_early_data_total", listener="rej", outcome="rejected") == 1
    assert total(s, "postern_tls_early_data_total", outcome="replayed") == 0
    assert total(s, "postern_tls_handshakes_total", listener="rej", resumed="true") == 1
    assert total(s, "postern_http_requests_total", listener="rej", code="2xx") == 1
    assert total(s, "postern_http_requests_total", listener="web", code="2xx") == n_full + 1
    assert total(s, "postern_http_requests_total", listener="web", code="4xx") == 1
    assert total(s, "postern_reloads_total", result="ok") == 1
    assert total(s, "postern_reloads_total", result="failed") == 1
    # Plus conftest's start-up probe, a connection without a handshake.
    accepted = total(s, "postern_connections_accepted_total", listener="web")
    assert accepted is None or accepted == hs + 1, (accepted, hs)


@pytest.mark.deadline(120)
def test_prometheus_server_scrapes(pki, start_postern, tmp_path):
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip("no /usr/bin/prometheus (Debian's prometheus package)")
    p, tls_port, admin_port = start(pki, start_postern)
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: postern\n    static_configs:\n"
        f"      - targets: ['{HOST}:{admin_port}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address={HOST}:{prom_port}"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def query(q):
        url = f"http://{HOST}:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=5) as r:
            data = json.load(r)
        assert data["status"] == "success", data
        return [float(x["value"][1]) for x in data["data"]["result"]]

    def wait_value(q, want, seconds=20):
        deadline = time.monotonic() + seconds
        got = None
        while time.monotonic() < deadline:
            try:
                got = query(q)
            except OSError:
                got = None
            if got == [want]:
                return
            time.sleep(0.25)
        raise AssertionError(f"{q}: {got}, expected [{want}]\n"
                             + (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:])

    try:
        wait_value('up{job="postern"}', 1.0)
        wait_value("postern_ready", 1.0)
        wait_value("postern_config_generation", 1.0)
        need_family(scrape(admin_port), "postern_tls_handshakes_total")
        n = 5
        for _ in range(n):
            assert "HTTP/1.1 200" in s_client(tls_port, "-CAfile", pki.root, stdin=REQ_200)
        wait_value("sum(postern_tls_handshakes_total)", float(n))
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
@pytest.mark.deadline(90)
def test_admin_below_1024_with_privilege_drop(pki, world, start_world, backend):
    """Bound as root before the drop, on a port below 1024; after the drop
    a reload still moves it to another such port (the main thread keeps
    CAP_NET_BIND_SERVICE)."""
    from test_privdrop import check_dropped, free_low_port, tls as world_tls
    echo = backend.echo()
    port, low = free_port(), free_low_port()
    listeners = [listener("one", port, echo.addr, tls=world_tls(world))]
    p = start_world(config(listeners, user="nobody", group="nogroup",
                           admin={"listen": f"{HOST}:{low}"}), [port, low])
    p.wait_log(r"running as user nobody")
    check_dropped(p)
    assert get(low, "/healthz").status == 200
    s = parse(scrape(low))
    assert value(s, "postern_ready") == 1
    other = free_low_port()  # postern holds low: another one
    assert other != low
    p.config_path.write_text(config(listeners, user="nobody", group="nogroup",
                                    admin={"listen": f"{HOST}:{other}"}))
    p.signal(signal.SIGHUP)
    p.wait_log(rf"admin endpoint moved to http://{HOST}:{other}/")
    assert get(other, "/readyz").status == 200
    assert refused(low)
    check_dropped(p)
