"""The connection log line (one per connection, at close, log_level info)
names the client's address and port, the server name it asked for
(lower-cased, in full up to 255 bytes) and why the connection ended, also
when the handshake failed. These strings are kept outside pst_conn_t, sized
to their text (an idle connection's memory): these tests hold them to what
they showed when they were fixed-size arrays."""

import re
import ssl
import time

import pytest

from clients import HOST, client_context, config, connect_tls, free_port, listener, recv_exact


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_backend):
    echo = module_backend.echo()
    port = free_port()
    p = module_postern(config([listener("logged", port, echo.addr, pki)], workers=1), [port])
    return p, port


def conn_line(p, pattern, timeout=10):
    """The first connection log line matching pattern (a regex), waiting for
    the connection to close and log."""
    deadline = time.monotonic() + timeout
    while True:
        for line in p.stderr().splitlines():
            if re.search(r"\bconn \d+ client=", line) and re.search(pattern, line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no connection log line matching {pattern!r}{p.context()}")
        time.sleep(0.05)


def echo_once(port, sni, pki):
    """One connection: handshake with sni, one echoed message, close.
    Returns the client's own port."""
    ctx = client_context(pki, verify=False)
    s = connect_tls(port, sni, ctx)
    try:
        local_port = s.getsockname()[1]
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
    finally:
        s.close()
    return local_port


def test_client_and_sni_logged(srv, pki):
    p, port = srv
    local = echo_once(port, "Mixed.Example.Test", pki)
    line = conn_line(p, rf"client={re.escape(HOST)}:{local}\b")
    assert " sni=mixed.example.test " in line, f"lower-cased SNI expected in {line!r}{p.context()}"
    assert " listener=logged " in line, line
    assert " version=TLSv1.3 " in line, line


def test_long_sni_logged_in_full(srv, pki):
    p, port = srv
    # 4 labels of 62 + the dots: 251 bytes, near RFC 6066's 255 limit.
    name = ".".join(["A" * 61 + str(i) for i in range(4)])
    local = echo_once(port, name, pki)
    line = conn_line(p, rf"client={re.escape(HOST)}:{local}\b")
    assert f" sni={name.lower()} " in line, f"the whole name, lower-cased, expected: {line!r}"


def test_no_sni_logged_as_dash(srv, pki):
    p, port = srv
    local = echo_once(port, None, pki)
    line = conn_line(p, rf"client={re.escape(HOST)}:{local}\b")
    assert " sni=- " in line, line


def test_failed_handshake_reason_and_sni(srv, pki):
    """A TLS 1.2 client against a TLS 1.3-only listener: the line says the
    handshake failed, with wolfSSL's reason, and which name was asked for."""
    p, port = srv
    ctx = client_context(pki, verify=False, max_version=ssl.TLSVersion.TLSv1_2)
    raw = None
    try:
        raw = connect_tls(port, "Failed.Example.Test", ctx)
    except (ssl.SSLError, OSError):
        pass
    finally:
        if raw is not None:
            raw.close()
    line = conn_line(p, r"close=handshake failed: \S")
    assert re.search(rf"client={re.escape(HOST)}:\d+ ", line), line
    assert " handshake_ms=0.00 " in line, line
