"""HTTP/2 request and response semantics at the edges: what a request's
pseudo-fields may hold (RFC 9113 8.3.1) before it becomes an HTTP/1.1
request line (the same target rules as the HTTP/1.1 front end, checked
here over both), and which fields a bodiless response keeps (RFC 9110
9.3.2)."""

import json
import os

import pytest

from http_backends import END_HEADERS, END_STREAM, HEADERS, H2Raw, H2Stream, http_site

PROTOCOL_ERROR = 1


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_http_servers):
    return http_site(module_postern, module_http_servers.http("origin"), pki, "h2req")


def test_head_keeps_content_length(srv, pki):
    """RFC 9110 9.3.2 and 8.6: the answer to HEAD carries the Content-Length
    a GET would have, and no content."""
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        head = c.response(c.request("HEAD", "/download?size=12345&seed=3"))
        get = c.response(c.request("GET", "/download?size=12345&seed=3"))
    ctx = srv.ctx(f"\nHEAD: {head!r}\nGET: {get!r}")
    assert head.status == 200 and head.ended, ctx
    assert head.header("content-length") == "12345", (
        f"HEAD over h2 must keep the backend's Content-Length{ctx}")
    assert len(head.body) == 0, f"HEAD must have no content{ctx}"
    assert get.header("content-length") == "12345" and len(get.body) == 12345, ctx


def send_raw_request(c, method, path, scheme="https", headers=()):
    """Sends a request whose pseudo-fields are taken as given (H2Raw's
    encoder sends what it is handed, bytes included). Returns the stream."""
    sid = c.new_sid()
    c.streams.setdefault(sid, H2Stream(sid))
    block = c.enc.encode([(":method", method), (":scheme", scheme),
                          (":authority", c.authority), (":path", path)] + list(headers))
    c.send_frame(HEADERS, END_HEADERS | END_STREAM, sid, block)
    return sid


@pytest.mark.parametrize("scheme,path", [
    ("foo", "http://evil.test/admin"),  # absolute-form: a backend must honour it over Host
    ("foo", "*"),
    ("foo", "admin"),
    ("ftp", "/ok-path"),
    ("httpx", "/ok-path"),
])
def test_scheme_other_than_http_refused(srv, pki, scheme, path):
    """RFC 9113 8.3.1: postern serves http and https only; nghttp2 checks
    :path for those schemes alone, so another scheme must not carry a
    :path that becomes a request line the HTTP/1.1 front end would refuse."""
    tok = os.urandom(4).hex()
    before = len(srv.be.lines)
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        bad = c.response(send_raw_request(c, "GET", path, scheme))
        ok = c.response(c.request("GET", f"/echo/after-{tok}"))
    reached = srv.be.lines[before:]
    ctx = srv.ctx(f"\n:scheme {scheme!r} :path {path!r}: {bad!r}\nthen: {ok!r}\n"
                  f"backend lines since: {reached}")
    assert bad.reset == PROTOCOL_ERROR and bad.status is None, (
        f"a :scheme other than http/https must be a stream error PROTOCOL_ERROR{ctx}")
    assert len(reached) == 1 and tok.encode() in reached[0], (
        f"only the good request may reach the backend{ctx}")
    assert ok.status == 200 and c.goaway is None, ctx


@pytest.mark.parametrize("path", [
    b"/caf\xc3\xa9", b"/a\x80", b"/a\xff", b'/a"b', b"/a<b", b"/a>b", b"/a{b", b"/a}b",
    b"/a|b", b"/a^b", b"/a#frag", b"/a\\b", b"/a`b", b"/?q=<script>",
])
def test_path_outside_rfc3986_refused(srv, pki, path):
    """Bytes outside RFC 3986's characters (and a fragment) in :path are
    refused as the HTTP/1.1 front end refuses them in a request-target;
    nghttp2 lets them through."""
    marker = os.urandom(4).hex().encode()
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        st = c.response(send_raw_request(c, "GET", b"/" + marker + path))
    ctx = srv.ctx(f"\n:path {path!r}: {st!r}")
    assert st.reset == PROTOCOL_ERROR and st.status is None, (
        f"a :path with a byte outside RFC 3986 must get RST_STREAM PROTOCOL_ERROR{ctx}")
    assert not srv.be.lines_with(marker), f"the request reached the backend{ctx}"


def test_reserved_characters_and_asterisk_accepted(srv, pki):
    """RFC 3986's reserved characters stay allowed (PHP-style a[]=1 queries),
    percent-encoding too, and "*" for OPTIONS (RFC 9112 3.2.4)."""
    tok = os.urandom(4).hex()
    path = f"/echo/{tok}/a:b@c!$&'()*+,;=[x]?a[]=1&b=%41%zz/?"
    with H2Raw(srv.port, pki) as c:
        c.handshake()
        st = c.response(c.request("GET", path))
        star = c.response(send_raw_request(c, "OPTIONS", "*", headers=[("x-star", tok)]))
        star_get = c.response(send_raw_request(c, "GET", "*"))
    ctx = srv.ctx(f"\n{st!r}\nOPTIONS *: {star!r}\nGET *: {star_get!r}")
    assert st.status == 200 and json.loads(bytes(st.body))["path"] == path, ctx
    assert star.status == 200 and srv.be.lines_with(b"OPTIONS * HTTP/1.1"), ctx
    assert star_get.reset == PROTOCOL_ERROR, f"'*' is for OPTIONS only{ctx}"


@pytest.mark.parametrize("target", [b"/caf\xc3\xa9", b"/a|b", b"/a{b}", b"/a^b", b"/a\\b",
                                    b"/a`b", b'/a"b', b"/a<b>"])
def test_h1_target_same_rules(srv, pki, target):
    """The HTTP/1.1 front end runs the same check on its request-target
    (pst_http_target_ok): what h2 refuses in :path, h1 refuses with 400."""
    from http_backends import H1Conn
    marker = os.urandom(4).hex().encode()
    with H1Conn(srv.port, pki) as c:
        c.send(b"GET /" + marker + target + b" HTTP/1.1\r\nHost: example.test\r\n\r\n")
        r = c.read_response()
    ctx = srv.ctx(f"\ntarget {target!r}: {r!r}")
    assert r.status == 400, ctx
    assert not srv.be.lines_with(marker), f"the request reached the backend{ctx}"
