"""Idle connections hold little (issue 17, "Many connections"; bench/README.md,
"Where an idle connection's bytes are"): after a TLS 1.3 handshake postern
frees what wolfSSL keeps of it (pst_tls_conn_trim: extensions, suites,
verify parameters), and an HTTP/1.1 connection frees its request parser
between exchanges and makes a new one with the next request's bytes. These
tests hold many connections idle and then use every one of them again: each
must work as if nothing had been freed (a request split across an idle
pause, pipelined requests, SNI and ALPN still known to the access log and to
the tcp relay)."""

import time

import pytest

from clients import config, echo_bulk, free_port, listener
from http_backends import H1Conn, build_request, http_listener

CONNS = 150


@pytest.mark.deadline(120)
def test_http_many_idle_then_all_used(pki, start_postern, http_servers):
    be = http_servers.fast(b"hello\n")
    port = free_port()
    start_postern(config([http_listener("idle", port, be.addr, pki)], workers=1), [port])
    conns = [H1Conn(port, pki) for _ in range(CONNS)]
    try:
        for c in conns:  # one exchange each, then the connection idles
            assert c.request("GET", "/first").status == 200
        time.sleep(0.5)
        # Every connection again: the parser is made anew for the request.
        for i, c in enumerate(conns):
            if i % 3 == 0:
                # A head split by an idle pause: the parser made for its
                # first bytes must not be freed while the head is unfinished.
                req = build_request("GET", f"/split/{i}")
                c.send(req[:10])
            elif i % 3 == 1:
                assert c.request("GET", f"/again/{i}").status == 200
        time.sleep(0.3)
        for i, c in enumerate(conns):
            if i % 3 == 0:
                c.send(build_request("GET", f"/split/{i}")[10:])
                assert c.read_response().status == 200
            elif i % 3 == 2:
                # Two pipelined requests in one write.
                c.send(build_request("GET", "/p1") + build_request("GET", "/p2"))
                assert c.read_response().status == 200
                assert c.read_response().status == 200
        # And once more after all that, on every connection.
        for c in conns:
            assert c.request("GET", "/last").status == 200
    finally:
        for c in conns:
            c.close()


@pytest.mark.deadline(120)
def test_tcp_many_idle_then_all_used(pki, start_postern, backend):
    echo = backend.echo()
    port = free_port()
    start_postern(config([listener("idle", port, echo.addr, pki)], workers=1), [port])
    conns = [H1Conn(port, pki, alpn=None) for _ in range(CONNS)]
    try:
        time.sleep(0.5)
        for i, c in enumerate(conns):
            c.sock.sendall(f"ping {i}\n".encode())
        for i, c in enumerate(conns):
            want = f"ping {i}\n".encode()
            got = b""
            while len(got) < len(want):
                got += c.sock.recv(100)
            assert got == want
        # A bulk exchange on a few of them: records of every size after the trim.
        for c in conns[:3]:
            sha_out, sha_in, n = echo_bulk(c.sock, 300_000)
            assert (sha_in, n) == (sha_out, 300_000)
    finally:
        for c in conns:
            c.close()
