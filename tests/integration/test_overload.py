"""Overload (issue 17): a worker bounds the handshake work it owes with
max_handshakes_in_flight (handshakes started and not finished, plus
connections waiting in its listen queue); above it, new connections are shed
at accept: reset at once, before any TLS byte, counted as closed for "shed".
Handshakes already started go on, a well-behaved client gets in once there is
room, and what a flood makes postern hold stays bounded. The bound is a
listener key, checked at load, and a reload applies a new value.

The floods here are deterministic rather than timed: clients that send a
ClientHello and never their Finished hold the handshakes in flight (under a
long handshake timeout), so every connection beyond the bound is shed. No
assertion is on how long anything took."""

import os
import re
import signal
import socket
import ssl
import time
import urllib.request

import pytest

import tlsraw
from clients import HOST, client_context, config, connect_tls, free_port, listener, recv_exact
from conftest import run_postern, sanitizer_report

BOUND = 4


def ovl_config(pki, port, backend, admin_port, bound=BOUND, handshake="60s", **extra):
    item = listener("flood", port, backend, pki, max_handshakes_in_flight=bound,
                    timeouts={"handshake": handshake, "idle": "60s"}, **extra)
    return config([item], workers=1, admin={"listen": f"{HOST}:{admin_port}"})


def shed_count(admin_port):
    """postern_connections_closed_total{listener="flood",reason="shed"}."""
    with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'^postern_connections_closed_total\{listener="flood",reason="shed"\} (\d+)',
                  text, re.M)
    return int(m.group(1)) if m else 0


def holder(port):
    """A client in the middle of its handshake: ClientHello sent, the
    server's first flight read (so the handshake is surely in flight), no
    Finished ever."""
    c = tlsraw.RawConn(port)
    c.send(tlsraw.record(tlsraw.HANDSHAKE, tlsraw.client_hello()))
    c.server_hello()
    return c


def hello_answer(port):
    """Connects, sends a ClientHello, and returns what the server sends
    before it closes: b"" when it reset or closed the connection without a
    byte (the reset may come before connect() returns, or at the send)."""
    try:
        s = socket.create_connection((HOST, port), timeout=20)
    except ConnectionResetError:
        return b""
    try:
        s.sendall(tlsraw.record(tlsraw.HANDSHAKE, tlsraw.client_hello()))
        s.settimeout(20)  # a fail-safe against a hang, not a timing check
        return s.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return b""
    finally:
        s.close()


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_flood_is_shed_and_started_handshakes_go_on(pki, start_postern, backend):
    port, admin = free_port(), free_port()
    echo = backend.echo()
    p = start_postern(ovl_config(pki, port, f"{HOST}:{echo.port}", admin), [port, admin])
    fds_before = open_fds(p.pid)
    holders = [holder(port) for _ in range(BOUND)]
    assert shed_count(admin) == 0, p.context()

    # The flood: connections that send their ClientHello at once. With BOUND
    # handshakes in flight every one of them is shed: reset without a byte.
    answers = [hello_answer(port) for _ in range(40)]
    assert answers == [b""] * len(answers), (
        f"{sum(1 for a in answers if a)} flood connections got TLS bytes" + p.context())
    # Bounded: postern holds no socket of the flood, and counted each.
    assert open_fds(p.pid) <= fds_before + 2 * BOUND, p.context()
    assert shed_count(admin) == len(answers), p.context()
    p.wait_log(r"listener flood: worker 0 is behind: 4 handshakes in flight.*shedding new "
               r"connections at accept")

    # The handshakes started before the flood are still there: a holder's
    # connection was neither reset nor closed.
    holders[0].sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        holders[0].sock.recv(1)

    # Room again: a well-behaved client completes its handshake and is served.
    for c in holders:
        c.close()
    ctx = client_context(pki)
    for attempt in range(100):
        try:
            s = connect_tls(port, "example.test", ctx)
            break
        except (ConnectionResetError, ssl.SSLError):
            # The holders' closes may not have been read yet: shed; again.
            time.sleep(0.1)
    else:
        raise AssertionError("no handshake completed after the flood" + p.context())
    s.sendall(b"ping")
    assert recv_exact(s, 4) == b"ping"
    s.close()
    assert "AddressSanitizer" not in p.stderr()


