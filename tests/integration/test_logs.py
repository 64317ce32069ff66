"""Logs for operators: `log_format: json` writes the error log and the
access log as one JSON object per line with the documented fields
(docs/config.md), whatever bytes a client sends; SIGUSR1 reopens the access
log files, logrotate's convention, without losing a line."""

import json
import re
import signal
import threading
import time

import pytest

from clients import config, free_port
from http_backends import H1Conn, http_listener
from test_reload import Log

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ACCESS_FIELDS = {"time", "listener", "conn", "peer", "sni", "proto", "method", "authority", "path",
                 "status", "bytes_in", "bytes_out", "duration_ms", "backend"}


def get(conn, target, host="example.test"):
    conn.send(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return conn.read_response()


def wait_lines(path, n, seconds=10):
    deadline = time.monotonic() + seconds
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_json_error_and_access_log(pki, start_postern, tmp_path):
    access = tmp_path / "access.log"
    port = free_port()
    p = start_postern(config([http_listener("pub", port, "builtin:info", pki,
                                            access_log=str(access))], log_format="json"), [port])
    with H1Conn(port, pki) as c:
        assert get(c, "/ok?a=1").status == 200
    # Bytes a client controls, hostile ones included: the line must stay one
    # valid JSON object (the request itself is refused, and logged).
    with H1Conn(port, pki) as c:
        c.send(b'GET /q"\\\x01\xff HTTP/1.1\r\nHost: ex"ample.test\r\n\r\n')
        assert c.read_response().status == 400
    lines = wait_lines(access, 2)
    assert len(lines) == 2, lines
    recs = [json.loads(line) for line in lines]
    for rec in recs:
        assert set(rec) == ACCESS_FIELDS, rec
        assert RFC3339_MS.match(rec["time"]), rec
        assert rec["listener"] == "pub" and rec["proto"] == "http/1.1", rec
        assert rec["sni"] == "example.test" and rec["backend"] == "builtin:info", rec
        assert isinstance(rec["conn"], int) and isinstance(rec["duration_ms"], float), rec
    ok = recs[0]
    assert (ok["method"], ok["authority"], ok["path"], ok["status"]) == (
        "GET", "example.test", "/ok?a=1", 200), ok
    assert ok["bytes_out"] > 0 and ok["peer"].startswith("127.0.0.1:"), ok
    assert recs[1]["status"] == 400, recs[1]

    p.signal(signal.SIGHUP)
    Log(p).wait(r'"msg":"reload ok')
    p.stop()
    err_lines = [line for line in p.stderr().splitlines() if line.strip()]
    assert len(err_lines) >= 5, p.stderr()
    for line in err_lines:
        rec = json.loads(line)
        assert set(rec) == {"time", "level", "msg"}, line
        assert RFC3339_MS.match(rec["time"]) and rec["level"] in {"error", "warn", "info", "debug"}
    msgs = [json.loads(line)["msg"] for line in err_lines]
    assert any(m.startswith("postern ") and " ready: " in m for m in msgs), msgs
    assert msgs[-1] == "stopped", msgs


@pytest.mark.deadline(60)
def test_sigusr1_reopens_without_losing_lines(pki, start_postern, tmp_path):
    access = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    port = free_port()
    p = start_postern(config([http_listener("pub", port, "builtin:info", pki,
                                            access_log=str(access))]), [port])
    log = Log(p)
    done = {"n": 0}
    stop = threading.Event()
    errors = []

    def load():
        # Two clients, each on its own kept-alive connection, all the time.
        try:
            with H1Conn(port, pki) as c:
                while not stop.is_set():
                    assert get(c, "/r").status == 200
                    with lock:
                        done["n"] += 1
        except Exception as e:  # reported below
            errors.append(e)

    lock = threading.Lock()
    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        while done["n"] < 200:
            time.sleep(0.01)
        access.rename(rotated)  # what logrotate does first
        time.sleep(0.2)         # lines keep going to the renamed file meanwhile
        mark = log.mark()
        p.signal(signal.SIGUSR1)
        log.wait(r"SIGUSR1: 1 access log file reopened", mark)
        n_at_reopen = done["n"]
        while done["n"] < n_at_reopen + 200:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    p.stop()  # every queued line is written before postern exits
    old = rotated.read_text().splitlines()
    new = access.read_text().splitlines()
    assert len(old) + len(new) == done["n"], (len(old), len(new), done["n"])
    assert len(new) >= 200 and len(old) >= 200, (len(old), len(new))
    assert all(" GET example.test /r 200 " in line for line in old + new)


def test_logrotate_with_the_shipped_file(pki, start_postern, tmp_path):
    """conf/postern.logrotate run by logrotate itself (-f), its paths and
    postrotate command pointed at this postern: the next lines go to a new
    access.log, the earlier ones are in access.log.1."""
    import shutil
    import subprocess
    from pathlib import Path
    if shutil.which("logrotate") is None:
        pytest.skip("logrotate is not installed (Debian: apt-get install logrotate)")
    logs = tmp_path / "log"
    logs.mkdir()
    access = logs / "access.log"
    port = free_port()
    p = start_postern(config([http_listener("pub", port, "builtin:info", pki,
                                            access_log=str(access))]), [port])
    with H1Conn(port, pki) as c:
        for _ in range(3):
            assert get(c, "/before").status == 200
        assert len(wait_lines(access, 3)) == 3
        shipped = (Path(__file__).resolve().parents[2] / "conf/postern.logrotate").read_text()
        text = (shipped.replace("/var/log/postern", str(logs))
                .replace("create 0640 postern postern", "create 0640 root root")
                .replace("\t\tsystemctl kill --signal=SIGUSR1 --kill-whom=main postern.service",
                         f"\t\tkill -USR1 {p.pid}")
                .replace("\tcompress\n", "").replace("\tdelaycompress\n", ""))
        assert f"kill -USR1 {p.pid}" in text
        conf = tmp_path / "lr.conf"
        conf.write_text(text)
        mark = Log(p).mark()
        r = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
        assert r.returncode == 0, r.stdout
        Log(p).wait(r"SIGUSR1: 1 access log file reopened", mark)
        for _ in range(2):
            assert get(c, "/after").status == 200
    assert len(wait_lines(access, 2)) == 2
    p.stop()
    old = (logs / "access.log.1").read_text().splitlines()
    new = access.read_text().splitlines()
    assert len(old) == 3 and all("/before" in line for line in old), old
    assert len(new) == 2 and all("/after" in line for line in new), new


def test_sigusr1_during_shutdown_is_harmless(pki, start_postern, tmp_path):
    """logrotate's SIGUSR1 can come at any time, also while postern stops:
    after the signal handle is closed it must be ignored, not kill postern
    (SIGUSR1's default action)."""
    import os
    port = free_port()
    p = start_postern(config([http_listener("pub", port, "builtin:info", pki,
                                            access_log=str(tmp_path / "access.log"))]), [port])
    p.signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while p.proc.poll() is None and time.monotonic() < deadline:
        try:
            os.kill(p.pid, signal.SIGUSR1)
        except ProcessLookupError:
            break
        time.sleep(0.0005)
    assert p.wait(5) is not None, "postern did not exit" + p.context()
    assert p.returncode == 0, f"exit {p.returncode} (-10 is SIGUSR1)" + p.context()
    p.check_exit()
