"""AsyncGatewayClient: the asyncio client, on aiohttp. It only does I/O; ``_core`` decides."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from functools import partial
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import aiohttp

from . import _batch, _telemetry, _traffic, _vectors, retry
from ._async_transport import Transport, unread
from ._base import ClientBase, StreamBase
from ._batch import BatchResult
from ._batch_tasks import run_tasks
from ._core import END, NEED_DATA, Call, StreamCall
from .budget import RateLimit
from .errors import GatewayClientError, GatewayConnectionError, request_id_from
from .models import (
    ChatCompletion,
    ChatCompletionChunk,
    EmbeddingResponse,
    ModelList,
    ProviderModels,
)

__all__ = ["AsyncGatewayClient", "AsyncStream"]

_CANCELLED = (asyncio.CancelledError, GeneratorExit)


class AsyncStream(StreamBase):
    """A chat stream: ``async for`` it; leaving early or cancelling releases the connection.

    ``aclose()`` may come from another task ("stop generating"): a read waiting in the
    iterating task then ends at once, and the iteration ends quietly."""

    def __init__(
        self, transport: Transport, call: StreamCall, limit: Optional[RateLimit] = None
    ) -> None:
        self._setup_stream(transport, call, limit)
        self._response: Optional[aiohttp.ClientResponse] = None
        self._cut: Optional[GatewayConnectionError] = None

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._closed:
            raise StopAsyncIteration
        try:
            if not self._opened:
                observation = self._observe()
                if observation is None:
                    await self._open_models()
                else:
                    with observation.current():
                        await self._open_models()
                self._opened = True
            item = self._state.take()
            while item is NEED_DATA:
                item = self._state.feed_take(await self._read())
        except BaseException as exc:
            self._release()
            if self._stopped and isinstance(exc, GatewayClientError):
                self._ended("closed")
                raise StopAsyncIteration from None  # closed by another task mid-read
            self._ended("cancelled" if isinstance(exc, _CANCELLED) else "failed", exc)
            raise
        if item is END:
            await self._end()
            self._ended("done")
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    async def _end(self) -> None:
        """After [DONE]: iteration ends now; the transport decides about the connection."""
        self._closed = True
        response, self._response = self._response, None
        if response is not None:
            await self._transport.park(response)
        if self._ticket is not None:
            await _traffic.asettle(self._ticket, self._state.usage)

    async def _open_models(self) -> None:
        if self._call.next_models:
            await _traffic.arun_chain(self._call, self._open)
        else:
            await self._open(self._call)

    async def _open(self, call: StreamCall) -> None:
        """Open the stream for ``call`` (a fallback model's, after the first), with retries."""
        if call is not self._call:
            self._use(call)
        await retry.arun(call.policy, self._connect, call.request.label)

    async def _connect(self) -> None:
        """One attempt: send, check the head, read up to the first chunk (all retryable)."""
        self._release()
        if self._stopped:
            raise StopAsyncIteration
        self._closed = False
        self._cut = None
        limit = self._limit
        self._ticket = None if limit is None else await _traffic.atake(limit, self._call.cost)
        try:
            self._response = response = await self._transport.send(self._call.request)
            self._state.restart(response.headers)
            self._request_id = request_id_from(response.headers, self._call.secret)
            if not self._call.accepts(response.status, response.headers):
                with self._translate:
                    body = await response.read()
                raise self._call.reject(response.status, response.headers, body)
            while not self._state.ready:
                self._state.feed(await self._read())
        except BaseException as exc:
            self._release()
            if self._ticket is not None:
                await _traffic.afailed(self._ticket, exc)
            raise

    async def _read(self) -> bytes:
        try:
            cut, self._cut = self._cut, None
            if cut is not None:
                raise cut
            response = self._response
            if response is None:
                return b""
            try:
                return await response.content.readany()
            except BaseException as exc:
                self._translate.raise_for(exc)  # as ``with self._translate:`` would
                raise
        except GatewayConnectionError as exc:
            buffered = unread(self._response)
            if buffered:  # hand over what arrived before the failure; raise it on the next read
                self._cut = exc
                return buffered
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

    async def aclose(self) -> None:
        """Stop reading and release the connection; iteration then ends. Safe to call from
        another task while one is waiting for the next chunk."""
        self._stopped = True
        self._release()
        self._ended("closed")

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if self.__dict__.get("_observation") is not None:
            self._ended("closed")
        response = self.__dict__.get("_response")
        if response is not None:
            with suppress(Exception):  # its loop may be closed already
                response.close()


class AsyncGatewayClient(ClientBase):
    """Asyncio client for an OpenAI-compatible AI gateway; usable from any event loop."""

    _transport_type = Transport
    _transport: Transport

    async def _exchange(self, call: Call) -> Any:
        response = await self._transport.send(call.request)
        try:
            with self._transport.translate(call.request):
                body = await response.read()
        finally:
            response.release()
        return call.handle(response.status, response.headers, body)

    async def _attempt(self, call: Call) -> Any:
        limit = self._core.config.rate_limit
        if limit is None:
            return await self._exchange(call)
        return await _traffic.aspend(limit, call.cost, self._exchange, call)

    async def _run_one(self, call: Call) -> Any:
        attempt = self._exchange if self._core.config.rate_limit is None else self._attempt
        result: Any = call
        while isinstance(result, Call):  # a Call may answer with a provider route's fallback
            current = result
            try:  # retry.arun, its first attempt made here: one layer less for the common call
                result = await attempt(current)
            except GatewayClientError as error:
                if not retry.retried(current.policy, error):
                    raise
                again = partial(attempt, current)
                result = await retry.arun_again(current.policy, again, current.request.label, error)
        return result

    async def _run_batch(self, run: _batch.Run, concurrency: int) -> _batch.Run:
        return await run_tasks(self, run, concurrency)

    async def _run_models(self, call: Call) -> Any:
        if not call.next_models:
            return await self._run_one(call)
        return await _traffic.arun_chain(call, self._run_one)

    async def _run(self, call: Call) -> Any:
        observation = _telemetry.observe(call, self._core.config.api_root)
        if observation is not None:
            return await _telemetry.arun(observation, partial(self._run_models, call))
        if call.next_models:
            return await _traffic.arun_chain(call, self._run_one)
        return await self._run_one(call)

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
        return AsyncStream(self._transport, call, self._core.config.rate_limit)

    async def embeddings(
        self, model: str, input: Union[str, List[str]], **params: Any
    ) -> EmbeddingResponse:
        """Create embeddings for a string or a list of strings (``POST /embeddings``)."""
        result: EmbeddingResponse = await self._run(self._core.embeddings(model, input, params))
        return result

    async def batch_chat_completions(
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
        results: Any = (await self._run_batch(run, concurrency)).results
        return results  # type: ignore[no-any-return]

    async def batch_embeddings(
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
        return _vectors.embeddings_vectors(
            await self._run_batch(run, concurrency), count, batch_size
        )

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
