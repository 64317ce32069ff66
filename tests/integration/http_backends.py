"""Backends and clients for the HTTP-mode tests (test_http_*.py).

Backends, each on 127.0.0.1:<free port>, counting the connections they accept:
- HttpBackend: a threaded HTTP/1.1 origin (http.server.ThreadingHTTPServer,
  keep-alive), strict about Host like nginx (400 for an HTTP/1.1 request
  without exactly one non-empty Host), that records every request it sees
  and answers by path:
    /download?size=N&seed=S[&chunked=1|&nolength=1]: N pattern bytes (pattern_*)
    /sleep?ms=N: waits, then answers like /echo
    /slowread?ms=N: waits before reading the request body, then like /echo
    /ws: 101 to "Connection: Upgrade", then echoes raw bytes
    anything else (/echo...): JSON describing the request (method, path,
      headers, body length and SHA-256 of a chunked or Content-Length body),
      with ?status=N, ?set=Name:Value (response field) and ?tag=T (X-Tag)
- fast_server: a raw keep-alive responder for load tests (GET only, pipelining
  aware, one fixed small response per request head).
- raw_http_server(respond): reads request heads and lets a test write any bytes
  back (hop-by-hop response headers, no length, truncation, 101 ...).
- silent_server: accepts, reads, never answers.

Clients: H1Conn (raw HTTP/1.1 over TLS with a response reader), H2Raw (raw
HTTP/2 frames over TLS with HPACK from the hpack package, so probes can send
what h2.connection would refuse to), curl_http, RssSampler, and the
deterministic byte pattern both sides use for checksums."""

import base64
import functools
import hashlib
import json
import os
import random
import re
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hpack

import backends
from clients import HOST, client_context, config, connect_tls, free_port, listener

KiB = 1024
MiB = 1024 * 1024
GiB = 1024 * MiB

# ---------------------------------------------------------------- pattern --

_BLOCK = MiB


@functools.lru_cache(maxsize=4)
def _base_block(seed):
    return random.Random(seed).randbytes(_BLOCK)


def pattern_chunks(size, seed=1):
    """Yields size deterministic pseudo-random bytes in 1 MiB pieces: block i
    is a fixed random MiB with i in its first 8 bytes, so a lost, repeated or
    reordered block changes the checksum."""
    base = _base_block(seed)
    i = 0
    left = size
    while left > 0:
        block = i.to_bytes(8, "big") + base[8:]
        if left < _BLOCK:
            block = block[:left]
        yield block
        left -= len(block)
        i += 1


@functools.lru_cache(maxsize=8)
def pattern_sha(size, seed=1):
    h = hashlib.sha256()
    for b in pattern_chunks(size, seed):
        h.update(b)
    return h.hexdigest()


def pattern_bytes(size, seed=1):
    return b"".join(pattern_chunks(size, seed))


