"""HTTP mode, bodies stream both ways (issue 3): 1 GiB downloads and uploads
over h2 and HTTP/1.1 arrive with the right SHA-256 while postern's RSS grows
by less than 64 MiB, and a client that stops reading does not make postern
buffer the backend's whole response.

The 1 GiB tests are marked bulk (-m bulk / -m 'not bulk'). postern runs with
ASan's quarantine cut to 8 MiB here, so freed memory is reused rather than
held back and RSS measures what postern really keeps."""

import hashlib
import json
import subprocess
import tempfile
import threading
import time

import pytest

from http_backends import (GiB, KiB, MiB, H1Conn, H2Raw, RssSampler, S_INITIAL_WINDOW_SIZE,
                           http_site, pattern_chunks, pattern_sha, small_asan_quarantine)

RSS_BOUND_MIB = 64
SEED = 11


@pytest.fixture
def bulk(pki, start_postern, http_servers, monkeypatch):
    small_asan_quarantine(monkeypatch)
    s = http_site(start_postern, http_servers.http(), pki, "bulk")

    # Warm up both protocols so that the baseline RSS includes the per
    # connection state a transfer needs anyway.
    for http in ("2", "1.1"):
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "--cacert", str(pki.root),
                        "--resolve", f"example.test:{s.port}:127.0.0.1",
                        "--http2" if http == "2" else "--http1.1",
                        f"https://example.test:{s.port}/download?size={4 * MiB}"],
                       timeout=20, check=False)
    return s


def curl_cmd(pki, port, path, http, *args):
    return ["curl", "-sS", "--max-time", "150", "--cacert", str(pki.root),
            "--resolve", f"example.test:{port}:127.0.0.1",
            "--http2" if http == "2" else "--http1.1", *args,
            f"https://example.test:{port}{path}"]


@pytest.mark.bulk
@pytest.mark.deadline(180)
@pytest.mark.parametrize("http", ["2", "1.1"])
def test_download_1gib(bulk, pki, http):
    size = GiB
    want = pattern_sha(size, SEED)
    cmd = curl_cmd(pki, bulk.port, f"/download?size={size}&seed={SEED}", http, "-o", "-")
    h = hashlib.sha256()
    got = 0
    with RssSampler(bulk.p.pid) as rss:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        while True:
            d = proc.stdout.read(MiB)
            if not d:
                break
            h.update(d)
            got += len(d)
        rc = proc.wait(30)
        elapsed = time.monotonic() - t0
    err = proc.stderr.read().decode(errors="replace")
    ctx = bulk.ctx(f"\n$ {' '.join(cmd)}\nrc={rc} stderr={err.strip()!r}; got {got} bytes in "
                   f"{elapsed:.1f}s; {rss}")
    assert rc == 0 and got == size, f"1 GiB download over HTTP/{http}{ctx}"
    assert h.hexdigest() == want, f"downloaded bytes differ from the backend's{ctx}"
    assert rss.growth_mib < RSS_BOUND_MIB, f"postern's RSS grew too much{ctx}"
    print(f"download HTTP/{http}: 1 GiB in {elapsed:.1f}s ({size / MiB / elapsed:.0f} MiB/s); "
          f"{rss}")


def curl_upload(pki, port, path, http, size, seed, rss_pid):
    """Streams size pattern bytes through curl -T - (h2: DATA without a
    length; HTTP/1.1: chunked). Returns (rc, stdout, stderr, elapsed,
    feed errors, RssSampler)."""
    cmd = curl_cmd(pki, port, path, http, "-T", "-")
    errors = []

    def feed(pipe):
        try:
            for block in pattern_chunks(size, seed):
                pipe.write(block)
        except (BrokenPipeError, OSError) as e:
            errors.append(repr(e))
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    with RssSampler(rss_pid) as rss:
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as errf:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=errf)
            t = threading.Thread(target=feed, args=(proc.stdin,), daemon=True)
            t.start()
            out = proc.stdout.read()  # the response comes once the body is all sent
            proc.wait(30)
            t.join(5)
            elapsed = time.monotonic() - t0
            errf.seek(0)
            err = errf.read().decode(errors="replace")
    return cmd, proc.returncode, out, err, elapsed, errors, rss


