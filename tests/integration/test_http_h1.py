"""HTTP mode, HTTP/1.1 clients (issue 3, RFC 9112): keep-alive, pipelined
requests answered in order, Expect: 100-continue, chunked and
Content-Length request bodies, WebSocket-style Upgrade as a byte tunnel after
the backend's 101, and the request forms that enable smuggling: each gets 400,
the connection closes, and the backend never sees the request."""

import hashlib
import os
import socket
import time

import pytest

from clients import MemTls, client_context, config, echo_bulk, free_port
from http_backends import Closed, H1Conn, KiB, build_request, http_listener, http_site


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_http_servers):
    return http_site(module_postern, module_http_servers.http("origin"), pki, "h1")


def test_keep_alive(srv, pki):
    with H1Conn(srv.port, pki) as c:
        rs = [c.request("GET", f"/echo/ka-{i}") for i in range(5)]
    ctx = srv.ctx(f"\n{rs}")
    assert all(r.status == 200 for r in rs), ctx
    assert [r.json()["path"] for r in rs] == [f"/echo/ka-{i}" for i in range(5)], ctx
    assert all((r.header("Connection") or "").lower() != "close" for r in rs), (
        f"keep-alive responses must not say Connection: close{ctx}")


def test_no_alpn_is_http11(srv, pki):
    with H1Conn(srv.port, pki, alpn=None) as c:
        r = c.request("GET", "/echo/no-alpn")
    assert r.status == 200 and r.json()["path"] == "/echo/no-alpn", srv.ctx(f"\n{r!r}")


def test_connection_close_honoured(srv, pki):
    with H1Conn(srv.port, pki) as c:
        r = c.request("GET", "/echo/close", headers=[("Connection", "close")])
        rest, how = c.read_until_close(5)
    ctx = srv.ctx(f"\n{r!r}\nafter: {rest[:200]!r} {how}")
    assert r.status == 200, ctx
    assert how == "closed" and rest == b"", f"postern must close after Connection: close{ctx}"


def test_pipelined_in_order(srv, pki):
    """Three requests in one write, the first slow: answers come in request
    order (RFC 9112 9.3.2)."""
    reqs = (build_request("GET", "/sleep?ms=600&tag=a") + build_request("GET", "/echo/p?tag=b")
            + build_request("POST", "/echo/p?tag=c", body=b"pipelined-body")
            + build_request("GET", "/echo/p?tag=d"))
    with H1Conn(srv.port, pki) as c:
        c.send(reqs)
        rs = [c.read_response() for _ in range(4)]
    ctx = srv.ctx(f"\n{rs}")
    assert [r.header("X-Tag") for r in rs] == ["a", "b", "c", "d"], (
        f"pipelined responses out of order or lost{ctx}")
    assert rs[2].json()["body_len"] == len(b"pipelined-body"), ctx


def test_pipelined_then_tcp_fin(srv, pki):
    """Pipelined requests, then a TCP FIN without close_notify (a client that
    half-closes TCP under TLS): every request is still answered, in order,
    and the connection ends with close_notify."""
    reqs = build_request("GET", "/sleep?ms=300&tag=a") + build_request("GET", "/echo/p?tag=b")
    c = MemTls(srv.port, "example.test", client_context(pki, alpn=["http/1.1"]))
    try:
        c.handshake()
        c.send(reqs)
        c.sock.shutdown(socket.SHUT_WR)
        data, how = c.read_until_close()
    finally:
        c.close()
    ctx = srv.ctx(f"\nread {len(data)} bytes, ended with {how}: {data[:300]!r}")
    assert data.count(b"HTTP/1.1 200") == 2, f"answers lost after the client's FIN{ctx}"
    assert data.lower().index(b"x-tag: a") < data.lower().index(b"x-tag: b"), ctx
    assert how == "close_notify", ctx


def test_expect_100_continue(srv, pki):
    body = os.urandom(100 * KiB)
    head = build_request("POST", "/echo/expect", headers=[
        ("Expect", "100-continue"), ("Content-Length", str(len(body)))])
    with H1Conn(srv.port, pki) as c:
        c.send(head)
        t0 = time.monotonic()
        interim = c.read_response()
        waited = time.monotonic() - t0
        assert interim.status == 100, srv.ctx(
            f"\nexpected '100 Continue' before sending the body, got {interim!r}")
        c.send(body)
        r = c.read_response("POST")
    ctx = srv.ctx(f"\n{interim!r} after {waited:.2f}s\n{r!r}")
    assert r.status == 200, ctx
    rec = r.json()
    assert (rec["body_len"], rec["body_sha256"]) == (len(body), sha(body)), (
        f"body after 100-continue did not reach the backend intact{ctx}")


