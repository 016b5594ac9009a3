"""A view's stream relayed to the browser: a StreamingHttpResponse of server-sent events (the
gateway's own wire format) or of plain text, that closes the gateway stream when it ends, fails,
or the browser goes away."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, NamedTuple, Optional, Set

from django.http import StreamingHttpResponse

from gatewayclient import GatewayClientError

if TYPE_CHECKING:
    from gatewayclient import AsyncStream, ChatCompletionChunk, SyncStream

__all__ = ["arelay_stream", "relay_stream"]

logger = logging.getLogger("gatewayclient.contrib.django")


class _Format(NamedTuple):
    content_type: str
    chunk: Callable[[ChatCompletionChunk], bytes]
    end: bytes
    error: Callable[[GatewayClientError], bytes]


def _event(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


def _sse_chunk(chunk: ChatCompletionChunk) -> bytes:
    return _event(chunk.to_json(separators=(",", ":"), ensure_ascii=False))


def _sse_error(exc: GatewayClientError) -> bytes:
    # OpenAI's in-stream error object: what the gateway itself would send.
    code = exc.error_code if exc.error_code is not None else exc.status_code
    error = {"message": exc.message, "type": exc.error_type or "gateway_error", "code": code}
    return _event(json.dumps({"error": error}, separators=(",", ":"), ensure_ascii=False))


def _text_chunk(chunk: ChatCompletionChunk) -> bytes:
    choices = chunk.choices or []
    content = choices[0].delta.content if choices and choices[0].delta is not None else None
    return content.encode() if isinstance(content, str) else b""


FORMATS = {
    "sse": _Format("text/event-stream", _sse_chunk, _event("[DONE]"), _sse_error),
    "text": _Format("text/plain; charset=utf-8", _text_chunk, b"", lambda exc: b""),
}


def relay_stream(stream: SyncStream, *, format: str = "sse") -> StreamingHttpResponse:
    """A StreamingHttpResponse relaying ``stream`` (from ``gateway().stream_chat_completion``)
    for a WSGI server. The stream is opened here: an error before its first chunk raises in
    the view, like any call. Closing the response (a browser gone) closes the stream."""
    try:
        shape = _format(format)
        first = next(stream, None)
    except BaseException:
        stream.close()
        raise
    return _response(_relay(stream, first, shape), shape)


async def arelay_stream(stream: AsyncStream, *, format: str = "sse") -> StreamingHttpResponse:
    """The same for an ASGI server, awaited in an async view: ``stream`` comes from
    ``async_gateway().stream_chat_completion``; a browser gone (the response's task
    cancelled) closes it."""
    try:
        shape = _format(format)
        first = await _next(stream)
    except BaseException:
        await stream.aclose()
        raise
    return _response(_Closing(_arelay(stream, first, shape), stream), shape)


class _Closing:
    """The response's async pieces, with the ``close()`` that Django calls on the response when
    it is done with it (from a thread): it closes the stream on the stream's own loop, at once,
    whether or not the pieces were read to the end (a browser gone while a piece was being
    sent leaves them unfinished)."""

    def __init__(self, pieces: AsyncIterator[bytes], stream: AsyncStream) -> None:
        self._pieces = pieces
        self._stream = stream
        self._loop = asyncio.get_running_loop()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces

    def close(self) -> None:
        with suppress(RuntimeError):  # the loop is closed: it closed its connections itself
            self._loop.call_soon_threadsafe(self._close)

    def _close(self) -> None:
        task = self._loop.create_task(self._stream.aclose())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


_closing: Set[Any] = set()  # the tasks closing streams, held until done


def _format(name: str) -> _Format:
    if name not in FORMATS:
        raise ValueError(f"format must be 'sse' or 'text', not {name!r}")
    return FORMATS[name]


def _response(content: object, shape: _Format) -> StreamingHttpResponse:
    response = StreamingHttpResponse(content, content_type=shape.content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx would otherwise buffer the whole answer
    return response


def _relay(
    stream: SyncStream, first: Optional[ChatCompletionChunk], shape: _Format
) -> Iterator[bytes]:
    sent = 0
    try:
        chunk = first
        while chunk is not None:
            data = shape.chunk(chunk)
            if data:  # an empty piece would end a chunked body under some servers
                yield data
            sent += 1
            chunk = next(stream, None)
        if shape.end:
            yield shape.end
    except GatewayClientError as exc:
        error = _failed(exc, sent, shape)
        if error:
            yield error
    finally:
        stream.close()  # a browser gone: the WSGI server closes the response, and so this


async def _arelay(
    stream: AsyncStream, first: Optional[ChatCompletionChunk], shape: _Format
) -> AsyncIterator[bytes]:
    sent = 0
    try:
        chunk = first
        while chunk is not None:
            data = shape.chunk(chunk)
            if data:
                yield data
            sent += 1
            chunk = await _next(stream)
        if shape.end:
            yield shape.end
    except GatewayClientError as exc:
        error = _failed(exc, sent, shape)
        if error:
            yield error
    finally:
        await stream.aclose()  # a browser gone: Django cancels the task reading this


async def _next(stream: AsyncStream) -> Optional[ChatCompletionChunk]:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


def _failed(exc: GatewayClientError, sent: int, shape: _Format) -> bytes:
    """After the first chunk an error can only be told in the body (the status has gone)."""
    logger.warning("relayed stream failed after %d chunks: %s", sent, exc)
    return shape.error(exc)
