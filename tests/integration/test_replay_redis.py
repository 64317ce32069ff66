"""The shared 0-RTT strike register in Redis (issue 16, early_data_replay:
store: redis): a fleet of posterns sharing ticket keys also shares what
ClientHellos it accepted early data from, so a recorded 0-RTT request
replayed to another instance is caught there (RFC 8446 8). The register
fails closed: Redis down, slow or saturated means early data rejected,
never accepted unchecked, and the handshake still succeeds at 1-RTT.

A real redis-server (Debian's) is started by each test on a free port,
without persistence; openssl s_client sends 0-RTT (as in
test_resumption.py); small TCP proxies record a client's first flight (to
replay it byte for byte) or delay Redis' answers."""

import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from clients import HOST, config, free_port, listener, replay_raw
from conftest import run_postern
from test_resumption import (REQ, counters, deliveries, early_status, get_ticket, key_file,
                             line_server, new_key, record_early_data, reused, s_client, tls,
                             wait_for)

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")


# ------------------------------------------------------------- helpers --

def resp(*args):
    """A Redis command in RESP (the protocol's array of bulk strings)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def redis_cmd(port, *args, password=None):
    """Sends one command (after AUTH when password is set) and returns the
    raw reply bytes."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        if password:
            s.sendall(resp("AUTH", password))
            s.recv(1024)
        s.sendall(resp(*args))
        return s.recv(65536)


class Redis:
    """redis-server on a free port, no persistence (the register does not
    need any: a restarted Redis forgets claims whose ClientHellos are about
    to expire anyway). stop() and start() keep the port."""

    def __init__(self, workdir, password=None, unixsocket=None):
        self.port = free_port()
        self.workdir = workdir
        self.password = password
        self.unixsocket = unixsocket
        self.proc = None
        self.start()

    def start(self):
        cmd = ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
               "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        if self.unixsocket:
            cmd += ["--unixsocket", str(self.unixsocket), "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(self._up, 10), "redis-server did not start"

    def _up(self):
        try:
            return b"PONG" in redis_cmd(self.port, "PING", password=self.password)
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)

    def keys(self, prefix="postern:0rtt:"):
        reply = redis_cmd(self.port, "KEYS", prefix + "*", password=self.password)
        return re.findall(rb"\r\n(" + re.escape(prefix.encode()) + rb"[0-9a-f]{32})\r\n", reply)


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    yield r
    r.stop()


class DelayProxy:
    """A TCP proxy to Redis that delays every answer by delay seconds and
    counts the SET commands in flight through it (sent and not answered):
    max_in_flight is the most it ever saw."""

    def __init__(self, upstream, delay):
        self.upstream, self.delay = upstream, delay
        self.sets = 0
        self.answers = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            u = socket.create_connection((HOST, self.upstream))
        except OSError:
            c.close()
            return

        def s2c():
            try:
                while True:
                    d = u.recv(65536)
                    if not d:
                        break
                    time.sleep(self.delay)
                    with self._lock:
                        self.answers += d.count(b"+OK\r\n") + d.count(b"$-1\r\n")
                    c.sendall(d)
            except OSError:
                pass
            c.close()

        threading.Thread(target=s2c, daemon=True).start()
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                with self._lock:
                    self.sets += d.count(b"$3\r\nSET\r\n")
                    self.max_in_flight = max(self.max_in_flight, self.sets - self.answers)
                u.sendall(d)
        except OSError:
            pass
        u.close()

    def close(self):
        self.sock.close()


def replay_tls(pki, keys, **extra):
    return tls(pki, early_data="accept", tcp_early_data="forward", ticket_keys=str(keys), **extra)


def redis_store(port, **extra):
    r = {"address": f"{HOST}:{port}", "timeout": "200ms"}
    r.update(extra)
    return {"store": "redis", "redis": r}


def zero_rtt(port, pki, tmp_path, name="s"):
    """A full handshake for a ticket, then a 0-RTT request with it. Returns
    s_client's output of the second (early_status: accepted or rejected)."""
    sess = tmp_path / f"{name}.pem"
    get_ticket(port, sess, pki, stdin=b"first\n")
    early = tmp_path / "req.txt"
    early.write_bytes(REQ)
    return s_client(port, "-CAfile", pki.root, "-sess_in", sess, "-early_data", early, stdin=REQ)


