"""The rate budget in both clients against FakeGateway (in process, no Redis): every attempt
counts, the estimate is checked and corrected, ``max_wait`` refuses at once, a 429 pauses
everyone, a cancelled task holds nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest
from twin import Twin

from gatewayclient import AsyncGatewayClient, RateLimit, RetryPolicy
from gatewayclient.budget import estimate_tokens
from gatewayclient.errors import (
    GatewayConnectionError,
    GatewayRateLimitError,
    GatewayServerError,
    GatewayValidationError,
)
from gatewayclient.testing import FakeGateway, expected_usage

MODEL = "openai/gpt-4o"
OTHER = "anthropic/claude-sonnet-4-20250514"
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
Make = Callable[..., Twin]
FAST = RetryPolicy(max_retries=2, backoff_base=0.0)
TRANSIT = 0.05  # how much closer two arrivals may be than their departures (see README)


def refused(twin: Twin, method: str = "chat_completion", *args: Any, **kwargs: Any) -> Any:
    """The budget's own refusal: raised at once, no status, not retryable."""
    if method == "chat_completion" and not args:
        args = (MODEL, HELLO)
    started = time.monotonic()
    with pytest.raises(GatewayRateLimitError) as caught:
        twin.call(method, *args, **kwargs)
    assert time.monotonic() - started < 0.5
    error = caught.value
    assert error.status_code is None and error.retryable is False
    assert "nothing was sent" in str(error)
    return error


@pytest.fixture
def other(kind: str, gw: FakeGateway) -> Iterator[Callable[..., Twin]]:
    """Clients of the other kind than this test's."""
    made: List[Twin] = []

    def build(**kwargs: Any) -> Twin:
        kwargs.setdefault("retry_policy", FAST)
        made.append(Twin("async" if kind == "sync" else "sync", gw.url, gw.token, **kwargs))
        return made[-1]

    yield build
    for twin in made:
        twin.close()


# -- every attempt counts -----------------------------------------------------------------------


def test_retries_count(make: Make, gw: FakeGateway) -> None:
    twin = make(rate_limit=RateLimit(requests=3, max_wait=0))
    gw.fail(503, times=2)
    twin.call("chat_completion", MODEL, HELLO)
    assert len(gw.requests) == 3
    refused(twin)
    assert len(gw.requests) == 3


def test_a_provider_route_falling_back_to_models_counts_twice(make: Make, gw: FakeGateway) -> None:
    twin = make(rate_limit=RateLimit(requests=2, max_wait=0))
    gw.fail(404, path="/v1/providers")
    assert twin.call("list_known_providers")
    assert [r.path for r in gw.requests] == ["/v1/providers", "/v1/models"]
    refused(twin, "list_models")


def test_model_fallbacks_count(make: Make, gw: FakeGateway) -> None:
    twin = make(rate_limit=RateLimit(requests=2, max_wait=0))
    gw.fail(404)
    answer = twin.call("chat_completion", MODEL, HELLO, fallback_models=[OTHER])
    assert answer.model == OTHER and len(gw.requests) == 2
    refused(twin)


def test_streams_count_and_wait_before_they_open(make: Make, gw: FakeGateway) -> None:
    twin = make(rate_limit=RateLimit(requests=2, max_wait=0))
    gw.fail(503)
    assert twin.collect(twin.stream(MODEL, HELLO))  # a retry: two attempts
    stream = twin.stream(MODEL, HELLO)
    with pytest.raises(GatewayRateLimitError) as caught:
        twin.next(stream)
    assert caught.value.status_code is None and len(gw.requests) == 2


def test_a_sync_and_an_async_client_share_one_budget(
    make: Make, other: Callable[..., Twin], gw: FakeGateway
) -> None:
    limit = RateLimit(requests=2, max_wait=0)
    one, two = make(rate_limit=limit), other(rate_limit=limit)
    one.call("chat_completion", MODEL, HELLO)
    two.call("chat_completion", MODEL, HELLO)
    refused(one)
    refused(two)
    assert len(gw.requests) == 2


# -- the estimate -------------------------------------------------------------------------------


def test_a_call_estimated_above_the_budget_is_refused_before_sending(
    make: Make, gw: FakeGateway
) -> None:
    twin = make(rate_limit=RateLimit(tokens=100))
    long = [{"role": "user", "content": "x" * 400}]
    with pytest.raises(GatewayValidationError, match="101 tokens"):
        twin.call("chat_completion", MODEL, long, max_tokens=1)
    with pytest.raises(GatewayValidationError):
        twin.call("embeddings", "openai/text-embedding-3-small", ["x" * 404])
    with pytest.raises(GatewayValidationError):
        twin.collect(twin.stream(MODEL, HELLO, max_tokens=100))
    assert gw.requests == []


def reservation_and_usage(messages: List[Dict[str, Any]], max_tokens: Any) -> Any:
    return (
        estimate_tokens(messages, None, max_tokens),
        expected_usage(MODEL, messages, max_tokens)["total_tokens"],
    )


@pytest.mark.parametrize("streamed", [False, True])
def test_a_reservation_is_corrected_to_the_usage_answered(
    make: Make, gw: FakeGateway, streamed: bool
) -> None:
    reserved, used = reservation_and_usage(HELLO, 200)
    assert used < reserved
    twin = make(rate_limit=RateLimit(tokens=used + reserved, max_wait=0))
    for _ in range(2):  # fits only if the first was corrected down to its usage
        if streamed:
            twin.collect(twin.stream(MODEL, HELLO, max_tokens=200))
        else:
            twin.call("chat_completion", MODEL, HELLO, max_tokens=200)
    refused(twin, "chat_completion", MODEL, HELLO, max_tokens=200)


