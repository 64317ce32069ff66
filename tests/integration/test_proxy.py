"""The PROXY protocol (HAProxy's proxy-protocol.txt), both ways:
- proxy_protocol: v1 | v2 under a backend: the header is the first bytes of
  every new server connection (tcp mode: one per client connection; http mode:
  a server connection carrying one serves that client connection only). A
  backend here parses the header strictly, with a parser written from the spec
  (not from postern's C), and checks addresses, ports and every TLV.
- accept_proxy on a listener: the client (an L4 balancer) must send a valid
  header from an address in trusted_proxies; its source then is the client
  everywhere (X-Forwarded-For, access log, PROXY to servers). Garbage,
  truncated, oversized, late and untrusted headers are refused without harming
  other connections. HAProxy (Debian's) proves interop in both directions."""

import json
import os
import re
import socket
import ssl
import struct
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from clients import HOST, client_context, config, free_port, listener, tls_block
from test_client_auth import ClientPki

HAPROXY = "/usr/sbin/haproxy"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"

# ------------------------------------------------- the spec, in Python --


class BadHeader(Exception):
    pass


def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _v4(text):
    parts = text.split(".")
    if len(parts) != 4 or any(not p.isdigit() or (len(p) > 1 and p[0] == "0") or int(p) > 255
                              for p in parts):
        raise BadHeader(f"bad IPv4 {text!r}")
    return text


def _v6(text):
    try:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text))
    except OSError:
        raise BadHeader(f"bad IPv6 {text!r}") from None


def _port(text):
    if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise BadHeader(f"bad port {text!r}")
    return int(text)


def _tlvs(data):
    out = []
    while data:
        if len(data) < 3:
            raise BadHeader("TLV head cut")
        t, n = data[0], struct.unpack("!H", data[1:3])[0]
        if len(data) < 3 + n:
            raise BadHeader("TLV value cut")
        out.append((t, data[3:3 + n]))
        data = data[3 + n:]
    return out


def read_proxy_header(sock):
    """Reads one header from sock, byte-exactly (nothing past it). Returns a
    dict: version, command, family, src, dst, sport, dport, tlvs, ssl."""
    first = _recv(sock, 1)
    if first == b"P":
        line = first
        while not line.endswith(b"\r\n"):
            if len(line) >= 107:
                raise BadHeader("v1 line over 107 bytes")
            line += _recv(sock, 1)
        text = line[:-2].decode("ascii")
        if "\r" in text or "\n" in text:
            raise BadHeader("stray CR/LF")
        f = text.split(" ")
        if f[0] != "PROXY":
            raise BadHeader("no PROXY")
        if f[1] == "UNKNOWN":
            return {"version": 1, "command": "LOCAL"}
        if f[1] not in ("TCP4", "TCP6") or len(f) != 6:
            raise BadHeader(f"bad v1 line {text!r}")
        addr = _v4 if f[1] == "TCP4" else _v6
        if f[1] == "TCP6" and (f[2] != _v6(f[2]) or f[3] != _v6(f[3])):
            raise BadHeader("IPv6 not canonical")
        return {"version": 1, "command": "PROXY", "family": f[1], "src": addr(f[2]),
                "dst": addr(f[3]), "sport": _port(f[4]), "dport": _port(f[5]), "tlvs": []}
    rest = _recv(sock, 15)
    head = first + rest
    if head[:12] != SIG:
        raise BadHeader(f"neither v1 nor v2: {head!r}")
    ver, cmd, fam = head[12] >> 4, head[12] & 15, head[13]
    if ver != 2 or cmd not in (0, 1):
        raise BadHeader("bad version/command")
    n = struct.unpack("!H", head[14:16])[0]
    body = _recv(sock, n) if n else b""
    whole = head + body
    h = {"version": 2, "command": "PROXY" if cmd else "LOCAL", "family": fam, "tlvs": []}
    if fam == 0x11:
        if n < 12:
            raise BadHeader("short IPv4 block")
        h["src"] = socket.inet_ntop(socket.AF_INET, body[0:4])
        h["dst"] = socket.inet_ntop(socket.AF_INET, body[4:8])
        h["sport"], h["dport"] = struct.unpack("!HH", body[8:12])
        tl = body[12:]
    elif fam == 0x21:
        if n < 36:
            raise BadHeader("short IPv6 block")
        h["src"] = socket.inet_ntop(socket.AF_INET6, body[0:16])
        h["dst"] = socket.inet_ntop(socket.AF_INET6, body[16:32])
        h["sport"], h["dport"] = struct.unpack("!HH", body[32:36])
        tl = body[36:]
    elif fam == 0x00:
        tl = b""
    else:
        raise BadHeader(f"unexpected family {fam:#x}")
    h["tlvs"] = _tlvs(tl)
    for t, v in h["tlvs"]:
        if t == 0x03:  # CRC32C: of the whole header with its value zeroed
            i = len(whole) - len(tl) + tl.index(v)
            if _crc32c(whole[:i] + b"\0\0\0\0" + whole[i + 4:]) != struct.unpack("!I", v)[0]:
                raise BadHeader("CRC32C mismatch")
        if t == 0x05 and len(v) > 128:
            raise BadHeader("UNIQUE_ID over 128 bytes")
        if t == 0x20:
            if len(v) < 5:
                raise BadHeader("SSL TLV short")
            h["ssl"] = {"client": v[0], "verify": struct.unpack("!I", v[1:5])[0],
                        "sub": {st: sv.decode() for st, sv in _tlvs(v[5:])}}
    return h


