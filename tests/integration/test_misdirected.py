"""421 Misdirected Request (RFC 9110 15.5.20, RFC 9113 9.1.1): postern routes
a connection by its server name (SNI), but a client may send requests for
every host its certificate covers on one connection (a wildcard certificate
invites HTTP/2 connection reuse). A request whose host routes elsewhere than
the connection's server name must get 421 and never reach either backend,
over HTTP/2 and HTTP/1.1 alike."""

import os

import pytest

from clients import free_port, listener
from clients import config as make_config
from http_backends import H1Conn, H2Raw, Site


@pytest.fixture(scope="module")
def site(pki, module_postern, module_http_servers):
    """*.example.test served by one wildcard certificate; b.example.test
    routed to backend b, everything else to backend a."""
    a = module_http_servers.http("a")
    b = module_http_servers.http("b")
    port = free_port()
    item = listener("wild", port, a.addr, pki, ["wildcard.example.test"], mode="http",
                    alpn=["h2", "http/1.1"],
                    routes=[{"names": ["b.example.test"], "backend": b.addr}])
    p = module_postern(make_config([item]), [port])
    return Site(p, a, port, b=b)


def tagged(site, tag):
    """Requests carrying tag that reached backend a and backend b."""
    return site.be.find(tag), site.b.find(tag)


def test_h2_other_host_on_routed_connection(site, pki):
    tok = os.urandom(4).hex()
    with H2Raw(site.port, pki, sni="a.example.test") as c:
        c.handshake()
        wrong = c.response(c.request("GET", f"/echo/{tok}-b",
                                     authority=f"b.example.test:{site.port}"))
        right = c.response(c.request("GET", f"/echo/{tok}-a",
                                     authority=f"a.example.test:{site.port}"))
        unrouted = c.response(c.request("GET", f"/echo/{tok}-c", authority="c.example.test"))
    ctx = site.ctx(f"\nb on a's connection: {wrong!r}\na: {right!r}\nc: {unrouted!r}"
                   f"{site.b.summary()}")
    assert wrong.status == 421 and wrong.ended, (
        f"a request for b.example.test on a connection whose SNI routes to another backend "
        f"must get 421 Misdirected Request{ctx}")
    assert tagged(site, f"{tok}-b") == ([], []), f"the misdirected request reached a backend{ctx}"
    assert right.status == 200 and len(site.be.find(f"{tok}-a")) == 1, ctx
    assert unrouted.status == 200 and len(site.be.find(f"{tok}-c")) == 1, (
        f"a host that routes where the connection's SNI does is served{ctx}")
    assert c.goaway is None, ctx


def test_h2_routed_connection_serves_its_own_host_only(site, pki):
    tok = os.urandom(4).hex()
    with H2Raw(site.port, pki, sni="b.example.test") as c:
        c.handshake()
        own = c.response(c.request("GET", f"/echo/{tok}-own",
                                   authority=f"B.Example.Test:{site.port}"))
        other = c.response(c.request("HEAD", f"/echo/{tok}-other", authority="a.example.test"))
        post = c.response(c.request("POST", f"/echo/{tok}-post", body=b"x" * 40000,
                                    authority="a.example.test"))
    ctx = site.ctx(f"\nown: {own!r}\nother: {other!r}\npost: {post!r}{site.b.summary()}")
    assert own.status == 200 and len(site.b.find(f"{tok}-own")) == 1, (
        f"the host of the connection's own route (any case, with a port) goes to its backend{ctx}")
    assert other.status == 421 and other.ended and len(other.body) == 0, ctx
    assert post.status == 421 and post.ended, ctx
    assert tagged(site, f"{tok}-other") == ([], []) and tagged(site, f"{tok}-post") == ([], []), ctx


def test_h1_other_host_gets_421_and_connection_goes_on(site, pki):
    tok = os.urandom(4).hex()
    with H1Conn(site.port, pki, sni="a.example.test") as c:
        wrong = c.request("GET", f"/echo/{tok}-b", host=f"b.example.test:{site.port}")
        body = c.request("POST", f"/echo/{tok}-bpost", body=b"y" * 1000, host="b.example.test")
        right = c.request("GET", f"/echo/{tok}-a", host="a.example.test")
    ctx = site.ctx(f"\n{wrong!r}\n{body!r}\n{right!r}{site.b.summary()}")
    assert wrong.status == 421 and body.status == 421, ctx
    assert tagged(site, f"{tok}-b") == ([], []) and tagged(site, f"{tok}-bpost") == ([], []), ctx
    assert right.status == 200 and len(site.be.find(f"{tok}-a")) == 1, (
        f"the connection goes on after a 421{ctx}")
