"""The async client across event loops, with no warning of any kind (each case in a fresh
interpreter with -W error and -X dev, its stderr checked)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from gatewayclient.testing import FakeGateway

PRELUDE = """
import asyncio, gc, sys, threading
from gatewayclient import AsyncGatewayClient
URL, TOKEN = sys.argv[1], sys.argv[2]
HELLO = [{"role": "user", "content": "Hello!"}]
"""

CASES = {
    "created outside a loop, used by asyncio.run twice, never closed": """
        client = AsyncGatewayClient(URL, TOKEN)
        async def use():
            await client.chat_completion("openai/gpt-4o", HELLO)
            async for _ in client.stream_chat_completion("openai/gpt-4o", HELLO):
                pass
        asyncio.run(use())
        asyncio.run(use())
        del client
        gc.collect()
    """,
    "closed with aclose then reused in a new loop": """
        client = AsyncGatewayClient(URL, TOKEN)
        async def use():
            await client.list_models()
        asyncio.run(use())
        asyncio.run(client.aclose())
        asyncio.run(use())
        asyncio.run(client.close())
    """,
    "async with in several asyncio.run calls": """
        async def use():
            async with AsyncGatewayClient(URL, TOKEN) as client:
                await client.list_models()
        for _ in range(3):
            asyncio.run(use())
    """,
    "one client, several threads each with its own loop": """
        client = AsyncGatewayClient(URL, TOKEN)
        errors = []
        def worker():
            async def use():
                for _ in range(5):
                    await client.chat_completion("openai/gpt-4o", HELLO)
            try:
                asyncio.run(use())
            except BaseException as exc:
                errors.append(exc)
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert not errors, errors
        assert client.usage.total.requests == 20
    """,
    "from Django's async_to_sync, repeatedly, one client": """
        from asgiref.sync import async_to_sync
        client = AsyncGatewayClient(URL, TOKEN)
        async def ask():
            answer = await client.chat_completion("openai/gpt-4o", HELLO)
            chunks = [c async for c in client.stream_chat_completion("openai/gpt-4o", HELLO)]
            return answer.choices[0].message.content, len(chunks)
        results = [async_to_sync(ask)() for _ in range(3)]
        assert len(set(results)) == 1 and results[0][1] > 0, results
        assert client.usage.total.requests == 6
    """,
    "a stream abandoned mid-way, then the loop ends": """
        client = AsyncGatewayClient(URL, TOKEN)
        async def use():
            stream = client.stream_chat_completion("openai/gpt-4o", HELLO)
            async for _ in stream:
                break
        asyncio.run(use())
        gc.collect()
    """,
    "hand-rolled loops (new_event_loop, run_until_complete, close), streams too, never closed": """
        client = AsyncGatewayClient(URL, TOKEN)
        async def use():
            await client.chat_completion("openai/gpt-4o", HELLO)
            async for _ in client.stream_chat_completion("openai/gpt-4o", HELLO):
                pass
        for _ in range(4):
            loop = asyncio.new_event_loop()
            loop.run_until_complete(use())
            loop.close()  # no shutdown_asyncgens(): the client's keeper never runs to its end
        del client
        gc.collect()
    """,
    "hand-rolled loops, then aclose in a last one": """
        client = AsyncGatewayClient(URL, TOKEN)
        for _ in range(3):
            loop = asyncio.new_event_loop()
            loop.run_until_complete(client.list_models())
            loop.close()
        asyncio.run(client.aclose())
        gc.collect()
    """,
    "a task cancelled mid-stream": """
        client = AsyncGatewayClient(URL, TOKEN)
        async def consume():
            async for _ in client.stream_chat_completion("openai/gpt-4o", HELLO):
                await asyncio.sleep(10)
        async def use():
            task = asyncio.ensure_future(consume())
            await asyncio.sleep(0.2)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            else:
                raise AssertionError("CancelledError did not propagate")
            await client.list_models()
        asyncio.run(use())
    """,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_async_client_lifecycle_emits_no_warning(gateway_server: FakeGateway, case: str) -> None:
    code = PRELUDE + textwrap.dedent(CASES[case]) + "\nprint('ok')\n"
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-W",
            "error",
            "-c",
            code,
            gateway_server.url,
            gateway_server.token,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    for needle in (
        "Unclosed",
        "unclosed",
        "Event loop is closed",
        "Warning",
        "Traceback",
        "Exception ignored",
    ):
        assert needle not in result.stderr, result.stderr


def test_a_client_used_from_many_event_loops_keeps_no_dead_loop(
    gateway_server: FakeGateway,
) -> None:
    import asyncio
    import gc
    import weakref

    from gatewayclient import AsyncGatewayClient

    client = AsyncGatewayClient(gateway_server.url, gateway_server.token)
    loops = []

    async def use() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await client.list_models()

    for _ in range(5):
        asyncio.run(use())
    gc.collect()
    assert [ref() for ref in loops] == [None] * 5  # every finished loop could be freed
    assert len(client._transport._pools) == 0


def test_hand_rolled_event_loops_keep_no_dead_loop_and_no_socket(
    gateway_server: FakeGateway,
) -> None:
    """``new_event_loop()`` / ``run_until_complete()`` / ``close()`` without shutting the loop's
    generators down: each closed loop, its session and its sockets are let go when the client
    next meets a new loop, and the rest when the client itself goes."""
    import asyncio
    import gc
    import weakref

    from loopback import open_sockets

    from gatewayclient import AsyncGatewayClient

    gc.collect()
    baseline = open_sockets()
    client = AsyncGatewayClient(gateway_server.url, gateway_server.token)
    loops = []
    for _ in range(5):
        loop = asyncio.new_event_loop()
        loops.append(weakref.ref(loop))
        loop.run_until_complete(client.list_models())
        loop.close()
        del loop
    gc.collect()
    assert [ref() for ref in loops[:-1]] == [None] * 4  # all but the last one met
    assert len(client._transport._pools) <= 1
    # The server holds one socket per open connection too: at most the last loop's one pair.
    assert open_sockets() <= baseline + 2
    del client
    gc.collect()
    assert loops[-1]() is None
    deadline = time.monotonic() + 3
    while open_sockets() > baseline and time.monotonic() < deadline:
        time.sleep(0.02)  # the server side closes a moment after the client side
    assert open_sockets() <= baseline


def test_the_async_client_keeps_a_bounded_number_of_timeouts(gateway_server: FakeGateway) -> None:
    """A service passing the time left on a deadline as ``timeout=`` uses a new value on every
    call: what the client keeps for them stays bounded."""
    import asyncio

    from gatewayclient import AsyncGatewayClient

    async def use() -> None:
        async with AsyncGatewayClient(gateway_server.url, gateway_server.token) as client:
            for call in range(300):
                await client.list_models() if call == 0 else None
                client._transport._timeout(5.0 + call / 1000)
            assert len(client._transport._timeouts) <= 64

    asyncio.run(use())
