"""The bench suite (bench/run.py) in its quickest form against postern alone,
in tcp and in http mode: it must produce a complete table and JSON with no
errors. Its numbers are not checked (they depend on the machine, and this
runs the sanitizer build); see bench/README.md for what they mean."""

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "run.py"
TOOLS = ["build/bench/loadgen", "build/bench/backend"]

# Every row the quick run must produce for each postern: (scenario, cert,
# figure that must be present).
EXPECTED = [
    ("full", "ecdsa", "cpu_us"),
    ("full", "rsa", "cpu_us"),
    ("resumed", "ecdsa", "cpu_us"),
    ("early", "ecdsa", "cpu_us"),
    ("rtt-resumed", "ecdsa", "round_trips"),
    ("rtt-early", "ecdsa", "round_trips"),
    ("h1-keepalive", "ecdsa", "cpu_us"),
    ("h2-keepalive", "ecdsa", "cpu_us"),
    ("idle-rss", "ecdsa", "kib_per_conn"),
]
SERVERS = ["postern-tcp", "postern-http"]
SECTIONS = ["### 1. Full TLS 1.3 handshakes", "### 2. Resumed TLS 1.3 handshakes",
            "### 3. 0-RTT", "### 4. Keep-alive requests", "### 5. Memory per idle TLS connection",
            "#### tcp mode: postern-tcp", "#### http mode: postern-http",
            "### What the issue asks for", "Errors in all runs: 0."]


@pytest.fixture(scope="module")
def bench_tools():
    """Builds the load generator and the backend (seconds; `make test` does
    not build them otherwise)."""
    p = subprocess.run(["make", "-s", "-C", str(REPO), *TOOLS], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    assert p.returncode == 0, f"building the bench tools failed:\n{p.stdout}"
    return [REPO / t for t in TOOLS]


@pytest.mark.deadline(100)
def test_quick_bench_postern_alone(postern_bin, bench_tools, tmp_path):
    out = tmp_path / "results"
    p = subprocess.run(["/usr/bin/python3", str(BENCH), "--quick", "--peers", "none",
                        "--certs", "ecdsa,rsa", "--idle", "300", "--held", "300", "--out", str(out),
                        "--postern", postern_bin, "--loadgen", str(bench_tools[0]),
                        "--backend", str(bench_tools[1])],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=90)
    context = f"\n--- stdout:\n{p.stdout[-4000:]}\n--- stderr:\n{p.stderr[-4000:]}"
    assert p.returncode == 0, f"bench exited with {p.returncode}{context}"

    md = (out / "latest.md").read_text()
    assert md.strip() in p.stdout, "the table on stdout differs from latest.md" + context
    for heading in SECTIONS:
        assert heading in md, f"missing {heading!r} in the report" + context

    doc = json.loads((out / "latest.json").read_text())
    assert doc["total_errors"] == 0, f"errors in runs: {doc['total_errors']}" + context
    assert doc["settings"]["servers"] == SERVERS
    assert not doc["server_log_problems"], (
        f"postern logged problems: {doc['server_log_problems']}" + context)
    rows = {(r["server"], r["scenario"], r["cert"]): r for r in doc["rows"]}
    for server in SERVERS:
        for scenario, cert, figure in EXPECTED:
            row = rows.get((server, scenario, cert))
            assert row is not None, f"no {scenario} {cert} row for {server}" + context
            assert row["errors"] == 0 and row["ok"] and row["ok"] > 0, (
                f"{server} {scenario} {cert}: {row}" + context)
            assert row.get(figure) is not None and row[figure] > 0, (
                f"{server} {scenario} {cert}: no {figure}: {row}" + context)
            assert f"| {server} |" in md
        assert rows[(server, "resumed", "ecdsa")]["resumed_frac"] >= 0.99, (
            f"{server}: resumed handshakes were not resumed" + context)
        # 0-RTT works at all: the requests went as early data, and postern
        # took them (how many round trips they took is a figure, not checked).
        assert rows[(server, "early", "ecdsa")]["early_frac"] >= 0.99, (
            f"{server}: early data was not accepted" + context)
    verdicts = {c["figure"]: c["verdict"] for c in doc["checks"]}
    assert all(v in ("holds", "falls short", "n/a") for v in verdicts.values()), verdicts
    # One check per kind for each figure of the issue that has a postern of
    # that kind in it.
    for kind in ("tcp", "http"):
        assert any(f"postern-{kind}" in f for f in verdicts), (kind, verdicts)
