"""Client certificates (tls.client_auth, issue 15): verification against
ca_file only, with the chain the client sent and expiry checked; the alerts
s_client sees (RFC 8446 6.2: certificate_required, bad_certificate,
unknown_ca, certificate_expired); in http mode the verified leaf and chain
reach the backend as RFC 9440 Client-Cert and Client-Cert-Chain, and what a
client sends in those fields itself never does; builtin:info and the access
log show the subject; a reload swaps ca_file and a broken one keeps the
running generation. Real clients: curl --cert/--key, openssl s_client -cert.

The client PKI is made here with python3-cryptography: a client root, an
intermediate, a leaf (sent with the intermediate), an expired leaf, a leaf
from an unknown CA. Nothing is committed."""

import base64
import datetime
import json
import os
import re
import signal
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clients import config, free_port, listener, s_client, tls_block
from conftest import run_postern
from http_backends import curl_http, header_values, http_listener

ALERT = {"handshake_failure": 40, "bad_certificate": 42, "certificate_expired": 45,
         "unknown_ca": 48, "certificate_required": 116}


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Postern Client Test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_cn, key, issuer_cn, issuer_key, ca, days=(-1, 30)):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject_cn)).issuer_name(_name(issuer_cn))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now + datetime.timedelta(days=days[0]))
         .not_valid_after(now + datetime.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                          False), critical=True)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(c):
    return c.public_bytes(serialization.Encoding.PEM)


