"""Client-side helpers for the integration tests: config writing, openssl
s_client and curl wrappers, and Python ssl clients (blocking, non-blocking
bulk echo, and a memory-BIO client that can send close_notify and keep
reading)."""

import hashlib
import json
import random
import re
import select
import socket
import ssl
import subprocess
import time

HOST = "127.0.0.1"

# ---------------------------------------------------------------- config --

_PLAIN = re.compile(r"^[A-Za-z0-9_/][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if v is None:
        return "null"
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _YAML_WORDS and not re.match(r"^[0-9.]+$", s):
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Emits block-style YAML for dicts and lists of dicts; lists of scalars
    become flow sequences ([a, b]). Enough for postern configs, and readable
    when a failing test prints its config."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                out.append(f"{pad}{k}:")
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
                out.append(f"{pad}{k}:")
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                out.append(f"{pad}{k}: [{', '.join(_scalar(x) for x in v)}]")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            body = to_yaml(item, indent + 2).split("\n")
            out.append(f"{pad}- {body[0].lstrip()}")
            out.extend(body[1:])
    else:
        raise TypeError(f"to_yaml: top level must be a dict or list, not {type(obj)}")
    return "\n".join(line for line in out if line != "")


def tls_block(pki, names=("example.test",), **extra):
    """The tls: mapping serving the given PKI leaves (first one is the default
    unless extra says otherwise), trusting only the test root."""
    block = {"versions": ["tls1.3"]}
    block["certificates"] = [{"cert": str(pki.chain(n)), "key": str(pki.key(n))} for n in names]
    block["ca_file"] = str(pki.root)
    block.update(extra)
    return block


def listener(name, port, backend, pki=None, names=("example.test",), tls=None, **extra):
    """One listeners: item in tcp mode. tls overrides the whole tls: mapping."""
    item = {"name": name, "listen": f"{HOST}:{port}", "mode": "tcp"}
    item["tls"] = tls if tls is not None else tls_block(pki, names)
    item["backend"] = backend
    item.update(extra)
    return item


def config(listeners, **top):
    """A whole config: workers 2, log_level info, shutdown_timeout 10s unless
    top overrides them."""
    doc = {"workers": 2, "log_level": "info", "shutdown_timeout": "10s"}
    doc.update(top)
    doc["listeners"] = listeners
    return to_yaml(doc) + "\n"


def free_port():
    """A port that was free a moment ago (bind to 0, read, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------- s_client --

PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----", re.S)


class SClient:
    """Result of one openssl s_client run: .rc, .out (stdout+stderr)."""

    def __init__(self, args, rc, out):
        self.args = args
        self.rc = rc
        self.out = out

    @property
    def protocol(self):
        m = re.search(r"Protocol\s*:\s*(\S+)", self.out) or re.search(r"New, (TLSv1\.\d)", self.out)
        return m.group(1) if m else None

    @property
    def certs(self):
        """PEM certificates the server sent, leaf first (needs -showcerts)."""
        return PEM_RE.findall(self.out)

    @property
    def alpn(self):
        if "No ALPN negotiated" in self.out:
            return None
        m = re.search(r"ALPN protocol: (\S+)", self.out)
        return m.group(1) if m else "<no ALPN line in output>"

    @property
    def handshake_done(self):
        return self.protocol is not None and "Cipher is (NONE)" not in self.out

    def __str__(self):
        return f"$ {' '.join(self.args)}\n(rc={self.rc})\n{self.out}"


def s_client(port, *args, servername=None, stdin=b"", timeout=15, env=None):
    """Runs openssl s_client against 127.0.0.1:port. servername None sends no
    SNI (-noservername). stdin is sent, then EOF makes s_client close."""
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{port}"]
    cmd += ["-servername", servername] if servername is not None else ["-noservername"]
    cmd += list(args)
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, env=env)
    return SClient(cmd, p.returncode, p.stdout.decode(errors="replace"))


def pem_body(pem):
    """The base64 body of a PEM block, for comparing certificates."""
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))


def first_pem(path):
    return pem_body(PEM_RE.findall(open(path).read())[0])


# ---------------------------------------------------------- Python ssl --

def client_context(pki=None, alpn=None, verify=True, max_version=None):
    """A TLS client context. verify: trust only the test root and check the
    host name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile=str(pki.root))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def connect_tls(port, sni, ctx, timeout=10):
    """A blocking TLS connection to 127.0.0.1:port with sni (None: no SNI,
    which needs a context without check_hostname)."""
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni, suppress_ragged_eofs=False)
    except BaseException:
        raw.close()
        raise


def replay_raw(port, recorded):
    """Sends recorded bytes (a client's whole first flight, 0-RTT data
    included) byte for byte on a new connection, and reads until the server
    closes or goes quiet for a second: a replay as an attacker makes it."""
    with socket.create_connection((HOST, port), timeout=5) as raw:
        raw.sendall(recorded)
        raw.settimeout(1)
        try:
            while raw.recv(65536):
                pass
        except OSError:
            pass


