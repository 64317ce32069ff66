"""HTTP/2 request and response semantics at the edges: what a request's
pseudo-fields may hold (RFC 9113 8.3.1) before it becomes an HTTP/1.1
request line, and which fields a bodiless response keeps (RFC 9110 9.3.2)."""

import pytest

from http_backends import H2Raw, http_site

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
