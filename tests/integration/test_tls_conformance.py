"""TLS 1.3 conformance at the edges no TLS library's client reaches (issue 12),
with hand-made records (tlsraw.py): X25519 keys with the top bit set
(RFC 7748 5), ClientHellos over 2^14 bytes and in records of 1 to 3 bytes
(RFC 8446 5.1), middlebox compatibility mode (RFC 8446 D.4), and the alert
RFC 8446 names for each malformed input, during and after the handshake
(after it, the alert reaches the client because every TLS failure path in
src/conn.c sends what wolfSSL queued)."""

import struct
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

import tlsraw
from clients import config, free_port, listener
from tlsraw import (ALERT, ALERTS, APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE, KEY_UPDATE,
                    SECP256R1, X25519, Injector, RawConn, alert_name, client_hello, handshake,
                    record, records, x25519_keypair)

@pytest.fixture(scope="module")
def servers(pki, module_postern, module_backend):
    """Two listeners: "tls13" (TLS 1.3 only: wolfSSL reads the first
    ClientHello with its TLS 1.3 code) and "both" (1.2 and 1.3: the first
    ClientHello goes through its TLS 1.2 code)."""
    echo = module_backend.echo()
    ports = {"tls13": free_port(), "both": free_port()}
    ls = [listener(name, port, echo.addr, pki) for name, port in ports.items()]
    ls[1]["tls"]["versions"] = ["tls1.2", "tls1.3"]
    p = module_postern(config(ls, workers=1), ports.values())
    return p, ports


@pytest.fixture(scope="module")
def srv(servers):
    p, ports = servers
    return p, ports["tls13"]


@pytest.fixture(scope="module", params=["tls13", "both"])
def any_srv(servers, request):
    p, ports = servers
    return p, ports[request.param]


def hello_reply(port, data):
    """Sends data on a fresh connection; returns every record until close."""
    with RawConn(port) as c:
        c.send(data)
        return c.records_until_close()


def assert_alert(recs, name, p):
    """The server's answer ended with one fatal alert name (plaintext), and
    nothing came after it (RFC 8446 6.2)."""
    kinds = [(t, body[:2]) for t, _, body in recs]
    alert = tlsraw.expect_alert(recs)
    assert alert is not None, f"no alert, got {kinds}{p.context()}"
    assert alert == (2, ALERTS[name]), (
        f"expected fatal {name}, got level {alert[0]} {alert_name(alert[1])}{p.context()}")
    assert recs[-1][0] == ALERT and sum(t == ALERT for t, _, _ in recs) == 1, (
        f"more after the alert: {kinds}{p.context()}")


def assert_server_hello(recs, p):
    assert recs, f"closed without a ServerHello{p.context()}"
    t, _, body = recs[0]
    assert t == HANDSHAKE and body[0] == 2, (
        f"expected a ServerHello, got {[(t, b[:2]) for t, _, b in recs]}{p.context()}")
    assert tlsraw.expect_alert(recs) is None, f"alert after ServerHello {recs}{p.context()}"
    sh = tlsraw.parse_server_hello(body)
    assert not sh["hrr"], "HelloRetryRequest instead of ServerHello"
    return sh


def hello_flight(port, ch_bytes):
    """ServerHello flight records, read until the server waits (no close):
    reads records for a short while."""
    c = RawConn(port, timeout=2)
    c.send(ch_bytes)
    recs = []
    try:
        while True:
            r = c.read_record()
            if r is None:
                break
            recs.append(r)
            if r[0] == APPLICATION_DATA and len(recs) >= 3:
                break
    except OSError:
        pass
    c.close()
    return recs


# ------------------------------------------------------- 1. X25519 top bit --

