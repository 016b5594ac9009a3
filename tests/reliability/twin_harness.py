"""The harness of the twin behaviour matrix: what a case is (``Row``), where it runs (``Stage``:
the servers, the base URL, the environment at construction), how it is driven (procedures) and
what is recorded of each twin (``Record``), so that the two records can be compared whole."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, Type, Union

import pytest
from leakcheck import assert_released, settle
from loopback import open_sockets
from rawserver import RawServer
from test_raw_faults import text_of
from twin import Twin

from gatewayclient import GatewayClientError, RetryPolicy

SECRET = "sk-matrix-secret-0123456789"
PROXY_SECRET = "proxy-pass-0123456789"
MODEL = "openai/gpt-4o"
HELLO = [{"role": "user", "content": "Say something."}]
SLACK = 1.0  # on top of attempts x timeout (+ Retry-After waits)
NORMAL_CHUNKS = 3  # rawserver.NORMAL_EVENTS: a role chunk, a content chunk, a stop chunk


class Outcome(NamedTuple):
    error: Optional[GatewayClientError]
    chunks: Optional[int]  # a stream: chunks that reached the caller; a chat: None
    elapsed: float
    extra: Tuple[Any, ...] = ()
    result: Any = None  # the answer, or the chunks of a stream


class Record(NamedTuple):
    """What one twin did; the two twins' records must be equal."""

    error: str  # the class of the error, or "ok"
    status: Optional[int]
    retryable: Optional[bool]
    attempts: int  # 1 + the retries the client logged
    seen: Optional[int]  # what the server counted (requests, connections or CONNECTs)
    chunks: Optional[int]
    extra: Tuple[Any, ...]


class Expect(NamedTuple):
    error: Optional[Type[GatewayClientError]] = None  # None: success
    status: Optional[int] = None
    retried: bool = False  # attempts = 1 + retries when True, else 1
    retryable: Optional[bool] = None  # of the error; None: the same as ``retried``
    chunks: Optional[int] = None  # streams; None: 0 for an error, NORMAL_CHUNKS for success
    extra: Tuple[Any, ...] = ()


@dataclass
class Stage:
    """The servers of one case for one twin; ``server`` is the one that counts."""

    url: str
    server: Optional[RawServer] = None
    env: Dict[str, str] = field(default_factory=dict)
    client: Dict[str, Any] = field(default_factory=dict)
    revive: Optional[Callable[[], int]] = None  # ends the fault; returns sockets it opened
    others: List[RawServer] = field(default_factory=list)

    def end_fault(self) -> int:
        if self.revive is not None:
            return self.revive()
        assert self.server is not None
        self.server.recover()
        return 0


Procedure = Callable[[Twin, str, Stage], Outcome]
StageMaker = Callable[[ExitStack, Any], Stage]


