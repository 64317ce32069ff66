"""tls.groups: the key-exchange groups a listener offers (RFC 8446 4.2.7),
in preference order. The default is [x25519, p256, p384]: a client that
offers P-384 alone completes; P-521 is not offered unless listed, and a
client with no group in common gets handshake_failure (RFC 8446 4.1.1,
.ci/wolfssl-no-common-group.patch). Unknown names are config errors at
file:line:col."""

import re

import pytest

from clients import config, free_port, listener, s_client, tls_block
from conftest import run_postern

# s_client prints the alert it received as "... alert handshake failure ...
# SSL alert number 40".
ALERT_HANDSHAKE_FAILURE = 40


@pytest.fixture(scope="module")
def default_srv(pki, module_postern, module_backend):
    echo = module_backend.echo()
    port = free_port()
    module_postern(config([listener("groups", port, echo.addr, pki)], workers=1), [port])
    return port


@pytest.fixture(scope="module")
def p521_srv(pki, module_postern, module_backend):
    echo = module_backend.echo()
    port = free_port()
    tls = tls_block(pki, groups=["p521", "x25519"], versions=["tls1.2", "tls1.3"])
    module_postern(config([listener("p521", port, echo.addr, tls=tls)], workers=1), [port])
    return port


def _group(out):
    m = re.search(r"(?:Server Temp Key|Negotiated TLS1.3 group|Peer Temp Key): ?([^,\n]+)", out)
    return m.group(1).strip() if m else None


@pytest.mark.parametrize("group,shown", [("X25519", "X25519"), ("P-256", "ECDH, prime256v1"),
                                         ("P-384", "ECDH, secp384r1")])
def test_default_groups_complete(default_srv, group, shown):
    r = s_client(default_srv, "-groups", group, servername="example.test", stdin=b"")
    assert r.handshake_done, str(r)
    assert shown.split(", ")[-1] in r.out, str(r)


def test_hello_retry_to_p384(default_srv):
    # OpenSSL sends a key share for its first group only: P-521 is not
    # offered by postern, which asks for P-384 (HelloRetryRequest).
    r = s_client(default_srv, "-groups", "P-521:P-384", servername="example.test")
    assert r.handshake_done, str(r)
    assert "secp384r1" in r.out, str(r)


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_p521_refused_by_default(pki, module_postern, module_backend, version):
    echo = module_backend.echo()
    port = free_port()
    tls = tls_block(pki, versions=["tls1.2", "tls1.3"])
    module_postern(config([listener("nop521", port, echo.addr, tls=tls)], workers=1), [port])
    r = s_client(port, version, "-groups", "P-521", servername="example.test")
    assert not r.handshake_done, str(r)
    # A ClientHello without a common group gets a fatal handshake_failure
    # alert, in TLS 1.3 (wolfssl-no-common-group.patch) and TLS 1.2
    # (wolfssl-tls12-common-group.patch) alike.
    assert f"alert number {ALERT_HANDSHAKE_FAILURE}" in r.out, str(r)


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_configured_p521(p521_srv, version):
    # OpenSSL's TLS 1.2 client also checks the ECDSA certificate's curve
    # (P-256) against its own group list.
    r = s_client(p521_srv, version, "-groups", "P-521:P-256", servername="example.test")
    assert r.handshake_done, str(r)
    assert "secp521r1" in r.out or "P-521" in r.out, str(r)
    # P-384 is not in this listener's list.
    r = s_client(p521_srv, version, "-groups", "P-384:P-256", servername="example.test")
    assert not r.handshake_done, str(r)


def _check_error(postern_bin, tmp_path, pki, groups_yaml, expect):
    port = free_port()
    text = config([listener("g", port, "127.0.0.1:9", pki)], workers=1)
    text = text.replace("      versions:", f"      groups: {groups_yaml}\n      versions:", 1)
    path = tmp_path / "postern.yaml"
    path.write_text(text)
    r = run_postern(postern_bin, "-t", "-c", path)
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(n for n, s in enumerate(text.splitlines(), 1) if "groups:" in s)
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: .*groups.*{expect}", r.stderr), r.stderr


@pytest.mark.parametrize("groups_yaml,expect", [
    ("[x25519, secp256k1]", r"unknown key-exchange group \"secp256k1\".*expected x25519"),
    ("[P-256]", r"unknown key-exchange group"),
    ("[x25519, x25519]", r"listed twice"),
    ("[]", r"expected at least one group"),
    ("x25519", r"list"),
])
def test_config_errors(postern_bin, tmp_path, pki, groups_yaml, expect):
    _check_error(postern_bin, tmp_path, pki, groups_yaml, expect)