def test_x25519_top_bit_masked(any_srv):
    """RFC 7748 5: the receiver masks the u-coordinate's top bit (sslscan 2.0.7
    sets it). The server's EncryptedExtensions decrypts with keys made from
    the masked key's shared secret: the server used u, not u + 2^255 (or that
    reduced modulo p)."""
    p, port = any_srv
    priv, share = x25519_keypair()
    sent = bytearray(share)
    sent[31] |= 0x80
    ch = client_hello([(X25519, bytes(sent))], suites=(0x1301,))
    recs = hello_flight(port, records(HANDSHAKE, ch))
    sh = assert_server_hello(recs, p)
    group, n = struct.unpack("!HH", sh["extensions"][51][:4])
    assert group == X25519
    server_pub = x25519.X25519PublicKey.from_public_bytes(sh["extensions"][51][4:4 + n])
    keys = tlsraw.server_handshake_keys(sh["suite"], priv.exchange(server_pub), ch, recs[0][2])
    t, v, body = next(r for r in recs if r[0] == APPLICATION_DATA)
    inner, content = keys.open(struct.pack("!BHH", t, v, len(body)), body)
    assert inner == HANDSHAKE and content[0] == 8, "not EncryptedExtensions"


# --------------------------------------------- 2. and 3. ClientHello size --

@pytest.mark.parametrize("size", [16385, 40000, 65000])
def test_large_client_hello_accepted(any_srv, size):
    """A ClientHello over 2^14 bytes, in several records (RFC 8446 5.1), up to
    postern's bound of 64 KiB (docs/wolfssl.md)."""
    p, port = any_srv
    recs = hello_flight(port, records(HANDSHAKE, client_hello(size=size)))
    assert_server_hello(recs, p)


def test_client_hello_over_bound_refused(any_srv):
    """A handshake message announced over 64 KiB ends with decode_error as soon
    as its header is read (RFC 8446 6.2: a length out of the accepted range)."""
    p, port = any_srv
    head = bytes([1]) + struct.pack("!I", 65536 + 1)[1:]
    recs = hello_reply(port, record(HANDSHAKE, head + b"\x03\x03" + b"\x00" * 200, 0x0301))
    assert_alert(recs, "decode_error", p)


@pytest.mark.parametrize("sizes", [[1], [2], [3], [1, 2, 3, 3000]], ids=["1", "2", "3", "1-2-3"])
def test_client_hello_in_tiny_records(any_srv, sizes):
    """Handshake messages may be split across records at any byte, even inside
    the 4-byte handshake header (RFC 8446 5.1)."""
    p, port = any_srv
    recs = hello_flight(port, records(HANDSHAKE, client_hello(), sizes))
    assert_server_hello(recs, p)


# -------------------------------------------------- 4. middlebox compat --

@pytest.mark.parametrize("sid", [b"", b"\x42" * 32], ids=["no-session-id", "session-id"])
def test_middlebox_ccs_after_server_hello(srv, sid):
    """RFC 8446 D.4: a ChangeCipherSpec right after the ServerHello when the
    client sent a legacy_session_id, and none when it did not."""
    p, port = srv
    recs = hello_flight(port, records(HANDSHAKE, client_hello(session_id=sid)))
    sh = assert_server_hello(recs, p)
    assert sh["session_id"] == sid
    second = recs[1][0] if len(recs) > 1 else None
    if sid:
        assert recs[1] == (CHANGE_CIPHER_SPEC, 0x0303, b"\x01"), f"{recs[:3]}{p.context()}"
        assert recs[2][0] == APPLICATION_DATA
    else:
        assert second == APPLICATION_DATA, f"{recs[:3]}{p.context()}"
    assert sum(1 for t, _, _ in recs if t == CHANGE_CIPHER_SPEC) <= 1


@pytest.mark.parametrize("sid", [b"", b"\x42" * 32], ids=["no-session-id", "session-id"])
def test_middlebox_ccs_after_hello_retry_request(srv, sid):
    """D.4 again: with a HelloRetryRequest (no key share the server takes), the
    CCS follows the HRR, in the same write, and only once."""
    p, port = srv
    with RawConn(port, timeout=5) as c:
        c.send(records(HANDSHAKE, client_hello(key_shares=[], groups=[X25519], session_id=sid)))
        hrr = c.read_record()
        assert hrr and hrr[0] == HANDSHAKE and tlsraw.parse_server_hello(hrr[2])["hrr"], (
            f"{hrr}{p.context()}")
        time.sleep(0.2)  # both in one write: the CCS is already here
        c.sock.setblocking(False)
        try:
            c.buf += c.sock.recv(65536)
        except BlockingIOError:
            pass
        c.sock.setblocking(True)
        if sid:
            assert c.buf == record(CHANGE_CIPHER_SPEC, b"\x01"), f"{c.buf!r}{p.context()}"
        else:
            assert c.buf == b"", f"{c.buf!r}{p.context()}"
        c.buf = b""
        # Records after the first ClientHello say 0x0303 (RFC 8446 5.1).
        c.send(records(HANDSHAKE, client_hello(session_id=sid), version=0x0303))
        c.sock.settimeout(2)
        r = c.read_record()
        assert r[0] == HANDSHAKE and r[2][0] == 2, f"{r}{p.context()}"
        r = c.read_record()
        assert r[0] == APPLICATION_DATA, f"a second CCS or else: {r}{p.context()}"


