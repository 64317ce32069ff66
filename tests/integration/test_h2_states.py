"""HTTP/2 stream states and PRIORITY as RFC 9113 5.1 and 5.3.1 state them,
the way h2spec probes them (http2/5.1/8, 5.1/9, 5.1/11, 5.1/12, 5.3.1/2,
6.3/1): frames on a stream the client closed draw STREAM_CLOSED, a stream
cannot depend on itself, and PRIORITY belongs to a stream. Before, postern
advertised SETTINGS_NO_RFC7540_PRIORITIES, with which nghttp2 skips PRIORITY
frames and forgets closed streams, and every case here went unanswered."""

import struct

import pytest

from http_backends import (DATA, END_HEADERS, END_STREAM, HEADERS, PRIORITY, H2Raw, err_name,
                           http_site)

@pytest.fixture(scope="module")
def site(pki, module_postern, module_http_servers):
    return http_site(module_postern, module_http_servers.http(), pki, "states")


def error_after(c, timeout=5):
    """Reads until a GOAWAY, a RST_STREAM or the end; returns (frame type
    name, error name) of the first error frame, or (None, None)."""
    def err():
        return next((f for f in c.log if f.type in (3, 7)), None)
    try:
        c.wait(lambda: err() is not None or c.eof, timeout)
    except AssertionError:
        pass
    f = err()
    if f is None:
        return None, None
    return ("RST_STREAM" if f.type == 3 else "GOAWAY"), err_name(f.error_code)


def priority(depends_on, weight=16):
    """A PRIORITY payload (RFC 9113 6.3): not exclusive."""
    return struct.pack(">IB", depends_on, weight - 1)


def test_priority_on_stream_zero(site, pki):
    """RFC 9113 6.3: PRIORITY with stream identifier 0 is a connection error
    of type PROTOCOL_ERROR."""
    with H2Raw(site.port, pki) as c:
        c.handshake()
        c.send_frame(PRIORITY, 0, 0, priority(1))
        assert error_after(c) == ("GOAWAY", "PROTOCOL_ERROR"), site.ctx(f"\n{c.log}")


def test_stream_depends_on_itself(site, pki):
    """RFC 9113 5.3.1: a stream cannot depend on itself; a stream error of
    type PROTOCOL_ERROR, which RFC 9113 5.4 lets an endpoint treat as a
    connection error (nghttp2 sends GOAWAY)."""
    with H2Raw(site.port, pki) as c:
        c.handshake()
        c.send_frame(PRIORITY, 0, 1, priority(1))
        _, err = error_after(c)
        assert err == "PROTOCOL_ERROR", site.ctx(f"\n{c.log}")


def test_data_after_client_reset(site, pki):
    """RFC 9113 5.1 closed: after the client's RST_STREAM, a DATA frame from
    it on that stream is a STREAM_CLOSED error."""
    with H2Raw(site.port, pki) as c:
        c.handshake()
        sid = c.request("POST", "/echo/x", end_stream=False)
        c.rst(sid)
        c.send_frame(DATA, 0, sid, b"late")
        _, err = error_after(c)
        assert err == "STREAM_CLOSED", site.ctx(f"\n{c.log}")


def test_headers_after_client_reset(site, pki):
    """The same for a HEADERS frame after the client's RST_STREAM."""
    with H2Raw(site.port, pki) as c:
        c.handshake()
        sid = c.request("POST", "/echo/x", end_stream=False)
        c.rst(sid)
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, sid, c.header_block())
        _, err = error_after(c)
        assert err == "STREAM_CLOSED", site.ctx(f"\n{c.log}")


@pytest.mark.parametrize("late", ["DATA", "HEADERS"])
def test_frame_on_closed_stream(site, pki, late):
    """RFC 9113 5.1 closed: once both sides ended the stream, a DATA or
    HEADERS frame on it is a connection error of type STREAM_CLOSED."""
    with H2Raw(site.port, pki) as c:
        c.handshake()
        sid = c.request("GET", "/")
        st = c.response(sid)
        assert st.ended and st.status == 200, site.ctx(f"\n{st!r}")
        if late == "DATA":
            c.send_frame(DATA, END_STREAM, sid, b"late")
        else:
            c.send_frame(HEADERS, END_HEADERS | END_STREAM, sid, c.header_block())
        _, err = error_after(c)
        assert err == "STREAM_CLOSED", site.ctx(f"\n{c.log}")


def test_priority_is_accepted(site, pki):
    """PRIORITY frames that are well formed (on an idle stream, on an open
    one) change nothing a client sees: the requests are answered."""
    with H2Raw(site.port, pki) as c:
        c.handshake()
        c.send_frame(PRIORITY, 0, 7, priority(0))
        sid = c.request("GET", "/", sid=1)
        c.send_frame(PRIORITY, 0, sid, priority(7, 200))
        assert c.response(sid).status == 200, site.ctx(f"\n{c.log}")
        assert c.goaway is None
