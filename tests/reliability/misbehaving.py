"""Misbehaving servers for the twin behaviour matrix: responders and connection handlers for
``RawServer`` that stall, cut, reset, refuse, loop, write heads no parser should accept, or
keep a finished stream open. Each waits for the client to give up rather than for a fixed time
where it can, so that no connection outlives the case."""

from __future__ import annotations

import itertools
import json
import selectors
import socket
import time
from typing import Dict, List, Optional, Sequence, Tuple

from rawserver import (
    NORMAL_EVENTS,
    NORMAL_TEXT,
    PIECE,
    RawRequest,
    Responder,
    chat_body,
    chunk_event,
    chunked,
    head,
    normal_answer,
    reset,
    send,
)

EVENT_STREAM = "text/event-stream"


def wait_closed(conn: socket.socket) -> bool:
    """Answer nothing more: wait until the client gives up and closes (or the server stops)."""
    try:
        while conn.recv(PIECE):
            pass
    except OSError:
        pass
    return False


def stall(conn: socket.socket, request: RawRequest) -> bool:
    """The request is read; no answer ever comes."""
    return wait_closed(conn)


def reset_before_head(conn: socket.socket, request: RawRequest) -> bool:
    return reset(conn)


def close_before_head(conn: socket.socket, request: RawRequest) -> bool:
    return False  # a clean close (FIN) with no answer


def reset_on_accept(conn: socket.socket) -> None:
    """A handler: reset the connection before reading a byte of the request."""
    reset(conn)


HOLD = 0.5  # how long ``never_read`` reads nothing: longer than the upload case's timeout


def never_read(conn: socket.socket) -> None:
    """A handler: take none of the request (its sender stalls once the buffers are full) for
    ``HOLD`` seconds, then drain it to its end so that the connection closes."""
    time.sleep(HOLD)
    wait_closed(conn)


def json_cut(with_reset: bool) -> Responder:
    """Half of a JSON answer's Content-Length, then a reset or a clean close."""

    def respond(conn: socket.socket, request: RawRequest) -> bool:
        body = chat_body(NORMAL_TEXT)
        return send(conn, body, cut_at=len(body) // 2, cut_with_reset=with_reset)

    return respond


def words(count: int) -> List[bytes]:
    """A role chunk and ``count - 1`` content chunks: ``count`` events in all."""
    events = [chunk_event({"role": "assistant", "content": "w0 "})]
    return events + [chunk_event({"content": f"w{i} "}) for i in range(1, count)]


def stream_head(content_type: str = EVENT_STREAM) -> bytes:
    return head(200, [("Content-Type", content_type), ("Transfer-Encoding", "chunked")])


def frames(*pieces: bytes) -> List[bytes]:
    """The pieces as HTTP chunks, without the last chunk (the body goes on)."""
    return list(chunked(pieces))[:-1]


def events_then(events: Sequence[bytes], ending: str, pause: float = 0.02) -> Responder:
    """An event stream of these events (each its own chunk and read), never finished: then
    ``ending``, "reset", "close" (a FIN inside the chunked body) or "stall" (wait for the client
    to give up)."""

    def respond(conn: socket.socket, request: RawRequest) -> bool:
        conn.sendall(stream_head())
        for frame in frames(*events):
            conn.sendall(frame)
            time.sleep(pause)
        if ending == "reset":
            return reset(conn)
        if ending == "stall":
            return wait_closed(conn)
        return False

    return respond


def held_stream(conn: socket.socket, request: RawRequest) -> bool:
    """A stream gets one chunk, then nothing (it holds its connection until the client lets
    go); any other request a normal answer."""
    if request.is_stream:
        return events_then(words(1), "stall")(conn, request)
    return normal_answer(conn, request)


def status(code: int, body: bytes, headers: Sequence[Tuple[str, str]] = ()) -> Responder:
    def respond(conn: socket.socket, request: RawRequest) -> bool:
        return send(conn, body, status=code, extra=headers)

    return respond


def error_body(message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind}}).encode()


def cycling(*codes: int) -> Responder:
    """The error statuses in turn, one per request."""
    turn = itertools.cycle(codes)

    def respond(conn: socket.socket, request: RawRequest) -> bool:
        code = next(turn)
        return send(conn, error_body(f"status {code}", "server_error"), status=code)

    return respond


def html_502(conn: socket.socket, request: RawRequest) -> bool:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    return send(conn, page, status=502, content_type="text/html")


