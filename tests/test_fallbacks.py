"""Model fallbacks on both clients (the contract's "Fallbacks"): which failures move on to the
next model (after that model's own retries, or at once on 404 and 403), which never do, streams
before their first chunk only, the WARNING naming both models, the last error raised with the
one before as its context, and usage counted under the model that answered."""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List

import pytest
from twin import Twin

from gatewayclient import (
    GatewayAuthError,
    GatewayBadRequestError,
    GatewayClientError,
    GatewayConnectionError,
    GatewayModelNotFoundError,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayResponseError,
    GatewayServerError,
    GatewayStreamError,
    GatewayTimeoutError,
    GatewayValidationError,
    RateLimit,
    RetryPolicy,
)
from gatewayclient.testing import FakeGateway, expected_reply

PRIMARY = "openai/gpt-4o"
SECOND = "anthropic/claude-sonnet-4-20250514"
THIRD = "mistral/mistral-large-latest"
EMBED = "openai/text-embedding-3-small"
EMBED_SECOND = "google/text-embedding-004"
HELLO = [{"role": "user", "content": "Hello!"}]
CHAT = "/v1/chat/completions"


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gw() -> Any:
    with FakeGateway() as gateway:
        yield gateway


def make(kind: str, gw: FakeGateway, retries: int = 1, **options: Any) -> Twin:
    policy = RetryPolicy(max_retries=retries, backoff_base=0)
    return Twin(kind, gw.url, gw.token, timeout=2, retry_policy=policy, **options)


def models_sent(gw: FakeGateway) -> List[str]:
    return [request.json["model"] for request in gw.requests]


def answer_text(twin: Twin, api: str, **params: Any) -> str:
    if api == "chat":
        answer = twin.call("chat_completion", PRIMARY, HELLO, **params)
        return str(answer.choices[0].message.content)
    chunks = twin.collect(twin.stream(PRIMARY, HELLO, **params))
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)


Script = Callable[[FakeGateway, int], None]


def statuses(code: int) -> Script:
    return lambda gw, times: gw.fail(code, times=times, path=CHAT)


RETRYABLE: Dict[str, Script] = {
    "429": lambda gw, times: gw.fail(429, times=times, path=CHAT, retry_after=0.01),
    "500": statuses(500),
    "502": statuses(502),
    "503": statuses(503),
    "504": statuses(504),
    "529": statuses(529),
    "408": statuses(408),
    "reset": lambda gw, times: gw.reset_connection(times=times, path=CHAT),
    "timeout": lambda gw, times: gw.stall(3, times=times, path=CHAT),
}