@pytest.mark.parametrize("streamed", [False, True])
def test_an_answer_above_its_reservation_is_charged_the_difference(
    make: Make, gw: FakeGateway, streamed: bool
) -> None:
    wordy = [{"role": "user", "content": "a b c d e f g h i j k l m n o p q r s t"}]
    reserved, used = reservation_and_usage(wordy, None)
    assert used > reserved
    twin = make(rate_limit=RateLimit(tokens=used + reserved - 1, max_wait=0))
    if streamed:
        twin.collect(twin.stream(MODEL, wordy))
    else:
        twin.call("chat_completion", MODEL, wordy)
    refused(twin, "chat_completion", MODEL, wordy)  # charged `used`, not `reserved`


def test_an_error_answer_frees_its_tokens_and_a_lost_connection_keeps_them(
    make: Make, gw: FakeGateway
) -> None:
    reserved, _ = reservation_and_usage(HELLO, 100)
    twin = make(rate_limit=RateLimit(tokens=reserved, max_wait=0), max_retries=0)
    gw.fail(500)
    with pytest.raises(GatewayServerError):
        twin.call("chat_completion", MODEL, HELLO, max_tokens=100)
    gw.reset_connection()  # the gateway may have served it: its reservation stays
    with pytest.raises(GatewayConnectionError):
        twin.call("chat_completion", MODEL, HELLO, max_tokens=100)
    refused(twin, "chat_completion", MODEL, HELLO, max_tokens=100)


# -- max_wait -----------------------------------------------------------------------------------


def test_max_wait_refuses_at_once_with_the_wait_needed(make: Make, gw: FakeGateway) -> None:
    twin = make(rate_limit=RateLimit(requests=1, per=30, max_wait=0.5))
    twin.call("chat_completion", MODEL, HELLO)
    error = refused(twin)
    assert 29 < error.retry_after <= 30
    refused(twin, "chat_completion", MODEL, HELLO, fallback_models=[OTHER])  # no fallback
    assert len(gw.requests) == 1


def test_a_call_within_max_wait_waits_then_goes(make: Make, gw: FakeGateway) -> None:
    twin = make(rate_limit=RateLimit(requests=1, per=0.3, max_wait=1))
    twin.call("chat_completion", MODEL, HELLO)
    started = time.monotonic()
    twin.call("chat_completion", MODEL, HELLO)
    assert 0.25 < time.monotonic() - started < 1
    first, second = (a.at for a in gw.arrivals)
    # The budget spaces departures; arrivals differ by the transit times (the first opened a
    # connection, the second reused it): a few milliseconds.
    assert second - first >= 0.3 - TRANSIT


# -- a 429 pauses everyone ----------------------------------------------------------------------


def test_a_429_with_a_hint_pauses_every_client_of_the_budget(
    make: Make, other: Callable[..., Twin], gw: FakeGateway
) -> None:
    limit = RateLimit(requests=100)
    first, second = make(rate_limit=limit, max_retries=0), other(rate_limit=limit)
    gw.fail(429, retry_after=0.4)
    with pytest.raises(GatewayRateLimitError) as caught:
        first.call("chat_completion", MODEL, HELLO)
    assert caught.value.status_code == 429
    second.call("chat_completion", MODEL, HELLO)
    limited, then = gw.arrivals
    assert limited.status == 429 and then.status == 200
    assert then.at - limited.at >= 0.4 - TRANSIT


def test_a_429_without_a_hint_pauses_nobody(make: Make, gw: FakeGateway) -> None:
    twin = make(rate_limit=RateLimit(requests=100, max_wait=0), max_retries=0)
    gw.fail(429, headers={"Retry-After": "soon"})
    with pytest.raises(GatewayRateLimitError):
        twin.call("chat_completion", MODEL, HELLO)
    twin.call("chat_completion", MODEL, HELLO)


# -- cancellation ---------------------------------------------------------------------------


def test_a_cancelled_task_stops_waiting_and_holds_no_ticket(gw: FakeGateway) -> None:
    limit = RateLimit(requests=1, per=0.5)

    async def main() -> None:
        async with AsyncGatewayClient(gw.url, gw.token, rate_limit=limit) as client:
            await client.chat_completion(MODEL, HELLO)
            waiting = asyncio.ensure_future(client.chat_completion(MODEL, HELLO))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert len(limit.local._log) == 1
            await asyncio.sleep(0.45)
            started = time.monotonic()
            await client.chat_completion(MODEL, HELLO)  # the cancelled one took no place
            assert time.monotonic() - started < 0.2

    asyncio.run(main())
    assert len(gw.requests) == 2


def test_a_refusal_after_some_waiting_gives_the_wait_still_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gatewayclient import _traffic

    for kind in ("sync", "async"):
        limit = RateLimit(requests=1, max_wait=1.0)
        answers = iter([0.05, 5.0])  # room in 0.05 s; then, someone was faster: 5 s more
        monkeypatch.setattr(limit.local, "take", lambda cost, now=None, got=answers: next(got))
        with pytest.raises(GatewayRateLimitError) as caught:
            if kind == "sync":
                _traffic.take(limit, 0)
            else:
                asyncio.run(_traffic.atake(limit, 0))
        assert caught.value.retry_after == 5.0
