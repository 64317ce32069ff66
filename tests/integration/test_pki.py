"""conf/mkpki.sh: the development/test PKI every other test stands on.
Needs no postern binary."""

import datetime
import os
import re
import stat
import subprocess

import pytest

from conftest import REPO

LEAVES = {
    "localhost": ["DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"],
    "example.test": ["DNS:example.test", "DNS:www.example.test"],
    "wildcard.example.test": ["DNS:*.example.test"],
    "api.example.test": ["DNS:api.example.test"],
}
ALL = [n + v for n in LEAVES for v in ("", "-rsa")]


def x509_text(path):
    return subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-text"],
                          stdout=subprocess.PIPE, text=True, check=True).stdout


def not_after(path):
    out = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-enddate"],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return datetime.datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")


@pytest.mark.parametrize("name", ALL)
def test_leaf(pki, name):
    base = name.removesuffix("-rsa")
    chain, cert, key = pki.chain(name), pki.cert(name), pki.key(name)
    for f in (chain, cert, key):
        assert f.exists(), f"{f} missing"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, f"{key} must be mode 600"
    # Chain file = leaf, then intermediate.
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                        chain.read_text(), re.S)
    assert blocks == [cert.read_text(), pki.intermediate.read_text()], f"{chain}: leaf + intermediate"
    # Verifies against the root alone, for a TLS server.
    v = subprocess.run(["openssl", "verify", "-CAfile", str(pki.root), "-untrusted",
                        str(pki.intermediate), "-purpose", "sslserver", str(cert)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert v.returncode == 0, v.stdout
    text = x509_text(cert)
    assert f"CN = {base}" in text and "CN = Postern Dev Intermediate CA" in text, text
    san = re.search(r"Subject Alternative Name:\s*\n\s*(.*)", text).group(1)
    assert [s.strip() for s in san.split(",")] == LEAVES[base], f"{name} SAN {san}"
    assert re.search(r"Basic Constraints: critical\s*\n\s*CA:FALSE", text), text
    assert "TLS Web Server Authentication" in text, text
    usage = re.search(r"Key Usage: critical\s*\n\s*(.*)", text).group(1).strip()
    if name.endswith("-rsa"):
        assert "Public-Key: (2048 bit)" in text and "rsaEncryption" in text, text
        assert usage == "Digital Signature, Key Encipherment", usage
    else:
        assert "NIST CURVE: P-256" in text, text
        assert usage == "Digital Signature", usage
    days = (not_after(cert) - datetime.datetime.utcnow()).days
    assert 88 <= days <= 90, f"{name}: {days} days left, expected 90-day leaves"
    # The key belongs to the certificate.
    pub = lambda args: subprocess.run(args, stdout=subprocess.PIPE, check=True).stdout  # noqa: E731
    assert pub(["openssl", "pkey", "-in", str(key), "-pubout"]) == \
        pub(["openssl", "x509", "-in", str(cert), "-noout", "-pubkey"]), f"{key} does not match {cert}"


def test_cas(pki):
    root, inter = x509_text(pki.root), x509_text(pki.intermediate)
    assert "Subject: O = Postern Dev, CN = Postern Dev Root CA" in root
    assert re.search(r"CA:TRUE\s*$", root, re.M), root
    assert (not_after(pki.root) - datetime.datetime.utcnow()).days >= 3600, "root: 10 years"
    assert "Subject: O = Postern Dev, CN = Postern Dev Intermediate CA" in inter
    assert "CA:TRUE, pathlen:0" in inter, inter
    for k in ("root.key.pem", "intermediate.key.pem"):
        assert stat.S_IMODE(os.stat(pki.dir / k).st_mode) == 0o600, k


def test_serials_are_random_and_distinct(pki):
    serials = []
    for f in [pki.root, pki.intermediate] + [pki.cert(n) for n in ALL]:
        out = subprocess.run(["openssl", "x509", "-in", str(f), "-noout", "-serial"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
        serials.append(out.strip().split("=", 1)[1])
    assert len(set(serials)) == len(serials), serials
    assert all(len(s) >= 30 for s in serials), f"expected ~128-bit serials: {serials}"


def test_made_once_and_never_half_made(tmp_path):
    out = tmp_path / "dev"
    script = str(REPO / "conf" / "mkpki.sh")
    subprocess.run([script, str(out)], check=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    subprocess.run([script, str(out)], check=True)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert before == after, "a second run must leave an existing PKI alone"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mkpki")], "temp dir left behind"
    # Interrupted run: nothing at OUTDIR, no temp dir.
    out2 = tmp_path / "dev2"
    p = subprocess.Popen([script, str(out2)], start_new_session=True)
    try:
        p.wait(0.15)
    except subprocess.TimeoutExpired:
        p.terminate()
        p.wait(5)
    if p.returncode != 0:
        assert not out2.exists(), "an interrupted run left OUTDIR behind"
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".mkpki")], "temp dir left behind"
    r = subprocess.run([script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
