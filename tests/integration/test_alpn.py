"""ALPN (RFC 7301): the server picks the first protocol of its own list that
the client offers; no offer or no overlap means no ALPN (the handshake
still succeeds)."""

import pytest

from clients import client_context, config, connect_tls, free_port, listener, s_client


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_backend):
    echo = module_backend.echo()
    ports = {"alpn": free_port(), "h1only": free_port(), "none": free_port()}
    ls = [
        listener("alpn", ports["alpn"], echo.addr, pki, alpn=["h2", "http/1.1"]),
        listener("h1only", ports["h1only"], echo.addr, pki, alpn=["http/1.1"]),
        listener("none", ports["none"], echo.addr, pki),
    ]
    p = module_postern(config(ls), ports.values())
    return p, ports


CASES = [
    ("alpn", "h2,http/1.1", "h2"),
    ("alpn", "http/1.1,h2", "h2"),        # server preference wins
    ("alpn", "http/1.1", "http/1.1"),
    ("alpn", "h2", "h2"),
    ("alpn", None, None),
    ("alpn", "spdy/3,foo", None),          # no overlap: no ALPN, handshake succeeds
    ("h1only", "h2,http/1.1", "http/1.1"),
    ("h1only", "h2", None),
    ("none", "h2,http/1.1", None),         # listener without alpn
]


@pytest.mark.parametrize("name,offer,expected", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_alpn_s_client(srv, name, offer, expected):
    p, ports = srv
    args = ["-alpn", offer] if offer else []
    r = s_client(ports[name], *args, servername="example.test")
    ctx = f"{r}{p.context()}"
    assert r.handshake_done, f"handshake failed\n{ctx}"
    if expected is None:
        assert "No ALPN negotiated" in r.out, f"expected no ALPN\n{ctx}"
    else:
        assert f"ALPN protocol: {expected}" in r.out, f"expected ALPN {expected}\n{ctx}"


@pytest.mark.parametrize("offer,expected", [(["http/1.1", "h2"], "h2"),
                                            (["http/1.1"], "http/1.1"),
                                            (["foo"], None),
                                            (None, None)])
def test_alpn_python(srv, pki, offer, expected):
    p, ports = srv
    with connect_tls(ports["alpn"], "example.test", client_context(pki, alpn=offer)) as s:
        assert s.selected_alpn_protocol() == expected, (
            f"offer {offer}: got {s.selected_alpn_protocol()!r}, expected {expected!r}{p.context()}")
