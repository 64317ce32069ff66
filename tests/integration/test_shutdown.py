"""SIGTERM/SIGINT: stop accepting at once, let open connections finish for up
to shutdown_timeout, then close the rest and exit 0."""

import signal
import socket
import time

import pytest

from clients import HOST, client_context, config, connect_tls, echo_bulk, free_port, listener, recv_exact, recv_until_close

MiB = 1024 * 1024


def refused_within(port, seconds):
    """Polls until a TCP connect to port is refused; returns the seconds it
    took, or None if it kept being accepted."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
        except ConnectionRefusedError:
            return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.05)
    return None


@pytest.mark.deadline(60)
def test_sigterm_lets_transfer_finish(pki, start_postern, backend):
    echo = backend.echo()
    port = free_port()
    p = start_postern(config([listener("drain", port, echo.addr, pki)], shutdown_timeout="10s"),
                      [port])
    total = 32 * MiB
    events = {}

    def on_progress(sent):
        if sent >= 6 * MiB and "sigterm" not in events:
            p.signal(signal.SIGTERM)
            events["sigterm"] = time.monotonic()
        elif sent >= 12 * MiB and "refused" not in events:
            events["refused"] = refused_within(port, 1.0)
            events["alive_while_draining"] = p.proc.poll() is None

    with connect_tls(port, "example.test", client_context(pki)) as s:
        t0 = time.monotonic()
        # 1 MiB every 80 ms: about 2.6 s for 32 MiB.
        sha_out, sha_in, got = echo_bulk(s, total, seed=32, chunk=MiB, pace=0.08, on_progress=on_progress)
        done = time.monotonic()
    assert "sigterm" in events, "the transfer ended before SIGTERM was sent"
    assert got == total and sha_in == sha_out, (
        f"transfer across SIGTERM: received {got} of {total}, hashes equal: {sha_in == sha_out}"
        + p.context())
    assert done - events["sigterm"] > 1.0, (
        f"the transfer went on only {done - events['sigterm']:.1f}s after SIGTERM: not a real test")
    assert events.get("alive_while_draining"), "postern exited while a connection was open" + p.context()
    assert events.get("refused") is not None, (
        "a new connection after SIGTERM was still accepted by the kernel: postern must stop "
        "accepting (close its listening sockets)" + p.context())
    rc = p.wait(5)
    assert rc is not None, "postern did not exit within 5s after its last connection closed" + p.context()
    p.check_exit()
    print(f"transfer {done - t0:.1f}s, SIGTERM after {events['sigterm'] - t0:.1f}s, "
          f"refused after {events['refused']:.2f}s")


def test_shutdown_timeout_closes_idle_connection(pki, start_postern, backend):
    echo = backend.echo()
    port = free_port()
    p = start_postern(config([listener("idle", port, echo.addr, pki)], shutdown_timeout="1s"), [port])
    with connect_tls(port, "example.test", client_context(pki)) as s:
        s.sendall(b"hi\n")
        assert recv_exact(s, 3) == b"hi\n", p.context()
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        rc = p.wait(6)
        elapsed = time.monotonic() - t0
        assert rc is not None, "postern did not exit within 6s with shutdown_timeout 1s" + p.context()
        data, how = recv_until_close(s, timeout=2)
    assert 0.7 <= elapsed <= 3.5, (
        f"postern exited {elapsed:.2f}s after SIGTERM; expected about 1s (shutdown_timeout 1s "
        f"with an idle connection open)" + p.context())
    assert how != "timeout", "the idle connection was not closed" + p.context()
    p.check_exit()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_without_connections_exits_at_once(pki, start_postern, backend, sig):
    echo = backend.echo()
    port = free_port()
    p = start_postern(config([listener("quiet", port, echo.addr, pki)], shutdown_timeout="10s"), [port])
    # One finished connection first, so there is state to tear down.
    with connect_tls(port, "example.test", client_context(pki)) as s:
        s.sendall(b"x")
        recv_exact(s, 1)
    time.sleep(0.1)
    t0 = time.monotonic()
    p.signal(sig)
    rc = p.wait(5)
    assert rc is not None, f"postern did not exit within 5s of {sig.name}" + p.context()
    assert time.monotonic() - t0 < 2.5, (
        "with no open connection postern must not wait for shutdown_timeout" + p.context())
    p.check_exit()
