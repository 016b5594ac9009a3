"""A raw-socket HTTP/1.1 server on 127.0.0.1 for bytes neither FakeGateway nor aiohttp.web will
write: huge bodies in any framing, invalid UTF-8 in an event stream, one line of megabytes in
pieces, a body cut short by a clean close or a reset.

``with RawServer(first, second, default=answer) as server:`` answers the n-th request with the
n-th responder, every later one with ``default`` (a normal chat answer or stream). A responder
writes the whole response to the socket itself and returns whether the connection stays open
for another request. Leaving the block closes every socket and joins every thread.

``handler=`` takes each connection whole instead (for a server that never reads the request),
``tls=`` serves HTTPS with that server context; ``connections`` counts the accepted ones.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, NamedTuple, Optional, Set

PIECE = 64 * 1024


class RawRequest(NamedTuple):
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def is_stream(self) -> bool:
        data = self.json
        return isinstance(data, dict) and bool(data.get("stream"))


Responder = Callable[[socket.socket, RawRequest], bool]
"""Writes one response; True keeps the connection open for the next request."""

Handler = Callable[[socket.socket], None]
"""Takes a whole connection (nothing read from it yet); the server closes it afterwards."""


def _read_request(conn: socket.socket, buffer: bytearray) -> Optional[RawRequest]:
    """The next request on ``conn`` (its leftover bytes stay in ``buffer``); None at EOF."""
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(PIECE)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\r\n\r\n")
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    method, path, _ = head[0].split(" ", 2)
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        data = conn.recv(PIECE)
        if not data:
            return None
        buffer += data
    body = bytes(buffer[:length])
    del buffer[:length]
    return RawRequest(method, path, headers, body)


class RawServer:
    """A threaded HTTP/1.1 server answering from a script of responders (see the module)."""

    def __init__(
        self,
        *script: Responder,
        default: Optional[Responder] = None,
        port: int = 0,
        handler: Optional[Handler] = None,
        tls: Optional[ssl.SSLContext] = None,
    ) -> None:
        self._script: Deque[Responder] = deque(script)
        self._default = default or normal_answer
        self._handler = handler
        self._tls = tls
        self._wanted_port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: Optional[socket.socket] = None
        self._acceptor: Optional[threading.Thread] = None
        self._connections: Set[socket.socket] = set()
        self._threads: List[threading.Thread] = []
        self.requests: List[RawRequest] = []
        self.connections = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def recover(self, default: Optional[Responder] = None) -> None:
        """The fault is over: from now on every request gets ``default`` (a normal answer)."""
        with self._lock:
            self._script.clear()
            self._default = default or normal_answer
            self._handler = None

    def __enter__(self) -> RawServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._wanted_port))
        listener.listen(128)
        listener.settimeout(0.05)  # the accept loop looks at the stop flag this often
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="RawServer", daemon=True)
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting, end every connection (blocked reads and writes too), join all."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept loop at once (Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
        if self._acceptor is not None:
            self._acceptor.join(10)
            assert not self._acceptor.is_alive(), "the raw server's accept loop did not stop"
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive(), "a raw server connection thread did not stop"

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            while not self._stopping.is_set():
                try:
                    conn, _ = self._listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    if self._stopping.is_set():
                        return  # stop() shut the listener down
                    raise
                conn.settimeout(30)  # a safety net: stop() ends every connection anyway
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                with self._lock:
                    self.connections += 1
                    self._connections.add(conn)
                    self._threads.append(thread)
                thread.start()
        finally:
            self._listener.close()

    def _responder(self) -> Responder:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    def _secure(self, conn: socket.socket) -> socket.socket:
        """The TLS side of ``conn`` after its handshake (which a client may refuse: OSError)."""
        assert self._tls is not None
        secure = self._tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        with self._lock:  # stop() must shut the socket now in use
            self._connections.discard(conn)
            self._connections.add(secure)
        try:
            secure.do_handshake()
        except OSError:
            secure.close()
            with self._lock:
                self._connections.discard(secure)
            raise
        return secure

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray()
        try:
            if self._tls is not None:
                conn = self._secure(conn)
            with self._lock:
                handler = self._handler
            if handler is not None:
                handler(conn)
                return
            while not self._stopping.is_set():
                request = _read_request(conn, buffer)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                if not self._responder()(conn, request):
                    return
        except OSError:
            pass  # the client went away, or stop() shut the socket
        finally:
            conn.close()
            with self._lock:
                self._connections.discard(conn)


# -- writing responses -----------------------------------------------------------------------

REASONS = {200: "OK", 429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable"}


def head(status: int, headers: Iterable[tuple]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(pieces: Iterable[bytes]) -> Iterable[bytes]:
    """The pieces in HTTP/1.1 chunked framing, then the last chunk."""
    for piece in pieces:
        if piece:
            yield b"%x\r\n" % len(piece) + piece + b"\r\n"
    yield b"0\r\n\r\n"


def split(data: bytes, size: int = PIECE) -> List[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def reset(conn: socket.socket) -> bool:
    """Close with a RST (SO_LINGER 0), as a crashed proxy would."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    return False


def send(
    conn: socket.socket,
    body: bytes,
    *,
    status: int = 200,
    content_type: str = "application/json",
    framing: str = "length",
    piece: int = PIECE,
    cut_at: Optional[int] = None,
    cut_with_reset: bool = True,
    extra: Iterable[tuple] = (),
) -> bool:
    """Write one response: ``framing`` is "length" (Content-Length), "chunked" or "close" (the
    body ends when the connection does). The body leaves in writes of ``piece`` bytes; with
    ``cut_at``, only that many bytes of the (framed) body leave, then a reset or a clean close.
    """
    headers = [("Content-Type", content_type), *extra]
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
    else:
        headers.append(("Connection", "close"))
    conn.sendall(head(status, headers))
    frames = chunked(split(body, piece)) if framing == "chunked" else split(body, piece)
    sent = 0
    for frame in frames:
        if cut_at is not None and sent + len(frame) >= cut_at:
            conn.sendall(frame[: cut_at - sent])
            return reset(conn) if cut_with_reset else False  # False: closed cleanly (FIN)
        conn.sendall(frame)
        sent += len(frame)
    return framing != "close"


# -- answers ---------------------------------------------------------------------------------


def chat_body(content: str) -> bytes:
    answer = {
        "id": "chatcmpl-raw",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "openai/gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    return json.dumps(answer).encode()


def chunk_event(delta: Dict[str, Any], finish_reason: Optional[str] = None) -> bytes:
    chunk = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "model": "openai/gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


NORMAL_TEXT = "All is well."
NORMAL_EVENTS = [
    chunk_event({"role": "assistant", "content": ""}),
    chunk_event({"content": NORMAL_TEXT}),
    chunk_event({}, "stop"),
    b"data: [DONE]\n\n",
]


def normal_answer(conn: socket.socket, request: RawRequest) -> bool:
    """A short chat answer, streamed when the request asked for a stream; kept alive."""
    if request.is_stream:
        return send(
            conn, b"".join(NORMAL_EVENTS), content_type="text/event-stream", framing="chunked"
        )
    return send(conn, chat_body(NORMAL_TEXT))