@pytest.mark.bulk
@pytest.mark.deadline(180)
def test_upload_1gib_h2_streamed(bulk, pki):
    """curl -T - sends a body of unknown length: DATA frames until
    END_STREAM, forwarded to the backend chunked."""
    size = GiB
    want = pattern_sha(size, SEED)
    cmd, rc, out, err, elapsed, errors, rss = curl_upload(pki, bulk.port, "/echo/upload-h2", "2",
                                                          size, SEED, bulk.p.pid)
    ctx = bulk.ctx(f"\n$ {' '.join(cmd)}\nrc={rc} stderr={err.strip()!r} feed errors={errors}\n"
                   f"response {out[:500]!r}\n{elapsed:.1f}s; {rss}")
    assert rc == 0, f"1 GiB upload over h2 failed{ctx}"
    rec = json.loads(out)
    assert rec["body_len"] == size and rec["body_sha256"] == want, (
        f"the backend got {rec['body_len']} bytes with another checksum{ctx}")
    assert rss.growth_mib < RSS_BOUND_MIB, f"postern's RSS grew too much{ctx}"
    print(f"upload h2: 1 GiB in {elapsed:.1f}s ({size / MiB / elapsed:.0f} MiB/s); {rss}")


@pytest.mark.deadline(60)
@pytest.mark.parametrize("http", ["2", "1.1"])
def test_slow_backend_upload_bounded(bulk, pki, http):
    """The backend reads nothing for 3 s while the client uploads 256 MiB:
    postern must stop taking the body (h2 flow control, TCP backpressure)
    rather than buffer it."""
    size = 256 * MiB
    cmd, rc, out, err, elapsed, errors, rss = curl_upload(
        pki, bulk.port, "/slowread?ms=3000", http, size, 4, bulk.p.pid)
    ctx = bulk.ctx(f"\n$ {' '.join(cmd)}\nrc={rc} stderr={err.strip()!r} feed errors={errors}\n"
                   f"response {out[:300]!r}\n{elapsed:.1f}s; {rss}")
    assert rc == 0, f"256 MiB upload to a slow backend failed{ctx}"
    rec = json.loads(out)
    assert rec["body_len"] == size and rec["body_sha256"] == pattern_sha(size, 4), ctx
    assert elapsed > 3, f"the upload ended before the backend started reading?{ctx}"
    assert rss.growth_mib < RSS_BOUND_MIB, (
        f"a backend that does not read made postern buffer the request body{ctx}")
    print(f"slow backend, 256 MiB upload over HTTP/{http} in {elapsed:.1f}s; {rss}")


@pytest.mark.bulk
@pytest.mark.deadline(180)
def test_upload_1gib_h1_content_length(bulk, pki):
    size = GiB
    want = pattern_sha(size, SEED)
    with RssSampler(bulk.p.pid) as rss:
        t0 = time.monotonic()
        with H1Conn(bulk.port, pki, timeout=60) as c:
            c.send(f"PUT /echo/upload-h1 HTTP/1.1\r\nHost: example.test\r\n"
                   f"Content-Length: {size}\r\n\r\n".encode())
            for block in pattern_chunks(size, SEED):
                c.send(block)
            r = c.read_response("PUT")
        elapsed = time.monotonic() - t0
    ctx = bulk.ctx(f"\n{r!r}\n{elapsed:.1f}s; {rss}")
    assert r.status == 200, ctx
    rec = r.json()
    assert rec["body_len"] == size and rec["body_sha256"] == want, (
        f"the backend got {rec['body_len']} bytes with another checksum{ctx}")
    assert rss.growth_mib < RSS_BOUND_MIB, f"postern's RSS grew too much{ctx}"
    print(f"upload HTTP/1.1: 1 GiB in {elapsed:.1f}s ({size / MiB / elapsed:.0f} MiB/s); {rss}")


