"""Several certificates for one name, of different key types (issue 15):
each handshake gets, among the certificates matching its server name (exact,
then wildcard, then the default), the first whose signature the client
accepts (RFC 8446 4.2.3; TLS 1.2 also by the cipher suite's
authentication), ECDSA before RSA. A client that accepts none gets
handshake_failure. Real clients: openssl s_client, curl, Python's ssl."""

import json
import re
import ssl

import pytest

from clients import (HOST, client_context, config, connect_tls, curl, first_pem, free_port,
                     listener, pem_body, s_client)
from conftest import run_postern

ALERT_HANDSHAKE_FAILURE = 40


def _certs(pki, *names):
    return [{"cert": str(pki.chain(n)), "key": str(pki.key(n))} for n in names]


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_backend):
    """example.test with RSA listed first and ECDSA second (the order of
    the list does not decide); api.example.test RSA only, under an ECDSA
    wildcard; a builtin:info listener with the same certificates."""
    echo = module_backend.echo()
    ports = {"tcp": free_port(), "info": free_port()}
    certs = _certs(pki, "example.test-rsa", "example.test", "api.example.test-rsa",
                   "wildcard.example.test")
    tls = {"versions": ["tls1.2", "tls1.3"], "certificates": certs, "ca_file": str(pki.root)}
    ls = [listener("dual", ports["tcp"], echo.addr, tls=tls),
          listener("info", ports["info"], "builtin:info", tls=dict(tls), alpn=["http/1.1"])]
    p = module_postern(config(ls, workers=1), ports.values())
    return p, ports


def _leaf(r):
    assert r.certs, str(r)
    return pem_body(r.certs[0])


@pytest.mark.parametrize("sigalgs,leaf", [
    ("ECDSA+SHA256", "example.test"),
    ("RSA-PSS+SHA256", "example.test-rsa"),
    ("rsa_pss_rsae_sha256", "example.test-rsa"),
    ("RSA-PSS+SHA256:ECDSA+SHA256", "example.test"),  # ECDSA first, whatever the client's order
])
def test_tls13_sigalgs(srv, pki, sigalgs, leaf):
    p, ports = srv
    r = s_client(ports["tcp"], "-tls1_3", "-showcerts", "-sigalgs", sigalgs,
                 servername="example.test")
    assert r.handshake_done, f"{r}{p.context()}"
    assert _leaf(r) == first_pem(pki.cert(leaf)), f"expected the {leaf} leaf\n{r}"


def test_tls13_default_client_gets_ecdsa(srv, pki):
    p, ports = srv
    r = s_client(ports["tcp"], "-showcerts", servername="example.test")
    assert r.handshake_done and _leaf(r) == first_pem(pki.cert("example.test")), str(r)
    assert "Peer signature type: ECDSA" in r.out, str(r)


@pytest.mark.parametrize("cipher,leaf", [
    ("ECDHE-RSA-AES128-GCM-SHA256", "example.test-rsa"),
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "example.test"),
    ("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256", "example.test"),
])
def test_tls12_by_cipher_suite(srv, pki, cipher, leaf):
    p, ports = srv
    r = s_client(ports["tcp"], "-tls1_2", "-showcerts", "-cipher", cipher,
                 servername="example.test")
    assert r.handshake_done and r.protocol == "TLSv1.2", f"{r}{p.context()}"
    assert _leaf(r) == first_pem(pki.cert(leaf)), f"expected the {leaf} leaf\n{r}"


@pytest.mark.parametrize("sigalgs,leaf", [
    ("RSA+SHA256", "example.test-rsa"),      # PKCS#1 v1.5: TLS 1.2 only
    ("RSA-PSS+SHA256", "example.test-rsa"),
    ("ECDSA+SHA384", "example.test"),        # any hash with ECDSA in TLS 1.2
])
def test_tls12_by_sigalgs(srv, pki, sigalgs, leaf):
    p, ports = srv
    r = s_client(ports["tcp"], "-tls1_2", "-showcerts", "-sigalgs", sigalgs,
                 servername="example.test")
    assert r.handshake_done, f"{r}{p.context()}"
    assert _leaf(r) == first_pem(pki.cert(leaf)), f"expected the {leaf} leaf\n{r}"


def test_tls12_curve_of_the_certificate(srv, pki):
    """TLS 1.2: an ECDSA certificate's curve must be among the client's
    supported_groups (RFC 8422 5.1): a client listing X25519 alone gets the
    RSA certificate, which it can verify."""
    p, ports = srv
    r = s_client(ports["tcp"], "-tls1_2", "-showcerts", "-groups", "X25519",
                 servername="example.test")
    assert r.handshake_done, f"{r}{p.context()}"
    assert _leaf(r) == first_pem(pki.cert("example.test-rsa")), str(r)
    # TLS 1.3 names the curve in the signature scheme instead: ECDSA.
    r = s_client(ports["tcp"], "-tls1_3", "-showcerts", "-groups", "X25519",
                 servername="example.test")
    assert r.handshake_done and _leaf(r) == first_pem(pki.cert("example.test")), str(r)


