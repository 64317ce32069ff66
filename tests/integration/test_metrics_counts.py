"""The counters, summed over worker threads (docs/metrics.md), in the real
binary: each worker counts in a block of its own, and the totals logged at
shutdown add them up. HTTP/2 and HTTP/1.1 requests by curl (each on a new
connection: one handshake each), a request postern refuses (400), a
backend that cannot be reached (502), a reload: the counters line says
exactly that. The scrape endpoint that renders the labelled families has
tests of its own (the admin endpoint's)."""

import re
import signal
import time

from clients import client_context, config, connect_tls, free_port, recv_until_close
from http_backends import curl_http, http_listener


def counters(p):
    """The counters postern logged when it stopped, as a dict."""
    m = re.search(r"counters: (.*)", p.stderr())
    assert m, "no counters line" + p.context()
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def test_counts_summed_over_workers(pki, start_postern):
    info, dead = free_port(), free_port()
    unused = free_port()  # nothing listens there: the backend is unreachable
    p = start_postern(config([http_listener("info", info, "builtin:info", pki),
                              http_listener("dead", dead, f"127.0.0.1:{unused}", pki)],
                             workers=2),
                      [info, dead])
    for http in ("2", "2", "2", "1.1", "1.1"):
        r = curl_http(pki, info, "/", http=http)
        assert r.status == 200, r.stderr + p.context()
    r = curl_http(pki, dead, "/", http="1.1")
    assert r.status == 502, r.stderr + p.context()
    # Two Host fields: refused with 400 (RFC 9112 3.2).
    s = connect_tls(info, "example.test", client_context(pki, alpn=["http/1.1"]))
    s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nHost: other.test\r\n\r\n")
    answer, _ = recv_until_close(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    p.signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while "reload ok" not in p.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "reload ok" in p.stderr(), p.context()
    p.stop()
    c = counters(p)
    want = {"handshakes": 7, "resumed": 0, "http_requests": 7, "http_400": 1, "http_502": 1,
            "http_504": 0, "reloads": 1, "reloads_failed": 0, "accept_errors": 0,
            "metrics_dropped": 0}
    assert c | want == c, f"{c}" + p.context()