def _recv(sock, n):
    buf = b""
    while len(buf) < n:
        d = sock.recv(n - len(buf))
        if not d:
            raise BadHeader(f"EOF after {len(buf)} of {n} bytes")
        buf += d
    return buf


def v2_header(src, dst, sport, dport, cmd=1, tlvs=b""):
    """A v2 header as a balancer sends it (for accept_proxy tests); cmd 0:
    LOCAL, without addresses, as HAProxy sends its health checks."""
    if cmd == 0:
        return SIG + b"\x20\x00\x00\x00"
    if ":" in src:
        fam, block = 0x21, (socket.inet_pton(socket.AF_INET6, src)
                            + socket.inet_pton(socket.AF_INET6, dst))
    else:
        fam, block = 0x11, socket.inet_aton(src) + socket.inet_aton(dst)
    block += struct.pack("!HH", sport, dport) + tlvs
    return SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(block)) + block

# ---------------------------------------------------------- backends --


class ProxyBackend:
    """A server that wants a PROXY header first on every connection. It
    records each header (or the error), then: to bytes starting like an HTTP
    request it answers HTTP/1.1 keep-alive responses whose JSON body says
    which connection (its number and header) served it and what
    X-Forwarded-For said; to anything else it sends its header as a JSON line
    and echoes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(128)
        self.addr = f"{HOST}:{self.sock.getsockname()[1]}"
        self.headers, self.errors, self.requests = [], [], []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(20)
        with c:
            try:
                h = read_proxy_header(c)
            except (BadHeader, OSError, UnicodeDecodeError) as e:
                with self.lock:
                    self.errors.append(repr(e))
                return
            with self.lock:
                n = len(self.headers)
                self.headers.append(h)
            h = dict(h, conn=n, tlvs=[(t, v.hex()) for t, v in h.get("tlvs", [])])
            try:
                first = c.recv(65536)
                if re.match(rb"^[A-Z]+ /", first):
                    self._http(c, first, h)
                else:
                    c.sendall(json.dumps(h).encode() + b"\n")
                    while first:
                        c.sendall(first)
                        first = c.recv(65536)
            except OSError:
                pass

    def _http(self, c, buf, h):
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            xff = re.search(rb"(?im)^x-forwarded-for:\s*(.*?)\s*$", head)
            rec = dict(h, xff=xff.group(1).decode() if xff else None,
                       line=head.split(b"\r\n")[0].decode())
            with self.lock:
                self.requests.append(rec)
            body = json.dumps(rec).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def close(self):
        self.closed = True
        self.sock.close()


@pytest.fixture
def pbackend():
    b = ProxyBackend()
    yield b
    b.close()


class HttpEcho:
    """A plain HTTP/1.1 backend (no PROXY header) answering with the
    X-Forwarded-For it got, keep-alive."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(128)
        self.addr = f"{HOST}:{self.sock.getsockname()[1]}"
        self.requests = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(20)
        pb = ProxyBackend.__new__(ProxyBackend)
        pb.requests, pb.lock = self.requests, threading.Lock()
        with c:
            try:
                pb._http(c, b"", {"conn": None})
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.sock.close()

