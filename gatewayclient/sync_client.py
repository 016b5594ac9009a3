"""SyncGatewayClient: the blocking client, on requests. It only does I/O; ``_core`` decides."""

from __future__ import annotations

import os
import threading
from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import requests
import requests.adapters
import urllib3.exceptions

from . import retry
from ._base import ClientBase
from ._core import END, END_READS, NEED_DATA, Call, Request, StreamCall
from .config import ClientConfig, RetryPolicy
from .errors import (
    GatewayClientError,
    GatewayConnectionError,
    GatewayResponseError,
    GatewayTimeoutError,
)
from .models import (
    ChatCompletion,
    ChatCompletionChunk,
    CompletionUsage,
    EmbeddingResponse,
    ModelList,
    ProviderModels,
)

__all__ = ["SyncGatewayClient", "SyncStream"]


def _gateway_error(where: str, exc: BaseException) -> Optional[GatewayClientError]:
    """The gatewayclient error for a requests or urllib3 exception (timeouts first), or None."""
    if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError)):
        return GatewayTimeoutError(f"{where} timed out: {exc}")
    if isinstance(exc, requests.ConnectionError):
        # iter_content re-raises urllib3's ReadTimeoutError as a ConnectionError.
        if exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError):
            return GatewayTimeoutError(f"{where} timed out: {exc}")
        return GatewayConnectionError(f"{where} failed: {exc}")
    if isinstance(
        exc,
        (
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.SSLError,
            ConnectionError,
        ),
    ):
        return GatewayConnectionError(f"{where} failed: {exc}")
    if isinstance(exc, (requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError)):
        return GatewayResponseError(f"{where}: the body could not be decoded: {exc}")
    if isinstance(exc, (requests.RequestException, urllib3.exceptions.HTTPError)):
        return GatewayClientError(f"{where} failed: {exc}")
    return None


class _Translate:
    """``with _Translate(request):`` turns requests and urllib3 exceptions into gatewayclient's.

    A class, not a generator context manager: a stream enters it on every read."""

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


class _Transport:
    """One requests.Session per process. ``trust_env`` is off: the configuration read the
    environment (proxies, CA bundle) once, where requests would re-read it on every call."""

    def __init__(self, config: ClientConfig, tls: object) -> None:
        # ``tls`` (checked at construction) is for the async twin: requests loads the CA bundle
        # named by ``config.verify`` itself.
        self._config = config
        self._lock = threading.Lock()
        self._session: Optional[requests.Session] = None
        self._pid = 0
        self._proxies = {"http": config.proxy, "https": config.proxy} if config.proxy else {}
        self._verify = config.verify

    def session(self) -> requests.Session:
        session = self._session
        if session is None or self._pid != os.getpid():
            with self._lock:
                if self._session is None or self._pid != os.getpid():
                    # After a fork the parent's pooled sockets must not be shared: start afresh.
                    self._session, self._pid = self._new_session(), os.getpid()
                session = self._session
        return session

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=self._config.max_connections, max_retries=0
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def send(self, request: Request, stream: bool) -> requests.Response:
        prepared = requests.PreparedRequest()
        timeout: Union[Tuple[float, float], None] = (
            None if request.timeout is None else (request.timeout, request.timeout)
        )
        with _Translate(request):
            prepared.prepare(
                method=request.method, url=request.url, headers=request.headers, data=request.body
            )
            return self.session().send(
                prepared, stream=stream, timeout=timeout, verify=self._verify, proxies=self._proxies
            )

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None and self._pid == os.getpid():
            # Session.close() only forgets urllib3's pools: their kept-alive sockets would stay
            # open for as long as anything (a held error's traceback) references a pool.
            for adapter in session.adapters.values():
                if not isinstance(adapter, requests.adapters.HTTPAdapter):
                    continue
                managers = [adapter.poolmanager, *adapter.proxy_manager.values()]
                for manager in managers:
                    for key in list(manager.pools.keys()):
                        pool = manager.pools.get(key)
                        if pool is not None:
                            pool.close()
            session.close()


def _raw_chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: each network read, never requests' line iterator."""
    raw = response.raw
    if raw.chunked:
        return raw.stream(None, decode_content=True)  # each HTTP chunk as it arrives
    if hasattr(raw, "read1"):
        return iter(partial(raw.read1, 65536), b"")  # a body without chunked framing
    return response.iter_content(chunk_size=None)


