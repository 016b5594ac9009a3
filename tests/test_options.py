"""``_request_id`` on answers and streams, and ``with_options(...)``: a client of the same kind
with some settings changed that shares the original's connections and usage totals."""

from __future__ import annotations

import time
from typing import Any, List

import pytest
from aiohttp import web
from loopback import LoopbackServer
from twin import Twin

from gatewayclient import (
    AsyncGatewayClient,
    GatewayConfigError,
    GatewayRateLimitError,
    GatewayServerError,
    GatewayTimeoutError,
    RateLimit,
    RetryPolicy,
    SyncGatewayClient,
)
from gatewayclient.testing import FakeGateway, expected_reply

MODEL = "openai/gpt-4o"
SECOND = "anthropic/claude-sonnet-4-20250514"
HELLO = [{"role": "user", "content": "Hello!"}]


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gw() -> Any:
    with FakeGateway() as gateway:
        yield gateway


def clone(twin: Twin, **options: Any) -> Twin:
    """A Twin over ``twin.client.with_options(...)``, run on the same loop."""
    other = Twin.__new__(Twin)
    other.kind, other.loop = twin.kind, twin.loop
    other.client = twin.client.with_options(**options)
    return other


# -- _request_id ------------------------------------------------------------------------------


def test_every_answer_carries_its_request_id_outside_its_json(kind: str, gw: FakeGateway) -> None:
    twin = Twin(kind, gw.url, gw.token)
    try:
        answers = [
            twin.call("chat_completion", MODEL, HELLO),
            twin.call("embeddings", "openai/text-embedding-3-small", "text"),
            twin.call("list_models"),
            twin.call("list_provider_models", "openai"),
        ]
    finally:
        twin.close()
    sent = [request.request_id for request in gw.requests]
    assert [answer._request_id for answer in answers] == sent
    assert all(sent)
    for answer in answers:
        assert "_request_id" not in answer.to_dict()
        assert "_request_id" not in dict(answer)
        assert answer.get("_request_id") is None


def test_a_stream_and_its_completion_carry_the_request_id(kind: str, gw: FakeGateway) -> None:
    twin = Twin(kind, gw.url, gw.token)
    try:
        stream = twin.stream(MODEL, HELLO)
        assert stream._request_id is None  # nothing sent yet
        twin.collect(stream)
        assert stream._request_id == gw.requests[-1].request_id
        assert stream.completion()._request_id == stream._request_id
    finally:
        twin.close()


