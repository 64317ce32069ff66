"""Hot reload (SIGHUP and `watch: true`): a whole new generation is built off
the event loops and every worker switches to it, or, when anything is wrong
with it, the running one keeps serving untouched; plus the certificate
diagnostics `postern -t` gives for the four mistakes users make most."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import run_postern, sanitizer_report
from clients import (HOST, client_context, config, connect_tls, free_port, h2load_counts, listener,
                     recv_exact, s_client)

OK_RE = r"reload ok \((?P<why>[^)]*)\): generation (?P<gen>\d+)"
FAILED_RE = r"reload failed \((?P<why>[^)]*)\): (?P<cause>.*); still serving generation (?P<gen>\d+) \(failed reloads: (?P<n>\d+)\)"


# ---------------------------------------------------------------- helpers --

class Log:
    """Follows one postern's stderr."""

    def __init__(self, p):
        self.p = p
        self.pos = 0
        self.text = ""

    def _read(self):
        """Appends the complete lines written since the last read (a line
        being written may be seen half-way)."""
        with open(self.p.stderr_path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.pos += end
        self.text += data[:end].decode(errors="replace")

    def mark(self):
        """An offset: later waits look only at what is logged after it."""
        self._read()
        return len(self.text)

    def wait(self, pattern, start=0, timeout=15):
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            self._read()
            m = rx.search(self.text, start)
            if m:
                return m
            if self.p.proc.poll() is not None:
                raise AssertionError(f"postern exited while waiting for {pattern!r}"
                                     + self.p.context())
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the log within {timeout}s"
                                     + self.p.context())
            time.sleep(0.002)

    def findall(self, pattern, start=0):
        self._read()
        return list(re.finditer(pattern, self.text[start:], re.M))


def sighup(p, log, expect="ok", timeout=15):
    """Sends SIGHUP and waits for the outcome of the reload it starts.
    Returns the match of the "reload ok" or "reload failed" line."""
    start = log.mark()
    p.signal(signal.SIGHUP)
    line = log.wait(r"reload (?:ok|failed) \(SIGHUP\).*$", start, timeout)
    got = "ok" if line.group(0).startswith("reload ok") else "failed"
    assert got == expect, f"expected reload {expect}, got: {line.group(0)}" + p.context()
    m = re.compile(OK_RE if got == "ok" else FAILED_RE).match(log.text, line.start())
    assert m, f"reload line not in the expected form: {line.group(0)}"
    return m


def openssl_serial(pem_text):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem_text.encode(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10, check=True)
    return out.stdout.decode().strip().split("=", 1)[1]


def file_serial(path):
    return openssl_serial(Path(path).read_text())


def served_serial(port, sni="example.test"):
    """The serial of the leaf a new connection gets, read with s_client."""
    r = s_client(port, "-showcerts", servername=sni)
    assert r.certs, f"no certificate from s_client\n{r}"
    return openssl_serial(r.certs[0])


def install(src_chain, src_key, dst_chain, dst_key):
    """Replaces a certificate and its key the way deploy hooks do: each file
    written next to its place, then renamed over it."""
    for src, dst in ((src_chain, dst_chain), (src_key, dst_key)):
        tmp = Path(str(dst) + ".new")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


class Leaf:
    def __init__(self, chain, key, cert):
        self.chain, self.key, self.cert = chain, key, cert
        self.serial = file_serial(cert)


def issue_leaf(pki, out_dir, stem, sans=("example.test", "www.example.test"), cn="example.test"):
    """A new ECDSA leaf with a new key, signed by the test intermediate."""
    out_dir = Path(out_dir)
    key, cert, chain = out_dir / f"{stem}.key.pem", out_dir / f"{stem}.cert.pem", out_dir / f"{stem}.chain.pem"
    ext, csr, cnf = out_dir / f"{stem}.ext", out_dir / f"{stem}.csr", out_dir / f"{stem}.cnf"
    cnf.write_text("[req]\ndistinguished_name = dn\n[dn]\n")
    ext.write_text("[leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                   "extendedKeyUsage = serverAuth\n"
                   f"subjectAltName = {','.join('DNS:' + n for n in sans)}\n")
    run = lambda *cmd: subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      timeout=30, check=True)
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-subj", f"/O=Postern Dev/CN={cn}", "-config", str(cnf), "-out", str(csr))
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki.intermediate),
        "-CAkey", str(pki.dir / "intermediate.key.pem"), "-set_serial", "0x" + os.urandom(15).hex(),
        "-sha256", "-days", "90", "-extfile", str(ext), "-extensions", "leaf", "-out", str(cert))
    chain.write_text(cert.read_text() + pki.intermediate.read_text())
    return Leaf(chain, key, cert)


