"""HTTP mode errors (issue 3): 502 when the backend cannot be reached or
closes without answering, 504 when no response head comes within
timeouts.backend_response, truncation made visible when the backend closes
mid-response (RST_STREAM on h2, a connection close on HTTP/1.1), 431 for a
request head over limits.max_header_bytes, each error response with a short
text body; and a dead pooled backend connection retried once for a GET."""

import os
import time

import pytest

from backends import closed_port
from clients import config, free_port
from http_backends import Closed, H1Conn, H2Raw, Site, curl_http, http_listener

PROTOS = ["2", "1.1"]
CUT_AT = 5000
CL_TOTAL = 100000


def respond_truncated_cl(server, conn, head, body, index):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                 b"Content-Length: %d\r\n\r\n" % CL_TOTAL + b"x" * CUT_AT)
    time.sleep(0.1)
    return False


def respond_truncated_chunked(server, conn, head, body, index):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" + b"1000\r\n" + b"y" * 4096 + b"\r\n"
                 + b"1000\r\n" + b"y" * 1000)
    time.sleep(0.1)
    return False


def respond_close_without_answer(server, conn, head, body, index):
    return False


def respond_once_then_die(server, conn, head, body, index):
    """Answers the first request of each connection; on the second, closes
    without a word, as a backend whose keep-alive timer just fired does."""
    if index > 0:
        return False
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Index: %d\r\n\r\nok\n" % index)
    return True


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_http_servers):
    b = module_http_servers
    be = b.http("origin")
    backends_ = {
        "refused": closed_port(),
        "silent": b.silent().addr,
        "cutcl": b.raw(respond_truncated_cl, "cut-cl").addr,
        "cutchunked": b.raw(respond_truncated_chunked, "cut-chunked").addr,
        "noanswer": b.raw(respond_close_without_answer, "no-answer").addr,
        "ok": be.addr,
    }
    ports = {k: free_port() for k in backends_}
    ls = [http_listener(k, ports[k], addr, pki, timeouts={"backend_response": "1s"})
          for k, addr in backends_.items()]
    p = module_postern(config(ls), ports.values())
    return Site(p, ports=ports)  # ctx without a backend summary: six backends


def check_error_response(r, status, ctx):
    assert r.rc == 0, f"curl failed, expected a {status} response{ctx}"
    assert r.status == status, f"expected {status}{ctx}"
    assert r.body.strip(), f"a {status} must carry a short text body{ctx}"
    assert len(r.body) < 4096, f"the {status} body should be short ({len(r.body)} bytes){ctx}"
    ctype = r.header("content-type") or ""
    assert ctype.startswith("text/"), (f"the {status} body should be text, content-type "
                                       f"{ctype!r}{ctx}")


@pytest.mark.parametrize("http", PROTOS)
def test_502_backend_unreachable(srv, pki, http):
    r = curl_http(pki, srv.ports["refused"], "/x", http=http)
    ctx = srv.ctx(f"\n{r}")
    check_error_response(r, 502, ctx)
    assert r.elapsed < 3, f"connection refused must give 502 at once, took {r.elapsed:.1f}s{ctx}"


@pytest.mark.parametrize("http", PROTOS)
def test_502_backend_closes_without_answer(srv, pki, http):
    r = curl_http(pki, srv.ports["noanswer"], "/x", http=http)
    check_error_response(r, 502, srv.ctx(f"\n{r}"))


@pytest.mark.parametrize("http", PROTOS)
def test_504_backend_silent(srv, pki, http):
    r = curl_http(pki, srv.ports["silent"], "/x", http=http)
    ctx = srv.ctx(f"\n{r}")
    check_error_response(r, 504, ctx)
    assert 0.8 < r.elapsed < 4, (f"504 after {r.elapsed:.2f}s; expected about 1s "
                                 f"(timeouts.backend_response: 1s){ctx}")


def test_504_on_h2_leaves_connection_usable(srv, pki):
    with H2Raw(srv.ports["silent"], pki) as c:
        st = c.response(c.request("GET", "/x"), timeout=6)
        st2 = c.response(c.request("GET", "/y"), timeout=6)
    ctx = srv.ctx(f"\n{st!r}\n{st2!r}")
    assert st.status == 504 and st2.status == 504 and c.goaway is None, ctx


@pytest.mark.parametrize("which", ["cutcl", "cutchunked"])
def test_truncated_response_h2_rst_stream(srv, pki, which):
    with H2Raw(srv.ports[which], pki) as c:
        st = c.response(c.request("GET", "/cut"), timeout=6)
        ok = None
        if not c.goaway and not c.eof:
            ok = c.response(c.request("GET", "/cut"), timeout=6)
    ctx = srv.ctx(f"\n{st!r}\nframes {c.log[-6:]}")
    assert st.status == 200, f"the head came before the cut: status 200 expected{ctx}"
    assert st.reset is not None and not st.ended, (
        f"a response cut by the backend must end in RST_STREAM, never END_STREAM, so the "
        f"client sees the truncation (got {len(st.body)} body bytes){ctx}")
    assert st.reset != 0, f"RST_STREAM with NO_ERROR hides the truncation{ctx}"
    assert ok is not None and ok.status == 200, (
        f"a stream error must leave the connection usable: second stream {ok!r}{ctx}")


def get_cut_h1(srv, pki, which):
    """GET /cut over HTTP/1.1 from the backend that cuts its response
    (which: "cutcl" or "cutchunked"). Returns (status, headers, raw head,
    the bytes after the head until the connection ended, how it ended)."""
    with H1Conn(srv.ports[which], pki) as c:
        c.send(b"GET /cut HTTP/1.1\r\nHost: example.test\r\n\r\n")
        status, _, headers, raw = c.read_head()
        data, how = c.read_until_close(6)
    return status, headers, raw, data, how


