"""The backend pool under many concurrent requests (issue 17): 400 requests
in flight at once (h2load, 4 h2 connections x 100 streams) through one
postern. The pool keeps as many idle connections as the recent peak in use,
so a steady load does not connect per request: a second run of the same
load is served by the connections the first one opened. With
`backend_pool: {max_idle: 128}` (the fixed bound of before) the same second
run reconnects for a large share of its requests, which shows that the
backend's accept count measures what it should."""

import re

import pytest

from clients import config, free_port, h2load_counts
from conftest import run_postern, sanitizer_report
from http_backends import http_listener
from test_http_load import h2load, load_ctx

CONC_CLIENTS, CONC_STREAMS = 4, 100  # 400 concurrent requests
N = 8000


def two_runs(pki, start_postern, http_servers, **listener_extra):
    """Starts postern in front of a fast backend and runs the load twice.
    Returns (accepted after run 1, accepted during run 2, context)."""
    be = http_servers.fast()
    port = free_port()
    # One worker: pools are per worker, and with two the kernel may hand a
    # worker more client connections in the second run than in the first
    # (its pool then grows to its new peak, rightly).
    p = start_postern(config([http_listener("peak", port, be.addr, pki, **listener_extra)],
                             workers=1), [port])
    accepted = []
    ctx = ""
    for _ in range(2):
        cmd, rc, out, elapsed = h2load(port, "/peak", "h2", N, CONC_CLIENTS, CONC_STREAMS, 100)
        req, codes = h2load_counts(out)
        ctx = load_ctx(cmd, rc, out, elapsed, be, p, lines=12)
        assert req and req["succeeded"] == N and codes and codes["2xx"] == N, (
            f"h2load: {req} {codes}{ctx}")
        accepted.append(be.accepted)
    return accepted[0], accepted[1] - accepted[0], ctx


@pytest.mark.deadline(150)
def test_steady_load_does_not_reconnect(pki, start_postern, http_servers):
    first, second, ctx = two_runs(pki, start_postern, http_servers)
    conc = CONC_CLIENTS * CONC_STREAMS
    ctx = f"\nrun 1 opened {first} backend connections, run 2 {second}{ctx}"
    assert first <= conc + 20, (
        f"{N} requests at {conc} at a time opened {first} backend connections: more than "
        f"the peak in use; the pool closed connections under a steady load{ctx}")
    assert second <= conc // 20, (
        f"the same load again opened {second} backend connections for {N} requests: the "
        f"pool did not keep the first run's connections (peak {conc} in use){ctx}")
    print(f"400 concurrent requests: {first} backend connections, then {second} for "
          f"{N} more requests")


@pytest.mark.deadline(150)
def test_fixed_max_idle_reconnects(pki, start_postern, http_servers):
    """The control: max_idle 128 below 400 in flight churns, as before."""
    first, second, ctx = two_runs(pki, start_postern, http_servers,
                                  backend_pool={"max_idle": 128})
    ctx = f"\nrun 1 opened {first} backend connections, run 2 {second}{ctx}"
    assert second > 400, (
        f"with max_idle 128 and 400 requests in flight the second run opened only {second} "
        f"backend connections: the bound did not apply{ctx}")


@pytest.mark.parametrize("value,ok", [("0", True), ("65536", True), ("65537", False),
                                      ("-1", False), ("lots", False)])
def test_max_idle_mib_config(postern_bin, pki, tmp_path, value, ok):
    """backend_pool.max_idle_mib: 0..65536; anything else is a config error
    that names the file, line and key."""
    text = config([http_listener("cfg", free_port(), "127.0.0.1:9", pki,
                                 backend_pool={"max_idle": 10, "max_idle_mib": "VALUE"})])
    text = text.replace("VALUE", value).replace("'" + value + "'", value).replace(
        '"' + value + '"', value)
    path = tmp_path / "pool.yaml"
    path.write_text(text)
    r = run_postern(postern_bin, "-t", "-c", path)
    ctx = f"\n--- config:\n{text}--- stderr:\n{r.stderr}"
    assert not sanitizer_report(r.stderr), f"sanitizer report{ctx}"
    if ok:
        assert r.returncode == 0, f"max_idle_mib {value} must be accepted{ctx}"
        return
    assert r.returncode == 1, f"max_idle_mib {value} must be refused{ctx}"
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if "max_idle_mib" in ln)
    assert re.search(rf"^{re.escape(str(path))}:{line}:\d+: .*max_idle_mib", r.stderr, re.M), (
        f"the error must name {path}:{line} and max_idle_mib{ctx}")
