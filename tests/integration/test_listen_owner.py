"""Only one postern listens on an address: postern's workers share each
listening port through SO_REUSEPORT, which would also let a second postern
(or any process of the same user with SO_REUSEPORT) join the port and take
a share of its connections. A second instance started on a running one's
address fails at start with "address already in use", naming the listener; a
reload whose new listener is on an address another process holds fails and
keeps serving; reloads that keep listeners still work."""

import signal
import socket
import subprocess
import time

import pytest

from clients import HOST, client_context, config, connect_tls, free_port, listener, recv_exact
from test_reload import Log, sighup


def start_second(postern_bin, tmp_path, text, timeout=10):
    """Runs another postern on config text; returns (exit code, stderr). A
    postern still running after timeout is stopped and the test fails: it
    started on an address another process holds."""
    path = tmp_path / "second.yaml"
    path.write_text(text)
    proc = subprocess.Popen([postern_bin, "-c", str(path)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        raise AssertionError("a second postern started on an address in use:\n"
                             + out.decode(errors="replace")[-3000:])
    return proc.returncode, out.decode(errors="replace")


def echo_ok(port, pki):
    with connect_tls(port, "example.test", client_context(pki)) as s:
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"


def reuseport_listener(port):
    """A foreign listening socket with SO_REUSEPORT, as another postern (or
    nginx with reuseport) would hold."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((HOST, port))
    s.listen(16)
    return s


def test_second_instance_refused(start_postern, postern_bin, tmp_path, pki, backend):
    echo = backend.echo()
    port = free_port()
    text = config([listener("first", port, echo.addr, pki)])
    p = start_postern(text, [port])
    rc, out = start_second(postern_bin, tmp_path, text.replace("name: first", "name: second"))
    assert rc != 0, out
    assert "address already in use" in out and 'listener "second"' in out, out
    assert f"{HOST}:{port}" in out, out
    # The first one still has the port to itself and serves.
    for _ in range(5):
        echo_ok(port, pki)
    assert "address already in use" not in p.stderr()


def test_foreign_reuseport_socket_refused(postern_bin, tmp_path, pki, backend):
    echo = backend.echo()
    port = free_port()
    holder = reuseport_listener(port)
    try:
        rc, out = start_second(postern_bin, tmp_path,
                               config([listener("taken", port, echo.addr, pki)]))
    finally:
        holder.close()
    assert rc != 0 and "address already in use" in out and 'listener "taken"' in out, out


def test_reload_new_listener_on_taken_address(start_postern, tmp_path, pki, backend):
    echo = backend.echo()
    port, port2 = free_port(), free_port()
    p = start_postern(config([listener("kept", port, echo.addr, pki)]), [port])
    log = Log(p)
    holder = reuseport_listener(port2)
    try:
        p.config_path.write_text(config([listener("kept", port, echo.addr, pki),
                                         listener("added", port2, echo.addr, pki)]))
        m = sighup(p, log, expect="failed")
        assert "address already in use" in m.group("cause") and 'listener "added"' in m.group(
            "cause"), m.group(0)
        echo_ok(port, pki)
    finally:
        holder.close()
    # Once the address is free, the same reload goes through; kept
    # listeners are not probed (their sockets are postern's own).
    sighup(p, log, expect="ok")
    echo_ok(port, pki)
    echo_ok(port2, pki)
    sighup(p, log, expect="ok")
    echo_ok(port2, pki)