# ----------------------------------------------------------- clients --


def tls_client(port, ctx, header=b"", src=None, sni="example.test", timeout=10):
    """A TLS connection to postern that first sends header in the clear,
    optionally from the source address src (any 127.0.0.0/8 address)."""
    raw = socket.socket()
    raw.settimeout(timeout)
    if src is not None:
        raw.bind((src, 0))
    raw.connect((HOST, port))
    if header:
        raw.sendall(header)
    return ctx.wrap_socket(raw, server_hostname=sni)


def http_get(s, path="/", host="example.test"):
    """One HTTP/1.1 GET on s; returns the JSON body."""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        assert d, f"EOF before a response head: {buf!r}"
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    n = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(body) < n:
        d = s.recv(65536)
        assert d, "EOF in a response body"
        body += d
    return json.loads(body[:n])


def refused(s):
    """Whether postern closed s without a TLS byte: EOF or a reset."""
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


def pp_backend_conf(be, version):
    return {"pp": {"servers": [{"address": be.addr}], "proxy_protocol": version}}

# ------------------------------------------------------- to servers --


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_health_checks_send_the_header(pki, start_postern, pbackend, version):
    """A server that expects a PROXY header gets one on health checks too,
    naming the check's own connection (proxy-protocol.txt 2.1), so that it
    does not refuse them and get marked down."""
    port = free_port()
    backends = pp_backend_conf(pbackend, version)
    backends["pp"]["health"] = {"check": "http", "path": "/healthz", "interval": "200ms",
                                "timeout": "100ms", "rise": 1, "fall": 1}
    p = start_postern(config([listener("pp", port, "pp", pki)], backends=backends), [port])
    deadline = time.monotonic() + 10
    while len(pbackend.requests) < 2:
        assert time.monotonic() < deadline, f"no health check came: {pbackend.errors}"
        time.sleep(0.05)
    assert pbackend.errors == []
    be_port = int(pbackend.addr.rsplit(":", 1)[1])
    for r in pbackend.requests[:2]:
        assert r["line"] == "GET /healthz HTTP/1.1", r
        assert r["command"] == "PROXY" and (r["dst"], r["dport"]) == (HOST, be_port), r
    assert "is down" not in p.stderr()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_tcp_mode_sends_header_first(pki, start_postern, pbackend, version):
    port = free_port()
    lst = listener("pp", port, "pp", pki, alpn=["x-test", "http/1.1"])
    p = start_postern(config([lst], backends=pp_backend_conf(pbackend, version)), [port])
    ctx = client_context(pki, alpn=["x-test"])
    with tls_client(port, ctx) as s:
        s.sendall(b"hello\n")
        f = s.makefile("rb")
        h = json.loads(f.readline())
        assert f.readline() == b"hello\n"
        cport = s.getsockname()[1]
    assert not pbackend.errors, f"{pbackend.errors}{p.context()}"
    assert h["command"] == "PROXY"
    assert (h["src"], h["sport"], h["dst"], h["dport"]) == (HOST, cport, HOST, port), h
    if version == "v1":
        assert h["family"] == "TCP4" and h["tlvs"] == []
        return
    assert h["family"] == 0x11
    tlvs = {t: bytes.fromhex(v) for t, v in h["tlvs"]}
    assert tlvs[0x01] == b"x-test"              # PP2_TYPE_ALPN
    assert tlvs[0x02] == b"example.test"        # PP2_TYPE_AUTHORITY: the SNI
    uid = tlvs[0x05].decode()                   # PP2_TYPE_UNIQUE_ID: the connection id
    assert re.fullmatch(rf"{p.pid}-\d+-\d+", uid), uid
    assert h["ssl"]["client"] & 1 and h["ssl"]["verify"] != 0   # PP2_TYPE_SSL
    assert _ssl_sub(h)[0x21] == "TLSv1.3"


