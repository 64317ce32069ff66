"""Session resumption and 0-RTT (issue 4): TLS 1.3 tickets sealed with
postern's own keys (in memory, or a ticket_keys file shared by a fleet),
early data rejected by default, accepted on request (held until the
handshake completes in tcp mode, or forwarded at once), and the strike
register that keeps a recorded ClientHello with early data from delivering
its data twice.

openssl s_client does the TLS 1.3 client side (-sess_out/-sess_in,
-early_data); a small TCP proxy between it and postern records the client's
bytes (to replay them raw) or holds back the client's second flight (its
Finished), so that a test can look at the backend while the handshake is
provably not complete."""

import base64
import re
import socket
import subprocess
import threading
import time

import pytest

from backends import TcpServer
from clients import (HOST, MemTls, client_context, config, free_port, listener, replay_raw,
                     tls_block)

REQ = b"GET /zero-rtt HTTP/1.1\r\nHost: example.test\r\n\r\n"


# ------------------------------------------------------------- helpers --

def line_server(answer=b"OK\n"):
    """A backend that records every byte of every connection (.conns: one
    bytearray per connection, .times: when each chunk came) and answers the
    first complete line or request head with answer, then closes."""
    srv = None

    def handler(server, conn):
        rec = bytearray()
        with server._lock:
            server.conns.append(rec)
        while True:
            data = conn.recv(65536)
            if not data:
                return
            rec += data
            server.times.append(time.monotonic())
            if b"\n" in rec:
                conn.sendall(answer)
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(2)
                try:
                    while True:
                        more = conn.recv(65536)
                        if not more:
                            return
                        rec += more
                except OSError:
                    return

    srv = TcpServer(handler, "line")
    srv.conns = []
    srv.times = []
    return srv


@pytest.fixture
def line_backend():
    srv = line_server()
    yield srv
    srv.close()


class Proxy:
    """A one-connection-at-a-time TCP proxy to 127.0.0.1:upstream that
    records what the client sends. The client's first flight is what it sent
    before any server byte came back (ClientHello, then 0-RTT early data);
    with hold=True everything after it (EndOfEarlyData and the client's
    Finished) is held until release(), so the handshake cannot complete."""

    def __init__(self, upstream, hold=False):
        self.upstream = upstream
        self.first_flight = bytearray()
        self.client_bytes = bytearray()
        self.held_bytes = 0
        self.server_bytes = 0  # bytes postern sent to the client so far
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def release(self):
        self._released.set()

    def release_and_read(self, client):
        """Lets the held Finished through and returns what the s_client
        process printed by its end."""
        self.release()
        out, _ = client.communicate(timeout=15)
        return out.decode(errors="replace")

    def assert_half_rtt(self, p):
        """The 32 KiB answer reached the client while its Finished is still
        held: it went out as 0.5-RTT data (RFC 8446 2.3)."""
        assert wait_for(lambda: self.server_bytes > 32768, 5), \
            "the answer waited for the client's Finished (no 0.5-RTT data)" + p.context()

    def _accept(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        u = socket.create_connection((HOST, self.upstream))
        server_seen = threading.Event()

        def s2c():
            try:
                while True:
                    d = u.recv(65536)
                    if not d:
                        break
                    server_seen.set()
                    self.server_bytes += len(d)
                    c.sendall(d)
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=s2c, daemon=True).start()
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                self.client_bytes += d
                if not server_seen.is_set():
                    self.first_flight += d
                elif not self._released.is_set():
                    self.held_bytes += len(d)
                    self._released.wait(20)
                u.sendall(d)
            u.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self._released.set()
        self.sock.close()


def s_client(port, *args, stdin=b"", servername="example.test", timeout=20):
    """openssl s_client to port with -ign_eof (it reads until the server
    closes, so the ticket sent after the handshake is always seen). Returns
    the text of stdout+stderr."""
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", servername,
           "-ign_eof", *map(str, args)]
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.stdout.decode(errors="replace")


