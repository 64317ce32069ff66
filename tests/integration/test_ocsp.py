"""OCSP stapling (issue 15): responses made by `openssl ocsp` as a responder
over the test PKI (an index file, the intermediate as signer or a delegated
responder it certified) are checked at load and stapled, for TLS 1.3 (in the
Certificate entry, RFC 8446 4.4.2.1) and TLS 1.2 (CertificateStatus), as
`openssl s_client -status` shows. Revoked is an error; a stale response or
one for another certificate is a warning and nothing is stapled; a
must-staple certificate (RFC 7633) without a valid response is an error; a
refreshed file is picked up by `watch: true`.

`openssl ocsp` cannot date a response in the past, so the stale one is
signed with Python's cryptography package (its nextUpdate a day ago)."""

import datetime
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from clients import config, curl, free_port, listener, s_client, tls_block
from conftest import run_postern

OCSP_DAYS = 1


def _run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))}:\n{p.stdout.decode(errors='replace')}"
    return p.stdout.decode(errors="replace")


def _serial(cert):
    return _run(["openssl", "x509", "-in", str(cert), "-noout", "-serial"]).strip().split("=")[1]


def _respond(d, cert, out, status="V", rsigner=None, rkey=None, digest=()):
    """A response for cert from `openssl ocsp` run as a responder over an
    index file (status V good, R revoked), signed by the intermediate or by
    rsigner."""
    serial = _serial(cert)
    subject = _run(["openssl", "x509", "-in", str(cert), "-noout", "-subject", "-nameopt",
                    "compat"]).strip().split("=", 1)[1]
    index = d / f"{out.name}.index"
    revoked = "251201000000Z" if status == "R" else ""
    index.write_text(f"{status}\t301231235959Z\t{revoked}\t{serial}\tunknown\t{subject}\n")
    req = d / f"{out.name}.req"
    _run(["openssl", "ocsp", *digest, "-issuer", str(d / "pki" / "intermediate.pem"),
          "-cert", str(cert),
          "-no_nonce", "-reqout", str(req)])
    _run(["openssl", "ocsp", "-index", str(index), "-CA", str(d / "pki" / "intermediate.pem"),
          "-rsigner", str(rsigner or d / "pki" / "intermediate.pem"),
          "-rkey", str(rkey or d / "pki" / "intermediate.key.pem"),
          "-reqin", str(req), "-respout", str(out), "-ndays", str(OCSP_DAYS)])
    return out