# ------------------------------------------------------------ HttpBackend --

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pybackend"
    sys_version = ""
    rbufsize = 256 * KiB

    def log_message(self, *args):
        pass

    def version_string(self):
        return "pybackend"

    def setup(self):
        super().setup()
        self.conn_id = self.server.note_conn()

    def parse_request(self):
        # Every request line that reaches the backend is recorded, even one
        # http.server then refuses: the smuggling tests look for their markers.
        self.server.note_line(self.raw_requestline)
        if not super().parse_request():
            return False
        # Strict like nginx: an HTTP/1.1 request needs one non-empty Host
        # (RFC 9112 3.2); anything else is answered 400 and recorded.
        hosts = self.headers.get_all("Host") or []
        if self.request_version == "HTTP/1.1" and (len(hosts) != 1 or not hosts[0].strip()):
            self.server.note_bad_host(self.raw_requestline, hosts)
            self.send_error(400, "missing, empty or repeated Host")
            return False
        return True

    # http.server calls do_<METHOD>.
    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def _dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        arg = lambda k, d=None: q.get(k, [d])[0]  # noqa: E731
        self.server.note_head(self)
        if url.path == "/ws":
            return self._upgrade()
        if url.path == "/download":
            self._read_body(None)
            return self._download(int(arg("size", "0")), int(arg("seed", "1")),
                                  arg("chunked") == "1", arg("nolength") == "1")
        if url.path == "/slowread":
            time.sleep(int(arg("ms", "1000")) / 1000)  # let the request body pile up
        n, sha = self._read_body(hashlib.sha256())
        rec = self.server.note_request(self, n, sha)
        if url.path == "/sleep":
            with self.server.lock:
                self.server.inflight += 1
                self.server.peak = max(self.server.peak, self.server.inflight)
            try:
                time.sleep(int(arg("ms", "1000")) / 1000)
            finally:
                with self.server.lock:
                    self.server.inflight -= 1
        status = int(arg("status", "200"))
        extra = [tuple(s.split(":", 1)) for s in q.get("set", [])]
        body = json.dumps(rec).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Backend-Conn", str(self.conn_id))
        if arg("tag"):
            self.send_header("X-Tag", arg("tag"))
        for k, v in extra:
            self.send_header(k, v)
        if status in (204, 304) or 100 <= status < 200:
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self, h):
        """Reads a Content-Length or chunked body, hashing it into h. Returns
        (length, hex digest or None)."""
        n = 0
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise ValueError(f"backend got Transfer-Encoding {te!r}")
            while True:
                line = self.rfile.readline(1024)
                if not line.endswith(b"\r\n"):
                    raise ValueError(f"bad chunk size line {line!r}")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b""):
                        pass  # trailer fields
                    break
                n += self._read_n(size, h)
                if self.rfile.read(2) != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
        else:
            n = self._read_n(int(self.headers.get("Content-Length") or 0), h)
        return n, (h.hexdigest() if h else None)

    def _read_n(self, size, h):
        left = size
        while left:
            d = self.rfile.read(min(left, MiB))
            if not d:
                raise ValueError(f"body cut after {size - left} of {size} bytes")
            if h:
                h.update(d)
            left -= len(d)
        return size

    def _download(self, size, seed, chunked, nolength):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif nolength:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = 0
        try:
            for block in pattern_chunks(size, seed):
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(block) + block + b"\r\n")
                else:
                    self.wfile.write(block)
                sent += len(block)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            self.server.note_download(sent, size)

    def _upgrade(self):
        conn_hdr = (self.headers.get("Connection") or "").lower()
        if "upgrade" not in conn_hdr or (self.headers.get("Upgrade") or "").lower() != "websocket":
            self.server.note_request(self, 0, None)
            self.send_response(426)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.note_request(self, 0, None)
        self.send_response(101)
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", "websocket")
        key = self.headers.get("Sec-WebSocket-Key")
        if key:  # RFC 6455 4.2.2
            accept = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
            self.send_header("Sec-WebSocket-Accept", base64.b64encode(accept).decode())
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            d = self.rfile.read1(256 * KiB)
            if not d:
                self.connection.shutdown(socket.SHUT_WR)
                return
            self.connection.sendall(d)


