"""AsyncGatewayClient: the asyncio client, on aiohttp. It only does I/O; ``_core`` decides."""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from contextlib import suppress
from functools import partial
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Tuple, Union

import aiohttp

from . import retry
from ._base import ClientBase
from ._core import END, END_READS, NEED_DATA, Call, Request, StreamCall
from .config import ClientConfig, RetryPolicy
from .errors import GatewayClientError, GatewayConnectionError, GatewayTimeoutError
from .models import (
    ChatCompletion,
    ChatCompletionChunk,
    CompletionUsage,
    EmbeddingResponse,
    ModelList,
    ProviderModels,
)

__all__ = ["AsyncGatewayClient", "AsyncStream"]


def _gateway_error(where: str, exc: BaseException) -> Optional[GatewayClientError]:
    """The gatewayclient error for an aiohttp exception (timeouts first), or None."""
    if isinstance(exc, asyncio.TimeoutError):
        return GatewayTimeoutError(f"{where} timed out")
    if isinstance(
        exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)
    ):
        return GatewayConnectionError(f"{where} failed: {exc!r}")
    if isinstance(exc, aiohttp.ClientError):
        return GatewayClientError(f"{where} failed: {exc!r}")
    return None


class _Translate:
    """``with _Translate(request):`` turns aiohttp exceptions into gatewayclient's; cancellation
    passes through. A class, not a generator context manager: a stream enters it on every read."""

    __slots__ = ("where",)

    def __init__(self, request: Request) -> None:
        self.where = request.label

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Optional[BaseException], traceback: Any) -> None:
        if exc is not None:
            error = _gateway_error(self.where, exc)
            if error is not None:
                raise error from exc


async def _session_keeper(
    session: aiohttp.ClientSession, forget: Callable[[], None]
) -> AsyncIterator[None]:
    # An async generator started inside the loop is registered with it, and asyncio.run() (like
    # every well-behaved runner) closes such generators before it closes the loop: the session is
    # then closed inside its own loop, with no "Unclosed client session" and no "Event loop is
    # closed", even when the caller never closes the client.
    try:
        yield
    finally:
        forget()  # the session holds its loop: an entry left behind would keep both alive
        await session.close()


class _Pool:
    __slots__ = ("keeper", "session")

    def __init__(self, session: aiohttp.ClientSession, keeper: AsyncIterator[None]) -> None:
        self.session = session
        self.keeper = keeper

    async def aclose(self) -> None:
        await self.keeper.aclose()  # type: ignore[attr-defined]


