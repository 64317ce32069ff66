"""HTTP mode under load (issue 3): nghttp with 100 concurrent streams on one
connection, each its own backend request; h2load 20,000 requests over h2 and
over HTTP/1.1 (pipelined) with zero failures; 10,000 sequential requests
reuse a handful of pooled backend connections; the pool keeps at most
backend_pool.max_idle idle connections and closes them after
backend_pool.idle."""

import re
import subprocess
import time

import pytest

from clients import HOST, config, free_port, h2load_counts
from http_backends import H1Conn, H2Raw, http_listener


def run(cmd, timeout):
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(errors="replace"), time.monotonic() - t0


def tail(text, n=25):
    return "\n".join(text.splitlines()[-n:])


def h2load(port, path, proto, n, clients, streams, timeout):
    """Runs h2load with n requests over clients connections and up to streams
    at a time on each (HTTP/1.1, pipelined, when proto is "h1"). Returns
    (cmd, rc, output, seconds)."""
    cmd = ["h2load", "-n", str(n), "-c", str(clients), "-m", str(streams), "-T", "30"]
    if proto == "h1":
        cmd.append("--h1")
    cmd.append(f"https://{HOST}:{port}{path}")
    return (cmd, *run(cmd, timeout))


def load_ctx(cmd, rc, out, elapsed, be, p, lines=25):
    """The end of an h2load test's assertion messages: the command, the tail
    of its output, what the fast_server backend saw, postern's log."""
    return (f"\n$ {' '.join(cmd)} (rc={rc}, {elapsed:.1f}s)\n{tail(out, lines)}\nbackend: "
            f"{be.accepted} connections, {be.requests} requests{p.context()}")


@pytest.mark.deadline(60)
def test_nghttp_100_concurrent_streams(pki, start_postern, http_servers):
    be = http_servers.http()
    port = free_port()
    p = start_postern(config([http_listener("ng", port, be.addr, pki)]), [port])
    rc, out, elapsed = run(["nghttp", "-n", "-s", "-m", "100", "-t", "30",
                            f"https://{HOST}:{port}/sleep?ms=1000"], 45)
    codes = re.findall(r"^\s*(?:\d+\s+)?\+\S+\s+\+\S+\s+\S+\s+(\d{3})\s", out, re.M)
    ctx = f"\n$ nghttp ... (rc={rc}, {elapsed:.1f}s)\n{tail(out)}{be.summary()}{p.context()}"
    assert rc == 0, f"nghttp failed{ctx}"
    assert len(codes) == 100 and set(codes) == {"200"}, (
        f"expected 100 responses with status 200, got {len(codes)}: {sorted(set(codes))}{ctx}")
    assert elapsed < 10, (f"100 streams of a 1 s backend request took {elapsed:.1f}s: they did "
                          f"not run concurrently{ctx}")
    assert be.peak >= 80, (f"the backend saw at most {be.peak} of the 100 streams at once: "
                           f"every stream must be its own backend request{ctx}")


@pytest.mark.deadline(120)
@pytest.mark.parametrize("proto", ["h2", "h1"])
def test_h2load_20000(pki, start_postern, http_servers, proto):
    be = http_servers.fast(b"x" * 100)
    port = free_port()
    p = start_postern(config([http_listener("load", port, be.addr, pki)]), [port])
    cmd, rc, out, elapsed = h2load(port, "/load", proto, 20000, 10, 10, 100)
    req, codes = h2load_counts(out)
    ctx = load_ctx(cmd, rc, out, elapsed, be, p)
    assert req is not None, f"no 'requests:' line in h2load's output{ctx}"
    assert req["succeeded"] == 20000 and req["failed"] == 0 and req["errored"] == 0 \
        and req["timeout"] == 0, f"h2load over {proto}: {req}{ctx}"
    assert codes and codes["2xx"] == 20000, f"status codes {codes}{ctx}"
    proto_line = re.search(r"Application protocol: (\S+)", out)
    want = "h2" if proto == "h2" else "http/1.1"
    assert proto_line and proto_line.group(1) == want, f"h2load did not speak {want}{ctx}"
    print(f"h2load {proto}: 20000 requests in {elapsed:.1f}s, backend connections {be.accepted}")


@pytest.mark.deadline(90)
@pytest.mark.parametrize("proto", ["h2", "h1"])
def test_sequential_requests_reuse_backend_connections(pki, start_postern, http_servers,
                                                       proto):
    be = http_servers.fast()
    port = free_port()
    p = start_postern(config([http_listener("seq", port, be.addr, pki)]), [port])
    cmd, rc, out, elapsed = h2load(port, "/seq", proto, 10000, 1, 1, 80)
    req, codes = h2load_counts(out)
    ctx = load_ctx(cmd, rc, out, elapsed, be, p, lines=12)
    assert req and req["succeeded"] == 10000, f"sequential requests failed: {req}{ctx}"
    assert be.requests == 10000, f"backend answered {be.requests} requests{ctx}"
    assert be.accepted <= 4, (f"10,000 sequential requests used {be.accepted} backend "
                              f"connections: the keep-alive pool must reuse them{ctx}")
    print(f"sequential {proto}: 10000 requests in {elapsed:.1f}s over {be.accepted} backend "
          f"connection(s)")


@pytest.mark.deadline(30)
def test_pool_idle_timeout_closes(pki, start_postern, http_servers):
    be = http_servers.http()
    port = free_port()
    p = start_postern(config([http_listener("idle", port, be.addr, pki,
                                            backend_pool={"idle": "1s"})]), [port])
    with H1Conn(port, pki) as c:
        for i in range(3):
            r = c.request("GET", f"/echo/idle-{i}")
            assert r.status == 200, f"{r!r}{p.context()}"
        t0 = time.monotonic()
        while be.closed < be.accepted and time.monotonic() - t0 < 5:
            time.sleep(0.1)
        waited = time.monotonic() - t0
        ctx = (f"\nbackend: accepted {be.accepted}, closed {be.closed} after {waited:.1f}s"
               f"{p.context()}")
        assert be.accepted == 1, f"3 sequential requests should use one backend connection{ctx}"
        assert be.closed == be.accepted and 0.5 < waited < 3, (
            f"with backend_pool.idle 1s postern must close the idle backend connection after "
            f"about 1s{ctx}")
        r = c.request("GET", "/echo/after-idle")
        assert r.status == 200 and be.accepted == 2, f"a fresh connection afterwards{ctx}"


@pytest.mark.deadline(30)
def test_pool_max_idle(pki, start_postern, http_servers):
    """10 concurrent requests need 10 backend connections; afterwards the pool
    keeps at most max_idle (2) of them open."""
    be = http_servers.http()
    port = free_port()
    p = start_postern(config([http_listener("maxidle", port, be.addr, pki,
                                            backend_pool={"max_idle": 2})]), [port])
    with H2Raw(port, pki) as c:
        sids = [c.request("GET", f"/sleep?ms=500&tag=mi-{i}") for i in range(10)]
        sts = [c.response(s) for s in sids]
        time.sleep(0.5)
        open_now = be.accepted - be.closed
    ctx = f"\nbackend: accepted {be.accepted}, closed {be.closed}, peak {be.peak}{p.context()}"
    assert all(s.status == 200 for s in sts), ctx
    assert be.accepted >= 10, f"10 concurrent requests must use 10 backend connections{ctx}"
    assert open_now <= 2, (f"{open_now} backend connections left open with "
                           f"backend_pool.max_idle 2{ctx}")
