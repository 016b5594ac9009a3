"""Why the rate budget keeps its own window rather than a strategy of ``limits``: measured.

    python benchmarks/limits_fit.py [--hits 100] [--cost 2000]

Against a redis-server it starts: ``limits``' MovingWindowRateLimiter.hit(cost=2,000) on its
RedisStorage until a 200,000-token minute is full (time per hit, then the Redis list's entries
and memory), versus the budget's RedisWindow take + settle of the same costs (time per call,
entries, memory). In process: ``limits``' MemoryStorage moving window versus LocalWindow
take + settle. Prints a table.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Dict, List

import redis
from _local_servers import redis_server
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from gatewayclient import RateLimit
from gatewayclient._traffic import window

TOKENS = 200_000


def timed(count: int, step: Callable[[int], Any]) -> float:
    """Microseconds of wall time per step."""
    started = time.perf_counter()
    for index in range(count):
        step(index)
    return (time.perf_counter() - started) / count * 1e6


def memory(client: Any, pattern: str) -> Dict[str, int]:
    keys = list(client.scan_iter(match=pattern))
    entries = 0
    for key in keys:
        kind = client.type(key)
        entries += {b"list": client.llen, b"zset": client.zcard}.get(kind, lambda _: 0)(key)
    size = sum(client.memory_usage(key) or 0 for key in keys)
    return {"keys": len(keys), "entries": entries, "bytes": size}


def limits_redis(url: str, hits: int, cost: int) -> Dict[str, Any]:
    limiter = MovingWindowRateLimiter(RedisStorage(url))
    item = RateLimitItemPerMinute(TOKENS)
    accepted: List[bool] = []
    per_hit = timed(hits, lambda _: accepted.append(limiter.hit(item, "bench", cost=cost)))
    with redis.Redis.from_url(url) as client:
        found = memory(client, "LIMITS*")
    return {"us_per_call": per_hit, "accepted": sum(accepted), **found}


def ours_redis(url: str, hits: int, cost: int) -> Dict[str, Any]:
    limit = RateLimit(tokens=TOKENS, storage=url, key="bench")
    shared = window(limit)
    accepted: List[bool] = []

    def call(_: int) -> None:
        got = shared.take(cost)
        accepted.append(not isinstance(got, float))
        if not isinstance(got, float):
            shared.settle(got, cost * 3 // 4)  # the answer used less than reserved

    per_call = timed(hits, call)
    with redis.Redis.from_url(url) as client:
        found = memory(client, "gatewayclient:*")
    return {"us_per_call": per_call, "accepted": sum(accepted), **found}


def in_process(hits: int, cost: int) -> Dict[str, float]:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerMinute(TOKENS)
    theirs = timed(hits, lambda _: limiter.hit(item, "bench", cost=cost))
    local = RateLimit(tokens=TOKENS).local

    def ours(_: int) -> None:
        got = local.take(cost)
        if not isinstance(got, float):
            local.settle(got, cost * 3 // 4)

    return {
        "limits MemoryStorage moving window": theirs,
        "LocalWindow take+settle": timed(hits, ours),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hits", type=int, default=100)
    parser.add_argument("--cost", type=int, default=2000)
    args = parser.parse_args()
    with redis_server() as url:
        rows = {
            "limits moving window (RedisStorage)": limits_redis(url, args.hits, args.cost),
            "gatewayclient RedisWindow take+settle": ours_redis(url, args.hits, args.cost),
        }
    print(f"{args.hits} calls of cost {args.cost}, {TOKENS} tokens a minute (Redis on 127.0.0.1)")
    print(f"{'':40} {'us/call':>9} {'accepted':>9} {'keys':>5} {'entries':>9} {'bytes':>10}")
    for name, row in rows.items():
        print(
            f"{name:40} {row['us_per_call']:9.1f} {row['accepted']:9d} {row['keys']:5d} "
            f"{row['entries']:9d} {row['bytes']:10d}"
        )
    print("in process (no Redis), us per call:")
    for name, value in in_process(args.hits, args.cost).items():
        print(f"  {name:40} {value:9.2f}")


if __name__ == "__main__":
    main()
