"""HTTP mode, the basics (issue 3): curl --http2 and --http1.1 through
postern to a real HTTP/1.1 backend keep status, headers and bodies intact;
the backend sees X-Forwarded-For/-Proto/-Host (or Forwarded, RFC 7239) and
Host from :authority; cookie crumbs are joined on h2 (RFC 9113 8.2.3);
hop-by-hop fields are not forwarded (RFC 9110 7.6.1); response fields are
lower-cased on h2 and connection-specific ones dropped (RFC 9113 8.2.2); a
response without a length reaches h2 clients as DATA until END_STREAM and
HTTP/1.1 clients chunked; builtin:info works in http mode; access_log writes
one line per request."""

import hashlib
import json
import os
import time

import pytest

from clients import config, free_port
from http_backends import (H1Conn, H2Raw, KiB, Site, curl_http, header_values, http_listener,
                           pattern_bytes, pattern_sha)

PROTOS = ["2", "1.1"]


def sha(data):
    return hashlib.sha256(data).hexdigest()


def respond_hop(server, conn, head, body, index):
    """A response full of connection-specific fields, and one field with
    mixed case, for the response-header tests."""
    payload = b"hop-test-body\n"
    conn.sendall(b"HTTP/1.1 200 OK\r\n"
                 b"Server: rawback\r\n"
                 b"X-Mixed-Case: MixedValue\r\n"
                 b"Connection: keep-alive, X-Conn-Named\r\n"
                 b"X-Conn-Named: must-not-pass\r\n"
                 b"Keep-Alive: timeout=5, max=100\r\n"
                 b"Proxy-Connection: keep-alive\r\n"
                 b"Upgrade: h2c\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
    return True


NOLEN_SIZE = 300 * KiB


def respond_nolength(server, conn, head, body, index):
    """A response delimited by the backend's close (RFC 9112 6.3 item 8)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                 b"Connection: close\r\n\r\n" + pattern_bytes(NOLEN_SIZE, seed=7))
    return False


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_http_servers):
    be = module_http_servers.http("origin")
    hop = module_http_servers.raw(respond_hop, "hop")
    nolen = module_http_servers.raw(respond_nolength, "nolength")
    ports = {"web": free_port(), "hop": free_port(), "nolen": free_port()}
    ls = [http_listener("web", ports["web"], be.addr, pki),
          http_listener("hop", ports["hop"], hop.addr, pki),
          http_listener("nolen", ports["nolen"], nolen.addr, pki)]
    p = module_postern(config(ls), ports.values())
    return Site(p, be, ports["web"], ports=ports, hop=hop, nolen=nolen)


def echo_json(r, ctx):
    try:
        return json.loads(r.body)
    except ValueError:
        raise AssertionError(f"backend JSON expected in the body\n{r}{ctx}") from None


@pytest.mark.parametrize("http", PROTOS)
def test_get_status_headers_body(srv, pki, http):
    path = "/echo/a%20b/c?x=1&y=%2F&status=201&set=X-Custom:abc-123&tag=t" + http
    r = curl_http(pki, srv.port, path, http=http)
    ctx = srv.ctx(f"\n{r}")
    assert r.rc == 0, f"curl failed{ctx}"
    assert r.version == ("2" if http == "2" else "1.1"), f"negotiated HTTP/{r.version}{ctx}"
    assert r.status == 201, f"backend's status 201 not passed through{ctx}"
    assert r.header("X-Custom") == "abc-123", f"backend's response header X-Custom lost{ctx}"
    assert r.header("X-Tag") == "t" + http, ctx
    assert r.header("Content-Type") == "application/json", ctx
    rec = echo_json(r, ctx)
    assert rec["method"] == "GET", ctx
    assert rec["path"] == path, f"request target changed on the way: {rec['path']!r}{ctx}"
    assert rec["version"] == "HTTP/1.1", f"backend must get HTTP/1.1, got {rec['version']}{ctx}"
    cl = r.header("Content-Length")
    if cl is not None:
        assert int(cl) == len(r.body), f"Content-Length {cl} but {len(r.body)} body bytes{ctx}"


@pytest.mark.parametrize("http", PROTOS)
@pytest.mark.parametrize("status", [204, 304, 404, 503])
def test_statuses(srv, pki, http, status):
    r = curl_http(pki, srv.port, f"/echo/status?status={status}", http=http)
    ctx = srv.ctx(f"\n{r}")
    assert r.rc == 0 and r.status == status, f"expected {status}{ctx}"
    if status in (204, 304):
        assert r.body == b"", f"a {status} has no body{ctx}"


@pytest.mark.parametrize("http", PROTOS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_methods_and_request_body(srv, pki, tmp_path, http, method):
    data = os.urandom(200 * KiB) if method in ("POST", "PUT", "PATCH") else b""
    f = tmp_path / "body"
    f.write_bytes(data)
    args = ["-X", method]
    if data:
        args += ["--data-binary", f"@{f}", "-H", "Content-Type: application/octet-stream"]
    tag = f"{method}-{http}-{os.urandom(4).hex()}"
    r = curl_http(pki, srv.port, f"/echo/m?tag={tag}", *args, http=http)
    ctx = srv.ctx(f"\n{r}")
    assert r.rc == 0 and r.status == 200, ctx
    rec = echo_json(r, ctx)
    assert rec["method"] == method, ctx
    assert rec["body_len"] == len(data), f"backend got {rec['body_len']} of {len(data)} bytes{ctx}"
    assert rec["body_sha256"] == hashlib.sha256(data).hexdigest(), f"body altered{ctx}"


@pytest.mark.parametrize("http", PROTOS)
def test_x_forwarded_headers(srv, pki, http):
    tag = os.urandom(4).hex()
    r = curl_http(pki, srv.port, f"/echo/xff?tag={tag}", "-H", "X-Forwarded-For: 203.0.113.7",
                  "-H", "X-Forwarded-Proto: http", http=http)
    ctx = srv.ctx(f"\n{r}")
    assert r.rc == 0 and r.status == 200, ctx
    rec = echo_json(r, ctx)
    hdrs = f"\nbackend saw headers: {rec['headers']}"
    xff = ", ".join(header_values(rec, "X-Forwarded-For"))
    assert xff == "203.0.113.7, 127.0.0.1", (
        f"X-Forwarded-For must be the client's value with the peer address appended: "
        f"got {xff!r}{hdrs}{ctx}")
    assert header_values(rec, "X-Forwarded-Proto") == ["https"], (
        f"X-Forwarded-Proto must be exactly one 'https' (the client's replaced){hdrs}{ctx}")
    authority = f"example.test:{srv.port}"
    xfh = header_values(rec, "X-Forwarded-Host")
    assert len(xfh) == 1 and xfh[0] in (authority, "example.test"), (
        f"X-Forwarded-Host must be set once to the request's authority {authority!r}: "
        f"got {xfh}{hdrs}{ctx}")
    assert header_values(rec, "Host") == [authority], (
        f"backend Host must be {authority!r} (from :authority on h2){hdrs}{ctx}")


def test_h2_post_without_content_length(srv, pki):
    """An h2 request body without content-length (DATA until END_STREAM)
    reaches the HTTP/1.1 backend whole (chunked)."""
    data = os.urandom(40 * KiB)
    with H2Raw(srv.port, pki) as c:
        st = c.response(c.request("POST", "/echo/h2-stream-body", body=data))
    ctx = srv.ctx(f"\n{st!r}")
    assert st.status == 200, ctx
    rec = json.loads(bytes(st.body))
    assert (rec["body_len"], rec["body_sha256"]) == (len(data), sha(data)), (
        f"backend got {rec['body_len']} of {len(data)} bytes or other bytes{ctx}")


def test_x_forwarded_host_replaced(srv, pki):
    r = curl_http(pki, srv.port, "/echo/xfh", "-H", "X-Forwarded-Host: evil.example", http="1.1")
    ctx = srv.ctx(f"\n{r}")
    rec = echo_json(r, ctx)
    xfh = header_values(rec, "X-Forwarded-Host")
    assert "evil.example" not in ", ".join(xfh) and len(xfh) == 1, (
        f"a client-sent X-Forwarded-Host must be replaced by postern's: backend saw {xfh}{ctx}")


def test_host_from_authority_h2_raw(srv, pki):
    """An h2 request with :authority only (no Host field) reaches the backend
    with Host = :authority, exactly once."""
    with H2Raw(srv.port, pki) as c:
        sid = c.request("GET", "/echo/authority", authority="api.example.test:4433")
        st = c.response(sid)
    ctx = srv.ctx(f"\n{st!r}")
    assert st.status == 200, ctx
    rec = json.loads(bytes(st.body))
    assert header_values(rec, "Host") == ["api.example.test:4433"], (
        f"Host must come from :authority: backend saw {rec['headers']}{ctx}")


def test_cookie_crumbs_joined_h2(srv, pki):
    """RFC 9113 8.2.3: several cookie fields are joined with "; " into one
    before going to an HTTP/1.1 backend."""
    with H2Raw(srv.port, pki) as c:
        sid = c.request("GET", "/echo/cookie",
                        headers=[("cookie", "a=1"), ("x-other", "o"), ("cookie", "b=2"),
                                 ("cookie", "c=3")])
        st = c.response(sid)
    ctx = srv.ctx(f"\n{st!r}")
    assert st.status == 200, ctx
    rec = json.loads(bytes(st.body))
    assert header_values(rec, "Cookie") == ["a=1; b=2; c=3"], (
        f"cookie crumbs must arrive as one 'Cookie: a=1; b=2; c=3': backend saw "
        f"{header_values(rec, 'Cookie')}{ctx}")


HOP_GONE = ["keep-alive", "te", "proxy-connection", "upgrade", "x-drop-me", "transfer-encoding"]


def test_hop_by_hop_request_headers_h1(srv, pki):
    with H1Conn(srv.port, pki) as c:
        r = c.request("GET", "/echo/hop", headers=[
            ("Connection", "keep-alive, X-Drop-Me"), ("X-Drop-Me", "secret"),
            ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "h2c"), ("X-Keep-Me", "yes")])
    ctx = srv.ctx(f"\n{r!r}")
    assert r.status == 200, ctx
    rec = r.json()
    names = {k.lower() for k, _ in rec["headers"]}
    leaked = [n for n in HOP_GONE if n in names]
    assert not leaked, (f"hop-by-hop fields forwarded to the backend: {leaked}: "
                        f"{rec['headers']}{ctx}")
    conn = ", ".join(header_values(rec, "Connection")).lower()
    assert "x-drop-me" not in conn and "upgrade" not in conn, (
        f"backend Connection field carries the client's tokens: {conn!r}{ctx}")
    assert header_values(rec, "X-Keep-Me") == ["yes"], f"end-to-end field lost{ctx}"
    assert "X-Keep-Me" in [k for k, _ in rec["headers"]], \
        f"an HTTP/1.1 field name must keep its case on its way: {rec['headers']}{ctx}"


def test_te_trailers_not_forwarded_h2(srv, pki):
    with H2Raw(srv.port, pki) as c:
        sid = c.request("GET", "/echo/te", headers=[("te", "trailers"), ("x-keep-me", "yes")])
        st = c.response(sid)
    ctx = srv.ctx(f"\n{st!r}")
    assert st.status == 200, ctx
    rec = json.loads(bytes(st.body))
    assert not header_values(rec, "TE"), f"TE is hop-by-hop: backend saw {rec['headers']}{ctx}"
    assert header_values(rec, "X-Keep-Me") == ["yes"], ctx


def test_connection_header_on_h2_is_malformed(srv, pki):
    """RFC 9113 8.2.2: an h2 request with a connection-specific field is
    malformed (stream error PROTOCOL_ERROR); it must not reach the backend."""
    marker = f"malformed-{os.urandom(4).hex()}"
    with H2Raw(srv.port, pki) as c:
        sid = c.request("GET", f"/echo/{marker}", headers=[("connection", "keep-alive")])
        st = c.response(sid)
        ok = c.request("GET", "/echo/after-malformed")
        st2 = c.response(ok)
    ctx = srv.ctx(f"\n{st!r}\n{st2!r}")
    assert st.reset == 1 or st.status == 400, (
        f"expected RST_STREAM PROTOCOL_ERROR (or a 400) for a 'connection' field on h2{ctx}")
    assert not srv.be.lines_with(marker), f"the malformed request reached the backend{ctx}"
    assert st2.status == 200, f"the connection must survive a stream error{ctx}"


def test_response_headers_h2_lowercase_no_connection_specific(srv, pki):
    """The "hop" backend answers with Connection, Keep-Alive, Proxy-Connection,
    Upgrade, a field named in Connection, and X-Mixed-Case."""
    with H2Raw(srv.ports["hop"], pki) as c:
        st = c.response(c.request("GET", "/"))
    ctx = srv.ctx(f"\n{st!r}") + f"\n--- hop backend heads: {srv.hop.heads[-2:]}"
    assert st.status == 200 and st.ended, ctx
    names = [k for k, _ in st.headers]
    upper = [k for k in names if k != k.lower()]
    assert not upper, f"h2 field names must be lower-case (RFC 9113 8.2.1): {upper}{ctx}"
    bad = [k for k in names if k in (b"connection", b"keep-alive", b"proxy-connection",
                                     b"upgrade", b"transfer-encoding", b"x-conn-named")]
    assert not bad, f"connection-specific fields sent on h2 (RFC 9113 8.2.2): {bad}{ctx}"
    assert st.header("x-mixed-case") == "MixedValue", f"end-to-end field or its value lost{ctx}"
    assert st.header("server") == "rawback", ctx
    assert bytes(st.body) == b"hop-test-body\n", ctx


def test_response_headers_h1_connection_specific_dropped(srv, pki):
    with H1Conn(srv.ports["hop"], pki) as c:
        r = c.request("GET", "/")
    ctx = srv.ctx(f"\n{r!r}")
    assert r.status == 200 and r.body == b"hop-test-body\n", ctx
    names = {k.lower() for k, _ in r.headers}
    for n in ("x-conn-named", "keep-alive", "proxy-connection", "upgrade"):
        assert n not in names, f"backend's hop-by-hop response field {n!r} reached the client{ctx}"
    assert r.header("X-Mixed-Case") == "MixedValue", ctx
    assert "X-Mixed-Case" in [k for k, _ in r.headers], \
        f"an HTTP/1.1 field name must keep its case on its way: {r.headers}{ctx}"


def test_response_without_length_h2(srv, pki):
    with H2Raw(srv.ports["nolen"], pki) as c:
        st = c.response(c.request("GET", "/nolen"), timeout=15)
    ctx = srv.ctx(f"\n{st!r}")
    assert st.status == 200, ctx
    assert st.ended and st.reset is None, f"the stream must end with END_STREAM{ctx}"
    assert st.header("content-length") is None, ctx
    assert len(st.body) == NOLEN_SIZE and bytes(st.body) == pattern_bytes(NOLEN_SIZE, 7), (
        f"body: got {len(st.body)} of {NOLEN_SIZE} bytes or other bytes{ctx}")


def test_response_without_length_h1_chunked(srv, pki):
    with H1Conn(srv.ports["nolen"], pki) as c:
        r = c.request("GET", "/nolen")
        ctx = srv.ctx(f"\n{r!r}")
        assert r.status == 200, ctx
        assert r.chunked, (f"a response delimited by the backend's close must reach an HTTP/1.1 "
                           f"client chunked (head {r.raw_head!r}){ctx}")
        assert r.body == pattern_bytes(NOLEN_SIZE, 7), f"body differs ({len(r.body)} bytes){ctx}"
        # Chunked framing keeps the client connection usable.
        r2 = c.request("GET", "/nolen")
        assert r2.status == 200 and len(r2.body) == NOLEN_SIZE, (
            f"second request on the same connection: {r2!r}{ctx}")


@pytest.mark.parametrize("http", PROTOS)
def test_chunked_backend_response(srv, pki, http):
    size = 1 * 1024 * 1024 + 123
    r = curl_http(pki, srv.port, f"/download?size={size}&seed=3&chunked=1", http=http)
    ctx = srv.ctx(f"\n{r}")
    assert r.rc == 0 and r.status == 200, ctx
    assert len(r.body) == size and hashlib.sha256(r.body).hexdigest() == pattern_sha(size, 3), (
        f"chunked body: got {len(r.body)} of {size} bytes{ctx}")
    if http == "2":
        assert r.header("transfer-encoding") is None, f"no transfer-encoding on h2{ctx}"


def test_head_request_keeps_connection(srv, pki):
    """HEAD gets the GET's headers (Content-Length included) and no body, and
    the connection stays in sync for the next request."""
    with H1Conn(srv.port, pki) as c:
        r = c.request("HEAD", "/download?size=5000")
        r2 = c.request("GET", "/echo/after-head")
    ctx = srv.ctx(f"\n{r!r}\n{r2!r}")
    assert r.status == 200 and r.header("Content-Length") == "5000" and r.body == b"", ctx
    assert r2.status == 200 and r2.json()["path"] == "/echo/after-head", ctx


@pytest.mark.parametrize("http", PROTOS)
def test_builtin_info_in_http_mode(pki, start_postern, http):
    port = free_port()
    p = start_postern(config([http_listener("info", port, "builtin:info", pki)]), [port])
    r = curl_http(pki, port, "/", "-H", "Accept: application/json", http=http)
    ctx = f"\n{r}{p.context()}"
    assert r.rc == 0 and r.status == 200, f"builtin:info in http mode{ctx}"
    info = json.loads(r.body)
    assert info["listener"] == "info" and info["sni"] == "example.test", ctx
    want = "h2" if r.version == "2" else "http/1.1"
    assert info["alpn"] == want, (f"page says alpn {info['alpn']!r}, curl spoke "
                                  f"HTTP/{r.version}{ctx}")


@pytest.mark.parametrize("http", PROTOS)
def test_forwarded_rfc7239(srv, pki, start_postern, http):
    port = free_port()
    p = start_postern(config([http_listener("rfc", port, srv.be.addr, pki, forwarded="rfc7239")]),
                      [port])
    r = curl_http(pki, port, "/echo/rfc7239", "-H", "Forwarded: for=192.0.2.60;proto=http",
                  http=http)
    ctx = f"\n{r}{srv.be.summary()}{p.context()}"
    assert r.rc == 0 and r.status == 200, ctx
    rec = json.loads(r.body)
    hdrs = f"\nbackend saw headers: {rec['headers']}"
    fwd = ", ".join(header_values(rec, "Forwarded"))
    elements = [e.strip() for e in fwd.split(",")]
    assert len(elements) == 2 and elements[0] == "for=192.0.2.60;proto=http", (
        f"Forwarded must keep the client's element and append postern's: {fwd!r}{hdrs}{ctx}")
    mine = {kv.split("=", 1)[0].strip().lower(): kv.split("=", 1)[1].strip()
            for kv in elements[1].split(";") if "=" in kv}
    assert mine.get("for") in ("127.0.0.1", '"127.0.0.1"'), f"for= of postern's element{hdrs}{ctx}"
    assert mine.get("proto") == "https", f"proto=https expected{hdrs}{ctx}"
    host = mine.get("host")
    assert host in (f'"example.test:{port}"', "example.test", '"example.test"'), (
        f"host= must be the authority, quoted when it has a port (RFC 7239 4: ':' is not a "
        f"token character): {host!r}{hdrs}{ctx}")
    for n in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        assert not header_values(rec, n), f"forwarded: rfc7239 must not add {n}{hdrs}{ctx}"


def _wait_lines(read, paths, seconds=5):
    deadline = time.monotonic() + seconds
    while True:
        text = read()
        if all(p in text for p in paths) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_access_log_file(srv, pki, start_postern, tmp_path):
    log = tmp_path / "access.log"
    port = free_port()
    p = start_postern(config([http_listener("logged", port, srv.be.addr, pki,
                                            access_log=str(log))]), [port])
    tok = os.urandom(4).hex()
    reqs = [("GET", f"/al-{tok}-a", "2", [], 200),
            ("POST", f"/al-{tok}-b", "1.1", ["--data-binary", "x=1"], 200),
            ("GET", f"/al-{tok}-c?status=404", "1.1", [], 404)]
    for method, path, http, args, status in reqs:
        r = curl_http(pki, port, path, "-X", method, *args, http=http)
        assert r.status == status, f"\n{r}{p.context()}"
    text = _wait_lines(lambda: log.read_text() if log.exists() else "",
                       [q[1].split("?")[0] for q in reqs])
    ctx = f"\n--- access log:\n{text[-3000:]}{p.context()}"
    for method, path, http, args, status in reqs:
        base = path.split("?")[0]
        lines = [line for line in text.splitlines() if base in line]
        assert len(lines) == 1, f"expected one access log line for {base}, found {len(lines)}{ctx}"
        words = lines[0].split()
        assert method in words, f"method {method} missing: {lines[0]!r}{ctx}"
        assert str(status) in words, f"status {status} missing: {lines[0]!r}{ctx}"


def test_access_log_stderr(srv, pki, start_postern):
    port = free_port()
    p = start_postern(config([http_listener("logged", port, srv.be.addr, pki,
                                            access_log="stderr")]), [port])
    tok = os.urandom(4).hex()
    r = curl_http(pki, port, f"/als-{tok}", http="2")
    assert r.status == 200, f"\n{r}{p.context()}"
    text = _wait_lines(p.stderr, [f"/als-{tok}"])
    lines = [line for line in text.splitlines() if f"/als-{tok}" in line]
    assert len(lines) == 1 and {"GET", "200"} <= set(lines[0].split()), (
        f"expected one access line with GET, the path and 200 on stderr{p.context()}")


def test_access_log_off_by_default(srv, pki):
    tok = os.urandom(4).hex()
    r = curl_http(pki, srv.port, f"/nolog-{tok}", http="2")
    assert r.status == 200, srv.ctx(f"\n{r}")
    time.sleep(0.3)
    assert f"/nolog-{tok}" not in srv.p.stderr(), (
        f"access_log is off by default, but the request was logged{srv.p.context()}")