def _stale(d, cert, out):
    """A good response whose nextUpdate is a day ago."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    issuer = x509.load_pem_x509_certificate((d / "pki" / "intermediate.pem").read_bytes())
    key = serialization.load_pem_private_key((d / "pki" / "intermediate.key.pem").read_bytes(),
                                             None)
    now = datetime.datetime.utcnow()
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=leaf, issuer=issuer, algorithm=hashes.SHA1(), cert_status=ocsp.OCSPCertStatus.GOOD,
        this_update=now - datetime.timedelta(days=3), next_update=now - datetime.timedelta(days=1),
        revocation_time=None, revocation_reason=None).responder_id(
            ocsp.OCSPResponderEncoding.HASH, issuer)
    out.write_bytes(b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    return out


def _leaf(d, stem, name, ext):
    """A leaf for name signed by the intermediate, with extra extensions."""
    key = d / f"{stem}.key.pem"
    _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
          "-out", str(key)])
    os.chmod(key, 0o600)
    (d / f"{stem}.ext").write_text(ext)
    _run(["openssl", "req", "-new", "-key", str(key), "-subj", f"/O=Postern Dev/CN={name}",
          "-out", str(d / f"{stem}.csr")])
    _run(["openssl", "x509", "-req", "-in", str(d / f"{stem}.csr"),
          "-CA", str(d / "pki" / "intermediate.pem"),
          "-CAkey", str(d / "pki" / "intermediate.key.pem"), "-set_serial",
          str(int.from_bytes(os.urandom(8), "big")), "-days", "30", "-extfile",
          str(d / f"{stem}.ext"), "-out", str(d / f"{stem}.cert.pem")])
    chain = d / f"{stem}.chain.pem"
    chain.write_text((d / f"{stem}.cert.pem").read_text()
                     + (d / "pki" / "intermediate.pem").read_text())
    return chain, key, d / f"{stem}.cert.pem"


class Ocsp:
    pass


@pytest.fixture(scope="module")
def ocsp(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("ocsp")
    shutil.copytree(pki.dir, d / "pki")
    o = Ocsp()
    o.dir = d
    o.good = _respond(d, pki.cert("example.test"), d / "example.good.der")
    o.localhost = _respond(d, pki.cert("localhost"), d / "localhost.good.der")
    # A CertID hashed with SHA-256 rather than openssl's default SHA-1.
    o.sha256 = _respond(d, pki.cert("example.test"), d / "example.sha256.der",
                        digest=("-sha256",))
    o.revoked = _respond(d, pki.cert("example.test"), d / "example.revoked.der", status="R")
    o.stale = _stale(d, pki.cert("example.test"), d / "example.stale.der")
    ocsp_ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    _, rkey, rcert = _leaf(d, "responder", "Postern Dev OCSP",
                           ocsp_ext + "extendedKeyUsage=OCSPSigning\n")
    o.delegated = _respond(d, pki.cert("example.test"), d / "example.delegated.der",
                           rsigner=rcert, rkey=rkey)
    _, nkey, ncert = _leaf(d, "notresponder", "Postern Dev not OCSP",
                           ocsp_ext + "extendedKeyUsage=serverAuth\n")
    o.undelegated = _respond(d, pki.cert("example.test"), d / "example.undelegated.der",
                             rsigner=ncert, rkey=nkey)
    o.ms_chain, o.ms_key, ms_cert = _leaf(
        d, "muststaple", "staple.example.test",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:staple.example.test\n"
        "tlsfeature=status_request\n")
    o.ms_good = _respond(d, ms_cert, d / "muststaple.good.der")
    o.serial = {"example.test": _serial(pki.cert("example.test")),
                "localhost": _serial(pki.cert("localhost"))}
    return o


def _tls(pki, responses, names=("example.test", "localhost"), **extra):
    """Both leaves, TLS 1.2 and 1.3; responses maps a name to its file."""
    tls = tls_block(pki, names, versions=["tls1.2", "tls1.3"], **extra)
    for c, n in zip(tls["certificates"], names):
        if n in responses:
            c["ocsp"] = str(responses[n])
    return tls


def _check(postern_bin, tmp_path, tls):
    path = tmp_path / "postern.yaml"
    text = config([listener("l", free_port(), "127.0.0.1:9", tls=tls)], workers=1)
    path.write_text(text)
    r = run_postern(postern_bin, "-t", "-c", path)
    return r, r.stdout + r.stderr, text, path


def _staple(port, name, version):
    """The serial of the stapled response's certificate, or None."""
    r = s_client(port, "-status", version, servername=name)
    assert r.handshake_done, str(r)
    if "OCSP response: no response sent" in r.out:
        return None
    assert "Cert Status: good" in r.out, str(r)
    m = re.search(r"Serial Number: ([0-9A-F]+)", r.out)
    assert m, str(r)
    return m.group(1)


def _line(text, needle):
    return next(n for n, s in enumerate(text.splitlines(), 1) if needle in s)


def test_check_shows_status_and_next_update(postern_bin, tmp_path, pki, ocsp):
    r, out, _, _ = _check(postern_bin, tmp_path, _tls(pki, {"example.test": ocsp.good}))
    assert r.returncode == 0, out
    assert re.search(r"ocsp:      good, next update \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in "
                     r"[^)]*\) \(\S*example\.good\.der\)", out), out


def test_staple_served_tls13_and_tls12(pki, ocsp, start_postern, backend):
    port, admin = free_port(), free_port()
    tls = _tls(pki, {"example.test": ocsp.good, "localhost": ocsp.localhost})
    p = start_postern(config([listener("l", port, backend.echo().addr, tls=tls)],
                             admin={"listen": f"127.0.0.1:{admin}"}), [port, admin])
    # /metrics: each staple's nextUpdate, about OCSP_DAYS ahead.
    body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read().decode()
    got = re.findall(r'^postern_certificate_ocsp_next_update_seconds\{listener="l",'
                     r'cert_file="([^"]+)"\} (\d+)$', body, re.M)
    assert sorted(os.path.basename(f) for f, _ in got) == [
        "example.test.chain.pem", "localhost.chain.pem"], body
    for _, t in got:
        assert abs(int(t) - (time.time() + OCSP_DAYS * 86400)) < 600, body
    # The default certificate and the other one (chosen by the SNI
    # callback): each gets its own response, in both versions.
    for version in ("-tls1_3", "-tls1_2"):
        for name in ("example.test", "localhost"):
            got = _staple(port, name, version)
            assert got == ocsp.serial[name], f"{name} {version}: stapled {got}" + p.context()