def _key_pem(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


class ClientPki:
    def __init__(self, d):
        d.mkdir(parents=True, exist_ok=True)
        self.dir = d
        k = lambda: ec.generate_private_key(ec.SECP256R1())  # noqa: E731
        root_k, inter_k, other_k = k(), k(), k()
        root = _cert("Client Root CA", root_k, "Client Root CA", root_k, True, (-1, 3650))
        inter = _cert("Client Intermediate CA", inter_k, "Client Root CA", root_k, True,
                      (-1, 1800))
        other = _cert("Unknown CA", other_k, "Unknown CA", other_k, True, (-1, 3650))
        self.ca = d / "clients-ca.pem"
        self.ca.write_bytes(_pem(root))
        self.other_ca = d / "other-ca.pem"
        self.other_ca.write_bytes(_pem(other))
        self.leaf_der = {}
        self.inter_der = inter.public_bytes(serialization.Encoding.DER)
        for name, issuer, ik, days in [("alice", "Client Intermediate CA", inter_k, (-1, 30)),
                                       ("expired", "Client Intermediate CA", inter_k, (-60, -2)),
                                       ("stranger", "Unknown CA", other_k, (-1, 30))]:
            lk = k()
            leaf = _cert(name, lk, issuer, ik, False, days)
            chain = _pem(leaf) + (_pem(inter) if issuer != "Unknown CA" else b"")
            (d / f"{name}.pem").write_bytes(chain)
            (d / f"{name}.key").write_bytes(_key_pem(lk))
            os.chmod(d / f"{name}.key", 0o600)
            self.leaf_der[name] = leaf.public_bytes(serialization.Encoding.DER)

    def cert(self, name):
        return self.dir / f"{name}.pem"

    def key(self, name):
        return self.dir / f"{name}.key"


@pytest.fixture(scope="module")
def cpki(tmp_path_factory):
    return ClientPki(tmp_path_factory.mktemp("clientpki"))


def _tls(pki, cpki, mode, forward=None):
    auth = {"mode": mode, "ca_file": str(cpki.ca)}
    if forward:
        auth["forward"] = forward
    return tls_block(pki, ["example.test", "api.example.test"],
                     versions=["tls1.2", "tls1.3"], client_auth=auth)


@pytest.fixture(scope="module")
def srv(pki, cpki, module_postern, module_backend, module_http_servers):
    be = module_http_servers.http()
    echo = module_backend.say_and_close(b"hello-mtls\n")
    ports = {m: free_port() for m in ("required", "optional", "none", "tcp", "info", "plain")}
    ls = [http_listener("required", ports["required"], be.addr, pki,
                        tls=_tls(pki, cpki, "required", "headers")),
          http_listener("optional", ports["optional"], be.addr, pki,
                        tls=_tls(pki, cpki, "optional", "headers")),
          http_listener("none", ports["none"], be.addr, pki,
                        tls=_tls(pki, cpki, "none")),
          listener("tcp", ports["tcp"], echo.addr, tls=_tls(pki, cpki, "required")),
          listener("info", ports["info"], "builtin:info", tls=_tls(pki, cpki, "required"),
                   alpn=["http/1.1"]),
          http_listener("plain", ports["plain"], be.addr, pki, access_log="stderr")]
    ls[0]["access_log"] = "stderr"
    p = module_postern(config(ls, workers=1), ports.values())
    return p, be, ports


def _req(pki, cpki, port, who, *args, http="1.1", path="/echo"):
    extra = ["--cert", str(cpki.cert(who)), "--key", str(cpki.key(who))] if who else []
    return curl_http(pki, port, path, *extra, *args, http=http)


def _cert_args(cpki, who):
    """s_client options sending who's leaf and the intermediate after it."""
    return ["-cert", str(cpki.cert(who)), "-key", str(cpki.key(who)),
            "-cert_chain", str(cpki.cert(who))]


def _seen(be, tag):
    recs = [r for r in be.seen if tag in r["path"]]
    assert recs, f"the backend saw no request with {tag}"
    return recs[-1]


def _sf_binary(value):
    """An RFC 8941 3.3.5 Byte Sequence: ":base64:"."""
    m = re.fullmatch(r":([A-Za-z0-9+/=]*):", value)
    assert m, f"not a Byte Sequence: {value!r}"
    return base64.b64decode(m.group(1), validate=True)


@pytest.mark.parametrize("http", ["1.1", "2"])
def test_required_forwards_rfc9440(srv, pki, cpki, http):
    p, be, ports = srv
    tag = f"rfc9440-{http}"
    r = _req(pki, cpki, ports["required"], "alice", "-H", "Client-Cert: :Zm9v:",
             "-H", "client-cert-chain: :YmFy:", http=http, path=f"/echo?tag={tag}")
    assert r.rc == 0 and r.status == 200, f"{r}{p.context()}"
    rec = _seen(be, tag)
    certs = header_values(rec, "Client-Cert")
    chains = header_values(rec, "Client-Cert-Chain")
    assert len(certs) == 1 and len(chains) == 1, rec["headers"]
    assert _sf_binary(certs[0]) == cpki.leaf_der["alice"]
    # The rest of the chain as sent: the intermediate (RFC 9440 2.2).
    parts = [s.strip() for s in chains[0].split(",")]
    assert [_sf_binary(s) for s in parts] == [cpki.inter_der]


def test_required_without_certificate(srv, pki, cpki):
    p, be, ports = srv
    r = s_client(ports["required"], "-tls1_3", "-ign_eof", servername="example.test", stdin=b"")
    # TLS 1.3: the server reads the client's (empty) Certificate after its
    # own Finished; s_client shows the alert when it reads.
    assert f"alert number {ALERT['certificate_required']}" in r.out, f"{r}{p.context()}"
    r = _req(pki, cpki, ports["required"], None)
    assert r.rc != 0, str(r)


def test_tls12_required_without_certificate(srv, pki, cpki):
    p, be, ports = srv
    r = s_client(ports["required"], "-tls1_2", servername="example.test")
    assert f"alert number {ALERT['handshake_failure']}" in r.out, f"{r}{p.context()}"


@pytest.mark.parametrize("who,alert", [("expired", "certificate_expired"),
                                       ("stranger", "unknown_ca")])
def test_bad_certificates(srv, pki, cpki, who, alert):
    p, be, ports = srv
    for port in (ports["required"], ports["optional"]):
        # -ign_eof: s_client reads until postern closes, so it sees the
        # alert that follows its own Finished in TLS 1.3.
        r = s_client(port, "-tls1_3", "-ign_eof", *_cert_args(cpki, who),
                     servername="example.test", stdin=b"GET / HTTP/1.1\r\n\r\n")
        assert f"alert number {ALERT[alert]}" in r.out, f"{who} on {port}\n{r}{p.context()}"


def test_s_client_with_certificate(srv, pki, cpki):
    p, be, ports = srv
    r = s_client(ports["tcp"], "-tls1_3", "-ign_eof", *_cert_args(cpki, "alice"),
                 servername="example.test")
    assert r.handshake_done and "hello-mtls" in r.out, f"{r}{p.context()}"
    r = s_client(ports["tcp"], "-tls1_2", "-ign_eof", *_cert_args(cpki, "alice"),
                 servername="example.test")
    assert r.handshake_done and "hello-mtls" in r.out, f"{r}{p.context()}"


def test_optional(srv, pki, cpki):
    p, be, ports = srv
    r = _req(pki, cpki, ports["optional"], None, "-H", "Client-Cert: :Zm9v:",
             path="/echo?tag=optional-none")
    assert r.rc == 0 and r.status == 200, f"{r}{p.context()}"
    rec = _seen(be, "optional-none")
    assert header_values(rec, "Client-Cert") == [] and \
        header_values(rec, "Client-Cert-Chain") == [], rec["headers"]
    r = _req(pki, cpki, ports["optional"], "alice", path="/echo?tag=optional-alice")
    assert r.rc == 0 and r.status == 200, f"{r}{p.context()}"
    rec = _seen(be, "optional-alice")
    assert _sf_binary(header_values(rec, "Client-Cert")[0]) == cpki.leaf_der["alice"]


@pytest.mark.parametrize("port_name", ["none", "plain"])
def test_spoofed_fields_stripped(srv, pki, cpki, port_name):
    """Without client_auth, and without any client certificate setting at
    all, a client's own Client-Cert fields never reach the backend."""
    p, be, ports = srv
    tag = f"spoof-{port_name}"
    for http in ("1.1", "2"):
        r = _req(pki, cpki, ports[port_name], None, "-H", "Client-Cert: :Zm9v:",
                 "-H", "Client-Cert-Chain: :YmFy:", http=http, path=f"/echo?tag={tag}{http}")
        assert r.rc == 0 and r.status == 200, f"{r}{p.context()}"
        rec = _seen(be, f"{tag}{http}")
        names = [k.lower() for k, _ in rec["headers"]]
        assert "client-cert" not in names and "client-cert-chain" not in names, rec["headers"]


def test_info_and_access_log(srv, pki, cpki):
    p, be, ports = srv
    r = _req(pki, cpki, ports["info"], "alice", "-H", "Accept: application/json", path="/")
    assert r.rc == 0, f"{r}{p.context()}"
    info = json.loads(r.body)
    cc = info["client_cert"]
    assert "CN=alice" in cc["subject"] and "CN=Client Intermediate CA" in cc["issuer"], info
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", cc["not_after"]), info
    r = _req(pki, cpki, ports["required"], "alice", path="/echo?tag=logline")
    assert r.rc == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "logline" not in p.stderr():
        time.sleep(0.1)
    line = [ln for ln in p.stderr().splitlines() if "tag=logline" in ln][-1]
    assert re.search(r"client_cert=\S*CN=alice", line), line
    # No client certificate: no client_cert token.
    r = _req(pki, cpki, ports["plain"], None, path="/echo?tag=nocertline")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "nocertline" not in p.stderr():
        time.sleep(0.1)
    line = [ln for ln in p.stderr().splitlines() if "tag=nocertline" in ln][-1]
    assert "client_cert=" not in line, line


def test_config_errors(postern_bin, tmp_path, pki, cpki):
    def check(auth, expect, **tls_extra):
        tls = tls_block(pki, client_auth=auth, **tls_extra)
        path = tmp_path / "postern.yaml"
        path.write_text(config([listener("l", free_port(), "127.0.0.1:9", tls=tls)]))
        r = run_postern(postern_bin, "-t", "-c", path)
        assert r.returncode != 0, r.stdout + r.stderr
        assert re.search(expect, r.stdout + r.stderr), r.stdout + r.stderr

    check({"mode": "required"}, r"postern\.yaml:\d+:\d+: listeners\[0\]\.tls\.client_auth: "
          r"client_auth needs ca_file")
    check({"mode": "sometimes", "ca_file": str(cpki.ca)}, r"unknown client_auth mode")
    check({"mode": "required", "ca_file": str(cpki.ca)}, r"early_data: accept cannot go with "
          r"client_auth", early_data="accept")
    bad = tmp_path / "bad-ca.pem"
    bad.write_text("not a certificate\n")
    check({"mode": "required", "ca_file": str(bad)},
          r"postern\.yaml:\d+:\d+: listeners\[0\]\.tls\.client_auth\.ca_file: .*no PEM certificate")


def test_reload_swaps_ca_file(pki, cpki, start_postern, http_servers, tmp_path):
    be = http_servers.http()
    port = free_port()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cpki.ca.read_bytes())
    tls = tls_block(pki, ["example.test"], client_auth={"mode": "required", "ca_file": str(ca)})
    p = start_postern(config([http_listener("r", port, be.addr, pki, tls=tls)], workers=1),
                      [port])
    assert _req(pki, cpki, port, "alice").status == 200
    # A broken CA file: the reload fails, the old CA stays.
    ca.write_text("garbage\n")
    p.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "reload failed" not in p.stderr():
        time.sleep(0.1)
    assert "reload failed" in p.stderr(), p.context()
    assert _req(pki, cpki, port, "alice").status == 200, p.context()
    # The unknown CA instead: alice is refused, the stranger accepted.
    ca.write_bytes(cpki.other_ca.read_bytes())
    p.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "reload ok" not in p.stderr():
        time.sleep(0.1)
    assert "reload ok" in p.stderr(), p.context()
    assert _req(pki, cpki, port, "alice").rc != 0, p.context()
    assert _req(pki, cpki, port, "stranger").status == 200, p.context()
