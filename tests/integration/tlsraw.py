"""Raw TLS 1.3 for tests that must send what no TLS library sends.

Two halves, both small on purpose:

- Before the handshake: client_hello() builds a ClientHello handshake
  message from explicit parts (suites, session id, key_share entries with
  given bytes, supported_versions, groups, signature algorithms, SNI, padding
  to a size, any extra extension), records() splits bytes into records of any
  sizes, and RawConn sends them and reads records back, with parse helpers for
  ServerHello / HelloRetryRequest, alerts and ChangeCipherSpec.

- After (or near the end of) a real handshake: Injector completes a handshake
  with Python's ssl over memory BIOs, takes the traffic secrets from the
  context's key log, derives record keys with HKDF-Expand-Label (RFC 8446 7.1,
  7.3), and then sends hand-made encrypted records (any inner content type,
  padding and sequence number) and decrypts what the server sends back, so a
  test can read an encrypted alert.

Only the TLS 1.3 AEAD suites exist here; nothing is checked that a test does
not ask for."""

import os
import socket
import ssl
import struct
import tempfile

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HOST = "127.0.0.1"

# Record content types (RFC 8446 5.1).
CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
# Handshake types (RFC 8446 4).
CLIENT_HELLO, SERVER_HELLO, NEW_SESSION_TICKET, KEY_UPDATE = 1, 2, 4, 24
# Named groups (RFC 8446 4.2.7).
SECP256R1, X25519 = 0x0017, 0x001D
# Alert descriptions (RFC 8446 6), by name and number.
ALERTS = {
    "close_notify": 0, "unexpected_message": 10, "bad_record_mac": 20, "record_overflow": 22,
    "handshake_failure": 40, "illegal_parameter": 47, "decode_error": 50, "decrypt_error": 51,
    "protocol_version": 70, "internal_error": 80, "missing_extension": 109,
}
ALERT_NAMES = {v: k for k, v in ALERTS.items()}
# The random of a HelloRetryRequest (RFC 8446 4.1.3).
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


# ------------------------------------------------------- building hellos --

def ext(kind, body):
    """One extension: type, 16-bit length, body."""
    return struct.pack("!HH", kind, len(body)) + body


def _vec16(body):
    return struct.pack("!H", len(body)) + body


def x25519_keypair():
    """(private key, public key bytes: 32, little-endian u)."""
    priv = x25519.X25519PrivateKey.generate()
    return priv, priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519_share():
    """A fresh X25519 public key (32 bytes, little-endian u)."""
    return x25519_keypair()[1]


def p256_share():
    """A fresh P-256 public key, uncompressed point (65 bytes)."""
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)


def handshake(msg_type, body):
    """A handshake message: type, 24-bit length, body."""
    return struct.pack("!B", msg_type) + struct.pack("!I", len(body))[1:] + body


def client_hello(key_shares=None, session_id=b"", suites=(0x1301, 0x1302, 0x1303),
                 versions=(0x0304,), groups=None, sig_algs=(0x0403, 0x0804, 0x0401),
                 sni="example.test", legacy_version=0x0303, size=None, extra=(),
                 random=None):
    """A ClientHello handshake message (header included).

    key_shares: list of (group, key bytes); default one fresh X25519 share.
    groups: supported_groups, default the key shares' groups then X25519 and
    P-256. size: pad (padding extension, RFC 7685) so that the whole message
    is this many bytes; the extension block is at most 65535 bytes, so this
    reaches about 64 KiB. extra: already encoded extensions, appended."""
    if key_shares is None:
        key_shares = [(X25519, x25519_share())]
    if groups is None:
        groups = [g for g, _ in key_shares]
        groups += [g for g in (X25519, SECP256R1) if g not in groups]
    exts = []
    if sni is not None:
        name = sni.encode()
        exts.append(ext(0, _vec16(struct.pack("!BH", 0, len(name)) + name)))
    exts.append(ext(43, bytes([2 * len(versions)]) + b"".join(struct.pack("!H", v) for v in versions)))
    exts.append(ext(10, _vec16(b"".join(struct.pack("!H", g) for g in groups))))
    exts.append(ext(13, _vec16(b"".join(struct.pack("!H", s) for s in sig_algs))))
    shares = b"".join(struct.pack("!HH", g, len(k)) + k for g, k in key_shares)
    exts.append(ext(51, _vec16(shares)))
    exts.extend(extra)

    def build(exts):
        body = (struct.pack("!H", legacy_version) + (random or os.urandom(32))
                + bytes([len(session_id)]) + session_id
                + _vec16(b"".join(struct.pack("!H", s) for s in suites))
                + b"\x01\x00" + _vec16(b"".join(exts)))
        return handshake(CLIENT_HELLO, body)

    msg = build(exts)
    if size is not None:
        missing = size - len(msg) - 4  # 4: the padding extension's header
        if missing < 0:
            raise ValueError(f"a ClientHello of {size} bytes is too small (minimum {len(msg) + 4})")
        msg = build(exts + [ext(21, b"\x00" * missing)])
        assert len(msg) == size
    return msg


