"""Scripted faults: what they are, the queue handing them out, the bytes they put on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Dict, List, Optional, Sequence

from aiohttp import web

from ._wire import DONE_EVENT, error_envelope, error_type_for, sse_event

STATUS = "status"
RESET = "reset"
CUT = "cut"
STALL = "stall"
MALFORMED = "malformed"
HTML = "html"
EMPTY = "empty"
STREAM_ERROR = "stream_error"

BEFORE_HEADERS = "before_headers"
MID_BODY = "mid_body"
MID_STREAM = "mid_stream"
STATUS_LIKE = (STATUS, MALFORMED, HTML, EMPTY)

MALFORMED_BODY = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind'
HTML_PAGE = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n"
    "<center><h1>{0}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
CLOSING = web.AppKey("gatewayclient.testing.closing", asyncio.Event)
"""Set when the server stops, so that a stall ends at once instead of holding up the stop."""

# Long enough for a loopback peer to read what was written before the reset arrives.
_RESET_GRACE = 0.05


@dataclass
class Fault:
    """One scripted misbehaviour, served to the next ``times`` matching requests."""

    kind: str
    times: int = 1
    path: Optional[str] = None
    status: int = 200
    body: Any = None
    headers: Dict[str, str] = field(default_factory=dict)
    when: str = BEFORE_HEADERS
    after: int = 0
    seconds: float = 0.0
    error: Optional[Dict[str, Any]] = None

    @property
    def stream_only(self) -> bool:
        """Faults that only make sense inside an SSE stream skip every other request."""
        return self.kind in (CUT, STREAM_ERROR) or (self.kind == STALL and self.when == MID_STREAM)

    @property
    def acts_early(self) -> bool:
        """Faults served in place of the answer, or before it starts."""
        return self.kind in STATUS_LIKE or (
            self.kind in (RESET, STALL) and self.when == BEFORE_HEADERS
        )

    def matches(self, path: str, is_stream: bool) -> bool:
        if self.path is not None and self.path != path:
            return False
        return is_stream or not self.stream_only


class FaultQueue:
    """Faults in the order they were scripted; each request takes the first that matches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: List[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> List[Fault]:
        with self._lock:
            return [replace(f) for f in self._faults]

    def take(self, path: str, is_stream: bool) -> Optional[Fault]:
        """The fault for this request, its ``times`` used once; None when none applies."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(path, is_stream):
                    fault.times -= 1
                    if fault.times == 0:
                        del self._faults[index]
                    return replace(fault)
        return None


async def pause(request: web.Request, seconds: float) -> None:
    """Sleep ``seconds``, or less if the server is stopping."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(request.app[CLOSING].wait(), seconds)


def abort_connection(request: web.BaseRequest) -> None:
    """Close the TCP connection with a RST (SO_LINGER 0), as a crashed proxy would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _reason(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def fault_response(fault: Fault) -> web.Response:
    """The whole response of a status, malformed, HTML or empty-body fault."""
    headers = dict(fault.headers)
    if fault.kind == MALFORMED:
        return web.Response(
            status=fault.status,
            body=MALFORMED_BODY,
            content_type="application/json",
            headers=headers,
        )
    if fault.kind == HTML:
        page = HTML_PAGE.format(_reason(fault.status))
        return web.Response(
            status=fault.status, text=page, content_type="text/html", headers=headers
        )
    if fault.kind == EMPTY:
        return web.Response(status=fault.status, body=b"", headers=headers)
    if fault.body is None:
        body = error_envelope(
            f"Scripted error {_reason(fault.status)}", error_type_for(fault.status)
        )
        return web.json_response(body, status=fault.status, headers=headers)
    if isinstance(fault.body, (bytes, str)):
        raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return web.Response(status=fault.status, body=raw, headers=headers)
    return web.json_response(fault.body, status=fault.status, headers=headers)


async def send_partial_then_reset(request: web.Request, full: web.Response) -> web.StreamResponse:
    """Send the status line, the headers and half of ``full``'s body, then reset the connection."""
    body = full.body if isinstance(full.body, bytes) else b""
    resp = web.StreamResponse(status=full.status, headers=full.headers)
    resp.content_length = len(body)
    try:
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        await asyncio.sleep(_RESET_GRACE)
    except ConnectionError:
        return resp
    abort_connection(request)
    return resp


async def _misbehave(request: web.Request, resp: web.StreamResponse, fault: Fault) -> bool:
    """Apply ``fault`` at its point in a stream; True when the stream must end here."""
    if fault.kind == STALL:
        await pause(request, fault.seconds)
        return False
    if fault.kind == STREAM_ERROR:
        await resp.write(sse_event({"error": fault.error}))
        await resp.write_eof()
    elif fault.kind == CUT and request.transport is not None:
        request.transport.close()
    elif fault.kind == RESET:
        await asyncio.sleep(_RESET_GRACE)
        abort_connection(request)
    return True


async def send_stream(
    request: web.Request,
    events: Sequence[bytes],
    fault: Optional[Fault],
) -> web.StreamResponse:
    """Write ``events`` then ``[DONE]``, one write per event, applying a mid-stream ``fault``."""
    resp = web.StreamResponse(status=200)
    resp.content_type = "text/event-stream"
    resp.headers["Cache-Control"] = "no-cache"
    at = min(fault.after, len(events)) if fault is not None else -1
    try:
        await resp.prepare(request)
        for index, event in enumerate(events):
            if index == at and fault is not None and await _misbehave(request, resp, fault):
                return resp
            await resp.write(event)
        if at == len(events) and fault is not None and await _misbehave(request, resp, fault):
            return resp
        await resp.write(DONE_EVENT)
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp
