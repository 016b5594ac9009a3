"""What OpenTelemetry costs a call: CPU per chat call, sync and async clients, in three worlds.

    python benchmarks/otel_cost.py [--rounds 5] [--calls 2000] [--baseline-tree PATH]

- ``absent``: opentelemetry cannot be imported (as if not installed);
- ``api``: the API installed, no SDK configured (the API's no-ops: the contract's 5 % bound);
- ``sdk``: the SDK with a tracer provider exporting to memory and a meter provider with an
  in-memory reader (what a traced service pays).
With ``--baseline-tree``, ``absent`` also runs against that tree of the package (a checkout
from before telemetry existed), so "unchanged without opentelemetry" is measured, not assumed.

Each measurement runs in a fresh process against a FakeGateway in a process of its own on
127.0.0.1, rounds interleaved; medians over rounds and ratios against ``absent``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from _local_servers import fake_gateway

HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
MODEL = "openai/gpt-4o"
WORLDS = ("absent", "api", "sdk")

_BLOCK = """
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""


def _sdk() -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def child(world: str, url: str, token: str, calls: int) -> Dict[str, float]:
    """CPU microseconds per chat call in this process, sync then async."""
    if world == "absent":
        exec(_BLOCK)
    elif world == "sdk":
        _sdk()
    from gatewayclient import AsyncGatewayClient, SyncGatewayClient

    result: Dict[str, float] = {}
    with SyncGatewayClient(url, token) as client:
        for _ in range(50):
            client.chat_completion(MODEL, HELLO)
        started = time.process_time()
        for _ in range(calls):
            client.chat_completion(MODEL, HELLO)
        result["sync"] = (time.process_time() - started) / calls * 1e6

    async def run() -> float:
        async with AsyncGatewayClient(url, token) as client:
            for _ in range(50):
                await client.chat_completion(MODEL, HELLO)
            started = time.process_time()
            for _ in range(calls):
                await client.chat_completion(MODEL, HELLO)
            return (time.process_time() - started) / calls * 1e6

    result["async"] = asyncio.run(run())
    result["otel_loaded"] = float(any(name.startswith("opentelemetry") for name in sys.modules))
    return result


def measure(world: str, url: str, token: str, calls: int, tree: Optional[str]) -> Dict[str, Any]:
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    command = [sys.executable, __file__, "--child", world, url, token, str(calls)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"{world} failed:\n{out.stderr}")
    measured: Dict[str, Any] = json.loads(out.stdout)
    return measured


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--baseline-tree", help="also measure this tree of the package, absent")
    args = parser.parse_args(argv)
    worlds: List[Any] = [(world, None) for world in WORLDS]
    if args.baseline_tree:
        worlds.append(("absent", args.baseline_tree))
    samples: Dict[str, Dict[str, List[float]]] = {}
    token = "test-token"  # the FakeGateway's default
    with fake_gateway() as url:
        for round_ in range(args.rounds):
            for world, tree in worlds[round_ % len(worlds) :] + worlds[: round_ % len(worlds)]:
                name = "baseline" if tree else world
                got = measure(world, url, token, args.calls, tree)
                for client in ("sync", "async"):
                    samples.setdefault(name, {}).setdefault(client, []).append(got[client])
                print(f"round {round_ + 1}: {name:<9} sync {got['sync']:7.1f} µs  "
                      f"async {got['async']:7.1f} µs  opentelemetry loaded: "
                      f"{bool(got['otel_loaded'])}", flush=True)  # fmt: skip
    print("\nmedian CPU per chat call, ratio to 'absent' (opentelemetry not installed):")
    for client in ("sync", "async"):
        base = statistics.median(samples["absent"][client])
        for name, by_client in samples.items():
            value = statistics.median(by_client[client])
            print(f"  {client:<5} {name:<9} {value:7.1f} µs  {value / base:5.3f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        world_, url_, token_, calls_ = sys.argv[2:6]
        print(json.dumps(child(world_, url_, token_, int(calls_))))
    else:
        main()