def _ssl_sub(h):
    return {int(k): v for k, v in h["ssl"]["sub"].items()}


def test_tcp_v2_every_tlv(pki, start_postern, pbackend):
    port = free_port()
    lst = listener("pp", port, "pp", pki, alpn=["x-test"])
    p = start_postern(config([lst], backends=pp_backend_conf(pbackend, "v2")), [port])
    with tls_client(port, client_context(pki, alpn=["x-test"])) as s:
        s.sendall(b"x")
        s.makefile("rb").readline()
        cipher = s.cipher()[0]
    h = pbackend.headers[0]
    sub = _ssl_sub(h)
    assert sub[0x21] == "TLSv1.3"               # PP2_SUBTYPE_SSL_VERSION
    assert sub[0x23] == cipher                  # PP2_SUBTYPE_SSL_CIPHER (IANA name)
    assert sub[0x24] and re.search(r"(?i)sha|ecdsa|rsa|ed25519", sub[0x24]), sub  # SIG_ALG
    assert re.fullmatch(r"EC256|EC384|RSA\d+|ED25519", sub[0x25]), sub           # KEY_ALG
    assert 0x22 not in sub                      # no client certificate: no CN
    assert [t for t, _ in h["tlvs"]] == [0x01, 0x02, 0x20, 0x05], h["tlvs"]
    assert p.stderr().count("refused") == 0


def test_tcp_v2_client_certificate(pki, start_postern, pbackend, tmp_path):
    """tls.client_auth in tcp mode with proxy_protocol v2: the SSL TLV says a
    certificate came on this connection and verified (PP2_CLIENT_CERT_CONN,
    verify 0) and carries its subject's common name (PP2_SUBTYPE_SSL_CN)."""
    cpki = ClientPki(tmp_path / "clients")
    port = free_port()
    tls = tls_block(pki, ["example.test"],
                    client_auth={"mode": "required", "ca_file": str(cpki.ca)})
    lst = listener("pp", port, "pp", tls=tls)
    start_postern(config([lst], backends=pp_backend_conf(pbackend, "v2")), [port])
    ctx = client_context(pki)
    ctx.load_cert_chain(str(cpki.cert("alice")), str(cpki.key("alice")))
    with tls_client(port, ctx) as s:
        s.sendall(b"x")
        s.makefile("rb").readline()
    h = pbackend.headers[0]
    assert h["ssl"]["client"] == 0x03 and h["ssl"]["verify"] == 0, h["ssl"]  # SSL | CERT_CONN
    assert _ssl_sub(h)[0x22] == "alice"


