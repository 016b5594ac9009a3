"""Chat, embeddings, discovery and usage, on both clients against a FakeGateway on loopback."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from typing import Any

import pytest
from twin import Twin

from gatewayclient import (
    AsyncGatewayClient,
    ChatCompletion,
    EmbeddingResponse,
    GatewayValidationError,
    ModelList,
    SyncGatewayClient,
)
from gatewayclient.testing import MODELS, FakeGateway, expected_reply, expected_usage

HELLO = [{"role": "user", "content": "Hello!"}]


def test_chat_completion_reads_as_object_and_as_dict(twin: Twin) -> None:
    resp = twin.call("chat_completion", "openai/gpt-4o", HELLO, temperature=0.7, max_tokens=256)
    assert isinstance(resp, ChatCompletion)
    reply = expected_reply("openai/gpt-4o", HELLO, max_tokens=256)
    assert resp.choices[0].message.content == reply
    assert resp["choices"][0]["message"]["content"] == reply
    usage = expected_usage("openai/gpt-4o", HELLO, max_tokens=256)
    assert resp["usage"]["total_tokens"] == resp.usage.total_tokens == usage["total_tokens"]
    assert json.loads(json.dumps(resp.to_dict())) == resp.to_dict()
    assert dict(resp)["model"] == "openai/gpt-4o"


def test_to_dict_gives_back_the_json_as_received(twin: Twin, gw: FakeGateway) -> None:
    body = {"id": "x", "object": "chat.completion", "choices": [], "extra_field": {"kept": True}}
    gw.fail(200, body=body)
    assert twin.call("chat_completion", "openai/gpt-4o", HELLO).to_dict() == body


def test_parameters_pass_through_untouched_and_none_is_not_sent(
    twin: Twin, gw: FakeGateway
) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    twin.call(
        "chat_completion", "openai/gpt-4o", HELLO, temperature=None, top_p=0.5, tools=tools,
        tool_choice="auto", response_format={"type": "text"}, stop=["\n"], seed=7, user="u1",
        presence_penalty=0.1, frequency_penalty=None, vendor_knob={"a": [1, 2]},
    )  # fmt: skip
    body = gw.requests[-1].json
    assert body == {
        "model": "openai/gpt-4o", "messages": HELLO, "top_p": 0.5, "tools": tools,
        "tool_choice": "auto", "response_format": {"type": "text"}, "stop": ["\n"], "seed": 7,
        "user": "u1", "presence_penalty": 0.1, "vendor_knob": {"a": [1, 2]},
    }  # fmt: skip


def test_tool_call_answer_is_typed(twin: Twin) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    resp = twin.call("chat_completion", "openai/gpt-4o", HELLO, tools=tools)
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup" and json.loads(call.function.arguments) is not None
    assert resp.choices[0].finish_reason == "tool_calls"


def test_extra_headers_are_sent_and_not_put_in_the_body(twin: Twin, gw: FakeGateway) -> None:
    twin.call("chat_completion", "openai/gpt-4o", HELLO, extra_headers={"X-Trace": "t-1"})
    seen = gw.requests[-1]
    assert seen.headers["x-trace"] == "t-1"
    assert "extra_headers" not in seen.json and "timeout" not in seen.json


def test_post_carries_bearer_token_and_one_idempotency_key(twin: Twin, gw: FakeGateway) -> None:
    twin.call("chat_completion", "openai/gpt-4o", HELLO)
    twin.call("chat_completion", "openai/gpt-4o", HELLO)
    first, second = gw.requests[-2:]
    assert first.headers["authorization"] == "Bearer ***"  # recorded redacted by the fake
    assert len(first.headers["idempotency-key"]) == 32
    assert first.headers["idempotency-key"] != second.headers["idempotency-key"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "", "messages": HELLO},
        {"model": "openai/gpt-4o", "messages": []},
        {"model": "openai/gpt-4o", "messages": [{"content": "no role"}]},
        {"model": "openai/gpt-4o", "messages": [{"role": "robot", "content": "x"}]},
        {"model": "openai/gpt-4o", "messages": "Hello"},
        {"model": "openai/gpt-4o", "messages": HELLO, "temperature": 2.5},
        {"model": "openai/gpt-4o", "messages": HELLO, "top_p": 0},
        {"model": "openai/gpt-4o", "messages": HELLO, "max_tokens": 0},
        {"model": "openai/gpt-4o", "messages": HELLO, "timeout": -1},
        {"model": "openai/gpt-4o", "messages": HELLO, "not_json": object()},
    ],
)
def test_bad_arguments_raise_before_anything_is_sent(
    twin: Twin, gw: FakeGateway, kwargs: Any
) -> None:
    with pytest.raises(GatewayValidationError):
        twin.call("chat_completion", **kwargs)
    with pytest.raises(ValueError):
        twin.stream(**kwargs)  # checked at the call, before iteration
    with pytest.raises(GatewayValidationError):
        twin.call("embeddings", "openai/text-embedding-3-small", "")
    assert gw.requests == []


def test_embeddings_for_a_string_and_a_list(twin: Twin) -> None:
    one = twin.call("embeddings", "openai/text-embedding-3-small", "hello")
    assert isinstance(one, EmbeddingResponse)
    assert len(one.data) == 1 and len(one.data[0].embedding) == 1536
    assert math.isclose(math.fsum(x * x for x in one["data"][0]["embedding"]), 1.0, rel_tol=1e-6)
    many = twin.call("embeddings", "mistral/mistral-embed", ["a", "b", "c"])
    assert [item.index for item in many.data] == [0, 1, 2]
    assert many.usage.prompt_tokens == 3


def test_list_models_has_every_provider(twin: Twin) -> None:
    models = twin.call("list_models")
    assert isinstance(models, ModelList) and models["object"] == "list"
    assert [m.id for m in models.data] == [m.id for m in MODELS]
    assert {"id", "object", "created", "owned_by"} <= set(models.data[0])


def test_provider_discovery(twin: Twin) -> None:
    providers = twin.call("list_known_providers")
    assert providers == ["openai", "anthropic", "google", "azure", "mistral"]
    openai_models = twin.call("list_provider_models", "openai")
    assert openai_models["provider"] == "openai"
    assert openai_models["total"] == len(openai_models["models"]) > 0
    assert all(m["id"].startswith("openai/") for m in openai_models["models"])


@pytest.mark.parametrize("status", [404, 405])
def test_provider_routes_fall_back_to_the_model_list(
    twin: Twin, gw: FakeGateway, status: int
) -> None:
    gw.fail(status, path="/v1/providers")
    assert twin.call("list_known_providers") == [
        "openai",
        "anthropic",
        "google",
        "azure",
        "mistral",
    ]
    gw.fail(status, path="/v1/providers/mistral/models")
    mistral = twin.call("list_provider_models", "mistral")
    assert mistral.provider == "mistral"
    assert [m.id for m in mistral.models] == [m.id for m in MODELS if m.id.startswith("mistral/")]
    gw.fail(status, path="/v1/providers/nobody/models")
    nobody = twin.call("list_provider_models", "nobody")
    assert (nobody.total, nobody.models) == (0, [])


def test_usage_totals_by_requested_model(twin: Twin) -> None:
    twin.call("chat_completion", "openai/gpt-4o", HELLO)
    twin.call("chat_completion", "anthropic/claude-sonnet-4-20250514", HELLO)
    twin.collect(twin.stream("openai/gpt-4o", HELLO))
    twin.call("embeddings", "openai/text-embedding-3-small", ["a b", "c"])
    usage = twin.client.usage
    chat = expected_usage("openai/gpt-4o", HELLO)
    assert usage.by_model["openai/gpt-4o"].requests == 2
    assert usage.by_model["openai/gpt-4o"].total_tokens == 2 * chat["total_tokens"]
    assert usage.by_model["openai/text-embedding-3-small"].prompt_tokens == 3
    assert usage.total.requests == 4
    assert usage.total.total_tokens == sum(t.total_tokens for t in usage.by_model.values())
    usage.reset()
    assert usage.total.requests == 0 and usage.by_model == {}


def test_sync_client_usage_is_exact_when_shared_by_threads(gw: FakeGateway) -> None:
    with SyncGatewayClient(gw.url, gw.token) as client:

        def work() -> None:
            for _ in range(10):
                client.chat_completion("openai/gpt-4o", HELLO)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        per_call = expected_usage("openai/gpt-4o", HELLO)["total_tokens"]
        assert client.usage.total.requests == 80
        assert client.usage.total.total_tokens == 80 * per_call


def test_async_client_usage_is_exact_under_concurrent_tasks(gw: FakeGateway) -> None:
    async def main() -> AsyncGatewayClient:
        async with AsyncGatewayClient(gw.url, gw.token) as client:
            calls = [client.chat_completion("openai/gpt-4o", HELLO) for _ in range(50)]
            streams = [
                drain(client.stream_chat_completion("openai/gpt-4o", HELLO)) for _ in range(30)
            ]
            await asyncio.gather(*calls, *streams)
            return client

    async def drain(stream: Any) -> None:
        async for _ in stream:
            pass

    client = asyncio.run(main())
    per_call = expected_usage("openai/gpt-4o", HELLO)["total_tokens"]
    assert client.usage.total.requests == 80
    assert client.usage.total.total_tokens == 80 * per_call


def test_a_sync_client_made_before_fork_works_in_the_child_and_the_parent(gw: FakeGateway) -> None:
    import os

    with SyncGatewayClient(gw.url, gw.token) as client:
        client.chat_completion("openai/gpt-4o", HELLO)  # a pooled connection exists
        pid = os.fork()
        if pid == 0:  # the child: its own connections, then exit without running pytest's code
            try:
                ok = client.chat_completion("openai/gpt-4o", HELLO).choices[0].message.content
                os._exit(0 if ok == expected_reply("openai/gpt-4o", HELLO) else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert client.chat_completion("openai/gpt-4o", HELLO).choices  # the parent is undisturbed
        assert client.usage.total.requests == 2


def test_a_forked_child_closes_its_copies_of_the_parents_sockets_and_not_the_parents() -> None:
    """The child closes what it inherited (closing, never shutting down: that would end the
    parent's connection too) with no warning, and the parent's kept-alive connection goes on
    serving it."""
    import gc
    import os
    import warnings
    from typing import List

    from aiohttp import web
    from loopback import LoopbackServer

    peers: List[Any] = []

    async def models(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.json_response({"object": "list", "data": []})

    routes = [("GET", "/v1/models", models)]
    with LoopbackServer(routes) as server, SyncGatewayClient(server.url, "sk-fork") as client:
        client.list_models()  # a pooled connection exists
        pid = os.fork()
        if pid == 0:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ResourceWarning)
                    client.list_models()  # a connection of its own
                    client.close()
                    del client
                    gc.collect()
                leaked = [w for w in caught if issubclass(w.category, ResourceWarning)]
                os._exit(3 if leaked else 0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        client.list_models()
    assert len(peers) == 3
    assert peers[2] == peers[0] and peers[1] != peers[0]  # the parent's connection survived
