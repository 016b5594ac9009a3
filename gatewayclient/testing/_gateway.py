"""FakeGateway: the fake gateway's lifecycle (own thread, current loop, or blocking) and the
test-facing controls (tokens, rate limit, scripted faults, recorded requests)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from types import TracebackType
from typing import Any, Callable, Dict, Iterable, List, Optional, Type

from aiohttp import web

from ._faults import (
    BEFORE_HEADERS,
    CLOSING,
    CUT,
    EMPTY,
    HTML,
    MALFORMED,
    MID_BODY,
    MID_STREAM,
    RESET,
    STALL,
    STATUS,
    STREAM_ERROR,
    Fault,
)
from ._server import build_app
from ._state import Arrival, GatewayState, RateLimiter, RecordedRequest
from ._wire import format_seconds

DEFAULT_MAX_BODY_SIZE = 100 * 1024 * 1024
_DEFAULT_STREAM_ERROR = {
    "message": "The upstream provider failed while streaming.",
    "type": "provider_error",
    "code": 502,
}


class FakeGateway:
    """A real HTTP server on loopback speaking the gateway API, for tests.

    ``with FakeGateway() as gw:`` serves from a thread of its own (start blocks until it
    listens; leaving stops the server, closes its loop and joins the thread);
    ``async with FakeGateway() as gw:`` serves from the running loop; ``gw.run()`` serves in the
    calling thread until ``stop()`` or Ctrl-C. ``port=0`` picks a free port.

    Routes: ``POST /v1/chat/completions`` (JSON or SSE), ``POST /v1/embeddings``,
    ``GET /v1/models``, ``GET /v1/models/{provider/model}``, ``GET /v1/providers``,
    ``GET /v1/providers/{provider}/models``, and ``GET /health`` (no token, never faulted).
    Every response carries ``x-request-id``; every error answer (a scripted fault's aside) is
    OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}``, unknown routes (404),
    wrong methods (405) and oversized bodies (413) included. Every request under ``/v1`` is
    recorded, refused ones too (401, 404, 413, 429 ...), and nothing else (not ``/health``);
    it then meets the next matching scripted fault, then the bearer-token check, then the rate
    limit. What the
    answers hold is computed by the functions of ``gatewayclient.testing`` (``expected_reply``,
    ``expected_usage``, ``expected_embedding``, ...).

    ``rpm_limit`` caps requests and ``tpm_limit`` tokens per token in a fixed 60 s window
    (``window``) that opens with the token's first request, measured by ``clock``; a request
    counts for the ``total_tokens`` that its answer's usage reports (known before it is written),
    and one that would pass either limit is answered 429 (``Retry-After``, ``x-ratelimit-*``)
    and counts for neither. ``retry_after`` replaces the computed wait in 429 answers
    (fractions allowed). ``latency`` seconds are waited before each ``/v1`` answer. ``arrivals``
    logs each request's arrival time, path, model, answered tokens and status.

    ``max_body_size`` (100 MiB) is the largest request body it accepts, enough for prompts that
    carry images as base64 data URLs (OpenAI takes up to 50 MB of images per request); a larger
    body is answered 413 in the error envelope, and recorded without its body.

    ``ssl_context`` (a server-side ``ssl.SSLContext`` holding a certificate for ``host``, made
    with trustme, say) serves HTTPS instead of HTTP; ``url`` then starts with ``https://``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "test-token",
        rpm_limit: Optional[int] = None,
        tpm_limit: Optional[int] = None,
        latency: float = 0.0,
        retry_after: Optional[float] = None,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        ssl_context: Optional[ssl.SSLContext] = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        if max_body_size < 1:
            raise ValueError("max_body_size must be at least 1 byte")
        self._max_body_size = max_body_size
        self._host = host
        self._ssl_context = ssl_context
        self._wanted_port = port
        self._port: Optional[int] = None
        self._token = token
        limiter = RateLimiter(window, clock, retry_after)
        self._state = GatewayState(token, rpm_limit, limiter, tpm_limit, latency)
        self._runner: Optional[web.AppRunner] = None
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopping: Optional[asyncio.Event] = None

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        return f"<FakeGateway {where}>"

    # -- addresses -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The port it listens on; RuntimeError before it starts."""
        if self._port is None:
            raise RuntimeError("the FakeGateway is not running")
        return self._port

    @property
    def url(self) -> str:
        """The root URL (``https://`` with an ``ssl_context``), without ``/v1``: what
        ``SyncGatewayClient(base_url=...)`` takes."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``url + "/v1"``: what the openai SDK's ``base_url`` takes."""
        return self.url + "/v1"

    @property
    def max_body_size(self) -> int:
        """The largest request body accepted, in bytes; larger ones are answered 413."""
        return self._max_body_size

    @property
    def token(self) -> str:
        """The bearer token it accepts for every model."""
        return self._token

    # -- lifecycle ---------------------------------------------------------------------------

    async def astart(self) -> None:
        """Start serving from the running event loop."""
        if self._runner is not None:
            raise RuntimeError("the FakeGateway is already running")
        runner = web.AppRunner(
            build_app(self._state, self._max_body_size),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._wanted_port, ssl_context=self._ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def astop(self) -> None:
        """Stop serving (from the loop that started it); closes every connection."""
        runner, self._runner = self._runner, None
        self._port = None
        if runner is not None:
            runner.app[CLOSING].set()
            await runner.cleanup()

    async def _serve(self, ready: Callable[[], None]) -> None:
        await self.astart()
        try:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            ready()
            await self._stopping.wait()
        finally:
            self._loop = self._stopping = None
            await self.astop()

    def start(self) -> FakeGateway:
        """Serve from a new thread with its own event loop; returns once it listens."""
        if self._thread is not None or self._runner is not None:
            raise RuntimeError("the FakeGateway is already running")
        listening = threading.Event()
        failures: List[BaseException] = []

        def main() -> None:
            try:
                asyncio.run(self._serve(listening.set))
            except BaseException as exc:
                failures.append(exc)
                listening.set()

        self._thread = threading.Thread(target=main, name="FakeGateway", daemon=True)
        self._thread.start()
        listening.wait()
        if failures:
            self._thread.join()
            self._thread = None
            raise failures[0]
        return self

    def stop(self) -> None:
        """Stop a server started by ``start()`` (and join its thread) or by ``run()``."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None:
            # RuntimeError: the loop already closed, so it is stopping anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            self._thread = None

    def run(self, ready: Optional[Callable[[FakeGateway], None]] = None) -> None:
        """Serve in this thread until ``stop()`` or KeyboardInterrupt; ``ready(self)`` is called
        once it listens (to print ``url``, say)."""
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self._serve(lambda: ready(self) if ready is not None else None))

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeGateway:
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.astop()

    # -- tokens, rate limit, recorded requests -------------------------------------------------

    def reset(self) -> None:
        """Forget everything a test changed: faults, recorded requests and arrivals, rate-limit
        windows, added tokens, and ``rpm_limit``, ``tpm_limit`` and ``latency`` back to the
        constructor's. For a gateway shared by tests."""
        self._state.reset()

    def add_token(self, token: str, models: Optional[Iterable[str]] = None) -> None:
        """Accept ``token`` too; with ``models``, only for those model ids (others: 403)."""
        self._state.add_token(token, models)

    @property
    def rpm_limit(self) -> Optional[int]:
        """Requests per minute allowed per token (None: no limit); may be changed at any time."""
        return self._state.rpm_limit

    @rpm_limit.setter
    def rpm_limit(self, value: Optional[int]) -> None:
        self._state.rpm_limit = value

    @property
    def tpm_limit(self) -> Optional[int]:
        """Tokens (as answered) per minute allowed per token (None: no limit); may be changed."""
        return self._state.tpm_limit

    @tpm_limit.setter
    def tpm_limit(self, value: Optional[int]) -> None:
        self._state.tpm_limit = value

    @property
    def latency(self) -> float:
        """Seconds waited before each ``/v1`` answer (after the rate limit); may be changed."""
        return self._state.latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._state.latency = value

    def reset_rate_limit(self) -> None:
        """Forget every token's window: the next request opens a fresh one."""
        self._state.limiter.reset()

    @property
    def requests(self) -> List[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        return self._state.requests()

    @property
    def arrivals(self) -> List[Arrival]:
        """A snapshot of the arrival log (requests under ``/v1`` once answered), in the order
        their answers were decided."""
        return self._state.arrivals()

    def clear_requests(self) -> None:
        """Forget the recorded requests and the arrival log."""
        self._state.clear_requests()

    # -- scripted faults -----------------------------------------------------------------------

    @property
    def pending_faults(self) -> List[Fault]:
        """Copies of the scripted faults not yet used up, in order."""
        return self._state.faults.pending()

    def clear_faults(self) -> None:
        self._state.faults.clear()

    def _add(self, kind: str, times: int, path: Optional[str], **fields: Any) -> None:
        self._state.faults.add(Fault(kind, times, path, **fields))

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        path: Optional[str] = None,
        body: Any = None,
        headers: Optional[Dict[str, str]] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status``. The body is OpenAI's error
        envelope (``type`` by status: 429 rate_limit_error, 502 provider_error, 529
        overloaded_error, other 5xx server_error, ...) unless ``body`` is given (a str or bytes
        is sent as text, anything else as JSON). ``retry_after`` sets ``Retry-After``."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = format_seconds(retry_after)
        self._add(STATUS, times, path, status=status, body=body, headers=extra)

    def reset_connection(
        self,
        times: int = 1,
        *,
        when: str = BEFORE_HEADERS,
        after: int = 1,
        path: Optional[str] = None,
    ) -> None:
        """Reset the TCP connection (RST) of the next ``times`` requests: ``when="before_headers"``
        with no response at all, ``"mid_body"`` after the headers and half the JSON body (a
        stream: after ``after`` chunks)."""
        if when not in (BEFORE_HEADERS, MID_BODY):
            raise ValueError("when must be 'before_headers' or 'mid_body'")
        self._add(RESET, times, path, when=when, after=after)

    def cut_stream(self, after: int = 1, times: int = 1, *, path: Optional[str] = None) -> None:
        """In the next ``times`` streams, send ``after`` chunks (the role chunk counts) then
        close the connection: the chunked body never ends and no ``[DONE]`` comes."""
        self._add(CUT, times, path, after=after)

    def stall(
        self,
        seconds: float,
        times: int = 1,
        *,
        when: str = BEFORE_HEADERS,
        after: int = 1,
        path: Optional[str] = None,
    ) -> None:
        """Sleep ``seconds`` in the next ``times`` requests, then answer normally:
        ``when="before_headers"`` before anything is sent, ``"mid_stream"`` (streams only) after
        ``after`` chunks."""
        if when not in (BEFORE_HEADERS, MID_STREAM):
            raise ValueError("when must be 'before_headers' or 'mid_stream'")
        self._add(STALL, times, path, seconds=seconds, when=when, after=after)

    def malformed_body(
        self, times: int = 1, *, status: int = 200, path: Optional[str] = None
    ) -> None:
        """Answer ``status`` (200) with ``application/json`` that is not valid JSON."""
        self._add(MALFORMED, times, path, status=status)

    def html_error(self, status: int = 502, times: int = 1, *, path: Optional[str] = None) -> None:
        """Answer ``status`` with the ``text/html`` page an nginx proxy in front would send."""
        self._add(HTML, times, path, status=status)

    def empty_body(self, status: int, times: int = 1, *, path: Optional[str] = None) -> None:
        """Answer ``status`` with no body at all (``Content-Length: 0``)."""
        self._add(EMPTY, times, path, status=status)

    def stream_error(
        self,
        error: Optional[Dict[str, Any]] = None,
        *,
        after: int = 0,
        times: int = 1,
        path: Optional[str] = None,
    ) -> None:
        """In the next ``times`` streams, after ``after`` chunks (0: as the first event), send
        ``data: {"error": error}`` and end the response without ``[DONE]``. The default error
        is a provider error with ``code`` 502."""
        self._add(STREAM_ERROR, times, path, after=after, error=error or _DEFAULT_STREAM_ERROR)