@pytest.fixture(scope="module")
def leaf_b(pki, tmp_path_factory):
    """A second valid example.test certificate (set B; set A is the PKI's)."""
    return issue_leaf(pki, tmp_path_factory.mktemp("leafb"), "example-b")


def leaf_a(pki):
    return Leaf(pki.chain("example.test"), pki.key("example.test"), pki.cert("example.test"))


def site_tls(pki, chain, key, **extra):
    """tls: serving the swappable example.test files plus localhost."""
    tls = {"versions": ["tls1.3"],
           "certificates": [{"cert": str(chain), "key": str(key)},
                            {"cert": str(pki.chain("localhost")), "key": str(pki.key("localhost"))}],
           "default_certificate": "example.test", "ca_file": str(pki.root)}
    tls.update(extra)
    return tls


def site(tmp_path, pki, leaf):
    """A directory holding the example.test files that reloads replace."""
    d = tmp_path / "site"
    d.mkdir(exist_ok=True)
    chain, key = d / "example.chain.pem", d / "example.key.pem"
    install(leaf.chain, leaf.key, chain, key)
    return chain, key


def http_get(sock, host="example.test"):
    """One HTTP/1.1 request for builtin:info's JSON on a kept-alive
    connection; returns the body as text."""
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += recv_exact(sock, 1)
    m = re.search(rb"content-length:\s*(\d+)", head, re.I)
    assert m, f"no Content-Length in {head!r}"
    return recv_exact(sock, int(m.group(1))).decode()


def info_serial(body):
    m = re.search(r'"serial"\s*:\s*"([0-9A-Fa-f]+)"', body)
    assert m, f"no serial in builtin:info's answer: {body[:400]}"
    return m.group(1).upper()


def norm(serial):
    return serial.upper().lstrip("0")


def h2load_summary(out):
    req, _ = h2load_counts(out)
    assert req, f"no h2load summary in:\n{out}"
    return req


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def slow_ca_file(pki, tmp_path):
    """A ca_file the size of the system store plus the test root: loading it
    makes a reload take tens of milliseconds, long enough to send signals
    while it runs."""
    if not SYSTEM_CA.exists():
        pytest.skip(f"{SYSTEM_CA} not installed")
    path = tmp_path / "big-ca.pem"
    path.write_text(SYSTEM_CA.read_text() + pki.root.read_text())
    return path


def line_at(log, m):
    return log.text[m.start():].splitlines()[0]


def tls_with_ca(pki, ca):
    tls = {"versions": ["tls1.3"],
           "certificates": [{"cert": str(pki.chain("example.test")), "key": str(pki.key("example.test"))}],
           "ca_file": str(ca)}
    return tls