def records(content_type, data, sizes=None, version=0x0301):
    """data split into plaintext records. sizes: the fragment sizes, the last
    one repeated until data runs out (default 2^14); a zero size makes an
    empty record."""
    sizes = list(sizes or [16384])
    out, i, n = b"", 0, 0
    while i < len(data) or (n < len(sizes) and sizes[n] == 0):
        size = sizes[min(n, len(sizes) - 1)]
        out += struct.pack("!BHH", content_type, version, size if i + size <= len(data)
                           else len(data) - i) + data[i:i + size]
        i += size
        n += 1
    return out


def record(content_type, data, version=0x0303):
    """One record, whatever its length."""
    return struct.pack("!BHH", content_type, version, len(data)) + data


# ------------------------------------------------------- reading replies --

def parse_server_hello(body):
    """A ServerHello or HelloRetryRequest handshake message (header
    included) -> dict: hrr, version (legacy), random, session_id, suite,
    extensions {type: bytes}."""
    assert body[0] == SERVER_HELLO, f"not a ServerHello: type {body[0]}"
    p = 4
    version, = struct.unpack("!H", body[p:p + 2])
    random = body[p + 2:p + 34]
    p += 34
    sid = body[p + 1:p + 1 + body[p]]
    p += 1 + body[p]
    suite, = struct.unpack("!H", body[p:p + 2])
    p += 3
    end = p + 2 + struct.unpack("!H", body[p:p + 2])[0]
    p += 2
    exts = {}
    while p < end:
        kind, n = struct.unpack("!HH", body[p:p + 4])
        exts[kind] = body[p + 4:p + 4 + n]
        p += 4 + n
    return {"hrr": random == HRR_RANDOM, "version": version, "random": random,
            "session_id": sid, "suite": suite, "extensions": exts}


def alert_name(desc):
    return ALERT_NAMES.get(desc, str(desc))


class RawConn:
    """A TCP connection that sends bytes and reads TLS records."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
        self.buf += d

    def read_record(self):
        """(type, version, body) of the next record, or None at EOF."""
        while len(self.buf) < 5 or len(self.buf) < 5 + struct.unpack("!H", self.buf[3:5])[0]:
            if self.eof:
                return None
            self._fill()
        t, v, n = struct.unpack("!BHH", self.buf[:5])
        body, self.buf = self.buf[5:5 + n], self.buf[5 + n:]
        return t, v, body

    def records_until_close(self, limit=64):
        """Every record until EOF (at most limit)."""
        out = []
        while len(out) < limit:
            r = self.read_record()
            if r is None:
                break
            out.append(r)
        return out

    def server_hello(self):
        """The first record, parsed as a ServerHello; AssertionError with what
        came instead (an alert, or EOF)."""
        r = self.read_record()
        assert r is not None, "the server closed instead of sending a ServerHello"
        if r[0] == ALERT:
            raise AssertionError(f"alert {alert_name(r[2][1])} instead of a ServerHello")
        assert r[0] == HANDSHAKE, f"record type {r[0]} instead of a ServerHello"
        return parse_server_hello(r[2])

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def expect_alert(records_seen):
    """The (level, description) of the first plaintext alert in a list of
    records, or None."""
    for t, _, body in records_seen:
        if t == ALERT and len(body) == 2:
            return body[0], body[1]
    return None


# ------------------------------------------------- encrypted records --

SUITES = {  # cipher name -> (AEAD, key length, hash)
    "TLS_AES_128_GCM_SHA256": (AESGCM, 16, hashes.SHA256),
    "TLS_AES_256_GCM_SHA384": (AESGCM, 32, hashes.SHA384),
    "TLS_CHACHA20_POLY1305_SHA256": (ChaCha20Poly1305, 32, hashes.SHA256),
}


def hkdf_expand_label(hash_cls, secret, label, context, length):
    """HKDF-Expand-Label (RFC 8446 7.1)."""
    full = b"tls13 " + label
    info = struct.pack("!H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context
    return HKDFExpand(hash_cls(), length, info).derive(secret)


class RecordKeys:
    """One direction's record protection (RFC 8446 5.2, 5.3, 7.3)."""

    def __init__(self, suite, secret):
        self.suite, self.secret = suite, secret
        aead, key_len, hash_cls = SUITES[suite]
        self.aead = aead(hkdf_expand_label(hash_cls, secret, b"key", b"", key_len))
        self.iv = hkdf_expand_label(hash_cls, secret, b"iv", b"", 12)
        self.seq = 0

    def updated(self):
        """The keys after a KeyUpdate (RFC 8446 7.2), sequence number 0."""
        hash_cls = SUITES[self.suite][2]
        return RecordKeys(self.suite, hkdf_expand_label(
            hash_cls, self.secret, b"traffic upd", b"", hash_cls.digest_size))

    def _nonce(self, seq):
        return bytes(a ^ b for a, b in zip(self.iv, seq.to_bytes(12, "big")))

    def seal(self, inner_type, content, pad=0, seq=None):
        """An encrypted record: content, inner type, pad zero bytes. seq None
        uses and advances the running sequence number."""
        if seq is None:
            seq, self.seq = self.seq, self.seq + 1
        inner = content + bytes([inner_type]) + b"\x00" * pad
        header = struct.pack("!BHH", APPLICATION_DATA, 0x0303, len(inner) + 16)
        return header + self.aead.encrypt(self._nonce(seq), inner, header)

    def open(self, header, body):
        """(inner type, content) of a received record."""
        inner = self.aead.decrypt(self._nonce(self.seq), body, header)
        self.seq += 1
        inner = inner.rstrip(b"\x00")
        return inner[-1], inner[:-1]


