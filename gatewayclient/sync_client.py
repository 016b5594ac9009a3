"""SyncGatewayClient: the blocking client, on requests. It only does I/O; ``_core`` decides."""

from __future__ import annotations

from functools import partial
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import requests

from . import _batch, _telemetry, _traffic, _vectors, retry
from ._base import ClientBase, StreamBase
from ._batch import BatchResult
from ._batch_threads import run_threads
from ._core import END, NEED_DATA, Call, StreamCall
from ._sync_transport import Transport, raw_chunks, shut
from .budget import RateLimit
from .errors import GatewayClientError, GatewayConnectionError, request_id_from
from .models import (
    ChatCompletion,
    ChatCompletionChunk,
    EmbeddingResponse,
    ModelList,
    ProviderModels,
)

__all__ = ["SyncGatewayClient", "SyncStream"]

_CANCELLED = (KeyboardInterrupt, GeneratorExit)


class SyncStream(StreamBase):
    """A chat stream: iterate it for chunks; leaving it early releases the connection.

    ``close()`` may come from another thread ("stop generating"): a read blocked in the
    iterating thread then ends at once, and the iteration ends quietly."""

    def __init__(
        self, transport: Transport, call: StreamCall, limit: Optional[RateLimit] = None
    ) -> None:
        self._setup_stream(transport, call, limit)
        self._response: Optional[requests.Response] = None
        self._chunks: Iterator[bytes] = iter(())

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> ChatCompletionChunk:
        if self._closed:
            raise StopIteration
        try:
            if not self._opened:
                observation = self._observe()
                if observation is None:
                    self._open_models()
                else:
                    with observation.current():
                        self._open_models()
                self._opened = True
            item = self._state.take()
            while item is NEED_DATA:
                item = self._state.feed_take(self._read())
        except BaseException as exc:
            self._release()
            if self._stopped and isinstance(exc, GatewayClientError):
                self._ended("closed")
                raise StopIteration from None  # closed from another thread mid-read
            self._ended("cancelled" if isinstance(exc, _CANCELLED) else "failed", exc)
            raise
        if item is END:
            self._end()
            self._ended("done")
            raise StopIteration
        return item  # type: ignore[return-value]

    def _end(self) -> None:
        """After [DONE]: iteration ends now; the transport decides about the connection."""
        self._closed = True
        response, self._response = self._response, None
        if response is not None:
            self._transport.park(response, self._chunks)
        if self._ticket is not None:
            _traffic.settle(self._ticket, self._state.usage)

    def _open_models(self) -> None:
        if self._call.next_models:
            _traffic.run_chain(self._call, self._open)
        else:
            self._open(self._call)

    def _open(self, call: StreamCall) -> None:
        """Open the stream for ``call`` (a fallback model's, after the first), with retries."""
        if call is not self._call:
            self._use(call)
        retry.run(call.policy, self._connect, call.request.label)

    def _connect(self) -> None:
        """One attempt: send, check the head, read up to the first chunk (all retryable)."""
        self._release()
        if self._stopped:
            raise StopIteration
        self._closed = False
        limit = self._limit
        self._ticket = None if limit is None else _traffic.take(limit, self._call.cost)
        try:
            self._response = response = self._transport.send(self._call.request, stream=True)
            self._state.restart(response.headers)
            self._request_id = request_id_from(response.headers, self._call.secret)
            if not self._call.accepts(response.status_code, response.headers):
                with self._translate:
                    body = response.content
                raise self._call.reject(response.status_code, response.headers, body)
            self._chunks = raw_chunks(response)
            while not self._state.ready:
                self._state.feed(self._read())
        except BaseException as exc:
            self._release()
            if self._ticket is not None:
                _traffic.failed(self._ticket, exc)
            raise

    def _read(self) -> bytes:
        try:
            try:
                return next(self._chunks, b"")
            except BaseException as exc:
                self._translate.raise_for(exc)  # as ``with self._translate:`` would
                raise
        except GatewayConnectionError as exc:
            self._release()
            error = self._state.read_failed(exc)
            if error is exc:
                raise
            raise error from exc
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        self._closed = True
        response, self._response = self._response, None
        if response is not None:
            response.close()

    def close(self) -> None:
        """Stop reading and release the connection; iteration then ends. Safe to call from
        another thread while one is blocked reading."""
        self._stopped = True
        response = self._response
        if response is not None:
            shut(response)
        self._release()
        self._ended("closed")

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self.__dict__.get("_observation") is not None:
            self._ended("closed")
        response = self.__dict__.get("_response")
        if response is not None:
            response.close()


