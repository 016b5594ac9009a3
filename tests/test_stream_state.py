"""One chat stream's state: raw SSE bytes in, chunks and the assembled answer out (no I/O)."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatewayclient._core import StreamCall
from gatewayclient._stream import END, NEED_DATA, StreamState
from gatewayclient._usage import UsageTotals, UsageTracker
from gatewayclient.errors import (
    GatewayAuthError,
    GatewayBadRequestError,
    GatewayClientError,
    GatewayConnectionError,
    GatewayModelNotFoundError,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayServerError,
    GatewayStreamError,
    GatewayTimeoutError,
)
from gatewayclient.models import ChatCompletion, ChatCompletionChunk, CompletionUsage

MODEL = "openai/gpt-4o"
TOKEN = "sk-stream-secret-9e8d7c"
DONE = b"data: [DONE]\n\n"
USAGE = {"prompt_tokens": 8, "completion_tokens": 11, "total_tokens": 19}


def event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode("utf-8") + b"\n\n"


def chunk(
    content: Optional[str] = None,
    *,
    index: int = 0,
    role: Optional[str] = None,
    finish: Optional[str] = None,
    tool_calls: Optional[list[Any]] = None,
    refusal: Optional[str] = None,
    **extra: Any,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    if refusal is not None:
        delta["refusal"] = refusal
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def usage_chunk(usage: Any = USAGE) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": usage,
    }


LITELLM_USAGE = {
    "completion_tokens": 11,
    "prompt_tokens": 8,
    "total_tokens": 19,
    "completion_tokens_details": {"reasoning_tokens": 0, "text_tokens": 11},
    "cost": 7.8e-6,
}


def litellm_usage_chunk() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "created": 1795566308,
        "model": "openai/gpt-4o",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}}],
        "usage": LITELLM_USAGE,
    }


def new_state(
    hide_usage_chunk: bool = True, model: str = MODEL, secret: Optional[str] = TOKEN
) -> tuple[StreamState, UsageTracker]:
    tracker = UsageTracker()
    return StreamState(model, tracker, hide_usage_chunk, secret), tracker


def drain(state: StreamState, out: Optional[list[Any]] = None) -> list[Any]:
    """Take chunks until NEED_DATA or END; those taken before an error stay in ``out``."""
    items = [] if out is None else out
    while True:
        item = state.take()
        if item is NEED_DATA or item is END:
            return items
        items.append(item)


def run(
    state: StreamState, *pieces: bytes, end: bool = True, out: Optional[list[Any]] = None
) -> list[Any]:
    """Feed each piece and take every chunk it completed, as a client does; ``b""`` at the end.

    An error may surface from ``feed`` or, once earlier chunks are taken, from ``take``; the
    chunks taken before it are in ``out``.
    """
    items = [] if out is None else out
    for piece in pieces:
        state.feed(piece)
        drain(state, items)
    if end:
        state.feed(b"")
        drain(state, items)
    return items


def client_run(state: StreamState, *pieces: bytes, out: list[Any]) -> list[Any]:
    """As the clients drive a stream: ``take``, and while it asks for data, ``feed_take`` the
    next read (``b""`` after the last piece)."""
    reads = iter([*pieces, b""])
    while True:
        item = state.take()
        while item is NEED_DATA:
            item = state.feed_take(next(reads))
        if item is END:
            return out
        out.append(item)


def contents(chunks: list[Any]) -> list[str]:
    return [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]


# -- the take() protocol -------------------------------------------------------------------


def test_take_protocol_need_data_then_chunks_then_end() -> None:
    state, _ = new_state()
    assert state.take() is NEED_DATA
    state.feed(event(chunk("Hel", role="assistant")))
    first = state.take()
    assert isinstance(first, ChatCompletionChunk)
    assert state.take() is NEED_DATA
    state.feed(b"data: " + json.dumps(chunk("lo")).encode()[:10])
    assert state.take() is NEED_DATA
    state.feed(json.dumps(chunk("lo")).encode()[10:] + b"\n\n")
    assert state.take()["choices"][0]["delta"]["content"] == "lo"
    state.feed(DONE)
    assert state.take() is END
    assert state.take() is END
    state.feed(b"")
    assert state.take() is END


def test_chunks_are_yielded_in_order() -> None:
    state, _ = new_state()
    pieces = ["Once", " upon", " a", " time"]
    body = b"".join(event(chunk(p)) for p in pieces) + event(chunk(finish="stop")) + DONE
    chunks = run(state, body)
    assert contents(chunks) == [*pieces, ""]
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_reference_loop_reads_every_chunk() -> None:
    state, _ = new_state()
    body = (
        event(chunk("", role="assistant"))
        + event(chunk("Python"))
        + event(chunk(finish="stop"))
        + event(usage_chunk())
        + DONE
    )
    full_content = ""
    for item in run(state, body):
        delta = item["choices"][0]["delta"]
        full_content += delta.get("content", "") or ""
    assert full_content == "Python"


def test_feeding_one_byte_at_a_time_gives_the_same_chunks() -> None:
    body = (
        event(chunk("Grüße ", role="assistant"))
        + b": keep-alive\r\n\r\n"
        + b'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":'
        + b'{"content":"\xe4\xb8\x96"}}]}\r\n\r\n'
        + event(chunk(finish="stop"))
        + event(usage_chunk())
        + DONE
    )
    whole, _ = new_state()
    expected = [c.to_dict() for c in run(whole, body)]
    split, tracker = new_state()
    got = [c.to_dict() for c in run(split, *[body[i : i + 1] for i in range(len(body))])]
    assert got == expected
    assert split.completion().choices[0].message.content == "Grüße 世"
    assert tracker.total == UsageTotals(8, 11, 19, 1)


# -- usage chunks ----------------------------------------------------------------------------


def test_requested_usage_chunk_is_recorded_not_yielded() -> None:
    state, tracker = new_state(hide_usage_chunk=True)
    chunks = run(
        state, event(chunk("hi")), event(chunk(finish="stop")), event(usage_chunk()), end=False
    )
    assert len(chunks) == 2
    assert all(c["choices"] for c in chunks)
    assert isinstance(state.usage, CompletionUsage)
    assert state.usage.total_tokens == 19
    assert tracker.total.requests == 0  # not yet: only [DONE] completes the call
    state.feed(DONE)
    assert state.take() is END
    assert tracker.total == UsageTotals(8, 11, 19, 1)
    assert tracker.by_model == {MODEL: UsageTotals(8, 11, 19, 1)}
    assert state.completion().usage.to_dict() == USAGE


def test_usage_chunk_is_yielded_when_the_caller_asked_for_it() -> None:
    state, tracker = new_state(hide_usage_chunk=False)
    chunks = run(state, event(chunk("hi")), event(usage_chunk()), DONE)
    assert len(chunks) == 2
    assert chunks[1]["choices"] == []
    assert chunks[1]["usage"]["total_tokens"] == 19
    assert chunks[1].usage.total_tokens == 19
    assert tracker.total == UsageTotals(8, 11, 19, 1)
    assert state.usage.total_tokens == 19


@pytest.mark.parametrize("hide_usage_chunk", [True, False])
def test_litellm_usage_chunk_is_yielded_and_counted_once(hide_usage_chunk: bool) -> None:
    state, tracker = new_state(hide_usage_chunk=hide_usage_chunk)
    chunks = run(
        state,
        event(chunk("Hel", role="assistant")),
        event(chunk("lo")),
        event(chunk(finish="stop")),
        event(litellm_usage_chunk()),
        DONE,
    )
    assert len(chunks) == 4
    assert chunks[-1]["choices"][0]["delta"].get("content", "") == ""
    assert chunks[-1]["usage"]["cost"] == 7.8e-6
    assert tracker.total == UsageTotals(8, 11, 19, 1)
    completion = state.completion()
    assert completion.choices[0].message.content == "Hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == 19
    assert completion["usage"]["cost"] == 7.8e-6
    assert completion.usage.to_dict() == LITELLM_USAGE
    assert state.usage.total_tokens == 19


def test_usage_sent_on_several_chunks_is_counted_once() -> None:
    state, tracker = new_state()
    first = dict(chunk("a"), usage={"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9})
    last = dict(chunk(finish="stop"), usage=USAGE)
    run(state, event(first), event(last), DONE)
    assert tracker.total == UsageTotals(8, 11, 19, 1)
    assert state.completion().usage.total_tokens == 19


def test_stream_without_usage_counts_one_request() -> None:
    state, tracker = new_state()
    run(state, event(chunk("hi")), DONE)
    assert state.usage is None
    assert state.completion().usage is None
    assert "usage" not in state.completion()
    assert tracker.total == UsageTotals(0, 0, 0, 1)
    assert tracker.by_model == {MODEL: UsageTotals(0, 0, 0, 1)}


def test_usage_is_keyed_by_the_requested_model() -> None:
    state, tracker = new_state(model="anthropic/claude-sonnet-4")
    run(state, event(chunk("hi")), event(usage_chunk()), DONE)
    assert list(tracker.by_model) == ["anthropic/claude-sonnet-4"]


def test_usage_recorded_exactly_once_when_the_caller_reaches_done() -> None:
    state, tracker = new_state()
    state.feed(event(chunk("hi")) + event(usage_chunk()))
    drain(state)
    assert tracker.total.requests == 0
    state.feed(DONE + DONE)
    state.feed(DONE)
    state.feed(b"")
    state.feed(b"")
    assert tracker.total.requests == 0  # received, but the caller has not reached the end
    assert state.take() is END
    assert state.take() is END
    assert tracker.total == UsageTotals(8, 11, 19, 1)


def test_a_stream_abandoned_with_its_end_already_received_is_not_a_completed_call() -> None:
    """The whole answer arrives in one read; the caller takes one chunk and leaves."""
    state, tracker = new_state()
    state.feed(
        event(chunk("Once", role="assistant"))
        + event(chunk(" upon"))
        + event(chunk(finish="stop"))
        + event(usage_chunk())
        + DONE
    )
    first = state.take()
    assert isinstance(first, ChatCompletionChunk)
    assert tracker.total == UsageTotals()
    assert tracker.by_model == {}
    assert state.usage is None  # the usage chunk has not reached the caller
    answer = state.completion()
    assert answer.choices[0].message.content == "Once"  # what reached the caller, no more
    assert answer.choices[0].finish_reason is None


def test_completion_holds_only_the_chunks_taken() -> None:
    state, _ = new_state()
    state.feed(event(chunk("a")) + event(chunk("b")) + event(chunk("c")))
    assert state.completion().choices == []
    state.take()
    state.take()
    assert state.completion().choices[0].message.content == "ab"


def test_a_chunk_with_empty_choices_and_no_usage_is_kept_back_like_the_usage_chunk() -> None:
    """Azure's first chunk carries prompt_filter_results and no choice: never yielded when the
    client asked for usage itself (chunk["choices"][0] stays safe); its fields go into the
    assembled answer, as in Azure's non-stream answers."""
    filters = [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False}}}]
    azure_first = {"id": "", "object": "", "created": 0, "model": "", "choices": []}
    azure_first["prompt_filter_results"] = filters
    state, tracker = new_state()
    taken = run(state, event(azure_first), event(chunk("hi")), event(usage_chunk()), DONE)
    assert contents(taken) == ["hi"]
    assert all(item["choices"] for item in taken)
    assert state.completion()["prompt_filter_results"] == filters
    assert tracker.total == UsageTotals(8, 11, 19, 1)


