"""The builtin:info backend: an HTTP/1.1 page (HTML, or JSON on
Accept: application/json) describing the TLS handshake of the very
connection it is served on."""

import json
import re
import subprocess

import pytest

from clients import HOST, client_context, config, connect_tls, curl, free_port, listener

KEYS = {"listener", "client", "sni", "alpn", "version", "cipher", "group", "resumed",
        "early_data", "handshake_ms", "chain"}


@pytest.fixture(scope="module")
def srv(pki, module_postern):
    ports = {"info": free_port(), "local": free_port()}
    ls = [
        listener("info", ports["info"], "builtin:info", pki, ["example.test", "api.example.test"],
                 alpn=["h2", "http/1.1"]),
        listener("local", ports["local"], "builtin:info", pki, ["localhost"], alpn=["http/1.1"]),
    ]
    p = module_postern(config(ls), ports.values())
    return p, ports


def fetch(pki, port, name, *args):
    url = f"https://{name}:{port}/"
    resolve = ["--resolve", f"{name}:{port}:{HOST}"] if name != HOST else []
    return curl(url, "--http1.1", "--cacert", str(pki.root), *resolve, *args)


def serial_of(path):
    out = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-serial"],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


def same_serial(a, b):
    norm = lambda s: re.sub(r"[^0-9a-f]", "", str(s).lower()).lstrip("0")  # noqa: E731
    return norm(a) == norm(b)


def test_html(srv, pki):
    p, ports = srv
    rc, body, err = fetch(pki, ports["info"], "example.test")
    ctx = f"\ncurl rc={rc} stderr={err}\n--- body:\n{body[:3000]}{p.context()}"
    assert rc == 0, f"curl failed{ctx}"
    assert re.search(r"<html", body, re.I), f"expected an HTML page{ctx}"
    assert "example.test" in body, f"the page must show the SNI example.test{ctx}"
    assert "TLSv1.3" in body, f"the page must show TLSv1.3{ctx}"


def test_json(srv, pki):
    p, ports = srv
    rc, body, err = fetch(pki, ports["info"], "example.test", "-H", "Accept: application/json")
    ctx = f"\ncurl rc={rc} stderr={err}\n--- body:\n{body[:3000]}{p.context()}"
    assert rc == 0, f"curl failed{ctx}"
    try:
        info = json.loads(body)
    except ValueError as e:
        raise AssertionError(f"not valid JSON: {e}{ctx}") from None
    missing = KEYS - set(info)
    assert not missing, f"missing keys {sorted(missing)}{ctx}"
    assert info["listener"] == "info", ctx
    assert re.match(r"^127\.0\.0\.1:\d+$", str(info["client"])), ctx
    assert info["sni"] == "example.test", ctx
    assert info["alpn"] == "http/1.1", f"curl --http1.1 offers only http/1.1{ctx}"
    assert info["version"] == "TLSv1.3", ctx
    assert str(info["cipher"]).startswith("TLS_"), f"a TLS 1.3 suite name expected{ctx}"
    assert isinstance(info["group"], str) and info["group"], ctx
    assert info["resumed"] is False, ctx
    assert isinstance(info["handshake_ms"], (int, float)) and 0 <= info["handshake_ms"] < 10000, ctx
    chain = info["chain"]
    assert isinstance(chain, list) and len(chain) == 2, f"chain of 2 expected{ctx}"
    for c in chain:
        assert {"subject", "issuer", "serial", "not_after"} <= set(c), f"chain entry keys{ctx}"
    assert "example.test" in chain[0]["subject"], ctx
    assert "Postern Dev Intermediate CA" in chain[0]["issuer"], ctx
    assert "Postern Dev Intermediate CA" in chain[1]["subject"], ctx
    assert "Postern Dev Root CA" in chain[1]["issuer"], ctx
    assert same_serial(chain[0]["serial"], serial_of(pki.cert("example.test"))), f"leaf serial{ctx}"
    assert same_serial(chain[1]["serial"], serial_of(pki.intermediate)), f"intermediate serial{ctx}"


def test_json_follows_the_connection(srv, pki):
    """Another name on the same listener gets its own certificate, and the
    page says so; a client without SNI or ALPN gets nulls."""
    p, ports = srv
    rc, body, err = fetch(pki, ports["info"], "api.example.test", "-H", "Accept: application/json")
    assert rc == 0, f"curl failed: {err}{p.context()}"
    info = json.loads(body)
    assert info["sni"] == "api.example.test", body
    assert "api.example.test" in info["chain"][0]["subject"], body
    assert same_serial(info["chain"][0]["serial"], serial_of(pki.cert("api.example.test"))), body

    # curl sends no SNI to an IP address; the localhost leaf has IP:127.0.0.1.
    rc, body, err = fetch(pki, ports["local"], HOST, "-H", "Accept: application/json")
    assert rc == 0, f"curl failed: {err}{p.context()}"
    info = json.loads(body)
    assert info["sni"] is None, f"no SNI must be null: {body}"
    assert info["listener"] == "local", body

    # Python client, no ALPN offered.
    with connect_tls(ports["info"], "example.test", client_context(pki)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\nAccept: application/json\r\n"
                  b"Connection: close\r\n\r\n")
        raw = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            raw += d
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw[:500]
    info = json.loads(body)
    assert info["alpn"] is None, f"no ALPN offered must be null: {info}"


def test_keep_alive_two_requests(srv, pki):
    p, ports = srv
    url = f"https://example.test:{ports['info']}/"
    rc, body, err = fetch(pki, ports["info"], "example.test", "-H", "Accept: application/json", url)
    assert rc == 0, f"curl failed: {err}{p.context()}"
    dec = json.JSONDecoder()
    first, end = dec.raw_decode(body)
    second, _ = dec.raw_decode(body[end:].lstrip())
    assert first["client"] == second["client"], (
        f"curl reuses the connection for two URLs: both answers must name the same client port\n{body}")


def test_post_not_allowed(srv, pki):
    p, ports = srv
    rc, body, err = fetch(pki, ports["info"], "example.test", "-X", "POST", "-d", "x=1",
                          "-o", "/dev/null", "-w", "%{http_code}")
    assert rc == 0 and body.strip() == "405", f"POST: expected 405, got {body!r} ({err}){p.context()}"


def test_default_curl_offering_h2_gets_http11(srv, pki):
    """builtin:info speaks HTTP/1.1 only: a client that offers h2 first (curl's
    default, every browser) must be given http/1.1, so `make run` works in a
    browser even though the listener lists h2."""
    p, ports = srv
    url = f"https://example.test:{ports['info']}/"
    rc, body, err = curl(url, "--cacert", str(pki.root), "--resolve",
                         f"example.test:{ports['info']}:{HOST}", "-H", "Accept: application/json")
    assert rc == 0, f"curl failed: {err}{p.context()}"
    info = json.loads(body)
    assert info["alpn"] == "http/1.1", f"builtin:info must not negotiate h2: {body}"
    r = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{ports['info']}",
                        "-servername", "example.test", "-alpn", "h2"],
                       input="", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=20)
    assert "No ALPN negotiated" in r.stdout, f"h2 alone must get no ALPN:\n{r.stdout}"
