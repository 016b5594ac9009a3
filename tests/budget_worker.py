"""A load worker for tests/test_budget_processes.py, run as ``python budget_worker.py CONFIG``:
sync threads and async tasks (each with a client of its kind) call the gateway without pause
under one RateLimit until the run's end, then print as JSON the tickets this process took (time
and tokens as settled, and the window that issued them) and the errors met."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from typing import Any, Dict, List

from gatewayclient import AsyncGatewayClient, RateLimit, SyncGatewayClient, _traffic
from gatewayclient.budget import LocalWindow, Ticket

MESSAGES = [{"role": "user", "content": " ".join(["abc"] * 10)}]  # 28 tokens answered; 30 reserved
MAX_TOKENS = 20


def record(tickets: Dict[int, List[Any]]) -> None:
    """Keep every ticket the clients take: the budget's own time (Redis's, or this process's
    monotonic clock), its tokens once settled, and the window that issued it."""
    take, atake, settle, asettle = _traffic.take, _traffic.atake, _traffic.settle, _traffic.asettle
    keep: List[Ticket] = []  # alive, so that no two tickets share an id

    def taken(got: Ticket) -> Ticket:
        keep.append(got)
        tickets[id(got)] = [got.at, got.tokens, type(got.store).__name__]
        return got

    def settled(ticket: Ticket) -> None:
        if ticket.tokens >= 0:  # (a ticket already out of its window says -1)
            tickets[id(ticket)][1] = ticket.tokens

    def taking(limit: RateLimit, cost: int) -> Ticket:
        return taken(take(limit, cost))

    async def ataking(limit: RateLimit, cost: int) -> Ticket:
        return taken(await atake(limit, cost))

    def settling(ticket: Ticket, answer: Any) -> None:
        settle(ticket, answer)
        settled(ticket)

    async def asettling(ticket: Ticket, answer: Any) -> None:
        await asettle(ticket, answer)
        settled(ticket)

    # An async call under an in-process budget with room takes its ticket from the window
    # itself (no atake): the window's take is watched too. A ticket seen twice is one entry.
    local_take = LocalWindow.take

    def local_taking(window: LocalWindow, cost: int, now: Any = None) -> Any:
        got = local_take(window, cost, now)
        return taken(got) if isinstance(got, Ticket) else got

    _traffic.take, _traffic.atake = taking, ataking  # type: ignore[assignment]
    _traffic.settle, _traffic.asettle = settling, asettling  # type: ignore[assignment]
    LocalWindow.take = local_taking  # type: ignore[method-assign]


def run(config: Dict[str, Any]) -> Dict[str, Any]:
    limit = RateLimit(
        config["requests"],
        config["tokens"],
        per=config["per"],
        storage=config["storage"],
        key=config["key"],
    )
    tickets: Dict[int, List[Any]] = {}
    errors: List[str] = []
    record(tickets)
    time.sleep(max(0.0, config["start_at"] - time.time()))  # every process starts together
    deadline = time.monotonic() + config["seconds"]
    options = {"rate_limit": limit, "max_retries": 0}  # a 429 from the gateway is an error here

    def sync_caller(client: SyncGatewayClient) -> None:
        while time.monotonic() < deadline:
            try:
                client.chat_completion("openai/gpt-4o", MESSAGES, max_tokens=MAX_TOKENS)
            except Exception as exc:
                errors.append(repr(exc))

    async def async_caller(client: AsyncGatewayClient) -> None:
        while time.monotonic() < deadline:
            try:
                await client.chat_completion("openai/gpt-4o", MESSAGES, max_tokens=MAX_TOKENS)
            except Exception as exc:
                errors.append(repr(exc))

    async def tasks() -> None:
        async with AsyncGatewayClient(config["url"], config["token"], **options) as client:
            await asyncio.gather(*(async_caller(client) for _ in range(config["tasks"])))

    with SyncGatewayClient(config["url"], config["token"], **options) as client:
        threads = [
            threading.Thread(target=sync_caller, args=(client,)) for _ in range(config["threads"])
        ]
        if config["tasks"]:
            threads.append(threading.Thread(target=asyncio.run, args=(tasks(),)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return {
        "tickets": list(tickets.values()),
        "errors": errors,
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