def test_a_chunk_with_empty_choices_is_yielded_when_the_caller_asked_for_stream_options() -> None:
    state, _ = new_state(hide_usage_chunk=False)
    taken = run(
        state, event({"choices": [], "prompt_filter_results": []}), event(chunk("hi")), DONE
    )
    assert taken[0]["choices"] == []
    assert len(taken) == 2


def test_abandoned_stream_records_nothing() -> None:
    state, tracker = new_state()
    run(state, event(chunk("hi")), event(chunk(finish="stop")), event(usage_chunk()), end=False)
    assert tracker.total == UsageTotals()
    assert tracker.by_model == {}
    assert state.usage is not None


def test_cut_stream_records_nothing() -> None:
    state, tracker = new_state()
    with pytest.raises(GatewayStreamError):
        run(state, event(chunk("hi")), event(usage_chunk()))
    assert tracker.total == UsageTotals()


def test_stream_ended_by_an_error_records_nothing() -> None:
    state, tracker = new_state()
    taken: list[Any] = []
    with pytest.raises(GatewayServerError):
        run(
            state,
            event(chunk("hi")) + event(usage_chunk()) + event({"error": {"code": 500}}),
            out=taken,
        )
    assert contents(taken) == ["hi"]
    assert tracker.total == UsageTotals()


