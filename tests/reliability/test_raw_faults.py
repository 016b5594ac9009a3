"""The fault matrix where FakeGateway cannot write the bytes: a refused connection, a 50 MB
body in every framing, invalid UTF-8 in an event stream, one 10 MB ``data:`` line in pieces,
bodies cut by a reset or a clean close. Both clients, with and without retries; each call ends
in its typed error or in success within its bound, then the same client works and no socket
is left behind."""

from __future__ import annotations

import functools
import socket
import string
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Type

import pytest
from leakcheck import assert_released, settle
from loopback import open_sockets
from rawserver import (
    NORMAL_TEXT,
    RawRequest,
    RawServer,
    Responder,
    chat_body,
    chunk_event,
    chunked,
    head,
    send,
)
from twin import Twin

from gatewayclient import (
    GatewayClientError,
    GatewayConnectionError,
    GatewayStreamError,
    GatewayTimeoutError,
    RetryPolicy,
)

MODEL = "openai/gpt-4o"
HELLO = [{"role": "user", "content": "Say something long."}]
SLACK = 2.0
MB = 1024 * 1024


def text_of(chunks: Sequence[Any]) -> str:
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)


@functools.cache
def long_text(size: int) -> str:
    """``size`` characters of printable ASCII, not one repeated byte (a cut would show)."""
    alphabet = string.ascii_letters + string.digits + " .,;"
    block = "".join(alphabet[(i * 7) % len(alphabet)] for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


@functools.cache
def big_chat_body() -> bytes:
    return chat_body(long_text(50 * MB))


@functools.cache
def big_line_stream(first: bool) -> bytes:
    """A stream with one ``data:`` line of more than 10 MB: its first event, or its second
    (after a role chunk)."""
    line = chunk_event({"role": "assistant", "content": long_text(10 * MB)})
    if not first:
        line = chunk_event({"role": "assistant", "content": ""}) + chunk_event(
            {"content": long_text(10 * MB)}
        )
    return line + chunk_event({}, "stop") + b"data: [DONE]\n\n"


@pytest.fixture(scope="module", autouse=True)
def free_the_payloads() -> Iterator[None]:
    """The big payloads are built once for the module and dropped after it."""
    yield
    for cached in (long_text, big_chat_body, big_line_stream):
        cached.cache_clear()


# -- responders ------------------------------------------------------------------------------


def big_json(framing: str, cut_at: Optional[int] = None) -> Responder:
    """The 50 MB chat answer; with ``cut_at``, reset after that many bytes of the body."""

    def respond(conn: socket.socket, request: RawRequest) -> bool:
        return send(conn, big_chat_body(), framing=framing, cut_at=cut_at)

    return respond


def big_line(framing: str, cut_at: Optional[int] = None, first: bool = True) -> Responder:
    def respond(conn: socket.socket, request: RawRequest) -> bool:
        body = big_line_stream(first)
        return send(conn, body, content_type="text/event-stream", framing=framing, cut_at=cut_at)

    return respond


def paced_stream(events: Sequence[bytes], pause: float = 0.02) -> Responder:
    """An event stream in exactly these chunked writes, pausing between them, so that each
    arrives as a read of its own."""

    def respond(conn: socket.socket, request: RawRequest) -> bool:
        headers = [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]
        conn.sendall(head(200, headers))
        for frame in chunked(events):
            conn.sendall(frame)
            time.sleep(pause)
        return True

    return respond


def truncated_json() -> Responder:
    """Half the body its Content-Length promises, then a clean close (FIN, no reset)."""

    def respond(conn: socket.socket, request: RawRequest) -> bool:
        body = chat_body(NORMAL_TEXT)
        return send(conn, body, cut_at=len(body) // 2, cut_with_reset=False)

    return respond


# Invalid UTF-8 inside a JSON string: a lead byte with no continuation, two bytes that never
# occur in UTF-8, and two sequences cut short by ASCII, one of them across a network read. Each
# is one U+FFFD (the maximal-subpart rule of the Encoding Standard, which WHATWG SSE uses).
BAD_CONTENT_PIECES = [b"caf\xc3 au lait \xff\xfe ", b"ok \xe6\x97", b"x \xf0\x9f\x98 end"]
BAD_CONTENT = b"".join(BAD_CONTENT_PIECES).decode("utf-8", "replace")


def invalid_utf8_in_string() -> Responder:
    first = chunk_event({"role": "assistant", "content": ""})
    event = (
        b'data: {"choices":[{"index":0,"delta":{"content":"'
        + b"".join(BAD_CONTENT_PIECES)
        + b'"},"finish_reason":"stop"}]}\n\n'
    )
    cut = event.index(b"\xe6\x97") + 1  # the read ends inside the three-byte sequence
    return paced_stream([first, event[:cut], event[cut:], b"data: [DONE]\n\n"])


def invalid_utf8_in_structure(after_a_chunk: bool) -> Responder:
    broken = b'data: {"choices":[{"index":0,\xff\xfe"delta":{"content":"never"}}]}\n\n'
    events = [chunk_event({"role": "assistant", "content": "Hi"})] if after_a_chunk else []
    return paced_stream([*events, broken, b"data: [DONE]\n\n"])


# -- the matrix -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    fault: str
    api: str  # "chat" or "stream"
    retries: int
    script: Tuple[Callable[[], Responder], ...]
    outcome: Optional[Type[GatewayClientError]]  # None: success
    attempts: int
    timeout: float = 2.0
    check: Callable[[Any], None] = field(default=lambda result: None)

    @property
    def bound(self) -> float:
        return self.attempts * self.timeout + SLACK

    @property
    def id(self) -> str:
        return f"{self.fault}-{self.api}-r{self.retries}"


def the_big_answer(answer: Any) -> None:
    content = answer.choices[0].message.content
    assert len(content) == 50 * MB and content == long_text(50 * MB)
    assert answer["choices"][0]["message"]["content"] == content


def the_big_line(chunks: List[Any]) -> None:
    assert [chunk.choices[0].finish_reason for chunk in chunks][-1] == "stop"
    text = text_of(chunks)
    assert len(text) == 10 * MB and text == long_text(10 * MB)


def replaced_characters(chunks: List[Any]) -> None:
    assert text_of(chunks) == BAD_CONTENT
    assert BAD_CONTENT.count("\ufffd") == 5


def not_a_timeout(error: GatewayClientError) -> None:
    assert not isinstance(error, GatewayTimeoutError)


CASES: List[Case] = [
    # A 50 MB JSON body, in each framing: delivered intact (no size cap by default). No fault,
    # so retries would change nothing: with max_retries=0 only.
    *[
        Case(
            fault=f"50MB-{framing}",
            api="chat",
            retries=0,
            script=(functools.partial(big_json, framing),),
            outcome=None,
            attempts=1,
            check=the_big_answer,
        )
        for framing in ("length", "chunked", "close")
    ],
    # ... cut halfway by a reset: a dropped connection, retried whole.
    Case(
        fault="50MB-reset-halfway",
        api="chat",
        retries=0,
        script=(functools.partial(big_json, "length", 25 * MB),),
        outcome=GatewayConnectionError,
        attempts=1,
        check=not_a_timeout,
    ),
    Case(
        fault="50MB-reset-halfway",
        api="chat",
        retries=2,
        script=(
            functools.partial(big_json, "chunked", 25 * MB),
            functools.partial(big_json, "length"),
        ),
        outcome=None,
        attempts=2,
        check=the_big_answer,
    ),
    # A JSON body cut short by a clean close (FIN) against its Content-Length: dropped.
    Case(
        fault="truncated-json-fin",
        api="chat",
        retries=0,
        script=(truncated_json,),
        outcome=GatewayConnectionError,
        attempts=1,
        check=not_a_timeout,
    ),
    Case(
        fault="truncated-json-fin",
        api="chat",
        retries=2,
        script=(truncated_json,),
        outcome=None,
        attempts=2,
    ),
    # One SSE line of 10 MB in 64 KiB writes, as the first event or after one: delivered intact
    # (with max_retries=0 only, as above).
    *[
        Case(
            fault=f"10MB-line-{where}-{framing}",
            api="stream",
            retries=0,
            script=(functools.partial(big_line, framing, first=where == "first"),),
            outcome=None,
            attempts=1,
            check=the_big_line,
        )
        for where in ("first", "second")
        for framing in ("chunked", "close")
    ],
    # ... reset halfway through the line: as the first event, no chunk has reached the caller,
    # so a dropped connection (retried); after a chunk, a cut stream (never retried).
    Case(
        fault="10MB-line-first-reset-halfway",
        api="stream",
        retries=0,
        script=(functools.partial(big_line, "chunked", 5 * MB),),
        outcome=GatewayConnectionError,
        attempts=1,
        check=not_a_timeout,
    ),
    Case(
        fault="10MB-line-first-reset-halfway",
        api="stream",
        retries=2,
        script=(
            functools.partial(big_line, "chunked", 5 * MB),
            functools.partial(big_line, "chunked"),
        ),
        outcome=None,
        attempts=2,
        check=the_big_line,
    ),
    *[
        Case(
            fault="10MB-line-second-reset-halfway",
            api="stream",
            retries=retries,
            script=(functools.partial(big_line, "chunked", 5 * MB, first=False),),
            outcome=GatewayStreamError,
            attempts=1,
        )
        for retries in (0, 2)
    ],
    # Invalid UTF-8 in a stream: U+FFFD inside a JSON string is valid JSON (success); in the
    # JSON structure it is not (a stream error, never retried, before or after a chunk).
    Case(
        fault="invalid-utf8-in-string",
        api="stream",
        retries=0,
        script=(invalid_utf8_in_string,),
        outcome=None,
        attempts=1,
        check=replaced_characters,
    ),
    *[
        Case(
            fault=f"invalid-utf8-in-structure-{where}",
            api="stream",
            retries=retries,
            script=(functools.partial(invalid_utf8_in_structure, where == "after-a-chunk"),),
            outcome=GatewayStreamError,
            attempts=1,
        )
        for where in ("first-event", "after-a-chunk")
        for retries in (0, 2)
    ],
]


def call(twin: Twin, api: str) -> Any:
    if api == "chat":
        return twin.call("chat_completion", MODEL, HELLO)
    return twin.collect(twin.stream(MODEL, HELLO))


def normal_call(twin: Twin, api: str) -> None:
    result = call(twin, api)
    text = result.choices[0].message.content if api == "chat" else text_of(result)
    assert text == NORMAL_TEXT


def timed(twin: Twin, api: str) -> Tuple[Any, Optional[GatewayClientError], float]:
    started = time.monotonic()
    try:
        result = call(twin, api)
    except GatewayClientError as error:
        return None, error, time.monotonic() - started
    return result, None, time.monotonic() - started


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_raw_bytes_end_in_time_and_the_same_client_recovers(
    kind: str, case: Case, record_property: Callable[[str, object], None]
) -> None:
    policy = RetryPolicy(max_retries=case.retries, backoff_base=0)
    with RawServer(*(make() for make in case.script)) as server:
        twin = Twin(kind, server.url, "raw-token", timeout=case.timeout, retry_policy=policy)
        baseline = open_sockets()
        try:
            result, error, elapsed = timed(twin, case.api)
            record_property("elapsed", round(elapsed, 3))
            record_property("bound", case.bound)
            record_property("outcome", type(error).__name__ if error else "success")

            if case.outcome is None:
                assert error is None, f"expected success, got {error!r}"
                case.check(result)
            else:
                assert type(error) is case.outcome, f"expected {case.outcome.__name__}: {error!r}"
                case.check(error)
            del result
            assert elapsed < case.bound
            assert len(server.requests) == case.attempts

            normal_call(twin, case.api)  # the same client still works
            assert_released(twin, baseline)
        finally:
            twin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", ["chat", "stream"])
@pytest.mark.parametrize("retries", [0, 2])
def test_a_refused_connection_ends_in_time_and_the_client_recovers(
    kind: str, api: str, retries: int, record_property: Callable[[str, object], None]
) -> None:
    port = free_port()
    timeout = 1.0
    policy = RetryPolicy(max_retries=retries, backoff_base=0)
    twin = Twin(kind, f"http://127.0.0.1:{port}", "raw-token", timeout=timeout, retry_policy=policy)
    try:
        baseline = open_sockets()
        _, error, elapsed = timed(twin, api)
        record_property("elapsed", round(elapsed, 3))
        record_property("bound", (retries + 1) * timeout + SLACK)
        assert type(error) is GatewayConnectionError, repr(error)
        assert elapsed < (retries + 1) * timeout + SLACK
        assert settle(baseline) <= baseline  # a refused attempt holds nothing

        with RawServer(port=port) as server:  # the gateway comes up where it was expected
            baseline = open_sockets()
            normal_call(twin, api)  # the same client now works
            assert len(server.requests) == 1
            assert_released(twin, baseline)
    finally:
        twin.close()