@pytest.mark.parametrize("api", ["chat", "stream"])
@pytest.mark.parametrize("fault", sorted(RETRYABLE))
def test_a_retryable_failure_falls_back_after_the_models_own_retries(
    kind: str, gw: FakeGateway, api: str, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    timeout_case = fault == "timeout"
    twin = make(kind, gw, retries=1)
    if timeout_case:
        twin.close()
        policy = RetryPolicy(max_retries=1, backoff_base=0)
        twin = Twin(kind, gw.url, gw.token, timeout=0.3, retry_policy=policy)
    RETRYABLE[fault](gw, 2)  # the first model and its one retry
    try:
        with caplog.at_level(logging.WARNING, logger="gatewayclient"):
            text = answer_text(twin, api, fallback_models=[SECOND])
        assert text == expected_reply(SECOND, HELLO)
        assert models_sent(gw) == [PRIMARY, PRIMARY, SECOND]
        assert twin.client.usage.by_model[SECOND].requests == 1  # the model that answered
        assert PRIMARY not in twin.client.usage.by_model
    finally:
        twin.close()
    warnings = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
    assert len(warnings) == 1
    assert PRIMARY in warnings[0] and SECOND in warnings[0]


@pytest.mark.parametrize("api", ["chat", "stream"])
def test_an_unknown_model_falls_back_at_once(kind: str, gw: FakeGateway, api: str) -> None:
    twin = make(kind, gw, retries=2)
    try:
        if api == "chat":
            answer = twin.call("chat_completion", "openai/no-such-model", HELLO,
                               fallback_models=[SECOND])  # fmt: skip
            assert answer.choices[0].message.content == expected_reply(SECOND, HELLO)
        else:
            stream = twin.stream("openai/no-such-model", HELLO, fallback_models=[SECOND])
            assert twin.collect(stream)
        assert models_sent(gw) == ["openai/no-such-model", SECOND]  # 404 is not retried
    finally:
        twin.close()


@pytest.mark.parametrize("api", ["chat", "stream"])
def test_a_model_this_token_may_not_use_falls_back_at_once(
    kind: str, gw: FakeGateway, api: str
) -> None:
    gw.add_token("sk-limited", models=[SECOND])
    policy = RetryPolicy(max_retries=2, backoff_base=0)
    twin = Twin(kind, gw.url, "sk-limited", timeout=2, retry_policy=policy)
    try:
        assert answer_text(twin, api, fallback_models=[SECOND]) == expected_reply(SECOND, HELLO)
        assert models_sent(gw) == [PRIMARY, SECOND]
    finally:
        twin.close()


NEVER: Dict[str, Script] = {
    "400": statuses(400),
    "401": statuses(401),
    "409": statuses(409),
    "413": statuses(413),
    "422": statuses(422),
    "malformed": lambda gw, times: gw.malformed_body(times=times, path=CHAT),
}
NEVER_RAISES = {
    "400": GatewayBadRequestError,
    "401": GatewayAuthError,
    "409": GatewayBadRequestError,
    "413": GatewayBadRequestError,
    "422": GatewayBadRequestError,
    "malformed": GatewayResponseError,
}


@pytest.mark.parametrize("fault", sorted(NEVER))
def test_these_failures_never_fall_back(kind: str, gw: FakeGateway, fault: str) -> None:
    twin = make(kind, gw, retries=2)
    NEVER[fault](gw, 1)
    try:
        with pytest.raises(NEVER_RAISES[fault]):
            twin.call("chat_completion", PRIMARY, HELLO, fallback_models=[SECOND])
        assert models_sent(gw) == [PRIMARY]
    finally:
        twin.close()


def test_a_stream_never_falls_back_after_its_first_chunk(kind: str, gw: FakeGateway) -> None:
    gw.stream_error({"message": "overloaded", "code": 503}, after=1)
    twin = make(kind, gw, retries=2)
    try:
        stream = twin.stream(PRIMARY, HELLO, fallback_models=[SECOND])
        received = [twin.next(stream)]
        with pytest.raises(GatewayServerError):
            twin.collect(stream, received)
        assert len(received) == 1
        assert models_sent(gw) == [PRIMARY]
    finally:
        twin.close()


def test_a_stream_cut_after_its_first_chunk_never_falls_back(kind: str, gw: FakeGateway) -> None:
    gw.cut_stream(after=1)
    twin = make(kind, gw, retries=2)
    try:
        stream = twin.stream(PRIMARY, HELLO, fallback_models=[SECOND])
        with pytest.raises(GatewayStreamError):
            twin.collect(stream)
        assert models_sent(gw) == [PRIMARY]
    finally:
        twin.close()


def test_an_error_event_before_the_first_chunk_falls_back(kind: str, gw: FakeGateway) -> None:
    gw.stream_error({"message": "upstream down", "code": 502}, after=0, times=1)
    twin = make(kind, gw, retries=0)
    try:
        text = answer_text(twin, "stream", fallback_models=[SECOND])
        assert text == expected_reply(SECOND, HELLO)
        assert models_sent(gw) == [PRIMARY, SECOND]
    finally:
        twin.close()


def test_a_bad_argument_is_refused_before_any_model_is_tried(kind: str, gw: FakeGateway) -> None:
    twin = make(kind, gw)
    try:
        with pytest.raises(GatewayValidationError):
            twin.call("chat_completion", PRIMARY, HELLO, temperature=5, fallback_models=[SECOND])
        with pytest.raises(GatewayValidationError):
            twin.call("chat_completion", PRIMARY, HELLO, fallback_models="anthropic/x")
        with pytest.raises(GatewayValidationError):
            twin.call("chat_completion", PRIMARY, HELLO, fallback_models=[""])
        assert gw.requests == []
    finally:
        twin.close()


@pytest.mark.parametrize("api", ["chat", "stream"])
def test_when_every_model_fails_the_last_error_has_the_one_before_as_context(
    kind: str, gw: FakeGateway, api: str
) -> None:
    gw.fail(503, times=1, path=CHAT)
    gw.fail(502, times=1, path=CHAT)
    gw.fail(500, times=1, path=CHAT)
    twin = make(kind, gw, retries=0)
    try:
        with pytest.raises(GatewayServerError) as caught:
            answer_text(twin, api, fallback_models=[SECOND, THIRD])
        last = caught.value
        assert last.status_code == 500
        before = last.__context__
        assert isinstance(before, GatewayProviderError) and before.status_code == 502
        assert isinstance(before.__context__, GatewayServerError)
        assert before.__context__.status_code == 503
        assert models_sent(gw) == [PRIMARY, SECOND, THIRD]
        assert twin.client.usage.total.requests == 0
    finally:
        twin.close()


def test_the_clients_fallbacks_apply_when_a_call_names_none(kind: str, gw: FakeGateway) -> None:
    twin = make(kind, gw, retries=0, fallbacks={PRIMARY: [SECOND, THIRD]})
    gw.fail(503, times=2, path=CHAT)
    try:
        answer = twin.call("chat_completion", PRIMARY, HELLO)
        assert answer.choices[0].message.content == expected_reply(THIRD, HELLO)
        assert models_sent(gw) == [PRIMARY, SECOND, THIRD]
    finally:
        twin.close()


def test_a_calls_fallback_models_replace_the_clients(kind: str, gw: FakeGateway) -> None:
    twin = make(kind, gw, retries=0, fallbacks={PRIMARY: [SECOND]})
    try:
        gw.fail(503, times=1, path=CHAT)
        answer = twin.call("chat_completion", PRIMARY, HELLO, fallback_models=[THIRD])
        assert answer.choices[0].message.content == expected_reply(THIRD, HELLO)
        gw.fail(503, times=1, path=CHAT)
        with pytest.raises(GatewayServerError):  # an empty list: no fallback at all
            twin.call("chat_completion", PRIMARY, HELLO, fallback_models=[])
        assert models_sent(gw) == [PRIMARY, THIRD, PRIMARY]
    finally:
        twin.close()


def test_a_model_without_fallbacks_is_not_affected_by_anothers(kind: str, gw: FakeGateway) -> None:
    twin = make(kind, gw, retries=0, fallbacks={SECOND: [THIRD]})
    gw.fail(503, times=1, path=CHAT)
    try:
        with pytest.raises(GatewayServerError):
            twin.call("chat_completion", PRIMARY, HELLO)
        assert models_sent(gw) == [PRIMARY]
    finally:
        twin.close()


def test_embeddings_fall_back(kind: str, gw: FakeGateway) -> None:
    twin = make(kind, gw, retries=0)
    gw.fail(502, times=1, path="/v1/embeddings")
    try:
        answer = twin.call("embeddings", EMBED, "some text", fallback_models=[EMBED_SECOND])
        assert answer.model == EMBED_SECOND
        assert [request.json["model"] for request in gw.requests] == [EMBED, EMBED_SECOND]
        assert twin.client.usage.by_model[EMBED_SECOND].requests == 1
    finally:
        twin.close()


def test_a_fallback_request_is_a_new_request(kind: str, gw: FakeGateway) -> None:
    """Another model is another request: its own Idempotency-Key; a retry keeps its own."""
    twin = make(kind, gw, retries=1)
    gw.fail(503, times=2, path=CHAT)
    try:
        twin.call("chat_completion", PRIMARY, HELLO, fallback_models=[SECOND])
        keys = [request.headers["idempotency-key"] for request in gw.requests]
        assert keys[0] == keys[1] and keys[2] != keys[0]
    finally:
        twin.close()


def test_the_budgets_refusal_is_not_a_reason_to_fall_back(kind: str, gw: FakeGateway) -> None:
    budget = RateLimit(requests=1, per=60, max_wait=0.05)
    twin = make(kind, gw, retries=2, rate_limit=budget)
    try:
        twin.call("chat_completion", PRIMARY, HELLO)
        with pytest.raises(GatewayRateLimitError) as caught:
            twin.call("chat_completion", PRIMARY, HELLO, fallback_models=[SECOND])
        assert caught.value.status_code is None
        assert models_sent(gw) == [PRIMARY]
    finally:
        twin.close()


def test_every_fallback_attempt_counts_in_the_budget(kind: str, gw: FakeGateway) -> None:
    budget = RateLimit(requests=10, per=60)
    twin = make(kind, gw, retries=1, rate_limit=budget)
    gw.fail(503, times=2, path=CHAT)
    try:
        twin.call("chat_completion", PRIMARY, HELLO, fallback_models=[SECOND])
        assert len(budget.local._log) == 3
    finally:
        twin.close()


@pytest.mark.parametrize("error", [GatewayConnectionError, GatewayTimeoutError])
def test_connection_failures_are_the_kind_that_falls_back(error: type) -> None:
    from gatewayclient._traffic import falls_back

    assert falls_back(error("down"))
    assert not falls_back(GatewayClientError("teapot", status_code=418))
    assert falls_back(GatewayModelNotFoundError("gone", status_code=404))
    assert falls_back(GatewayAuthError("forbidden", status_code=403))
    assert not falls_back(GatewayAuthError("bad token", status_code=401))
    assert falls_back(GatewayAuthError("no", error_type="permission_error"))
    assert not falls_back(GatewayStreamError("cut"))
    assert not falls_back(ValueError("a bug"))