def _resume(port, ctx, session=None):
    """One connection with an HTTP exchange (TLS 1.3 tickets arrive after the
    handshake); returns (session, reused)."""
    raw = socket.create_connection((HOST, port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="example.test", session=session)
    try:
        http_get(s)
        return s.session, s.session_reused
    finally:
        s.close()


def ticket_key_line():
    import base64
    return base64.b64encode(os.urandom(80)).decode()


# ------------------------------------------------------ reload under load --

def _run_under_load(pki, leaf_b, start_postern, tmp_path, mode, h2load_args):
    a = leaf_a(pki)
    chain, key = site(tmp_path, pki, a)
    port = free_port()
    item = listener("load", port, "builtin:info", tls=site_tls(pki, chain, key),
                    alpn=["h2", "http/1.1"] if mode == "http" else ["http/1.1"])
    if mode == "http":
        item["mode"] = "http"
    p = start_postern(config([item]), [port])
    log = Log(p)
    url = f"https://{HOST}:{port}/"
    # Kept-alive connections for 20 s, and new connections all along (20 a
    # second, each making 5 requests): between them they see every reload.
    keep = subprocess.Popen(["h2load", *h2load_args, "-D", "20", "-c", "4", url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    fresh = subprocess.Popen(["h2load", *h2load_args, "-r", "2", "--rate-period=100ms", "-c", "400",
                              "-n", "2000", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sets = [a, leaf_b]
    wrong = []
    under_load = 0  # reloads that completed while the kept-alive load still ran
    t0 = time.monotonic()
    try:
        for i in range(1, 51):
            time.sleep(max(0.0, t0 + 0.3 + i * 0.33 - time.monotonic()))
            new = sets[i % 2]
            install(new.chain, new.key, chain, key)
            m = sighup(p, log)
            under_load += keep.poll() is None
            got = served_serial(port)
            if norm(got) != norm(new.serial):
                wrong.append(f"reload {i} (generation {m.group('gen')}): served {got}, "
                             f"expected {new.serial}")
        reloads_done = time.monotonic() - t0
        out_keep = keep.communicate(timeout=60)[0].decode(errors="replace")
        out_fresh = fresh.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        for proc in (keep, fresh):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not wrong, "new connections after a reload must get the new certificate:\n" + "\n".join(wrong)
    for name, out in (("kept-alive", out_keep), ("new-connection", out_fresh)):
        s = h2load_summary(out)
        assert s["succeeded"] == s["total"] > 0 and s["failed"] == s["errored"] == s["timeout"] == 0, (
            f"{name} h2load: every request must succeed across 50 reloads: {s}\n{out[-1500:]}"
            + p.context())
        assert re.search(rf"status codes: {s['total']} 2xx", out), f"{name}: non-2xx answers\n{out}"
    # What matters is that the reloads met kept-alive connections, not how
    # fast a loaded machine made them (no timing assertions: the bench
    # measures speed). 0.33 s apart, about 58 would fit in the 20 s of load.
    assert under_load >= 25, (
        f"only {under_load} of 50 reloads completed while the kept-alive load ran "
        f"({reloads_done:.1f} s for 50)")
    n_ok = len(log.findall(OK_RE))
    assert n_ok == 50, f"expected 50 reload ok lines, got {n_ok}" + p.context()
    print(f"50 reloads in {reloads_done:.1f}s ({under_load} under kept-alive load); kept-alive {h2load_summary(out_keep)['total']} "
          f"requests, new connections {h2load_summary(out_fresh)['total']} requests")


@pytest.mark.deadline(90)
def test_reload_under_load_h1(pki, leaf_b, start_postern, tmp_path):
    """h2load --h1 through a tcp-mode listener to builtin:info for 20 s, while
    example.test's certificate alternates between two valid sets 50 times:
    no failed request, no refused connection, and s_client sees the new
    serial after each reload."""
    _run_under_load(pki, leaf_b, start_postern, tmp_path, "tcp", ["--h1"])


def _http_mode_serves_h2(postern_bin, pki, tmp_path):
    """Whether http mode (issue 3) answers an h2 request yet."""
    port = free_port()
    path = tmp_path / "probe.yaml"
    item = listener("probe", port, "builtin:info", pki, alpn=["h2", "http/1.1"])
    item["mode"] = "http"
    path.write_text(config([item]))
    if run_postern(postern_bin, "-t", "-c", path).returncode != 0:
        return False
    proc = subprocess.Popen([postern_bin, "-c", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        r = subprocess.run(["h2load", "-n", "2", "-c", "1", f"https://{HOST}:{port}/"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        s = h2load_summary(r.stdout.decode(errors="replace"))
        return s["succeeded"] == 2
    except (AssertionError, subprocess.TimeoutExpired):
        return False
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.deadline(100)
def test_reload_under_load_h2(postern_bin, pki, leaf_b, start_postern, tmp_path):
    """The same with HTTP/2, which needs http mode."""
    if not _http_mode_serves_h2(postern_bin, pki, tmp_path):
        pytest.skip("http mode (issue 3) does not serve HTTP/2 yet: h2 under reload not testable")
    _run_under_load(pki, leaf_b, start_postern, tmp_path, "http", [])


# ------------------------------------------------- connections and serials --

def test_keepalive_connection_keeps_old_certificate(pki, leaf_b, start_postern, tmp_path):
    """A connection opened before a reload keeps working after it, on the
    generation (and certificate) it was accepted with; a new one gets the
    new certificate."""
    a = leaf_a(pki)
    chain, key = site(tmp_path, pki, a)
    port = free_port()
    p = start_postern(config([listener("ka", port, "builtin:info", tls=site_tls(pki, chain, key),
                                       alpn=["http/1.1"])]), [port])
    log = Log(p)
    ctx = client_context(pki)
    with connect_tls(port, "example.test", ctx) as old:
        assert norm(info_serial(http_get(old))) == norm(a.serial)
        install(leaf_b.chain, leaf_b.key, chain, key)
        line = line_at(log, sighup(p, log))
        assert "replaced (serial" in line and norm(leaf_b.serial) in line.upper(), (
            "the reload line must say the certificate was replaced, with the new serial: " + line)
        with connect_tls(port, "example.test", ctx) as new:
            assert norm(info_serial(http_get(new))) == norm(leaf_b.serial), p.context()
        assert norm(info_serial(http_get(old))) == norm(a.serial), (
            "the kept-alive connection must still be served under its old generation" + p.context())
        # A second reload while it is still open: it goes on.
        install(a.chain, a.key, chain, key)
        sighup(p, log)
        assert norm(info_serial(http_get(old))) == norm(a.serial), p.context()


def test_second_sighup_during_reload_is_not_lost(pki, start_postern, tmp_path):
    """SIGHUPs that arrive while a reload runs are coalesced into one more
    reload, which reads the configuration as it is after the last signal."""
    port = free_port()
    ca = slow_ca_file(pki, tmp_path)

    def text(max_conns):
        return config([listener("q", port, "builtin:info", tls=tls_with_ca(pki, ca),
                                max_connections=max_conns)])

    p = start_postern(text(10000), [port])
    log = Log(p)
    start = log.mark()
    p.signal(signal.SIGHUP)
    time.sleep(0.01)
    tmp = p.config_path.with_suffix(".new")
    tmp.write_text(text(5000))
    os.replace(tmp, p.config_path)
    p.signal(signal.SIGHUP)
    p.signal(signal.SIGHUP)
    first = log.wait(OK_RE, start)
    queued = log.findall(r"SIGHUP: a reload is in progress: one more follows it", start)
    assert queued and start + queued[0].start() < first.start(), (
        "the later SIGHUPs must arrive while the first reload runs" + p.context())
    log.wait(r"reload ok \(SIGHUP\): generation 3", start)
    time.sleep(0.3)
    oks = log.findall(OK_RE, start)
    assert len(oks) == 2, f"three SIGHUPs during one reload: expected 2 reloads, got {len(oks)}" + p.context()
    # The queued reload reads the file as it is after the last SIGHUP. On a
    # loaded machine the first reload may itself read the file only after
    # the rewrite (then the second finds nothing changed): either way the
    # change is live and no SIGHUP was lost.
    lines = [log.text[start + m.start():].splitlines()[0] for m in oks]
    assert any("max_connections 5000 (was 10000)" in line for line in lines), (
        "the queued reload must read the file as it was after the last SIGHUP: "
        + " | ".join(lines))


def test_sigterm_during_reload_still_drains(pki, start_postern, backend, tmp_path):
    """SIGTERM while a reload is being built: the reload is dropped, an open
    connection still finishes, and postern exits 0 (LeakSanitizer clean)."""
    echo = backend.echo()
    port = free_port()
    ca = slow_ca_file(pki, tmp_path)
    p = start_postern(config([listener("d", port, echo.addr, tls=tls_with_ca(pki, ca))],
                             shutdown_timeout="10s"), [port])
    log = Log(p)
    with connect_tls(port, "example.test", client_context(pki)) as s:
        s.sendall(b"before\n")
        assert recv_exact(s, 7) == b"before\n"
        start = log.mark()
        p.signal(signal.SIGHUP)
        log.wait(r"reload \(SIGHUP\): reading", start)
        p.signal(signal.SIGTERM)
        log.wait(r"shutting down", start)
        time.sleep(0.5)
        assert not log.findall(OK_RE, start), "a reload must not commit once shutting down" + p.context()
        assert p.proc.poll() is None, "postern exited with a connection still open" + p.context()
        s.sendall(b"after\n")
        assert recv_exact(s, 6) == b"after\n", p.context()
    assert p.wait(10) is not None, "postern did not exit after its last connection" + p.context()
    p.check_exit()


# ------------------------------------------------------- refused reloads --

BAD_RELOADS = {
    # case: (how to break it, words of the error line)
    "broken-cert-file": ("files", ["example.chain.pem"]),
    "mismatched-key": ("files", ["does not match"]),
    "missing-intermediate": ("files", ["incomplete chain", "Postern Dev Intermediate CA"]),
    "expired-leaf": ("files", ["expired"]),
    "invalid-yaml": ("config", ["YAML syntax error"]),
    "missing-file": ("config", ["cannot read", "No such file"]),
    "port-in-use": ("config", ["cannot listen on", "Address already in use"]),
}


@pytest.mark.parametrize("case", list(BAD_RELOADS))
def test_refused_reload_keeps_old_generation(pki, leaf_b, start_postern, tmp_path, case):
    a = leaf_a(pki)
    chain, key = site(tmp_path, pki, a)
    port = free_port()
    good = config([listener("r", port, "builtin:info", tls=site_tls(pki, chain, key))])
    p = start_postern(good, [port])
    log = Log(p)
    blocker = None
    kind, words = BAD_RELOADS[case]
    if case == "broken-cert-file":
        chain.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    elif case == "mismatched-key":
        install(a.chain, pki.key("mismatch"), chain, key)
    elif case == "missing-intermediate":
        install(pki.cert("example.test"), a.key, chain, key)
    elif case == "expired-leaf":
        # An expired example.test-less leaf: the expired PKI leaf itself.
        install(pki.chain("expired"), pki.key("expired"), chain, key)
    elif case == "invalid-yaml":
        p.config_path.write_text(good.replace("listeners:", "listeners: [", 1))
    elif case == "missing-file":
        p.config_path.write_text(good.replace(str(chain), str(tmp_path / "gone.chain.pem")))
    elif case == "port-in-use":
        blocker = socket.socket()
        blocker.bind((HOST, 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        p.config_path.write_text(config([
            listener("r", port, "builtin:info", tls=site_tls(pki, chain, key)),
            listener("taken", taken, "builtin:info", pki)]))
    try:
        start = log.mark()
        m = sighup(p, log, expect="failed")
        text = log.text[start:]
        lines = [ln for ln in text.splitlines() if " ERROR " in ln]
        hit = [ln for ln in lines if all(w.lower() in ln.lower() for w in words)]
        assert hit, f"{case}: expected an error line with {words}" + p.context()
        if kind == "files":
            # Certificate problems point at the config line naming the file.
            assert any(re.search(rf"{re.escape(str(p.config_path))}:\d+:\d+: "
                                 rf"listeners\[0\]\.tls\.certificates\[0\]: ", ln) for ln in hit), (
                f"{case}: the error must name the config file and line" + p.context())
        else:
            assert any(re.search(rf"{re.escape(str(p.config_path))}(:\d+:\d+)?: ", ln) for ln in hit), (
                f"{case}: the error must name the config file (and line)" + p.context())
        assert m.group("gen") == "1" and m.group("n") == "1", m.group(0)
        assert p.proc.poll() is None, "postern must keep running" + p.context()
        assert norm(served_serial(port)) == norm(a.serial), (
            f"{case}: the old certificate must still be served" + p.context())
        # Fixed: the next reload goes through.
        p.config_path.write_text(good)
        install(leaf_b.chain, leaf_b.key, chain, key)
        m = sighup(p, log)
        assert m.group("gen") == "2", m.group(0)
        assert norm(served_serial(port)) == norm(leaf_b.serial), p.context()
        # The counters logged at exit count both.
        p.stop()
        assert re.search(r"counters: .*\breloads=1 reloads_failed=1\b", p.stderr()), p.context()
    finally:
        if blocker is not None:
            blocker.close()


# ------------------------------------------------------ listener changes --

def test_listener_added_and_removed(pki, start_postern, backend, tmp_path):
    """A reload that adds one listener and removes another: the new port
    accepts, the removed port refuses while its open connection drains, and
    the listener kept never refuses a connection meanwhile."""
    echo = backend.echo()
    p_keep, p_old, p_new = free_port(), free_port(), free_port()
    p = start_postern(config([listener("keep", p_keep, echo.addr, pki),
                              listener("old", p_old, echo.addr, pki)]), [p_keep, p_old])
    log = Log(p)
    refused = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            try:
                socket.create_connection((HOST, p_keep), timeout=2).close()
            except ConnectionRefusedError as e:
                refused.append(e)
            except OSError:
                pass
            time.sleep(0.002)

    ctx = client_context(pki)
    t = threading.Thread(target=probe, daemon=True)
    with connect_tls(p_old, "example.test", ctx) as on_old, connect_tls(p_keep, "example.test", ctx) as on_keep:
        on_old.sendall(b"1\n")
        assert recv_exact(on_old, 2) == b"1\n"
        t.start()
        time.sleep(0.2)
        p.config_path.write_text(config([listener("keep", p_keep, echo.addr, pki, alpn=["x-new"]),
                                         listener("new", p_new, echo.addr, pki)]))
        m = sighup(p, log)
        time.sleep(0.2)
        stop.set()
        t.join()
        full = line_at(log, m)
        assert f"listener new added on {HOST}:{p_new}" in full, full
        assert f"listener old removed from {HOST}:{p_old}" in full, full
        assert "listener keep: settings changed: alpn" in full, full
        assert not refused, f"{len(refused)} connections to the kept listener were refused" + p.context()
        with connect_tls(p_new, "example.test", ctx) as s:
            s.sendall(b"new\n")
            assert recv_exact(s, 4) == b"new\n", p.context()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, p_old), timeout=2)
        # Connections of the removed listener and of the kept one go on.
        on_old.sendall(b"2\n")
        assert recv_exact(on_old, 2) == b"2\n", "the removed listener's connection must drain" + p.context()
        on_keep.sendall(b"3\n")
        assert recv_exact(on_keep, 2) == b"3\n", p.context()


# ---------------------------------------------------------------- tickets --

def test_session_ticket_survives_reload(pki, leaf_b, start_postern, tmp_path):
    a = leaf_a(pki)
    chain, key = site(tmp_path, pki, a)
    port = free_port()
    p = start_postern(config([listener("t", port, "builtin:info", tls=site_tls(pki, chain, key),
                                       alpn=["http/1.1"])]), [port])
    log = Log(p)
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3

    sess, reused = _resume(port, ctx)
    assert not reused and sess is not None and sess.has_ticket, "no session ticket was issued"
    install(leaf_b.chain, leaf_b.key, chain, key)
    sighup(p, log)
    _, reused = _resume(port, ctx, sess)
    assert reused, "a session made before the reload must resume after it" + p.context()


@pytest.mark.deadline(30)
def test_watch_ticket_key_file(pki, start_postern, tmp_path):
    """watch: true also follows a ticket_keys file: a new key appended (the
    old one kept for tickets already out) reloads once, and a session made
    before still resumes."""
    keys = tmp_path / "tickets.keys"
    keys.write_text(ticket_key_line() + "\n")
    os.chmod(keys, 0o600)
    port = free_port()
    tls = site_tls(pki, pki.chain("example.test"), pki.key("example.test"), ticket_keys=str(keys))
    p = start_postern(config([listener("tk", port, "builtin:info", tls=tls, alpn=["http/1.1"])],
                             watch=True, watch_debounce="300ms"), [port])
    log = Log(p)
    log.wait(r"watch: on")
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    sess, _ = _resume(port, ctx)
    start = log.mark()
    tmp = keys.with_suffix(".new")
    tmp.write_text(keys.read_text() + ticket_key_line() + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, keys)
    log.wait(r"reload ok \(watch: [^)]*tickets\.keys changed\)", start, timeout=10)
    time.sleep(1)
    assert len(log.findall(OK_RE, start)) == 1, p.context()
    _, reused = _resume(port, ctx, sess)
    assert reused, "a ticket sealed with a key still in the file must resume" + p.context()


# ------------------------------------------------------------------ watch --

@pytest.mark.deadline(30)
def test_watch_cert_and_key_replaced_reload_once(pki, leaf_b, start_postern, tmp_path):
    """watch: true; the certificate, then its key, are overwritten in place
    0.4 s apart (as `cp` does): one reload, after the 1 s debounce."""
    a = leaf_a(pki)
    chain, key = site(tmp_path, pki, a)
    port = free_port()
    p = start_postern(config([listener("w", port, "builtin:info", tls=site_tls(pki, chain, key))],
                             watch=True), [port])
    log = Log(p)
    log.wait(r"watch: on")
    start = log.mark()
    t0 = time.monotonic()
    chain.write_bytes(Path(leaf_b.chain).read_bytes())
    time.sleep(0.4)
    key.write_bytes(Path(leaf_b.key).read_bytes())
    log.wait(r"reload ok \(watch: [^)]*\)", start, timeout=10)
    took = time.monotonic() - t0
    time.sleep(2.5)
    oks = log.findall(OK_RE, start)
    fails = log.findall(FAILED_RE, start)
    assert len(oks) == 1 and not fails, (
        f"expected exactly one reload, got {len(oks)} ok and {len(fails)} failed" + p.context())
    assert 1.2 <= took <= 4, f"reload {took:.1f}s after the first write; expected after the 1 s debounce"
    assert norm(served_serial(port)) == norm(leaf_b.serial), p.context()


def secret_version(vol, name, leaf):
    """Writes one version of a Kubernetes Secret volume: vol/name holding
    the leaf's chain and key as tls.crt and tls.key. Returns its path."""
    d = vol / name
    d.mkdir(parents=True)
    shutil.copyfile(leaf.chain, d / "tls.crt")
    shutil.copyfile(leaf.key, d / "tls.key")
    return d


def secret_swap(vol, old, name, leaf):
    """Updates the volume the way the kubelet does: writes the new version,
    points ..data_tmp at it, renames ..data_tmp over ..data (one atomic
    step for every file behind the tls.* links) and deletes the old
    version. Returns the new version's path."""
    new = secret_version(vol, name, leaf)
    os.symlink(name, vol / "..data_tmp")
    os.replace(vol / "..data_tmp", vol / "..data")
    shutil.rmtree(old)
    return new


@pytest.mark.deadline(30)
def test_watch_symlink_swap_reload_once(pki, leaf_b, start_postern, tmp_path):
    """A Kubernetes Secret volume: tls.crt -> ..data/tls.crt, ..data ->
    ..2024_v1; the update writes ..2024_v2, points ..data_tmp at it, renames
    ..data_tmp over ..data and deletes ..2024_v1. One reload."""
    a = leaf_a(pki)
    vol = tmp_path / "secret"
    v1 = secret_version(vol, "..2024_v1", a)
    os.symlink("..2024_v1", vol / "..data")
    os.symlink("..data/tls.crt", vol / "tls.crt")
    os.symlink("..data/tls.key", vol / "tls.key")
    port = free_port()
    p = start_postern(config([listener("k8s", port, "builtin:info",
                                       tls=site_tls(pki, vol / "tls.crt", vol / "tls.key"))],
                             watch=True), [port])
    log = Log(p)
    log.wait(r"watch: on")
    assert norm(served_serial(port)) == norm(a.serial)
    start = log.mark()
    v2 = secret_swap(vol, v1, "..2024_v2", leaf_b)
    log.wait(r"reload ok \(watch: [^)]*\)", start, timeout=10)
    time.sleep(2.5)
    oks = log.findall(OK_RE, start)
    assert len(oks) == 1 and not log.findall(FAILED_RE, start), (
        f"expected exactly one reload, got {len(oks)}" + p.context())
    assert norm(served_serial(port)) == norm(leaf_b.serial), p.context()
    # And the watch follows the new target: a second swap reloads again.
    start = log.mark()
    secret_swap(vol, v2, "..2024_v3", a)
    log.wait(r"reload ok \(watch: [^)]*\)", start, timeout=10)
    assert norm(served_serial(port)) == norm(a.serial), p.context()


# ---------------------------------------------------------- 1,000 reloads --

@pytest.mark.deadline(150)
def test_thousand_reloads_no_fd_or_memory_growth(pki, leaf_b, postern_bin, tmp_path, monkeypatch):
    """1,000 reloads in a row, alternating two certificates and adding and
    removing a listener each time: the number of open file descriptors comes
    back to where it was and RSS stays within a small bound."""
    from conftest import PosternFactory
    # ASan keeps freed memory in a quarantine (256 MiB by default) that would
    # look like growth: make it small for this process.
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1")
    a = leaf_a(pki)
    chain, key = site(tmp_path, pki, a)
    port, extra = free_port(), free_port()
    base = [listener("main", port, "builtin:info", tls=site_tls(pki, chain, key))]
    texts = [config(base), config(base + [listener("extra", extra, "builtin:info", pki)])]
    factory = PosternFactory(postern_bin, tmp_path)
    try:
        p = factory(texts[0], [port])
        log = Log(p)
        sets = [a, leaf_b]
        samples = {}
        t0 = time.monotonic()
        for i in range(1, 1001):
            new = sets[i % 2]
            install(new.chain, new.key, chain, key)
            tmp = p.config_path.with_suffix(".new")
            tmp.write_text(texts[i % 2])
            os.replace(tmp, p.config_path)
            m = sighup(p, log)
            assert m.group("gen") == str(i + 1), m.group(0)
            if i in (100, 550, 1000):
                # Even i: the extra listener is gone, as at the start.
                time.sleep(0.05)
                samples[i] = (fd_count(p.pid), rss_kib(p.pid))
        elapsed = time.monotonic() - t0
        (fd100, rss100), (fd550, rss550), (fd1000, rss1000) = samples[100], samples[550], samples[1000]
        print(f"1000 reloads in {elapsed:.1f}s ({elapsed:.1f} ms each); fds {fd100} -> {fd550} -> "
              f"{fd1000}; RSS {rss100} -> {rss550} -> {rss1000} KiB")
        assert fd1000 <= fd100 and fd550 <= fd100, (
            f"open fds grew from {fd100} to {fd550} to {fd1000} over 900 reloads" + p.context())
        # Measured: about +4 MiB over reloads 100..550, +1.5 MiB over 550..1000:
        # the ASan allocator's caches filling up, levelling off. A generation
        # leaked or kept per reload (tens of KiB at least) grows linearly.
        # Under TSan (make tsan) the first step is +9.5 MiB (its allocator and
        # shadow memory), the second +0.8 to 1.5 MiB: the second bound still
        # catches a leak there.
        first = 16 * 1024 if "libtsan" in Path(f"/proc/{p.pid}/maps").read_text() else 10 * 1024
        assert rss1000 - rss100 < first and rss1000 - rss550 < 4 * 1024, (
            f"RSS {rss100} -> {rss550} -> {rss1000} KiB at reloads 100, 550, 1000")
        assert norm(served_serial(port)) == norm(a.serial)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, extra), timeout=2)
    finally:
        factory.finish()


# ----------------------------------------------------- certificate checks --

def check(postern_bin, tmp_path, text):
    path = tmp_path / "check.yaml"
    path.write_text(text)
    r = run_postern(postern_bin, "-t", "-c", path)
    out = r.stdout + r.stderr
    assert not sanitizer_report(out), out
    return r.returncode, out, path


def test_check_four_certificate_diagnostics(postern_bin, pki, tmp_path):
    """`postern -t` says what is wrong and how to fix it, in one line, for
    the four mistakes users make most. Asserted word for word on the part
    that does not depend on dates and paths."""
    def one(chain, key, **extra):
        tls = {"versions": ["tls1.3"], "certificates": [{"cert": str(chain), "key": str(key)}],
               "ca_file": str(pki.root)}
        return config([listener("c", free_port(), "builtin:info", tls=tls, **extra)])

    cases = {
        "expired": (one(pki.chain("expired"), pki.key("expired")), 1,
                    rf"^  error: {re.escape(str(pki.chain('expired')))}: certificate "
                    r"CN=expired\.example\.test, O=Postern Dev expired on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
                    r"UTC \(10 days ago\): renew it, then reload \(SIGHUP\)$"),
        "hostname-mismatch": (
            one(pki.chain("example.test"), pki.key("example.test"),
                routes=[{"names": ["shop.example.test"], "backend": "builtin:info"}]), 0,
            r"^warning: .*check\.yaml:\d+:\d+: listeners\[0\]\.routes\[0\]: no certificate covers "
            r"shop\.example\.test: clients will get the default certificate and report a hostname "
            r"mismatch; add a certificate for it to tls\.certificates, or remove the name from "
            r"the route$"),
        "self-signed": (one(pki.chain("selfsigned"), pki.key("selfsigned")), 1,
                        rf"^  error: {re.escape(str(pki.chain('selfsigned')))}: certificate "
                        r"CN=selfsigned\.example\.test, O=Postern Dev is self-signed: clients will "
                        r"not trust it; use a certificate issued by a CA \(or list its own file as "
                        r"ca_file for testing\)$"),
        "incomplete-chain": (one(pki.chain("nointermediate"), pki.key("nointermediate")), 1,
                             rf"^  error: {re.escape(str(pki.chain('nointermediate')))}: incomplete "
                             r"chain: the issuer \"CN=Postern Dev Intermediate CA, O=Postern Dev\" of "
                             r"CN=localhost, O=Postern Dev is missing: append that intermediate "
                             rf"certificate to {re.escape(str(pki.chain('nointermediate')))} after "
                             r"the leaf$"),
    }
    for name, (text, rc_want, rx) in cases.items():
        sub = tmp_path / name
        sub.mkdir()
        rc, out, _ = check(postern_bin, sub, text)
        assert rc == rc_want, f"{name}: exit {rc}, expected {rc_want}\n{out}"
        assert re.search(rx, out, re.M), f"{name}: no line matching\n  {rx}\nin:\n{out}"


def test_expiry_warning_at_start_and_every_reload(pki, start_postern, tmp_path):
    """A leaf within expiry_warn_days is a warning at start and at each reload
    (the PKI's leaves have 90 days: a 100-day window catches them)."""
    port = free_port()
    p = start_postern(config([listener("e", port, "builtin:info", pki)], expiry_warn_days=100), [port])
    log = Log(p)
    rx = (r" WARN .*listeners\[0\]\.tls\.certificates\[0\]: .*example\.test\.chain\.pem: certificate "
          r"CN=example\.test, O=Postern Dev expires on .* \(in (89|90) days\): renew it, then reload")
    log.wait(rx)
    start = log.mark()
    sighup(p, log)
    log.wait(rx, start)
    # With the default window (21 days) there is nothing to say.
    p.config_path.write_text(config([listener("e", port, "builtin:info", pki)]))
    start = log.mark()
    m = sighup(p, log)
    assert "expiry_warn_days 21 (was 100)" in line_at(log, m)
    assert not log.findall(r" WARN .*expires on", start), p.context()


@pytest.mark.deadline(90)
def test_sighup_as_soon_as_the_port_answers(postern_bin, pki, tmp_path):
    """A SIGHUP sent the moment a listener answers (a deploy script, a test)
    reloads: the handled signals are blocked from before the listeners
    listen until their handlers are set, instead of killing postern with
    SIGHUP's default action. Ten starts, each signalled as early as it can
    be; the window was a few hundred microseconds wide."""
    for i in range(10):
        port = free_port()
        cfg = tmp_path / f"p{i}.yaml"
        cfg.write_text(config([listener("r", port, "builtin:info", pki)], workers=1,
                              log_level="info"))
        err = tmp_path / f"p{i}.stderr"
        with open(err, "wb") as f:
            proc = subprocess.Popen([postern_bin, "-c", str(cfg)], stdout=f, stderr=f)
        try:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, err.read_text()
                try:
                    socket.create_connection((HOST, port), timeout=0.5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "postern never listened"
                    time.sleep(0.0005)
            proc.send_signal(signal.SIGHUP)
            while "reload ok" not in err.read_text():
                assert proc.poll() is None, f"killed by the SIGHUP: {proc.returncode}\n" + \
                    err.read_text()
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.01)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            rc = proc.wait(15)
        assert rc == 0, err.read_text()
        assert not sanitizer_report(err.read_text()), err.read_text()
