"""Call arguments over loopback, on both clients: what cannot be sent is refused before anything
leaves (lone surrogates), misspelt parameters, and the per-call options."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from twin import Twin

from gatewayclient import (
    GatewayRateLimitError,
    GatewayServerError,
    GatewayValidationError,
    RetryPolicy,
)
from gatewayclient.testing import FakeGateway

MODEL = "openai/gpt-4o"
HELLO = [{"role": "user", "content": "Hello!"}]
LONE = "caf\udce9"  # os.fsdecode / surrogateescape of the Latin-1 bytes of "café"


@pytest.mark.parametrize(
    ("method", "args", "kwargs"),
    [
        pytest.param(
            "chat_completion", (MODEL, [{"role": "user", "content": LONE}]), {}, id="chat"
        ),
        pytest.param("chat_completion", (MODEL, HELLO), {"user": LONE}, id="chat-field"),
        pytest.param("embeddings", ("openai/text-embedding-3-small", [LONE]), {}, id="embed"),
        pytest.param("list_provider_models", (LONE,), {}, id="provider"),
    ],
)
def test_a_lone_surrogate_is_a_validation_error_and_nothing_is_sent(
    twin: Twin, gw: FakeGateway, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(GatewayValidationError) as info:
        twin.call(method, *args, **kwargs)
    assert gw.token not in str(info.value)
    assert gw.requests == []


def test_a_stream_with_a_lone_surrogate_is_refused_at_the_call(twin: Twin, gw: FakeGateway) -> None:
    with pytest.raises(GatewayValidationError) as info:
        twin.stream(MODEL, [*HELLO, {"role": "user", "content": LONE}])
    assert "messages[1]['content']" in str(info.value)
    assert gw.requests == []


def test_the_client_works_after_a_refused_call(make: Callable[..., Twin], gw: FakeGateway) -> None:
    twin = make()
    with pytest.raises(GatewayValidationError):
        twin.call("chat_completion", MODEL, [{"role": "user", "content": LONE}])
    assert twin.call("chat_completion", MODEL, HELLO).choices
    assert len(gw.requests) == 1


# -- misspelt parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "name", "likely"),
    [
        ("chat_completion", (MODEL, HELLO), "temprature", "temperature"),
        ("chat_completion", (MODEL, HELLO), "max_token", "max_tokens"),
        ("embeddings", ("openai/text-embedding-3-small", "hi"), "dimension", "dimensions"),
    ],
)
def test_a_misspelt_parameter_is_refused_and_nothing_is_sent(
    twin: Twin, gw: FakeGateway, method: str, args: tuple[Any, ...], name: str, likely: str
) -> None:
    with pytest.raises(GatewayValidationError, match=f"did you mean '{likely}'"):
        twin.call(method, *args, **{name: 1})
    assert gw.requests == []


def test_a_misspelt_stream_parameter_is_refused_at_the_call(twin: Twin, gw: FakeGateway) -> None:
    with pytest.raises(GatewayValidationError, match="did you mean 'temperature'"):
        twin.stream(MODEL, HELLO, temprature=0.2)
    assert gw.requests == []


def test_vendor_parameters_and_extra_body_reach_the_gateway(twin: Twin, gw: FakeGateway) -> None:
    vendor = {"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "safe_prompt": True}
    extra = {"temprature": 0.2, "temperature": 0.3}
    twin.call("chat_completion", MODEL, HELLO, temperature=0.9, **vendor, extra_body=extra)
    sent = gw.requests[-1].json
    assert {key: sent[key] for key in vendor} == vendor
    assert (sent["temprature"], sent["temperature"]) == (0.2, 0.3)  # extra_body wins
    assert "extra_body" not in sent


# -- max_retries per call -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["chat_completion", "stream"])
def test_max_retries_per_call_overrides_the_client_for_that_call(
    make: Callable[..., Twin], gw: FakeGateway, method: str
) -> None:
    twin = make(retry_policy=RetryPolicy(max_retries=2, backoff_base=0))

    def run(**options: Any) -> Any:
        if method == "stream":
            return twin.collect(twin.stream(MODEL, HELLO, **options))
        return twin.call("chat_completion", MODEL, HELLO, **options)

    gw.fail(503, times=10)
    with pytest.raises(GatewayServerError):
        run(max_retries=0)
    assert len(gw.requests) == 1
    assert all("max_retries" not in request.json for request in gw.requests)
    gw.clear_faults()
    gw.clear_requests()

    gw.fail(503, times=4)
    assert run(max_retries=4)
    assert len(gw.requests) == 5
    gw.clear_requests()

    gw.fail(503, times=10)  # the client's own policy again: 1 + 2 requests
    with pytest.raises(GatewayServerError):
        run()
    assert len(gw.requests) == 3


def test_max_retries_per_call_keeps_the_clients_other_settings(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    twin = make(retry_policy=RetryPolicy(max_retries=0, max_retry_after=1.0, backoff_base=0))
    gw.fail(429, times=1, retry_after=30)  # longer than the client's max_retry_after
    with pytest.raises(GatewayRateLimitError):
        twin.call("chat_completion", MODEL, HELLO, max_retries=3)
    assert len(gw.requests) == 1


@pytest.mark.parametrize("value", [-1, 1.5, True, "3"])
def test_a_bad_max_retries_per_call_is_a_validation_error(
    twin: Twin, gw: FakeGateway, value: Any
) -> None:
    with pytest.raises(GatewayValidationError):
        twin.call("chat_completion", MODEL, HELLO, max_retries=value)
    assert gw.requests == []
