"""The TLS 1.3 compatibility ChangeCipherSpec (RFC 8446 D.4) from the
client's side: one, sent right after the ClientHello with the ClientHello's
record version 0x0301, is dropped (5: dropped "without further processing";
5.1: legacy_record_version "MUST be ignored for all purposes"); a second one,
or one whose body is not the single byte 0x01, is an unexpected_message (5).

The client is Python's ssl over memory BIOs: the test adds the extra record
to what it sends, and reads the server's alert through it."""

import socket
import ssl

import pytest

from clients import HOST, client_context, config, free_port, listener

CCS_0301 = b"\x14\x03\x01\x00\x01\x01"


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_backend):
    echo = module_backend.echo()
    port = free_port()
    p = module_postern(config([listener("ccs", port, echo.addr, pki)], workers=1), [port])
    return p, port


def handshake_with(port, pki, extra, compat):
    """A TLS 1.3 handshake whose ClientHello is followed, in the same write,
    by the bytes extra. compat: the client's own middlebox compatibility
    mode (a session id, and its own ChangeCipherSpec before its Finished).
    Returns (socket, SSLObject, in BIO, out BIO) once the client's side of
    the handshake is done; ssl.SSLError when the server's alert came
    instead."""
    ctx = client_context(pki)
    if not compat:
        ctx.options &= ~ssl.OP_ENABLE_MIDDLEBOX_COMPAT
    sock = socket.create_connection((HOST, port), timeout=10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="example.test")
    first = True
    while True:
        try:
            obj.do_handshake()
            sock.sendall(out.read())
            return sock, obj, inc, out
        except ssl.SSLWantReadError:
            data = out.read()
            if first:
                data += extra
                first = False
            sock.sendall(data)
            fill(sock, inc)


def fill(sock, inc):
    """Reads what the server sent into the BIO; at the end, marks it so, or
    fails when it was marked already (nothing more will come)."""
    got = sock.recv(65536)
    if got:
        inc.write(got)
    elif inc.eof:
        raise AssertionError("the server closed without an alert")
    else:
        inc.write_eof()


def read_alert(sock, obj, inc):
    """Reads until the server's alert; returns its reason as ssl names it."""
    with pytest.raises(ssl.SSLError) as err:
        while True:
            try:
                obj.read(1024)
            except ssl.SSLWantReadError:
                fill(sock, inc)
    return err.value.reason


def test_ccs_with_client_hello_record_version(srv, pki):
    """One ChangeCipherSpec with record version 0x0301 right after the
    ClientHello: dropped, and the connection works (it failed with "record
    layer version error" and no alert)."""
    p, port = srv
    sock, obj, inc, out = handshake_with(port, pki, CCS_0301, compat=False)
    try:
        obj.write(b"ping")
        sock.sendall(out.read())
        got = b""
        while got != b"ping":
            try:
                got += obj.read(4 - len(got))
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                assert data, f"closed by postern{p.context()}"
                inc.write(data)
    finally:
        sock.close()


def test_second_ccs(srv, pki):
    """The extra ChangeCipherSpec and then the client's own: the second one
    is an unexpected_message."""
    p, port = srv
    sock, obj, inc, _ = handshake_with(port, pki, CCS_0301, compat=True)
    try:
        assert read_alert(sock, obj, inc) == "SSLV3_ALERT_UNEXPECTED_MESSAGE", p.context()
    finally:
        sock.close()


def test_ccs_other_value(srv, pki):
    """A ChangeCipherSpec whose body is 0x02: unexpected_message (it was
    illegal_parameter)."""
    p, port = srv
    sock, obj, inc, _ = handshake_with(port, pki, b"\x14\x03\x03\x00\x01\x02", compat=False)
    try:
        assert read_alert(sock, obj, inc) == "SSLV3_ALERT_UNEXPECTED_MESSAGE", p.context()
    finally:
        sock.close()