# -- completion(): the answer assembled ----------------------------------------------------------


def test_completion_assembles_text_role_finish_and_usage() -> None:
    state, _ = new_state()
    run(
        state,
        event(chunk("", role="assistant", system_fingerprint="fp_1")),
        event(chunk("Quantum ")),
        event(chunk("computing")),
        event(chunk(finish="stop")),
        event(usage_chunk()),
        DONE,
    )
    completion = state.completion()
    assert isinstance(completion, ChatCompletion)
    assert completion.id == "chatcmpl-1"
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-2024-08-06"
    assert completion.created == 1700000000
    assert completion.system_fingerprint == "fp_1"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "Quantum computing"
    assert choice.finish_reason == "stop"
    assert completion["choices"][0]["message"]["content"] == "Quantum computing"
    assert completion["usage"]["total_tokens"] == 19
    assert completion.usage.prompt_tokens == 8
    json.dumps(completion.to_dict())


def test_done_without_chunks_is_an_empty_answer() -> None:
    state, tracker = new_state()
    assert run(state, DONE) == []
    assert state.take() is END
    assert state.completion().choices == []
    assert tracker.total == UsageTotals(0, 0, 0, 1)


def test_completion_without_a_role_delta_is_an_assistant_message() -> None:
    state, _ = new_state()
    run(state, event(chunk("hi")), DONE)
    assert state.completion().choices[0].message.role == "assistant"


def weather_call(index: int, **fields: Any) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index}
    call.update({k: v for k, v in fields.items() if k in ("id", "type")})
    function = {k: v for k, v in fields.items() if k in ("name", "arguments")}
    if function:
        call["function"] = function
    return call


def test_completion_assembles_tool_calls_split_across_chunks() -> None:
    state, _ = new_state()
    run(
        state,
        event(
            chunk(
                role="assistant",
                tool_calls=[
                    weather_call(0, id="call_a", type="function", name="get_weather", arguments="")
                ],
            )
        ),
        event(chunk(tool_calls=[weather_call(0, arguments='{"ci')])),
        event(
            chunk(
                tool_calls=[
                    weather_call(1, id="call_b", type="function", name="get_time", arguments="")
                ]
            )
        ),
        event(chunk(tool_calls=[weather_call(0, arguments='ty": "Par')])),
        event(chunk(tool_calls=[weather_call(1, arguments="{}")])),
        event(chunk(tool_calls=[weather_call(0, arguments='is"}')])),
        event(chunk(finish="tool_calls")),
        event(usage_chunk()),
        DONE,
    )
    completion = state.completion()
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert [call.id for call in message.tool_calls] == ["call_a", "call_b"]
    assert [call.type for call in message.tool_calls] == ["function", "function"]
    assert message.tool_calls[0].function.name == "get_weather"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert message.tool_calls[1].function.name == "get_time"
    assert message.tool_calls[1].function.arguments == "{}"
    raw = completion["choices"][0]["message"]["tool_calls"]
    assert raw[0]["function"]["arguments"] == '{"city": "Paris"}'
    assert raw[1]["id"] == "call_b"


def test_tool_calls_with_text_keep_both() -> None:
    state, _ = new_state()
    run(
        state,
        event(chunk("Let me check.", role="assistant")),
        event(chunk(tool_calls=[weather_call(0, id="c1", name="f", arguments='{"a":1}')])),
        event(chunk(finish="tool_calls")),
        DONE,
    )
    message = state.completion().choices[0].message
    assert message.content == "Let me check."
    assert message.tool_calls[0].function.arguments == '{"a":1}'


def test_completion_assembles_several_choices_by_index() -> None:
    state, _ = new_state()
    run(
        state,
        event(chunk("A", index=0, role="assistant")),
        event(chunk("B", index=1, role="assistant")),
        event(chunk("a", index=0)),
        event(chunk("b", index=1)),
        event(chunk(index=1, finish="length")),
        event(chunk(index=0, finish="stop")),
        DONE,
    )
    choices = state.completion().choices
    assert [c.index for c in choices] == [0, 1]
    assert [c.message.content for c in choices] == ["Aa", "Bb"]
    assert [c.finish_reason for c in choices] == ["stop", "length"]


