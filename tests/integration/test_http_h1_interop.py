"""HTTP mode, HTTP/1.1 interoperability (issue 11, items 1 and 10): valid
requests a strict proxy must still pass on, against a backend as strict as
nginx about Host.

- An HTTP/1.0 request without Host goes to the backend as HTTP/1.1, which
  needs a Host: postern names the server the client asked for (SNI), or the
  backend's address when there was no SNI (RFC 9112 3.3); an empty Host is
  refused (RFC 9110 4.2.2).
- Chunk extensions with BWS and quoted values (RFC 9112 7.1.1) and
  "Transfer-Encoding: chunked," (an empty list element, RFC 9110 5.6.1)
  are accepted.
- A request line longer than max_header_bytes gets 414 URI Too Long, not 431."""

import hashlib
import os

import pytest

from clients import client_context, config, connect_tls, free_port
from http_backends import (Closed, H1Conn, KiB, Site, header_values, http_listener)


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_http_servers):
    be = module_http_servers.http("strict-origin")
    port = free_port()
    p = module_postern(config([http_listener("interop", port, be.addr, pki,
                                             limits={"max_header_bytes": 16384})]), [port])
    return Site(p, be, port)


def no_sni_conn(port, pki):
    """An H1Conn whose TLS ClientHello carries no server name."""
    c = H1Conn.__new__(H1Conn)
    c.sock = connect_tls(port, None, client_context(pki, alpn=["http/1.1"], verify=False))
    c.sock.settimeout(10)
    c.buf = bytearray()
    return c


def echoed(srv, tag):
    """The one request the backend completed whose path holds tag."""
    recs = srv.be.find(tag)
    assert len(recs) == 1, srv.ctx(f"\nexpected one request tagged {tag}, backend has {recs}")
    return recs[0]


def send_10(c, path, headers=b""):
    c.send(b"GET " + path.encode() + b" HTTP/1.0\r\n" + headers + b"\r\n")
    return c.read_response()


def test_http10_without_host_gets_the_sni(srv, pki):
    tag = f"h10-sni-{os.urandom(3).hex()}"
    with H1Conn(srv.port, pki, sni="api.example.test") as c:
        r = send_10(c, f"/echo/{tag}")
    ctx = srv.ctx(f"\n{r!r}")
    assert r.status == 200, f"an HTTP/1.0 request without Host must be served{ctx}"
    rec = echoed(srv, tag)
    assert rec["version"] == "HTTP/1.1", ctx
    assert header_values(rec, "Host") == ["api.example.test"], (
        f"the backend must get the SNI as Host: it saw {rec['headers']}{ctx}")


def test_http10_without_host_or_sni_gets_the_backend_address(srv, pki):
    tag = f"h10-nosni-{os.urandom(3).hex()}"
    with no_sni_conn(srv.port, pki) as c:
        r = send_10(c, f"/echo/{tag}")
    ctx = srv.ctx(f"\n{r!r}")
    assert r.status == 200, ctx
    assert header_values(echoed(srv, tag), "Host") == [srv.be.addr], (
        f"without SNI the backend's address is the Host{ctx}")


def test_http10_host_kept(srv, pki):
    tag = f"h10-host-{os.urandom(3).hex()}"
    with H1Conn(srv.port, pki) as c:
        r = send_10(c, f"/echo/{tag}", b"Host: api.example.test:8443\r\n")
    ctx = srv.ctx(f"\n{r!r}")
    assert r.status == 200, ctx
    assert header_values(echoed(srv, tag), "Host") == ["api.example.test:8443"], ctx


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_empty_host_refused(srv, pki, version):
    tag = f"empty-host-{version}-{os.urandom(3).hex()}"
    with H1Conn(srv.port, pki) as c:
        c.send(f"GET /echo/{tag} HTTP/{version}\r\nHost: \r\n\r\n".encode())
        r = c.read_response()
    ctx = srv.ctx(f"\n{r!r}")
    assert r.status == 400, f"an empty Host names no https server (RFC 9110 4.2.2){ctx}"
    assert not srv.be.lines_with(tag), f"the request reached the backend{ctx}"


CHUNKED_HEAD = ("POST /echo/{tag} HTTP/1.1\r\nHost: example.test\r\n"
                "Transfer-Encoding: {te}\r\n\r\n")


def post_chunked(srv, pki, tag, te, chunks):
    body = b"".join(d for _, d in chunks)
    wire = CHUNKED_HEAD.format(tag=tag, te=te).encode()
    for line, data in chunks:
        wire += line + b"\r\n" + data + b"\r\n"
    wire += b"0 ; done\r\n\r\n"
    with H1Conn(srv.port, pki) as c:
        c.send(wire)
        r = c.read_response()
        again = c.request("GET", f"/echo/{tag}-after")  # the framing ended where it should
    ctx = srv.ctx(f"\n{r!r}\n{again!r}")
    assert r.status == 200, f"a valid chunked request was refused{ctx}"
    assert r.json()["body_len"] == len(body), ctx
    assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest(), ctx
    assert again.status == 200, ctx


def test_chunk_extensions_with_bws_and_quotes(srv, pki):
    """RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ),
    value = token / quoted-string (with quoted-pairs)."""
    post_chunked(srv, pki, f"ext-{os.urandom(3).hex()}", "chunked", [
        (b"5 ;a=b ; c = \"q \\\" v\"", b"hello"),
        (b"3\t;name;x=\"\"", b"abc"),
        (b"4;a=b;c;d = e", b"wxyz"),
    ])


@pytest.mark.parametrize("te", ["chunked,", ", chunked", "chunked , ,"])
def test_transfer_encoding_empty_elements(srv, pki, te):
    """RFC 9110 5.6.1: a recipient ignores empty list elements."""
    post_chunked(srv, pki, f"te-{os.urandom(3).hex()}", te, [(b"5", b"hello")])


def test_long_uri_gets_414(srv, pki):
    tag = f"uri-{os.urandom(3).hex()}"
    path = f"/echo/{tag}?" + "u" * (64 * KiB)
    with H1Conn(srv.port, pki) as c:
        try:
            c.send(f"GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n".encode())
        except OSError:
            pass  # postern answers and closes before the URI has all been sent
        try:
            r = c.read_response()
        except Closed as e:
            raise AssertionError(srv.ctx(f"\nclosed without a response: {e.data[:200]!r}"))
    ctx = srv.ctx(f"\n{r!r}")
    assert r.status == 414, f"a 64 KiB URI must get 414 URI Too Long{ctx}"
    assert (r.header("Connection") or "").lower() == "close", ctx
    assert not srv.be.lines_with(tag), f"the request reached the backend{ctx}"


def test_large_fields_still_431(srv, pki):
    tag = f"fields-{os.urandom(3).hex()}"
    with H1Conn(srv.port, pki) as c:
        try:
            c.send(f"GET /echo/{tag} HTTP/1.1\r\nHost: example.test\r\nX-Big: {'b' * 20000}"
                   "\r\n\r\n".encode())
        except OSError:
            pass
        r = c.read_response()
    assert r.status == 431, srv.ctx(f"\n{r!r}")