class SyncGatewayClient(ClientBase):
    """Blocking client for an OpenAI-compatible AI gateway; safe to share between threads."""

    _transport_type = Transport
    _transport: Transport

    def _exchange(self, call: Call) -> Any:
        response = self._transport.send(call.request, stream=False)
        with self._transport.translate(call.request):
            body = response.content
        return call.handle(response.status_code, response.headers, body)

    def _attempt(self, call: Call) -> Any:
        limit = self._core.config.rate_limit
        if limit is None:
            return self._exchange(call)
        return _traffic.spend(limit, call.cost, self._exchange, call)

    def _run_one(self, call: Call) -> Any:
        attempt = self._exchange if self._core.config.rate_limit is None else self._attempt
        result: Any = call
        while isinstance(result, Call):  # a Call may answer with a provider route's fallback
            current = result
            try:  # retry.run, its first attempt made here: one layer less for the common call
                result = attempt(current)
            except GatewayClientError as error:
                if not retry.retried(current.policy, error):
                    raise
                again = partial(attempt, current)
                result = retry.run_again(current.policy, again, current.request.label, error)
        return result

    def _run_batch(self, run: _batch.Run, concurrency: int) -> _batch.Run:
        return run_threads(self, run, concurrency)

    def _run_models(self, call: Call) -> Any:
        if not call.next_models:
            return self._run_one(call)
        return _traffic.run_chain(call, self._run_one)

    def _run(self, call: Call) -> Any:
        observation = _telemetry.observe(call, self._core.config.api_root)
        if observation is not None:
            return _telemetry.run(observation, partial(self._run_models, call))
        if call.next_models:
            return _traffic.run_chain(call, self._run_one)
        return self._run_one(call)

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
        return SyncStream(self._transport, call, self._core.config.rate_limit)

    def embeddings(
        self, model: str, input: Union[str, List[str]], **params: Any
    ) -> EmbeddingResponse:
        """Create embeddings for a string or a list of strings (``POST /embeddings``)."""
        result: EmbeddingResponse = self._run(self._core.embeddings(model, input, params))
        return result

    def batch_chat_completions(
        self,
        requests: Iterable[Mapping[str, Any]],
        *,
        concurrency: int = 8,
        progress: bool = False,
        checkpoint: Optional[_batch.PathLike] = None,
    ) -> List[BatchResult[ChatCompletion]]:
        """``chat_completion(**request)`` for each request, at most ``concurrency`` at once, with
        the client's retries, fallbacks and rate budget; results in input order. Every request
        is checked before any is sent. ``checkpoint``: a JSONL file of finished items (the
        OpenAI Batch API's output format) that a later run resumes from."""
        run = _batch.chat_run(self._core, requests, concurrency, progress, checkpoint)
        results: Any = self._run_batch(run, concurrency).results
        return results  # type: ignore[no-any-return]

    def batch_embeddings(
        self,
        model: str,
        inputs: Sequence[str],
        *,
        batch_size: int = 256,
        concurrency: int = 4,
        progress: bool = False,
        **params: Any,
    ) -> List[List[float]]:
        """The vectors of ``inputs`` in input order, requested ``batch_size`` inputs at a time,
        at most ``concurrency`` requests at once; the first error is raised once the requests
        in flight have ended. ``encoding_format="base64"`` is decoded to floats too."""
        run, count = _vectors.embeddings_run(
            self._core, model, inputs, batch_size, concurrency, progress, params
        )
        ran = self._run_batch(run, concurrency)
        return _vectors.embeddings_vectors(ran, count, batch_size)

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