def test_tls13_pkcs1_only_refused(srv):
    # RSA keys sign with PSS in TLS 1.3 (RFC 8446 4.2.3): a client offering
    # PKCS#1 v1.5 alone can verify no certificate.
    p, ports = srv
    r = s_client(ports["tcp"], "-tls1_3", "-sigalgs", "RSA+SHA256", servername="example.test")
    assert not r.handshake_done, str(r)
    assert f"alert number {ALERT_HANDSHAKE_FAILURE}" in r.out, f"{r}{p.context()}"


def test_python_ssl_default_gets_ecdsa(srv, pki):
    p, ports = srv
    with connect_tls(ports["tcp"], "example.test", client_context(pki)) as s:
        der = s.getpeercert(binary_form=True)
    assert ssl.DER_cert_to_PEM_cert(der).split("-----")[2].replace("\n", "") == \
        first_pem(pki.cert("example.test"))


def test_curl_default_gets_ecdsa(srv, pki):
    p, ports = srv
    url = f"https://example.test:{ports['info']}/"
    rc, body, err = curl(url, "--cacert", str(pki.root), "--resolve",
                         f"example.test:{ports['info']}:{HOST}", "-H", "Accept: application/json")
    assert rc == 0, f"{err}{p.context()}"
    info = json.loads(body)
    assert info["chain"][0]["key"] == "ECDSA P-256", body
    rc, body, err = curl(url, "--cacert", str(pki.root), "--resolve",
                         f"example.test:{ports['info']}:{HOST}", "-H", "Accept: application/json",
                         "--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256")
    assert rc == 0, f"{err}{p.context()}"
    assert json.loads(body)["chain"][0]["key"] == "RSA 2048", body


def test_exact_then_wildcard(srv, pki):
    """api.example.test has an RSA certificate of its own and is covered by
    the ECDSA wildcard: an ECDSA-only client gets the wildcard, an RSA
    client the exact name's certificate."""
    p, ports = srv
    r = s_client(ports["tcp"], "-tls1_3", "-showcerts", "-sigalgs", "ECDSA+SHA256",
                 servername="api.example.test")
    assert r.handshake_done and _leaf(r) == first_pem(pki.cert("wildcard.example.test")), str(r)
    r = s_client(ports["tcp"], "-tls1_3", "-showcerts", "-sigalgs", "RSA-PSS+SHA256",
                 servername="api.example.test")
    assert r.handshake_done and _leaf(r) == first_pem(pki.cert("api.example.test-rsa")), str(r)
    # A name only the wildcard covers, which has no RSA certificate.
    r = s_client(ports["tcp"], "-tls1_3", "-sigalgs", "RSA-PSS+SHA256",
                 servername="other.example.test")
    assert not r.handshake_done, str(r)
    assert f"alert number {ALERT_HANDSHAKE_FAILURE}" in r.out, str(r)
    assert re.search(r"no certificate whose signature the client accepts", p.stderr()), \
        p.context()


def test_no_sni_default_set(srv, pki):
    """Without a server name, the default (the first certificate's names)
    is chosen by key type too."""
    p, ports = srv
    r = s_client(ports["tcp"], "-tls1_3", "-showcerts", "-sigalgs", "ECDSA+SHA256")
    assert r.handshake_done and _leaf(r) == first_pem(pki.cert("example.test")), str(r)
    r = s_client(ports["tcp"], "-tls1_3", "-showcerts", "-sigalgs", "RSA-PSS+SHA256")
    assert r.handshake_done and _leaf(r) == first_pem(pki.cert("example.test-rsa")), str(r)


def _config_file(tmp_path, pki, names):
    port = free_port()
    tls = {"versions": ["tls1.3"], "certificates": _certs(pki, *names), "ca_file": str(pki.root)}
    text = config([listener("l", port, "127.0.0.1:9", tls=tls)], workers=1)
    path = tmp_path / "postern.yaml"
    path.write_text(text)
    return path, text


def test_same_key_type_same_name_is_an_error(postern_bin, tmp_path, pki):
    path, text = _config_file(tmp_path, pki, ["example.test", "api.example.test",
                                              "example.test"])
    r = run_postern(postern_bin, "-t", "-c", path)
    assert r.returncode != 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    # The third item of the list, at its line.
    lines = [n for n, s in enumerate(text.splitlines(), 1) if s.strip().startswith("- cert:")]
    assert re.search(rf"{re.escape(str(path))}:{lines[2]}:\d+: listeners\[0\]\.tls\."
                     rf"certificates\[2\]: name example.test is also in certificates\[0\], "
                     rf"whose key is of the same type \(ECDSA P-256\)", out), out


def test_check_shows_choice(postern_bin, tmp_path, pki):
    path, _ = _config_file(tmp_path, pki, ["example.test-rsa", "example.test"])
    r = run_postern(postern_bin, "-t", "-c", path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"example\.test: ECDSA P-256 \(\S*example\.test\.chain\.pem\), "
                     r"then RSA 2048 \(\S*example\.test-rsa\.chain\.pem\)", r.stdout), r.stdout