# ---------------------------------------------------------------- tests --

@pytest.mark.parametrize("store", ["redis", "local"])
def test_replay_to_another_instance(pki, start_postern, redis, tmp_path, postern_bin, store):
    """Two instances A and B share a ticket-key file (B resumes A's
    tickets). A 0-RTT request accepted by A, replayed byte for byte to B:
    with store: redis, B finds A's claim in Redis and rejects the early data
    as replayed, so B's backend never sees it; with store: local, B's own
    register has never seen that ClientHello and accepts it (the replay the
    shared store exists to stop: tcp_early_data: forward hands it to B's
    backend before the handshake, which the replayer never completes)."""
    keys = key_file(tmp_path / "tickets.keys", [new_key(postern_bin)])
    back_a, back_b = line_server(), line_server()
    try:
        a, b = free_port(), free_port()
        top = {"early_data_replay": redis_store(redis.port)} if store == "redis" else {}
        pa = start_postern(config([listener("a", a, back_a.addr, tls=replay_tls(pki, keys))],
                                  log_level="debug", **top), [a])
        pb = start_postern(config([listener("b", b, back_b.addr, tls=replay_tls(pki, keys))],
                                  log_level="debug", **top), [b])
        out, recorded = record_early_data(a, pki, tmp_path)
        assert early_status(out) == "accepted", out + pa.context()
        assert wait_for(lambda: deliveries(back_a, REQ) == 1)
        if store == "redis":
            assert len(redis.keys()) == 1, "A's claim is not in Redis"
        replay_raw(b, recorded)
        if store == "local":
            assert wait_for(lambda: deliveries(back_b, REQ) == 1, 5), (
                "store: local: B accepts the replay (its register is its own)" + pb.context())
            return
        time.sleep(0.5)
        assert deliveries(back_b, REQ) == 0, "B's backend got the replayed early data" + pb.context()
        assert len(back_b.conns) == 0, "the replay reached B's backend"
        assert "replayed ClientHello (shared strike register)" in pb.stderr(), pb.context()
        # The replay at A itself is caught by A's local register first (no
        # round trip: no second key and no redis counter at A).
        replay_raw(a, recorded)
        time.sleep(0.3)
        assert deliveries(back_a, REQ) == 1
        pa.stop()
        pb.stop()
        ca, cb = counters(pa), counters(pb)
        assert cb.get("early_data_replayed") == 1 and cb.get("early_data_redis_replayed") == 1, cb
        assert cb.get("early_data_accepted", 0) == 0, cb
        assert ca.get("early_data_accepted") == 1 and ca.get("early_data_replayed") == 1, ca
        assert ca.get("early_data_redis_replayed", 0) == 0, ca
    finally:
        back_a.close()
        back_b.close()


def test_redis_down_fails_closed_then_recovers(pki, start_postern, redis, tmp_path, postern_bin):
    """Redis stopped mid-run: early data is rejected at once (no connection:
    nothing to wait for), the handshakes and the requests (sent again at
    1-RTT) still succeed, with a warning and the counter. Redis back on the
    same port: postern reconnects by itself and accepts early data again."""
    keys = key_file(tmp_path / "tickets.keys", [new_key(postern_bin)])
    back = line_server()
    try:
        port = free_port()
        p = start_postern(config([listener("l", port, back.addr, tls=replay_tls(pki, keys))],
                                 workers=1, early_data_replay=redis_store(redis.port)), [port])
        assert wait_for(lambda: "connected to Redis" in p.stderr(), 5), p.context()
        out = zero_rtt(port, pki, tmp_path, "s1")
        assert early_status(out) == "accepted", out + p.context()
        redis.stop()
        assert wait_for(lambda: "lost the connection to Redis" in p.stderr(), 5), p.context()
        for i in range(3):
            t0 = time.monotonic()
            out = zero_rtt(port, pki, tmp_path, f"down{i}")
            assert reused(out) and early_status(out) == "rejected", out + p.context()
            assert "OK" in out, "the request did not succeed at 1-RTT" + out
            assert time.monotonic() - t0 < 5
        assert "unavailable" in p.stderr() and "early data rejected" in p.stderr(), p.context()
        # Rate-limited: one warning for the three rejections.
        assert p.stderr().count("shared strike register (Redis") == 1, p.context()
        redis.start()
        assert wait_for(lambda: p.stderr().count("connected to Redis") >= 2, 10), p.context()
        out = zero_rtt(port, pki, tmp_path, "back")
        assert early_status(out) == "accepted", out + p.context()
        p.stop()
        c = counters(p)
        assert c.get("early_data_redis_unavailable") == 3, c
        assert c.get("early_data_accepted") == 2, c
    finally:
        back.close()