def test_choices_arriving_out_of_order_are_sorted_by_index() -> None:
    state, _ = new_state()
    run(state, event(chunk("second", index=1)), event(chunk("first", index=0)), DONE)
    assert [c.message.content for c in state.completion().choices] == ["first", "second"]


def test_completion_assembles_a_refusal() -> None:
    state, _ = new_state()
    run(
        state,
        event(chunk(role="assistant", refusal="I can't")),
        event(chunk(refusal=" help with that.")),
        event(chunk(finish="stop")),
        DONE,
    )
    message = state.completion().choices[0].message
    assert message.refusal == "I can't help with that."
    assert state.completion()["choices"][0]["message"]["refusal"] == "I can't help with that."


def test_completion_mid_stream_returns_what_has_arrived() -> None:
    state, _ = new_state()
    assert state.completion().choices == []
    run(state, event(chunk("Once", role="assistant")), event(chunk(" upon")), end=False)
    completion = state.completion()
    assert completion.choices[0].message.content == "Once upon"
    assert completion.choices[0].finish_reason is None
    assert completion.usage is None
    run(state, event(chunk(" a time")), end=False)
    assert state.completion().choices[0].message.content == "Once upon a time"


@pytest.mark.parametrize("driver", ["feed-take", "client"])
def test_a_long_answer_is_whole_at_every_point_and_held_compactly(driver: str) -> None:
    """A stream of 1,000 small pieces (a token each, some empty; the text of two choices, the
    general path for the second): completion() is the whole text at every point, and what the
    state holds of it is a fraction of the pieces' own str objects (they are joined as they
    come, not kept one by one)."""
    import tracemalloc

    pieces = ["" if i % 97 == 0 else f" w{i:04d}" for i in range(1000)]
    state, _ = new_state()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i, piece in enumerate(pieces):
            both = chunk(piece)
            both["choices"].append({"index": 1, "delta": {"content": piece.upper()}})
            read = event(chunk(piece) if i % 2 else both)
            taken: list[Any] = []  # handed on and dropped, as a relay does
            if driver == "client":
                got = state.take()
                while got is NEED_DATA:
                    got = state.feed_take(read)
                taken.append(got)
                del got
            else:
                run(state, read, end=False, out=taken)
            assert contents(taken) == [piece]
            if i % 211 == 0 or i == len(pieces) - 1:
                message = state.completion().choices[0].message
                assert message.content == "".join(pieces[: i + 1])
        del taken
        held = tracemalloc.take_snapshot().compare_to(before, "filename")
    finally:
        tracemalloc.stop()
    text = state.completion().choices
    assert text[0].message.content == "".join(pieces)
    assert text[1].message.content == "".join(p.upper() for i, p in enumerate(pieces) if not i % 2)
    # What gatewayclient's lines allocated and still hold (the JSON decoder's strings among it).
    grown = sum(stat.size_diff for stat in held if "gatewayclient" in stat.traceback[0].filename)
    # One str object per piece would be over 80 KB (1,500 pieces); joined, about 14 KB.
    assert grown < 30_000, grown


def test_completion_is_a_fresh_object_each_time() -> None:
    state, _ = new_state()
    run(state, event(chunk("x")), DONE)
    first = state.completion()
    first.to_dict()["choices"].clear()
    assert state.completion() == first
    assert state.completion().choices[0].message.content == "x"


# -- errors inside the stream ----------------------------------------------------------------


ERROR_EVENTS = [
    (
        {"error": {"message": "slow down", "type": "rate_limit_error", "code": 429}},
        GatewayRateLimitError,
    ),
    ({"error": {"message": "slow down", "code": "429"}}, GatewayRateLimitError),
    ({"error": {"message": "slow down", "status": 429}}, GatewayRateLimitError),
    ({"error": {"message": "x", "status": "429"}}, GatewayRateLimitError),
    ({"error": {"message": "x", "code": 400, "status": 500}}, GatewayBadRequestError),
    ({"error": {"message": "x", "code": "502", "status": 429}}, GatewayProviderError),
    ({"error": {"message": "x", "code": 502, "type": "rate_limit_error"}}, GatewayProviderError),
    (
        {"error": {"message": "x", "status": 503, "type": "invalid_request_error"}},
        GatewayServerError,
    ),
    (
        {"error": {"message": "x", "code": "rate_limit_exceeded", "type": "rate_limit_error"}},
        GatewayRateLimitError,
    ),
    (
        {
            "error": {
                "message": "x",
                "code": "context_length_exceeded",
                "type": "invalid_request_error",
            }
        },
        GatewayBadRequestError,
    ),
    ({"error": {"message": "x", "code": "bad", "status": 401}}, GatewayAuthError),
    ({"error": {"message": "x", "code": 401}}, GatewayAuthError),
    ({"error": {"message": "x", "code": 403}}, GatewayAuthError),
    ({"error": {"message": "x", "code": 404}}, GatewayModelNotFoundError),
    ({"error": {"message": "x", "code": 422}}, GatewayBadRequestError),
    ({"error": {"message": "x", "code": 500}}, GatewayServerError),
    ({"error": {"message": "x", "code": 529}}, GatewayServerError),
    ({"error": {"message": "x", "code": 418}}, GatewayClientError),
    ({"error": {"message": "x", "type": "rate_limit_error"}}, GatewayRateLimitError),
    ({"error": {"message": "x", "type": "authentication_error"}}, GatewayAuthError),
    ({"error": {"message": "x", "type": "permission_error"}}, GatewayAuthError),
    ({"error": {"message": "x", "type": "not_found_error"}}, GatewayModelNotFoundError),
    ({"error": {"message": "x", "type": "invalid_request_error"}}, GatewayBadRequestError),
    ({"error": {"message": "x", "type": "provider_error"}}, GatewayProviderError),
    ({"error": {"message": "x", "type": "upstream_error"}}, GatewayProviderError),
    ({"error": {"message": "x", "type": "overloaded_error"}}, GatewayServerError),
    ({"error": {"message": "x", "type": "api_error"}}, GatewayServerError),
    ({"error": {"message": "x", "type": "something_new"}}, GatewayServerError),
    ({"error": {"message": "x"}}, GatewayServerError),
    ({"error": "plain words"}, GatewayServerError),
    ({"error": {"message": "x", "code": True}}, GatewayServerError),
]


