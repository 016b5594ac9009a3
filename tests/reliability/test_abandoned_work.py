"""Abandoned work releases everything: a thousand streams left after their first chunk (and, on
the async client, a thousand tasks cancelled mid-stream) with ``max_connections=4``, then a
normal call on the same client completes within 5 s (a hang check, not a speed claim) and the
sockets come back to what the pool may keep."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, List

import pytest
from leakcheck import assert_released
from loopback import open_sockets
from twin import Twin

from gatewayclient import RetryPolicy
from gatewayclient.testing import FakeGateway, expected_reply

MODEL = "openai/gpt-4o"
STORY = [{"role": "user", "content": "Write a short story about a robot."}]
STREAMS = 1000
POOL = 4
HANG_CHECK = 5.0


def client(kind: str, gw: FakeGateway) -> Twin:
    policy = RetryPolicy(max_retries=0)
    return Twin(kind, gw.url, gw.token, timeout=5, max_connections=POOL, retry_policy=policy)


def a_normal_call_completes(twin: Twin) -> float:
    """How long a normal call on the same client took (it must answer, and within 5 s)."""
    started = time.monotonic()
    answer = twin.call("chat_completion", MODEL, STORY)
    elapsed = time.monotonic() - started
    assert elapsed < HANG_CHECK
    assert answer.choices[0].message.content == expected_reply(MODEL, STORY)
    return elapsed


def leave_after_the_first_chunk(twin: Twin) -> None:
    """Each stream is left by ``break`` and dropped; nothing closes it explicitly."""
    if twin.loop is None:
        for _ in range(STREAMS):
            for chunk in twin.stream(MODEL, STORY):
                assert chunk.choices[0].delta.role == "assistant"
                break
        return

    async def leave() -> None:
        for _ in range(STREAMS):
            async for chunk in twin.client.stream_chat_completion(MODEL, STORY):
                assert chunk.choices[0].delta.role == "assistant"
                break

    # A connection not released would leave later streams waiting for the pool forever.
    twin.run(asyncio.wait_for(leave(), 60))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("server", ["finished", "still-streaming"])
def test_a_thousand_streams_left_after_their_first_chunk_release_their_connections(
    kind: str, gw: FakeGateway, server: str, record_property: Callable[[str, object], None]
) -> None:
    """``finished``: the server has sent the whole answer; ``still-streaming``: it stalls after
    the first chunk, so the connection can only be closed, never reused."""
    twin = client(kind, gw)
    baseline = open_sockets()
    try:
        if server == "still-streaming":
            gw.stall(30, times=STREAMS, when="mid_stream", after=1)
        started = time.monotonic()
        leave_after_the_first_chunk(twin)
        record_property("streams_seconds", round(time.monotonic() - started, 2))
        assert not gw.pending_faults
        assert len(gw.requests) == STREAMS
        record_property("follow_up_seconds", round(a_normal_call_completes(twin), 3))
        assert_released(twin, baseline, pooled=POOL)
    finally:
        twin.close()


@pytest.mark.timeout(120)
def test_a_thousand_tasks_cancelled_mid_stream_release_their_connections(
    gw: FakeGateway, record_property: Callable[[str, object], None]
) -> None:
    """Tasks blocked reading a stream (the server stalls after the first chunk) are cancelled
    in batches of the pool's size: CancelledError comes out of each, and each connection is
    released, or the next batch could not connect."""
    twin = client("async", gw)
    baseline = open_sockets()
    gw.stall(30, times=STREAMS, when="mid_stream", after=1)

    async def consume(first_chunk: asyncio.Event, after: List[Any]) -> None:
        async for chunk in twin.client.stream_chat_completion(MODEL, STORY):
            first_chunk.set()
            after.append(chunk)

    async def cancel_mid_stream() -> None:
        for _ in range(STREAMS // POOL):
            received: List[List[Any]] = [[] for _ in range(POOL)]
            started = [asyncio.Event() for _ in range(POOL)]
            tasks = [
                asyncio.create_task(consume(event, chunks))
                for event, chunks in zip(started, received)
            ]
            try:
                await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 5)
                await asyncio.sleep(0)  # each task is back waiting for the next bytes
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks, timeout=5)
            assert all(task.cancelled() for task in tasks), [
                task.exception() for task in tasks if task.done() and not task.cancelled()
            ]
            assert [len(chunks) for chunks in received] == [1] * POOL

    try:
        started = time.monotonic()
        twin.run(cancel_mid_stream())
        record_property("streams_seconds", round(time.monotonic() - started, 2))
        assert not gw.pending_faults
        assert len(gw.requests) == STREAMS
        record_property("follow_up_seconds", round(a_normal_call_completes(twin), 3))
        assert_released(twin, baseline, pooled=POOL)
    finally:
        twin.close()
