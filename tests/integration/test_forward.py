"""tcp mode: after the handshake postern connects to the backend chosen by
SNI (routes, else the listener's backend) and pipes bytes both ways, with
half-close in each direction, and a backend that cannot be reached costs
only its own connection, within timeouts.backend_connect."""

import hashlib
import os
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from backends import closed_port
from clients import (HOST, MemTls, client_context, config, connect_tls, echo_bulk, free_port,
                     listener, recv_exact, recv_until_close)

MiB = 1024 * 1024


@pytest.mark.deadline(120)
def test_bulk_64mib_each_way(pki, start_postern, backend):
    echo = backend.echo()
    port = free_port()
    p = start_postern(config([listener("bulk", port, echo.addr, pki)]), [port])
    total = 64 * MiB
    with connect_tls(port, "example.test", client_context(pki)) as s:
        t0 = time.monotonic()
        sha_out, sha_in, got = echo_bulk(s, total, seed=64)
        elapsed = time.monotonic() - t0
    assert got == total, f"received {got} of {total} bytes{p.context()}"
    assert sha_in == sha_out, f"echoed bytes differ from sent bytes{p.context()}"
    print(f"64 MiB each way in {elapsed:.1f}s ({2 * total / MiB / elapsed:.0f} MiB/s both ways)")


@pytest.mark.deadline(90)
def test_200_concurrent_connections(pki, start_postern, backend):
    echo = backend.echo()
    port = free_port()
    p = start_postern(config([listener("many", port, echo.addr, pki)]), [port])
    ctx = client_context(pki)

    def one(i):
        msg = f"hello {i} ".encode() * 50 + os.urandom(64)
        with connect_tls(port, "example.test", ctx, timeout=30) as s:
            s.sendall(msg)
            back = recv_exact(s, len(msg), timeout=30)
        return back == msg

    with ThreadPoolExecutor(max_workers=200) as ex:
        futures = [ex.submit(one, i) for i in range(200)]
        results, errors = [], []
        for f in futures:
            try:
                results.append(f.result(timeout=60))
            except Exception as e:  # noqa: BLE001 - collected for the message
                errors.append(repr(e))
    assert not errors, f"{len(errors)} of 200 connections failed: {errors[:5]}{p.context()}"
    assert all(results), f"{results.count(False)} echoes differed{p.context()}"
    assert echo.accepted == 200, f"backend saw {echo.accepted} connections, expected 200"


def test_routes_by_sni(pki, start_postern, backend):
    a = backend.banner(b"backend-A\n")
    b = backend.banner(b"backend-B\n")
    port = free_port()
    item = listener("routes", port, a.addr, pki, ["example.test", "api.example.test"])
    item["routes"] = [{"names": ["api.example.test", "*.api.example.test"], "backend": b.addr}]
    p = start_postern(config([item]), [port])
    cases = [("example.test", b"backend-A\n"), ("www.example.test", b"backend-A\n"),
             ("api.example.test", b"backend-B\n"), ("API.Example.TEST", b"backend-B\n"),
             ("x.api.example.test", b"backend-B\n"), ("y.x.api.example.test", b"backend-A\n"),
             ("unknown.invalid", b"backend-A\n"), (None, b"backend-A\n")]
    for sni, want in cases:
        with connect_tls(port, sni, client_context(verify=False)) as s:
            got = recv_exact(s, len(want))
            assert got == want, f"SNI {sni!r}: expected {want!r}, got {got!r}{p.context()}"
            s.sendall(b"ping\n")
            assert recv_exact(s, 5) == b"ping\n", f"SNI {sni!r}: no echo after the banner"
    # The route's backend really has its own certificate's name: a strict client works.
    with connect_tls(port, "api.example.test", client_context(pki)) as s:
        assert recv_exact(s, 10) == b"backend-B\n"


@pytest.mark.parametrize("ending", ["close_notify", "tcp_fin"])
def test_client_end_half_closes_backend(pki, start_postern, backend, ending):
    """The client ends its side with close_notify, or with a bare TCP FIN (a
    TCP half-close under TLS, no close_notify): the backend gets EOF, and its
    answer sent after that EOF still reaches the client, followed by
    close_notify."""
    sink = backend.sink()
    port = free_port()
    p = start_postern(config([listener("half", port, sink.addr, pki)]), [port])
    payload = os.urandom(300 * 1024)
    c = MemTls(port, "example.test", client_context(pki))
    try:
        c.handshake()
        c.send(payload)
        if ending == "close_notify":
            c.send_close_notify()
        else:
            c.sock.shutdown(socket.SHUT_WR)
        data, how = c.read_until_close()
    finally:
        c.close()
    want = f"{len(payload)} {hashlib.sha256(payload).hexdigest()}\n".encode()
    assert data == want, (f"backend's answer after the client's {ending}: got {data!r}, "
                          f"expected {want!r} (backend saw {sink.eofs} EOFs){p.context()}")
    assert how == "close_notify", f"connection ended with {how}, expected close_notify{p.context()}"


def test_backend_eof_sends_close_notify(pki, start_postern, backend):
    bye = backend.say_and_close(b"bye\n")
    port = free_port()
    p = start_postern(config([listener("bye", port, bye.addr, pki)]), [port])
    with connect_tls(port, "example.test", client_context(pki)) as s:
        data, how = recv_until_close(s, timeout=5)
    assert data == b"bye\n", f"got {data!r}{p.context()}"
    assert how == "close_notify", f"backend EOF must end in close_notify, got {how}{p.context()}"


