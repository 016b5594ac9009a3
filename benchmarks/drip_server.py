"""The slow-drip stream server: many open streams, one event every ``interval`` per stream.

    python benchmarks/drip_server.py PORT INTERVAL_MS   # prints "ready" once listening

For the many-streams cases (``many_streams.py``): thousands of streams held open at once, each
receiving one ``chat.completion.chunk`` event (its own HTTP chunk) every ``interval``, as a
gateway relaying a model's tokens sends them. A stream's length is its request's
``max_tokens`` (one event per token; the last carries ``finish_reason``), then ``[DONE]``.

It must never be what limits the clients, so it does the least a server can: plain asyncio
protocols (no HTTP framework: it reads a request's head and ``Content-Length`` body, nothing
more), every event pre-encoded as bytes, and one timer per process rather than one per stream.
A stream joins the timer slot of the moment its request arrived and gets its next event each
time the timer comes back to that slot. Several processes listen on one port (SO_REUSEPORT, the
kernel spreads the connections); ``Servers`` starts them.
"""

from __future__ import annotations

import asyncio
import re
import resource
import signal
import sys
from typing import Dict, List, Optional

import payloads

TICK = 0.005  # seconds between the timer's visits: events leave within 5 ms of their time
_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_TOKENS = re.compile(rb'"max_tokens":\s*(\d+)')
_EVENTS: Dict[int, List[bytes]] = {}  # chunks per stream: its HTTP chunks, the last one ending


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def events(count: int) -> List[bytes]:
    """``count`` chunk events as HTTP chunks, then ``[DONE]`` and the body's end in the last."""
    if count not in _EVENTS:
        built = [_http_chunk(payloads.STREAM_EVENTS[i % (payloads.STREAM_CHUNKS - 1)])
                 for i in range(count - 1)]  # fmt: skip
        built.append(
            _http_chunk(payloads.STREAM_EVENTS[payloads.STREAM_CHUNKS - 1])  # finish_reason
            + _http_chunk(payloads.STREAM_EVENTS[-1])  # [DONE]
            + b"0\r\n\r\n"
        )
        _EVENTS[count] = built
    return _EVENTS[count]


class Drip:
    """The one timer of this process: ``slots`` lists of streams, one visited every TICK."""

    def __init__(self, interval: float) -> None:
        self.slots: List[List[Stream]] = [[] for _ in range(max(1, round(interval / TICK)))]
        self.slot = 0
        self.loop = asyncio.get_running_loop()
        self.due = self.loop.time()
        self.late = 0.0  # the largest delay of a visit (printed at exit)
        self.loop.call_soon(self.visit)

    def join(self, stream: Stream) -> None:
        self.slots[self.slot].append(stream)

    def visit(self) -> None:
        now = self.loop.time()
        self.late = max(self.late, now - self.due)
        while self.due <= now:  # a late visit catches up every slot it missed
            self.slot = (self.slot + 1) % len(self.slots)
            streams = self.slots[self.slot]
            if streams:
                self.slots[self.slot] = [s for s in streams if s.send()]
            self.due += TICK
        self.loop.call_at(self.due, self.visit)


class Stream(asyncio.Protocol):
    """One connection: requests read one after another (keep-alive), each answered by a drip."""

    drip: Drip

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = b""
        self.events: List[bytes] = []
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.transport = None  # the drip drops it at its next visit

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.events:
            return
        found = _LENGTH.search(self.buffer, 0, end + 2)
        size = int(found.group(1)) if found else 0
        if len(self.buffer) < end + 4 + size:
            return
        body = self.buffer[end + 4 : end + 4 + size]
        self.buffer = self.buffer[end + 4 + size :]
        tokens = _TOKENS.search(body)
        self.events, self.sent = events(max(1, int(tokens.group(1)) if tokens else 16)), 0
        assert self.transport is not None
        self.transport.write(_HEAD)
        self.drip.join(self)

    def send(self) -> bool:
        """Write the next event; False once the stream is over (or its connection gone)."""
        if self.transport is None:
            return False
        self.transport.write(self.events[self.sent])
        self.sent += 1
        if self.sent < len(self.events):
            return True
        self.events = []
        if self.buffer:  # a next request arrived already
            self.data_received(b"")
        return False


async def serve(port: int, interval: float) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    Stream.drip = Drip(interval)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Stream, "127.0.0.1", port, reuse_port=True, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    late = Stream.drip.late * 1e3
    print(f"drip server {port}: its timer ran at most {late:.1f} ms late", file=sys.stderr)


def main() -> None:
    port, interval_ms = int(sys.argv[1]), float(sys.argv[2])
    asyncio.run(serve(port, interval_ms / 1e3))


if __name__ == "__main__":
    main()