def _chunked(data, sizes):
    out = b""
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        piece = data[i:i + n]
        ext = b";ext=1" if k == 1 else b""
        out += b"%x%s\r\n" % (len(piece), ext) + piece + b"\r\n"
        i += n
        k += 1
    return out + b"0\r\n\r\n"


def test_chunked_request_body(srv, pki):
    data = os.urandom(300 * KiB + 17)
    wire = build_request("POST", "/echo/chunked", headers=[("Transfer-Encoding", "chunked")]) + \
        _chunked(data, [1, 100, 65536, 7, 100000])
    with H1Conn(srv.port, pki) as c:
        c.send(wire)
        r = c.read_response("POST")
        r2 = c.request("GET", "/echo/after-chunked")
    ctx = srv.ctx(f"\n{r!r}")
    assert r.status == 200, ctx
    rec = r.json()
    assert (rec["body_len"], rec["body_sha256"]) == (len(data), sha(data)), (
        f"chunked body: backend got {rec['body_len']} of {len(data)} bytes or other bytes{ctx}")
    assert r2.status == 200, f"the connection must stay in sync after a chunked body{ctx}"


def test_chunked_request_body_with_trailer(srv, pki):
    data = b"hello trailers"
    wire = build_request("POST", "/echo/trailer", headers=[("Transfer-Encoding", "chunked")]) + \
        b"%x\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n" % (len(data), data)
    with H1Conn(srv.port, pki) as c:
        c.send(wire)
        r = c.read_response("POST")
        r2 = c.request("GET", "/echo/after-trailer")
    ctx = srv.ctx(f"\n{r!r}\n{r2!r}")
    assert r.status == 200 and r.json()["body_len"] == len(data), ctx
    assert r2.status == 200, ctx


def test_content_length_request_body(srv, pki):
    data = os.urandom(500 * KiB + 3)
    with H1Conn(srv.port, pki) as c:
        r = c.request("PUT", "/echo/cl", body=data)
        r2 = c.request("GET", "/echo/after-cl")
    ctx = srv.ctx(f"\n{r!r}")
    rec = r.json()
    assert r.status == 200 and rec["body_len"] == len(data), ctx
    assert rec["body_sha256"] == hashlib.sha256(data).hexdigest(), f"body altered{ctx}"
    assert r2.status == 200, ctx


