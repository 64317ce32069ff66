"""What postern does with unusual but valid TLS 1.3 ClientHellos (issue 12,
the tlsfuzzer items): a server ignores what it does not recognise
(RFC 8446 9.3: "A server receiving a ClientHello MUST correctly ignore all
unrecognized cipher suites, extensions, and other parameters").

- signature_algorithms may list up to 2^15-1 schemes (RFC 8446 4.2.3),
  unknown or repeated ones included: the one postern can use is found
  wherever it is (.ci/wolfssl-sigalgs-long-list.patch; wolfSSL 5.5.4 kept
  the first 38 bytes and answered handshake_failure).
- Obsolete groups (RFC 8446 4.2.7: "MUST NOT be offered or negotiated by
  TLS 1.3 implementations") offered next to a usable one are ignored, not
  refused: RFC 8446 lets a server refuse a client's violations (4.2.8:
  "Servers MAY check for violations of these rules and abort the handshake
  with an illegal_parameter alert") but does not require it, and clients
  that enable TLS 1.2 and 1.3 send one group list for both.
- A second ClientHello, after a HelloRetryRequest, whose extensions come in
  another order is answered: RFC 8446 4.1.2 tells the client to send "the
  same ClientHello without modification, except as follows", and
  says nothing of the server checking it; 4.2 lets extensions "appear in
  any order" but pre_shared_key.
- An extension wolfSSL does not implement, such as compress_certificate
  (RFC 8879), is ignored even when its body is malformed: a server that
  does not implement it cannot judge it (RFC 8446 9.3).

The ClientHellos are made by hand: no TLS library sends such lists."""

import os
import socket
import struct

import pytest

from clients import HOST, config, free_port, listener

REC_ALERT, REC_HANDSHAKE = 21, 22
HS_SERVER_HELLO = 2
ALERT_HANDSHAKE_FAILURE = 40
# A valid X25519 public key (the base point, u = 9): wolfSSL checks the share.
X25519_BASE = b"\x09" + b"\x00" * 31
ECDSA_P256_SHA256 = 0x0403  # the scheme the test PKI's ECDSA P-256 leaf signs with


@pytest.fixture(scope="module")
def srv(pki, module_postern, module_backend):
    echo = module_backend.echo()
    port = free_port()
    p = module_postern(config([listener("hello", port, echo.addr, pki)], workers=1), [port])
    return p, port


def _ext(kind, body):
    return struct.pack("!HH", kind, len(body)) + body


def _vec16(items):
    body = b"".join(struct.pack("!H", i) for i in items)
    return struct.pack("!H", len(body)) + body


def client_hello(schemes, groups=(0x1d,), extra=b""):
    """A TLS 1.3 ClientHello (one record) for example.test with an X25519
    key share, signature_algorithms listing schemes, supported_groups
    listing groups, in order, and the extensions extra (encoded) last."""
    name = b"example.test"
    sni_list = struct.pack("!BH", 0, len(name)) + name
    exts = b"".join([
        _ext(0, struct.pack("!H", len(sni_list)) + sni_list),             # server_name
        _ext(43, b"\x02\x03\x04"),                                         # supported_versions
        _ext(10, _vec16(groups)),                                          # supported_groups
        _ext(13, _vec16(schemes)),                                         # signature_algorithms
        _ext(51, struct.pack("!HHH", 36, 0x1d, 32) + X25519_BASE),         # key_share
        extra,
    ])
    body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32) + b"\x00\x02\x13\x01"
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    assert len(hs) <= 1 << 14, "one record only"
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


