"""The async client's transport on aiohttp: one session per event loop, bounded waits for
everything (connect, a free connection, each write, each read), and the one place where aiohttp
exceptions become ours."""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from functools import partial
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Tuple, Union

import aiohttp
import aiohttp.client_proto
import aiohttp.http_exceptions
import aiohttp.payload

from ._core import Request
from ._failures import (
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_REDIRECTS,
    Failure,
    Translate,
    os_reason,
)
from ._loops import close_socket, drive, keeper
from .config import ClientConfig

__all__ = ["Transport", "Translate", "unread"]

_WRITE_PIECE = 65536  # a body larger than this is written piece by piece, each write bounded
_TIMEOUTS_KEPT = 64  # distinct per-call timeouts kept built (a deadline's remainder varies)
# The most one read from a plain socket takes in. asyncio reads into a fresh buffer of its
# transport's ``max_size`` (256 KiB) and shrinks it to what came. glibc serves an allocation of
# 128 KiB or more with mmap, and the shrink and the free with mremap and munmap, so every read
# pays a fresh mapping and its page faults: 2 per request, about 25 µs of CPU per chat call in
# a batch (BENCHMARKS.md). Below that size the buffer comes from, and goes back to, the heap.
_READ_SIZE = 64 * 1024


class _Protocol(aiohttp.client_proto.ResponseHandler):
    """aiohttp's connection protocol with its read timeout (``sock_read``) kept lazily, and
    reads of at most ``_READ_SIZE``.

    aiohttp cancels its timer and schedules a new one on every read from the socket: a heap
    push per chunk of a stream. Here the deadline moves on instead, and the timer, when it
    fires, schedules itself for the deadline if it has moved: at most one timer per
    ``timeout`` of waiting, with the same bound (each wait for bytes ends ``timeout`` after the
    last bytes came)."""

    _deadline = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # asyncio's socket transport reads ``max_size`` at a time (an attribute of the
        # transport; a TLS connection reads into a buffer of its own, made once).
        if getattr(transport, "max_size", 0) > _READ_SIZE:
            transport.max_size = _READ_SIZE  # type: ignore[attr-defined]

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if not timeout:
            self._drop_timeout()
            return
        self._deadline = self._loop.time() + timeout
        if self._read_timeout_handle is None:
            self._read_timeout_handle = self._loop.call_at(self._deadline, self._on_read_timeout)

    def set_exception(self, exc: BaseException, *args: Any) -> None:
        """aiohttp's, and the body being read gets the error too. aiohttp puts an error of its
        HTTP parser (a chunk size that is not hex, a chunk shorter than its size) on the
        connection only, and drops the read timeout with it: a reader waiting for the body's
        next bytes would wait forever (aiohttp 3.14, its C parser). The reader gets what
        aiohttp gives a body that ended early, ``ClientPayloadError``."""
        payload = self._payload
        super().set_exception(exc, *args)
        if payload is not None and payload.exception() is None and not payload.is_eof():
            if isinstance(exc, aiohttp.http_exceptions.HttpProcessingError):
                error = aiohttp.ClientPayloadError(f"Response payload is not completed: {exc!r}")
                error.__cause__ = exc
                exc = error
            payload.set_exception(exc)

    def _on_read_timeout(self) -> None:
        handle = self._read_timeout_handle
        if handle is not None and self._deadline > handle.when():  # bytes came since
            self._read_timeout_handle = self._loop.call_at(self._deadline, self._on_read_timeout)
            return
        self._read_timeout_handle = None
        super()._on_read_timeout()


def _use_lazy_read_timer(connector: aiohttp.TCPConnector) -> None:
    """Has ``connector`` make ``_Protocol``s, where it would make aiohttp's own (a private
    attribute; an aiohttp that makes them otherwise keeps its own, as a test notices)."""
    factory = getattr(connector, "_factory", None)
    if isinstance(factory, partial) and factory.func is aiohttp.client_proto.ResponseHandler:
        connector._factory = partial(_Protocol, *factory.args, **factory.keywords)  # type: ignore[assignment]


class _WriteTimeout(asyncio.TimeoutError):
    """The gateway took none of the request body for the call's timeout."""