class HttpBackend(ThreadingHTTPServer):
    """The HTTP/1.1 origin. Attributes for tests: accepted and closed
    (connections), seen (completed requests, dicts as in the /echo JSON), heads (every
    request head parsed, even when the body never came), lines (raw request
    lines), peak (most /sleep requests at once), downloads ([sent, size]),
    bad_host (requests refused with 400, as nginx does, because their Host was
    missing, empty or repeated)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, name="http-backend"):
        super().__init__((HOST, 0), _Handler)
        self.name = name
        self.port = self.server_address[1]
        self.addr = f"{HOST}:{self.port}"
        self.lock = threading.Lock()
        self.accepted = 0
        self.closed = 0  # connections ended (by either side)
        self.seen = []
        self.heads = []
        self.lines = []
        self.inflight = 0
        self.peak = 0
        self.downloads = []
        self.errors = []
        self.bad_host = []  # (request line, Host values) of requests refused with 400
        self._socks = set()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=name, daemon=True)
        self._thread.start()

    # -- bookkeeping, called by the handler threads
    def note_conn(self):
        with self.lock:
            self.accepted += 1
            return self.accepted

    def note_line(self, line):
        with self.lock:
            self.lines.append(bytes(line))

    def note_bad_host(self, line, hosts):
        with self.lock:
            self.bad_host.append((bytes(line), list(hosts)))

    def note_head(self, h):
        with self.lock:
            self.heads.append({"method": h.command, "path": h.path})

    def note_request(self, h, n, sha):
        rec = {"method": h.command, "path": h.path, "version": h.request_version,
               "headers": [[k, v] for k, v in h.headers.items()], "body_len": n,
               "body_sha256": sha, "conn": h.conn_id}
        with self.lock:
            self.seen.append(rec)
        return rec

    def note_download(self, sent, size):
        with self.lock:
            self.downloads.append([sent, size])

    def process_request(self, request, client_address):
        with self.lock:
            self._socks.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.lock:
            self._socks.discard(request)
            self.closed += 1
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        import sys
        e = sys.exc_info()[1]
        if not isinstance(e, (ConnectionError, BrokenPipeError, socket.timeout)):
            self.errors.append(repr(e))

    # -- queries
    def find(self, path_part):
        """Completed requests whose path contains path_part."""
        with self.lock:
            return [r for r in self.seen if path_part in r["path"]]

    def lines_with(self, marker):
        m = marker.encode() if isinstance(marker, str) else marker
        with self.lock:
            return [l for l in self.lines if m in l]

    def summary(self):
        with self.lock:
            return (f"\n--- backend {self.name} {self.addr}: accepted {self.accepted} connections, "
                    f"{len(self.seen)} requests; last request lines: {self.lines[-5:]}; "
                    f"errors: {self.errors[-3:]}; refused for Host: {self.bad_host[-3:]}")

    def close(self):
        self.shutdown()
        self.server_close()
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def header_values(rec, name):
    """All values of header name (case-insensitive) in a recorded request."""
    return [v for k, v in rec["headers"] if k.lower() == name.lower()]


# ------------------------------------------------------------ raw servers --

def _read_head(conn, buf):
    """Reads from conn until buf holds a whole head. Returns (head, rest) or
    (None, buf) at EOF."""
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d:
            return None, buf
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _content_length(head):
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    return int(m.group(1)) if m else 0


def raw_http_server(respond, name="raw-http"):
    """A TcpServer that reads request heads (and Content-Length bodies) and
    calls respond(server, conn, head, body, index) for each, index counting
    the requests of this connection from 0. respond writes what it likes and
    returns True to read the next request on the connection, False to close.
    server.heads collects every head."""
    def handler(server, conn):
        buf = b""
        index = 0
        while True:
            head, buf = _read_head(conn, buf)
            if head is None:
                return
            with server._lock:
                server.heads.append(head)
            n = _content_length(head)
            while len(buf) < n:
                d = conn.recv(65536)
                if not d:
                    return
                buf += d
            body, buf = buf[:n], buf[n:]
            if not respond(server, conn, head, body, index):
                return
            index += 1
    s = backends.TcpServer(handler, name)
    s.heads = []
    return s


def fast_server(body=b"ok\n"):
    """Answers every request head with a fixed 200 (keep-alive), pipelined
    heads in order. GET only. Counts requests in server.requests."""
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body)

    def handler(server, conn):
        buf = b""
        while True:
            d = conn.recv(65536)
            if not d:
                return
            buf += d
            n = buf.count(b"\r\n\r\n")
            if n:
                buf = buf[buf.rfind(b"\r\n\r\n") + 4:]
                with server._lock:
                    server.requests += n
                conn.sendall(resp * n)
    s = backends.TcpServer(handler, "fast")
    s.requests = 0
    return s


def silent_server():
    """Accepts, reads the requests, never answers."""
    def handler(server, conn):
        while conn.recv(65536):
            pass
    return backends.TcpServer(handler, "silent")


class HttpBackends:
    """Collects the backends of a test or module and closes them all."""

    def __init__(self):
        self.servers = []

    def _add(self, s):
        self.servers.append(s)
        return s

    def http(self, name="http-backend"):
        return self._add(HttpBackend(name))

    def raw(self, respond, name="raw-http"):
        return self._add(raw_http_server(respond, name))

    def fast(self, body=b"ok\n"):
        return self._add(fast_server(body))

    def silent(self):
        return self._add(silent_server())

    def close(self):
        for s in self.servers:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass


# ----------------------------------------------------------------- config --

def http_listener(name, port, backend, pki, **extra):
    """An http-mode listeners: item offering h2 and http/1.1, serving
    example.test and api.example.test."""
    extra.setdefault("alpn", ["h2", "http/1.1"])
    return listener(name, port, backend, pki, ["example.test", "api.example.test"],
                    mode="http", **extra)


class Site:
    """What a postern fixture hands its tests: the postern (p), its backend
    (be, or None) and port, and whatever else is named (ports=..., ...).
    ctx(extra) ends every assertion message: extra, then the backend's
    summary (when there is a backend) and postern's config and log."""

    def __init__(self, p, be=None, port=None, **more):
        self.p, self.be, self.port = p, be, port
        vars(self).update(more)

    def ctx(self, extra=""):
        summary = self.be.summary() if self.be is not None else ""
        return f"{extra}{summary}{self.p.context()}"