def test_truncated_response_h1_content_length(srv, pki):
    status, headers, raw, data, how = get_cut_h1(srv, pki, "cutcl")
    ctx = srv.ctx(f"\nhead {raw!r}\nthen {len(data)} bytes, {how}")
    assert status == 200, ctx
    assert how.startswith("closed"), f"postern must close the client connection{ctx}"
    cl = [v for k, v in headers if k.lower() == "content-length"]
    te = [v for k, v in headers if k.lower() == "transfer-encoding"]
    if cl:
        assert int(cl[0]) == CL_TOTAL and len(data) < CL_TOTAL, (
            f"the client must get fewer bytes than Content-Length{ctx}")
    else:
        assert te and not data.endswith(b"0\r\n\r\n"), (
            f"a chunked response for a cut body must not end with the last chunk{ctx}")


def test_truncated_response_h1_chunked(srv, pki):
    """The backend's chunked response is cut mid-chunk: the client gets the
    head, then the connection closes without the last chunk (0 CRLF CRLF),
    so it can tell the body is incomplete."""
    status, headers, raw, data, how = get_cut_h1(srv, pki, "cutchunked")
    ctx = srv.ctx(f"\nhead {raw!r}\nthen {len(data)} bytes ({data[-40:]!r}), {how}")
    assert status == 200, ctx
    assert how.startswith("closed"), f"postern must close the client connection{ctx}"
    te = ",".join(v for k, v in headers if k.lower() == "transfer-encoding").lower()
    cl = [v for k, v in headers if k.lower() == "content-length"]
    if "chunked" in te:
        assert not data.endswith(b"0\r\n\r\n"), (
            f"the client got the last chunk of a body the backend cut short{ctx}")
    else:
        assert cl and len(data) < int(cl[0]), f"neither chunked nor short of Content-Length{ctx}"


def test_truncated_curl_h1_reports_error(srv, pki):
    r = curl_http(pki, srv.ports["cutcl"], "/cut", http="1.1")
    ctx = srv.ctx(f"\n{r}")
    assert r.rc == 18, f"curl must see a partial transfer (rc 18){ctx}"


@pytest.fixture(scope="module")
def limits(pki, module_postern, module_http_servers):
    be = module_http_servers.http("origin-431")
    ports = {"small": free_port(), "default": free_port()}
    ls = [http_listener("small", ports["small"], be.addr, pki,
                        limits={"max_header_bytes": 8192}),
          http_listener("default", ports["default"], be.addr, pki)]
    p = module_postern(config(ls), ports.values())
    return p, be, ports


@pytest.mark.parametrize("which,size,expected", [
    ("small", 5000, 200), ("small", 10000, 431),
    ("default", 25000, 200), ("default", 40000, 431)])
def test_431_h1(limits, pki, which, size, expected):
    p, be, ports = limits
    tag = f"hdr-{which}-{size}-{os.urandom(3).hex()}"
    with H1Conn(ports[which], pki) as c:
        try:
            c.send(f"GET /echo/{tag} HTTP/1.1\r\nHost: example.test\r\nX-Big: {'b' * size}\r\n\r\n"
                   .encode())
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r = c.read_response()
        except Closed as e:
            raise AssertionError(f"closed without a response ({e.data[:100]!r}), expected "
                                 f"{expected}{be.summary()}{p.context()}") from None
    ctx = f"\n{r!r}{be.summary()}{p.context()}"
    assert r.status == expected, f"{size}-byte header on listener {which}: expected {expected}{ctx}"
    if expected == 431:
        assert r.body.strip() and len(r.body) < 4096, f"431 must carry a short text body{ctx}"
        assert not be.lines_with(tag), f"the oversized request reached the backend{ctx}"


def test_431_h2(limits, pki):
    """A header list over the limit on h2: 431, or at least a stream reset;
    either way the backend never sees it and the connection survives."""
    p, be, ports = limits
    tag = f"h2big-{os.urandom(3).hex()}"
    with H2Raw(ports["small"], pki) as c:
        c.handshake()
        st = c.response(c.request("GET", f"/echo/{tag}", headers=[("x-big", "b" * 10000)]),
                        timeout=6)
        st2 = None
        if not c.goaway and not c.eof:
            st2 = c.response(c.request("GET", "/echo/after-big"), timeout=6)
    ctx = f"\n{st!r}\n{st2!r}\ngoaway={c.goaway!r}{be.summary()}{p.context()}"
    assert st.status == 431, f"expected 431 for a 10000-byte header with max_header_bytes 8192{ctx}"
    assert not be.lines_with(tag), f"the oversized request reached the backend{ctx}"
    assert st2 is not None and st2.status == 200, f"the connection must survive{ctx}"


def test_dead_pooled_connection_retried(pki, start_postern, http_servers):
    """The backend closes a kept-alive connection when the next request
    arrives on it: postern retries a GET once on a fresh connection instead
    of failing it."""
    be = http_servers.raw(respond_once_then_die, "dies")
    port = free_port()
    p = start_postern(config([http_listener("retry", port, be.addr, pki)]), [port])
    statuses = []
    with H1Conn(port, pki) as c:
        for i in range(4):
            r = c.request("GET", f"/retry-{i}")
            statuses.append((r.status, r.body))
            time.sleep(0.1)
    ctx = f"\n{statuses}\nbackend accepted {be.accepted}, heads {len(be.heads)}{p.context()}"
    assert all(s == (200, b"ok\n") for s in statuses), (
        f"GETs must succeed: a dead pooled connection is retried once on a fresh one{ctx}")
    assert len(be.heads) > be.accepted, (
        f"no backend connection carried a second request: postern did not reuse pooled "
        f"connections, so the retry was never exercised{ctx}")
