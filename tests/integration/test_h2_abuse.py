"""HTTP/2 abuse that must stay bounded: streams ended before their
responses by whoever resets them ("MadeYouReset") count against the
rapid-reset budget, and response data buffered for clients that hold their
windows closed or stop reading stays bounded."""

import socket
import ssl
import struct
import time

import pytest

from clients import config, free_port
from http_backends import (DATA, END_HEADERS, END_STREAM, HEADERS, PRIORITY, S_INITIAL_WINDOW_SIZE,
                           H2Raw, RssSampler, err_name, http_listener, http_site,
                           small_asan_quarantine)

ENHANCE_YOUR_CALM = 11


@pytest.fixture
def site(pki, start_postern, http_servers):
    return http_site(start_postern, http_servers.http(), pki, "abuse")


def bad_length_stream(c, declared=1, sent=2):
    """HEADERS of a POST declaring content-length: declared, and DATA of sent
    bytes with END_STREAM: nghttp2 resets such a stream itself (RFC 9113
    8.1.1) once it sees the DATA."""
    sid = c.new_sid()
    block = c.header_block("POST", "/echo/made-you-reset",
                           headers=[("content-length", str(declared))])
    return sid, (c.frame(HEADERS, END_HEADERS, sid, block),
                 c.frame(DATA, END_STREAM, sid, b"x" * sent))


def send_quietly(c, data):
    try:
        c.send_raw(data)
        return True
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
        return False


def test_made_you_reset_one_piece(site, pki):
    """2,000 streams, each a HEADERS and its malformed DATA written together:
    postern must end the connection with GOAWAY long before it has opened
    2,000 backend connections (the issue saw 20,000 and no GOAWAY)."""
    before = site.be.accepted
    sent = 0
    with H2Raw(site.port, pki, timeout=5) as c:
        c.handshake()
        batch = []
        for i in range(2000):
            _, (h, d) = bad_length_stream(c)
            batch += [h, d]
            if len(batch) >= 100:
                if not send_quietly(c, b"".join(batch)):
                    break
                sent += len(batch) // 2
                batch = []
        g, eof = c.wait_goaway_or_close(10)
    time.sleep(0.5)
    accepted = site.be.accepted - before
    ctx = site.ctx(f"\nsent {sent} streams; GOAWAY {g!r} eof={eof}; backend accepted {accepted} "
                   f"connections; last frames {c.log[-5:]}")
    print(f"made-you-reset (one piece): {sent} streams sent, GOAWAY "
          f"{err_name(g.error_code) if g else None}, {accepted} backend connections")
    assert g is not None and g.error_code != 0, (
        f"streams that nghttp2 resets for DATA beyond their content-length must count against "
        f"the reset budget and end in GOAWAY{ctx}")
    assert accepted < 300, f"each such stream opened a backend connection{ctx}"


def test_made_you_reset_after_head_configured_budget(pki, start_postern, http_servers):
    """The malformed DATA comes after postern has started the exchanges (the
    heads reached the backend): those streams still end before their
    responses and count against h2.stream_reset_burst/rate."""
    be = http_servers.http()
    port = free_port()
    p = start_postern(config([http_listener("mur", port, be.addr, pki,
                                            h2={"stream_reset_rate": 5,
                                                "stream_reset_burst": 40})]), [port])
    ctx = lambda extra="": f"{extra}{be.summary()}{p.context()}"  # noqa: E731
    before = be.accepted
    rounds = 0
    with H2Raw(port, pki, timeout=5) as c:
        c.handshake()
        c.wait(lambda: c.settings_acked, 5)
        for rounds in range(1, 21):  # up to 2,000 streams
            heads, datas = [], []
            for _ in range(100):
                _, (h, d) = bad_length_stream(c, declared=2, sent=3)
                heads.append(h)
                datas.append(d)
            if not send_quietly(c, b"".join(heads[:50])):
                break
            seen = len(be.heads)
            deadline = time.monotonic() + 2
            while len(be.heads) < seen + 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            if not send_quietly(c, b"".join(datas[:50])):
                break
            try:
                c.drain(0.2)
            except AssertionError:
                pass
            if c.goaway is not None or c.eof:
                break
        g, eof = c.wait_goaway_or_close(10)
    accepted = be.accepted - before
    detail = (f"\n{rounds} rounds of 50 streams; GOAWAY {g!r} eof={eof}; backend accepted "
              f"{accepted}; last frames {c.log[-5:]}")
    print(f"made-you-reset (after head): GOAWAY {err_name(g.error_code) if g else None} after "
          f"{rounds} rounds, {accepted} backend connections")
    assert g is not None and g.error_code != 0, ctx(
        f"{detail}\nstreams reset after their exchange started must count too")
    assert rounds <= 4 and accepted < 400, ctx(f"{detail}\nthe budget of 40 was not enforced")