class SyncStream:
    """A chat stream: iterate it for chunks; leaving it early releases the connection."""

    def __init__(self, transport: _Transport, call: StreamCall, policy: RetryPolicy) -> None:
        self._transport = transport
        self._call = call
        self._policy = policy
        self._state = call.new_state()
        self._response: Optional[requests.Response] = None
        self._chunks: Iterator[bytes] = iter(())
        self._translate = _Translate(call.request)
        self._opened = False
        self._closed = False

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> ChatCompletionChunk:
        if self._closed:
            raise StopIteration
        if not self._opened:
            retry.run(self._policy, self._connect, self._call.request.label)
            self._opened = True
        try:
            item = self._state.take()
            while item is NEED_DATA:
                self._state.feed(self._read())
                item = self._state.take()
        except BaseException:
            self.close()
            raise
        if item is END:
            self._end()
            raise StopIteration
        return item  # type: ignore[return-value]

    def _end(self) -> None:
        """After [DONE]: read the body's end, so that its connection goes back to the pool."""
        response = self._response
        try:
            with self._translate:
                for _ in range(END_READS):
                    if not next(self._chunks, b""):
                        if response is not None:
                            response.raw.release_conn()
                        break
        except GatewayClientError:
            pass  # the answer is whole; a failure past its end costs only the connection
        self.close()

    def _connect(self) -> None:
        """One attempt: send, check the head, read up to the first chunk (all retryable)."""
        self.close()
        self._closed = False
        self._state.restart()
        self._response = response = self._transport.send(self._call.request, stream=True)
        try:
            if not self._call.accepts(response.status_code, response.headers):
                with _Translate(self._call.request):
                    body = response.content
                raise self._call.reject(response.status_code, response.headers, body)
            self._chunks = _raw_chunks(response)
            while not self._state.ready:
                self._state.feed(self._read())
        except BaseException:
            self.close()
            raise

    def _read(self) -> bytes:
        try:
            with self._translate:
                return next(self._chunks, b"")
        except GatewayConnectionError as exc:
            self.close()
            error = self._state.read_failed(exc)
            if error is exc:
                raise
            raise error from exc
        except BaseException:
            self.close()
            raise

    def completion(self) -> ChatCompletion:
        """What has arrived so far as one ChatCompletion; after the end, the whole answer."""
        return self._state.completion()

    @property
    def usage(self) -> Optional[CompletionUsage]:
        return self._state.usage

    def close(self) -> None:
        """Stop reading and release the connection; iteration then ends."""
        self._closed = True
        response, self._response = self._response, None
        if response is not None:
            response.close()

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        response = self.__dict__.get("_response")
        if response is not None:
            response.close()


class SyncGatewayClient(ClientBase):
    """Blocking client for an OpenAI-compatible AI gateway; safe to share between threads."""

    _transport_type = _Transport
    _transport: _Transport

    def _attempt(self, call: Call) -> Any:
        response = self._transport.send(call.request, stream=False)
        with _Translate(call.request):
            body = response.content
        return call.handle(response.status_code, response.headers, body)

    def _run(self, call: Call) -> Any:
        result: Any = call
        while isinstance(result, Call):  # a Call may answer with a fallback Call
            result = retry.run(result.policy, partial(self._attempt, result), result.request.label)
        return result

    def chat_completion(
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
        result: ChatCompletion = self._run(call)
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
    ) -> SyncStream:
        """Stream a chat completion; arguments are checked now, the request is sent on iteration."""
        call = self._core.stream(model, messages, temperature, max_tokens, top_p, params)
        return SyncStream(self._transport, call, call.policy)

    def embeddings(
        self, model: str, input: Union[str, List[str]], **params: Any
    ) -> EmbeddingResponse:
        """Create embeddings for a string or a list of strings (``POST /embeddings``)."""
        result: EmbeddingResponse = self._run(self._core.embeddings(model, input, params))
        return result

    def list_models(self) -> ModelList:
        """Every model the gateway offers (``GET /models``)."""
        result: ModelList = self._run(self._core.models())
        return result

    def list_provider_models(self, provider: str) -> ProviderModels:
        """The models of one provider (``GET /providers/{provider}/models``, else from /models)."""
        result: ProviderModels = self._run(self._core.provider_models(provider))
        return result

    def list_known_providers(self) -> List[str]:
        """Provider names, in the gateway's order (``GET /providers``, else from /models)."""
        result: List[str] = self._run(self._core.providers())
        return result

    def close(self) -> None:
        """Close pooled connections; the client can still be used afterwards (it reconnects)."""
        self._transport.close()

    def __enter__(self) -> SyncGatewayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
