"""Clients across processes: pickled clients rebuild with their own connections."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle

from gatewayclient import AsyncGatewayClient, SyncGatewayClient
from gatewayclient.testing import FakeGateway, expected_reply

HELLO = [{"role": "user", "content": "Hello!"}]


def ask_in_a_child(client: SyncGatewayClient) -> str:
    return str(client.chat_completion("openai/gpt-4o", HELLO).choices[0].message.content)


def test_a_pickled_sync_client_reconnects_and_keeps_its_settings(gw: FakeGateway) -> None:
    with SyncGatewayClient(gw.url, gw.token, timeout=7, max_retries=1) as client:
        client.list_models()
        copy = pickle.loads(pickle.dumps(client))
        assert type(copy) is SyncGatewayClient and copy is not client
        assert copy._core.config == client._core.config
        assert copy.chat_completion("openai/gpt-4o", HELLO).choices
        assert copy.usage.total.requests == 1 and client.usage.total.requests == 0
        copy.close()


def test_a_pickled_async_client_works_in_a_new_loop(gw: FakeGateway) -> None:
    client = AsyncGatewayClient(gw.url, gw.token)
    copy = pickle.loads(pickle.dumps(client))

    async def use() -> str:
        async with copy:
            return str(
                (await copy.chat_completion("openai/gpt-4o", HELLO)).choices[0].message.content
            )

    assert asyncio.run(use()) == expected_reply("openai/gpt-4o", HELLO)


def test_a_client_passed_to_spawned_processes_works_there(gw: FakeGateway) -> None:
    with SyncGatewayClient(gw.url, gw.token) as client:
        client.list_models()
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            answers = pool.map(ask_in_a_child, [client] * 4)
        assert answers == [expected_reply("openai/gpt-4o", HELLO)] * 4
        assert client.list_models().data  # the parent's connections are undisturbed