@pytest.mark.parametrize(("payload", "error_class"), ERROR_EVENTS)
def test_error_as_first_event_raises_the_mapped_error(
    payload: dict[str, Any], error_class: type[Exception]
) -> None:
    state, tracker = new_state()
    with pytest.raises(GatewayClientError) as caught:
        run(state, event(payload))
    assert type(caught.value) is error_class
    assert caught.value.retryable == error_class.retryable  # type: ignore[attr-defined]
    assert tracker.total == UsageTotals()


def test_a_rate_limit_event_takes_its_retry_hint_from_the_response_head() -> None:
    state, _ = new_state()
    state.restart({"Retry-After": "7", "x-ratelimit-reset-requests": "3s"})
    with pytest.raises(GatewayRateLimitError) as caught:
        state.feed(event({"error": {"type": "rate_limit_error", "message": "slow"}}))
    assert caught.value.retry_after == 7.0
    state.restart({"x-ratelimit-reset-tokens": "2s"})
    with pytest.raises(GatewayRateLimitError) as caught:
        state.feed(event({"error": {"type": "rate_limit_error", "message": "slow"}}))
    assert caught.value.retry_after == 2.0
    state.restart()  # a new attempt forgets the old head
    with pytest.raises(GatewayRateLimitError) as caught:
        state.feed(event({"error": {"type": "rate_limit_error", "message": "slow"}}))
    assert caught.value.retry_after is None


def test_a_server_error_event_ignores_a_copied_rate_limit_reset() -> None:
    state, _ = new_state()
    state.restart({"x-ratelimit-reset-requests": "3s"})
    with pytest.raises(GatewayServerError) as caught:
        state.feed(event({"error": {"type": "server_error", "message": "boom"}}))
    assert caught.value.retry_after is None


def test_error_event_carries_its_message_type_and_code() -> None:
    state, _ = new_state()
    payload = {"error": {"message": "quota gone", "type": "rate_limit_error", "code": "429"}}
    with pytest.raises(GatewayRateLimitError) as caught:
        run(state, event(payload))
    error = caught.value
    assert error.message == "quota gone"
    assert error.error_type == "rate_limit_error"
    assert error.error_code == "429"
    assert error.status_code == 429


def test_named_error_event_raises_too() -> None:
    state, _ = new_state()
    with pytest.raises(GatewayRateLimitError):
        run(state, b'event: error\ndata: {"message": "busy", "type": "rate_limit_error"}\n\n')


def test_error_after_chunks_keeps_the_received_text() -> None:
    state, tracker = new_state()
    received: list[Any] = []
    error_event = event({"error": {"message": "upstream died", "type": "provider_error"}})
    with pytest.raises(GatewayProviderError) as caught:
        run(
            state,
            event(chunk("Hello", role="assistant")),
            event(chunk(" wor")),
            error_event,
            out=received,
        )
    assert contents(received) == ["Hello", " wor"]
    assert caught.value.message == "upstream died"
    assert state.completion().choices[0].message.content == "Hello wor"
    assert tracker.total == UsageTotals()


@pytest.mark.parametrize("driver", [run, client_run], ids=["feed-take", "as-clients"])
def test_error_event_hides_the_token(driver: Any) -> None:
    state, _ = new_state(secret=TOKEN)
    payload = {"error": {"message": f"bad key {TOKEN}", "type": "authentication_error"}}
    with pytest.raises(GatewayAuthError) as caught:
        driver(state, event(payload), out=[])
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    assert TOKEN not in json.dumps(caught.value.body)


@pytest.mark.parametrize(
    "data",
    [
        b"data: {not json}\n\n",
        b'data: {"id": "x",\n\n',
        b"data: hello\n\n",
        b"data: 42\n\n",
        b'data: "text"\n\n',
        b"data: [1, 2]\n\n",
        b"data: null\n\n",
        b"data: \n\n",
    ],
)
def test_invalid_event_data_is_a_stream_error(data: bytes) -> None:
    state, _ = new_state()
    with pytest.raises(GatewayStreamError):
        run(state, data)


def test_invalid_event_after_chunks_is_a_stream_error() -> None:
    state, _ = new_state()
    taken: list[Any] = []
    with pytest.raises(GatewayStreamError):
        run(state, event(chunk("hi")) + b"data: {oops\n\n", out=taken)
    assert contents(taken) == ["hi"]
    assert state.completion().choices[0].message.content == "hi"


def test_deeply_nested_event_data_is_a_stream_error() -> None:
    state, _ = new_state()
    with pytest.raises(GatewayStreamError):
        run(state, b"data: " + b"[" * 100_000 + b"\n\n")


@pytest.mark.parametrize(
    "obj",
    [
        {"choices": "abc"},
        {"choices": {"0": {"delta": {}}}},
        {"choices": [1]},
        {"choices": ["x"]},
        {"choices": [{"index": 0, "delta": "text"}]},
        {"choices": [{"index": 0, "delta": [1]}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": "x"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [1]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": {"index": 0}}}]},
    ],
)
def test_malformed_chunk_shapes_are_stream_errors(obj: dict[str, Any]) -> None:
    state, _ = new_state()
    with pytest.raises(GatewayStreamError):
        run(state, event(obj))