SUITE_NAMES = {0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
               0x1303: "TLS_CHACHA20_POLY1305_SHA256"}


def server_handshake_keys(suite, shared_secret, client_hello_msg, server_hello_msg):
    """The server's handshake traffic keys (RFC 8446 7.1) from the (EC)DHE
    shared secret and the two hello messages (headers included), for a
    handshake without PSK or HelloRetryRequest: decrypting the server's
    EncryptedExtensions with them proves the server computed the same
    secret."""
    name = SUITE_NAMES[suite]
    hash_cls = SUITES[name][2]
    size = hash_cls.digest_size

    def extract(salt, ikm):
        h = hmac.HMAC(salt, hash_cls())
        h.update(ikm)
        return h.finalize()

    def transcript(data):
        d = hashes.Hash(hash_cls())
        d.update(data)
        return d.finalize()

    early = extract(b"\x00" * size, b"\x00" * size)
    derived = hkdf_expand_label(hash_cls, early, b"derived", transcript(b""), size)
    hs = extract(derived, shared_secret)
    secret = hkdf_expand_label(hash_cls, hs, b"s hs traffic",
                               transcript(client_hello_msg + server_hello_msg), size)
    return RecordKeys(name, secret)


def _keylog(path):
    """{label: secret} from an NSS key log file (last line of each label)."""
    secrets = {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 3:
            secrets[parts[0]] = bytes.fromhex(parts[2])
    return secrets


class Injector:
    """A real TLS 1.3 client handshake (Python ssl over memory BIOs), after
    which the test speaks records itself: send_record() with the client's
    application traffic keys, read_records() decrypting with the server's.

    stop_before_finished: keep the client's Finished back, so that the test
    can send records protected with the client handshake traffic keys first
    (send_handshake_record()), then release_finished()."""

    def __init__(self, port, sni="example.test", ctx=None, stop_before_finished=False,
                 timeout=10):
        self._logdir = tempfile.TemporaryDirectory()
        log = os.path.join(self._logdir.name, "keys.log")
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.keylog_filename = log
        self.raw = RawConn(port, timeout)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_side=False, server_hostname=sni)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.raw.send(out.read())
                self.raw._fill()
                if self.raw.eof:
                    raise AssertionError("EOF during the TLS handshake")
                inc.write(self.raw.buf)
                self.raw.buf = b""
        self.finished = out.read()  # the client's second flight: [CCS] Finished
        # What the server sent after its Finished (tickets...) and OpenSSL did
        # not read is still in the BIO: it is read here as raw records.
        self.raw.buf = inc.read() + self.raw.buf
        self.suite = obj.cipher()[0]
        secrets = _keylog(log)
        self.client_hs = RecordKeys(self.suite, secrets["CLIENT_HANDSHAKE_TRAFFIC_SECRET"])
        self.client_hs.seq = 1  # the client's Finished used sequence number 0
        self.client = RecordKeys(self.suite, secrets["CLIENT_TRAFFIC_SECRET_0"])
        self.server = RecordKeys(self.suite, secrets["SERVER_TRAFFIC_SECRET_0"])
        if not stop_before_finished:
            self.release_finished()

    def release_finished(self):
        self.raw.send(self.finished)

    def send_handshake_record(self, inner_type, content, pad=0):
        """Before release_finished(): the Finished was sealed with handshake
        sequence 0, so this record (sequence 0) goes in its place."""
        self.client_hs.seq = 0
        self.raw.send(self.client_hs.seal(inner_type, content, pad))

    def send_record(self, inner_type, content, pad=0, seq=None):
        self.raw.send(self.client.seal(inner_type, content, pad, seq))

    def send_raw(self, data):
        self.raw.send(data)

    def read_records(self, limit=64):
        """[(outer type, inner type, content)] until EOF; records that are
        not application_data are returned as they came (inner type None)."""
        out = []
        while len(out) < limit:
            r = self.raw.read_record()
            if r is None:
                break
            t, v, body = r
            if t == APPLICATION_DATA:
                header = struct.pack("!BHH", t, v, len(body))
                out.append((t, *self.server.open(header, body)))
            else:
                out.append((t, None, body))
        return out

    def alert(self, limit=64):
        """The first alert the server sends, encrypted or not, as
        (level, description, encrypted), or None when it closes first."""
        for t, inner, content in self.read_records(limit):
            if inner == ALERT or (inner is None and t == ALERT):
                return content[0], content[1], inner is not None
        return None

    def close(self):
        self.raw.close()
        self._logdir.cleanup()