# ---- response buffering ------------------------------------------------------

STALL_SIZE = 256 * 1024 * 1024  # far more than anything buffered


def stall_connections(port, pki, conns, streams, settings, conn_window=0):
    """Opens conns connections, each asking for streams large downloads at
    once, then never reads: with settings (the client's SETTINGS) and
    conn_window added to the connection window. Returns the clients."""
    cs = []
    for _ in range(conns):
        c = H2Raw(port, pki, settings=settings, auto_window=False)
        out = b"".join(c.headers_frame(c.new_sid(), "GET", f"/download?size={STALL_SIZE}&seed=1")
                       for _ in range(streams))
        if conn_window:
            out += c.frame(8, 0, 0, struct.pack(">I", conn_window))  # WINDOW_UPDATE
        c.send_raw(out)
        cs.append(c)
    return cs


@pytest.fixture
def lean(pki, start_postern, http_servers, monkeypatch):
    """A postern with ASan's quarantine cut to 8 MiB, so that RSS shows what
    postern keeps rather than what ASan holds back."""
    small_asan_quarantine(monkeypatch)
    return http_site(start_postern, http_servers.http(), pki, "lean")


@pytest.mark.parametrize("kind", ["zero-window", "huge-window-not-reading"])
def test_stalled_streams_bounded(lean, pki, kind):
    """128 streams asking for large responses on one connection whose client
    holds its windows at zero, or opens them wide and never reads its
    socket: postern stops reading each backend after a bounded amount (the
    issue measured ~45 MB for one such connection)."""
    if kind == "zero-window":
        settings, conn_window = {4: 0}, 0  # SETTINGS_INITIAL_WINDOW_SIZE
    else:
        settings, conn_window = {4: 2**31 - 1}, 2**31 - 1 - 65535
    with RssSampler(lean.p.pid) as rss:
        cs = stall_connections(lean.port, pki, 1, 128, settings, conn_window)
        try:
            time.sleep(4)
            # Every stream has its head from the backend by now, and whatever
            # its first reads brought.
            time.sleep(2)
        finally:
            for c in cs:
                c.close()
    outcome = f"{kind}: 1 connection, 128 streams: {rss}"
    print(outcome)
    assert rss.growth_mib < 32, lean.ctx(f"\nstalled streams grew postern's RSS: {outcome}")


def test_client_gone_with_windows_shut(site, pki):
    """A client that shrinks its stream windows to 3 bytes, sends two complete
    requests and ends its side of TCP can never take the responses (no
    WINDOW_UPDATE can follow its end, RFC 9113 6.9): postern ends the
    connection at once instead of holding it until the idle timeout (60 s)."""
    with H2Raw(site.port, pki, settings={S_INITIAL_WINDOW_SIZE: 3}, auto_window=False) as c:
        c.handshake()
        sids = [c.request("GET", "/windows-shut/1"), c.request("GET", "/windows-shut/2")]
        c.wait(lambda: all(c.streams[s].headers for s in sids))
        # A TCP FIN under the TLS session: the base class's shutdown, since
        # SSLSocket.shutdown would drop the TLS state the reads below need.
        socket.socket.shutdown(c.sock, socket.SHUT_WR)
        t0 = time.monotonic()
        c.wait(lambda: c.eof, 10)
        took = time.monotonic() - t0
    assert took < 5, site.ctx(f"\nthe connection ended {took:.1f} s after the client's end")


def test_priority_flood(site, pki):
    """PRIORITY frames need no answer, so a client could make postern walk its
    priority tree for nothing, endlessly: past a budget (a burst, and more
    for each stream opened) the connection ends with GOAWAY
    ENHANCE_YOUR_CALM (RFC 9113 10.5), while a client that sends a few per
    stream, as browsers do, is served."""
    with H2Raw(site.port, pki) as c:
        c.handshake()
        for i in range(20):
            sid = c.new_sid()
            c.send_frame(PRIORITY, 0, sid + 2, struct.pack(">IB", 0, 15))
            c.send_frame(PRIORITY, 0, sid + 4, struct.pack(">IB", sid + 2, 15))
            assert c.response(c.request("GET", "/prio", sid=sid)).status == 200, site.ctx()
        assert c.goaway is None
    with H2Raw(site.port, pki) as c:
        c.handshake()
        flood = b"".join(c.frame(PRIORITY, 0, 2 * (i % 500) + 1, struct.pack(">IB", 0, 15))
                         for i in range(5000))
        send_quietly(c, flood)
        g, _ = c.wait_goaway_or_close(10)
    assert g is not None and err_name(g.error_code) == "ENHANCE_YOUR_CALM", \
        site.ctx(f"\n{c.log[-5:]}")
