"""The official openai SDK, unchanged, against FakeGateway (sync and async clients)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Iterator, List

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from gatewayclient.testing import (
    FakeGateway,
    expected_embedding,
    expected_reply,
    expected_tool_call,
    expected_usage,
)
from gatewayclient.testing.plugin import fake_gateway  # noqa: F401  (the plugin's fixture)

MODEL = "anthropic/claude-sonnet-4-20250514"
MESSAGES: List[Any] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name three colours."},
]
TOOL: Any = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"term": {"type": "string"}}},
    },
}


@pytest.fixture
def client(fake_gateway: FakeGateway) -> Iterator[OpenAI]:  # noqa: F811
    with OpenAI(base_url=fake_gateway.api_url, api_key=fake_gateway.token, max_retries=0) as sdk:
        yield sdk


def test_chat_completion(client: OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=50)
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.choices[0].message.content == expected_reply(MODEL, MESSAGES)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.model_dump(exclude_none=True) == expected_usage(MODEL, MESSAGES)


def test_chat_stream_with_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    with stream:
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_reply(MODEL, MESSAGES)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == expected_usage(MODEL, MESSAGES)["total_tokens"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_tool_call_stream_reassembles(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, tools=[TOOL], stream=True
    )
    arguments = ""
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.index == 0
            arguments += call.function.arguments or "" if call.function else ""
    assert arguments == expected_tool_call([TOOL])["function"]["arguments"]  # type: ignore[index]
    assert json.loads(arguments) == {"term": "test"}


def test_embeddings_float_and_base64(client: OpenAI) -> None:
    model = "openai/text-embedding-3-small"
    floats = client.embeddings.create(model=model, input=["a b", "c"], encoding_format="float")
    assert [len(d.embedding) for d in floats.data] == [1536, 1536]
    assert floats.data[0].embedding == expected_embedding(model, "a b")
    assert floats.usage.prompt_tokens == 3
    # The SDK asks for base64 by default and decodes it itself.
    decoded = client.embeddings.create(model=model, input="a b")
    assert decoded.data[0].embedding == expected_embedding(model, "a b")
    assert math.isclose(math.fsum(x * x for x in decoded.data[0].embedding), 1.0, rel_tol=1e-5)


def test_models_list_and_retrieve(client: OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert "openai/gpt-4o" in ids and MODEL in ids
    assert client.models.retrieve(MODEL).owned_by == "anthropic"


def test_errors_map_to_the_sdk_exceptions(fake_gateway: FakeGateway, client: OpenAI) -> None:  # noqa: F811
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="openai/nope", messages=MESSAGES)
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=3)
    fake_gateway.fail(429, retry_after=0.01)
    with pytest.raises(openai.RateLimitError):
        client.models.list()
    fake_gateway.fail(529)
    with pytest.raises(openai.InternalServerError):
        client.models.list()
    fake_gateway.reset_connection()
    with pytest.raises(openai.APIConnectionError):
        client.models.list()
    fake_gateway.stall(0.6)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.2).models.list()
    bad = OpenAI(base_url=fake_gateway.api_url, api_key="wrong", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_sdk_retries_honour_the_fake_retry_after(fake_gateway: FakeGateway) -> None:  # noqa: F811
    fake_gateway.fail(503, times=2, retry_after=0.01)
    with OpenAI(base_url=fake_gateway.api_url, api_key=fake_gateway.token, max_retries=2) as sdk:
        completion = sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == expected_reply(MODEL, MESSAGES)
    assert len(fake_gateway.requests) == 3


def test_async_client(fake_gateway: FakeGateway) -> None:  # noqa: F811
    async def main() -> None:
        async with AsyncOpenAI(
            base_url=fake_gateway.api_url, api_key=fake_gateway.token, max_retries=0
        ) as sdk:
            completion = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
            assert completion.choices[0].message.content == expected_reply(MODEL, MESSAGES)
            stream = await sdk.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            text, usage = "", None
            async for chunk in stream:
                text += "".join(c.delta.content or "" for c in chunk.choices)
                usage = chunk.usage or usage
            assert text == expected_reply(MODEL, MESSAGES)
            assert usage is not None and usage.prompt_tokens == 11  # (2 + 3) + (3 + 3)
            vectors = await sdk.embeddings.create(model="google/text-embedding-004", input="x")
            assert len(vectors.data[0].embedding) == 768
            models = [m.id async for m in sdk.models.list()]
            assert "mistral/mistral-large-latest" in models

    asyncio.run(main())
