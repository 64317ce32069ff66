"""`postern -t -c FILE` (check the config and every certificate, exit 0 or 1,
print one summary per certificate), a server that refuses to start on a
broken certificate, and `postern --version`."""

import re

import pytest

from conftest import run_postern, sanitizer_report
from clients import config, free_port, listener


def check(postern_bin, tmp_path, text):
    path = tmp_path / "check.yaml"
    path.write_text(text)
    r = run_postern(postern_bin, "-t", "-c", path)
    out = r.stdout + r.stderr
    ctx = (f"\n$ postern -t -c {path}\n(rc={r.returncode})\n--- config:\n{text}"
           f"--- stdout:\n{r.stdout}--- stderr:\n{r.stderr}")
    assert not sanitizer_report(out), f"sanitizer report{ctx}"
    return r.returncode, out, ctx


def one_cert_config(cert, key, pki):
    tls = {"versions": ["tls1.3"], "certificates": [{"cert": str(cert), "key": str(key)}],
           "ca_file": str(pki.root)}
    return config([listener("check", free_port(), "127.0.0.1:9", tls=tls)])


def test_good_config(postern_bin, pki, tmp_path):
    ls = [listener("ec", free_port(), "127.0.0.1:9", pki, ["example.test", "api.example.test"]),
          listener("rsa", free_port(), "127.0.0.1:9", pki, ["localhost-rsa"])]
    rc, out, ctx = check(postern_bin, tmp_path, config(ls))
    assert rc == 0, f"a good config must pass{ctx}"
    low = out.lower()
    for word in ("names:", "issuer:", "key:", "not after:"):
        assert low.count(word) >= 3, f"expected {word!r} once per certificate (3){ctx}"
    assert re.search(r"names:.*\bexample\.test\b.*\bwww\.example\.test\b", out), f"SANs of example.test{ctx}"
    assert re.search(r"names:.*\blocalhost\b", out), f"SANs of localhost{ctx}"
    assert re.search(r"issuer:.*Postern Dev Intermediate CA", out), f"issuer{ctx}"
    assert len(re.findall(r"key:\s*ECDSA P-256", out)) == 2, f"two ECDSA P-256 keys{ctx}"
    assert len(re.findall(r"key:\s*RSA 2048", out)) == 1, f"one RSA 2048 key{ctx}"
    days = [int(d) for d in re.findall(r"(\d+) days? left", out)]
    assert len(days) == 3 and all(88 <= d <= 90 for d in days), (
        f"expected 3 'N days left' with N about 90 (90-day leaves), got {days}{ctx}")
    assert len(re.findall(r"chain:\s*2 certificates", out)) == 3, f"'chain: 2 certificates' x3{ctx}"
    assert not re.search(r"^\s*error:", out, re.M), f"no error lines expected{ctx}"


# name -> (chain file, key file, words that must appear on an error line)
BAD = {
    "key-mismatch": ("example.test", "mismatch", ["does not match"]),
    "no-intermediate": ("nointermediate", "nointermediate",
                        ["incomplete chain", "Postern Dev Intermediate CA"]),
    "expired": ("expired", "expired", ["expired"]),
    "self-signed": ("selfsigned", "selfsigned", ["self-signed"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_certificate(postern_bin, pki, tmp_path, case):
    chain, key, words = BAD[case]
    rc, out, ctx = check(postern_bin, tmp_path, one_cert_config(pki.chain(chain), pki.key(key), pki))
    assert rc == 1, f"{case}: expected exit 1{ctx}"
    error_lines = [ln for ln in out.splitlines() if re.search(r"\berror:", ln, re.I)]
    hit = [ln for ln in error_lines if all(w.lower() in ln.lower() for w in words)]
    assert hit, f"{case}: expected an error line containing {words}{ctx}"
    files = (str(pki.chain(chain)), str(pki.key(key)))
    assert any(f in ln for ln in hit for f in files), f"{case}: the message must name the file{ctx}"


def test_other_problems_not_reported_for_one_fault(postern_bin, pki, tmp_path):
    """Each broken file gets its own message: the expired leaf is not also
    called self-signed or mismatched, and so on."""
    others = {"does not match", "incomplete chain", "expired", "self-signed"}
    for case, (chain, key, words) in BAD.items():
        sub = tmp_path / case
        sub.mkdir()
        _, out, ctx = check(postern_bin, sub, one_cert_config(pki.chain(chain), pki.key(key), pki))
        errors = "\n".join(ln for ln in out.splitlines() if re.search(r"\berror:", ln, re.I)).lower()
        wrong = [w for w in others - {words[0]} if w in errors]
        if case == "self-signed":
            # A self-signed leaf also has no path to the trusted root; saying so is fair.
            wrong = [w for w in wrong if w != "incomplete chain"]
        assert not wrong, f"{case}: unrelated problems {wrong} reported{ctx}"


def test_missing_file(postern_bin, pki, tmp_path):
    missing = tmp_path / "nowhere" / "missing.chain.pem"
    rc, out, ctx = check(postern_bin, tmp_path, one_cert_config(missing, pki.key("example.test"), pki))
    assert rc == 1, f"expected exit 1{ctx}"
    assert re.search(r"No such file|cannot read", out, re.I), f"expected 'No such file'/'cannot read'{ctx}"
    assert str(missing) in out, f"the message must name the missing file{ctx}"


@pytest.mark.parametrize("case", ["key-mismatch", "expired"])
def test_server_refuses_to_start_with_bad_certificate(postern_bin, pki, tmp_path, case):
    chain, key, words = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(one_cert_config(pki.chain(chain), pki.key(key), pki))
    r = run_postern(postern_bin, "-c", path, timeout=15)
    ctx = f"\n(rc={r.returncode})\n--- stdout:\n{r.stdout}--- stderr:\n{r.stderr}"
    assert r.returncode == 1, f"postern -c with a {case} certificate must exit 1{ctx}"
    assert words[0] in r.stderr.lower(), f"stderr must say {words[0]!r}{ctx}"
    assert not sanitizer_report(r.stderr), f"sanitizer report{ctx}"


def test_version(postern_bin):
    r = run_postern(postern_bin, "--version")
    ctx = f"\n(rc={r.returncode})\n--- stdout:\n{r.stdout}--- stderr:\n{r.stderr}"
    assert r.returncode == 0, ctx
    assert re.search(r"^postern \d+\.\d+\.\d+\b", r.stdout, re.M), f"'postern X.Y.Z' on stdout{ctx}"
    assert re.search(r"wolfSSL 5\.5\.4\b", r.stdout), f"'wolfSSL 5.5.4' on stdout{ctx}"
    assert not sanitizer_report(r.stderr), ctx