def test_past_the_reset_budget_the_queue_holds(pki, start_postern, backend):
    """Resets are budgeted (64 to start with, three per connection let in):
    past the budget new connections stay in the listen queue instead; those
    whose client gave up meanwhile are closed without a handshake when their
    turn comes, and the rest are served."""
    port, admin = free_port(), free_port()
    echo = backend.echo()
    p = start_postern(ovl_config(pki, port, f"{HOST}:{echo.port}", admin), [port, admin])
    holders = [holder(port) for _ in range(BOUND)]
    try:
        answers = [hello_answer(port) for _ in range(64)]
        assert answers == [b""] * 64, p.context()
        assert shed_count(admin) == 64, p.context()
        # The budget is spent: these wait in the queue, and their clients
        # give up (close) before there is room.
        waiting = []
        for _ in range(6):
            s = socket.create_connection((HOST, port), timeout=20)
            s.sendall(tlsraw.record(tlsraw.HANDSHAKE, tlsraw.client_hello()))
            waiting.append(s)
        patient = tlsraw.RawConn(port, timeout=30)
        patient.send(tlsraw.record(tlsraw.HANDSHAKE, tlsraw.client_hello()))
        for s in waiting:
            s.close()
    finally:
        for c in holders:
            c.close()
    # Room again: the patient client, queued last, gets its handshake.
    patient.server_hello()
    patient.close()
    gone = "the client gave up while it waited in the listen queue"
    deadline = time.monotonic() + 20  # a fail-safe, not a timing check
    while p.stderr().count(gone) < len(waiting) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.stderr().count(gone) == len(waiting), p.context()
    assert shed_count(admin) == 64, p.context()


def test_burst_under_the_bound_is_all_served(pki, start_postern, backend):
    """More connections at once than one loop turn takes (its accept batch):
    with the bound above them, none is shed; those past the batch wait for
    the next turn."""
    port, admin = free_port(), free_port()
    echo = backend.echo()
    p = start_postern(ovl_config(pki, port, f"{HOST}:{echo.port}", admin, bound=1000),
                      [port, admin])
    conns = []
    try:
        for _ in range(150):
            c = tlsraw.RawConn(port, timeout=30)
            c.send(tlsraw.record(tlsraw.HANDSHAKE, tlsraw.client_hello()))
            conns.append(c)
        for c in conns:
            c.server_hello()
    finally:
        for c in conns:
            c.close()
    assert shed_count(admin) == 0, p.context()


def test_reload_applies_a_new_bound(pki, start_postern, backend, tmp_path):
    port, admin = free_port(), free_port()
    echo = backend.echo()
    p = start_postern(ovl_config(pki, port, f"{HOST}:{echo.port}", admin), [port, admin])
    holders = [holder(port) for _ in range(BOUND)]
    try:
        assert hello_answer(port) == b"", "a connection past the bound was not shed" + p.context()
        p.config_path.write_text(ovl_config(pki, port, f"{HOST}:{echo.port}", admin,
                                            bound=2 * BOUND))
        p.signal(signal.SIGHUP)
        p.wait_log(r"settings changed: .*max_handshakes_in_flight 8 \(was 4\)", timeout=20)
        p.wait_log(r"reload ok", timeout=20)
        # Room for four more: the same client now gets its ServerHello.
        more = holder(port)
        more.close()
    finally:
        for c in holders:
            c.close()
    assert shed_count(admin) == 1, p.context()


