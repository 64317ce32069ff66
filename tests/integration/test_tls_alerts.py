"""A record that fails after the handshake ends the connection with the fatal
alert RFC 8446 6.2 asks for, sent before the close: the client reads which
alert, rather than a bare TCP close. (Before, the read-failure path closed
the socket without writing what wolfSSL had queued.) The record is written
raw on the socket under a real TLS 1.3 session; the alert comes back
encrypted and Python's ssl names it. test_tls_conformance.py checks the
alert for each other kind of bad record (CCS after Finished, overflow,
content type 0, KeyUpdate)."""

import socket
import ssl

import pytest

from clients import MemTls, client_context, config, free_port, listener


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_backend):
    echo = module_backend.echo()
    port = free_port()
    p = module_postern(config([listener("alerts", port, echo.addr, pki)], workers=1), [port])
    return p, port


def alert_after(port, pki, raw):
    """Completes a handshake, proves the session works, writes raw on the
    socket, and returns the reason of the alert the client then reads."""
    c = MemTls(port, "example.test", client_context(pki))
    try:
        c.handshake()
        c.send(b"ping")
        got = b""
        while got != b"ping":
            try:
                got += c.obj.read(4 - len(got))
            except ssl.SSLWantReadError:
                assert c._fill(), "EOF before the echo"
        c.sock.sendall(raw)
        with pytest.raises(ssl.SSLError) as err:
            data, how = c.read_until_close()
            raise AssertionError(f"no alert: {how} after {data!r}")
        return err.value.reason
    finally:
        c.close()


def test_bad_record_mac(srv, pki):
    """RFC 8446 5.2: a record that does not decrypt is a bad_record_mac."""
    p, port = srv
    reason = alert_after(port, pki, b"\x17\x03\x03\x00\x20" + b"\x5a" * 32)
    assert reason == "SSLV3_ALERT_BAD_RECORD_MAC", p.context()


def test_others_unharmed(srv, pki):
    """After a failed record, other connections still get their echo."""
    p, port = srv
    alert_after(port, pki, b"\x17\x03\x03\x00\x20" + b"\x5a" * 32)
    c = MemTls(port, "example.test", client_context(pki))
    try:
        c.handshake()
        c.send(b"still here")
        got = b""
        while len(got) < 10:
            try:
                got += c.obj.read(10 - len(got))
            except ssl.SSLWantReadError:
                assert c._fill()
        assert got == b"still here"
    finally:
        c.close()


def test_alert_then_fin_with_client_still_sending(srv, pki):
    """The client's bad record comes with 256 KiB more behind it: postern
    sends the alert and its FIN, and reads and drops what still arrives
    until the client's own end instead of closing with unread bytes (a
    reset, which some stacks let destroy the alert not yet read). The client
    reads the alert, then sees a clean end: no reset."""
    p, port = srv
    c = MemTls(port, "example.test", client_context(pki))
    try:
        c.handshake()
        c.sock.sendall(b"\x17\x03\x03\x00\x20" + b"\x5a" * 32 + b"\x17\x03\x03\x40\x00" * 52429)
        with pytest.raises(ssl.SSLError) as err:
            c.read_until_close()
        assert err.value.reason == "SSLV3_ALERT_BAD_RECORD_MAC", p.context()
        c.sock.shutdown(socket.SHUT_WR)
        c.sock.settimeout(5)
        try:
            rest = c.sock.recv(65536)
        except ConnectionResetError:
            rest = None
        assert rest == b"", f"after the alert: {rest!r} (None: reset){p.context()}"
    finally:
        c.close()