@dataclass(frozen=True)
class Row:
    """One misbehaviour, run on both twins, each api, each retry setting."""

    name: str
    stage: StageMaker
    expect: Union[Expect, Callable[[str, int], Expect]]
    apis: Tuple[str, ...] = ("chat", "stream")
    retries: Tuple[int, ...] = (0, 2)
    timeout: Optional[float] = 2.0  # the client's; bounds each attempt
    client: Dict[str, Any] = field(default_factory=dict)
    run: Optional[Procedure] = None  # None: one call of the api
    check: Optional[Callable[[Outcome, Stage, str], None]] = None
    count: str = "requests"  # what ``seen`` counts: requests, connections, connects or none
    seen: Callable[[int], int] = lambda attempts: attempts
    waits: float = 0.0  # Retry-After seconds before each retry
    bound: Optional[float] = None  # a bound of its own for the measured time
    slow: bool = False  # it ends by running out its timeout: at least attempts x timeout
    recover: Optional[str] = None  # why the same client cannot then answer a normal call
    xfail: Optional[str] = None
    marks: Tuple[Any, ...] = ()
    pooled: int = 1  # kept-alive connections the client may hold afterwards

    def expected(self, api: str, retries: int) -> Tuple[Record, int]:
        """The record both twins must make, and the attempts it stands for."""
        e = self.expect(api, retries) if callable(self.expect) else self.expect
        attempts = 1 + retries if e.retried else 1
        retryable = None if e.error is None else (e.retried if e.retryable is None else e.retryable)
        chunks = e.chunks
        if chunks is None:
            chunks = 0 if e.error is not None else NORMAL_CHUNKS
        record = Record(
            error=e.error.__name__ if e.error is not None else "ok",
            status=e.status,
            retryable=retryable,
            attempts=attempts,
            seen=None if self.count == "none" else self.seen(attempts),
            chunks=chunks if api == "stream" else None,
            extra=e.extra,
        )
        return record, attempts

    def limit(self, attempts: int) -> Tuple[float, float]:
        """(at least, at most) seconds the measured call may take."""
        if self.bound is not None:
            return 0.0, self.bound
        per_attempt = self.timeout or 0.0
        waits = self.waits * (attempts - 1)
        lower = (attempts * per_attempt if self.slow else 0.0) * 0.9 + waits * 0.9
        return lower, attempts * per_attempt + waits + SLACK


def seen_by(stage: Stage, count: str) -> Optional[int]:
    server = stage.server
    if count == "none" or server is None:
        return None
    if count == "connections":
        return server.connections
    if count == "connects":
        return sum(request.method == "CONNECT" for request in server.requests)
    return len(server.requests)


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def retries_logged() -> Iterator[List[logging.LogRecord]]:
    """The retry lines the client logs meanwhile: one per retry."""
    handler = _Kept()
    logger = logging.getLogger("gatewayclient")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def retries_in(records: List[logging.LogRecord]) -> int:
    return sum("retry %d of %d" in str(record.msg) for record in records)


# -- procedures ------------------------------------------------------------------------------


def one_call(twin: Twin, api: str, stage: Stage, messages: Any = None, **kwargs: Any) -> Outcome:
    """The api called once: its error (None for success) and, for a stream, what it yielded."""
    messages = messages or HELLO
    chunks: List[Any] = []
    result: Any = chunks
    error: Optional[GatewayClientError] = None
    started = time.monotonic()
    try:
        if api == "chat":
            result = twin.call("chat_completion", MODEL, messages, **kwargs)
        else:
            twin.collect(twin.stream(MODEL, messages, **kwargs), chunks)
    except GatewayClientError as exc:
        error = exc
    elapsed = time.monotonic() - started
    return Outcome(error, len(chunks) if api == "stream" else None, elapsed, (), result)


def chat_while_the_pool_is_held(twin: Twin, api: str, stage: Stage) -> Outcome:
    """A stream holds the only connection (one chunk read); a chat call waits for another."""
    stream = twin.stream(MODEL, HELLO)
    assert len(twin.take(stream, 1)) == 1
    outcome = one_call(twin, "chat", stage, timeout=0.5)
    twin.close_stream(stream)
    return outcome


CLOSE_AFTER = 0.2


def closed_from_elsewhere(twin: Twin, api: str, stage: Stage) -> Outcome:
    """The reader waits for a stalled stream's next chunk; another thread (task) closes the
    stream. Measured: from the close to the end of the reader's iteration."""
    if twin.loop is not None:
        return twin.run(_closed_by_a_task(twin))
    stream = twin.stream(MODEL, HELLO)
    chunks = twin.take(stream, 1)
    closed_at: List[float] = []

    def close() -> None:
        closed_at.append(time.monotonic())
        stream.close()

    timer = threading.Timer(CLOSE_AFTER, close)
    timer.start()
    error: Optional[GatewayClientError] = None
    try:
        twin.collect(stream, chunks)
    except GatewayClientError as exc:
        error = exc
    ended = time.monotonic()
    timer.join()
    return Outcome(error, len(chunks), ended - closed_at[0], (), chunks)