class _Transport:
    """One aiohttp session per event loop, created lazily inside that loop."""

    def __init__(self, config: ClientConfig, tls: Union[bool, ssl.SSLContext]) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = (
            weakref.WeakKeyDictionary()
        )
        self._timeouts: Dict[Optional[float], aiohttp.ClientTimeout] = {}
        self._last: Optional[Tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = None
        self._ssl = tls

    async def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        last = self._last  # the common case: the loop of the previous call
        if last is not None and last[0] is loop and not last[1].closed:
            return last[1]
        pool = self._pools.get(loop)
        if pool is None or pool.session.closed:
            connector = aiohttp.TCPConnector(limit=self._config.max_connections, ssl=self._ssl)
            session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
            # aiohttp silently re-sends an idempotent request once when a reused connection
            # drops; retries belong to our policy alone (max_retries=0 sends one request), and
            # aiohttp offers no public switch for this.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            keeper = _session_keeper(session, partial(self._forget, loop, session))
            await keeper.__anext__()  # runs to its yield at once: no other task interleaves
            pool = _Pool(session, keeper)
            with self._lock:
                self._pools[loop] = pool
        self._last = (loop, pool.session)
        return pool.session

    def _forget(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
        with self._lock:
            pool = self._pools.get(loop)
            if pool is not None and pool.session is session:
                del self._pools[loop]
            if self._last is not None and self._last[1] is session:
                self._last = None

    def _timeout(self, seconds: Optional[float]) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:  # bounds the connect and each wait for bytes, not the whole call
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
            self._timeouts[seconds] = timeout
        return timeout

    async def send(self, request: Request) -> aiohttp.ClientResponse:
        session = await self.session()
        with _Translate(request):
            return await session.request(
                request.method, request.url, headers=request.headers, data=request.body,
                timeout=self._timeout(request.timeout), proxy=self._config.proxy,
            )  # fmt: skip

    async def close(self) -> None:
        with self._lock:
            pools = list(self._pools.items())
            self._pools.clear()
            self._last = None
        current = asyncio.get_running_loop()
        for loop, pool in pools:
            if loop is current:
                await pool.aclose()
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(pool.aclose(), loop)


def _unread(response: Optional[aiohttp.ClientResponse]) -> bytes:
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


class AsyncStream:
    """A chat stream: ``async for`` it; leaving early or cancelling releases the connection."""

    def __init__(self, transport: _Transport, call: StreamCall, policy: RetryPolicy) -> None:
        self._transport = transport
        self._call = call
        self._policy = policy
        self._state = call.new_state()
        self._response: Optional[aiohttp.ClientResponse] = None
        self._cut: Optional[GatewayConnectionError] = None
        self._translate = _Translate(call.request)
        self._opened = False
        self._closed = False

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._closed:
            raise StopAsyncIteration
        if not self._opened:
            await retry.arun(self._policy, self._connect, self._call.request.label)
            self._opened = True
        try:
            item = self._state.take()
            while item is NEED_DATA:
                self._state.feed(await self._read())
                item = self._state.take()
        except BaseException:
            self._release()
            raise
        if item is END:
            await self._end()
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    async def _end(self) -> None:
        """After [DONE]: read the body's end, so that its connection goes back to the pool."""
        response = self._response
        try:
            with self._translate:
                for _ in range(END_READS):
                    if response is None or not await response.content.readany():
                        if response is not None:
                            response.release()
                        break
        except GatewayClientError:
            pass  # the answer is whole; a failure past its end costs only the connection
        self._release()

    async def _connect(self) -> None:
        """One attempt: send, check the head, read up to the first chunk (all retryable)."""
        self._release()
        self._closed = False
        self._state.restart()
        self._cut = None
        self._response = response = await self._transport.send(self._call.request)
        try:
            if not self._call.accepts(response.status, response.headers):
                with _Translate(self._call.request):
                    body = await response.read()
                raise self._call.reject(response.status, response.headers, body)
            while not self._state.ready:
                self._state.feed(await self._read())
        except BaseException:
            self._release()
            raise

    async def _read(self) -> bytes:
        try:
            cut, self._cut = self._cut, None
            if cut is not None:
                raise cut
            response = self._response
            if response is None:
                return b""
            with self._translate:
                return await response.content.readany()
        except GatewayConnectionError as exc:
            unread = _unread(self._response)
            if unread:  # hand over what arrived before the failure; raise it on the next read
                self._cut = exc
                return unread
            self._release()
            error = self._state.read_failed(exc)
            if error is exc:
                raise
            raise error from exc
        except BaseException:
            self._release()
            raise

    def completion(self) -> ChatCompletion:
        """What has arrived so far as one ChatCompletion; after the end, the whole answer."""
        return self._state.completion()

    @property
    def usage(self) -> Optional[CompletionUsage]:
        return self._state.usage

    def _release(self) -> None:
        self._closed = True
        response, self._response = self._response, None
        if response is not None:
            response.close()

    async def aclose(self) -> None:
        """Stop reading and release the connection; iteration then ends."""
        self._release()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        response = self.__dict__.get("_response")
        if response is not None:
            with suppress(Exception):  # its loop may be closed already
                response.close()


class AsyncGatewayClient(ClientBase):
    """Asyncio client for an OpenAI-compatible AI gateway; usable from any event loop."""

    _transport_type = _Transport
    _transport: _Transport

    async def _attempt(self, call: Call) -> Any:
        response = await self._transport.send(call.request)
        try:
            with _Translate(call.request):
                body = await response.read()
        finally:
            response.release()
        return call.handle(response.status, response.headers, body)

    async def _run(self, call: Call) -> Any:
        result: Any = call
        while isinstance(result, Call):  # a Call may answer with a fallback Call
            result = await retry.arun(
                result.policy, partial(self._attempt, result), result.request.label
            )
        return result

    async def chat_completion(
        self,
        model: str,
        messages: List[Dict[str, Any]],
        *,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        top_p: Optional[float] = None,
        **params: Any,
    ) -> ChatCompletion:
        """Create a chat completion (``POST /chat/completions``)."""
        call = self._core.chat(model, messages, temperature, max_tokens, top_p, params)
        result: ChatCompletion = await self._run(call)
        return result

    def stream_chat_completion(
        self,
        model: str,
        messages: List[Dict[str, Any]],
        *,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        top_p: Optional[float] = None,
        **params: Any,
    ) -> AsyncStream:
        """Stream a chat completion; arguments are checked now, the request is sent on iteration."""
        call = self._core.stream(model, messages, temperature, max_tokens, top_p, params)
        return AsyncStream(self._transport, call, call.policy)

    async def embeddings(
        self, model: str, input: Union[str, List[str]], **params: Any
    ) -> EmbeddingResponse:
        """Create embeddings for a string or a list of strings (``POST /embeddings``)."""
        result: EmbeddingResponse = await self._run(self._core.embeddings(model, input, params))
        return result

    async def list_models(self) -> ModelList:
        """Every model the gateway offers (``GET /models``)."""
        result: ModelList = await self._run(self._core.models())
        return result

    async def list_provider_models(self, provider: str) -> ProviderModels:
        """The models of one provider (``GET /providers/{provider}/models``, else from /models)."""
        result: ProviderModels = await self._run(self._core.provider_models(provider))
        return result

    async def list_known_providers(self) -> List[str]:
        """Provider names, in the gateway's order (``GET /providers``, else from /models)."""
        result: List[str] = await self._run(self._core.providers())
        return result

    async def aclose(self) -> None:
        """Close this client's sessions; the client can still be used afterwards (it reconnects)."""
        await self._transport.close()

    async def close(self) -> None:
        """The same as ``aclose()``."""
        await self.aclose()

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