def test_slow_redis_bounded_by_timeout(pki, start_postern, redis, tmp_path, postern_bin):
    """Redis answering 1.5 s late: the handshake waits at most redis.timeout
    (100ms) for it, then rejects the early data and goes on at 1-RTT."""
    keys = key_file(tmp_path / "tickets.keys", [new_key(postern_bin)])
    back = line_server()
    proxy = DelayProxy(redis.port, 1.5)
    try:
        port = free_port()
        p = start_postern(config([listener("l", port, back.addr, tls=replay_tls(pki, keys))],
                                 workers=1,
                                 early_data_replay=redis_store(proxy.port, timeout="100ms")),
                          [port])
        assert wait_for(lambda: "connected to Redis" in p.stderr(), 5), p.context()
        sess = tmp_path / "s.pem"
        get_ticket(port, sess, pki)
        early = tmp_path / "req.txt"
        early.write_bytes(REQ)
        t0 = time.monotonic()
        out = s_client(port, "-CAfile", pki.root, "-sess_in", sess, "-early_data", early,
                       stdin=REQ)
        took = time.monotonic() - t0
        assert reused(out) and early_status(out) == "rejected", out + p.context()
        assert took < 1.2, f"the handshake waited {took:.2f}s for a slow Redis" + p.context()
        assert "no answer within redis.timeout" in p.stderr(), p.context()
        p.stop()
        assert counters(p).get("early_data_redis_unavailable") == 1
    finally:
        proxy.close()
        back.close()


def test_flood_keeps_commands_in_flight_bounded(pki, start_postern, redis, tmp_path, postern_bin):
    """40 0-RTT ClientHellos at once to a worker whose Redis answers 1 s
    late, with redis.max_in_flight: 4: at most 4 SET commands are ever in
    flight; the rest are rejected at once (backpressure), not queued."""
    keys = key_file(tmp_path / "tickets.keys", [new_key(postern_bin)])
    back = line_server()
    proxy = DelayProxy(redis.port, 1.0)
    try:
        port = free_port()
        store = redis_store(proxy.port, timeout="20ms", max_in_flight=4)
        p = start_postern(config([listener("l", port, back.addr, tls=replay_tls(pki, keys))],
                                 workers=1, early_data_replay=store), [port])
        assert wait_for(lambda: "connected to Redis" in p.stderr(), 5), p.context()
        sess = tmp_path / "s.pem"
        get_ticket(port, sess, pki)
        early = tmp_path / "req.txt"
        early.write_bytes(REQ)
        cmd = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", "example.test",
               "-CAfile", str(pki.root), "-sess_in", str(sess), "-early_data", str(early)]
        procs = [subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT) for _ in range(40)]
        outs = [pr.communicate(timeout=30)[0].decode(errors="replace") for pr in procs]
        assert all(early_status(o) == "rejected" for o in outs), p.context()
        assert all(reused(o) for o in outs)
        assert 1 <= proxy.sets <= 40
        assert proxy.max_in_flight <= 4, f"{proxy.max_in_flight} commands in flight"
        p.stop()
        c = counters(p)
        assert c.get("early_data_redis_unavailable") == 40, c
        assert c.get("handshakes") == 41, c
    finally:
        proxy.close()
        back.close()