def _os_failure(kind: str, error: Optional[BaseException]) -> Failure:
    return Failure(kind, reason=os_reason(error.errno if isinstance(error, OSError) else None))


def _proxy_failure(exc: BaseException, proxy: Optional[str]) -> Failure:
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        status = exc.status
        kind = "proxy_refused" if 400 <= status < 500 else "proxy"
        return Failure(kind, status=status, proxy=proxy, reason=f"the proxy answered {status}")
    failure = _os_failure("proxy", getattr(exc, "os_error", exc))
    return Failure("proxy", reason=failure.reason, proxy=proxy)


def _causes(exc: BaseException) -> List[BaseException]:
    """``exc`` and what it was raised from or during, at most five deep."""
    causes: List[BaseException] = []
    cause: Optional[BaseException] = exc
    while cause is not None and len(causes) < 5:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    return causes


def _head_defect(exc: aiohttp.ClientResponseError) -> str:
    return _parser_defect(exc, _causes(exc))


def _parser_defect(exc: Any, causes: List[BaseException]) -> str:
    if any(isinstance(c, aiohttp.http_exceptions.LineTooLong) for c in causes):
        return "a line of its head is too long"
    if any(isinstance(c, aiohttp.http_exceptions.BadStatusLine) for c in causes):
        return "its status line is not HTTP"
    message = str(getattr(exc, "message", ""))  # aiohttp's own words: looked at, never shown
    if "Too many headers" in message:
        return f"more than {MAX_HEADERS} headers"
    if "Content-Length" in message:
        return "its Content-Length is not one number"
    return "its head cannot be read"


def _connector_failure(exc: aiohttp.ClientConnectorError, proxy: Optional[str]) -> Failure:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        verify = getattr(exc.certificate_error, "verify_message", None)
        return Failure("tls_verify", reason=verify or "the certificate is not trusted")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return _proxy_failure(exc, proxy)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Failure("dns")
    if isinstance(exc, aiohttp.ClientSSLError):
        reason = getattr(exc.os_error, "reason", None)
        return Failure("tls", reason=str(reason or "a TLS error"))
    return _os_failure("connect", exc.os_error)


def _broken_framing(exc: BaseException) -> bool:
    """Whether aiohttp's parser refused the body's chunked framing (a chunk size that is not
    hex, say), not the head: in the same read as the head, it fails the response as a whole.
    Its pure-Python parser says so by type, its C parser (llhttp) only in words."""
    return any(
        isinstance(c, aiohttp.http_exceptions.TransferEncodingError)
        or (
            isinstance(c, aiohttp.http_exceptions.HttpProcessingError)
            and "chunk" in str(c.message).lower()
        )
        for c in _causes(exc)
    )


def classify(exc: BaseException, proxy: Optional[str], timeout: Optional[float]) -> Any:
    """The Failure that an aiohttp exception (or an OSError or timeout under it) stands for;
    None for anything else: cancellation and bugs surface as themselves."""
    parsed = (aiohttp.http_exceptions.HttpProcessingError, aiohttp.ClientResponseError)
    if isinstance(exc, parsed) and _broken_framing(exc):  # as when it breaks off in a later read
        return Failure("dropped", reason="the body was cut short")
    if isinstance(exc, aiohttp.http_exceptions.HttpProcessingError):  # the parser's, unwrapped
        return Failure("malformed", reason=_parser_defect(exc, [exc]))
    if isinstance(exc, _WriteTimeout):
        return Failure("write_timeout", seconds=timeout)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Failure("connect_timeout", seconds=timeout)
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's SocketTimeoutError among them
        return Failure("read_timeout", seconds=timeout)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _connector_failure(exc, proxy)
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return Failure("tls_verify", reason="the certificate's fingerprint does not match")
    if isinstance(exc, aiohttp.ClientPayloadError):
        if isinstance(exc.__cause__, aiohttp.http_exceptions.ContentEncodingError):
            return Failure("decode", reason="corrupt data")
        return Failure("dropped", reason="the body was cut short")
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return _proxy_failure(exc, proxy)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return Failure("redirects")
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return Failure("redirect_target")
    if isinstance(exc, aiohttp.ClientResponseError):
        return Failure("malformed", reason=_head_defect(exc))
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return Failure("dropped", reason="the gateway closed the connection")
    if isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
        return _os_failure("dropped", exc)
    if isinstance(exc, aiohttp.ClientError):
        return Failure("other", reason=type(exc).__name__)
    return None


