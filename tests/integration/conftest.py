"""Fixtures for postern's integration tests: a PKI made at run time by
conf/mkpki.sh plus the broken certificates the checks need, the postern
process itself (started with an inline config, stopped with SIGTERM and
checked for a clean exit and clean sanitizer output), helper backends, and a
per-test deadline.

Run with `make integration` (POSTERN_BIN = the ASan+UBSan binary) or
`POSTERN_BIN=build/asan/postern /usr/bin/python3 -m pytest tests/integration`."""

import datetime
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import backends
import clients
import http_backends

REPO = Path(__file__).resolve().parents[2]
POSTERN_BIN = os.environ.get("POSTERN_BIN", str(REPO / "build" / "asan" / "postern"))
DEFAULT_DEADLINE = 60  # seconds per test, setup and teardown included
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "LeakSanitizer", "runtime error:", "ThreadSanitizer")

# Sanitizer settings when pytest is run by hand rather than through make.
os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "deadline(seconds): fail the test when it runs longer (default 60 s)")
    config.addinivalue_line(
        "markers", "bulk: long transfers (GiB); select with -m bulk, skip with -m 'not bulk'")


class DeadlineExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def _deadline(request):
    """Fails a test that runs past its deadline (SIGALRM in the main thread,
    so it interrupts blocking socket and subprocess calls)."""
    marker = request.node.get_closest_marker("deadline")
    seconds = int(marker.args[0]) if marker else DEFAULT_DEADLINE

    def on_alarm(signum, frame):
        raise DeadlineExceeded(f"test ran longer than its {seconds} s deadline")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------ PKI --

class Pki:
    """Paths of the test PKI. Good leaves come from conf/mkpki.sh; the broken
    ones are added by _make_bad_certs."""

    def __init__(self, d):
        self.dir = Path(d)
        self.root = self.dir / "root.pem"
        self.intermediate = self.dir / "intermediate.pem"

    def chain(self, name):
        return self.dir / f"{name}.chain.pem"

    def cert(self, name):
        return self.dir / f"{name}.cert.pem"

    def key(self, name):
        return self.dir / f"{name}.key.pem"


def _run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n"
                           f"{p.stdout.decode(errors='replace')}")
    return p.stdout.decode(errors="replace")


def _ec_key(path):
    _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
          "-pkeyopt", "ec_param_enc:named_curve", "-out", str(path)])
    os.chmod(path, 0o600)


def _make_bad_certs(pki):
    d = pki.dir
    work = d / "ca-work"
    work.mkdir()
    (work / "index.txt").write_text("")
    req_cnf = work / "req.cnf"
    req_cnf.write_text("[req]\ndistinguished_name = dn\n[dn]\n")

    # Expired leaf, signed by the real intermediate: `openssl x509 -req` of
    # OpenSSL 3.0 cannot set a start date in the past, `openssl ca` can.
    (work / "ca.cnf").write_text(f"""
[ca]
default_ca = ca_default
[ca_default]
database = {work}/index.txt
new_certs_dir = {work}
certificate = {pki.intermediate}
private_key = {d}/intermediate.key.pem
rand_serial = yes
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[policy_any]
organizationName = optional
commonName = supplied
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:expired.example.test
""")
    _ec_key(pki.key("expired"))
    _run(["openssl", "req", "-new", "-config", str(req_cnf), "-key", str(pki.key("expired")),
          "-subj", "/O=Postern Dev/CN=expired.example.test", "-out", str(work / "expired.csr")])
    now = datetime.datetime.now(datetime.timezone.utc)
    fmt = "%Y%m%d%H%M%SZ"
    _run(["openssl", "ca", "-batch", "-notext", "-config", str(work / "ca.cnf"),
          "-extensions", "leaf",
          "-startdate", (now - datetime.timedelta(days=100)).strftime(fmt),
          "-enddate", (now - datetime.timedelta(days=10)).strftime(fmt),
          "-in", str(work / "expired.csr"), "-out", str(pki.cert("expired"))])
    pki.chain("expired").write_text(pki.cert("expired").read_text() + pki.intermediate.read_text())

    # Self-signed leaf (CA:FALSE, valid dates, a proper SAN: only "self-signed"
    # is wrong with it).
    _ec_key(pki.key("selfsigned"))
    _run(["openssl", "req", "-new", "-x509", "-config", str(req_cnf),
          "-key", str(pki.key("selfsigned")), "-days", "90", "-sha256",
          "-subj", "/O=Postern Dev/CN=selfsigned.example.test",
          "-addext", "basicConstraints=critical,CA:FALSE",
          "-addext", "keyUsage=critical,digitalSignature",
          "-addext", "extendedKeyUsage=serverAuth",
          "-addext", "subjectAltName=DNS:selfsigned.example.test",
          "-out", str(pki.cert("selfsigned"))])
    pki.chain("selfsigned").write_text(pki.cert("selfsigned").read_text())

    # Chain without its intermediate: the localhost leaf alone, with its key.
    pki.chain("nointermediate").write_text(pki.cert("localhost").read_text())
    pki.key("nointermediate").write_bytes(pki.key("localhost").read_bytes())
    os.chmod(pki.key("nointermediate"), 0o600)

    # A key that belongs to no certificate: paired with example.test's chain.
    _ec_key(pki.key("mismatch"))


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki") / "pki"
    _run([str(REPO / "conf" / "mkpki.sh"), str(d)])
    p = Pki(d)
    _make_bad_certs(p)
    return p


