"""Memory growth of a client over many chat calls, in the fresh process it runs in.

Run by ``run.py`` as ``python benchmarks/memory_workload.py '<json spec>'``; prints one JSON
line: the resident set's growth over N calls after warm-up, and the Python allocations still
alive after N more (tracemalloc).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from typing import Any, Callable, Dict

import features
import workloads


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096  # resident pages (4 KiB on Linux x86-64)


def measure_memory(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Growth over N chat calls after warm-up, measured twice: the resident set (N calls with
    nothing else running), then Python allocations still alive (tracemalloc, N more calls)."""
    import tracemalloc

    loop = None
    if spec["client"] in workloads.SYNC_BUILDERS:
        call: Callable[[], Any] = workloads.SYNC_BUILDERS[spec["client"]]("chat", spec["url"])
    else:
        loop = asyncio.new_event_loop()

        async def build() -> workloads.AsyncCall:
            return workloads.ASYNC_BUILDERS[spec["client"]]("chat", spec["url"])

        acall = loop.run_until_complete(build())

        def call() -> Any:
            return loop.run_until_complete(acall())  # type: ignore[union-attr]

    n = spec["n"]
    for _ in range(spec["warmup"]):
        call()
    gc.collect()
    rss = _rss_bytes()
    for _ in range(n):
        call()
    gc.collect()
    rss = _rss_bytes() - rss
    tracemalloc.start()
    traced = tracemalloc.get_traced_memory()[0]
    for _ in range(n):
        call()
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced
    tracemalloc.stop()
    if loop is not None:
        loop.run_until_complete(workloads.close_async())
        loop.close()
    return {"rss_mb": rss / 1e6, "traced_mb": traced / 1e6, "calls": n}


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = measure_memory(spec)
    result["package_dirs"] = features.package_dirs()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