def http_site(start, be, pki, name):
    """Starts a postern (start: the start_postern or module_postern fixture)
    with one http-mode listener called name, on a free port, in front of the
    backend be. Returns its Site."""
    port = free_port()
    return Site(start(config([http_listener(name, port, be.addr, pki)]), [port]), be, port)


def small_asan_quarantine(monkeypatch):
    """Cuts ASan's quarantine to 8 MiB for the postern started next, so that
    freed memory is reused rather than held back and RSS shows what postern
    really keeps."""
    monkeypatch.setenv("ASAN_OPTIONS",
                       os.environ.get("ASAN_OPTIONS", "detect_leaks=1") + ":quarantine_size_mb=8")


# ------------------------------------------------------------------- curl --

class CurlResult:
    def __init__(self, cmd, rc, status, headers, body, stderr, version, elapsed):
        self.cmd = cmd
        self.rc = rc
        self.status = status      # final status, None when there was no response
        self.headers = headers    # [(name, value)] of the final response, as received
        self.body = body          # bytes
        self.stderr = stderr
        self.version = version    # "2" or "1.1" (curl's %{http_version})
        self.elapsed = elapsed

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def __str__(self):
        return (f"$ {' '.join(self.cmd)}\n  rc={self.rc} status={self.status} "
                f"http_version={self.version} {self.elapsed:.2f}s\n  headers={self.headers}\n"
                f"  body[:300]={self.body[:300]!r}\n  stderr={self.stderr.strip()[-500:]!r}")


def curl_http(pki, port, path="/", *args, http="2", name="example.test", max_time=10,
              timeout=None):
    """One curl request to https://name:port/path through postern (resolved
    to 127.0.0.1, verified against the test root). http: "2" (--http2,
    negotiated by ALPN) or "1.1". Returns a CurlResult."""
    url = f"https://{name}:{port}{path}"
    with tempfile.NamedTemporaryFile(prefix="curlhdr") as hf:
        cmd = ["curl", "-sS", "--max-time", str(max_time), "--cacert", str(pki.root),
               "--resolve", f"{name}:{port}:{HOST}", "--http2" if http == "2" else "--http1.1",
               "-D", hf.name, "-w", "\n%{http_version}", *map(str, args), url]
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout or max_time + 10, stdin=subprocess.DEVNULL)
        elapsed = time.monotonic() - t0
        raw_headers = open(hf.name, "rb").read().decode(errors="replace")
    out = p.stdout
    body, _, version = out.rpartition(b"\n")
    status, headers = None, []
    # The dump holds every response head (1xx included); keep the last one.
    blocks = [b for b in re.split(r"\r?\n\r?\n", raw_headers) if b.strip()]
    if blocks:
        lines = blocks[-1].splitlines()
        m = re.match(r"HTTP/[\d.]+ (\d{3})", lines[0])
        status = int(m.group(1)) if m else None
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.append((k.strip(), v.strip()))
    return CurlResult(cmd, p.returncode, status, headers, body, p.stderr.decode(errors="replace"),
                      version.decode(errors="replace").strip(), elapsed)