def s_client_bg(port, *args, servername="example.test"):
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", servername,
           "-ign_eof", *map(str, args)]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def reused(out):
    return "Reused, TLSv1.3" in out


def new_session(out):
    return "New, TLSv1.3" in out


def early_status(out):
    m = re.search(r"Early data was (accepted|rejected|not sent)", out)
    return m.group(1) if m else None


def max_early_data(sess_path):
    out = subprocess.run(["openssl", "sess_id", "-in", str(sess_path), "-noout", "-text"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout
    m = re.search(rb"Max Early Data: (\d+)", out)
    return int(m.group(1)) if m else None


def get_ticket(port, sess_path, pki, stdin=b"hello\n"):
    """A full handshake that saves its session (with the ticket postern sent
    after the handshake) to sess_path."""
    out = s_client(port, "-CAfile", pki.root, "-sess_out", sess_path, stdin=stdin)
    assert new_session(out), out
    assert sess_path.exists() and sess_path.stat().st_size > 0, out
    return out


def wait_for(pred, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def deliveries(srv, payload):
    """How many times payload reached the backend, over all connections."""
    return sum(bytes(c).count(payload) for c in list(srv.conns))


def counters(p):
    """The counters postern logged when it stopped, as a dict."""
    m = re.search(r"counters: (.*)", p.stderr())
    assert m, "no counters line" + p.context()
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def new_key(postern_bin):
    p = subprocess.run([postern_bin, "ticket-key"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def key_file(path, keys):
    path.write_text("# postern ticket keys, newest last\n" + "".join(k + "\n" for k in keys))
    path.chmod(0o600)
    return path


def tls(pki, names=("example.test",), **extra):
    return tls_block(pki, names, **extra)


# ---------------------------------------------------------------- tests --

def test_ticket_key_command(postern_bin):
    a, b = new_key(postern_bin), new_key(postern_bin)
    assert a != b
    for k in (a, b):
        assert len(k) == 108 and re.fullmatch(r"[A-Za-z0-9+/]+=*", k), k
        assert len(base64.b64decode(k, validate=True)) == 80


@pytest.mark.parametrize("cert", ["example.test", "example.test-rsa"])
def test_resume_tls13(pki, start_postern, line_backend, tmp_path, cert):
    port = free_port()
    p = start_postern(config([listener("l", port, line_backend.addr, pki, names=(cert,))]),
                      [port])
    sess = tmp_path / "sess.pem"
    out = get_ticket(port, sess, pki)
    assert "ticket lifetime hint: 21600 (seconds)" in out, out  # ticket_lifetime: 6h
    out = s_client(port, "-CAfile", pki.root, "-sess_in", sess, stdin=b"again\n")
    assert reused(out), out + p.context()
    assert "OK" in out
    # The default policy: tickets do not offer 0-RTT.
    assert max_early_data(sess) == 0


def test_ticket_lifetime(pki, start_postern, line_backend, tmp_path, postern_bin):
    """ticket_lifetime is both the hint clients get and the age past which
    postern refuses a ticket. A client drops a ticket older than its hint by
    itself, so the refusal is shown with two posterns sharing keys: the
    ticket comes from one with 1h, and is used 3 s later at one with 2s."""
    keys = key_file(tmp_path / "tickets.keys", [new_key(postern_bin)])
    long_port, short_port = free_port(), free_port()
    start_postern(config([listener("long", long_port, line_backend.addr,
                                   tls=tls(pki, ticket_keys=str(keys), ticket_lifetime="1h"))]),
                  [long_port])
    p = start_postern(config([listener("short", short_port, line_backend.addr,
                                       tls=tls(pki, ticket_keys=str(keys), ticket_lifetime="2s"))]),
                      [short_port])
    out = get_ticket(short_port, tmp_path / "short.pem", pki)
    assert "ticket lifetime hint: 2 (seconds)" in out, out
    sess = tmp_path / "long.pem"
    out = get_ticket(long_port, sess, pki)
    assert "ticket lifetime hint: 3600 (seconds)" in out, out
    assert reused(s_client(short_port, "-CAfile", pki.root, "-sess_in", sess, stdin=b"x\n"))
    time.sleep(3.2)
    out = s_client(short_port, "-CAfile", pki.root, "-sess_in", sess, stdin=b"x\n")
    assert new_session(out), "a ticket older than ticket_lifetime resumed" + out + p.context()
    assert reused(s_client(long_port, "-CAfile", pki.root, "-sess_in", sess, stdin=b"x\n"))


def test_session_tickets_off(pki, start_postern, line_backend, tmp_path):
    port = free_port()
    p = start_postern(config([listener("l", port, line_backend.addr,
                                       tls=tls(pki, session_tickets=False))]), [port])
    sess = tmp_path / "sess.pem"
    out = s_client(port, "-CAfile", pki.root, "-sess_out", sess, stdin=b"x\n")
    assert new_session(out) and "OK" in out, out + p.context()
    # TLS 1.3 sessions are only saved from a ticket: none came.
    assert "New Session Ticket arrived" not in out and not sess.exists(), out


def test_default_policy_rejects_early_data(pki, start_postern, line_backend, tmp_path):
    """A client holding a ticket that offers 0-RTT (from a listener that
    accepts it: both listeners of this process share the in-memory keys)
    sends early data to a listener with the default policy: the handshake
    resumes, the early data is skipped and reported rejected, and the
    request the client sends again after the handshake reaches the backend
    once."""
    acc, rej = free_port(), free_port()
    p = start_postern(config([
        listener("acc", acc, line_backend.addr, tls=tls(pki, early_data="accept")),
        listener("rej", rej, line_backend.addr, pki),
    ]), [acc, rej])
    sess = tmp_path / "sess.pem"
    get_ticket(acc, sess, pki)
    assert max_early_data(sess) == 16384
    early = tmp_path / "req.txt"
    early.write_bytes(REQ)
    out = s_client(rej, "-CAfile", pki.root, "-sess_in", sess, "-early_data", early, stdin=REQ)
    assert reused(out), out + p.context()
    assert early_status(out) == "rejected", out
    assert "OK" in out
    assert wait_for(lambda: deliveries(line_backend, REQ) >= 1)
    time.sleep(0.2)
    assert deliveries(line_backend, REQ) == 1, line_backend.conns
    assert all(b"Early-Data" not in c for c in line_backend.conns)
    # A ticket made by the rejecting listener offers no early data at all.
    sess2 = tmp_path / "sess2.pem"
    get_ticket(rej, sess2, pki)
    assert max_early_data(sess2) == 0
    out = s_client(rej, "-CAfile", pki.root, "-sess_in", sess2, "-early_data", early, stdin=REQ)
    assert reused(out) and early_status(out) == "not sent", out


@pytest.mark.parametrize("mode", ["hold", "forward"])
def test_accept_early_data_tcp(pki, start_postern, request, tmp_path, mode):
    """early_data: accept. The proxy holds the client's second flight (its
    Finished): with tcp_early_data: hold the backend sees nothing until the
    handshake completes; with forward it gets the early data at once, and its
    answer (after which it closes) reaches the client as 0.5-RTT data, before
    the client's Finished: one round trip in all."""
    # An answer larger than postern's whole flight: its arrival before the
    # client's Finished cannot be mistaken for the handshake's bytes.
    big = line_server(answer=b"OK\n" + b"x" * 32768)
    request.addfinalizer(big.close)
    port = free_port()
    p = start_postern(config([listener("l", port, big.addr,
                                       tls=tls(pki, early_data="accept", tcp_early_data=mode))]),
                      [port])
    sess = tmp_path / "sess.pem"
    get_ticket(port, sess, pki, stdin=b"first\n")
    early = tmp_path / "req.txt"
    early.write_bytes(REQ)
    proxy = Proxy(port, hold=True)
    try:
        client = s_client_bg(proxy.port, "-CAfile", pki.root, "-sess_in", sess, "-early_data", early)
        assert wait_for(lambda: proxy.held_bytes > 0, 10), "the client never sent its Finished"
        if mode == "hold":
            time.sleep(0.5)
            assert deliveries(big, REQ) == 0, \
                "early data reached the backend before the handshake completed" + p.context()
            assert proxy.server_bytes < 32768
        else:
            assert wait_for(lambda: deliveries(big, REQ) == 1, 5), \
                "early data did not reach the backend before the handshake" + p.context()
            proxy.assert_half_rtt(p)
        out = proxy.release_and_read(client)
    finally:
        proxy.close()
    assert reused(out), out + p.context()
    assert early_status(out) == "accepted", out
    assert "OK" in out, out
    assert deliveries(big, REQ) == 1


def test_hello_retry_request_rejects_early_data(pki, start_postern, line_backend, tmp_path):
    """A ClientHello without a key share postern can use gets a
    HelloRetryRequest, and early data is then rejected (RFC 8446 4.2.10);
    the handshake still resumes and the request goes after it."""
    port = free_port()
    p = start_postern(config([listener("l", port, line_backend.addr,
                                       tls=tls(pki, early_data="accept"))]), [port])
    sess = tmp_path / "sess.pem"
    get_ticket(port, sess, pki, stdin=b"first\n")
    early = tmp_path / "req.txt"
    early.write_bytes(REQ)
    # X448 first: its key share is the only one sent; postern asks for X25519.
    out = s_client(port, "-CAfile", pki.root, "-sess_in", sess, "-early_data", early,
                   "-groups", "X448:X25519", stdin=REQ)
    assert reused(out) and early_status(out) == "rejected", out + p.context()
    assert "OK" in out
    assert wait_for(lambda: deliveries(line_backend, REQ) == 1)


def test_info_page_reports_early_data(pki, start_postern, tmp_path):
    port = free_port()
    p = start_postern(config([listener("info", port, "builtin:info", alpn=["http/1.1"],
                                       tls=tls(pki, early_data="accept"))]), [port])
    req = b"GET / HTTP/1.1\r\nHost: example.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    sess = tmp_path / "sess.pem"
    out = s_client(port, "-CAfile", pki.root, "-sess_out", sess, stdin=req)
    assert '"resumed":false' in out and '"early_data":"not sent"' in out, out
    early = tmp_path / "req.txt"
    early.write_bytes(req)
    out = s_client(port, "-CAfile", pki.root, "-sess_in", sess, "-early_data", early)
    assert early_status(out) == "accepted", out + p.context()
    assert '"resumed":true' in out and '"early_data":"accepted"' in out, out


def record_early_data(port, pki, tmp_path):
    """Gets a ticket from port, then resumes with REQ as 0-RTT early data
    through a recording Proxy. Returns (s_client's output, the client's
    first flight: the ClientHello and the early data, to replay)."""
    sess = tmp_path / "sess.pem"
    get_ticket(port, sess, pki, stdin=b"first\n")
    early = tmp_path / "req.txt"
    early.write_bytes(REQ)
    proxy = Proxy(port)
    try:
        out = s_client(proxy.port, "-CAfile", pki.root, "-sess_in", sess, "-early_data", early)
    finally:
        proxy.close()
    return out, bytes(proxy.first_flight)


@pytest.mark.parametrize("mode", ["hold", "forward"])
def test_replayed_client_hello_delivers_nothing_twice(pki, start_postern, line_backend, tmp_path,
                                                      mode):
    """The exact bytes of a recorded ClientHello with early data, sent again
    on a new TCP connection within the ticket age window, do not deliver the
    early data to the backend a second time (with forward, the dangerous
    mode, the first copy reached the backend before the handshake)."""
    port = free_port()
    p = start_postern(config([listener("l", port, line_backend.addr,
                                       tls=tls(pki, early_data="accept", tcp_early_data=mode))],
                             log_level="debug"), [port])
    out, recorded = record_early_data(port, pki, tmp_path)
    assert early_status(out) == "accepted", out + p.context()
    assert wait_for(lambda: deliveries(line_backend, REQ) == 1)
    assert recorded[:1] == b"\x16" and len(recorded) > 300, recorded[:20]
    conns_before = len(line_backend.conns)
    for _ in range(2):
        replay_raw(port, recorded)
    time.sleep(0.5)
    assert deliveries(line_backend, REQ) == 1, "a replay delivered the early data again" + p.context()
    if mode == "forward":
        assert len(line_backend.conns) == conns_before, "a replay reached the backend"
    assert "replayed ClientHello" in p.stderr()
    p.stop()
    assert counters(p).get("early_data_replayed") == 2, p.stderr()[-2000:]
    assert counters(p).get("early_data_accepted") == 1, p.stderr()[-2000:]


def test_replay_to_another_process_is_not_caught(pki, start_postern, line_backend, tmp_path,
                                                  postern_bin):
    """What the strike register cannot do (docs/config.md): it is per
    process, so a ClientHello recorded at one postern and replayed at another
    that shares its ticket keys has its early data accepted there once. This
    also shows that the bytes the replay test sends would be accepted if
    postern did not remember them."""
    keys = key_file(tmp_path / "tickets.keys", [new_key(postern_bin)])
    a, b = free_port(), free_port()
    t = tls(pki, early_data="accept", tcp_early_data="forward", ticket_keys=str(keys))
    pa = start_postern(config([listener("a", a, line_backend.addr, tls=t)]), [a])
    start_postern(config([listener("b", b, line_backend.addr, tls=t)]), [b])
    out, recorded = record_early_data(a, pki, tmp_path)
    assert early_status(out) == "accepted", out + pa.context()
    with socket.create_connection((HOST, b), timeout=5) as raw:
        raw.sendall(recorded)
        assert wait_for(lambda: deliveries(line_backend, REQ) == 2, 5)


def test_two_processes_share_ticket_keys(pki, start_postern, line_backend, tmp_path, postern_bin):
    keys = key_file(tmp_path / "tickets.keys", [new_key(postern_bin), new_key(postern_bin)])
    a, b = free_port(), free_port()
    t = tls(pki, ticket_keys=str(keys))
    pa = start_postern(config([listener("a", a, line_backend.addr, tls=t)]), [a])
    pb = start_postern(config([listener("b", b, line_backend.addr, tls=t)]), [b])
    sa, sb = tmp_path / "a.pem", tmp_path / "b.pem"
    get_ticket(a, sa, pki)
    get_ticket(b, sb, pki)
    out = s_client(b, "-CAfile", pki.root, "-sess_in", sa, stdin=b"x\n")
    assert reused(out), out + pb.context()
    out = s_client(a, "-CAfile", pki.root, "-sess_in", sb, stdin=b"x\n")
    assert reused(out), out + pa.context()


def test_key_rotation_in_file(pki, start_postern, line_backend, tmp_path, postern_bin):
    """A ticket under a key that is still in the file, but no longer the
    newest, resumes and the client gets a new ticket under the newest key; a
    ticket under a key that left the file gets a full handshake. Each step is
    a new postern process reading the file at start."""
    k1, k2 = new_key(postern_bin), new_key(postern_bin)
    keys = tmp_path / "tickets.keys"
    t = tls(pki, ticket_keys=str(keys))

    def serve(key_lines):
        key_file(keys, key_lines)
        port = free_port()
        return start_postern(config([listener("l", port, line_backend.addr, tls=t)]), [port]), port

    p1, port1 = serve([k1])
    s1 = tmp_path / "s1.pem"
    get_ticket(port1, s1, pki)
    p1.stop()

    p2, port2 = serve([k1, k2])  # k2 is newest now
    s2 = tmp_path / "s2.pem"
    out = s_client(port2, "-CAfile", pki.root, "-sess_in", s1, "-sess_out", s2, stdin=b"x\n")
    assert reused(out), out + p2.context()
    assert "Post-Handshake New Session Ticket arrived" in out
    p2.stop()

    p3, port3 = serve([k2])  # k1 left the file
    out = s_client(port3, "-CAfile", pki.root, "-sess_in", s1, stdin=b"x\n")
    assert new_session(out), "a ticket under a removed key resumed" + out + p3.context()
    out = s_client(port3, "-CAfile", pki.root, "-sess_in", s2, stdin=b"x\n")
    assert reused(out), "the ticket issued under the newest key did not resume" + out + p3.context()


def test_bad_key_file_is_a_config_error(pki, postern_bin, tmp_path):
    keys = tmp_path / "tickets.keys"
    keys.write_text(f"# comment\n{new_key(postern_bin)}\nnot-a-key\n")
    cfg = tmp_path / "p.yaml"
    port = free_port()
    cfg.write_text(config([listener("l", port, "127.0.0.1:9", tls=tls(pki, ticket_keys=str(keys)))]))
    p = subprocess.run([postern_bin, "-t", "-c", str(cfg)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=20)
    assert p.returncode == 1, p.stdout
    assert f"{keys}:3: not a base64 key" in p.stdout, p.stdout
    assert "listeners[0].tls.ticket_keys" in p.stdout, p.stdout


@pytest.mark.parametrize("key,value,message", [
    ("early_data", "maybe", 'tls.early_data: unknown early data policy "maybe"; expected reject or accept'),
    ("tcp_early_data", "forwrd", '(did you mean "forward"?); expected hold or forward'),
    ("max_early_data", 0, "tls.max_early_data: invalid integer"),
    ("ticket_lifetime", "169h", "tls.ticket_lifetime:"),
    ("ticket_rotation", "1m", "tls: ticket_rotation is too short for ticket_lifetime"),
    ("session_tickets", "yes", "tls.session_tickets: unknown value"),
])
def test_config_errors(pki, postern_bin, tmp_path, key, value, message):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(config([listener("l", free_port(), "127.0.0.1:9", tls=tls(pki, **{key: value}))]))
    p = subprocess.run([postern_bin, "-t", "-c", str(cfg)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=20)
    assert p.returncode == 1 and message in p.stdout, p.stdout
    assert re.search(rf"{re.escape(str(cfg))}:\d+:\d+: listeners\[0\]\.tls", p.stdout), p.stdout


def test_counters_logged_at_shutdown(pki, start_postern, line_backend, tmp_path):
    port = free_port()
    p = start_postern(config([listener("l", port, line_backend.addr, pki)]), [port])
    sess = tmp_path / "sess.pem"
    get_ticket(port, sess, pki)
    assert reused(s_client(port, "-CAfile", pki.root, "-sess_in", sess, stdin=b"x\n"))
    p.stop()
    assert counters(p) | {"handshakes": 2, "resumed": 1, "early_data_accepted": 0,
                          "early_data_rejected": 0, "early_data_replayed": 0} == counters(p), \
        p.stderr()[-2000:]


@pytest.mark.parametrize("target", ["tcp", "builtin", "http"])
def test_ticket_comes_with_first_answer(pki, start_postern, line_backend, http_backend, target):
    """A client whose first request travels with its Finished gets its answer
    and, with it, a session ticket that resumes: postern holds the ticket back
    to send it in the same write as the answer (src/conn_int.h: cork), and must not
    hold the answer too. tcp relay, builtin:info, and http mode."""
    port = free_port()
    if target == "http":
        backend = http_backend.addr
    else:
        backend = "builtin:info" if target == "builtin" else line_backend.addr
    item = listener("l", port, backend, pki, mode="http" if target == "http" else "tcp")
    p = start_postern(config([item]), [port])
    req = b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    ctx = client_context(pki)
    c = MemTls(port, "example.test", ctx)
    try:
        c.handshake(first=req)
        data, how = c.read_until_close()
        session = c.obj.session
    finally:
        c.close()
    assert how == "close_notify" and (b"OK" in data or b"200" in data), f"{how} {data!r}" + p.context()
    assert session is not None and session.has_ticket, "no session ticket came" + p.context()
    r = MemTls(port, "example.test", ctx, session=session)
    try:
        r.handshake(first=req)
        data, how = r.read_until_close()
        assert r.obj.session_reused, "the ticket did not resume" + p.context()
    finally:
        r.close()
    assert how == "close_notify" and data, f"{how} {data!r}"


# ------------------------------------------------------- http mode --

def keep_and_answer_ok(server, conn, head, body, index):
    """A raw_http_server responder that keeps every request, head and body,
    in server.requests and answers each with 200 "OK" (followed by 32 KiB of
    "x" when the path has "big"), keeping the connection alive."""
    with server._lock:
        server.requests.append(head + body)
    answer = b"OK\n" + (b"x" * 32768 if b"big" in head.split(b"\r\n", 1)[0] else b"")
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
    return True


@pytest.fixture
def http_backend(http_servers):
    srv = http_servers.raw(keep_and_answer_ok, "http-recorder")
    srv.requests = []
    return srv


def early_http(pki, start_postern, http_backend, tmp_path, request):
    """Starts an http-mode listener with early_data: accept, gets a ticket,
    then resumes through a proxy that holds the client's Finished, with
    request as 0-RTT early data. Returns (postern, proxy, client process,
    port)."""
    port = free_port()
    p = start_postern(config([listener("l", port, http_backend.addr, mode="http",
                                       tls=tls(pki, early_data="accept"))]), [port])
    sess = tmp_path / "sess.pem"
    get_ticket(port, sess, pki,
               stdin=b"GET /ticket HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
    early = tmp_path / "req.txt"
    early.write_bytes(request)
    proxy = Proxy(port, hold=True)
    client = s_client_bg(proxy.port, "-CAfile", pki.root, "-sess_in", sess, "-early_data", early)
    return p, proxy, client


def test_http_safe_request_forwarded_early_with_header(pki, start_postern, http_backend, tmp_path):
    """accept: a GET without body sent as early data reaches the backend with
    Early-Data: 1 (RFC 8470 5.1) before the client's Finished is read, and
    the answer goes out as 0.5-RTT data, also before the client's Finished:
    the request is answered in one round trip."""
    req = b"GET /zero-rtt-big HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    p, proxy, client = early_http(pki, start_postern, http_backend, tmp_path, req)
    try:
        assert wait_for(lambda: proxy.held_bytes > 0, 10), "the client never sent its Finished"
        assert wait_for(lambda: any(b"/zero-rtt" in h for h in http_backend.requests), 5), \
            "the early GET did not reach the backend before the handshake" + p.context()
        head = next(h for h in http_backend.requests if b"/zero-rtt" in h)
        assert re.search(rb"(?i)\r\nearly-data: 1\r\n", head), head
        proxy.assert_half_rtt(p)
        out = proxy.release_and_read(client)
    finally:
        proxy.close()
    assert early_status(out) == "accepted", out + p.context()
    assert "200 OK" in out and "OK" in out, out
    assert sum(b"/zero-rtt" in h for h in http_backend.requests) == 1


def test_http_unsafe_request_waits_for_handshake(pki, start_postern, http_backend, tmp_path):
    """accept: a POST sent as early data reaches the backend only after the
    handshake, without Early-Data (it could be a replay until then)."""
    req = (b"POST /order HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\n"
           b"Connection: close\r\n\r\nhello")
    p, proxy, client = early_http(pki, start_postern, http_backend, tmp_path, req)
    try:
        assert wait_for(lambda: proxy.held_bytes > 0, 10), "the client never sent its Finished"
        time.sleep(0.5)
        assert not any(b"/order" in h for h in http_backend.requests), \
            "a POST in early data reached the backend before the handshake completed" + \
            p.context()
        out = proxy.release_and_read(client)
    finally:
        proxy.close()
    assert early_status(out) == "accepted", out + p.context()
    assert wait_for(lambda: any(b"/order" in h for h in http_backend.requests), 5), p.context()
    head = next(h for h in http_backend.requests if b"/order" in h)
    assert b"early-data" not in head.lower(), head
    assert head.endswith(b"hello"), head
    assert "200 OK" in out, out