def test_certificate_without_response_staples_nothing(pki, ocsp, start_postern, backend):
    port = free_port()
    tls = _tls(pki, {"example.test": ocsp.good})
    p = start_postern(config([listener("l", port, backend.echo().addr, tls=tls)]), [port])
    for version in ("-tls1_3", "-tls1_2"):
        assert _staple(port, "localhost", version) is None, p.context()
        assert _staple(port, "example.test", version) == ocsp.serial["example.test"]


def test_revoked_is_an_error(postern_bin, tmp_path, pki, ocsp):
    tls = _tls(pki, {"example.test": ocsp.revoked})
    r, out, _, _ = _check(postern_bin, tmp_path, tls)
    assert r.returncode != 0, out
    assert "ocsp:      revoked" in out, out
    assert re.search(r"error: \S*example\.revoked\.der: the responder says the certificate is "
                     r"revoked", out), out
    # Starting: refused, the message at the certificate's place in the file.
    path = tmp_path / "postern.yaml"
    text = path.read_text()
    r = run_postern(postern_bin, "-c", path)
    assert r.returncode != 0
    line = _line(text, "- cert:")
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: listeners\[0\]\.tls\.certificates\[0\]"
                     r": \S*example\.revoked\.der: the responder says the certificate is revoked",
                     r.stderr), r.stderr


@pytest.mark.parametrize("which,reason", [
    ("stale", r"the response is stale \(nextUpdate [^)]*ago\)"),
    ("localhost", r"the response is for another certificate"),
    ("undelegated", r"the responder certificate lacks the OCSP signing extended key usage"),
])
def test_unusable_response_warns_and_is_not_stapled(pki, ocsp, start_postern, backend, which,
                                                    reason):
    port = free_port()
    f = getattr(ocsp, which)
    tls = _tls(pki, {"example.test": f})
    p = start_postern(config([listener("l", port, backend.echo().addr, tls=tls)]), [port])
    assert re.search(rf"WARN .*listeners\[0\]\.tls\.certificates\[0\]: {re.escape(str(f))}: "
                     rf"OCSP response not stapled: {reason}", p.stderr()), p.context()
    for version in ("-tls1_3", "-tls1_2"):
        assert _staple(port, "example.test", version) is None, p.context()


@pytest.mark.parametrize("which", ["delegated", "sha256"])
def test_delegated_responder_and_sha256_certid(pki, ocsp, start_postern, backend, which):
    port = free_port()
    tls = _tls(pki, {"example.test": getattr(ocsp, which)})
    p = start_postern(config([listener("l", port, backend.echo().addr, tls=tls)]), [port])
    assert "not stapled" not in p.stderr(), p.context()
    assert _staple(port, "example.test", "-tls1_3") == ocsp.serial["example.test"]


def test_must_staple(postern_bin, tmp_path, pki, ocsp):
    tls = tls_block(pki, ())
    tls["certificates"] = [{"cert": str(ocsp.ms_chain), "key": str(ocsp.ms_key)}]
    r, out, _, _ = _check(postern_bin, tmp_path, tls)
    assert r.returncode != 0, out
    assert re.search(r"error: \S*muststaple\.chain\.pem: the certificate requires OCSP stapling "
                     r"\(TLS Feature must-staple, RFC 7633\) and has no valid OCSP response", out)
    # A stale response is no better.
    tls["certificates"][0]["ocsp"] = str(ocsp.stale)
    r, out, _, _ = _check(postern_bin, tmp_path, tls)
    assert r.returncode != 0 and "requires OCSP stapling" in out, out
    tls["certificates"][0]["ocsp"] = str(ocsp.ms_good)
    r, out, _, _ = _check(postern_bin, tmp_path, tls)
    assert r.returncode == 0, out
    assert re.search(r"ocsp:      good, .*, must-staple", out), out


def test_ocsp_dir(pki, ocsp, start_postern, backend, tmp_path):
    d = tmp_path / "responses"
    d.mkdir()
    # <cert file name>.ocsp; localhost has none, which is no problem.
    shutil.copy(ocsp.good, d / "example.test.chain.pem.ocsp")
    port = free_port()
    tls = _tls(pki, {}, ocsp_dir=str(d))
    p = start_postern(config([listener("l", port, backend.echo().addr, tls=tls)]), [port])
    assert "not stapled" not in p.stderr(), p.context()
    assert _staple(port, "example.test", "-tls1_2") == ocsp.serial["example.test"]
    assert _staple(port, "localhost", "-tls1_3") is None


