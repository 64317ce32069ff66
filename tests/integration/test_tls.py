"""TLS basics: protocol versions (RFC 8446 only by default, 1.2 when listed,
never 1.1 or 1.0), the full chain sent (RFC 8446 4.4.2), a chain that a
client verifies with only the root, for ECDSA and RSA leaves."""

import ssl

import pytest

from clients import (client_context, config, connect_tls, first_pem, free_port, listener,
                     pem_body, s_client)


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_backend):
    """Listeners: tls13 (ECDSA, 1.3 only), tls13rsa (RSA, 1.3 only),
    both (ECDSA, 1.2 and 1.3), bothrsa (RSA, 1.2 and 1.3)."""
    echo = module_backend.echo()
    ports = {k: free_port() for k in ("tls13", "tls13rsa", "both", "bothrsa")}
    ls = [
        listener("tls13", ports["tls13"], echo.addr, pki, ["example.test"]),
        listener("tls13rsa", ports["tls13rsa"], echo.addr, pki, ["example.test-rsa"]),
        listener("both", ports["both"], echo.addr, pki, ["example.test"]),
        listener("bothrsa", ports["bothrsa"], echo.addr, pki, ["example.test-rsa"]),
    ]
    ls[2]["tls"]["versions"] = ["tls1.2", "tls1.3"]
    ls[3]["tls"]["versions"] = ["tls1.2", "tls1.3"]
    p = module_postern(config(ls), ports.values())
    return p, ports


KEYS = [("ec", "example.test", 256), ("rsa", "example.test-rsa", 2048)]


@pytest.mark.parametrize("kind,leaf,bits", KEYS, ids=[k[0] for k in KEYS])
def test_tls13_full_chain_verifies(srv, pki, kind, leaf, bits):
    p, ports = srv
    port = ports["tls13"] if kind == "ec" else ports["tls13rsa"]
    r = s_client(port, "-showcerts", "-CAfile", str(pki.root), "-verify_return_error",
                 "-verify_hostname", "example.test", servername="example.test")
    ctx = f"{r}{p.context()}"
    assert r.protocol == "TLSv1.3", f"expected TLSv1.3 to be negotiated\n{ctx}"
    assert "Verify return code: 0 (ok)" in r.out, f"chain did not verify with root.pem only\n{ctx}"
    assert len(r.certs) == 2, f"expected 2 certificates (leaf + intermediate), got {len(r.certs)}\n{ctx}"
    assert pem_body(r.certs[0]) == first_pem(pki.cert(leaf)), f"first certificate is not the {leaf} leaf\n{ctx}"
    assert pem_body(r.certs[1]) == first_pem(pki.intermediate), f"second certificate is not the intermediate\n{ctx}"
    assert f"Server public key is {bits} bit" in r.out, f"expected a {bits}-bit {kind} key\n{ctx}"


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_python_client_verifies(srv, pki, kind):
    p, ports = srv
    port = ports["tls13"] if kind == "ec" else ports["tls13rsa"]
    with connect_tls(port, "example.test", client_context(pki)) as s:
        assert s.version() == "TLSv1.3", p.context()
        san = s.getpeercert().get("subjectAltName", ())
        assert ("DNS", "example.test") in san, f"unexpected leaf SAN {san}"


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_versions_refused(srv, tmp_path, flag):
    """The client must really offer the old version: Debian's openssl.cnf and
    security level 1 would otherwise refuse locally, proving nothing."""
    p, ports = srv
    empty = tmp_path / "openssl.cnf"
    empty.write_text("")
    for name in ("tls13", "both"):
        r = s_client(ports[name], flag, "-cipher", "DEFAULT:@SECLEVEL=0",
                     servername="example.test", env={"OPENSSL_CONF": str(empty), "PATH": "/usr/bin:/bin"})
        ctx = f"listener {name}\n{r}{p.context()}"
        assert "no protocols available" not in r.out, f"client refused locally, test is void\n{ctx}"
        assert "written 0 bytes" not in r.out, f"client sent no ClientHello\n{ctx}"
        assert r.rc != 0 and not r.handshake_done, f"{flag} handshake must fail\n{ctx}"


