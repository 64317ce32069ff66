"""Slow clients (issue 11, finding 5): a request head has a total deadline,
timeouts.request_head, however often its bytes come (the idle timeout alone
restarts with every byte: slowloris); the time between requests on a kept-
alive connection stays the idle timeout's; bytes of a TLS record never
completed are not traffic; and a worker at max_connections closes the
connection that has waited longest on its client for a new one, so that slow
clients cannot lock new clients out."""

import socket
import ssl
import threading
import time

import pytest

from clients import HOST, client_context, config, connect_tls, free_port
from http_backends import Closed, H1Conn, http_listener


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_http_servers):
    be = module_http_servers.fast()
    ports = {"head": free_port(), "full": free_port()}
    ls = [
        http_listener("head", ports["head"], be.addr, pki,
                      timeouts={"request_head": "2s", "idle": "30s"}),
        http_listener("full", ports["full"], be.addr, pki, max_connections=3,
                      timeouts={"request_head": "30s", "idle": "30s"}),
    ]
    p = module_postern(config(ls, workers=1), ports.values())
    return p, ports


def drip_until_closed(sock, first, pace, limit):
    """Sends first, then one byte of a header field every pace seconds until
    the server closes. Returns the seconds it took, or None after limit."""
    t0 = time.monotonic()
    sock.settimeout(pace)
    sock.sendall(first)
    while time.monotonic() - t0 < limit:
        try:
            d = sock.recv(4096)
            if not d:
                return time.monotonic() - t0
            continue  # a response (there should be none): keep reading
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
        try:
            sock.sendall(b"x")
        except (ssl.SSLError, OSError):
            return time.monotonic() - t0
    return None


