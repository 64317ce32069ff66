"""systemd's notification protocol (sd_notify(3), Type=notify): the test
plays the service manager with its own NOTIFY_SOCKET, a datagram socket,
and reads every message postern sends: READY=1 once it serves, RELOADING=1
with MONOTONIC_USEC then READY=1 around a SIGHUP, the refusal in STATUS=
when a reload fails, STOPPING=1 and the connections left at SIGTERM. Also
the unit file in conf/, checked by systemd-analyze verify."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from clients import client_context, config, connect_tls, free_port, listener, recv_exact

REPO = Path(__file__).resolve().parents[2]


class Manager:
    """The service manager's end: an AF_UNIX datagram socket, bound to a path
    or (abstract=True) to an abstract name."""

    def __init__(self, directory, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"postern-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = Path(directory) / "notify.sock"
            self.sock.bind(str(path))
            self.address = str(path)
        self.messages = []

    def recv(self, timeout=10):
        """The next message as a dict of its variables (and the raw text)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no notification within {timeout}s; got so far: {self.messages}")
        text = data.decode()
        self.messages.append(text)
        fields = dict(line.split("=", 1) for line in text.split("\n") if line)
        fields["_raw"] = text
        return fields

    def expect(self, key, timeout=10):
        """Reads messages until one sets key; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv(max(0.1, deadline - time.monotonic()))
            if key in m:
                return m

    def close(self):
        self.sock.close()


@pytest.fixture
def manager(tmp_path):
    m = Manager(tmp_path)
    yield m
    m.close()


def start(start_postern, monkeypatch, manager, text, ports):
    monkeypatch.setenv("NOTIFY_SOCKET", manager.address)
    return start_postern(text, ports)


def mono_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@pytest.mark.deadline(60)
def test_ready_reload_refused_reload_stopping(pki, start_postern, backend, manager, monkeypatch):
    echo = backend.echo()
    port, port2 = free_port(), free_port()
    p = start(start_postern, monkeypatch, manager, config([listener("one", port, echo.addr, pki)]),
              [port])
    m = manager.recv()
    assert m.get("READY") == "1", m
    assert m.get("STATUS") == "serving 1 listener, generation 1", m

    # A reload that works: RELOADING=1 with the monotonic clock, then READY=1.
    p.config_path.write_text(config([listener("one", port, echo.addr, pki),
                                     listener("two", port2, echo.addr, pki)]))
    before = mono_usec()
    p.signal(signal.SIGHUP)
    m = manager.recv()
    after = mono_usec()
    assert m.get("RELOADING") == "1", m
    assert before <= int(m["MONOTONIC_USEC"]) <= after, (before, m, after)
    assert m.get("STATUS") == "reloading (SIGHUP)", m
    m = manager.recv()
    assert m.get("READY") == "1", m
    assert m.get("STATUS") == "serving 2 listeners, generation 2", m

    # A broken file: refused, the status says why, and postern is ready
    # again on the running generation.
    p.config_path.write_text("listeners: [\n")
    p.signal(signal.SIGHUP)
    m = manager.recv()
    assert m.get("RELOADING") == "1", m
    m = manager.recv()
    assert m.get("READY") == "1", m
    status = m.get("STATUS", "")
    assert status.startswith("reload refused: "), m
    assert str(p.config_path) + ":" in status, m
    assert status.endswith("; serving generation 2"), m
    assert "\n" not in status
    with connect_tls(port2, "example.test", client_context(pki)) as s:
        s.sendall(b"still here")
        assert recv_exact(s, 10) == b"still here"
    # That connection is counted until postern has seen it end (its log line).
    deadline = time.monotonic() + 10
    while "listener=two" not in p.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "listener=two" in p.stderr(), p.context()

    # SIGTERM with one connection open: STOPPING=1 and how many drain.
    s = connect_tls(port, "example.test", client_context(pki))
    s.sendall(b"x")
    assert recv_exact(s, 1) == b"x"
    p.signal(signal.SIGTERM)
    m = manager.recv()
    assert m.get("STOPPING") == "1", m
    assert m.get("STATUS") == "draining 1 connection", m
    m = manager.expect("STATUS")  # the progress line, once a second
    assert m["STATUS"] == "draining 1 connection", m
    s.close()
    assert p.wait(10) == 0, p.context()
    p.check_exit()


def test_abstract_socket_and_no_socket(pki, start_postern, backend, tmp_path, monkeypatch):
    """'@' names an abstract socket; without NOTIFY_SOCKET nothing is sent and
    nothing changes; a NOTIFY_SOCKET that names no socket address is an
    error in the log, and postern serves anyway."""
    echo = backend.echo()
    abstract = Manager(tmp_path, abstract=True)
    try:
        port = free_port()
        p = start(start_postern, monkeypatch, abstract,
                  config([listener("one", port, echo.addr, pki)]), [port])
        assert abstract.recv().get("READY") == "1"
        p.stop()
        # The port probe of start_postern may still be open at SIGTERM on a
        # loaded machine: how many is not what this test is about.
        assert re.fullmatch(r"draining [01] connections?",
                            abstract.expect("STOPPING")["STATUS"])
    finally:
        abstract.close()

    monkeypatch.delenv("NOTIFY_SOCKET")
    port = free_port()
    p = start_postern(config([listener("one", port, echo.addr, pki)]), [port])
    p.stop()
    assert "NOTIFY_SOCKET" not in p.stderr()

    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    port = free_port()
    p = start_postern(config([listener("one", port, echo.addr, pki)]), [port])
    p.stop()
    assert "NOTIFY_SOCKET=relative/path: cannot notify the service manager" in p.stderr()


def test_unit_file_verifies(tmp_path):
    """conf/postern.service passes systemd-analyze verify (with the binary
    path it names replaced by one that exists here, since verify checks
    that ExecStart's program is there; --man=no: the man pages it names are
    checked by test_install.py once installed)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    unit = (REPO / "conf" / "postern.service").read_text()
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    d = tmp_path / "units"
    d.mkdir()
    (d / "postern.service").write_text(unit.replace("/usr/local/sbin/postern", "/bin/true"))
    r = subprocess.run([analyze, "verify", "--man=no", str(d / "postern.service")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60,
                       env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})
    out = r.stdout
    if r.returncode != 0 and ("Failed to" in out and "bus" in out.lower()
                              or "System has not been booted with systemd" in out):
        pytest.skip(f"systemd-analyze cannot run in this container: {out.strip()[:300]}")
    problems = [line for line in out.splitlines() if "postern.service" in line]
    assert r.returncode == 0 and not problems, f"systemd-analyze verify:\n{out}"