def first_record(port, hello, timeout=10):
    """Sends hello; returns (content type, first two bytes of the first
    record postern answers with), or (None, b"") when it closes."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(hello)
        head = b""
        while len(head) < 7:
            data = s.recv(7 - len(head))
            if not data:
                break
            head += data
    if len(head) < 7:
        return None, head
    return head[0], head[5:7]


def assert_server_hello(p, kind, rest):
    assert kind is not None, f"postern closed without answering{p.context()}"
    assert (kind, rest[0]) == (REC_HANDSHAKE, HS_SERVER_HELLO), (
        f"expected a ServerHello, got record type {kind} {rest!r}"
        f"{' (handshake_failure)' if rest[1:] == bytes([ALERT_HANDSHAKE_FAILURE]) else ''}"
        f"{p.context()}")


# Schemes no one assigned (0x0a00-0x0aff is unassigned in the TLS
# SignatureScheme registry), then the one that works.
UNKNOWN_THEN_ECDSA = [0x0a00 + i for i in range(200)] + [ECDSA_P256_SHA256]
# Known schemes postern's ECDSA key cannot use (RSA-PSS, Ed25519, RSA
# PKCS#1), each listed many times, then the one that works.
REPEATED_THEN_ECDSA = [0x0804, 0x0805, 0x0806, 0x0807, 0x0401] * 40 + [ECDSA_P256_SHA256]
# The longest list one 2^14-byte record holds with the rest of the hello.
LONGEST_ONE_RECORD = [0x0a00 + (i % 256) for i in range(8000)] + [ECDSA_P256_SHA256]


@pytest.mark.parametrize("schemes", [UNKNOWN_THEN_ECDSA, REPEATED_THEN_ECDSA, LONGEST_ONE_RECORD],
                         ids=["200-unknown-first", "repeated-first", "8000-schemes"])
def test_long_signature_algorithms_list(srv, schemes):
    """RFC 8446 4.2.3 and 9.3: the usable scheme after many unknown or
    repeated ones still gets a ServerHello."""
    p, port = srv
    assert_server_hello(p, *first_record(port, client_hello(schemes)))


def test_short_signature_algorithms_list(srv):
    """The usual case is unchanged."""
    p, port = srv
    assert_server_hello(p, *first_record(port, client_hello([0x0804, ECDSA_P256_SHA256])))


@pytest.mark.parametrize("schemes", [[0x0101], [0x0a00 + i for i in range(100)], [0x0201, 0x0101]],
                         ids=["md5-only", "100-unknown", "sha1-md5"])
def test_no_known_scheme_still_refused(srv, schemes):
    """A list with no scheme wolfSSL implements is not taken for no list
    (wolfSSL's defaults): handshake_failure (RFC 8446 4.4.3)."""
    p, port = srv
    kind, rest = first_record(port, client_hello(schemes))
    assert kind == REC_ALERT and rest == bytes([2, ALERT_HANDSHAKE_FAILURE]), (
        f"expected a fatal handshake_failure, got record type {kind} {rest!r}{p.context()}")


def test_no_usable_scheme_still_refused(srv):
    """Filtering does not invent a scheme: with none the key can sign with,
    the handshake still fails with handshake_failure (RFC 8446 4.4.3)."""
    p, port = srv
    kind, rest = first_record(port, client_hello([0x0a00 + i for i in range(100)] + [0x0804]))
    assert kind == REC_ALERT and rest == bytes([2, ALERT_HANDSHAKE_FAILURE]), (
        f"expected a fatal handshake_failure, got record type {kind} {rest!r}{p.context()}")


# secp160k1, secp160r1, secp160r2 (TLS 1.2's curves, obsolete_RESERVED in
# TLS 1.3), brainpoolP256r1, P384r1, P512r1 as TLS 1.2 numbers them.
OBSOLETE = [0x000f, 0x0010, 0x0011, 0x001a, 0x001b, 0x001c]


@pytest.mark.parametrize("first", [True, False], ids=["obsolete-first", "obsolete-last"])
def test_obsolete_groups_ignored(srv, first):
    """RFC 8446 4.2.7 and 4.2.8: obsolete groups next to X25519 are ignored
    (a choice: the RFC allows refusing them with illegal_parameter)."""
    p, port = srv
    groups = OBSOLETE + [0x1d] if first else [0x1d] + OBSOLETE
    assert_server_hello(p, *first_record(port, client_hello([ECDSA_P256_SHA256], groups)))


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x02\x00\x01\x00", b"\x03\x00\x01\x00"],
                         ids=["empty", "truncated", "list-too-long", "odd-list"])
def test_malformed_unimplemented_extension_ignored(srv, body):
    """RFC 8446 9.3: compress_certificate (27), which wolfSSL 5.5.4 does not
    implement, is ignored whatever its body."""
    p, port = srv
    hello = client_hello([ECDSA_P256_SHA256], extra=_ext(27, body))
    assert_server_hello(p, *first_record(port, hello))


HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


def _hello_exts(shares, reverse=False):
    name = b"example.test"
    sni_list = struct.pack("!BH", 0, len(name)) + name
    exts = [
        _ext(0, struct.pack("!H", len(sni_list)) + sni_list),
        _ext(43, b"\x02\x03\x04"),
        _ext(10, _vec16([0x1d])),
        _ext(13, _vec16([ECDSA_P256_SHA256])),
        _ext(51, struct.pack("!H", len(shares)) + shares),
    ]
    return b"".join(reversed(exts) if reverse else exts)


def _hello_record(random, sid, exts):
    body = (b"\x03\x03" + random + bytes([len(sid)]) + sid + b"\x00\x02\x13\x01"
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


def _recv_exact(s, n):
    data = b""
    while len(data) < n:
        more = s.recv(n - len(data))
        if not more:
            break
        data += more
    return data


def _read_record(s):
    """The next record from s: (content type, fragment), or (None, b"")."""
    head = _recv_exact(s, 5)
    if len(head) < 5:
        return None, head
    return head[0], _recv_exact(s, struct.unpack("!H", head[3:5])[0])


def test_second_hello_reordered_answered(srv):
    """RFC 8446 4.1.2 and 4.2: after a HelloRetryRequest, a second
    ClientHello with its extensions in reverse order gets a ServerHello (a
    choice: nothing asks the server to compare the two)."""
    p, port = srv
    random, sid = os.urandom(32), os.urandom(32)
    share = struct.pack("!HH", 0x1d, 32) + X25519_BASE
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(_hello_record(random, sid, _hello_exts(b"")))  # no share: HelloRetryRequest
        kind, rec = _read_record(s)
        assert kind == REC_HANDSHAKE and rec[0] == HS_SERVER_HELLO and rec[6:38] == HRR_RANDOM, (
            f"expected a HelloRetryRequest, got {kind} {rec[:8]!r}{p.context()}")
        s.sendall(_hello_record(random, sid, _hello_exts(share, reverse=True)))
        kind, rec = _read_record(s)
        while kind == 20:  # a middlebox-compatibility ChangeCipherSpec (RFC 8446 D.4)
            kind, rec = _read_record(s)
    assert kind == REC_HANDSHAKE and rec[0] == HS_SERVER_HELLO and rec[6:38] != HRR_RANDOM, (
        f"expected a ServerHello, got record type {kind} {rec[:8]!r}{p.context()}")