@pytest.mark.parametrize(
    "obj",
    [
        {"choices": [{"index": [0], "delta": {"content": "x"}}]},
        {"choices": [{"index": {"i": 0}, "delta": {"content": "x"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": [0]}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": {}, "id": "c"}]}}]},
    ],
)
def test_unhashable_indexes_are_stream_errors(obj: dict[str, Any]) -> None:
    state, _ = new_state()
    with pytest.raises(GatewayStreamError):
        run(state, event(obj))


# -- the end of the stream ---------------------------------------------------------------------


def test_eof_after_a_chunk_before_done_is_a_stream_error() -> None:
    state, tracker = new_state()
    run(state, event(chunk("partial answer")), end=False)
    with pytest.raises(GatewayStreamError) as caught:
        run(state)
    assert not isinstance(caught.value, GatewayConnectionError)
    assert not caught.value.retryable
    assert state.completion().choices[0].message.content == "partial answer"
    assert tracker.total == UsageTotals()


def test_eof_after_an_untaken_chunk_is_a_stream_error() -> None:
    state, _ = new_state()
    state.feed(event(chunk("partial")))
    taken: list[Any] = []
    with pytest.raises(GatewayStreamError) as caught:
        run(state, out=taken)
    assert not isinstance(caught.value, GatewayConnectionError)
    assert contents(taken) == ["partial"]


@pytest.mark.parametrize("received", [b"", b": comment only\n\n", b"retry: 100\n\n", b"da"])
def test_eof_before_any_event_is_a_retryable_connection_error(received: bytes) -> None:
    state, _ = new_state()
    with pytest.raises(GatewayConnectionError) as caught:
        run(state, received)
    assert caught.value.retryable


@pytest.mark.parametrize(
    "received",
    [
        b'data: {"id": "chatcmpl-1", "choi',
        b'data: {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "He',
        b"data: {",
    ],
)
def test_eof_inside_the_first_event_is_a_retryable_connection_error(received: bytes) -> None:
    state, _ = new_state()
    with pytest.raises(GatewayConnectionError) as caught:
        run(state, received)
    assert caught.value.retryable


def test_done_without_a_trailing_blank_line_still_ends_the_stream() -> None:
    state, tracker = new_state()
    chunks = run(state, event(chunk("hi")), b"data: [DONE]")
    assert contents(chunks) == ["hi"]
    assert state.take() is END
    assert tracker.total.requests == 1


def test_data_after_done_is_ignored() -> None:
    state, tracker = new_state()
    chunks = run(
        state,
        event(chunk("kept")) + DONE + event(chunk("ignored")) + b"data: {garbage\n\n",
        event(chunk("also ignored")),
        event({"error": {"code": 500}}),
        b"data: not even json\n\n",
    )
    assert contents(chunks) == ["kept"]
    assert state.take() is END
    assert state.completion().choices[0].message.content == "kept"
    assert tracker.total.requests == 1


@pytest.mark.parametrize(
    "noise",
    [
        b"event: ping\ndata: {}\n\n",
        b"event: ping\ndata: not json at all\n\n",
        b": ping\n\n",
        b":\n\n",
        b"event: ping\n\n",
        b"id: 7\n\n",
        b"retry: 3000\n\n",
        b"event: keepalive\ndata: [1]\n\n",
    ],
)
def test_ping_and_other_named_events_are_ignored(noise: bytes) -> None:
    state, _ = new_state()
    chunks = run(state, noise, event(chunk("a")), noise, event(chunk("b")), noise, DONE)
    assert contents(chunks) == ["a", "b"]
    assert state.completion().choices[0].message.content == "ab"


# -- read failures -------------------------------------------------------------------------------


def test_read_failure_before_any_chunk_is_the_connection_error_itself() -> None:
    state, _ = new_state()
    error = GatewayConnectionError("connection reset by peer")
    assert state.read_failed(error) is error
    state.feed(b": comment\n\n")
    assert state.read_failed(error) is error


def test_read_failure_after_a_chunk_is_a_stream_error() -> None:
    state, _ = new_state()
    run(state, event(chunk("hi")), end=False)
    result = state.read_failed(GatewayConnectionError("connection reset by peer"))
    assert type(result) is GatewayStreamError
    assert not isinstance(result, GatewayConnectionError)
    assert state.completion().choices[0].message.content == "hi"


@pytest.mark.parametrize("after_chunk", [False, True])
def test_a_timeout_always_stays_a_timeout(after_chunk: bool) -> None:
    state, _ = new_state()
    if after_chunk:
        run(state, event(chunk("hi")), end=False)
    error = GatewayTimeoutError("read timed out")
    assert state.read_failed(error) is error


# -- restart -----------------------------------------------------------------------------------