# ------------------------------------------------- 5. alerts, handshake --

@pytest.mark.parametrize("legacy", [0x0302, 0x0301, 0x0300, 0x0200, 0x0102, 0x0000])
def test_legacy_version_too_old(any_srv, legacy):
    """RFC 8446 D.5: legacy_version 0x0300 or less -> protocol_version, and
    only that alert (tlsfuzzer test-tls13-legacy-version.py); wolfSSL treats
    TLS 1.0 and 1.1 the same way."""
    p, port = any_srv
    recs = hello_reply(port, records(HANDSHAKE, client_hello(
        legacy_version=legacy, versions=(0x0304, legacy))))
    assert_alert(recs, "protocol_version", p)


BAD_SHARES = {
    "p256-off-curve": (SECP256R1, b"\x04" + b"\x01" * 64),
    # SP 800-56A 5.6.2.3.4, the checks left once wolfssl-partial-ecc-validation.patch
    # drops n*Q for P-256: the point at infinity; x = p with y^2 = b, which is on
    # the curve if x is taken mod p (as (0, sqrt(b))) but out of range.
    "p256-infinity": (SECP256R1, b"\x04" + b"\x00" * 64),
    "p256-x-is-p": (SECP256R1, b"\x04" + bytes.fromhex(
        "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
        "66485c780e2f83d72433bd5d84a06bb6541c2af31dae871728bf856a174f93f4")),
    "p256-compressed": (SECP256R1, b"\x02" + b"\x01" * 32),
    "x25519-zero": (X25519, b"\x00" * 32),
    "x25519-one": (X25519, b"\x01" + b"\x00" * 31),
    "x25519-short": (X25519, b"\x09" * 31),
}


@pytest.mark.parametrize("name", BAD_SHARES)
def test_invalid_key_share(any_srv, name):
    """RFC 8446 4.2.8.1-2 (and 7.4.2 for a zero X25519 secret): illegal_parameter."""
    p, port = any_srv
    share = BAD_SHARES[name]
    recs = hello_reply(port, records(HANDSHAKE, client_hello([share], groups=[share[0]])))
    assert_alert(recs, "illegal_parameter", p)


def test_zero_length_handshake_fragment(any_srv):
    """RFC 8446 5.1: no zero-length handshake fragments -> unexpected_message."""
    p, port = any_srv
    ch = client_hello()
    recs = hello_reply(port, record(HANDSHAKE, b"", 0x0301) + records(HANDSHAKE, ch))
    assert_alert(recs, "unexpected_message", p)


@pytest.mark.parametrize("after", [0, 2], ids=["first", "after-2-bytes"])
def test_zero_length_app_data_plaintext(any_srv, after):
    """A zero-length plaintext application data record before the keys
    (alone, or between ClientHello fragments: RFC 8446 5.1 forbids
    interleaving) -> unexpected_message (tlsfuzzer
    test-tls13-zero-length-data.py), not bad_record_mac."""
    p, port = any_srv
    ch = client_hello()
    data = record(HANDSHAKE, ch[:after], 0x0301) if after else b""
    data += record(APPLICATION_DATA, b"", 0x0303) + (b"" if after else records(HANDSHAKE, ch))
    assert_alert(hello_reply(port, data), "unexpected_message", p)


def test_plaintext_client_hello_record_overflow(any_srv):
    """RFC 8446 5.1: a plaintext record over 2^14 bytes -> record_overflow
    (tlsfuzzer test-tls13-record-layer-limits.py)."""
    p, port = any_srv
    ch = client_hello(size=2 ** 14 + 100)
    assert_alert(hello_reply(port, record(HANDSHAKE, ch, 0x0301)), "record_overflow", p)