def test_http_mode_server_connection_per_client(pki, start_postern, pbackend):
    """Each client connection gets server connections of its own (the header
    names it); its second request reuses its own one; the other client's
    requests never arrive on it."""
    port = free_port()
    lst = listener("pp", port, "pp", pki, mode="http", alpn=["http/1.1"])
    p = start_postern(config([lst], backends=pp_backend_conf(pbackend, "v2")), [port])
    ctx = client_context(pki, alpn=["http/1.1"])
    a, b = tls_client(port, ctx, src="127.0.0.2"), tls_client(port, ctx, src="127.0.0.3")
    with a, b:
        got = [http_get(a), http_get(b), http_get(a), http_get(b), http_get(a)]
    for r, s in zip(got, ["127.0.0.2", "127.0.0.3"] * 2 + ["127.0.0.2"]):
        assert r["src"] == s and r["xff"] == s, f"{r}{p.context()}"
    # a's three requests: one server connection, a's; b's two: another, b's.
    assert got[0]["conn"] == got[2]["conn"] == got[4]["conn"], got
    assert got[1]["conn"] == got[3]["conn"] != got[0]["conn"], got
    assert len(pbackend.headers) == 2, pbackend.headers
    # A new client connection from a's address gets a fresh server connection.
    with tls_client(port, ctx, src="127.0.0.2") as c:
        r = http_get(c)
        cport = c.getsockname()[1]
    assert (r["conn"], r["sport"]) == (2, cport), r


def _json_seq(text):
    """The JSON objects written one after the other in text."""
    dec, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, i = dec.raw_decode(text, i)
        out.append(obj)
    return out


def test_h2_streams_share_only_their_clients_server_connections(pki, start_postern, pbackend):
    """HTTP/2: the concurrent streams of one client connection each may open
    a server connection, every one with that client's header; a second client
    connection's streams never land on them."""
    port = free_port()
    lst = listener("pp", port, "pp", pki, mode="http", alpn=["h2", "http/1.1"])
    p = start_postern(config([lst], backends=pp_backend_conf(pbackend, "v2")), [port])
    runs = []
    for _ in range(2):
        url = f"https://example.test:{port}/h2"
        cmd = ["curl", "-sS", "--http2", "-Z", "--max-time", "10",
               "--cacert", str(pki.root), "--resolve", f"example.test:{port}:{HOST}",
               *[url] * 6]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        assert r.returncode == 0, f"{r.stderr}{p.context()}"
        runs.append(_json_seq(r.stdout.decode()))
    assert [len(x) for x in runs] == [6, 6], runs
    ports = [{(b["src"], b["sport"]) for b in run} for run in runs]
    assert len(ports[0]) == 1 and len(ports[1]) == 1 and ports[0] != ports[1], ports
    conns = [{b["conn"] for b in run} for run in runs]
    assert not conns[0] & conns[1], conns
    assert all(b["line"].startswith("GET /h2 ") and b["xff"] == HOST for run in runs for b in run)
    assert not pbackend.errors, pbackend.errors


def test_http_mode_v1_and_ipv6_client_via_accept_proxy(pki, start_postern, pbackend):
    """A v2 header from a trusted balancer carries an IPv6 client: postern
    says so in X-Forwarded-For, the access log and the v1 line to the server
    (TCP6)."""
    port = free_port()
    log = "stderr"
    lst = listener("pp", port, "pp", pki, mode="http", alpn=["http/1.1"], accept_proxy="v2",
                   trusted_proxies=["127.0.0.1/32"], access_log=log)
    p = start_postern(config([lst], backends=pp_backend_conf(pbackend, "v1")), [port])
    hdr = v2_header("2001:db8::7", "2001:db8::1", 4242, 443)
    with tls_client(port, client_context(pki, alpn=["http/1.1"]), hdr) as s:
        r = http_get(s, "/six")
    assert r["xff"] == "2001:db8::7", f"{r}{p.context()}"
    assert (r["family"], r["src"], r["sport"], r["dst"], r["dport"]) == \
        ("TCP6", "2001:db8::7", 4242, "2001:db8::1", 443), r
    deadline = time.monotonic() + 5
    while "[2001:db8::7]:4242" not in p.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "[2001:db8::7]:4242" in p.stderr(), p.context()  # the access log's client

# ---------------------------------------------------- from balancers --


