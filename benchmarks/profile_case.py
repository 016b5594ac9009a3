"""Where a client's CPU goes in one benchmark case: cProfile, in µs per unit.

    python benchmarks/profile_case.py stream-sync gc-sync requests
    python benchmarks/profile_case.py chat-async64 gc-async aiohttp --top 30
    python benchmarks/profile_case.py streams-async1000 gc-async aiohttp -n 1000
    python benchmarks/profile_case.py otel-sync gc-sync       # one +no-otel/+otel-sdk per process

For each client named (in this one process, against the same servers as ``run.py``): warm up,
time N units without the profiler, then profile N more. Prints the CPU per unit, each
package's share (own time, summed by the module's top-level package), and the top functions by
own time. cProfile inflates calls to small functions; compare shares, not absolute values.

Batch cases (``batch-*``, not ``vectors-base64``): a warm-up batch, one timed, one profiled
(every thread, on its own CPU clock, as below).

Many-streams cases (``streams-*``, N open streams, ``-n`` of them): one run unprofiled (its
steady-state CPU per chunk), then one profiled from start to end (opening the streams
included), every thread profiled (``threading.setprofile``) on its own CPU clock (slower to
read than the wall clock other cases use: absolute values grow more), the profiles added up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import pstats
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import features
import many_streams
import workloads
from cases import CASES, Case, variant
from run import DRIP_INTERVAL_MS
from servers import Servers

Key = Tuple[str, int, str]


def _where(filename: str) -> str:
    """A source file as its package path: ``gatewayclient/sse.py``, ``json/decoder.py``."""
    if filename.startswith("~") or filename.startswith("<"):
        return filename
    parts = Path(filename).parts
    for marker in ("site-packages", "gatewayclient", "benchmarks"):
        if marker in parts:
            index = parts.index(marker)
            return "/".join(parts[index + (marker == "site-packages") :])
    if "lib" in parts:
        index = len(parts) - 1 - parts[::-1].index("lib")
        return "/".join(parts[index + 2 :])  # past lib/python3.X/
    return filename


def _package(where: str) -> str:
    if where.startswith("~"):
        return "builtins (C)"
    return where.split("/", 1)[0].removesuffix(".py")


def _runner(case: Case, client: str, url: str) -> Callable[[int], None]:
    spec = {"kind": case.kind, "client": client, "url": url, "redis_url": workloads.REDIS_URL}
    if client.split("+")[0] in workloads.SYNC_BUILDERS:
        call = workloads._build(workloads.SYNC_BUILDERS, spec)

        def run_sync(calls: int) -> None:
            for _ in range(calls):  # 0: the end, nothing to close
                call()

        return run_sync
    loop = asyncio.new_event_loop()

    async def build() -> workloads.AsyncCall:
        return workloads._build(workloads.ASYNC_BUILDERS, spec)  # type: ignore[no-any-return]

    acall = loop.run_until_complete(build())

    async def lanes(calls: int) -> None:
        share, extra = divmod(calls, case.concurrency)

        async def lane(k: int) -> None:
            for _ in range(k):
                await acall()

        await asyncio.gather(*(lane(share + (i < extra)) for i in range(case.concurrency)))

    def run_async(calls: int) -> None:
        if calls:
            loop.run_until_complete(lanes(calls))
        else:  # the end: close the sessions in their loop
            loop.run_until_complete(workloads.close_async())
            loop.close()

    return run_async


def profile(case: Case, client: str, url: str, n: int) -> Tuple[float, pstats.Stats]:
    run = _runner(case, client, url)
    units = n * (1000 if case.kind == "stream" else 1)
    run(max(case.warmup, 2 * case.concurrency))
    gc.collect()
    cpu = time.process_time()
    run(n)
    cpu = (time.process_time() - cpu) / units
    profiler = cProfile.Profile()
    profiler.enable()
    run(n)
    profiler.disable()
    run(0)
    return cpu, pstats.Stats(profiler)


class AllThreads:
    """cProfile in this thread and in every thread started while it is on, each timing its
    thread's CPU (a wall clock would count every thread's waits for its socket)."""

    def __init__(self) -> None:
        self.profiles: List[cProfile.Profile] = []

    def _start(self, frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile(time.thread_time)
        self.profiles.append(profile)
        profile.enable()

    def __enter__(self) -> AllThreads:
        self.profiles.append(cProfile.Profile(time.thread_time))
        threading.setprofile(self._start)
        self.profiles[0].enable()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.profiles[0].disable()
        threading.setprofile(None)  # type: ignore[arg-type]

    def stats(self) -> pstats.Stats:
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        return stats


def profile_streams(case: Case, client: str, url: str, n: int) -> Tuple[float, pstats.Stats]:
    chunks = case.options["chunks"]
    interval = DRIP_INTERVAL_MS[False]
    spec = {"client": client, "n": n, "chunks": chunks, "url": url, "warmup": case.warmup,
            "interval_ms": interval, "deadline_s": 120 + 3 * chunks * interval / 1e3}  # fmt: skip
    many_streams.raise_file_limit(n)
    asynchronous = client.startswith(("aiohttp", "gc-async"))

    def run() -> Dict[str, Any]:
        if asynchronous:
            return asyncio.run(many_streams.run_async(spec))
        return many_streams.run_sync(spec)

    result = run()
    with AllThreads() as profiles:
        run()
    return result["cpu_s"] / result["units"], profiles.stats()


def memory_streams(case: Case, client: str, url: str, n: int, top: int) -> None:
    """Python allocations alive when all N streams are open, less those after the warm-up:
    bytes per open stream by the line that allocated them (tracemalloc)."""
    import tracemalloc

    chunks = case.options["chunks"]
    spec = {"client": client, "n": n, "chunks": chunks, "url": url, "warmup": case.warmup,
            "interval_ms": DRIP_INTERVAL_MS[False], "deadline_s": 600}  # fmt: skip
    many_streams.raise_file_limit(n)
    snapshots: List[tracemalloc.Snapshot] = []

    def snap() -> None:
        gc.collect()
        snapshots.append(tracemalloc.take_snapshot())

    many_streams.Tally.on_all_open = snap
    tracemalloc.start(1)
    try:
        if client.startswith(("aiohttp", "gc-async")):
            asyncio.run(many_streams.run_async(spec))
        else:
            many_streams.run_sync(spec)
    finally:
        tracemalloc.stop()
        many_streams.Tally.on_all_open = None
    # The first snapshot is the warm-up's, its own streams open: N - warm-up streams more.
    warm, opened = snapshots[0], snapshots[-1]
    stats = opened.compare_to(warm, "lineno")
    total, more = sum(stat.size_diff for stat in stats), n - case.warmup
    print(f"\n=== {client}: {total / more:,.0f} bytes per open stream traced (Python objects)")
    packages: Dict[str, float] = defaultdict(float)
    for stat in stats:
        packages[_package(_where(stat.traceback[0].filename))] += stat.size_diff
    print(
        "  by package: "
        + ", ".join(
            f"{name} {size / more:,.0f} B"
            for name, size in sorted(packages.items(), key=lambda item: -item[1])[:6]
        )
    )
    print(f"  top {top} lines (bytes per stream, blocks per stream):")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        print(f"    {stat.size_diff / more:9,.0f} B {stat.count_diff / more:7.2f} blocks  "
              f"{_where(frame.filename)}:{frame.lineno}")  # fmt: skip


def profile_batch(case: Case, client: str, url: str, n: int) -> Tuple[float, pstats.Stats]:
    import bench_batch

    kind = case.options["of"]
    base, _, variant = client.partition("+")  # aiohttp+keep: the loop keeping its answers
    keep = variant == "keep"
    if base == "requests":
        run = bench_batch.raw_sync(kind, url, n, keep)
    elif base == "aiohttp":
        run = lambda: asyncio.run(bench_batch.raw_async(kind, url, n, keep))  # noqa: E731
    else:
        run = bench_batch.gc_batch(kind, client, url, n, None)
    run()  # warm-up
    cpu = time.process_time()
    run()
    cpu = time.process_time() - cpu
    with AllThreads() as profiles:
        run()
    return cpu / n, profiles.stats()


def report(
    client: str, cpu: float, stats: pstats.Stats, units: int, top: int, package: str = ""
) -> None:
    raw: Dict[Key, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    scale = 1e6 / units
    print(f"\n=== {client}: {cpu * 1e6:.2f} µs/unit unprofiled, {total * scale:.2f} profiled")
    packages: Dict[str, float] = defaultdict(float)
    for (filename, _, _), entry in raw.items():
        packages[_package(_where(filename))] += entry[2]
    print("  own time by package (µs/unit, share):")
    for name, own in sorted(packages.items(), key=lambda item: -item[1])[:12]:
        print(f"    {own * scale:9.2f}  {own / total:6.1%}  {name}")
    print(f"  top {top} functions by own time (own µs/unit, cumulative µs/unit, calls/unit):")
    rows: List[Tuple[float, float, float, str]] = []
    for (filename, line, name), (_, calls, own, cumulative, _) in raw.items():
        where = _where(filename)
        label = name if where.startswith("~") else f"{where}:{line} {name}"
        rows.append((own * scale, cumulative * scale, calls / units, label))
    for own, cumulative, calls, label in sorted(rows, reverse=True)[:top]:
        print(f"    {own:9.2f} {cumulative:9.2f} {calls:7.2f}  {label}")
    if package:
        print(f"  {package} functions by cumulative time (own, cumulative µs/unit, calls/unit):")
        mine = [row for row in rows if row[3].startswith(package + "/")]
        for own, cumulative, calls, label in sorted(mine, key=lambda row: -row[1])[:top]:
            print(f"    {own:9.2f} {cumulative:9.2f} {calls:7.2f}  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    kinds = ("chat", "stream", "embed", "streams", "batch")
    names = [c.name for c in CASES if c.kind in kinds and c.options.get("of") != "vectors"]
    parser.add_argument("case", choices=names)
    parser.add_argument("clients", nargs="+")
    parser.add_argument("-n", type=int, help="calls to profile (default: the case's N / 4)")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--package", default="gatewayclient", help="also list its functions")
    parser.add_argument("--memory", action="store_true", help="streams-*: allocations per stream")
    args = parser.parse_args()
    case = next(case for case in CASES if case.name == args.case)
    worlds = {variant(c) for c in args.clients} & {"no-otel", "otel-sdk"}
    if len(worlds) > 1 or (worlds and len(args.clients) > 1):
        parser.error("+no-otel and +otel-sdk change the process: profile them one per run")
    features.prepare(worlds.pop() if worlds else "")
    streams = case.kind == "streams"
    n = args.n or (case.n if streams else max(1, case.n // 4))
    units = n * (case.options["chunks"] if streams else 1000 if case.kind == "stream" else 1)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="gc-prof-"))
        servers = stack.enter_context(Servers(Path(tmp), use_nginx=not args.no_nginx))
        url = servers.stream_url if case.kind == "stream" else servers.api_url
        if streams:
            url = servers.start_drip(DRIP_INTERVAL_MS[False])
        if any("+redis" in client for client in args.clients):
            import _local_servers

            workloads.REDIS_URL = stack.enter_context(_local_servers.redis_server())
        print(f"{case.name}: {n} calls, {units} units; server {servers.kind}", file=sys.stderr)
        for client in args.clients:
            if streams and args.memory:
                memory_streams(case, client, url, n, args.top)
                continue
            if streams:
                cpu, stats = profile_streams(case, client, url, n)
            elif case.kind == "batch":
                cpu, stats = profile_batch(case, client, url, n)
            else:
                cpu, stats = profile(case, client, url, n)
            report(client, cpu, stats, units, args.top, args.package)


if __name__ == "__main__":
    main()
