"""Unit-level HTTP with responses (sync) and aioresponses (async): the URL each client calls for
every base URL / prefix combination, and what it sends."""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any, Dict

import pytest
import responses
from aiohttp import ClientResponse
from aioresponses import aioresponses

from gatewayclient import AsyncGatewayClient, SyncGatewayClient


class SentRequest:
    """What a response of a request already sent needs of its stream writer."""

    output_size = 0


class CompatResponse(ClientResponse):
    """aioresponses 0.7.9 (the newest) predates aiohttp 3.14's required ``stream_writer``."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
            kwargs.setdefault("stream_writer", SentRequest())
        super().__init__(method, url, **kwargs)


ANSWER: Dict[str, Any] = {"object": "list", "data": [{"id": "openai/gpt-4o", "object": "model"}]}

URLS = [
    ("http://gw.test", "/v1", "http://gw.test/v1/models"),
    ("http://gw.test/", "/v1", "http://gw.test/v1/models"),
    ("http://gw.test:4000/v1", "/v1", "http://gw.test:4000/v1/models"),
    ("http://gw.test:4000/v1/", "/v1", "http://gw.test:4000/v1/models"),
    ("https://gw.test/gateway", "/v1", "https://gw.test/gateway/v1/models"),
    ("https://gw.test/api/v2", "", "https://gw.test/api/v2/models"),
    ("https://gw.test", "v1", "https://gw.test/v1/models"),
    ("https://gw.test/openai/v1", "/v1", "https://gw.test/openai/v1/models"),
]


@pytest.mark.parametrize(("base_url", "prefix", "expected"), URLS)
def test_sync_client_calls_the_joined_url(base_url: str, prefix: str, expected: str) -> None:
    with responses.RequestsMock() as mock:
        mock.get(expected, json=ANSWER)
        with SyncGatewayClient(base_url, "tok", api_prefix=prefix) as client:
            assert client.list_models().data[0].id == "openai/gpt-4o"
        assert mock.calls[0].request.headers["Authorization"] == "Bearer tok"


@pytest.mark.parametrize(("base_url", "prefix", "expected"), URLS)
def test_async_client_calls_the_joined_url(base_url: str, prefix: str, expected: str) -> None:
    async def main() -> None:
        with aioresponses() as mock:
            mock.get(expected, payload=ANSWER, response_class=CompatResponse)
            async with AsyncGatewayClient(base_url, "tok", api_prefix=prefix) as client:
                assert (await client.list_models()).data[0].id == "openai/gpt-4o"
            ((_, _), (call,)) = next(iter(mock.requests.items()))
            assert call.kwargs["headers"]["Authorization"] == "Bearer tok"

    asyncio.run(main())


CHAT = {
    "id": "c1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def test_both_clients_send_the_same_body_and_headers() -> None:
    kwargs = dict(temperature=0.2, max_tokens=5, seed=1, extra_headers={"X-A": "1"})
    messages = [{"role": "user", "content": "hé"}]
    with responses.RequestsMock() as mock:
        mock.post("http://gw.test/v1/chat/completions", json=CHAT)
        with SyncGatewayClient("http://gw.test", "tok", default_headers={"X-D": "d"}) as client:
            client.chat_completion("openai/gpt-4o", messages, **kwargs)
        sync_request = mock.calls[0].request
        sync_body = json.loads(sync_request.body)
        sync_headers = {k.lower(): v for k, v in sync_request.headers.items()}

    async def main() -> Any:
        with aioresponses() as mock:
            mock.post(
                "http://gw.test/v1/chat/completions", payload=CHAT, response_class=CompatResponse
            )
            async with AsyncGatewayClient(
                "http://gw.test", "tok", default_headers={"X-D": "d"}
            ) as client:
                await client.chat_completion("openai/gpt-4o", messages, **kwargs)
            ((_, _), (call,)) = next(iter(mock.requests.items()))
            return call.kwargs

    call = asyncio.run(main())
    assert (
        json.loads(call["data"])
        == sync_body
        == {
            "model": "openai/gpt-4o",
            "messages": messages,
            "temperature": 0.2,
            "max_tokens": 5,
            "seed": 1,
        }
    )
    async_headers = {k.lower(): v for k, v in call["headers"].items()}
    for name in (
        "authorization",
        "content-type",
        "accept",
        "accept-encoding",
        "x-a",
        "x-d",
        "user-agent",
    ):
        assert sync_headers[name] == async_headers[name], name
    assert len(sync_headers["idempotency-key"]) == len(async_headers["idempotency-key"]) == 32