def test_restart_forgets_everything() -> None:
    state, tracker = new_state()
    run(state, event(chunk("stale ", role="assistant", system_fingerprint="old")), end=False)
    state.feed(event(usage_chunk({"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})))
    state.feed(event(chunk("pending, never taken")))
    state.feed(b'data: {"id": "chatcmpl-1", "choices": [{"ind')
    state.restart()
    assert state.take() is NEED_DATA
    assert state.usage is None
    assert state.completion().choices == []
    assert "system_fingerprint" not in state.completion()
    with pytest.raises(GatewayConnectionError):
        run(state)  # nothing has been received since the restart
    state.restart()
    chunks = run(state, event(chunk("fresh", role="assistant")), event(usage_chunk()), DONE)
    assert contents(chunks) == ["fresh"]
    assert state.completion().choices[0].message.content == "fresh"
    assert tracker.total == UsageTotals(8, 11, 19, 1)


def test_restart_after_done_starts_over() -> None:
    state, tracker = new_state()
    run(state, event(chunk("one")), DONE)
    state.restart()
    assert state.take() is NEED_DATA
    run(state, event(chunk("two")), DONE)
    assert state.completion().choices[0].message.content == "two"
    assert tracker.total.requests == 2


# -- StreamCall: the response head -------------------------------------------------------------


def stream_call(hide_usage_chunk: bool = True) -> StreamCall:
    from gatewayclient._core import Request

    request = Request(
        "POST", "http://localhost/v1/chat/completions", "/chat/completions", {}, b"{}", None
    )
    return StreamCall(request, MODEL, UsageTracker(), hide_usage_chunk, TOKEN)


@pytest.mark.parametrize(
    ("status", "content_type", "accepted"),
    [
        (200, "text/event-stream", True),
        (200, "text/event-stream; charset=utf-8", True),
        (200, "Text/Event-Stream; Charset=UTF-8", True),  # RFC 9110: case-insensitive
        (200, "TEXT/EVENT-STREAM", True),
        (200, None, True),
        (200, "application/json", False),
        (200, "text/html", False),
        (429, "application/json", False),
        (500, "text/event-stream", False),
    ],
)
def test_stream_call_accepts_only_an_event_stream(
    status: int, content_type: Optional[str], accepted: bool
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    assert stream_call().accepts(status, headers) is accepted


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, GatewayBadRequestError),
        (401, GatewayAuthError),
        (404, GatewayModelNotFoundError),
        (429, GatewayRateLimitError),
        (500, GatewayServerError),
        (502, GatewayProviderError),
        (529, GatewayServerError),
    ],
)
def test_stream_call_rejects_error_statuses_with_the_typed_error(
    status: int, error_class: type[Exception]
) -> None:
    body = json.dumps({"error": {"message": f"no, {TOKEN}", "code": str(status)}}).encode()
    error = stream_call().reject(status, {"Retry-After": "3"}, body)
    assert type(error) is error_class
    assert error.status_code == status
    assert error.retry_after == 3.0
    assert TOKEN not in str(error)


def test_stream_call_rejects_a_json_error_answer_on_200() -> None:
    body = json.dumps({"error": {"message": "rate limited", "code": 429}}).encode()
    error = stream_call().reject(200, {"content-type": "application/json"}, body)
    assert isinstance(error, GatewayRateLimitError)


@pytest.mark.parametrize("body", [b'{"id": "chatcmpl-1"}', b"<html></html>", b""])
def test_stream_call_rejects_a_non_stream_200_as_a_stream_error(body: bytes) -> None:
    error = stream_call().reject(200, {"content-type": "application/json"}, body)
    assert type(error) is GatewayStreamError


# -- properties ---------------------------------------------------------------------------------

FORBIDDEN = (IndexError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError)


def _consume(pieces: list[bytes]) -> None:
    state, _ = new_state()
    try:
        for piece in pieces:
            state.feed(piece)
            drain(state)
            state.completion()
        state.feed(b"")
        drain(state)
    except GatewayClientError:
        pass
    completion = state.completion()
    json.dumps(completion.to_dict())
    for choice in completion.choices:
        message = choice.message
        _ = (message.content, message.role, message.refusal, choice.finish_reason)
        for call in message.tool_calls or []:
            _ = (call.id, call.type, call.function.name, call.function.arguments)
    _ = (completion.usage, state.usage)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=12))
def test_arbitrary_bytes_raise_only_gateway_errors(pieces: list[bytes]) -> None:
    _consume(pieces)


_SSE_ATOMS = st.sampled_from(
    [
        b"data: ",
        b"data:",
        b"event: ping\n",
        b"event: error\n",
        b": c\n",
        b"\n",
        b"\r\n",
        b"\r",
        b"[DONE]",
        b"{",
        b"}",
        b'"choices"',
        b'"delta"',
        b":",
        b",",
        b"[",
        b"]",
        b'{"error": {"code": 429}}',
        b'{"choices": [{"index": 0, "delta": {"content": "x"}}]}',
        b"\xe4\xb8",
        b"\x96",
        b"\xff",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_SSE_ATOMS, max_size=8).map(b"".join), max_size=10))
def test_sse_like_bytes_raise_only_gateway_errors(pieces: list[bytes]) -> None:
    _consume(pieces)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
_TEXT_OR_JSON = st.text(max_size=5) | _JSON
_FUNCTION = st.fixed_dictionaries({}, optional={"name": _TEXT_OR_JSON, "arguments": _TEXT_OR_JSON})
_TOOL_CALL = (
    st.fixed_dictionaries(
        {},
        optional={
            "index": st.integers(0, 3) | _JSON,
            "id": _TEXT_OR_JSON,
            "type": _TEXT_OR_JSON,
            "function": _FUNCTION | _JSON,
        },
    )
    | _JSON
)
_DELTA = (
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["assistant", "tool"]) | _JSON,
            "content": _TEXT_OR_JSON,
            "refusal": _TEXT_OR_JSON,
            "tool_calls": st.lists(_TOOL_CALL, max_size=3) | _JSON,
        },
    )
    | _JSON
)
_CHOICE = (
    st.fixed_dictionaries(
        {},
        optional={
            "index": st.integers(0, 2) | _JSON,
            "delta": _DELTA,
            "finish_reason": st.sampled_from(["stop", "length"]) | _JSON,
        },
    )
    | _JSON
)
_CHUNK = st.fixed_dictionaries(
    {},
    optional={
        "id": _TEXT_OR_JSON,
        "created": _JSON,
        "model": _TEXT_OR_JSON,
        "choices": st.lists(_CHOICE, max_size=3) | _JSON,
        "usage": st.fixed_dictionaries(
            {}, optional={"prompt_tokens": _JSON, "total_tokens": st.integers(0, 9)}
        )
        | _JSON,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_CHUNK, max_size=6), st.booleans(), st.booleans())
