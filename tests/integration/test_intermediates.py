"""tls.intermediates (issue 15): a chain file without its intermediate is
completed from a CA bundle, loudly (at load and in `postern -t`, naming the
certificate added), and the completed chain is what clients get: Python's
ssl with only the root as trust anchor verifies it. Without a bundle, or
with one that lacks the issuer, the incomplete-chain error stays."""

import re

from clients import client_context, config, connect_tls, free_port, listener, s_client, tls_block
from conftest import run_postern


def _tls(pki, **extra):
    tls = tls_block(pki, ["nointermediate"], **extra)
    return tls


def _check(postern_bin, tmp_path, tls):
    path = tmp_path / "postern.yaml"
    text = config([listener("l", free_port(), "127.0.0.1:9", tls=tls)], workers=1)
    path.write_text(text)
    return run_postern(postern_bin, "-t", "-c", path), text, path


def test_check_reports_completion(postern_bin, tmp_path, pki):
    r, _, _ = _check(postern_bin, tmp_path, _tls(pki, intermediates=str(pki.intermediate)))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(r"warning: \S*nointermediate\.chain\.pem: incomplete chain completed from "
                     r"\S*intermediate\.pem: added \"[^\"]*Postern Dev Intermediate CA[^\"]*\"",
                     out), out
    assert "chain:     2 certificates (leaf + 1 intermediate)" in out, out


def test_without_bundle_error_stays(postern_bin, tmp_path, pki):
    r, _, _ = _check(postern_bin, tmp_path, _tls(pki))
    assert r.returncode != 0 and "incomplete chain" in r.stdout + r.stderr, r.stdout + r.stderr
    # A bundle without the missing issuer (only the root) changes nothing.
    r, _, _ = _check(postern_bin, tmp_path, _tls(pki, intermediates=str(pki.root)))
    assert r.returncode != 0 and "incomplete chain" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "completed from" not in r.stdout + r.stderr


def test_bad_bundle_is_a_config_error(postern_bin, tmp_path, pki):
    bad = tmp_path / "bundle.pem"
    bad.write_text("nothing here\n")
    r, text, path = _check(postern_bin, tmp_path, _tls(pki, intermediates=str(bad)))
    line = next(n for n, s in enumerate(text.splitlines(), 1) if "intermediates:" in s)
    assert r.returncode != 0
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: listeners\[0\]\.tls\.intermediates: "
                     r".*no PEM certificate found", r.stderr + r.stdout), r.stdout + r.stderr


def test_clients_get_the_completed_chain(pki, start_postern, backend):
    echo = backend.echo()
    port = free_port()
    p = start_postern(config([listener("l", port, echo.addr,
                                       tls=_tls(pki, intermediates=str(pki.intermediate)))]),
                      [port])
    assert "incomplete chain completed from" in p.stderr(), p.context()
    # Only the root as trust anchor: verification needs the intermediate.
    with connect_tls(port, "localhost", client_context(pki)) as s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    r = s_client(port, "-showcerts", servername="localhost")
    assert len(r.certs) == 2, str(r)
