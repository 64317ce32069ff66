"""Memory is given back once a worker goes quiet (issue 11, finding 11):
after a burst of connections that each made postern buffer a large request
head, RSS comes back down to near where it started instead of staying at
the peak (glibc keeps freed memory in its arenas; the worker calls
malloc_trim when it has had no connection for a while).

Measured on the optimized build (build/postern, or POSTERN_OPT_BIN): under
ASan the allocator is ASan's, which malloc_trim does not reach. Skipped when
it is not built or older than the sources.

Before the change: 4.5 MB before, 29 MB at the peak, 29 MB 20 s after."""

import os
import socket
import ssl
import time
from pathlib import Path

import pytest

from clients import HOST, client_context, config, free_port
from conftest import REPO, Postern
from http_backends import http_listener

OPT_BIN = os.environ.get("POSTERN_OPT_BIN", str(REPO / "build" / "postern"))
CONNS = 600
HEAD_BYTES = 30000  # under limits.max_header_bytes (32 KiB): all of it is buffered


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.deadline(120)
def test_rss_returns_after_a_burst(tmp_path, pki, http_servers):
    if not os.access(OPT_BIN, os.X_OK):
        pytest.skip(f"{OPT_BIN} not built (make build/postern)")
    newest = max(f.stat().st_mtime for d in ("src", "include/postern") for f in (REPO / d).iterdir())
    if "POSTERN_OPT_BIN" not in os.environ and os.stat(OPT_BIN).st_mtime < newest:
        pytest.skip(f"{OPT_BIN} is older than the sources (make build/postern)")
    be = http_servers.fast()
    port = free_port()
    text = config([http_listener("mem", port, be.addr, pki)], workers=1, log_level="warn")
    p = Postern(OPT_BIN, tmp_path / "opt", text, [port])
    try:
        time.sleep(0.5)
        base = rss_kb(p.pid)
        ctx = client_context(pki, alpn=["http/1.1"], verify=False)
        head = b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Big: " + b"a" * HEAD_BYTES
        socks = []
        for _ in range(CONNS):
            s = ctx.wrap_socket(socket.create_connection((HOST, port), timeout=10),
                                server_hostname="example.test")
            s.sendall(head)
            socks.append(s)
        time.sleep(1)
        peak = rss_kb(p.pid)
        for s in socks:
            s.close()
        growth = peak - base
        assert growth > CONNS * HEAD_BYTES / 1024 / 2, (
            f"the burst did not grow RSS as expected: {base} -> {peak} kB{p.context()}")
        # Quiet: the worker gives memory back within a few seconds.
        deadline = time.monotonic() + 20
        after = rss_kb(p.pid)
        while time.monotonic() < deadline and after > base + growth // 4:
            time.sleep(0.5)
            after = rss_kb(p.pid)
        assert after <= base + growth // 4, (
            f"RSS stayed high after the burst: {base} kB before, {peak} kB at the peak, "
            f"{after} kB 20 s after{p.context()}")
        p.stop()
    finally:
        p.close()