def test_chunk_shaped_json_raises_only_gateway_errors(
    chunks: list[dict[str, Any]], done: bool, hide_usage_chunk: bool
) -> None:
    body = [event(obj) for obj in chunks] + ([DONE] if done else [])
    state, tracker = new_state(hide_usage_chunk=hide_usage_chunk)
    try:
        for piece in body:
            state.feed(piece)
            drain(state)
            state.completion()
        state.feed(b"")
        drain(state)
    except FORBIDDEN as exc:  # pragma: no cover - the failure this property looks for
        raise AssertionError(f"{type(exc).__name__} escaped: {exc!r}") from exc
    except GatewayClientError:
        pass
    completion = state.completion()
    json.dumps(completion.to_dict())
    assert tracker.total.requests in (0, 1)


def _outcome(
    state: StreamState, tracker: UsageTracker, pieces: list[bytes], driver: Any = run
) -> Any:
    """What a caller sees of a stream read in ``pieces`` (``feed`` and ``take``, or as the
    clients drive it): the chunks taken, the error (its type and words) after them, the
    assembled answer and the usage counted."""
    taken: list[Any] = []
    error: Optional[tuple[type, str]] = None
    try:
        driver(state, *pieces, out=taken)
    except GatewayClientError as exc:
        error = (type(exc), str(exc))
    chunks = [chunk.to_dict() for chunk in taken]
    return chunks, error, state.completion().to_dict(), tracker.total


_TEXT_CHUNK = st.builds(
    lambda text, index, role, finish, extra: chunk(
        text, index=index, role=role, finish=finish, **extra
    ),
    st.text(max_size=5) | st.sampled_from([5, ["x"], {"t": "x"}]),
    st.sampled_from([0, 0, 0, 1]),
    st.sampled_from([None, None, "tool"]),
    st.sampled_from([None, None, "stop"]),
    st.sampled_from(
        [{}, {"usage": None}, {"usage": USAGE}, {"error": None}, {"error": {"code": 500}}, {"x": 1}]
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TEXT_CHUNK | _CHUNK | _JSON, max_size=6), st.booleans(), st.booleans())
@example([chunk("a"), chunk("b", error={"code": 500})], True, True)
@example([chunk("a"), chunk("b", role="tool")], True, True)
@example([chunk("a"), chunk("b", finish="stop")], True, True)
@example([chunk("a"), chunk("b", usage=USAGE)], True, True)
@example([chunk("a"), chunk("b", index=1)], True, True)
@example([chunk("a"), chunk(5)], True, True)  # type: ignore[arg-type]
@example([chunk("a"), [chunk("b")]], True, True)
def test_a_read_per_event_gives_what_a_byte_at_a_time_reading_gives(
    chunks: list[Any], done: bool, hide_usage_chunk: bool
) -> None:
    """One event per read takes the hot path for the common chunk (one choice, index 0, a
    text-only delta, nothing else to take in); reads of one byte never do. A caller sees the
    same chunks, error, answer and usage either way, whatever the chunks' shapes."""
    body = b"".join(event(obj) for obj in chunks) + (DONE if done else b"")
    per_event = [event(obj) for obj in chunks] + ([DONE] if done else [])
    per_byte = [body[i : i + 1] for i in range(len(body))]
    outcomes = [
        _outcome(*new_state(hide_usage_chunk), pieces, driver)
        for pieces in (per_event, per_byte)
        for driver in (run, client_run)
    ]
    assert outcomes[1:] == outcomes[:1] * 3


@pytest.mark.parametrize("driver", [run, client_run], ids=["feed-take", "as-clients"])
def test_the_common_chunk_takes_the_hot_path(driver: Any) -> None:
    """A text-only chunk of one choice read alone skips the general event path; a chunk with
    anything more to take in (a role, a finish reason, usage, another index) does not."""
    state, tracker = new_state()
    general: list[Any] = []
    original = state._event

    def counted(sse_event: Any) -> None:
        general.append(json.loads(sse_event.data) if sse_event.data != "[DONE]" else "[DONE]")
        original(sse_event)

    state._event = counted  # type: ignore[method-assign]
    first, hot = chunk("", role="assistant"), [chunk("Hel"), chunk("lo")]
    general_ones = [chunk("!", index=1, role="tool"), chunk(".", finish="length")]
    general_ones += [chunk("?", index=1, x=1), chunk(finish="stop"), usage_chunk()]
    out = driver(state, *(event(obj) for obj in [first, *hot, *general_ones]), DONE, out=[])
    assert contents(out) == ["", "Hel", "lo", "!", ".", "?", ""]
    assert general == [first, *general_ones, "[DONE]"]
    answer = state.completion()
    assert [choice.message.content for choice in answer.choices] == ["Hello.", "!?"]
    assert [choice.message.role for choice in answer.choices] == ["assistant", "tool"]
    assert [choice.finish_reason for choice in answer.choices] == ["stop", None]
    assert tracker.total == UsageTotals(8, 11, 19, 1)


def test_feed_take_gives_what_waits_first_and_nothing_after_the_end() -> None:
    """``feed_take`` is ``feed`` then ``take`` whatever waits: chunks already received come
    before the new read's, and a read after ``[DONE]`` adds nothing."""
    state, _ = new_state()
    state.feed(event(chunk("a")) + event(chunk("b")))
    assert contents([state.feed_take(event(chunk("c")))]) == ["a"]
    assert contents(drain(state)) == ["b", "c"]
    assert state.feed_take(DONE) is END
    assert state.feed_take(event(chunk("late"))) is END
    assert state.take() is END
    assert state.completion().choices[0].message.content == "abc"
