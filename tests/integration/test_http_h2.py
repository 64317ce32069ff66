"""HTTP mode, HTTP/2 probes (issue 3, RFC 9113) with a raw frame client
(http_backends.H2Raw): protocol errors end the connection with GOAWAY
PROTOCOL_ERROR, the stream limit is advertised and enforced, a reset stream
leaves the connection usable, flow control is obeyed down to a 1-byte window,
a rapid-reset burst (CVE-2023-44487) gets GOAWAY, PING/SETTINGS/CONTINUATION
floods stay bounded, one slow stream does not hold up the others, and SIGTERM
lets an in-flight stream finish after GOAWAY."""

import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import time

import pytest

from clients import config, free_port
from http_backends import (CONTINUATION, DATA, END_STREAM, HEADERS, PING, RST_STREAM,
                           S_INITIAL_WINDOW_SIZE, S_MAX_CONCURRENT_STREAMS, SETTINGS, H2Raw,
                           RssSampler, err_name, http_listener, http_site, pattern_bytes,
                           small_asan_quarantine)

PROTOCOL_ERROR, STREAM_CLOSED, REFUSED_STREAM, CANCEL = 1, 5, 7, 8


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_http_servers):
    return http_site(module_postern, module_http_servers.http("origin"), pki, "h2")


def check_alive(s, pki):
    """A fresh connection still gets an answer: postern survived the probe."""
    with H2Raw(s.port, pki) as c:
        st = c.response(c.request("GET", "/echo/alive"))
    assert st.status == 200, s.ctx(f"\npostern no longer answers a new connection: {st!r}")


def goaway_expected(c, s, what, codes=(PROTOCOL_ERROR,), timeout=5):
    g, eof = c.wait_goaway_or_close(timeout)
    ctx = s.ctx(f"\nframes received: {c.log[-10:]}")
    assert g is not None, (f"{what}: expected GOAWAY {[err_name(x) for x in codes]}, got "
                           f"{'EOF without GOAWAY' if eof else 'nothing'} within {timeout}s{ctx}")
    assert g.error_code in codes, (f"{what}: GOAWAY with {err_name(g.error_code)}, expected "
                                   f"{[err_name(x) for x in codes]}{ctx}")
    return g


def test_settings_advertise_default_limit(srv, pki):
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        st = c.response(c.request("GET", "/echo/settings"))
    ctx = srv.ctx(f"\nserver settings: {c.server_settings}")
    assert c.server_settings.get(S_MAX_CONCURRENT_STREAMS) == 128, (
        f"SETTINGS_MAX_CONCURRENT_STREAMS must be 128 by default{ctx}")
    assert st.status == 200, ctx


def test_data_on_stream_0(srv, pki):
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        c.send_frame(DATA, 0, 0, b"stream zero")
        goaway_expected(c, srv, "DATA on stream 0 (RFC 9113 6.1)")
        c.drain(3)
        assert c.eof, srv.ctx("\npostern must close the connection after GOAWAY PROTOCOL_ERROR")
    check_alive(srv, pki)


def test_stream_id_going_backwards(srv, pki):
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        c.request("GET", "/echo/s5", sid=5)
        c.send_raw(c.headers_frame(3, "GET", "/echo/s3-backwards"))
        # RFC 9113 5.1.1 says PROTOCOL_ERROR; stream 3 is also implicitly closed
        # by then (5.1.1), and STREAM_CLOSED is what some servers send for that.
        g = goaway_expected(c, srv, "HEADERS on stream 3 after stream 5 (RFC 9113 5.1.1)",
                            codes=(PROTOCOL_ERROR, STREAM_CLOSED))
        assert g.last_sid <= 5, srv.ctx(f"\nGOAWAY last_stream_id {g.last_sid}")
    assert not srv.be.lines_with("s3-backwards"), srv.ctx(
        "\nthe backwards stream reached the backend")
    check_alive(srv, pki)


