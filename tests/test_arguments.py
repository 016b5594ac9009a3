"""Call arguments over loopback, on both clients: what cannot be sent is refused before anything
leaves (lone surrogates), misspelt parameters, and the per-call options."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from twin import Twin

from gatewayclient import GatewayValidationError
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