# -------------------------------------------------------------- postern --

@pytest.fixture(scope="session")
def postern_bin():
    if not os.access(POSTERN_BIN, os.X_OK):
        pytest.skip(f"postern binary {POSTERN_BIN} not built (make build/asan/postern)")
    return POSTERN_BIN


def run_postern(bin_path, *args, timeout=20):
    """Runs postern to completion (-t, --version, failing configs). Returns
    CompletedProcess with text stdout and stderr."""
    return subprocess.run([bin_path, *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def sanitizer_report(text):
    """The sanitizer markers found in text, empty when clean."""
    return [m for m in SANITIZER_MARKS if m in text]


class Postern:
    """One running postern: writes config_text to workdir/postern.yaml, starts
    `postern -c` with stderr to a file, and waits for the listen ports."""

    def __init__(self, bin_path, workdir, config_text, ports, extra_args=()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "postern.yaml"
        self.config_path.write_text(config_text)
        self.ports = list(ports)
        self.stderr_path = self.workdir / "postern.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([bin_path, "-c", str(self.config_path), *extra_args],
                                     stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=self._stderr)
        self.returncode = None
        self._wait_ready(10)

    @property
    def pid(self):
        return self.proc.pid

    def stderr(self):
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def wait_log(self, pattern, timeout=10):
        """The first match of the regular expression pattern in the log,
        waiting for it up to timeout seconds (AssertionError after)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.stderr())
            if m:
                return m
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout}s" + self.context())

    def context(self):
        """Config and output, for assertion messages."""
        return (f"\n--- config {self.config_path}:\n{self.config_path.read_text()}"
                f"--- postern stderr:\n{self.stderr()[-6000:]}")

    def _wait_ready(self, seconds):
        deadline = time.monotonic() + seconds
        pending = set(self.ports)
        while pending:
            rc = self.proc.poll()
            if rc is not None:
                self._stderr.close()
                raise AssertionError(f"postern exited with {rc} during start-up" + self.context())
            for port in list(pending):
                try:
                    socket.create_connection((clients.HOST, port), timeout=0.5).close()
                    pending.discard(port)
                except OSError:
                    pass
            if pending:
                if time.monotonic() > deadline:
                    self.kill()
                    raise AssertionError(
                        f"postern did not listen on {sorted(pending)} within {seconds}s"
                        + self.context())
                time.sleep(0.05)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code, or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=15):
        """SIGTERM, wait, and assert exit code 0 and clean sanitizer output.
        Safe to call twice: a postern that already exited is only checked."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.kill()
                raise AssertionError(f"postern did not exit within {timeout}s of SIGTERM"
                                     + self.context())
        self.returncode = self.proc.returncode
        self.check_exit()

    def check_exit(self):
        text = self.stderr()
        assert self.returncode == 0, (
            f"postern exited with {self.returncode}, expected 0" + self.context())
        found = sanitizer_report(text)
        assert not found, f"sanitizer reported {found}" + self.context()

    def close(self):
        self.kill()
        if not self._stderr.closed:
            self._stderr.close()


class PosternFactory:
    """Starts posterns for one test or module and stops them all at the end,
    checking each for a clean exit."""

    def __init__(self, bin_path, base):
        self.bin = bin_path
        self.base = Path(base)
        self.started = []

    def __call__(self, config_text, ports, extra_args=()):
        workdir = self.base / f"postern{len(self.started)}"
        p = Postern(self.bin, workdir, config_text, ports, extra_args)
        self.started.append(p)
        return p

    def finish(self):
        errors = []
        for p in self.started:
            try:
                p.stop()
            except AssertionError as e:
                errors.append(str(e))
            finally:
                p.close()
        assert not errors, "\n\n".join(errors)


@pytest.fixture
def start_postern(postern_bin, tmp_path):
    """start_postern(config_text, ports) -> Postern; stopped and checked at
    the end of the test."""
    f = PosternFactory(postern_bin, tmp_path)
    yield f
    f.finish()


@pytest.fixture(scope="module")
def module_postern(postern_bin, tmp_path_factory):
    """Like start_postern, shared by the tests of one module."""
    f = PosternFactory(postern_bin, tmp_path_factory.mktemp("postern"))
    yield f
    f.finish()


# ------------------------------------------------------------- backends --

class Backends:
    def __init__(self):
        self.servers = []

    def _add(self, s):
        self.servers.append(s)
        return s

    def echo(self):
        return self._add(backends.echo_server())

    def banner(self, text):
        return self._add(backends.banner_server(text))

    def sink(self):
        return self._add(backends.sink_server())

    def say_and_close(self, text):
        return self._add(backends.say_and_close_server(text))

    def black_hole(self):
        return self._add(backends.BlackHole())

    def close(self):
        for s in self.servers:
            s.close()


@pytest.fixture
def backend():
    b = Backends()
    yield b
    b.close()


@pytest.fixture(scope="module")
def module_backend():
    b = Backends()
    yield b
    b.close()


@pytest.fixture
def http_servers():
    """HTTP-mode backends (http_backends.HttpBackends), closed after the test."""
    b = http_backends.HttpBackends()
    yield b
    b.close()


@pytest.fixture(scope="module")
def module_http_servers():
    b = http_backends.HttpBackends()
    yield b
    b.close()