def test_an_answer_without_a_request_id_header_has_none(kind: str) -> None:
    async def plain(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    with LoopbackServer([("GET", "/v1/models", plain)]) as server:
        twin = Twin(kind, server.url, "t")
        try:
            assert twin.call("list_models")._request_id is None
        finally:
            twin.close()


def test_the_request_id_is_read_from_the_headers_gateways_use(kind: str) -> None:
    async def litellm(request: web.Request) -> web.Response:
        headers = {"x-litellm-call-id": "litellm-42"}
        return web.json_response({"object": "list", "data": []}, headers=headers)

    with LoopbackServer([("GET", "/v1/models", litellm)]) as server:
        twin = Twin(kind, server.url, "sk-token")
        try:
            assert twin.call("list_models")._request_id == "litellm-42"
        finally:
            twin.close()


# -- with_options -------------------------------------------------------------------------------


@pytest.mark.parametrize("client_class", [SyncGatewayClient, AsyncGatewayClient])
def test_with_options_gives_a_client_of_the_same_kind(client_class: type) -> None:
    client = client_class("http://127.0.0.1:9", "sk-secret-token")
    other = client.with_options(timeout=5, max_retries=0)
    assert type(other) is client_class
    assert other._core.config.timeout == 5.0
    assert other._core.config.retry.max_retries == 0
    assert client._core.config.timeout == 60.0  # the original keeps its own
    assert client._core.config.retry.max_retries == 2
    assert "sk-secret-token" not in repr(other)


def test_with_options_shares_connections_and_usage(kind: str) -> None:
    peers: List[Any] = []

    async def chat(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        body = {"object": "chat.completion", "choices": [], "usage": {"total_tokens": 3}}
        return web.json_response(body)

    with LoopbackServer([("POST", "/v1/chat/completions", chat)]) as server:
        twin = Twin(kind, server.url, "t")
        other = clone(twin, timeout=9)
        try:
            twin.call("chat_completion", MODEL, HELLO)
            other.call("chat_completion", MODEL, HELLO)
            twin.call("chat_completion", MODEL, HELLO)
            assert other.client._transport is twin.client._transport  # one pool
            assert len(set(peers)) == 1  # one kept-alive connection served all three
            assert twin.client.usage is other.client.usage
            assert twin.client.usage.total.requests == 3
            assert twin.client.usage.total.total_tokens == 9
        finally:
            twin.close()


def test_a_timeout_given_to_with_options_applies_to_that_client_only(
    kind: str, gw: FakeGateway
) -> None:
    twin = Twin(kind, gw.url, gw.token, timeout=3, max_retries=0)
    quick = clone(twin, timeout=0.2)
    try:
        gw.stall(0.6)
        started = time.monotonic()
        with pytest.raises(GatewayTimeoutError):
            quick.call("list_models")
        assert time.monotonic() - started < 0.55
        gw.stall(0.6)
        assert twin.call("list_models").data  # the original still waits its 3 s
    finally:
        twin.close()


def test_max_retries_given_to_with_options(kind: str, gw: FakeGateway) -> None:
    twin = Twin(kind, gw.url, gw.token, retry_policy=RetryPolicy(max_retries=2, backoff_base=0))
    once = clone(twin, max_retries=0)
    try:
        gw.fail(503, times=1)
        with pytest.raises(GatewayServerError):
            once.call("list_models")
        gw.fail(503, times=1)
        assert twin.call("list_models").data  # retried
        assert len(gw.requests) == 3
    finally:
        twin.close()


def test_default_headers_given_to_with_options_are_merged(kind: str, gw: FakeGateway) -> None:
    twin = Twin(kind, gw.url, gw.token, default_headers={"X-Team": "a", "X-Trace": "1"})
    tagged = clone(twin, default_headers={"x-team": "b", "X-Job": "nightly"})
    try:
        tagged.call("list_models")
        twin.call("list_models")
    finally:
        twin.close()
    first, second = (request.headers for request in gw.requests)
    assert (first["x-team"], first["x-trace"], first["x-job"]) == ("b", "1", "nightly")
    assert (second["x-team"], second.get("x-job")) == ("a", None)


def test_rate_limit_and_fallbacks_given_to_with_options(kind: str, gw: FakeGateway) -> None:
    budget = RateLimit(requests=2, per=60, max_wait=0)
    twin = Twin(kind, gw.url, gw.token, max_retries=0)
    limited = clone(twin, rate_limit=budget, fallbacks={MODEL: [SECOND]})
    try:
        gw.fail(503, times=1)
        answer = limited.call("chat_completion", MODEL, HELLO)  # falls back: two requests
        assert answer.choices[0].message.content == expected_reply(SECOND, HELLO)
        assert len(budget.local._log) == 2
        with pytest.raises(GatewayRateLimitError):  # the budget is spent: refused at once
            limited.call("list_models")
        for _ in range(3):
            twin.call("list_models")  # the original has no budget
        gw.fail(503, times=1)
        with pytest.raises(GatewayServerError):
            twin.call("chat_completion", MODEL, HELLO)  # nor fallbacks
    finally:
        twin.close()


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": "5"},
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"default_headers": {"X-A": "line\nbreak"}},
        {"rate_limit": {"requests": 5}},
        {"fallbacks": ["anthropic/x"]},
        {"fallbacks": {MODEL: "anthropic/x"}},
    ],
)
def test_with_options_checks_what_it_is_given(options: Any) -> None:
    client = SyncGatewayClient("http://127.0.0.1:9", "t")
    with pytest.raises(GatewayConfigError):
        client.with_options(**options)


def test_with_options_takes_only_its_settings() -> None:
    client = SyncGatewayClient("http://127.0.0.1:9", "t")
    with pytest.raises(TypeError):
        client.with_options(base_url="http://elsewhere")  # type: ignore[call-arg]