def answer(
    *,
    content_type: Optional[str] = None,
    chat: Optional[bytes] = None,
    events: Optional[bytes] = None,
    headers: Sequence[Tuple[str, str]] = (),
) -> Responder:
    """A 200 answer: ``chat`` for a chat request, ``events`` (chunked) for a stream request;
    a normal answer where one is not given."""

    def respond(conn: socket.socket, request: RawRequest) -> bool:
        if request.is_stream:
            body = b"".join(NORMAL_EVENTS) if events is None else events
            kind = content_type or EVENT_STREAM
            return send(conn, body, content_type=kind, framing="chunked", extra=headers)
        body = chat_body(NORMAL_TEXT) if chat is None else chat
        return send(conn, body, content_type=content_type or "application/json", extra=headers)

    return respond


# -- heads no parser should accept ------------------------------------------------------------


def raw_head(*lines: str) -> Responder:
    """This head (a JSON body after it), then a close: its framing cannot be trusted."""

    def respond(conn: socket.socket, request: RawRequest) -> bool:
        body = chat_body(NORMAL_TEXT)
        text = "\r\n".join([*lines, "Content-Type: application/json", "", ""])
        conn.sendall(text.encode("latin-1") + body)
        return False

    return respond


# Heads at those limits, which both twins read.
GOOD_HEADS: Dict[str, Responder] = {}


def many_headers(count: int) -> Responder:
    return raw_head("HTTP/1.1 200 OK", *[f"X-H{i}: v" for i in range(count)], "Connection: close")


BAD_HEADS: Dict[str, Responder] = {
    "content-length-nope": raw_head("HTTP/1.1 200 OK", "Content-Length: nope"),
    "two-content-lengths": raw_head("HTTP/1.1 200 OK", "Content-Length: 12", "Content-Length: 13"),
    # http.client's limits, which the async twin's aiohttp is set to: a line of at most 65,536
    # bytes, at most 99 header lines (its 100 count the blank line ending the head)
    "header-over-65536": raw_head("HTTP/1.1 200 OK", "X-Big: " + "a" * 70000, "Connection: close"),
    "100-header-lines": many_headers(98),  # and Connection, Content-Type
    "110-headers": many_headers(110),
    "200-headers": many_headers(200),
    "status-not-http": raw_head("ICY 200 OK", "Connection: close"),
}


GOOD_HEADS.update(
    {
        "header-of-9000": raw_head("HTTP/1.1 200 OK", "X-Big: " + "a" * 9000, "Connection: close"),
        "99-header-lines": many_headers(97),
    }
)


# -- redirects, proxies ------------------------------------------------------------------------


def redirect(location: str) -> Responder:
    """A 307 to ``location`` (``{path}`` is the request's own path): a loop when it is."""

    def respond(conn: socket.socket, request: RawRequest) -> bool:
        target = location.format(path=request.path)
        return send(conn, b"", status=307, extra=[("Location", target)])

    return respond


def proxy_refusing(conn: socket.socket, request: RawRequest) -> bool:
    """A proxy that wants credentials it was not given (or not these)."""
    conn.sendall(
        head(
            407,
            [
                ("Proxy-Authenticate", 'Basic realm="proxy"'),
                ("Content-Length", "0"),
                ("Connection", "close"),  # or a client may reuse it before the close arrives
            ],
        )
    )
    return False


def tunnel(conn: socket.socket, request: RawRequest) -> bool:
    """A proxy that accepts CONNECT and relays bytes both ways until either side closes."""
    host, _, port = request.path.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as upstream:
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with selectors.DefaultSelector() as selector:
            selector.register(conn, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, conn)
            while True:
                for key, _ in selector.select(timeout=10):
                    data = key.fileobj.recv(PIECE)  # type: ignore[union-attr]
                    if not data:
                        return False
                    key.data.sendall(data)


# -- streams that end oddly --------------------------------------------------------------------


def kept_open_after_done(conn: socket.socket, request: RawRequest) -> bool:
    """A finished stream ([DONE] sent) whose body never ends: a keep-alive comment every 50 ms
    until the client goes away."""
    conn.sendall(stream_head())
    conn.sendall(b"".join(frames(*NORMAL_EVENTS)))
    for _ in range(400):  # 20 s at most, should the client never go away
        time.sleep(0.05)
        conn.sendall(b"".join(frames(b": keep-alive\n\n")))
    return False


AZURE_FILTER = (
    b'data: {"id":"","object":"","created":0,"model":"","choices":[],'
    b'"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}\n\n'
)


def usage_event() -> bytes:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    chunk = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "choices": [], "usage": usage}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


WHOLE_ANSWER = b"".join(
    [
        chunk_event({"role": "assistant", "content": "Hello"}),
        chunk_event({"content": " world"}),
        chunk_event({}, "stop"),
        usage_event(),
        b"data: [DONE]\n\n",
    ]
)
