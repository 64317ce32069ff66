"""Config errors: exit 1 with one line "FILE:LINE:COLUMN: KEY: what is
wrong" on stderr that points at the offending line, for `postern -t` and for
`postern -c` alike."""

import re

import pytest

from conftest import run_postern, sanitizer_report
from clients import free_port

TEMPLATE = """\
workers: 2
log_level: info
shutdown_timeout: {shutdown_timeout}
listeners:
  - name: public
    listen: "{listen}"
    mode: tcp
    tls:
      versions: [tls1.3]
      certificates:
        - cert: {chain}
          key: {key}
      ca_file: {root}
    backend: "{backend}"
    timeouts: {{handshake: 10s, idle: {idle}, backend_connect: 5s}}
    max_connections: {max_connections}
"""

# name -> (template overrides, key the error must name and whose line it must
# point at, a line to insert after "log_level: info" or None)
CASES = {
    "unknown-top-key": ({}, "colour", "colour: blue"),
    "unknown-listener-key": ({"backend": '127.0.0.1:9"\n    bakend: "127.0.0.1:9'}, "bakend", None),
    "bad-duration": ({"shutdown_timeout": "10 seconds"}, "shutdown_timeout", None),
    "bad-duration-unit": ({"idle": "5x"}, "idle", None),
    "bad-address-port": ({"listen": "127.0.0.1:99999"}, "listen", None),
    "bad-address-no-port": ({"backend": "127.0.0.1"}, "backend", None),
    "wrong-type-sequence": ({"max_connections": "[10, 20]"}, "max_connections", None),
    "wrong-type-word": ({"max_connections": "lots"}, "max_connections", None),
    "accept-proxy-bad-version": (
        {"max_connections": '100\n    accept_proxy: v3\n    trusted_proxies: ["10.0.0.0/8"]'},
        "accept_proxy", None),
    "accept-proxy-without-trusted": ({"max_connections": "100\n    accept_proxy: v2"},
                                     "accept_proxy", None),
    "trusted-proxies-without-accept": ({"max_connections": '100\n    trusted_proxies: ["::1"]'},
                                       "trusted_proxies", None),
}


def make_config(pki, overrides, extra_line):
    values = {"shutdown_timeout": "10s", "listen": f"127.0.0.1:{free_port()}",
              "chain": pki.chain("example.test"), "key": pki.key("example.test"),
              "root": pki.root, "backend": "127.0.0.1:9", "idle": "60s",
              "max_connections": "100"}
    values.update(overrides)
    text = TEMPLATE.format(**values)
    if extra_line:
        text = text.replace("log_level: info\n", f"log_level: info\n{extra_line}\n")
    return text


def expected_position(text, key):
    """(line, key column, value column) of the first line where key: appears
    as a key (block or flow mapping), 1-based."""
    for n, line in enumerate(text.splitlines(), 1):
        m = re.search(rf"(?:^|[\s{{,-]){re.escape(key)}:\s*", line)
        if m:
            key_col = line.index(key, m.start()) + 1
            return n, key_col, m.end() + 1
    raise AssertionError(f"{key} not in config")


@pytest.mark.parametrize("mode", ["-t", "-c"])
@pytest.mark.parametrize("case", list(CASES))
def test_config_error(postern_bin, pki, tmp_path, case, mode):
    overrides, key, extra = CASES[case]
    text = make_config(pki, overrides, extra)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    args = ["-t", "-c", path] if mode == "-t" else ["-c", path]
    r = run_postern(postern_bin, *args, timeout=15)
    numbered = "".join(f"{i:3} {ln}\n" for i, ln in enumerate(text.splitlines(), 1))
    ctx = (f"\n$ postern {' '.join(map(str, args))}\n(rc={r.returncode})\n--- config:\n{numbered}"
           f"--- stdout:\n{r.stdout}--- stderr:\n{r.stderr}")
    assert r.returncode == 1, f"{case}: expected exit 1{ctx}"
    line, key_col, value_col = expected_position(text, key)
    found = re.findall(rf"^{re.escape(str(path))}:(\d+):(\d+): (.*)$", r.stderr, re.M)
    assert found, f"{case}: no 'FILE:LINE:COLUMN: ' line on stderr{ctx}"
    lines = [(int(ln), int(col), msg) for ln, col, msg in found]
    at_line = [x for x in lines if x[0] == line]
    assert at_line, f"{case}: expected the error at line {line}, got lines {[x[0] for x in lines]}{ctx}"
    cols = {x[1] for x in at_line}
    assert cols & {key_col, value_col}, (
        f"{case}: column {sorted(cols)} points at neither the key (column {key_col}) nor "
        f"its value (column {value_col}){ctx}")
    # "KEY: ..." or, naming where the key sits, "listeners[0].KEY: ...".
    assert any(re.match(rf"(?:[\w\[\]-]+\.)*{re.escape(key)}: ", msg) for _, _, msg in at_line), (
        f"{case}: the message must start with the key '{key}: ' (or a dotted path to it){ctx}")
    assert not sanitizer_report(r.stderr), f"sanitizer report{ctx}"


def test_missing_config_file(postern_bin, tmp_path):
    path = tmp_path / "absent.yaml"
    r = run_postern(postern_bin, "-t", "-c", path)
    assert r.returncode == 1, f"rc={r.returncode} stderr={r.stderr}"
    assert str(path) in r.stderr, f"the message must name the file: {r.stderr}"


def test_yaml_syntax_error(postern_bin, tmp_path):
    path = tmp_path / "syntax.yaml"
    path.write_text("workers: 2\nlisteners: [\n  - name: x\n")
    r = run_postern(postern_bin, "-t", "-c", path)
    assert r.returncode == 1, f"rc={r.returncode} stderr={r.stderr}"
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: ", r.stderr, re.M), (
        f"a YAML syntax error must also say FILE:LINE:COLUMN: {r.stderr}")