def test_ocsp_dir_not_a_directory(postern_bin, tmp_path, pki, ocsp):
    tls = _tls(pki, {}, ocsp_dir=str(ocsp.good))
    r, out, text, path = _check(postern_bin, tmp_path, tls)
    assert r.returncode != 0
    line = _line(text, "ocsp_dir:")
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: .*ocsp_dir \S+ is not a directory",
                     out), out


def test_refreshed_file_picked_up_by_watch(pki, ocsp, start_postern, backend, tmp_path):
    f = tmp_path / "example.der"
    shutil.copy(ocsp.stale, f)
    port = free_port()
    tls = _tls(pki, {"example.test": f})
    p = start_postern(config([listener("l", port, backend.echo().addr, tls=tls)], watch=True,
                             watch_debounce="200ms"), [port])
    assert _staple(port, "example.test", "-tls1_3") is None, p.context()
    # What a cron job does: write the new response aside, rename it in.
    shutil.copy(ocsp.good, tmp_path / "example.der.new")
    os.rename(tmp_path / "example.der.new", f)
    deadline = time.monotonic() + 15
    while "reload ok" not in p.stderr():
        assert time.monotonic() < deadline, "no reload after the response changed" + p.context()
        time.sleep(0.1)
    assert _staple(port, "example.test", "-tls1_3") == ocsp.serial["example.test"], p.context()
    assert _staple(port, "example.test", "-tls1_2") == ocsp.serial["example.test"], p.context()
    assert re.search(r"reload ok \(watch: .*OCSP response of \S*example\.test\.chain\.pem: good",
                     p.stderr()), p.context()
    # A revoked response refuses the new generation: the old one, and its
    # staple, stay.
    shutil.copy(ocsp.revoked, tmp_path / "example.der.new")
    os.rename(tmp_path / "example.der.new", f)
    while "reload failed" not in p.stderr():
        assert time.monotonic() < deadline + 15, "no failed reload" + p.context()
        time.sleep(0.1)
    assert "the responder says the certificate is revoked" in p.stderr(), p.context()
    assert _staple(port, "example.test", "-tls1_3") == ocsp.serial["example.test"], p.context()


def test_staple_after_hello_retry_request(pki, ocsp, start_postern, backend):
    """A TLS 1.3 client whose key share is for a group the listener does not
    take gets a HelloRetryRequest; the second ClientHello's status_request
    still gets the staple (wolfssl-ocsp-static-staple.patch makes it when
    the Certificate is written)."""
    port = free_port()
    tls = _tls(pki, {"example.test": ocsp.good}, groups=["p256"])
    p = start_postern(config([listener("l", port, backend.echo().addr, tls=tls)]), [port])
    r = s_client(port, "-status", "-tls1_3", "-groups", "X25519:P-256", "-msg",
                 servername="example.test")
    assert r.out.count("ServerHello") >= 2, "expected a HelloRetryRequest\n" + str(r)
    assert "Cert Status: good" in r.out, str(r) + p.context()


def test_garbage_and_truncated_responses(postern_bin, tmp_path, pki, ocsp):
    """Whatever the file holds, a warning and no staple, never a crash."""
    good = ocsp.good.read_bytes()
    cases = [b"", b"not an OCSP response\n", os.urandom(300), good[:1], good[:2], good[:10],
             good[:len(good) // 2], good[:-1], good + b"\0", b"\x30\x84\xff\xff\xff\xff"]
    f = tmp_path / "bad.der"
    for data in cases:
        f.write_bytes(data)
        r, out, _, _ = _check(postern_bin, tmp_path, _tls(pki, {"example.test": f}))
        assert r.returncode == 0, f"{data[:16]!r}:\n{out}"
        assert re.search(r"warning: \S*bad\.der: OCSP response not stapled: (not a DER OCSP "
                         r"response|malformed)", out), f"{data[:16]!r}:\n{out}"


def test_builtin_info_shows_the_staple(pki, ocsp, start_postern):
    port = free_port()
    tls = _tls(pki, {"example.test": ocsp.good, "localhost": ocsp.stale})
    start_postern(config([listener("l", port, "builtin:info", tls=tls, alpn=["http/1.1"])]),
                  [port])
    got = {}
    for name in ("example.test", "localhost"):
        rc, body, err = curl(f"https://{name}:{port}/", "--http1.1", "--cacert", str(pki.root),
                             "--resolve", f"{name}:{port}:127.0.0.1", "-H",
                             "Accept: application/json")
        assert rc == 0, err
        got[name] = json.loads(body)["ocsp"]
    assert got["example.test"]["status"] == "good", got
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", got["example.test"]["next_update"])
    assert got["localhost"] == {"status": "not stapled", "next_update": None}, got
