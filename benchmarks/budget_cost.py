"""What a rate budget adds to a call: CPU and wall time, in process and through Redis.

    python benchmarks/budget_cost.py [--rounds 5] [--calls 400]

1. The in-process budget's whole added work per call, alone: LocalWindow take + settle; and
   the estimate plus ``spend`` / ``aspend`` around an attempt that answers at once, less the
   attempt itself (CPU microseconds; the number the 10 us target is about).
2. Full chat calls against a FakeGateway in a process of its own, sync and async clients,
   without a budget, with an in-process one and with a Redis one (a redis-server it starts),
   in interleaved rounds; CPU of this process and wall time per call, medians over rounds,
   and the Redis round trips per call (Redis's own command counts).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import redis
from _local_servers import fake_gateway, redis_server

from gatewayclient import AsyncGatewayClient, RateLimit, SyncGatewayClient

HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
BIG = {"requests": 10**9, "tokens": 10**12}


def window_alone(count: int = 200_000) -> float:
    """CPU microseconds per take + settle on an in-process window with room."""
    local = RateLimit(**BIG).local
    started = time.process_time()
    for _ in range(count):
        ticket = local.take(30)
        local.settle(ticket, 28)  # type: ignore[arg-type]
    return (time.process_time() - started) / count * 1e6


def added_work(count: int = 100_000) -> Dict[str, float]:
    """CPU microseconds the budget adds around one attempt (estimate, take, settle)."""
    from gatewayclient import _traffic
    from gatewayclient.budget import estimate_tokens
    from gatewayclient.models import ChatCompletion

    answer = ChatCompletion._from_json(
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [],
         "usage": {"prompt_tokens": 8, "completion_tokens": 20, "total_tokens": 28}}
    )  # fmt: skip
    limit = RateLimit(**BIG)

    def attempt() -> Any:
        return answer

    async def aattempt() -> Any:
        return answer

    def cpu(step: Callable[[], Any]) -> float:
        started = time.process_time()
        for _ in range(count):
            step()
        return (time.process_time() - started) / count * 1e6

    async def acpu(step: Callable[[], Any]) -> float:
        started = time.process_time()
        for _ in range(count):
            await step()
        return (time.process_time() - started) / count * 1e6

    def budgeted() -> Any:
        cost = estimate_tokens(HELLO, None, 20)
        return _traffic.spend(limit, cost, attempt)

    async def abudgeted() -> Any:
        cost = estimate_tokens(HELLO, None, 20)
        return await _traffic.aspend(limit, cost, aattempt)

    sync = cpu(budgeted) - cpu(attempt)

    async def both() -> float:
        return await acpu(abudgeted) - await acpu(aattempt)

    return {"sync": sync, "async": asyncio.run(both())}


def sync_round(url: str, limit: Optional[RateLimit], calls: int) -> Tuple[float, float]:
    with SyncGatewayClient(url, "test-token", rate_limit=limit) as client:
        client.chat_completion("openai/gpt-4o", HELLO)  # connected (and Redis scripts loaded)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            client.chat_completion("openai/gpt-4o", HELLO, max_tokens=20)
        return time.process_time() - cpu, time.perf_counter() - wall


def async_round(url: str, limit: Optional[RateLimit], calls: int) -> Tuple[float, float]:
    async def run() -> Tuple[float, float]:
        async with AsyncGatewayClient(url, "test-token", rate_limit=limit) as client:
            await client.chat_completion("openai/gpt-4o", HELLO)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                await client.chat_completion("openai/gpt-4o", HELLO, max_tokens=20)
            return time.process_time() - cpu, time.perf_counter() - wall

    return asyncio.run(run())


def measure(url: str, redis_url: str, rounds: int, calls: int) -> Dict[str, List[float]]:
    budgets: Dict[str, Callable[[], Optional[RateLimit]]] = {
        "none": lambda: None,
        "in process": lambda: RateLimit(**BIG),
        "redis": lambda: RateLimit(**BIG, storage=redis_url, key="bench"),
    }
    results: Dict[str, List[float]] = {}
    for index in range(rounds):
        order = list(budgets.items())
        order = order[index % 3 :] + order[: index % 3]  # rotated: no budget always first
        for kind, run in (("sync", sync_round), ("async", async_round)):
            for name, make in order:
                cpu, wall = run(url, make(), calls)
                results.setdefault(f"{kind} {name} cpu", []).append(cpu / calls * 1e6)
                results.setdefault(f"{kind} {name} wall", []).append(wall / calls * 1e6)
    return results


def round_trips(url: str, redis_url: str, calls: int) -> float:
    with redis.Redis.from_url(redis_url) as inspector:
        limit = RateLimit(**BIG, storage=redis_url, key="trips")
        with SyncGatewayClient(url, "test-token", rate_limit=limit) as client:
            client.chat_completion("openai/gpt-4o", HELLO)
            inspector.config_resetstat()
            for _ in range(calls):
                client.chat_completion("openai/gpt-4o", HELLO, max_tokens=20)
        stats = inspector.info("commandstats")
    return float(stats.get("cmdstat_evalsha", {}).get("calls", 0)) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    print(f"LocalWindow take + settle alone: {window_alone():.2f} us CPU")
    added = added_work()
    print(
        f"estimate + spend around an attempt, less the attempt: sync {added['sync']:.2f} us, "
        f"async {added['async']:.2f} us CPU"
    )
    with fake_gateway() as url, redis_server() as redis_url:
        results = measure(url, redis_url, args.rounds, args.calls)
        trips = round_trips(url, redis_url, args.calls)
    print(f"{args.rounds} rounds x {args.calls} chat calls; medians (min-max), us per call")
    for kind in ("sync", "async"):
        base = {m: statistics.median(results[f"{kind} none {m}"]) for m in ("cpu", "wall")}
        for name in ("none", "in process", "redis"):
            cells = []
            for metric in ("cpu", "wall"):
                values = results[f"{kind} {name} {metric}"]
                median = statistics.median(values)
                cells.append(
                    f"{metric} {median:7.1f} ({min(values):.0f}-{max(values):.0f}) "
                    f"{median - base[metric]:+6.1f}"
                )
            print(f"  {kind:5} {name:10} " + "   ".join(cells))
    print(f"Redis round trips per call (token budget, usage != reservation): {trips:.2f}")


if __name__ == "__main__":
    main()