# ------------------------------------------------------------ HTTP/1.1 client --

class Closed(Exception):
    """The server closed the connection; .data holds what came before."""

    def __init__(self, msg, data=b""):
        super().__init__(msg)
        self.data = data


class H1Response:
    def __init__(self, status, reason, headers, body, chunked, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] as received
        self.body = body
        self.chunked = chunked
        self.raw_head = raw_head

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.headers} body[:200]={self.body[:200]!r}>"


class H1Conn:
    """A raw HTTP/1.1 connection over TLS (ALPN http/1.1 unless told)."""

    def __init__(self, port, pki, sni="example.test", alpn=("http/1.1",), timeout=10):
        ctx = client_context(pki, alpn=list(alpn) if alpn else None)
        self.sock = connect_tls(port, sni, ctx, timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            d = self.sock.recv(262144)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
            d = b""
        if not d:
            raise Closed("connection closed", bytes(self.buf))
        self.buf += d

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            self._fill()

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        i = self.buf.find(b"\r\n\r\n")
        raw = bytes(self.buf[:i + 4])
        del self.buf[:i + 4]
        lines = raw[:-4].split(b"\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ?(.*)", lines[0])
        if not m:
            raise AssertionError(f"bad status line {lines[0]!r} in {raw!r}")
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers.append((k.decode(errors="replace"), v.strip().decode(errors="replace")))
        return int(m.group(1)), m.group(2).decode(errors="replace"), headers, raw

    def read_response(self, method="GET"):
        """Reads one response (a 1xx one alone). Raises Closed when the
        connection ends first, with .data the bytes of the cut response."""
        status, reason, headers, raw = self.read_head()
        get = lambda n: [v for k, v in headers if k.lower() == n]  # noqa: E731
        te = ",".join(get("transfer-encoding")).lower()
        cl = get("content-length")
        body = bytearray()
        chunked = False
        try:
            if 100 <= status < 200 or status in (204, 304) or method == "HEAD":
                pass
            elif "chunked" in te:
                chunked = True
                while True:
                    size = int(self._line().split(b";")[0], 16)
                    if size == 0:
                        while self._line():
                            pass
                        break
                    body += self._take(size)
                    if self._take(2) != b"\r\n":
                        raise AssertionError("chunk data not followed by CRLF")
            elif cl:
                body += self._take(int(cl[0]))
            else:
                while True:
                    try:
                        self._fill()
                    except Closed:
                        body += self.buf
                        self.buf.clear()
                        break
        except Closed:
            raise Closed(f"connection closed inside the body of a {status} response "
                         f"(got {len(body)} body bytes; head {raw!r})", bytes(body)) from None
        return H1Response(status, reason, headers, bytes(body), chunked, raw)

    def request(self, method, path, headers=(), body=b"", host="example.test"):
        """Sends one request (Content-Length framing when body) and reads the
        response."""
        self.send(build_request(method, path, headers, body, host))
        return self.read_response(method)

    def read_until_close(self, timeout=5):
        """Reads until the server closes. Returns (data, how): how is "closed"
        or "timeout"."""
        self.sock.settimeout(timeout)
        data = bytes(self.buf)
        self.buf.clear()
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return data, "closed"
                data += d
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
            return data, "closed"
        except ssl.SSLError as e:
            return data, f"closed ({e})"
        except socket.timeout:
            return data, "timeout"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def build_request(method, path, headers=(), body=b"", host="example.test"):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body or method in ("POST", "PUT"):
        if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ------------------------------------------------------------ HTTP/2 client --

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
FRAME_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
               "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
          "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
          "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY",
          "HTTP_1_1_REQUIRED"]
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = range(1, 7)