async def _closed_by_a_task(twin: Twin) -> Outcome:
    stream = twin.client.stream_chat_completion(MODEL, HELLO)
    chunks = [await stream.__anext__()]
    closed_at: List[float] = []

    async def close() -> None:
        await asyncio.sleep(CLOSE_AFTER)
        closed_at.append(time.monotonic())
        await stream.aclose()

    closer = asyncio.ensure_future(close())
    error: Optional[GatewayClientError] = None
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except GatewayClientError as exc:
        error = exc
    ended = time.monotonic()
    await closer
    return Outcome(error, len(chunks), ended - closed_at[0], (), chunks)


def abandoned_after_one_chunk(twin: Twin, api: str, stage: Stage) -> Outcome:
    """The whole answer arrives in one write; the caller takes one chunk and closes."""
    started = time.monotonic()
    stream = twin.stream(MODEL, HELLO)
    taken = twin.take(stream, 1)
    twin.close_stream(stream)
    text = stream.completion().choices[0].message.content
    extra = (twin.client.usage.total.requests, text)
    return Outcome(None, len(taken), time.monotonic() - started, extra, taken)


def called_twice(twin: Twin, api: str, stage: Stage) -> Outcome:
    first = one_call(twin, api, stage)
    second = one_call(twin, api, stage)
    elapsed = first.elapsed + second.elapsed
    return Outcome(first.error or second.error, second.chunks, elapsed, (), second.result)


# -- one twin through one case ---------------------------------------------------------------


def words_of(error: Optional[BaseException]) -> str:
    assert error is not None
    return " ".join([str(error), repr(error), repr(getattr(error, "args", ()))])


def normal_call(twin: Twin, api: str) -> None:
    outcome = one_call(twin, api, Stage(""))
    assert outcome.error is None, repr(outcome.error)
    if api == "chat":
        assert outcome.result.choices[0].message.content == "All is well."
    else:
        assert text_of(outcome.result) == "All is well."


def run_twin(
    kind: str, row: Row, api: str, retries: int, certs: Any, note: Callable[..., None]
) -> Tuple[Record, Outcome]:
    """One twin through the case: its record and its outcome (``note``d before anything is
    checked, for the report); then it recovers, leak-free."""
    policy = RetryPolicy(max_retries=retries, backoff_base=0)
    with ExitStack() as stack:
        stage = row.stage(stack, certs)
        with pytest.MonkeyPatch.context() as env:  # the clients read it at construction only
            for name, value in stage.env.items():
                env.setenv(name, value)
            options = {"timeout": row.timeout, **row.client, **stage.client}
            twin = Twin(kind, stage.url, SECRET, retry_policy=policy, **options)
        stack.callback(twin.close)
        baseline = open_sockets()
        with retries_logged() as logged:
            outcome = (row.run or one_call)(twin, api, stage)
        error = outcome.error
        record = Record(
            error=type(error).__name__ if error is not None else "ok",
            status=getattr(error, "status_code", None),
            retryable=getattr(error, "retryable", None),
            attempts=1 + retries_in(logged),
            seen=seen_by(stage, row.count),
            chunks=outcome.chunks,
            extra=outcome.extra,
        )
        note(kind, f"{record} in {outcome.elapsed:.3f} s")
        if error is not None:
            assert SECRET not in words_of(error), "the token is in the error"
        if row.check is not None:
            row.check(outcome, stage, api)
        outcome = outcome._replace(result=None)  # a 50 MB answer need not outlive the twin
        if row.recover is None:
            limit = baseline + 2 * row.pooled
            assert settle(limit) <= limit, "the fault left more than kept-alive connections"
            baseline += stage.end_fault()
            normal_call(twin, api)
        assert_released(twin, baseline, row.pooled)
    return record, outcome