def test_even_stream_id(srv, pki):
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        c.send_raw(c.headers_frame(2, "GET", "/echo/even"))
        goaway_expected(c, srv, "client HEADERS on even stream 2 (RFC 9113 5.1.1)")


def test_rst_stream_then_connection_works(srv, pki):
    tok = os.urandom(4).hex()
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        s1 = c.request("GET", f"/sleep?ms=800&tag=rst-{tok}")
        time.sleep(0.2)
        c.rst(s1, CANCEL)
        s3 = c.request("GET", "/echo/after-rst")
        st3 = c.response(s3)
        time.sleep(1.0)  # the reset stream's backend answer comes and must be dropped
        s5 = c.request("GET", "/echo/after-rst-2")
        st5 = c.response(s5)
        late = [f for f in c.log if f.sid == s1 and f.type in (HEADERS, DATA)]
    ctx = srv.ctx(f"\n{st3!r}\n{st5!r}\nframes: {c.log[-12:]}")
    assert c.goaway is None, f"RST_STREAM of one stream must not end the connection{ctx}"
    assert st3.status == 200 and st5.status == 200, ctx
    assert not late, f"postern sent frames on stream {s1} after the client reset it: {late}{ctx}"


def test_one_byte_window(srv, pki):
    """SETTINGS_INITIAL_WINDOW_SIZE=1: no DATA frame may exceed the stream's
    window (RFC 9113 6.9), and the body still arrives whole as the client
    opens the window a few bytes at a time."""
    size = 40
    with H2Raw(srv.port, pki, settings={S_INITIAL_WINDOW_SIZE: 1}, auto_window=False) as c:
        c.handshake()
        sid = c.request("GET", f"/download?size={size}&seed=5")
        st = c.streams[sid]
        window = 1
        incs = [1, 2, 3, 1, 5]
        rounds = 0
        deadline = time.monotonic() + 20
        while not st.done:
            assert time.monotonic() < deadline, srv.ctx(f"\nstalled: {st!r} window={window}")
            try:
                f = c.read_frame(0.1 if window == 0 else 5)
            except socket.timeout:
                f = None
                if window == 0:
                    inc = incs[rounds % len(incs)]
                    rounds += 1
                    c.window_update(sid, inc)
                    c.window_update(0, inc)
                    window += inc
                continue
            if f is None:
                break
            if f.type == DATA and f.sid == sid:
                assert len(f.payload) <= window, srv.ctx(
                    f"\nDATA frame of {len(f.payload)} bytes with a stream window of {window} "
                    f"(after {len(st.body) - len(f.payload)} body bytes)")
                window -= len(f.payload)
    ctx = srv.ctx(f"\n{st!r}")
    assert st.ended and st.status == 200, ctx
    assert bytes(st.body) == pattern_bytes(size, 5), ctx


def test_streams_over_limit_refused(pki, start_postern, http_servers):
    be = http_servers.http()
    port = free_port()
    p = start_postern(config([http_listener("small", port, be.addr, pki,
                                            h2={"max_concurrent_streams": 4})]), [port])
    ctx = lambda extra="": f"{extra}{be.summary()}{p.context()}"  # noqa: E731
    tok = os.urandom(4).hex()
    with H2Raw(port, pki) as c:
        c.handshake()
        assert c.server_settings.get(S_MAX_CONCURRENT_STREAMS) == 4, ctx(
            f"\nSETTINGS_MAX_CONCURRENT_STREAMS must be 4: {c.server_settings}")
        c.wait(lambda: c.settings_acked, 5)
        sids = [c.request("GET", f"/sleep?ms=1500&tag=lim-{tok}-{i}") for i in range(4)]
        extra = c.request("GET", f"/sleep?ms=1500&tag=lim-{tok}-extra")
        t0 = time.monotonic()
        sx = c.response(extra, timeout=10)
        refused_after = time.monotonic() - t0
        sts = [c.response(s, timeout=10) for s in sids]
    detail = f"\nextra stream: {sx!r}\nothers: {sts}"
    assert sx.reset in (REFUSED_STREAM, PROTOCOL_ERROR) and sx.status is None, ctx(
        f"{detail}\nthe 5th concurrent stream must get RST_STREAM REFUSED_STREAM or "
        f"PROTOCOL_ERROR (RFC 9113 5.1.2)")
    assert refused_after < 1.2, ctx(f"{detail}\nrefused only after {refused_after:.2f}s")
    assert all(s.status == 200 for s in sts), ctx(f"{detail}\nthe 4 streams within the limit")
    assert not be.lines_with(f"lim-{tok}-extra"), ctx("\nthe refused stream reached the backend")
    assert c.goaway is None, ctx(f"\nrefusing one stream must not end the connection: {c.goaway}")