def test_auth_and_reload_changes_store(pki, start_postern, tmp_path, postern_bin):
    """A Redis with a password: password_file is read at load and sent with
    AUTH. A reload from store: local to store: redis switches the workers'
    clients; a wrong password is logged and fails closed."""
    keys = key_file(tmp_path / "tickets.keys", [new_key(postern_bin)])
    red = Redis(tmp_path, password="s3cret-pass")
    back = line_server()
    try:
        pw = tmp_path / "redis.pass"
        pw.write_text("s3cret-pass\n")
        port = free_port()
        lst = [listener("l", port, back.addr, tls=replay_tls(pki, keys))]
        p = start_postern(config(lst, workers=1), [port])
        out = zero_rtt(port, pki, tmp_path, "local")
        assert early_status(out) == "accepted", out + p.context()
        assert red.keys() == []
        p.config_path.write_text(config(lst, workers=1, early_data_replay=redis_store(
            red.port, password_file=str(pw), key_prefix="fleet1:")))
        p.signal(signal.SIGHUP)
        assert wait_for(lambda: "connected to Redis" in p.stderr(), 10), p.context()
        out = zero_rtt(port, pki, tmp_path, "shared")
        assert early_status(out) == "accepted", out + p.context()
        assert len(red.keys("fleet1:")) == 1, p.context()
        pw.write_text("wrong\n")
        p.signal(signal.SIGHUP)
        assert wait_for(lambda: "refused AUTH" in p.stderr(), 10), p.context()
        out = zero_rtt(port, pki, tmp_path, "wrong")
        assert early_status(out) == "rejected", out + p.context()
    finally:
        red.stop()
        back.close()


def test_unix_socket(pki, start_postern, tmp_path, postern_bin):
    """address: unix:/path talks to Redis over its unix socket."""
    keys = key_file(tmp_path / "tickets.keys", [new_key(postern_bin)])
    sock = tmp_path / "redis.sock"
    red = Redis(tmp_path, unixsocket=sock)
    back = line_server()
    try:
        port = free_port()
        store = {"store": "redis", "redis": {"address": f"unix:{sock}", "timeout": "200ms"}}
        p = start_postern(config([listener("l", port, back.addr, tls=replay_tls(pki, keys))],
                                 workers=1, early_data_replay=store), [port])
        assert wait_for(lambda: "connected to Redis" in p.stderr(), 5), p.context()
        out = zero_rtt(port, pki, tmp_path)
        assert early_status(out) == "accepted", out + p.context()
        assert len(red.keys()) == 1
    finally:
        red.stop()
        back.close()


CONFIG_ERRORS = {
    "store-without-redis": ("early_data_replay: {store: redis}", "early_data_replay",
                            "store: redis needs the server"),
    "bad-store": ("early_data_replay: {store: memcached}", "store", "memcached"),
    "bad-address": ('early_data_replay: {store: redis, redis: {address: "127.0.0.1"}}',
                    "address", "invalid address"),
    "relative-unix": ('early_data_replay: {store: redis, redis: {address: "unix:redis.sock"}}',
                      "address", "absolute path"),
    "timeout-range": ('early_data_replay: {store: redis, redis: {address: "127.0.0.1:6379", '
                      'timeout: 5s}}', "timeout", "out of range"),
    "no-password-file": ('early_data_replay: {store: redis, redis: {address: "127.0.0.1:6379", '
                         'password_file: /nonexistent/redis.pass}}', "password_file",
                         "cannot read"),
    "unknown-key": ('early_data_replay: {store: redis, redis: {adress: "127.0.0.1:6379"}}',
                    "adress", "unknown key"),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_errors(pki, tmp_path, postern_bin, case):
    line, key, words = CONFIG_ERRORS[case]
    text = config([listener("l", free_port(), "127.0.0.1:9", pki)]) + line + "\n"
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    r = run_postern(postern_bin, "-t", "-c", path)
    assert r.returncode == 1, r.stderr
    n = len(text.splitlines())
    m = re.search(rf"^{re.escape(str(path))}:(\d+):(\d+): (\S+): (.*)$", r.stderr, re.M)
    assert m, r.stderr
    assert int(m.group(1)) == n, f"expected the error at line {n}: {r.stderr}"
    assert m.group(3).endswith(key), r.stderr
    assert words in m.group(4), r.stderr