def err_name(code):
    return ERRORS[code] if code is not None and 0 <= code < len(ERRORS) else f"0x{code:x}"


class Frame:
    def __init__(self, ftype, flags, sid, payload):
        self.type = ftype
        self.flags = flags
        self.sid = sid
        self.payload = payload
        self.headers = None  # HEADERS: decoded [(name bytes, value bytes)]

    @property
    def error_code(self):
        if self.type == RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0]
        if self.type == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        return None

    @property
    def last_sid(self):
        return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF

    def __repr__(self):
        name = FRAME_NAMES[self.type] if self.type < len(FRAME_NAMES) else str(self.type)
        extra = ""
        if self.type in (RST_STREAM, GOAWAY):
            extra = f" {err_name(self.error_code)}"
            if self.type == GOAWAY:
                extra += f" last_stream={self.last_sid} debug={self.payload[8:60]!r}"
        elif self.type == HEADERS:
            extra = f" {self.headers}"
        elif self.type == DATA:
            extra = f" len={len(self.payload)}"
        return f"<{name} sid={self.sid} flags=0x{self.flags:x}{extra}>"


class H2Stream:
    def __init__(self, sid):
        self.sid = sid
        self.headers = []     # [(name, value)] of the final response (bytes)
        self.interim = []     # 1xx heads
        self.trailers = []
        self.body = bytearray()
        self.ended = False    # END_STREAM received
        self.reset = None     # RST_STREAM error code
        self.data_frames = []  # payload lengths

    @property
    def status(self):
        for k, v in self.headers:
            if k == b":status":
                return int(v)
        return None

    def header(self, name):
        n = name.encode() if isinstance(name, str) else name
        for k, v in self.headers:
            if k == n:
                return v.decode()
        return None

    @property
    def done(self):
        return self.ended or self.reset is not None

    def __repr__(self):
        return (f"<stream {self.sid} status={self.status} ended={self.ended} "
                f"reset={err_name(self.reset) if self.reset is not None else None} "
                f"headers={self.headers} body[:200]={bytes(self.body[:200])!r} "
                f"({len(self.body)} bytes)>")