def test_ccs_with_legacy_record_version(srv):
    """RFC 8446 5.1: legacy_record_version is ignored: a client's middlebox
    CCS sent with 0x0301 right after its ClientHello leaves the handshake
    going (no alert, no close)."""
    p, port = srv
    with RawConn(port, timeout=5) as c:
        c.send(records(HANDSHAKE, client_hello(session_id=b"\x01" * 32))
               + record(CHANGE_CIPHER_SPEC, b"\x01", 0x0301))
        assert c.server_hello()
        c.sock.settimeout(1.0)
        seen = []
        try:
            while True:
                r = c.read_record()
                if r is None:
                    break
                seen.append(r[0])
        except TimeoutError:
            seen.append("waiting")
    assert seen[-1] == "waiting" and ALERT not in seen, f"{seen}{p.context()}"


@pytest.mark.parametrize("ccs", [b"\x01\x01", b"\x02", b"\x01\x00"], ids=["two", "value-2", "two-bytes"])
def test_bad_or_second_ccs(srv, ccs):
    """RFC 8446 5: a change_cipher_spec other than the single byte 1, or a
    second one (D.4: one; tlsfuzzer test-tls13-multiple-ccs-messages.py) ->
    unexpected_message. Sent before the client's Finished; the server, past
    its own Finished, answers with its application keys."""
    p, port = srv
    inj = Injector(port, stop_before_finished=True)
    try:
        if ccs == b"\x01\x01":
            inj.send_raw(record(CHANGE_CIPHER_SPEC, b"\x01") * 2)
        else:
            inj.send_raw(record(CHANGE_CIPHER_SPEC, ccs))
        alert = inj.alert()
    finally:
        inj.close()
    assert alert == (2, ALERTS["unexpected_message"], True), f"{alert}{p.context()}"


def test_plaintext_alert_before_client_finished(srv):
    """A client that cannot read the server's flight may send a plaintext
    alert before any protected record: the server closes without answering
    (tlsfuzzer test-tls13-unencrypted-alert.py, as OpenSSL does)."""
    p, port = srv
    inj = Injector(port, stop_before_finished=True)
    try:
        inj.send_raw(record(ALERT, bytes([2, 48])))  # fatal unknown_ca
        recs = inj.raw.records_until_close()
    finally:
        inj.close()
    assert recs == [], f"expected a silent close, got {recs}{p.context()}"


def test_zero_length_app_data_with_padding_in_handshake(srv):
    """Application data (even empty, padded) before the client's Finished ->
    unexpected_message (tlsfuzzer test-tls13-zero-length-data.py). The record
    is sealed with the client's handshake keys; the server, past its own
    Finished, answers with its application keys."""
    p, port = srv
    inj = Injector(port, stop_before_finished=True)
    try:
        inj.send_handshake_record(APPLICATION_DATA, b"", pad=16)
        alert = inj.alert()
    finally:
        inj.close()
    assert alert == (2, ALERTS["unexpected_message"], True), f"{alert}{p.context()}"


# ---------------------------------------------- 5. alerts, after handshake --

def post_alert(port, send, p):
    inj = Injector(port)
    try:
        send(inj)
        alert = inj.alert()
    finally:
        inj.close()
    return alert


def test_ccs_after_finished(srv):
    """RFC 8446 5: a ChangeCipherSpec after Finished -> unexpected_message."""
    p, port = srv
    alert = post_alert(port, lambda i: i.send_raw(record(CHANGE_CIPHER_SPEC, b"\x01")), p)
    assert alert and alert[:2] == (2, ALERTS["unexpected_message"]), f"{alert}{p.context()}"


def test_plaintext_alert_after_handshake(srv):
    """A plaintext alert after the handshake is not a protected record
    (RFC 8446 5.2) -> unexpected_message, not a silent close."""
    p, port = srv
    alert = post_alert(port, lambda i: i.send_raw(record(ALERT, b"\x01\x00")), p)
    assert alert and alert[:2] == (2, ALERTS["unexpected_message"]), f"{alert}{p.context()}"