class _Body(aiohttp.payload.Payload):
    """A large request body written in pieces, each write bounded by the call's timeout: aiohttp
    bounds reads, but would wait forever on a gateway that stops reading an upload. A write that
    times out aborts the connection (a graceful close would wait to flush the unsent body)."""

    def __init__(self, value: bytes, seconds: Optional[float]) -> None:
        super().__init__(value, content_type=None)
        self._size = len(value)
        self._seconds = seconds

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return bytes(self._value)

    async def write_with_length(self, writer: Any, content_length: Optional[int]) -> None:
        view = memoryview(self._value)
        if content_length is not None:
            view = view[:content_length]
        for start in range(0, len(view), _WRITE_PIECE):
            piece = view[start : start + _WRITE_PIECE]
            if self._seconds is None:
                await writer.write(piece)
                continue
            try:
                await asyncio.wait_for(writer.write(piece), self._seconds)
            except asyncio.TimeoutError:
                transport = getattr(writer, "transport", None)
                if transport is not None:
                    transport.abort()
                raise _WriteTimeout() from None

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)


class _Pool:
    """One loop's session, and the streams of that loop parked after ``[DONE]``."""

    __slots__ = ("keeper", "parked", "session")

    def __init__(self, session: aiohttp.ClientSession, keeper: AsyncIterator[None]) -> None:
        self.session = session
        self.keeper = keeper
        self.parked: List[aiohttp.ClientResponse] = []

    def reap(self) -> None:
        """Close what parked streams still hold: a body whose end had arrived has already
        given its connection back (aiohttp does so at the end of the body)."""
        parked, self.parked = self.parked, []
        for response in parked:
            if response.content.is_eof():
                response.release()
            else:
                response.close()

    async def aclose(self) -> None:
        self.reap()
        await self.keeper.aclose()  # type: ignore[attr-defined]

    def close_dead(self) -> None:
        """Close this pool after its loop was closed without shutting its generators down
        (``new_event_loop()`` ... ``close()``): no loop can run the keeper, so its sockets are
        closed here and the keeper is driven to its end by hand."""
        parked, self.parked = self.parked, []
        for response in parked:
            response.close()  # on a closed loop this only marks it closed
        connector = self.session.connector
        if connector is not None:
            for protocol in _protocols(connector):
                close_socket(getattr(protocol, "transport", None))
        drive(self.keeper.aclose())  # type: ignore[attr-defined]  # nothing in it waits


def _protocols(connector: aiohttp.BaseConnector) -> List[Any]:
    # aiohttp has no public list of its connections; these two hold every one of them.
    idle = getattr(connector, "_conns", {})
    acquired = getattr(connector, "_acquired", ())
    return [protocol for entries in idle.values() for protocol, _ in entries] + list(acquired)


