"""Streams on both clients over loopback: chunks, assembly, usage, release, cuts and errors."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import Any, Callable, List

import pytest
from aiohttp import web
from loopback import LoopbackServer, open_sockets, write_pieces
from twin import Twin

from gatewayclient import (
    ChatCompletionChunk,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayStreamError,
    GatewayTimeoutError,
)
from gatewayclient.testing import FakeGateway, expected_reply, expected_usage

STORY = [{"role": "user", "content": "Write a short story about a robot."}]
MODEL = "openai/gpt-4o"


def text_of(chunks: List[Any]) -> str:
    return "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)


def test_stream_yields_chunks_that_read_like_dicts(twin: Twin) -> None:
    chunks = twin.collect(twin.stream(MODEL, STORY, max_tokens=500))
    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
    assert text_of(chunks) == expected_reply(MODEL, STORY, max_tokens=500)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completion_and_usage_after_the_end(twin: Twin) -> None:
    stream = twin.stream(MODEL, STORY)
    assert stream.usage is None
    chunks = twin.collect(stream)
    whole = stream.completion()
    assert whole.choices[0].message.content == text_of(chunks) == expected_reply(MODEL, STORY)
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage.total_tokens == stream.usage.total_tokens
    assert stream.usage.total_tokens == expected_usage(MODEL, STORY)["total_tokens"]
    assert twin.client.usage.by_model[MODEL].requests == 1


def test_the_usage_chunk_the_client_asked_for_is_not_yielded(twin: Twin, gw: FakeGateway) -> None:
    chunks = twin.collect(twin.stream(MODEL, STORY))
    assert all(chunk["choices"] for chunk in chunks)
    assert gw.requests[-1].json["stream_options"] == {"include_usage": True}


def test_a_caller_asking_for_usage_gets_every_chunk(twin: Twin, gw: FakeGateway) -> None:
    stream = twin.stream(MODEL, STORY, stream_options={"include_usage": True})
    chunks = twin.collect(stream)
    assert chunks[-1]["choices"] == [] and chunks[-1].usage.total_tokens > 0
    assert stream.usage.total_tokens == chunks[-1].usage.total_tokens


def test_a_caller_declining_usage_is_obeyed(twin: Twin, gw: FakeGateway) -> None:
    stream = twin.stream(MODEL, STORY, stream_options={"include_usage": False})
    twin.collect(stream)
    assert gw.requests[-1].json["stream_options"] == {"include_usage": False}
    assert stream.usage is None
    assert twin.client.usage.total.requests == 1  # a completed call, even without usage


def test_streamed_tool_calls_are_assembled(twin: Twin) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    stream = twin.stream(MODEL, STORY, tools=tools)
    twin.collect(stream)
    call = stream.completion().choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    assert stream.completion().choices[0].finish_reason == "tool_calls"


def test_stream_as_context_manager(twin: Twin) -> None:
    stream = twin.stream(MODEL, STORY)
    if twin.loop is None:
        with stream as entered:
            assert entered is stream
            first = next(stream)
    else:

        async def use() -> Any:
            async with stream as entered:
                assert entered is stream
                return await stream.__anext__()

        first = twin.run(use())
    assert first.choices[0].delta.role == "assistant"
    with pytest.raises(StopIteration):
        twin.next(stream)  # closed by leaving the block


def test_a_hundred_abandoned_streams_release_their_connections(make: Callable[..., Twin]) -> None:
    twin = make(max_connections=4, timeout=5)
    twin.call("list_models")
    before = open_sockets()
    for _ in range(100):
        stream = twin.stream(MODEL, STORY)
        twin.next(stream)
        del stream  # abandoned after its first chunk
    gc.collect()
    started = time.monotonic()
    assert twin.call("list_models").data
    assert time.monotonic() - started < 5
    time.sleep(0.1)  # the server side notices the closed connections
    assert open_sockets() <= before + 8


def test_closing_a_stream_early_releases_its_connection(make: Callable[..., Twin]) -> None:
    twin = make(max_connections=1, timeout=5)
    for _ in range(20):
        stream = twin.stream(MODEL, STORY)
        twin.take(stream, 2)
        twin.close_stream(stream)
        with pytest.raises(StopIteration):
            twin.next(stream)
    assert twin.call("chat_completion", MODEL, STORY).choices


def test_an_error_status_before_the_stream_is_retried(twin: Twin, gw: FakeGateway) -> None:
    gw.fail(503, times=2)
    assert text_of(twin.collect(twin.stream(MODEL, STORY))) == expected_reply(MODEL, STORY)
    assert len(gw.requests) == 3
    keys = {request.headers["idempotency-key"] for request in gw.requests}
    assert len(keys) == 1  # one call, one key, on every attempt


def test_an_error_event_before_any_chunk_is_retried(twin: Twin, gw: FakeGateway) -> None:
    gw.stream_error({"message": "slow down", "type": "rate_limit_error"}, after=0)
    assert text_of(twin.collect(twin.stream(MODEL, STORY))) == expected_reply(MODEL, STORY)
    assert len(gw.requests) == 2


def test_an_error_event_mid_stream_keeps_what_arrived(twin: Twin, gw: FakeGateway) -> None:
    gw.stream_error(after=3)
    stream = twin.stream(MODEL, STORY)
    received: List[Any] = []
    with pytest.raises(GatewayProviderError):
        twin.collect(stream, received)
    assert len(received) == 3
    assert stream.completion().choices[0].message.content == text_of(received)
    assert len(gw.requests) == 1  # never replayed after a chunk reached the caller
    assert twin.client.usage.total.requests == 0


def test_in_stream_error_mapping_follows_the_code(twin: Twin, gw: FakeGateway) -> None:
    gw.stream_error({"message": "quota", "type": "invalid_request_error", "code": "429"}, after=2)
    with pytest.raises(GatewayRateLimitError) as info:
        twin.collect(twin.stream(MODEL, STORY))
    assert info.value.error_code == "429" and info.value.message == "quota"


def test_a_cut_stream_raises_a_stream_error_after_the_chunks(twin: Twin, gw: FakeGateway) -> None:
    gw.cut_stream(after=3)
    stream = twin.stream(MODEL, STORY)
    received: List[Any] = []
    with pytest.raises(GatewayStreamError):
        twin.collect(stream, received)
    assert len(received) == 3
    assert stream.completion().choices[0].message.content == text_of(received)
    assert len(gw.requests) == 1


def test_a_reset_before_the_first_event_is_retried(twin: Twin, gw: FakeGateway) -> None:
    gw.reset_connection(when="before_headers")
    assert text_of(twin.collect(twin.stream(MODEL, STORY))) == expected_reply(MODEL, STORY)
    assert len(gw.requests) == 2


def test_a_stall_mid_stream_times_out_per_read(make: Callable[..., Twin], gw: FakeGateway) -> None:
    twin = make(timeout=0.3, max_retries=0)
    gw.stall(3, when="mid_stream", after=2)
    stream = twin.stream(MODEL, STORY)
    received: List[Any] = []
    started = time.monotonic()
    with pytest.raises(GatewayTimeoutError):
        twin.collect(stream, received)
    assert time.monotonic() - started < 2.3
    assert len(received) == 2


PACED_EVENTS = [
    b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Once "}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"upon "}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"a "}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"time"},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


def test_timeout_bounds_each_wait_not_the_whole_stream(kind: str) -> None:
    async def paced(request: web.Request) -> web.StreamResponse:
        return await write_pieces(request, PACED_EVENTS, pause=0.15)

    with LoopbackServer([("POST", "/v1/chat/completions", paced)]) as server:
        twin = Twin(kind, server.url, "t", timeout=0.4, max_retries=0)
        try:
            started = time.monotonic()
            assert text_of(twin.collect(twin.stream(MODEL, STORY))) == "Once upon a time"
            assert time.monotonic() - started > 0.6  # longer than the timeout, in small waits
        finally:
            twin.close()


def paced_words(count: int) -> List[bytes]:
    events = [
        b'data: {"choices":[{"index":0,"delta":{"content":"w%d "}}]}\n\n' % n for n in range(count)
    ]
    return [*events, b"data: [DONE]\n\n"]


class TimedList(List[Any]):
    """A list that notes when its last item came."""

    last = 0.0

    def append(self, item: Any) -> None:
        super().append(item)
        self.last = time.monotonic()


def test_a_steady_stream_many_timeouts_long_never_times_out(kind: str) -> None:
    """Each wait ends ``timeout`` after the last bytes, however often the deadline has moved
    (the async twin's read timer is re-armed lazily, when it fires)."""

    async def paced(request: web.Request) -> web.StreamResponse:
        return await write_pieces(request, paced_words(12), pause=0.1)

    with LoopbackServer([("POST", "/v1/chat/completions", paced)]) as server:
        twin = Twin(kind, server.url, "t", timeout=0.35, max_retries=0)
        try:
            started = time.monotonic()
            text = text_of(twin.collect(twin.stream(MODEL, STORY)))
            assert text == "".join(f"w{n} " for n in range(12))
            assert time.monotonic() - started > 3 * 0.35  # three timeouts long, in short waits
        finally:
            twin.close()


def test_silence_after_a_moving_deadline_times_out_one_timeout_after_the_last_bytes(
    kind: str,
) -> None:
    async def then_silent(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in paced_words(6)[:-1]:
            await response.write(piece)
            await asyncio.sleep(0.1)
        await asyncio.sleep(5)  # silence, longer than the timeout
        return response

    timeout = 0.4
    with LoopbackServer([("POST", "/v1/chat/completions", then_silent)]) as server:
        twin = Twin(kind, server.url, "t", timeout=timeout, max_retries=0)
        try:
            received = TimedList()
            with pytest.raises(GatewayTimeoutError):
                twin.collect(twin.stream(MODEL, STORY), received)
            silent_for = time.monotonic() - received.last
            assert len(received) == 6
            assert timeout - 0.1 <= silent_for <= timeout + 0.3, silent_for
        finally:
            twin.close()


def test_the_async_twin_uses_its_lazy_read_timer(gw: FakeGateway) -> None:
    """aiohttp makes our protocol (a private hook): when an aiohttp release changes how its
    connector makes protocols, this says so (the client keeps working on aiohttp's own)."""
    from gatewayclient import AsyncGatewayClient
    from gatewayclient._async_transport import _Protocol

    async def use() -> List[type]:
        async with AsyncGatewayClient(gw.url, gw.token) as client:
            await client.chat_completion(MODEL, STORY)
            pool = await client._transport.pool()
            return [type(protocol) for protocol in _protocols_of(pool)]

    assert asyncio.run(use()) == [_Protocol]


def test_the_async_twin_reads_a_large_answer_in_pieces_below_mmaps_size() -> None:
    """Each read from the socket takes at most 64 KiB: asyncio's own 256 KiB buffer is an
    mmap per read under glibc (two page faults per request, BENCHMARKS.md). A 1 MiB answer
    still arrives whole, read in pieces of that size."""
    from gatewayclient import AsyncGatewayClient
    from gatewayclient._async_transport import _READ_SIZE, _Protocol

    content = "x" * (1024 * 1024)
    answer = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }

    async def big(request: web.Request) -> web.Response:
        return web.json_response(answer)

    async def use(url: str) -> Any:
        import asyncio.selector_events as selector_events

        reads: List[int] = []
        original = selector_events._SelectorSocketTransport._read_ready__data_received

        def counted(transport: Any) -> None:
            if isinstance(transport._protocol, _Protocol):  # the server's reads aside
                reads.append(transport.max_size)
            original(transport)

        selector_events._SelectorSocketTransport._read_ready__data_received = counted  # type: ignore[method-assign]
        try:
            async with AsyncGatewayClient(url, "t", max_retries=0) as client:
                reply = await client.chat_completion(MODEL, STORY)
        finally:
            selector_events._SelectorSocketTransport._read_ready__data_received = original  # type: ignore[method-assign]
        return reply, reads

    assert _READ_SIZE == 64 * 1024
    with LoopbackServer([("POST", "/v1/chat/completions", big)]) as server:
        reply, reads = asyncio.run(use(server.url))
    assert reply.choices[0].message.content == content
    assert len(reads) >= (1024 * 1024) // _READ_SIZE
    assert set(reads) == {_READ_SIZE}


def _protocols_of(pool: Any) -> List[Any]:
    from gatewayclient._async_transport import _protocols

    connector = pool.session.connector
    return _protocols(connector)


def split_everywhere(data: bytes, size: int) -> List[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_characters_and_line_ends_split_across_network_reads(kind: str) -> None:
    text = "héllo wörld — 日本語 🤖"
    events = (
        "data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}, ensure_ascii=False)
        + "\r\n\r\n"
        + "data:[DONE]\r\n\r\n"
    ).encode()

    async def dribble(request: web.Request) -> web.StreamResponse:
        return await write_pieces(request, split_everywhere(events, 3), pause=0.003)

    with LoopbackServer([("POST", "/v1/chat/completions", dribble)]) as server:
        twin = Twin(kind, server.url, "t", timeout=5, max_retries=0)
        try:
            assert text_of(twin.collect(twin.stream(MODEL, STORY))) == text
        finally:
            twin.close()


def test_chunks_that_arrive_before_a_cut_reach_a_slow_consumer(kind: str) -> None:
    events = [
        b'data: {"choices":[{"index":0,"delta":{"content":"one "}}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"content":"two "}}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"content":"three"}}]}\n\n',
    ]

    async def cut_while_the_client_is_busy(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(events[0])
        await asyncio.sleep(0.05)
        await response.write(events[1] + events[2])  # while the consumer is busy with "one"
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()  # the chunked body never ends: no [DONE], no last chunk
        return response

    with LoopbackServer([("POST", "/v1/chat/completions", cut_while_the_client_is_busy)]) as server:
        twin = Twin(kind, server.url, "t", timeout=5, max_retries=0)
        try:
            stream = twin.stream(MODEL, STORY)
            received = [twin.next(stream)]
            # A slow consumer: the rest and the cut arrive meanwhile (the async one awaits, so
            # its loop takes them in while it is busy).
            twin.run(asyncio.sleep(0.3)) if twin.loop is not None else time.sleep(0.3)
            with pytest.raises(GatewayStreamError):
                twin.collect(stream, received)
        finally:
            twin.close()
    assert text_of(received) == "one two three"
    assert stream.completion().choices[0].message.content == "one two three"


def test_consecutive_streams_reuse_one_connection(kind: str) -> None:
    """The server ends each body a millisecond after [DONE] (a separate write, as uvicorn and
    aiohttp do); by the caller's next request the end has arrived, and the connection is reused."""
    peers: List[Any] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return await write_pieces(request, PACED_EVENTS, pause=0.001)

    with LoopbackServer([("POST", "/v1/chat/completions", stream)]) as server:
        twin = Twin(kind, server.url, "t", timeout=5, max_retries=0)
        try:
            for _ in range(3):
                assert text_of(twin.collect(twin.stream(MODEL, STORY))) == "Once upon a time"
                time.sleep(0.05)  # the caller uses the answer before asking again
        finally:
            twin.close()
    assert len(peers) == 3 and len(set(peers)) == 1  # one kept-alive connection for all three


def test_a_body_that_ends_with_done_is_reused_at_once(kind: str) -> None:
    """A body of known length that ends with [DONE]: its end has arrived with [DONE], and the
    very next request reuses the connection."""
    peers: List[Any] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        body = b"".join(PACED_EVENTS)
        return web.Response(body=body, headers={"Content-Type": "text/event-stream"})

    with LoopbackServer([("POST", "/v1/chat/completions", stream)]) as server:
        twin = Twin(kind, server.url, "t", timeout=5, max_retries=0)
        try:
            for _ in range(3):
                assert text_of(twin.collect(twin.stream(MODEL, STORY))) == "Once upon a time"
        finally:
            twin.close()
    assert len(peers) == 3 and len(set(peers)) == 1


def test_a_stream_ends_at_done_when_the_server_keeps_the_body_open(kind: str) -> None:
    """After [DONE] the server sends keep-alive comments and never ends the body: iteration
    ends at once all the same, and the next request drops that connection for a new one."""
    peers: List[Any] = []
    gone = asyncio.Event()

    async def never_ends(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"".join(PACED_EVENTS))
        try:
            for _ in range(200):
                await asyncio.sleep(0.05)
                await response.write(b": still here\n\n")
        except (ConnectionError, RuntimeError):
            gone.set()  # the client dropped the connection
        return response

    with LoopbackServer([("POST", "/v1/chat/completions", never_ends)]) as server:
        twin = Twin(kind, server.url, "t", timeout=None, max_retries=0)
        try:
            started = time.monotonic()
            assert text_of(twin.collect(twin.stream(MODEL, STORY))) == "Once upon a time"
            assert time.monotonic() - started < 1.0  # not 4 x timeout, not forever
            assert text_of(twin.collect(twin.stream(MODEL, STORY))) == "Once upon a time"
            assert time.monotonic() - started < 2.0
        finally:
            twin.close()
    assert len(peers) == 2 and peers[0] != peers[1]