def test_record_overflow(srv):
    """RFC 8446 5.2: a ciphertext over 2^14 + 256 bytes -> record_overflow."""
    p, port = srv
    body = b"\x00" * (2 ** 14 + 256 + 1)
    alert = post_alert(port, lambda i: i.send_raw(record(APPLICATION_DATA, body)), p)
    assert alert and alert[:2] == (2, ALERTS["record_overflow"]), f"{alert}{p.context()}"


def test_inner_content_type_zero(srv):
    """RFC 8446 5.4: no non-zero byte in the plaintext -> unexpected_message."""
    p, port = srv
    alert = post_alert(port, lambda i: i.send_record(0, b"", pad=10), p)
    assert alert and alert[:2] == (2, ALERTS["unexpected_message"]), f"{alert}{p.context()}"


def test_key_update_invalid_value(srv):
    """RFC 8446 4.6.3: request_update other than 0 or 1 -> illegal_parameter."""
    p, port = srv
    alert = post_alert(port, lambda i: i.send_record(HANDSHAKE, handshake(KEY_UPDATE, b"\x02")), p)
    assert alert and alert[:2] == (2, ALERTS["illegal_parameter"]), f"{alert}{p.context()}"


def test_key_update_empty(srv):
    """A KeyUpdate without its one byte is a message of the wrong length:
    decode_error (RFC 8446 6.2)."""
    p, port = srv
    alert = post_alert(port, lambda i: i.send_record(HANDSHAKE, handshake(KEY_UPDATE, b"")), p)
    assert alert and alert[:2] == (2, ALERTS["decode_error"]), f"{alert}{p.context()}"


def test_key_update_interleaved_with_app_data(srv):
    """RFC 8446 5.1: a handshake message split by an application data record
    -> unexpected_message."""
    p, port = srv

    def send(i):
        ku = handshake(KEY_UPDATE, b"\x00")
        i.send_record(HANDSHAKE, ku[:2])
        i.send_record(APPLICATION_DATA, b"x")
        i.send_record(HANDSHAKE, ku[2:])
    alert = post_alert(port, send, p)
    assert alert and alert[:2] == (2, ALERTS["unexpected_message"]), f"{alert}{p.context()}"


def test_two_key_updates_in_one_record(srv):
    """RFC 8446 5.1: a KeyUpdate changes keys, so it must end its record;
    two in one record -> unexpected_message (tlsfuzzer
    test-tls13-keyupdate.py)."""
    p, port = srv
    ku = handshake(KEY_UPDATE, b"\x01")
    alert = post_alert(port, lambda i: i.send_record(HANDSHAKE, ku + ku), p)
    assert alert and alert[:2] == (2, ALERTS["unexpected_message"]), f"{alert}{p.context()}"


@pytest.mark.parametrize("split", [1, 2, 4], ids=["1-4", "2-3", "4-1"])
def test_key_update_fragmented(srv, split):
    """RFC 8446 5.1: a KeyUpdate may be split over records (tlsfuzzer
    test-tls13-keyupdate.py "fragmented keyupdate msg"); data under the new
    keys then reaches the backend and its echo comes back."""
    p, port = srv
    inj = Injector(port)
    try:
        ku = handshake(KEY_UPDATE, b"\x00")  # update_not_requested
        inj.send_record(HANDSHAKE, ku[:split])
        inj.send_record(HANDSHAKE, ku[split:])
        inj.client = inj.client.updated()
        inj.send_record(APPLICATION_DATA, b"ping")
        assert echo_of(inj, 4, p) == b"ping"
    finally:
        inj.close()


def echo_of(inj, n, p):
    got = b""
    while len(got) < n:
        r = inj.raw.read_record()
        assert r is not None, f"closed after {got!r}{p.context()}"
        t, v, body = r
        inner, content = inj.server.open(struct.pack("!BHH", t, v, len(body)), body)
        if inner == ALERT:
            raise AssertionError(f"alert {alert_name(content[1])}{p.context()}")
        if inner == APPLICATION_DATA:
            got += content
    return got


def test_injector_round_trip(srv):
    """The injector's keys are right: a hand-sealed record reaches the echo
    backend and its echo decrypts."""
    p, port = srv
    inj = Injector(port)
    try:
        inj.send_record(APPLICATION_DATA, b"ping", pad=5)
        assert echo_of(inj, 4, p) == b"ping"
    finally:
        inj.close()
