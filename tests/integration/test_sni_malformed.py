"""A server_name that is not a DNS host name (RFC 6066 3: ASCII, no trailing
dot) is refused in the ClientHello with a fatal illegal_parameter alert,
before it is routed or logged; what is logged of it is escaped, so a CR, LF or
ESC in a name cannot forge a log line, and a NUL cannot make routing and
certificate selection see two different names. Well-formed names, including
underscores and the longest allowed, still get their handshake.

The ClientHellos are made by hand: no TLS library sends such names."""

import os
import re
import socket
import struct
import time

import pytest

from clients import HOST, config, free_port, listener

ALERT_ILLEGAL_PARAMETER = 47
# A valid X25519 public key (the base point, u = 9): wolfSSL checks the share.
X25519_BASE = b"\x09" + b"\x00" * 31


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_backend):
    echo = module_backend.echo()
    port = free_port()
    p = module_postern(config([listener("names", port, echo.addr, pki)], workers=1), [port])
    return p, port


def _ext(kind, body):
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(name):
    """A TLS 1.3 ClientHello record whose server_name is the bytes name."""
    sni_list = struct.pack("!BH", 0, len(name)) + name
    exts = b"".join([
        _ext(0, struct.pack("!H", len(sni_list)) + sni_list),             # server_name
        _ext(43, b"\x02\x03\x04"),                                         # supported_versions
        _ext(10, b"\x00\x02\x00\x1d"),                                     # supported_groups
        _ext(13, b"\x00\x04\x04\x03\x08\x04"),                             # signature_algorithms
        _ext(51, struct.pack("!HHH", 36, 0x1d, 32) + X25519_BASE),         # key_share
    ])
    body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32) + b"\x00\x02\x13\x01"
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def first_record(port, name, timeout=10):
    """Sends a ClientHello for name; returns (content type, first bytes of the
    first record postern answers with), or (None, b"") when it closes."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(client_hello(name))
        head = b""
        while len(head) < 7:
            data = s.recv(7 - len(head))
            if not data:
                break
            head += data
    if len(head) < 5:
        return None, head
    return head[0], head[5:]


BAD = [
    b"forged.test\r\n2026-01-01T00:00:00Z postern[1]: INFO: FORGED line",
    b"esc\x1b[31m.test",
    b"cut\x00.example.test",
    b"example.test.",        # trailing dot: RFC 6066 3 says without
    b".example.test",        # empty first label
    b"a..example.test",      # empty label
    b"sp ace.test",
    b"x" * 64 + b".test",    # a label over 63 bytes
    b"caf\xc3\xa9.test",     # not ASCII (U-labels are not HostNames)
]


@pytest.mark.parametrize("name", BAD, ids=[repr(n)[2:22] for n in BAD])
def test_malformed_name_refused(srv, name):
    p, port = srv
    kind, rest = first_record(port, name)
    assert kind == 21 and len(rest) == 2 and rest[0] == 2, (
        f"expected a fatal alert, got record type {kind} {rest!r}{p.context()}")
    assert rest[1] == ALERT_ILLEGAL_PARAMETER, (
        f"expected illegal_parameter (47), got alert {rest[1]}{p.context()}")


def test_refused_name_logged_escaped(srv):
    p, port = srv
    name = b"Inject.test\r\nFORGED-LINE \x1b[2J\x00tail"
    kind, rest = first_record(port, name)
    assert kind == 21, f"expected an alert, got {kind} {rest!r}{p.context()}"
    m = p.wait_log(r"conn \d+ client=\S+ listener=names sni=(inject\S*) .*close=handshake refused: "
                 r"the server name is not a DNS host name")
    assert m.group(1) == r"inject.test\x0d\x0aforged-line\x20\x1b[2j\x00tail", m.group(0)
    raw = open(p.stderr_path, "rb").read()
    assert b"\x1b" not in raw and b"\x00" not in raw, "a raw ESC or NUL reached the log"
    assert not any(line.startswith(b"FORGED") for line in raw.splitlines()), raw[-2000:]


GOOD = [b"example.test", b"Mixed-Case.Example.Test", b"under_score.example.test",
        b".".join([b"a" * 63] * 3 + [b"b" * 61])]  # 253 bytes, labels of 63


@pytest.mark.parametrize("name", GOOD, ids=[n[:20].decode() for n in GOOD])
def test_well_formed_name_gets_server_hello(srv, name):
    p, port = srv
    kind, rest = first_record(port, name)
    assert kind == 22, f"expected a handshake record (ServerHello), got {kind} {rest!r}{p.context()}"