def test_stale_handshake_gives_way(pki, start_postern, backend):
    """Clients that start handshakes and never finish them cannot hold the
    bound for the whole handshake timeout: at the bound, a handshake older
    than a quarter of it (at least 1 s) is closed for the new client."""
    port, admin = free_port(), free_port()
    echo = backend.echo()
    p = start_postern(ovl_config(pki, port, f"{HOST}:{echo.port}", admin, handshake="4s"),
                      [port, admin])
    holders = [holder(port) for _ in range(BOUND)]
    try:
        time.sleep(1.5)  # older than max(1 s, 4 s / 4): stale at the bound
        newcomer = holder(port)  # gets its ServerHello: the oldest holder gave way
        newcomer.close()
        holders[0].sock.settimeout(20)  # a fail-safe, not a timing check
        holders[0].records_until_close()
        assert holders[0].eof, "the oldest handshake was not closed" + p.context()
    finally:
        for c in holders:
            c.close()
    p.wait_log(r"closed for a new client at max_handshakes_in_flight: handshake incomplete")
    assert shed_count(admin) == 0, p.context()


def test_stale_handshake_found_behind_idle_connections(pki, start_postern, backend):
    """The oldest handshake is found however many idle kept-alive
    connections waited on their clients longer: 40 idle TLS connections
    opened first do not hide the stale holders (they head the eviction
    order, which a bounded walk for handshakes once did not get past)."""
    port, admin = free_port(), free_port()
    echo = backend.echo()
    p = start_postern(ovl_config(pki, port, f"{HOST}:{echo.port}", admin, handshake="4s"),
                      [port, admin])
    ctx = client_context(pki)
    idle = [connect_tls(port, "example.test", ctx) for _ in range(40)]
    holders = [holder(port) for _ in range(BOUND)]
    try:
        time.sleep(1.5)  # the holders are stale at the bound now
        assert hello_answer(port) != b"", "a newcomer was shed: no stale handshake found" + p.context()
    finally:
        for c in holders:
            c.close()
        for s in idle:
            s.close()
    assert shed_count(admin) == 0, p.context()


def test_stale_handshake_gives_way_while_the_queue_is_held(pki, start_postern, backend):
    """With the reset budget spent, new connections wait in the listen
    queue (libuv stops polling it); when every handshake in flight is a
    client that sends nothing, no other event would wake the worker before
    their handshake timeout: the worker looks again on its own, and the
    oldest handshake gives way once stale (a quarter of the timeout), not
    at the timeout."""
    port, admin = free_port(), free_port()
    echo = backend.echo()
    p = start_postern(ovl_config(pki, port, f"{HOST}:{echo.port}", admin, handshake="40s"),
                      [port, admin])
    holders = [holder(port) for _ in range(BOUND)]
    flood = []
    try:
        for _ in range(90):  # past the budget of 64 resets: the rest is held
            try:
                flood.append(socket.create_connection((HOST, port), timeout=5))
            except OSError:
                pass
        # Stale after 10 s; the handshake timeout would close it after 40 s.
        holders[0].sock.settimeout(25)
        holders[0].records_until_close()
        assert holders[0].eof, "the oldest handshake was not closed" + p.context()
        p.wait_log(r"closed for a new client at max_handshakes_in_flight: handshake incomplete")
    finally:
        for c in holders:
            c.close()
        for s in flood:
            s.close()


@pytest.mark.parametrize("value", ["0", "lots", "-3", "[4]", "2000000"])
def test_bad_bound_is_a_config_error(pki, postern_bin, tmp_path, value):
    port = free_port()
    text = config([listener("flood", port, "127.0.0.1:9", pki)], workers=1)
    text = text.replace('    backend: "127.0.0.1:9"\n',
                        f'    backend: "127.0.0.1:9"\n    max_handshakes_in_flight: {value}\n')
    assert "max_handshakes_in_flight" in text
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = text.splitlines().index(f"    max_handshakes_in_flight: {value}") + 1
    r = run_postern(postern_bin, "-t", "-c", str(path))
    assert r.returncode == 1, r.stderr
    assert not sanitizer_report(r.stderr), r.stderr
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: .*max_handshakes_in_flight", r.stderr), (
        r.stderr)