def recv_exact(sock, n, timeout=10):
    """Reads exactly n bytes or raises AssertionError with what came."""
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes: {buf[:200]!r}")
        buf += data
    return buf


def recv_until_close(sock, timeout=10):
    """Reads until the peer closes. Returns (data, how): how is "close_notify"
    for a clean TLS close, "eof" for a TCP close without close_notify,
    "reset" for a connection reset, "timeout" when nothing ended it."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                return data, "close_notify"
            data += d
    except ssl.SSLZeroReturnError:
        return data, "close_notify"
    except ssl.SSLEOFError:
        return data, "eof"
    except ConnectionResetError:
        return data, "reset"
    except ssl.SSLError as e:
        return data, f"ssl error: {e}"
    except socket.timeout:
        return data, "timeout"


def echo_bulk(sock, total, seed=1, chunk=256 * 1024, timeout=20, pace=None, on_progress=None):
    """Sends total pseudo-random bytes through an echoing connection while
    reading the echo, in one thread with a non-blocking socket (an SSL
    object must not be used from two threads at once). pace: seconds to wait
    between chunks (throttling). on_progress(sent) is called after each chunk
    is handed to TLS. Returns (sha_sent, sha_received, received)."""
    rng = random.Random(seed)
    h_out, h_in = hashlib.sha256(), hashlib.sha256()
    sent = received = 0
    pending = memoryview(b"")
    next_chunk_at = 0.0
    last_progress = time.monotonic()
    sock.setblocking(False)
    try:
        while received < total:
            now = time.monotonic()
            if not pending and sent < total and now >= next_chunk_at:
                data = rng.randbytes(min(chunk, total - sent))
                h_out.update(data)
                pending = memoryview(data)
                if pace:
                    next_chunk_at = now + pace
            wait_w = [sock] if pending else []
            wait_for = 0.05 if (pace and sent < total) else 1.0
            select.select([sock], wait_w, [], wait_for)
            while pending:
                piece = pending[:65536]
                try:
                    n = sock.send(piece)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    break
                pending = pending[n:]
                sent += n
                last_progress = time.monotonic()
                if not pending and on_progress:
                    on_progress(sent)
            while True:
                try:
                    d = sock.recv(262144)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                if not d:
                    raise AssertionError(
                        f"connection closed after {received} of {total} echoed bytes "
                        f"({sent} sent)")
                h_in.update(d)
                received += len(d)
                last_progress = time.monotonic()
            if time.monotonic() - last_progress > timeout:
                raise AssertionError(
                    f"no progress for {timeout}s: sent {sent}, received {received} of {total}")
    finally:
        sock.setblocking(True)
    return h_out.hexdigest(), h_in.hexdigest(), received


class MemTls:
    """A TLS client over memory BIOs, so a test can send close_notify and
    still read what comes back (TLS half-close, RFC 8446 6.1)."""

    def __init__(self, port, sni, ctx, timeout=10, session=None):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=False, server_hostname=sni,
                                session=session)

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if data:
            self.inc.write(data)
        else:
            self.inc.write_eof()
        return bool(data)

    def handshake(self, first=None):
        """Completes the handshake; first (bytes), when given, is written
        before the client's Finished leaves, so that both go in one send, as
        browsers and h2load send their first request."""
        while True:
            try:
                self.obj.do_handshake()
                if first:
                    self.obj.write(first)
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise AssertionError("EOF during the TLS handshake")

    def send(self, data):
        """Sends data whole. Small amounts only: it does not read meanwhile."""
        self.obj.write(data)
        self._flush()

    def send_close_notify(self):
        """Sends close_notify without waiting for the peer's."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def read_until_close(self):
        """Reads until the peer's close_notify or EOF. Returns (data, how) with
        how "close_notify" or "eof"."""
        data = b""
        while True:
            try:
                d = self.obj.read(65536)
                if not d:
                    return data, "close_notify"
                data += d
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return data, "close_notify"
            except ssl.SSLEOFError:
                return data, "eof"
            if self.inc.eof:
                return data, "eof"
            try:
                # On EOF the memory BIO is marked so, and the next read says
                # whether a close_notify came first.
                self._fill()
            except socket.timeout:
                return data, "timeout"
            except ConnectionResetError:
                return data, "reset"

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- h2load --

def h2load_counts(out):
    """{total, started, done, succeeded, failed, errored, timeout} from h2load's
    'requests:' line, and the status code counts; (None, None) without that
    line."""
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if not m:
        return None, None
    keys = ["total", "started", "done", "succeeded", "failed", "errored", "timeout"]
    req = dict(zip(keys, map(int, m.groups())))
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    codes = dict(zip(["2xx", "3xx", "4xx", "5xx"], map(int, s.groups()))) if s else None
    return req, codes


# ------------------------------------------------------------------ curl --

def curl(url, *args, timeout=15):
    """Runs curl -sS. Returns (rc, stdout text, stderr text)."""
    cmd = ["curl", "-sS", "--max-time", "10", *args, url]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