@pytest.fixture
def accept_site(pki, start_postern):
    """An http-mode listener with accept_proxy: any, trusting 127.0.0.1 only,
    with a 1 s handshake timeout, in front of an X-Forwarded-For echo."""
    be = HttpEcho()
    port = free_port()
    lst = listener("ap", port, be.addr, pki, mode="http", alpn=["http/1.1"], accept_proxy="any",
                   trusted_proxies=["127.0.0.1"], access_log="stderr",
                   timeouts={"handshake": "1s"})
    p = start_postern(config([lst]), [port])
    yield p, port, be
    be.close()


def _get_after(port, ctx, pieces, pause=0.05):
    """Sends pieces one by one (pause apart), the last one together with the
    ClientHello, completes the handshake and a GET; returns its
    X-Forwarded-For."""
    raw = socket.create_connection((HOST, port), timeout=10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="example.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    for piece in pieces[:-1]:
        raw.sendall(piece)
        time.sleep(pause)
    raw.sendall(pieces[-1] + out.read())  # one write: the end of the header and the ClientHello
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if out.pending:
                raw.sendall(out.read())
            d = raw.recv(65536)
            assert d, "EOF during the handshake"
            inc.write(d)
    if out.pending:
        raw.sendall(out.read())
    obj.write(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
    raw.sendall(out.read())
    resp = b""
    while b"}" not in resp:
        d = raw.recv(65536)
        assert d, resp
        inc.write(d)
        try:
            resp += obj.read(65536)
        except ssl.SSLWantReadError:
            pass
    raw.close()
    return json.loads(resp.split(b"\r\n\r\n", 1)[1])["xff"]


def test_header_in_pieces(pki, accept_site):
    """A header that comes in pieces (kept by postern until whole) and whose
    last piece shares a segment with the ClientHello: v1 and v2 (IPv6)."""
    p, port, be = accept_site
    ctx = client_context(pki, alpn=["http/1.1"])
    line = b"PROXY TCP4 198.51.100.11 203.0.113.1 5557 443\r\n"
    assert _get_after(port, ctx, [line[:3], line[3:20], line[20:-1], line[-1:]]) == \
        "198.51.100.11"
    hdr = v2_header("2001:db8::beef", "2001:db8::1", 9, 443, tlvs=b"\x04\x00\x10" + bytes(16))
    assert _get_after(port, ctx, [hdr[:1], hdr[1:13], hdr[13:16], hdr[16:40], hdr[40:]]) == \
        "2001:db8::beef"
    assert "bad PROXY header" not in p.stderr(), p.context()


def test_accept_v1_v2_and_local(pki, accept_site):
    p, port, be = accept_site
    ctx = client_context(pki, alpn=["http/1.1"])
    with tls_client(port, ctx, b"PROXY TCP4 198.51.100.9 203.0.113.1 5555 443\r\n") as s:
        assert http_get(s)["xff"] == "198.51.100.9"
    with tls_client(port, ctx, v2_header("192.0.2.44", "10.0.0.1", 6000, 443)) as s:
        assert http_get(s)["xff"] == "192.0.2.44"
    # LOCAL (a balancer's health check) and v1 UNKNOWN: the socket's own.
    with tls_client(port, ctx, v2_header("", "", 0, 0, cmd=0)) as s:
        assert http_get(s)["xff"] == "127.0.0.1"
    with tls_client(port, ctx, b"PROXY UNKNOWN\r\n") as s:
        assert http_get(s)["xff"] == "127.0.0.1"
    # The header and the ClientHello in one segment: the TLS bytes after the
    # header are not lost.
    assert _get_after(port, ctx, [b"PROXY TCP4 198.51.100.10 203.0.113.1 5556 443\r\n"]) \
        == "198.51.100.10"
    assert "198.51.100.9:5555" in p.stderr(), p.context()   # the access log's client


def test_builtin_info_shows_proxy_source(pki, start_postern):
    port = free_port()
    lst = listener("info", port, "builtin:info", pki, mode="http", alpn=["http/1.1"],
                   accept_proxy="v1", trusted_proxies=["127.0.0.0/8"])
    p = start_postern(config([lst]), [port])
    with tls_client(port, client_context(pki, alpn=["http/1.1"]),
                    b"PROXY TCP6 2001:db8::99 2001:db8::1 7777 443\r\n") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nAccept: application/json\r\n"
                  b"Connection: close\r\n\r\n")
        resp = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            resp += d
    info = json.loads(resp.split(b"\r\n\r\n", 1)[1])
    assert info["client"] == "[2001:db8::99]:7777", f"{info}{p.context()}"


BAD = {
    "garbage": (b"GET / HTTP/1.1\r\n\r\n", "no PROXY header"),
    "tls-first": (None, "the client's TLS handshake came first"),
    "bad-v1": (b"PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", "bad source address"),
    "lf-only": (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "LF without CR"),
    "bad-v2-version": (SIG + b"\x11\x11\x00\x0c" + bytes(12), "version is not 2"),
    "oversized": (SIG + b"\x21\x11\x13\x88", "header over 4 KiB"),
    "bad-crc": (v2_header("192.0.2.1", "192.0.2.2", 1, 2, tlvs=b"\x03\x00\x04abcd"),
                "CRC32C mismatch"),
    "truncated": (v2_header("192.0.2.1", "192.0.2.2", 1, 2)[:20], "truncated"),
    "empty": (b"", "before sending a PROXY header"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_header_refused(pki, accept_site, case):
    p, port, be = accept_site
    data, why = BAD[case]
    ctx = client_context(pki, alpn=["http/1.1"])
    good = tls_client(port, ctx, b"PROXY TCP4 198.51.100.1 203.0.113.1 1 443\r\n")
    s = socket.create_connection((HOST, port), timeout=10)
    if data is None:
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="example.test")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        data = out.read()
    s.sendall(data)
    if case in ("truncated", "empty"):
        s.shutdown(socket.SHUT_WR)
    assert refused(s), case
    s.close()
    with good:
        assert http_get(good)["xff"] == "198.51.100.1"   # the other connection is unharmed
    deadline = time.monotonic() + 5
    while why not in p.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert why in p.stderr(), p.context()
    assert re.search(r"client 127\.0\.0\.1:\d+ on listener ap refused: .*" + re.escape(why),
                     p.stderr()), p.context()


def test_slow_header_times_out(pki, accept_site):
    p, port, be = accept_site
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(b"PROXY TCP4 1.2.")
    t0 = time.monotonic()
    assert refused(s)
    took = time.monotonic() - t0
    assert 0.7 < took < 3, took
    assert "no whole PROXY header within the handshake timeout" in p.stderr(), p.context()


def test_untrusted_source_closed_at_once(pki, accept_site):
    p, port, be = accept_site
    s = socket.socket()
    s.settimeout(10)
    s.bind(("127.0.0.9", 0))
    s.connect((HOST, port))
    t0 = time.monotonic()
    assert refused(s)                 # without sending anything
    assert time.monotonic() - t0 < 0.5
    assert re.search(r"client 127\.0\.0\.9:\d+ on listener ap refused: not in trusted_proxies",
                     p.stderr()), p.context()


def test_flood_is_counted_and_log_bounded(pki, accept_site):
    """300 bad headers at once: each closed, the log says at most ~10 a
    second plus a summary, the counters at exit count them all, and a good
    connection meanwhile is served."""
    p, port, be = accept_site

    def bad(i):
        s = socket.create_connection((HOST, port), timeout=10)
        s.sendall(b"XXXX")
        r = refused(s)
        s.close()
        return r

    with ThreadPoolExecutor(max_workers=50) as ex:
        results = list(ex.map(bad, range(300)))
    assert all(results)
    with tls_client(port, client_context(pki, alpn=["http/1.1"]),
                    b"PROXY TCP4 198.51.100.2 203.0.113.1 1 443\r\n") as s:
        assert http_get(s)["xff"] == "198.51.100.2"
    lines = [ln for ln in p.stderr().splitlines() if "on listener ap refused" in ln]
    assert 10 <= len(lines) <= 60, len(lines)
    assert "more refused connections not logged" in p.stderr() or len(lines) < 300
    assert "close=no PROXY header" not in p.stderr()   # one line per refusal at most
    p.stop()
    # 300, and the start-up probe's connection (connected and closed: no header).
    assert re.search(r"proxy_refused=30[01]\b", p.stderr()), p.context()

# ---------------------------------------------------------- HAProxy --


def _haproxy(tmp_path, cfg):
    path = tmp_path / "haproxy.cfg"
    path.write_text(cfg)
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    return proc


def _wait_port(port, proc, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"haproxy did not listen on {port}")


HAPROXY_GLOBAL = """global
    log stderr format raw local0 notice
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="Debian's haproxy not installed")
def test_haproxy_send_proxy_v2_in_front(pki, start_postern, tmp_path):
    """HAProxy (tcp mode, send-proxy-v2) in front of postern's accept_proxy:
    the client's own address and port reach the backend and the access log,
    not HAProxy's."""
    be = HttpEcho()
    port, hport = free_port(), free_port()
    lst = listener("ap", port, be.addr, pki, mode="http", alpn=["http/1.1"], accept_proxy="v2",
                   trusted_proxies=["127.0.0.1/32"], access_log="stderr")
    p = start_postern(config([lst]), [port])
    hp = _haproxy(tmp_path, HAPROXY_GLOBAL + f"""
frontend fe
    bind {HOST}:{hport}
    default_backend be
backend be
    server postern {HOST}:{port} send-proxy-v2 check check-send-proxy inter 200 rise 1 fall 1
""")
    try:
        _wait_port(hport, hp)
        time.sleep(1)   # a few health checks: each a v2 LOCAL header, then a close
        with tls_client(hport, client_context(pki, alpn=["http/1.1"]), src="127.0.0.5") as s:
            r = http_get(s, "/via-haproxy")
            cport = s.getsockname()[1]
        assert r["xff"] == "127.0.0.5", f"{r}{p.context()}"
        deadline = time.monotonic() + 5
        while f"127.0.0.5:{cport}" not in p.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"127.0.0.5:{cport}" in p.stderr(), p.context()
        # HAProxy's health checks came as LOCAL headers (then a reset): none
        # was a bad header, and the server stayed up for the request above.
        assert "bad PROXY header" not in p.stderr(), p.context()
        assert "not in trusted_proxies" not in p.stderr(), p.context()
    finally:
        hp.terminate()
        hp.wait(10)
        be.close()


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="Debian's haproxy not installed")
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_haproxy_accept_proxy_behind(pki, start_postern, tmp_path, version):
    """postern with proxy_protocol in front of HAProxy's accept-proxy: HAProxy
    sees the client's address and port as %ci:%cp."""
    port, hport = free_port(), free_port()
    hp = _haproxy(tmp_path, HAPROXY_GLOBAL + f"""
frontend fe
    mode http
    bind {HOST}:{hport} accept-proxy
    http-request return status 200 content-type application/json lf-string "{{\\"xff\\":\\"%ci\\",\\"port\\":%cp,\\"conn\\":0}}"
""")
    try:
        _wait_port(hport, hp)
        backends = {"hap": {"servers": [{"address": f"{HOST}:{hport}"}],
                            "proxy_protocol": version}}
        for mode in ("tcp", "http"):
            lport = free_port()
            lst = listener(f"to-haproxy-{mode}", lport, "hap", pki, mode=mode,
                           alpn=["http/1.1"])
            p = start_postern(config([lst], backends=backends), [lport])
            with tls_client(lport, client_context(pki, alpn=["http/1.1"]), src="127.0.0.6") as s:
                r = http_get(s, "/")
                cport = s.getsockname()[1]
            assert (r["xff"], r["port"]) == ("127.0.0.6", cport), f"{mode}: {r}{p.context()}"
            p.stop()
    finally:
        hp.terminate()
        hp.wait(10)