@pytest.mark.deadline(30)
def test_black_hole_backend_times_out(pki, start_postern, backend):
    hole = backend.black_hole()
    echo = backend.echo()
    port, good_port = free_port(), free_port()
    item = listener("hole", port, hole.addr, pki, ["example.test", "api.example.test"],
                    timeouts={"handshake": "10s", "idle": "60s", "backend_connect": "1s"})
    item["routes"] = [{"names": ["api.example.test"], "backend": echo.addr}]
    good = listener("good", good_port, echo.addr, pki)
    p = start_postern(config([item, good]), [port, good_port])

    stuck = connect_tls(port, "example.test", client_context(pki))
    t0 = time.monotonic()
    try:
        # While that connection waits for its backend, others work: a route of
        # the same listener and another listener.
        for prt, sni in ((port, "api.example.test"), (good_port, "example.test")):
            with connect_tls(prt, sni, client_context(pki)) as s:
                s.sendall(b"still here\n")
                assert recv_exact(s, 11, timeout=2) == b"still here\n", p.context()
        assert time.monotonic() - t0 < 0.9, (
            "the other connections took so long that the stuck one may already be closed: "
            "the test cannot show they ran while it waited")
        data, how = recv_until_close(stuck, timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        stuck.close()
    assert how != "timeout", f"postern did not close the client within 5s{p.context()}"
    assert data == b"", f"unexpected data {data!r}"
    assert 0.5 < elapsed < 3, (f"client closed after {elapsed:.2f}s; expected about 1s "
                               f"(backend_connect: 1s){p.context()}")
    assert hole.connect_hangs(0.2), "black hole stopped being one: the test proves nothing"
    # And the listener still serves afterwards.
    with connect_tls(port, "api.example.test", client_context(pki)) as s:
        s.sendall(b"after\n")
        assert recv_exact(s, 6) == b"after\n"


def test_refused_backend_closes_promptly(pki, start_postern, backend):
    echo = backend.echo()
    port = free_port()
    item = listener("refused", port, closed_port(), pki, ["example.test", "api.example.test"])
    item["routes"] = [{"names": ["api.example.test"], "backend": echo.addr}]
    p = start_postern(config([item]), [port])
    for _ in range(3):
        with connect_tls(port, "example.test", client_context(pki)) as s:
            t0 = time.monotonic()
            data, how = recv_until_close(s, timeout=5)
            elapsed = time.monotonic() - t0
        assert how != "timeout" and data == b"", f"got {data!r}, {how}{p.context()}"
        assert elapsed < 1.5, f"refused backend: client closed after {elapsed:.2f}s{p.context()}"
    with connect_tls(port, "api.example.test", client_context(pki)) as s:
        s.sendall(b"ok\n")
        assert recv_exact(s, 3) == b"ok\n", p.context()


def test_no_connection_leaks_after_clients_vanish(pki, start_postern, backend):
    """Clients that reset mid-stream or leave during the handshake must not
    disturb postern (the teardown checks the ASan/LSan report)."""
    echo = backend.echo()
    port = free_port()
    p = start_postern(config([listener("rude", port, echo.addr, pki)]), [port])
    for _ in range(5):
        socket.create_connection((HOST, port)).close()  # no ClientHello at all
        raw = socket.create_connection((HOST, port))
        raw.sendall(b"\x16\x03\x01\x00\x05hello")  # a truncated record, then gone
        raw.close()
        s = connect_tls(port, "example.test", client_context(pki))
        s.sendall(os.urandom(100000))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # reset with data in flight
    with connect_tls(port, "example.test", client_context(pki)) as s:
        s.sendall(b"fine\n")
        assert recv_exact(s, 5) == b"fine\n", p.context()


def test_handshake_timeout(pki, start_postern, backend):
    """A client that connects and never finishes its handshake is closed
    after timeouts.handshake."""
    echo = backend.echo()
    port = free_port()
    item = listener("slow", port, echo.addr, pki,
                    timeouts={"handshake": "1s", "idle": "60s", "backend_connect": "5s"})
    p = start_postern(config([item]), [port])
    for send in (b"", b"\x16\x03\x01\x02\x00\x01"):  # nothing at all; half a ClientHello
        raw = socket.create_connection((HOST, port), timeout=5)
        t0 = time.monotonic()
        raw.sendall(send)
        try:
            while raw.recv(4096):
                pass
            how = "closed"
        except ConnectionResetError:
            how = "reset"
        except socket.timeout:
            how = "timeout"
        elapsed = time.monotonic() - t0
        raw.close()
        assert how != "timeout", f"not closed within 5s (sent {send!r}){p.context()}"
        assert 0.7 < elapsed < 3, (f"closed after {elapsed:.2f}s with handshake: 1s "
                                   f"(sent {send!r}){p.context()}")


def test_idle_timeout(pki, start_postern, backend):
    """A connection with no traffic either way for timeouts.idle is closed;
    traffic keeps it open."""
    echo = backend.echo()
    port = free_port()
    item = listener("idle", port, echo.addr, pki,
                    timeouts={"handshake": "10s", "idle": "1s", "backend_connect": "5s"})
    p = start_postern(config([item]), [port])
    with connect_tls(port, "example.test", client_context(pki)) as s:
        # Busy for 2 s, a byte every 0.3 s: stays open.
        for i in range(7):
            if i > 0:
                time.sleep(0.3)
            s.sendall(b".")
            assert recv_exact(s, 1, timeout=2) == b".", p.context()
        # Idle from the last echo on (postern read it just before): timed from
        # here, not after a sleep that a loaded machine stretches.
        t0 = time.monotonic()
        data, how = recv_until_close(s, timeout=5)
        elapsed = time.monotonic() - t0
    assert how != "timeout", f"an idle connection was not closed within 5s{p.context()}"
    assert 0.8 < elapsed < 3, f"closed after {elapsed:.2f}s idle with idle: 1s{p.context()}"
