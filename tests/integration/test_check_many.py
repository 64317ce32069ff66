"""`postern -t` and the start-up log with many certificates (issue 17): a
listener with more than 10 certificates is reported as one line per kind of
problem ("40 certificates expire within 21 days (first: ...)"), not one
block per certificate; `--verbose` (`-v`) prints every certificate as for a
small listener."""

import datetime
import re
import signal
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import run_postern, sanitizer_report
from clients import config, free_port, listener

SOON, GOOD = 40, 10  # 50 certificates: 40 expire within expiry_warn_days (21)


def make_leaves(pki, d, plan):
    """plan: [(file stem, not_before offset, not_after offset)], offsets in
    days from now. Every leaf shares one key (a key per leaf would only cost
    time) and is signed by the test PKI's intermediate."""
    ca_key = serialization.load_pem_private_key(
        (pki.dir / "intermediate.key.pem").read_bytes(), None)
    ca = x509.load_pem_x509_certificate(pki.intermediate.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = d / "leaf.key.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    now = datetime.datetime.now(datetime.timezone.utc)
    inter_pem = pki.intermediate.read_bytes()
    paths = []
    for stem, before, after in plan:
        dns = f"{stem}.many.example.test"
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now + datetime.timedelta(days=before))
                .not_valid_after(now + datetime.timedelta(days=after))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))
        path = d / f"{stem}.chain.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + inter_pem)
        paths.append(path)
    return paths, key_path


def many_config(pki, d, plan, port=None):
    paths, key = make_leaves(pki, d, plan)
    tls = {"versions": ["tls1.3"], "ca_file": str(pki.root),
           "certificates": [{"cert": str(p), "key": str(key)} for p in paths]}
    path = d / "many.yaml"
    path.write_text(config([listener("many", port or free_port(), "127.0.0.1:9", tls=tls)]))
    return path, paths


def soon_plan(extra=()):
    plan = [(f"soon{i}", -80, 5 + i % 10) for i in range(SOON)]
    plan += [(f"good{i}", -1, 90) for i in range(GOOD)]
    return plan + list(extra)


def run_check(postern_bin, path, *flags):
    r = run_postern(postern_bin, "-t", *flags, "-c", path, timeout=60)
    out = r.stdout + r.stderr
    ctx = f"\n(rc={r.returncode})\n--- stdout:\n{r.stdout}--- stderr:\n{r.stderr}"
    assert not sanitizer_report(out), f"sanitizer report{ctx}"
    return r, ctx


SOON_LINE = re.compile(r"^warning: 40 certificates expire within 21 days \(first: (.*), \.\.\.; "
                       r"--verbose lists all\)$", re.M)


def test_summary_line_per_kind(postern_bin, pki, tmp_path):
    path, paths = many_config(pki, tmp_path, soon_plan())
    r, ctx = run_check(postern_bin, path)
    assert r.returncode == 0, f"warnings only: exit 0{ctx}"
    m = SOON_LINE.search(r.stdout)
    assert m, f"expected one summary line for the 40 leaves expiring soon{ctx}"
    assert m.group(1).split(", ") == [str(p) for p in paths[:3]], f"the first three files{ctx}"
    assert re.search(r"^listener many: 50 certificates: 10 without problems, 40 with warnings, "
                     r"0 with errors", r.stdout, re.M), f"the listener's count{ctx}"
    lines = r.stdout.splitlines()
    assert len([ln for ln in lines if "expires on" in ln]) == 0, f"no line per certificate{ctx}"
    assert "names:" not in r.stdout, f"no block per certificate{ctx}"
    assert len(lines) < 15, f"a short report{ctx}"


@pytest.mark.parametrize("flag", ["--verbose", "-v"])
def test_verbose_lists_every_certificate(postern_bin, pki, tmp_path, flag):
    path, paths = many_config(pki, tmp_path, soon_plan())
    r, ctx = run_check(postern_bin, path, flag)
    assert r.returncode == 0, ctx
    soon = [ln for ln in r.stdout.splitlines() if re.search(r"warning: .* expires on ", ln)]
    assert len(soon) == SOON, f"one warning line per leaf expiring soon ({SOON}){ctx}"
    for p in paths[:SOON]:
        assert any(str(p) in ln for ln in soon), f"{p} named{ctx}"
    assert r.stdout.count("names:") == SOON + GOOD, f"a block per certificate{ctx}"
    assert not SOON_LINE.search(r.stdout), f"no summary with {flag}{ctx}"


def test_errors_few_each_many_summarized(postern_bin, pki, tmp_path):
    """Two expired leaves (at most 3 of a kind) are each printed as they
    are; the 40 expiring soon stay one line; errors come first and fail."""
    plan = soon_plan([("expired0", -100, -10), ("expired1", -100, -3)])
    path, paths = many_config(pki, tmp_path, plan)
    r, ctx = run_check(postern_bin, path)
    assert r.returncode == 1, f"an expired leaf is an error{ctx}"
    errors = [ln for ln in r.stdout.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2, f"one error line per expired leaf{ctx}"
    for p in paths[-2:]:
        assert any(str(p) in ln and "expired on" in ln for ln in errors), f"{p}{ctx}"
    assert SOON_LINE.search(r.stdout), f"the 40 warnings in one line{ctx}"
    first_warning = r.stdout.index("warning: ")
    assert all(r.stdout.index(ln) < first_warning for ln in errors), f"errors first{ctx}"
    assert "configuration has 2 errors" in r.stdout, ctx


def test_startup_log_summarizes(start_postern, pki, tmp_path):
    port = free_port()
    path, paths = many_config(pki, tmp_path, soon_plan(), port=port)
    p = start_postern(path.read_text(), [port])
    m = p.wait_log(r"listeners\[0\]\.tls\.certificates: 40 certificates expire within 21 days "
                      r"\(first: .*`postern -t --verbose -c FILE` lists all\)")
    assert str(paths[0]) in m.group(0), f"the first file named{p.context()}"
    assert "expires on" not in p.stderr(), f"no line per certificate in the log{p.context()}"
    p.stop()


def reload_threads(pid):
    """{tid: nice} of postern's threads named pst-reload (the build thread)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() != "pst-reload":
                continue
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        # Field 19 (nice) counted after the parenthesised name, which may hold spaces.
        out[int(task.name)] = int(stat.rsplit(")", 1)[1].split()[16])
    return out


def test_reload_builds_at_low_priority(start_postern, pki, tmp_path):
    """A reload reads and checks every certificate on a thread of its own at
    nice 10, so that the workers' handshakes keep the CPU while it runs; the
    thread is gone once the new generation is live."""
    port = free_port()
    plan = [(f"n{i}", -1, 90) for i in range(400)]
    path, _ = many_config(pki, tmp_path, plan, port=port)
    p = start_postern(path.read_text(), [port])
    seen = {}
    for gen in range(2, 7):  # a few reloads, in case one ends between two looks
        p.signal(signal.SIGHUP)
        done = re.compile(rf"reload ok \(SIGHUP\): generation {gen},")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not done.search(p.stderr()):
            seen.update(reload_threads(p.pid))
        p.wait_log(done.pattern, timeout=5)
        if seen:
            break
    assert seen, f"a pst-reload thread was seen during a reload{p.context()}"
    assert set(seen.values()) == {10}, f"it runs at nice 10: {seen}{p.context()}"
    deadline = time.monotonic() + 10
    while reload_threads(p.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not reload_threads(p.pid), f"the build thread ends with the build{p.context()}"
    p.stop()
