"""Plain-TCP helper servers that play postern's backends in the integration
tests. Each listens on 127.0.0.1 on a free port, serves every connection in
its own thread, and counts what it saw so tests can assert on it."""

import errno
import hashlib
import select
import socket
import threading
import time


class TcpServer:
    """A threaded TCP server on 127.0.0.1:<free port>. handler(conn) runs in a
    thread per accepted connection; the server closes conn afterwards."""

    def __init__(self, handler, name="backend", backlog=1024):
        self.name = name
        self._handler = handler
        self._lock = threading.Lock()
        self._conns = set()
        self._closed = False
        self.accepted = 0  # connections accepted so far
        self.eofs = 0      # connections whose client side sent EOF (half-close)
        self.errors = []   # exceptions raised by handlers
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept_loop, name=f"{name}-accept",
                                        daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by close()
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self.accepted += 1
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name=f"{self.name}-conn",
                             daemon=True).start()

    def _serve(self, conn):
        try:
            self._handler(self, conn)
        except OSError as e:
            # A reset from postern closing the connection is normal in several
            # tests; anything else is recorded for the test to look at.
            if e.errno not in (errno.ECONNRESET, errno.EPIPE, errno.EBADF):
                self.errors.append(e)
        except Exception as e:  # noqa: BLE001 - reported through self.errors
            self.errors.append(e)
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def note_eof(self):
        with self._lock:
            self.eofs += 1

    def close(self):
        with self._lock:
            self._closed = True
            conns = list(self._conns)
        try:
            # shutdown() wakes a thread blocked in accept(); close() alone does not.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2)


def _echo(server, conn):
    """Echoes every byte; on EOF from the client, sends EOF back."""
    while True:
        data = conn.recv(262144)
        if not data:
            server.note_eof()
            conn.shutdown(socket.SHUT_WR)
            return
        conn.sendall(data)


def echo_server():
    return TcpServer(_echo, "echo")


def banner_server(banner):
    """Sends banner (bytes) first, then echoes."""
    def handler(server, conn):
        conn.sendall(banner)
        _echo(server, conn)
    return TcpServer(handler, "banner")


def sink_server():
    """Reads until EOF, then answers b"<count> <sha256 hex>\\n" and closes:
    proves that the client's close_notify reached the backend as an EOF
    while the other direction stayed open (half-close)."""
    def handler(server, conn):
        h = hashlib.sha256()
        n = 0
        while True:
            data = conn.recv(262144)
            if not data:
                break
            n += len(data)
            h.update(data)
        server.note_eof()
        conn.sendall(f"{n} {h.hexdigest()}\n".encode())
        conn.shutdown(socket.SHUT_WR)
    return TcpServer(handler, "sink")


def say_and_close_server(text):
    """Sends text and closes its side at once, then drains what the client
    sends so the close is a FIN, not a reset."""
    def handler(server, conn):
        conn.sendall(text)
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(5)
        try:
            while conn.recv(65536):
                pass
        except (socket.timeout, OSError):
            pass
    return TcpServer(handler, "say-and-close")


class BlackHole:
    """An address where connect() hangs: a listening socket with backlog 0
    that never accepts, its accept queue already filled. Linux drops SYNs to
    a listener whose accept queue is full (tcp_conn_request: "listen queue
    overflow"), so a new connect() gets no SYN-ACK and just retries until
    the connecting side gives up. Loopback only; nothing leaves the host."""

    def __init__(self, fillers=3):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self._fill = []
        for _ in range(fillers):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self._fill.append(s)
            time.sleep(0.02)
        if not self.connect_hangs(0.3):
            self.close()
            raise RuntimeError(
                "black hole does not work here: a connect() to a listener with a full "
                "accept queue completed instead of hanging")

    def connect_hangs(self, seconds):
        """Returns True when a fresh non-blocking connect() has not completed
        (neither connected nor failed) after seconds."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect_ex(("127.0.0.1", self.port))
            _, w, _ = select.select([], [s], [], seconds)
            return not w
        finally:
            s.close()

    def close(self):
        for s in self._fill:
            s.close()
        self.sock.close()


def closed_port():
    """Returns the address of a port where nothing listens (connect() is
    refused at once): bound, then closed without listening."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"