def open_and_reset(c, n):
    """Opens and resets n streams as fast as possible, in large writes.
    Returns the number of streams sent before the connection broke."""
    batch = []
    sent = 0
    try:
        for _ in range(n):
            sid = c.new_sid()
            batch.append(c.headers_frame(sid, "GET", "/echo/rapid-reset"))
            batch.append(c.frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
            if len(batch) >= 200:
                c.send_raw(b"".join(batch))
                sent += len(batch) // 2
                batch = []
        if batch:
            c.send_raw(b"".join(batch))
            sent += len(batch) // 2
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
        pass
    return sent


def test_rapid_reset_burst_goaway(srv, pki):
    before = len(srv.be.seen)
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        t0 = time.monotonic()
        sent = open_and_reset(c, 1000)
        g, eof = c.wait_goaway_or_close(5)
        elapsed = time.monotonic() - t0
        ctx = srv.ctx(f"\nopened+reset {sent} streams in {elapsed:.2f}s; last frames {c.log[-6:]}")
        assert g is not None, (f"1,000 streams opened and reset at once must get GOAWAY "
                               f"(rapid reset, CVE-2023-44487); got "
                               f"{'EOF without GOAWAY' if eof else 'nothing'}{ctx}")
        assert g.error_code != 0, f"GOAWAY must carry an error code, got NO_ERROR{ctx}"
    print(f"rapid reset: GOAWAY {err_name(g.error_code)} after {sent} streams; backend got "
          f"{len(srv.be.seen) - before} of them")
    check_alive(srv, pki)


def test_resets_within_burst_are_fine(srv, pki):
    """100 open+reset streams stay inside the default burst (200): no GOAWAY,
    and the connection keeps working."""
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        sent = open_and_reset(c, 100)
        st = c.response(c.request("GET", "/echo/after-resets"), timeout=10)
        ctx = srv.ctx(f"\n{st!r}\nsent {sent}; last frames {c.log[-6:]}")
        assert c.goaway is None, f"100 resets are within stream_reset_burst 200: {c.goaway}{ctx}"
        assert st.status == 200, ctx


def test_rapid_reset_configured_rate(pki, start_postern, http_servers):
    be = http_servers.http()
    port = free_port()
    p = start_postern(config([http_listener("rr", port, be.addr, pki,
                                            h2={"stream_reset_rate": 10,
                                                "stream_reset_burst": 20})]), [port])
    with H2Raw(port, pki) as c:
        c.handshake()
        open_and_reset(c, 10)
        st = c.response(c.request("GET", "/echo/after-10"), timeout=10)
        assert c.goaway is None and st.status == 200, (
            f"10 resets are within stream_reset_burst 20: {st!r} {c.goaway}{p.context()}")
        open_and_reset(c, 60)
        g, eof = c.wait_goaway_or_close(5)
        assert g is not None and g.error_code != 0, (
            f"70 resets at once with stream_reset_burst 20 must get GOAWAY with an error: "
            f"goaway={g!r} eof={eof}{p.context()}")


def test_slow_stream_does_not_block_others(srv, pki):
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        t0 = time.monotonic()
        slow = c.request("GET", "/sleep?ms=2500&tag=slow")
        fast = [c.request("GET", f"/echo/fast-{i}") for i in range(5)]
        sts = [c.response(s, timeout=10) for s in fast]
        fast_done = time.monotonic() - t0
        slow_pending = not c.streams[slow].done
        sslow = c.response(slow, timeout=10)
    ctx = srv.ctx(f"\nfast: {sts}\nslow: {sslow!r}")
    assert all(s.status == 200 for s in sts), ctx
    assert fast_done < 1.5 and slow_pending, (
        f"streams behind a slow one took {fast_done:.2f}s (slow still pending: {slow_pending}): "
        f"every stream must be its own backend request{ctx}")
    assert sslow.status == 200, ctx


def _flood(c, frame, count, seconds=10):
    """Sends count copies of frame without reading; stops early when the
    socket blocks or breaks. Returns how many were sent."""
    c.sock.settimeout(seconds)
    sent = 0
    chunk = frame * 1000
    try:
        while sent < count:
            c.send_raw(chunk)
            sent += 1000
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
        pass
    return sent


@pytest.fixture
def lean(pki, start_postern, http_servers, monkeypatch):
    """A postern of its own with ASan's quarantine cut to 8 MiB, so that RSS
    shows what postern keeps rather than what ASan holds back."""
    small_asan_quarantine(monkeypatch)
    s = http_site(start_postern, http_servers.http(), pki, "lean")
    check_alive(s, pki)
    return s


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_control_frame_flood_bounded(lean, pki, kind):
    """Many PING or SETTINGS frames sent without reading the ACKs: postern
    must not queue unbounded ACKs (it may close with GOAWAY
    ENHANCE_YOUR_CALM, or stop reading); its memory stays bounded."""
    srv = lean
    frame = (H2Raw.frame(PING, 0, 0, b"floodfld") if kind == "ping"
             else H2Raw.frame(SETTINGS, 0, 0, struct.pack(">HI", S_INITIAL_WINDOW_SIZE, 65535)))
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        with RssSampler(srv.p.pid) as rss:
            sent = _flood(c, frame, 1_000_000)
            c.drain(3)
    acks = sum(1 for f in c.log if f.type in (PING, SETTINGS))
    outcome = (f"sent {sent} {kind} frames; got {acks} ACKs, goaway={c.goaway!r}, eof={c.eof}; "
               f"{rss}")
    print(outcome)
    assert rss.growth_mib < 32, srv.ctx(f"\n{kind} flood grew postern's RSS: {outcome}")
    check_alive(srv, pki)


def _literal(name, value):
    """HPACK literal header field without indexing (RFC 7541 6.2.2), so the
    flood does not touch the dynamic table."""
    def integer(v, prefix, first=0):
        mx = (1 << prefix) - 1
        if v < mx:
            return bytes([first | v])
        out = [first | mx]
        v -= mx
        while v >= 128:
            out.append((v & 127) | 128)
            v >>= 7
        out.append(v)
        return bytes(out)
    return integer(0, 4) + integer(len(name), 7) + name + integer(len(value), 7) + value


def test_continuation_flood_ended(lean, pki):
    """HEADERS without END_HEADERS followed by endless CONTINUATION frames:
    postern must end the stream or the connection, not buffer forever."""
    srv = lean
    block = b"".join(_literal(b"x-flood-%d" % i, b"a" * 4000) for i in range(4))
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        first = c.header_block("GET", "/echo/continuation-flood")
        c.send_frame(HEADERS, END_STREAM, 1, first)  # no END_HEADERS
        cont = c.frame(CONTINUATION, 0, 1, block)
        with RssSampler(srv.p.pid) as rss:
            sent = _flood(c, cont, 2000)
            frames = c.drain(3)
    ended = c.goaway is not None or c.eof or any(
        f.type == RST_STREAM and f.sid == 1 for f in c.log)
    ctx = srv.ctx(f"\nsent {sent} CONTINUATION frames ({sent * len(block) // 1024} KiB); "
                  f"{rss}; frames {frames[-5:]} goaway={c.goaway!r} eof={c.eof}")
    assert ended, f"an endless header block must end the stream or the connection{ctx}"
    assert rss.growth_mib < 32, f"CONTINUATION flood grew postern's RSS{ctx}"
    assert not srv.be.lines_with("continuation-flood"), f"the flood reached the backend{ctx}"
    check_alive(srv, pki)


def test_sigterm_goaway_lets_stream_finish(pki, start_postern, http_servers):
    be = http_servers.http()
    port = free_port()
    p = start_postern(config([http_listener("drain", port, be.addr, pki)],
                             shutdown_timeout="10s"), [port])
    with H2Raw(port, pki) as c:
        c.handshake()
        sid = c.request("GET", "/sleep?ms=2000&tag=inflight")
        time.sleep(0.5)
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        c.wait(lambda: c.goaway is not None or c.eof, 3)
        got_goaway = time.monotonic() - t0
        g = c.goaway
        st = c.response(sid, timeout=8)
        c.drain(3)
    ctx = f"\n{st!r}\nframes: {c.log[-8:]}{be.summary()}{p.context()}"
    assert g is not None, f"SIGTERM must send GOAWAY to an open h2 connection{ctx}"
    assert g.error_code == 0, f"shutdown GOAWAY should be NO_ERROR: {g!r}{ctx}"
    assert g.last_sid >= sid, (f"GOAWAY last_stream_id {g.last_sid} cuts off the in-flight "
                               f"stream{ctx}")
    assert got_goaway < 2, f"GOAWAY came {got_goaway:.2f}s after SIGTERM{ctx}"
    assert st.status == 200 and st.ended, f"the in-flight stream must finish after GOAWAY{ctx}"
    assert json.loads(bytes(st.body))["path"].startswith("/sleep"), ctx
    assert c.eof, f"postern must close the connection once its streams are done{ctx}"
    rc = p.wait(8)
    assert rc is not None, f"postern did not exit after its last stream finished{ctx}"
    p.check_exit()


def test_h2_library_client(srv, pki):
    """The h2 package's strict client state machine (h2.connection) as a
    cross-check of the raw client: five concurrent 1 MiB downloads with its
    flow control, every frame postern sends validated by h2."""
    import h2.config
    import h2.connection
    import h2.events

    from clients import client_context, connect_tls
    from http_backends import MiB, pattern_sha

    sock = connect_tls(srv.port, "example.test", client_context(pki, alpn=["h2"]))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    bodies, status, ended = {}, {}, set()
    for i in range(5):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                (":authority", f"example.test:{srv.port}"),
                                (":path", f"/download?size={MiB}&seed={i + 1}")],
                          end_stream=True)
        bodies[sid] = bytearray()
    sock.sendall(conn.data_to_send())
    sock.settimeout(10)
    deadline = time.monotonic() + 20
    events_seen = []
    try:
        while len(ended) < 5 and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                events_seen.append(type(ev).__name__)
                if isinstance(ev, h2.events.ResponseReceived):
                    status[ev.stream_id] = dict(ev.headers)[":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    bodies[ev.stream_id] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended.add(ev.stream_id)
                elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise AssertionError(srv.ctx(f"\nunexpected {ev!r}"))
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    ctx = srv.ctx(f"\nstatus {status}, ended {sorted(ended)}, sizes "
                  f"{ {k: len(v) for k, v in bodies.items()} }, events {events_seen[-10:]}")
    assert len(ended) == 5 and set(status.values()) == {"200"}, ctx
    for i, sid in enumerate(sorted(bodies)):
        assert hashlib.sha256(bodies[sid]).hexdigest() == pattern_sha(MiB, i + 1), (
            f"stream {sid}: body differs{ctx}")