def test_tls12_refused_when_not_listed(srv, pki):
    p, ports = srv
    for name in ("tls13", "tls13rsa"):
        r = s_client(ports[name], "-tls1_2", servername="example.test")
        ctx = f"listener {name}\n{r}{p.context()}"
        assert r.rc != 0 and not r.handshake_done, f"TLS 1.2 must be refused with versions [tls1.3]\n{ctx}"
    with pytest.raises(ssl.SSLError):
        connect_tls(ports["tls13"], "example.test",
                    client_context(pki, max_version=ssl.TLSVersion.TLSv1_2)).close()


@pytest.mark.parametrize("kind,leaf,bits", KEYS, ids=[k[0] for k in KEYS])
def test_tls12_accepted_when_listed(srv, pki, kind, leaf, bits):
    p, ports = srv
    port = ports["both"] if kind == "ec" else ports["bothrsa"]
    r = s_client(port, "-tls1_2", "-showcerts", "-CAfile", str(pki.root),
                 "-verify_return_error", servername="example.test")
    ctx = f"{r}{p.context()}"
    assert r.protocol == "TLSv1.2", f"expected TLSv1.2 with versions [tls1.2, tls1.3]\n{ctx}"
    assert "Verify return code: 0 (ok)" in r.out, ctx
    assert len(r.certs) == 2, f"expected 2 certificates, got {len(r.certs)}\n{ctx}"
    # A client that can do 1.3 still gets 1.3 from the same listener.
    r13 = s_client(port, servername="example.test")
    assert r13.protocol == "TLSv1.3", f"1.3 must win when both are enabled\n{r13}"
    with connect_tls(port, "example.test",
                     client_context(pki, max_version=ssl.TLSVersion.TLSv1_2)) as s:
        assert s.version() == "TLSv1.2"


def test_groups_default(srv):
    """Key exchange uses X25519 (preferred), P-256 or P-384 (the default
    tls.groups; test_tls_groups.py has the rest). A TLS 1.3 client whose
    key share is for another group it also lists gets a HelloRetryRequest
    for one of ours (RFC 8446 4.1.4); a client with no group in common gets a
    handshake_failure alert, not a HelloRetryRequest naming no group (RFC 8446
    4.1.1; wolfSSL needed a patch for this, .ci/wolfssl-no-common-group.patch)."""
    p, ports = srv
    port = ports["tls13"]
    r = s_client(port, "-tls1_3", servername="example.test")
    assert "Server Temp Key: X25519" in r.out, f"X25519 is preferred\n{r}{p.context()}"
    r = s_client(port, "-tls1_3", "-groups", "P-256", servername="example.test")
    assert "Server Temp Key: ECDH, prime256v1" in r.out, f"P-256 accepted\n{r}{p.context()}"
    r = s_client(port, "-tls1_3", "-groups", "X448:X25519", servername="example.test")
    assert "TLSv1.3" in r.out and "Server Temp Key: X25519" in r.out, \
        f"a HelloRetryRequest for X25519 expected\n{r}{p.context()}"
    r = s_client(port, "-tls1_3", "-groups", "X448:P-521", servername="example.test")
    assert "alert number 40" in r.out, f"handshake_failure expected\n{r}{p.context()}"
    assert "no change following hrr" not in r.out, f"an empty HelloRetryRequest\n{r}"


def test_tls12_groups_default(srv):
    """TLS 1.2's ECDHE is held to the same groups: a client listing P-521
    first still gets P-256, and one offering only P-521 is refused."""
    p, ports = srv
    port = ports["both"]
    r = s_client(port, "-tls1_2", "-groups", "P-521:P-256", servername="example.test")
    assert "Server Temp Key: ECDH, prime256v1" in r.out, f"P-256 expected\n{r}{p.context()}"
    r = s_client(port, "-tls1_2", "-groups", "X25519:P-256", servername="example.test")
    assert "Server Temp Key: X25519" in r.out, f"X25519 expected\n{r}{p.context()}"
    r = s_client(port, "-tls1_2", "-groups", "P-521", servername="example.test")
    assert not r.handshake_done, f"P-521 alone must be refused\n{r}{p.context()}"