SLOW_SIZE = 256 * MiB


def _backend_gave_up(be, seconds):
    """Waits for the backend's download handler to end; returns its
    [sent, size] or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with be.lock:
            done = [d for d in be.downloads if d[1] == SLOW_SIZE]
        if done:
            return done[-1]
        time.sleep(0.1)
    return None


@pytest.mark.deadline(60)
def test_slow_reader_h1_bounded(bulk, pki):
    with RssSampler(bulk.p.pid) as rss:
        with H1Conn(bulk.port, pki, timeout=10) as c:
            c.send(f"GET /download?size={SLOW_SIZE}&seed=2 HTTP/1.1\r\nHost: example.test\r\n\r\n"
                   .encode())
            status, _, _, _ = c.read_head()
            got = len(c.buf)
            c.buf.clear()
            while got < MiB:
                got += len(c.sock.recv(65536))
            time.sleep(3)           # not reading at all
            stalled_peak = rss.peak
            t_end = time.monotonic() + 2
            while time.monotonic() < t_end:  # then reading slowly
                got += len(c.sock.recv(256 * KiB))
                time.sleep(0.05)
    gave_up = _backend_gave_up(bulk.be, 10)
    ctx = bulk.ctx(f"\nclient read {got / MiB:.1f} MiB of {SLOW_SIZE // MiB} MiB; {rss}; "
                   f"RSS peak while stalled {stalled_peak / 1024:.1f} MiB; backend download "
                   f"ended: {gave_up}")
    assert status == 200, ctx
    assert rss.growth_mib < RSS_BOUND_MIB, (
        f"a client that stops reading made postern buffer the backend's response{ctx}")
    print(f"slow reader: read {got / MiB:.1f} MiB; {rss}; backend download ended {gave_up}")
    assert gave_up is not None and gave_up[0] < SLOW_SIZE, (
        f"after the client left, postern must stop pulling the rest of the 256 MiB from the "
        f"backend (close that backend connection){ctx}")


@pytest.mark.deadline(60)
def test_slow_reader_h2_bounded(bulk, pki):
    """Huge h2 windows, so only TCP backpressure can hold postern back."""
    big = (1 << 31) - 1
    with RssSampler(bulk.p.pid) as rss:
        with H2Raw(bulk.port, pki, settings={S_INITIAL_WINDOW_SIZE: big}, auto_window=False) as c:
            c.window_update(0, big - 65535)
            c.handshake()
            sid = c.request("GET", f"/download?size={SLOW_SIZE}&seed=2")
            st = c.streams[sid]
            c.wait(lambda: len(st.body) >= MiB, 10)
            time.sleep(3)
            stalled_peak = rss.peak
            t_end = time.monotonic() + 2
            while time.monotonic() < t_end:
                try:
                    c.read_frame(0.2)
                except OSError:
                    pass
                del st.body[:]
                time.sleep(0.02)
            got = sum(st.data_frames)
    gave_up = _backend_gave_up(bulk.be, 10)
    ctx = bulk.ctx(f"\nclient read {got / MiB:.1f} MiB of {SLOW_SIZE // MiB} MiB; {rss}; "
                   f"RSS peak while stalled {stalled_peak / 1024:.1f} MiB; backend download "
                   f"ended: {gave_up}; stream {st.status} reset={st.reset}")
    assert st.status == 200, ctx
    assert rss.growth_mib < RSS_BOUND_MIB, (
        f"an h2 client that stops reading made postern buffer the backend's response{ctx}")
    print(f"slow reader: read {got / MiB:.1f} MiB; {rss}; backend download ended {gave_up}")
    assert gave_up is not None and gave_up[0] < SLOW_SIZE, (
        f"after the client left, postern must stop pulling the rest of the 256 MiB from the "
        f"backend (close that backend connection){ctx}")
