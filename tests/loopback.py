"""A small aiohttp.web server on loopback for bytes FakeGateway does not produce: hand-written
handlers (split characters, paced chunks, redirects to another host)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import Any, Awaitable, Callable, List, Optional, Tuple

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LoopbackServer:
    """``with LoopbackServer([("POST", "/v1/chat/completions", handler)]) as server: server.url``"""

    def __init__(self, routes: List[Tuple[str, str, Handler]], host: str = "127.0.0.1") -> None:
        self.routes = routes
        self.host = host
        self.port = 0
        self.seen: List[web.Request] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _serve(self, ready: threading.Event) -> None:
        app = web.Application()
        for method, path, handler in self.routes:
            app.router.add_route(method, path, self._recording(handler))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, self.host, 0).start()
        self.port = runner.addresses[0][1]
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _recording(self, handler: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.seen.append(request)
            return await handler(request)

        return handle

    def __enter__(self) -> LoopbackServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve(ready)), daemon=True)
        self._thread.start()
        assert ready.wait(10), "loopback server did not start"
        return self

    def __exit__(self, *exc_info: Any) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


async def write_pieces(
    request: web.Request, pieces: List[bytes], pause: float = 0.02
) -> web.StreamResponse:
    """Send an event stream as these separate network writes, pausing between them."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for piece in pieces:
        await response.write(piece)
        await asyncio.sleep(pause)
    await response.write_eof()
    return response


def open_sockets() -> int:
    """How many sockets this process holds open (client and in-process server sides)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed while listing (the listing's own among them)
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count
