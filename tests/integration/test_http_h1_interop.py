"""HTTP mode, HTTP/1.1 interoperability (issue 11, item 10): valid requests a
strict proxy must still pass on.

- Chunk extensions with BWS and quoted values (RFC 9112 7.1.1) and
  "Transfer-Encoding: chunked," (an empty list element, RFC 9110 5.6.1)
  are accepted.
- A request line longer than max_header_bytes gets 414 URI Too Long, not 431."""

import hashlib
import os

import pytest

from clients import config, free_port
from http_backends import Closed, H1Conn, KiB, Site, http_listener


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_http_servers):
    be = module_http_servers.http("origin")
    port = free_port()
    p = module_postern(config([http_listener("interop", port, be.addr, pki,
                                             limits={"max_header_bytes": 16384})]), [port])
    return Site(p, be, port)


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