class Transport:
    """One aiohttp session per event loop, created lazily inside that loop."""

    def __init__(self, config: ClientConfig, tls: Union[bool, ssl.SSLContext]) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = (
            weakref.WeakKeyDictionary()
        )
        self._timeouts: Dict[Optional[float], aiohttp.ClientTimeout] = {}
        self._last: Optional[Tuple[asyncio.AbstractEventLoop, _Pool]] = None
        self._ssl = tls
        self.proxy = config.proxy
        weakref.finalize(self, _close_dead_pools, self._pools)

    async def pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        last = self._last  # the common case: the loop of the previous call
        if last is not None and last[0] is loop and not last[1].session.closed:
            return last[1]
        pool = self._pools.get(loop)
        if pool is None or pool.session.closed:
            _close_dead_pools(self._pools)
            pool = await self._new_pool(loop)
        self._last = (loop, pool)
        return pool

    async def _new_pool(self, loop: asyncio.AbstractEventLoop) -> _Pool:
        connector = aiohttp.TCPConnector(limit=self._config.max_connections, ssl=self._ssl)
        _use_lazy_read_timer(connector)
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            max_line_size=MAX_HEADER_LINE,  # the limits of http.client, under the sync twin
            max_field_size=MAX_HEADER_LINE,
            max_headers=MAX_HEADERS,
        )
        # aiohttp silently re-sends an idempotent request once when a reused connection drops;
        # retries belong to our policy alone (max_retries=0 sends one request), and aiohttp
        # offers no public switch for this.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        # The keeper holds the transport weakly: the transport's finalizer, which holds the pools,
        # must not keep the transport itself alive.
        keeper = _keeper(session, partial(_forget, weakref.ref(self), loop, session))
        await keeper.__anext__()  # runs to its yield at once: no other task interleaves
        pool = _Pool(session, keeper)
        with self._lock:
            self._pools[loop] = pool
        return pool

    def _forget(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
        with self._lock:
            pool = self._pools.get(loop)
            if pool is not None and pool.session is session:
                del self._pools[loop]
                pool.reap()
            if self._last is not None and self._last[1].session is session:
                self._last = None

    def _timeout(self, seconds: Optional[float]) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            # ``connect`` bounds the wait for a free connection of the pool and the connect;
            # ``sock_read`` each wait for bytes; never the whole call.
            timeout = aiohttp.ClientTimeout(
                total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
            )
            if len(self._timeouts) >= _TIMEOUTS_KEPT:
                self._timeouts.clear()
            self._timeouts[seconds] = timeout
        return timeout

    def translate(self, request: Request) -> Translate:
        return Translate(request, self.proxy, classify)

    async def send(self, request: Request) -> aiohttp.ClientResponse:
        last = self._last  # the common case, without awaiting pool(): this loop's last pool
        if (
            last is not None
            and last[0] is asyncio.get_running_loop()
            and not last[1].session.closed
        ):
            pool = last[1]
        else:
            pool = await self.pool()
        if pool.parked:
            await asyncio.sleep(0)  # take in what has arrived for them: ends of bodies among it
            pool.reap()
        body: Any = request.body
        if body is not None and len(body) > _WRITE_PIECE:
            body = _Body(body, request.timeout)
        with Translate(request, self.proxy, classify):
            response = await pool.session.request(
                request.method, request.url, headers=request.headers, data=body,
                timeout=self._timeout(request.timeout), proxy=self.proxy,
                max_redirects=MAX_REDIRECTS + 1,  # aiohttp counts the first answer too
            )  # fmt: skip
        return response

    async def park(self, response: aiohttp.ClientResponse) -> None:
        """A stream ended at ``[DONE]``; the end of its body may still be on its way. Nobody
        waits for it: what has arrived is taken in (one turn of the loop), and the connection
        goes back to the pool when the body ends; the next request closes it if it has not."""
        await asyncio.sleep(0)
        content = response.content
        if content.is_eof() or content.exception() is not None:
            response.release() if content.is_eof() else response.close()
            return
        pool = await self.pool()
        pool.parked.append(response)

    async def close(self) -> None:
        with self._lock:
            pools = list(self._pools.items())
            self._pools.clear()
            self._last = None
        current = asyncio.get_running_loop()
        for loop, pool in pools:
            if loop is current:
                await pool.aclose()
            elif loop.is_closed():
                pool.close_dead()
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(pool.aclose(), loop)


def _keeper(session: aiohttp.ClientSession, forget: Callable[[], None]) -> AsyncIterator[None]:
    async def close() -> None:
        forget()  # the session holds its loop: an entry left behind would keep both alive
        await session.close()

    return keeper(close)


def _forget(
    ref: Callable[[], Optional[Transport]],
    loop: asyncio.AbstractEventLoop,
    session: aiohttp.ClientSession,
) -> None:
    transport = ref()
    if transport is not None:
        transport._forget(loop, session)


def _close_dead_pools(pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool]) -> None:
    for loop, pool in list(pools.items()):
        if loop.is_closed():
            pools.pop(loop, None)
            pool.close_dead()


def unread(response: Optional[aiohttp.ClientResponse]) -> bytes:
    """Bytes aiohttp received before a connection failed but will not hand out: its readers
    raise the stored error ahead of buffered data, and no public call reaches that buffer. The
    sync client delivers such bytes, so the twins agree only if we take them."""
    buffer = getattr(getattr(response, "content", None), "_buffer", None)
    if not buffer:
        return b""
    try:
        data = b"".join(buffer)
    except TypeError:
        return b""
    buffer.clear()
    return data