class H2Raw:
    """A raw HTTP/2 client over TLS with ALPN h2. It answers SETTINGS and
    PING, keeps the receive windows open when auto_window (off for the flow
    control probes), and logs every frame it reads (self.log)."""

    def __init__(self, port, pki, settings=None, sni="example.test", timeout=10, auto_window=True,
                 authority=None):
        ctx = client_context(pki, alpn=["h2"])
        self.sock = connect_tls(port, sni, ctx, timeout=timeout)
        self.port = port
        self.alpn = self.sock.selected_alpn_protocol()
        if self.alpn != "h2":
            self.sock.close()
            raise AssertionError(f"ALPN h2 not negotiated with postern (got {self.alpn!r})")
        self.authority = authority or f"{sni}:{port}"
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_header_list_size = 1 << 24
        self.auto_window = auto_window
        self.rbuf = bytearray()
        self.streams = {}
        self.goaway = None
        self.server_settings = {}
        self.settings_acked = False
        self.eof = False
        self.log = []
        self.next_sid = 1
        self.send_raw(PREFACE + self.frame(SETTINGS, 0, 0, self.settings_payload(settings or {})))

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # ---- writing
    @staticmethod
    def frame(ftype, flags, sid, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
            struct.pack(">I", sid) + payload

    @staticmethod
    def settings_payload(settings):
        return b"".join(struct.pack(">HI", k, v) for k, v in settings.items())

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, ftype, flags, sid, payload=b""):
        self.send_raw(self.frame(ftype, flags, sid, payload))

    def new_sid(self):
        sid = self.next_sid
        self.next_sid += 2
        return sid

    def header_block(self, method="GET", path="/", headers=(), authority=None, scheme="https"):
        hs = [(":method", method), (":scheme", scheme),
              (":authority", authority or self.authority), (":path", path)]
        hs += [(k.lower() if isinstance(k, str) else k, v) for k, v in headers]
        return self.enc.encode(hs)

    def headers_frame(self, sid, method="GET", path="/", headers=(), end_stream=True,
                      authority=None):
        block = self.header_block(method, path, headers, authority)
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return self.frame(HEADERS, flags, sid, block)

    def request(self, method="GET", path="/", headers=(), body=None, sid=None, end_stream=None,
                authority=None):
        """Opens a stream (sid: next client id unless given) and sends the
        request; body bytes go in DATA frames of at most 16 KiB. Returns the
        stream id."""
        if sid is None:
            sid = self.new_sid()
        else:
            self.next_sid = max(self.next_sid, sid + 2)
        self.streams.setdefault(sid, H2Stream(sid))
        has_body = bool(body)
        es = True if end_stream is None else end_stream
        out = self.headers_frame(sid, method, path, headers, end_stream=es and not has_body,
                                 authority=authority)
        if has_body:
            for i in range(0, len(body), 16384):
                last = i + 16384 >= len(body)
                out += self.frame(DATA, END_STREAM if (last and es) else 0, sid,
                                  body[i:i + 16384])
        self.send_raw(out)
        return sid

    def rst(self, sid, code=8):
        self.send_frame(RST_STREAM, 0, sid, struct.pack(">I", code))

    def window_update(self, sid, inc):
        self.send_frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))

    def ping(self, data=b"12345678"):
        self.send_frame(PING, 0, 0, data)

    # ---- reading
    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(262144)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
            d = b""
        except ssl.SSLError as e:
            if "APPLICATION_DATA_AFTER_CLOSE_NOTIFY" in str(e):
                d = b""
            else:
                raise
        if not d:
            self.eof = True
            return False
        self.rbuf += d
        return True

    def _raw_frame(self, deadline):
        while True:
            if len(self.rbuf) >= 9:
                length = int.from_bytes(self.rbuf[:3], "big")
                if len(self.rbuf) >= 9 + length:
                    ftype, flags = self.rbuf[3], self.rbuf[4]
                    sid = struct.unpack(">I", self.rbuf[5:9])[0] & 0x7FFFFFFF
                    payload = bytes(self.rbuf[9:9 + length])
                    del self.rbuf[:9 + length]
                    return Frame(ftype, flags, sid, payload)
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete frame in time")
            try:
                self._fill(left)
            except socket.timeout:
                raise socket.timeout("no complete frame in time") from None

    def read_frame(self, timeout=10):
        """The next frame (CONTINUATIONs folded into their HEADERS, header
        blocks decoded), or None at EOF. Raises socket.timeout."""
        deadline = time.monotonic() + timeout
        f = self._raw_frame(deadline)
        if f is None:
            return None
        if f.type in (HEADERS, PUSH_PROMISE):
            p = f.payload
            pad = 0
            if f.flags & PADDED:
                pad = p[0]
                p = p[1:]
            if f.type == HEADERS and f.flags & PRIORITY_FLAG:
                p = p[5:]
            if f.type == PUSH_PROMISE:
                p = p[4:]
            block = p[:len(p) - pad] if pad else p
            while not f.flags & END_HEADERS:
                c = self._raw_frame(deadline)
                if c is None:
                    break
                if c.type != CONTINUATION:
                    raise AssertionError(f"expected CONTINUATION, got {c!r}")
                block += c.payload
                f.flags |= c.flags & END_HEADERS
            f.headers = self.dec.decode(block, raw=True)
        self._on_frame(f)
        return f

    def _on_frame(self, f):
        self.log.append(f)
        if f.type == SETTINGS:
            if f.flags & ACK:
                self.settings_acked = True
            else:
                for i in range(0, len(f.payload), 6):
                    k, v = struct.unpack(">HI", f.payload[i:i + 6])
                    self.server_settings[k] = v
                self.send_frame(SETTINGS, ACK, 0)
        elif f.type == PING and not f.flags & ACK:
            self.send_frame(PING, ACK, 0, f.payload)
        elif f.type == GOAWAY:
            self.goaway = f
        elif f.type in (HEADERS, DATA, RST_STREAM) and f.sid:
            st = self.streams.setdefault(f.sid, H2Stream(f.sid))
            if f.type == HEADERS:
                status = next((v for k, v in f.headers if k == b":status"), None)
                if status is not None and status.startswith(b"1"):
                    st.interim.append(f.headers)
                elif st.headers:
                    st.trailers = f.headers
                else:
                    st.headers = f.headers
            elif f.type == DATA:
                p = f.payload
                if f.flags & PADDED:
                    p = p[1:len(p) - p[0]]
                st.body += p
                st.data_frames.append(len(f.payload))
                if self.auto_window and f.payload:
                    self.send_raw(self.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(f.payload)))
                                  + self.frame(WINDOW_UPDATE, 0, f.sid,
                                               struct.pack(">I", len(f.payload))))
            else:
                st.reset = f.error_code
            if f.flags & END_STREAM and f.type in (HEADERS, DATA):
                st.ended = True

    def wait(self, pred, timeout=10):
        """Reads frames until pred() is true. Returns True, or False when the
        connection ended first; raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timeout after {timeout}s waiting; last frames: "
                                     f"{self.log[-8:]}")
            try:
                if self.read_frame(left) is None:
                    return pred()
            except socket.timeout:
                continue
        return True

    def response(self, sid, timeout=10):
        """Waits for stream sid to end (END_STREAM or RST_STREAM) and returns
        it; AssertionError on timeout or when the connection ends first."""
        st = self.streams.setdefault(sid, H2Stream(sid))
        if not self.wait(lambda: st.done, timeout):
            raise AssertionError(f"connection ended before stream {sid} did: {st!r}; "
                                 f"goaway={self.goaway!r}; last frames {self.log[-8:]}")
        return st

    def handshake(self, timeout=5):
        """Waits for the server's SETTINGS (already ACKed by _on_frame)."""
        self.wait(lambda: bool(self.server_settings) or any(
            f.type == SETTINGS for f in self.log), timeout)

    def drain(self, seconds):
        """Reads frames for about seconds (or until EOF); returns them."""
        start = len(self.log)
        deadline = time.monotonic() + seconds
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self.read_frame(left)
            except (socket.timeout, TimeoutError):
                break
        return self.log[start:]

    def wait_goaway_or_close(self, timeout=5):
        """Reads until GOAWAY or EOF; returns (goaway frame or None, eof)."""
        try:
            self.wait(lambda: self.goaway is not None or self.eof, timeout)
        except AssertionError:
            pass
        return self.goaway, self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ------------------------------------------------------------------- RSS --

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples a process's VmRSS every interval seconds in a thread."""

    def __init__(self, pid, interval=0.1):
        self.pid = pid
        self.base = rss_kib(pid)
        self.peak = self.base
        self.samples = 0
        self._stop = threading.Event()
        self._interval = interval
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
                self.samples += 1
            except OSError:
                return
            self._stop.wait(self._interval)

    def __exit__(self, *a):
        self._stop.set()
        self._t.join(2)

    @property
    def growth_mib(self):
        return (self.peak - self.base) / 1024

    def __str__(self):
        return (f"RSS base {self.base / 1024:.1f} MiB, peak {self.peak / 1024:.1f} MiB, "
                f"growth {self.growth_mib:.1f} MiB over {self.samples} samples")