def test_dripped_head_closed_at_deadline(srv, pki):
    p, ports = srv
    s = connect_tls(ports["head"], "example.test", client_context(pki, alpn=["http/1.1"]))
    try:
        took = drip_until_closed(s, b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Slow: ", 0.25, 15)
    finally:
        s.close()
    assert took is not None, f"a head dripped for 15 s was still open (request_head: 2s){p.context()}"
    assert 1.5 <= took <= 8, f"closed after {took:.1f} s; request_head is 2s{p.context()}"
    assert "close=request head timeout" in p.stderr(), p.context()


def test_keepalive_wait_is_not_a_head(srv, pki):
    """The deadline starts at a head's first byte: a kept-alive connection
    waiting longer than request_head for its next request still serves it."""
    p, ports = srv
    with H1Conn(ports["head"], pki) as c:
        assert c.request("GET", "/one").status == 200
        time.sleep(3)
        assert c.request("GET", "/two").status == 200


def test_partial_record_is_not_traffic(start_postern, pki, http_servers):
    """Bytes of a TLS record never completed do not restart the idle
    timeout."""
    be = http_servers.fast()
    port = free_port()
    p = start_postern(config([http_listener("rec", port, be.addr, pki,
                                            timeouts={"idle": "2s", "request_head": "30s"})],
                             workers=1), [port])
    ctx = client_context(pki, alpn=["http/1.1"])
    raw = socket.create_connection((HOST, port), timeout=10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="example.test")
    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(out.read())
                d = raw.recv(65536)
                assert d, "EOF during the handshake"
                inc.write(d)
        raw.sendall(out.read())
        obj.write(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        record = out.read()
        took = drip_until_closed(raw, record[:5], 0.25, 15)  # then bytes that never end it
    finally:
        raw.close()
    assert took is not None, f"a partial record kept the connection open 15 s (idle: 2s){p.context()}"
    assert took <= 8, f"closed after {took:.1f} s; idle is 2s{p.context()}"


def slow_conn(port, pki, stop):
    """A connection that dripped a head and keeps dripping until stop."""
    s = connect_tls(port, "example.test", client_context(pki, alpn=["http/1.1"]))
    s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Slow: ")

    def drip():
        try:
            while not stop.wait(0.5):
                s.sendall(b"x")
        except (ssl.SSLError, OSError):
            pass
    t = threading.Thread(target=drip, daemon=True)
    t.start()
    return s, t


def test_full_worker_lets_a_new_client_in(srv, pki):
    """max_connections: 3, one worker: three dripping clients hold every
    slot; a new client still gets its answer, in the slot of the oldest."""
    p, ports = srv
    stop = threading.Event()
    slow = []
    try:
        for _ in range(3):
            slow.append(slow_conn(ports["full"], pki, stop))
            time.sleep(0.2)
        t0 = time.monotonic()
        with H1Conn(ports["full"], pki, timeout=10) as c:
            r = c.request("GET", "/new")
        took = time.monotonic() - t0
        assert r.status == 200, p.context()
        assert took < 8, f"the new client waited {took:.1f} s{p.context()}"
        # The oldest slow connection gave way.
        first = slow[0][0]
        first.settimeout(5)
        try:
            closed = first.recv(100) == b""
        except (ssl.SSLError, OSError):
            closed = True
        assert closed, "the oldest slow connection should have been closed"
        assert "closed for a new client at max_connections: request head incomplete" in p.stderr()
    finally:
        stop.set()
        for s, t in slow:
            t.join(5)
            s.close()


def test_busy_connections_are_not_evicted(start_postern, pki, http_servers):
    """A connection whose request waits for its response is never the one
    closed: with every slot busy, the new client waits for a free one."""
    be = http_servers.silent()
    port = free_port()
    p = start_postern(config([http_listener("busy", port, be.addr, pki, max_connections=1,
                                            timeouts={"backend_response": "3s"})], workers=1),
                      [port])
    time.sleep(0.5)  # the start-up check's connection is gone
    start = len(p.stderr())
    with H1Conn(port, pki, timeout=15) as waiting:
        waiting.send(b"GET /wait HTTP/1.1\r\nHost: example.test\r\n\r\n")
        time.sleep(0.5)
        newcomer = socket.create_connection((HOST, port), timeout=15)
        try:
            # The busy connection gets its 504 when backend_response expires,
            # not a close for the newcomer.
            r = waiting.read_response()
            assert r.status == 504, p.context()
        finally:
            newcomer.close()
    assert "closed for a new client" not in p.stderr()[start:], p.context()


def test_dripped_h2_header_block_closed_at_deadline(srv, pki):
    """HTTP/2 has request heads too: a HEADERS frame whose header block is
    sent a byte at a time is closed at timeouts.request_head, like an
    HTTP/1.1 head."""
    from hpack import Encoder
    p, ports = srv
    block = Encoder().encode([(":method", "GET"), (":scheme", "https"), (":path", "/"),
                              (":authority", "example.test"), ("x-slow", "y" * 400)])
    # The client preface and an empty SETTINGS frame (RFC 9113 3.4), then a
    # HEADERS frame header (END_STREAM | END_HEADERS, stream 1).
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    head = len(block).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01"
    before = p.stderr().count("close=request head timeout")
    s = connect_tls(ports["head"], "example.test", client_context(pki, alpn=["h2"]))
    assert s.selected_alpn_protocol() == "h2"
    s.settimeout(0.25)
    t0 = time.monotonic()
    took = None
    try:
        s.sendall(preface + head + block[:1])
        for b in block[1:]:
            if time.monotonic() - t0 > 15:
                break
            try:
                while s.recv(4096):  # SETTINGS and its ACK; nothing else may come
                    pass
                took = time.monotonic() - t0  # orderly close
                break
            except (socket.timeout, ssl.SSLWantReadError):
                pass
            except (ssl.SSLError, OSError):
                took = time.monotonic() - t0
                break
            try:
                s.sendall(bytes([b]))
            except (ssl.SSLError, OSError):
                took = time.monotonic() - t0
                break
    finally:
        s.close()
    assert took is not None, f"an h2 header block dripped for 15 s was still open{p.context()}"
    assert 1.5 <= took <= 8, f"closed after {took:.1f} s; request_head is 2s{p.context()}"
    time.sleep(0.5)  # the log line follows the close
    assert p.stderr().count("close=request head timeout") > before, p.context()
