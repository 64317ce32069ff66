"""Certificate selection by SNI (RFC 6066 3): exact names beat wildcards, a
wildcard covers exactly one label, names compare without case, and unknown or
missing names get the default certificate, or with unknown_sni: reject a
fatal unrecognized_name alert (no SNI at all still gets the default)."""

import re

import pytest

from clients import client_context, config, connect_tls, first_pem, free_port, listener, pem_body, s_client

# example.test is listed first (so the default by position), but
# default_certificate names it explicitly on a list where it is not first.
CERTS = ["api.example.test", "example.test", "wildcard.example.test"]


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_backend):
    echo = module_backend.echo()
    ports = {"default": free_port(), "reject": free_port(), "first": free_port()}
    ls = [
        listener("default", ports["default"], echo.addr, pki, CERTS),
        listener("reject", ports["reject"], echo.addr, pki, CERTS),
        listener("first", ports["first"], echo.addr, pki, ["wildcard.example.test", "example.test"]),
    ]
    ls[0]["tls"]["default_certificate"] = "example.test"
    ls[1]["tls"]["default_certificate"] = "example.test"
    ls[1]["tls"]["unknown_sni"] = "reject"
    p = module_postern(config(ls), ports.values())
    return p, ports


def leaf_of(port, sni):
    r = s_client(port, "-showcerts", servername=sni)
    return r, (pem_body(r.certs[0]) if r.certs else None)


def which(pki, body):
    for name in CERTS:
        if first_pem(pki.cert(name)) == body:
            return name
    return "<not one of the test leaves>" if body else "<no certificate>"


CASES = [
    ("example.test", "example.test"),
    ("www.example.test", "example.test"),       # exact SAN beats *.example.test
    ("api.example.test", "api.example.test"),   # its own certificate, not the wildcard
    ("x.example.test", "wildcard.example.test"),
    ("a.b.example.test", "example.test"),       # wildcard covers one label only: default
    ("other.invalid", "example.test"),          # unknown: default
    ("EXAMPLE.TEST", "example.test"),
    ("Api.Example.Test", "api.example.test"),
    ("X.EXAMPLE.test", "wildcard.example.test"),
    (None, "example.test"),                     # no SNI: default
]


@pytest.mark.parametrize("sni,expected", CASES, ids=[str(c[0]) for c in CASES])
def test_certificate_by_sni(srv, pki, sni, expected):
    p, ports = srv
    r, body = leaf_of(ports["default"], sni)
    got = which(pki, body)
    assert got == expected, f"SNI {sni!r}: expected the {expected} leaf, got {got}\n{r}{p.context()}"
    assert r.protocol == "TLSv1.3", f"{r}"


def test_default_is_first_certificate(srv, pki):
    """Without default_certificate the first certificate is the default."""
    p, ports = srv
    for sni in ("other.invalid", None, "example.test"):
        r, body = leaf_of(ports["first"], sni)
        want = "example.test" if sni == "example.test" else "wildcard.example.test"
        assert which(pki, body) == want, f"SNI {sni!r}: expected {want}\n{r}{p.context()}"


@pytest.mark.parametrize("sni", ["other.invalid", "a.b.example.test"])
def test_unknown_sni_rejected(srv, sni):
    p, ports = srv
    r = s_client(ports["reject"], servername=sni)
    ctx = f"{r}{p.context()}"
    assert r.rc != 0 and not r.handshake_done, f"handshake with unknown SNI {sni!r} must fail\n{ctx}"
    assert re.search(r"unrecognized[ _]name", r.out) and "alert number 112" in r.out, (
        f"expected a fatal unrecognized_name alert (112)\n{ctx}")


@pytest.mark.parametrize("sni,expected", [("example.test", "example.test"),
                                          ("x.example.test", "wildcard.example.test"),
                                          (None, "example.test")])
def test_reject_listener_serves_known_and_missing_sni(srv, pki, sni, expected):
    """unknown_sni: reject refuses only a name it does not know; a client that
    sends no SNI gets the default certificate."""
    p, ports = srv
    r, body = leaf_of(ports["reject"], sni)
    assert which(pki, body) == expected, f"SNI {sni!r}: expected {expected}\n{r}{p.context()}"


def test_python_client_hostname_check(srv, pki):
    """A strict client (hostname checked, only the root trusted) accepts what
    each name gets."""
    p, ports = srv
    for sni in ("example.test", "www.example.test", "api.example.test", "zz.example.test"):
        with connect_tls(ports["default"], sni, client_context(pki)) as s:
            assert s.version() == "TLSv1.3"