def test_websocket_upgrade_tunnel(srv, pki):
    head = build_request("GET", "/ws", headers=[
        ("Connection", "Upgrade"), ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")])
    with H1Conn(srv.port, pki) as c:
        c.send(head)
        r = c.read_response()
        ctx = srv.ctx(f"\n{r!r}")
        assert r.status == 101, f"expected the backend's 101 Switching Protocols{ctx}"
        assert (r.header("Upgrade") or "").lower() == "websocket", ctx
        assert "upgrade" in (r.header("Connection") or "").lower(), ctx
        assert not c.buf, f"bytes after the 101 head before any were sent: {bytes(c.buf)!r}{ctx}"
        c.send(b"ping-1")
        got = b""
        c.sock.settimeout(5)
        while len(got) < 6:
            d = c.sock.recv(64)
            assert d, f"tunnel closed after {got!r}{ctx}"
            got += d
        assert got == b"ping-1", f"tunnel echo: {got!r}{ctx}"
        sha_out, sha_in, n = echo_bulk(c.sock, 4 * 1024 * 1024, seed=9, timeout=15)
        assert sha_out == sha_in and n == 4 * 1024 * 1024, f"4 MiB through the tunnel differ{ctx}"
    rec = srv.be.find("/ws")[-1]
    conn = ", ".join(v for k, v in rec["headers"] if k.lower() == "connection").lower()
    up = [v for k, v in rec["headers"] if k.lower() == "upgrade"]
    assert "upgrade" in conn and up == ["websocket"], (
        f"the backend must get Connection: upgrade and Upgrade: websocket: {rec['headers']}{ctx}")


# ------------------------------------------------------------ smuggling --

H = "Host: example.test\r\n"


def smuggle_cases():
    inner = lambda tag: f"GET /smuggled-{tag} HTTP/1.1\r\n{H}\r\n"  # noqa: E731
    body_clte = f"0\r\n\r\n{inner('clte')}"
    body_2cl = inner("twocl")
    return {
        "cl-and-te": (f"POST /smug-clte HTTP/1.1\r\n{H}Content-Length: {len(body_clte)}\r\n"
                      f"Transfer-Encoding: chunked\r\n\r\n{body_clte}"),
        "te-and-cl": (f"POST /smug-tecl HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n"
                      f"Content-Length: 4\r\n\r\n0\r\n\r\n{inner('tecl')}"),
        "two-content-lengths": (f"POST /smug-twocl HTTP/1.1\r\n{H}Content-Length: 0\r\n"
                                f"Content-Length: {len(body_2cl)}\r\n\r\n{body_2cl}"),
        "content-length-list": (f"POST /smug-cllist HTTP/1.1\r\n{H}Content-Length: 0, "
                                f"{len(body_2cl)}\r\n\r\n{inner('cllist')}"),
        "bad-chunk-size": (f"POST /smug-badchunk HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
                           f"zz\r\nhello\r\n0\r\n\r\n{inner('badchunk')}"),
        "chunk-size-overflow": (f"POST /smug-chunkovf HTTP/1.1\r\n{H}Transfer-Encoding: chunked"
                                f"\r\n\r\n1000000000000000a\r\nhello\r\n0\r\n\r\n"),
        "obs-fold": (f"GET /smug-fold HTTP/1.1\r\n{H}X-Folded: a\r\n b\r\n\r\n"),
        "bare-lf-header": (f"GET /smug-lf HTTP/1.1\r\n{H}X-A: 1\nX-B: 2\r\n\r\n"),
        "bare-lf-request-line": (f"GET /smug-lfline HTTP/1.1\n{H}\r\n"),
        "bare-cr": (f"GET /smug-cr HTTP/1.1\r\n{H}X-A: 1\rX-B: 2\r\n\r\n"),
        "nul-in-value": (f"GET /smug-nul HTTP/1.1\r\n{H}X-Bad: a\x00b\r\n\r\n"),
        "ctl-in-name": (f"GET /smug-ctl HTTP/1.1\r\n{H}X-B\x01ad: v\r\n\r\n"),
        "space-before-colon": (f"GET /smug-space HTTP/1.1\r\n{H}Content-Length : 5\r\n\r\nhello"),
    }


CASES = smuggle_cases()


@pytest.mark.parametrize("case", list(CASES))
def test_smuggling_refused(srv, pki, case):
    wire = CASES[case].encode("latin-1")
    marker = CASES[case].split(" ", 2)[1]  # the request's path, /smug-...
    with H1Conn(srv.port, pki) as c:
        c.send(wire)
        try:
            r = c.read_response()
        except Closed as e:
            raise AssertionError(srv.ctx(f"\n{case}: connection closed without a response "
                                         f"(got {e.data[:200]!r}); expected 400")) from None
        rest, how = c.read_until_close(5)
    time.sleep(0.2)
    ctx = srv.ctx(f"\n{case}: sent {wire!r}\ngot {r!r}\nthen {rest[:300]!r} ({how})")
    assert r.status == 400, f"{case}: expected 400{ctx}"
    assert r.body and len(r.body) < 4096, f"{case}: the 400 must carry a short text body{ctx}"
    assert how == "closed" and rest == b"", (
        f"{case}: postern must close the connection after the 400 (and answer nothing more){ctx}")
    smuggled = srv.be.lines_with("smuggled-")
    assert not smuggled, f"{case}: a smuggled request reached the backend: {smuggled}{ctx}"
    seen = srv.be.lines_with(marker)
    if case in ("bad-chunk-size", "chunk-size-overflow"):
        # The head is valid and may have been forwarded before the body was
        # parsed; the request must still never complete at the backend.
        done = srv.be.find(marker)
        assert not done, f"{case}: the backend got a complete request: {done}{ctx}"
    else:
        assert not seen, f"{case}: the refused request reached the backend: {seen}{ctx}"


def test_valid_request_after_smuggling_tests(srv, pki):
    """Control: the same listener and backend serve a clean request, so the
    'backend never sees it' checks above were not vacuous."""
    with H1Conn(srv.port, pki) as c:
        r = c.request("POST", "/echo/control", body=b"hello")
    assert r.status == 200 and srv.be.find("/echo/control"), srv.ctx(f"\n{r!r}")


def test_stalled_request_body_times_out(pki, start_postern, http_servers):
    """A request whose body stops coming (slowloris) does not hold the
    connection past timeouts.idle: only a request waiting for its response
    head is exempt (timeouts.backend_response covers that)."""
    be = http_servers.http("origin-idle")
    port = free_port()
    p = start_postern(config([http_listener("idle", port, be.addr, pki,
                                            timeouts={"idle": "1s"})]), [port])
    with H1Conn(port, pki) as c:
        c.send(b"POST /echo/slow HTTP/1.1\r\nHost: example.test\r\nContent-Length: 1000000\r\n\r\nab")
        t0 = time.monotonic()
        rest, how = c.read_until_close(10)
        took = time.monotonic() - t0
    assert how == "closed" and took < 5, f"stalled body held {took:.1f}s ({how}){p.context()}"
