"""The fault matrix against FakeGateway's scripted faults, on both clients, with and without
retries: every call ends in its typed error or in success within its time bound (with
``max_retries=0`` its timeout plus 2 s; with retries the attempts' timeouts and waits plus 2 s),
then the same client answers a normal call, and no socket is left behind."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple, Type

import pytest
from leakcheck import assert_released
from loopback import open_sockets
from twin import Twin

from gatewayclient import (
    GatewayClientError,
    GatewayConnectionError,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayResponseError,
    GatewayServerError,
    GatewayStreamError,
    GatewayTimeoutError,
    RetryPolicy,
)
from gatewayclient.testing import FakeGateway, expected_reply

MODEL = "openai/gpt-4o"
HELLO = [{"role": "user", "content": "Say something reliable."}]
SLACK = 2.0
STALL = 0.3  # the client timeout in the stall cases; the server stalls ten times as long


@dataclass(frozen=True)
class Case:
    """One fault on one call shape: what the client must end in, after how many requests."""

    fault: str
    api: str  # "chat" (a JSON answer) or "stream"
    retries: int
    script: Callable[[FakeGateway], None]
    outcome: Optional[Type[GatewayClientError]]  # None: success
    attempts: int
    timeout: float = 1.0
    waits: float = 0.0  # the Retry-After seconds the client must wait in all
    check: Callable[[GatewayClientError], Any] = field(default=lambda error: None)

    @property
    def bound(self) -> float:
        return self.attempts * self.timeout + self.waits + SLACK

    @property
    def id(self) -> str:
        return f"{self.fault}-{self.api}-r{self.retries}"


def statuses(*codes: int) -> Callable[[FakeGateway], None]:
    def script(gw: FakeGateway) -> None:
        for code in codes:
            gw.fail(code)

    return script


def names_status(code: int) -> Callable[[GatewayClientError], None]:
    def check(error: GatewayClientError) -> None:
        assert error.status_code == code
        assert str(code) in error.message

    return check


def has_status(code: int) -> Callable[[GatewayClientError], None]:
    def check(error: GatewayClientError) -> None:
        assert error.status_code == code

    return check


def not_a_timeout(error: GatewayClientError) -> None:
    assert not isinstance(error, GatewayTimeoutError)


def retry_after(seconds: float) -> Callable[[GatewayClientError], None]:
    def check(error: GatewayClientError) -> None:
        assert error.status_code == 429 and error.retry_after == pytest.approx(seconds)

    return check


def both_apis(**fields: Any) -> List[Case]:
    return [Case(api=api, **fields) for api in ("chat", "stream")]


CASES: List[Case] = [
    # A reset before the headers: a connection error, retried.
    *both_apis(
        fault="reset-before-headers",
        retries=0,
        script=lambda gw: gw.reset_connection(),
        outcome=GatewayConnectionError,
        attempts=1,
        check=not_a_timeout,
    ),
    *both_apis(
        fault="reset-before-headers",
        retries=2,
        script=lambda gw: gw.reset_connection(),
        outcome=None,
        attempts=2,
    ),
    *both_apis(
        fault="reset-before-headers-x3",
        retries=2,
        script=lambda gw: gw.reset_connection(times=3),
        outcome=GatewayConnectionError,
        attempts=3,
        check=not_a_timeout,
    ),
    # A reset mid-body: a JSON answer is retried whole; a stream after chunks is never replayed.
    Case(
        fault="reset-mid-body",
        api="chat",
        retries=0,
        script=lambda gw: gw.reset_connection(when="mid_body"),
        outcome=GatewayConnectionError,
        attempts=1,
        check=not_a_timeout,
    ),
    Case(
        fault="reset-mid-body",
        api="chat",
        retries=2,
        script=lambda gw: gw.reset_connection(when="mid_body"),
        outcome=None,
        attempts=2,
    ),
    *[
        Case(
            fault="reset-mid-body-after-2",
            api="stream",
            retries=retries,
            script=lambda gw: gw.reset_connection(when="mid_body", after=2),
            outcome=GatewayStreamError,
            attempts=1,
        )
        for retries in (0, 2)
    ],
    Case(
        fault="reset-mid-body-after-0",
        api="stream",
        retries=0,
        script=lambda gw: gw.reset_connection(when="mid_body", after=0),
        outcome=GatewayConnectionError,
        attempts=1,
        check=not_a_timeout,
    ),
    Case(
        fault="reset-mid-body-after-0",
        api="stream",
        retries=2,
        script=lambda gw: gw.reset_connection(when="mid_body", after=0),
        outcome=None,
        attempts=2,
    ),
    # A stream cut after k chunks: after a chunk, a stream error; before any, a dropped
    # connection (retried).
    *[
        Case(
            fault="cut-after-3",
            api="stream",
            retries=retries,
            script=lambda gw: gw.cut_stream(after=3),
            outcome=GatewayStreamError,
            attempts=1,
        )
        for retries in (0, 2)
    ],
    Case(
        fault="cut-after-0",
        api="stream",
        retries=0,
        script=lambda gw: gw.cut_stream(after=0),
        outcome=GatewayConnectionError,
        attempts=1,
        check=not_a_timeout,
    ),
    Case(
        fault="cut-after-0",
        api="stream",
        retries=2,
        script=lambda gw: gw.cut_stream(after=0),
        outcome=None,
        attempts=2,
    ),
    # A stall before the headers: a timeout after the client's timeout, retried.
    *both_apis(
        fault="stall-before-headers",
        retries=0,
        script=lambda gw: gw.stall(10 * STALL),
        outcome=GatewayTimeoutError,
        attempts=1,
        timeout=STALL,
    ),
    *both_apis(
        fault="stall-before-headers",
        retries=2,
        script=lambda gw: gw.stall(10 * STALL),
        outcome=None,
        attempts=2,
        timeout=STALL,
    ),
    *both_apis(
        fault="stall-before-headers-x3",
        retries=2,
        script=lambda gw: gw.stall(10 * STALL, times=3),
        outcome=GatewayTimeoutError,
        attempts=3,
        timeout=STALL,
    ),
    # A stall mid-stream: after a chunk, a timeout that is never retried; before any, retried.
    *[
        Case(
            fault="stall-mid-stream-after-2",
            api="stream",
            retries=retries,
            script=lambda gw: gw.stall(10 * STALL, when="mid_stream", after=2),
            outcome=GatewayTimeoutError,
            attempts=1,
            timeout=STALL,
        )
        for retries in (0, 2)
    ],
    Case(
        fault="stall-mid-stream-after-0",
        api="stream",
        retries=0,
        script=lambda gw: gw.stall(10 * STALL, when="mid_stream", after=0),
        outcome=GatewayTimeoutError,
        attempts=1,
        timeout=STALL,
    ),
    Case(
        fault="stall-mid-stream-after-0",
        api="stream",
        retries=2,
        script=lambda gw: gw.stall(10 * STALL, when="mid_stream", after=0),
        outcome=None,
        attempts=2,
        timeout=STALL,
    ),
    # Malformed JSON in a 200: not the JSON promised (a stream: not an event stream); never
    # retried.
    *[
        Case(
            fault="malformed-json",
            api="chat",
            retries=retries,
            script=lambda gw: gw.malformed_body(),
            outcome=GatewayResponseError,
            attempts=1,
        )
        for retries in (0, 2)
    ],
    *[
        Case(
            fault="malformed-json",
            api="stream",
            retries=retries,
            script=lambda gw: gw.malformed_body(),
            outcome=GatewayStreamError,
            attempts=1,
        )
        for retries in (0, 2)
    ],
    # An HTML 502 page from a proxy: the provider error, retried.
    *both_apis(
        fault="html-502",
        retries=0,
        script=lambda gw: gw.html_error(502),
        outcome=GatewayProviderError,
        attempts=1,
        check=has_status(502),
    ),
    *both_apis(
        fault="html-502",
        retries=2,
        script=lambda gw: gw.html_error(502),
        outcome=None,
        attempts=2,
    ),
    *both_apis(
        fault="html-502-x3",
        retries=2,
        script=lambda gw: gw.html_error(502, times=3),
        outcome=GatewayProviderError,
        attempts=3,
        check=has_status(502),
    ),
    # An empty body: a 200 is not the JSON promised; an error status is its own typed error,
    # its message naming the status.
    *[
        Case(
            fault="empty-200",
            api="chat",
            retries=retries,
            script=lambda gw: gw.empty_body(200),
            outcome=GatewayResponseError,
            attempts=1,
        )
        for retries in (0, 2)
    ],
    *both_apis(
        fault="empty-503",
        retries=0,
        script=lambda gw: gw.empty_body(503),
        outcome=GatewayServerError,
        attempts=1,
        check=names_status(503),
    ),
    *both_apis(
        fault="empty-503",
        retries=2,
        script=lambda gw: gw.empty_body(503),
        outcome=None,
        attempts=2,
    ),
    *both_apis(
        fault="empty-429",
        retries=0,
        script=lambda gw: gw.empty_body(429),
        outcome=GatewayRateLimitError,
        attempts=1,
        check=names_status(429),
    ),
    *both_apis(
        fault="empty-502-x3",
        retries=2,
        script=lambda gw: gw.empty_body(502, times=3),
        outcome=GatewayProviderError,
        attempts=3,
        check=names_status(502),
    ),
    # A 429 storm with a short Retry-After: waited each time, then given up.
    *both_apis(
        fault="429-storm",
        retries=0,
        script=lambda gw: gw.fail(429, times=5, retry_after=0.05),
        outcome=GatewayRateLimitError,
        attempts=1,
        check=retry_after(0.05),
    ),
    *both_apis(
        fault="429-x2",
        retries=2,
        script=lambda gw: gw.fail(429, times=2, retry_after=0.05),
        outcome=None,
        attempts=3,
        waits=0.1,
    ),
    *both_apis(
        fault="429-storm",
        retries=2,
        script=lambda gw: gw.fail(429, times=5, retry_after=0.05),
        outcome=GatewayRateLimitError,
        attempts=3,
        waits=0.1,
        check=retry_after(0.05),
    ),
    # A 5xx storm: every retryable status in turn; the last one decides the error.
    *both_apis(
        fault="5xx-storm",
        retries=0,
        script=statuses(503, 504, 529, 500, 502),
        outcome=GatewayServerError,
        attempts=1,
        check=has_status(503),
    ),
    *both_apis(
        fault="5xx-x2",
        retries=2,
        script=statuses(500, 502),
        outcome=None,
        attempts=3,
    ),
    *both_apis(
        fault="5xx-storm",
        retries=2,
        script=statuses(503, 504, 529, 500, 502),
        outcome=GatewayServerError,
        attempts=3,
        check=has_status(529),
    ),
    *both_apis(
        fault="5xx-storm-502-last",
        retries=2,
        script=statuses(500, 503, 502, 504),
        outcome=GatewayProviderError,
        attempts=3,
        check=has_status(502),
    ),
]


def text_of(chunks: List[Any]) -> str:
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)


def normal_call(twin: Twin, api: str) -> None:
    """A call that must simply work: the answer FakeGateway computes for it."""
    if api == "chat":
        answer = twin.call("chat_completion", MODEL, HELLO)
        assert answer.choices[0].message.content == expected_reply(MODEL, HELLO)
    else:
        assert text_of(twin.collect(twin.stream(MODEL, HELLO))) == expected_reply(MODEL, HELLO)


def faulted_call(twin: Twin, api: str) -> Tuple[Optional[BaseException], float]:
    """The call under the fault: what it raised (None for success) and how long it took."""
    started = time.monotonic()
    try:
        normal_call(twin, api)
    except GatewayClientError as error:
        return error, time.monotonic() - started
    return None, time.monotonic() - started


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_fault_ends_in_time_and_the_same_client_recovers(
    kind: str, gw: FakeGateway, case: Case, record_property: Callable[[str, object], None]
) -> None:
    policy = RetryPolicy(max_retries=case.retries, backoff_base=0)
    twin = Twin(kind, gw.url, gw.token, timeout=case.timeout, retry_policy=policy)
    baseline = open_sockets()  # after the twin's own event loop (its self-pipe is a socket pair)
    try:
        normal_call(twin, case.api)  # a kept-alive connection, which the fault then meets
        gw.clear_requests()
        case.script(gw)

        error, elapsed = faulted_call(twin, case.api)
        record_property("elapsed", round(elapsed, 3))
        record_property("bound", case.bound)
        record_property("outcome", type(error).__name__ if error else "success")

        if case.outcome is None:
            assert error is None, f"expected success, got {error!r}"
        else:
            assert type(error) is case.outcome, f"expected {case.outcome.__name__}: {error!r}"
            case.check(error)
        assert elapsed < case.bound
        assert len(gw.requests) == case.attempts
        gw.clear_faults()

        normal_call(twin, case.api)  # the same client still works
        assert_released(twin, baseline)
    finally:
        twin.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("held", ["error-held", "retried-then-succeeded"])
def test_closing_the_client_closes_its_kept_alive_connections(
    kind: str, gw: FakeGateway, held: str
) -> None:
    """``close()``/``aclose()`` release connections at once, not whenever the garbage
    collector gets to them: not while the caller still holds an error the client raised, nor
    after a call whose retried attempts left reference cycles behind (the collector is off
    here, so that the outcome does not depend on when it runs)."""
    policy = RetryPolicy(max_retries=0 if held == "error-held" else 2, backoff_base=0)
    twin = Twin(kind, gw.url, gw.token, timeout=5, retry_policy=policy)
    baseline = open_sockets()
    gc.disable()
    try:
        normal_call(twin, "chat")
        gw.fail(503)
        error, _ = faulted_call(twin, "chat")
        assert (type(error) is GatewayServerError) == (held == "error-held")
        normal_call(twin, "chat")  # one kept-alive connection
        assert_released(twin, baseline)
    finally:
        gc.enable()
        twin.close()
