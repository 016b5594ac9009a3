"""The benchmark runner: gatewayclient against the raw transports and the openai SDK.

    python benchmarks/run.py             # the full run (about 8 minutes on 2 cores)
    python benchmarks/run.py --quick     # the smoke: everything runs once, tiny N, < 60 s

It starts the local servers (``servers.py``: nginx when installed, else aiohttp; the stream
always from aiohttp), then, round after round, runs every (case, client) measurement in a fresh
process (``workloads.py``), clients interleaved and their order rotated each round. Each
client's CPU per unit is divided by the raw transport's of the same round (raw requests for
sync clients, raw aiohttp for async ones); the table gives the median and min-max over rounds
of both. Prints the table, writes JSON to benchmarks/results/, stops the servers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from servers import Servers

HERE = Path(__file__).resolve().parent
SYNC = ("requests", "gc-sync", "openai-sync")
ASYNC = ("aiohttp", "gc-async", "openai-async")
IMPORTS = {
    "requests": "import requests",
    "gc-sync": "import gatewayclient; gatewayclient.SyncGatewayClient",
    "openai-sync": "import openai; openai.OpenAI",
    "aiohttp": "import aiohttp",
    "gc-async": "import gatewayclient; gatewayclient.AsyncGatewayClient",
    "openai-async": "import openai; openai.AsyncOpenAI",
}
_IMPORT_CODE = """\
import time
cpu, wall = time.process_time(), time.perf_counter()
{statement}
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
import json, sys
print(json.dumps({{"cpu_s": cpu, "wall_s": wall, "units": 1, "calls": 1, "connections": 0,
                  "aiohttp_loaded": "aiohttp" in sys.modules}}))
"""


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # chat | stream | embed | import
    clients: Tuple[str, ...]  # the first is the raw transport every ratio is taken against
    n: int  # timed calls per measurement (imports: processes per round)
    quick_n: int
    warmup: int
    unit: str
    target: Optional[float] = None  # the ceiling for gatewayclient's median ratio
    concurrency: int = 1

    def calls(self, client: str, quick: bool) -> int:
        n = self.quick_n if quick else self.n
        if client.startswith("openai") and self.kind != "import":
            return max(1, n // 5)  # the SDK costs several times more per unit: fewer calls
        return n


CASES = [
    Case("chat-sync", "chat", (*SYNC, "requests-env"), 4000, 40, 200, "call", 1.15),
    Case("chat-async64", "chat", ASYNC, 6400, 128, 256, "call", 1.3, concurrency=64),
    Case("stream-sync", "stream", SYNC, 100, 2, 5, "chunk", 1.5),
    Case("stream-async", "stream", ASYNC, 100, 2, 5, "chunk", 1.5),
    Case("embed-sync", "embed", SYNC, 1500, 20, 100, "call", 1.2),
    Case("embed-async64", "embed", ASYNC, 3200, 128, 256, "call", 1.2, concurrency=64),
    Case("import-sync", "import", SYNC, 6, 2, 1, "import", 1.5),
    Case("import-async", "import", ASYNC, 6, 2, 1, "import"),
]
MEMORY_CLIENTS = ("gc-sync", "gc-async")
MEMORY_TARGET_MB = 2.0


def run_process(argv: List[str], env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=HERE, env=env, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed:\n{done.stderr[-3000:]}")
    result: Dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(case: Case, client: str, servers: Servers, quick: bool) -> Dict[str, Any]:
    if case.kind == "import":
        return measure_import(client, case.calls(client, quick), quick)
    spec = {
        "kind": case.kind,
        "client": client,
        "n": case.calls(client, quick),
        "warmup": case.warmup if not quick else min(case.warmup, 10 * case.concurrency),
        "concurrency": case.concurrency,
        "url": servers.stream_url if case.kind == "stream" else servers.api_url,
    }
    return run_process([sys.executable, str(HERE / "workloads.py"), json.dumps(spec)])


def _import_env(quick: bool) -> Dict[str, str]:
    env = dict(os.environ)
    if not quick:  # installed packages have their bytecode cached; measure that state
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def measure_import(client: str, processes: int, quick: bool) -> Dict[str, Any]:
    """The median of ``processes`` fresh interpreters, each timing one import statement."""
    argv = [sys.executable, "-c", _IMPORT_CODE.format(statement=IMPORTS[client])]
    env = _import_env(quick)
    runs = [run_process(argv, env) for _ in range(processes)]
    result = {key: statistics.median(run[key] for run in runs) for key in ("cpu_s", "wall_s")}
    loaded = any(run["aiohttp_loaded"] for run in runs)
    return {**result, "units": 1, "calls": 1, "connections": 0, "aiohttp_loaded": loaded}


def measure_memory(client: str, servers: Servers, quick: bool) -> Dict[str, Any]:
    spec = {
        "kind": "memory",
        "client": client,
        "n": 300 if quick else 20_000,
        "warmup": 50 if quick else 1000,
        "url": servers.api_url,
    }
    return run_process([sys.executable, str(HERE / "workloads.py"), json.dumps(spec)])


def rotated(items: Sequence[str], shift: int) -> List[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def available(case: Case, with_openai: bool) -> Tuple[str, ...]:
    return tuple(c for c in case.clients if with_openai or not c.startswith("openai"))


def run_rounds(
    cases: List[Case], servers: Servers, rounds: int, quick: bool, with_openai: bool
) -> Dict[str, Dict[str, List[Dict[str, Any]]]]:
    samples: Dict[str, Dict[str, List[Dict[str, Any]]]] = {case.name: {} for case in cases}
    for index in range(rounds):
        for case in cases:
            for client in rotated(available(case, with_openai), index):
                result = measure(case, client, servers, quick)
                samples[case.name].setdefault(client, []).append(result)
                per_unit = result["cpu_s"] / result["units"] * 1e6
                print(
                    f"round {index + 1}/{rounds}  {case.name:<13} {client:<13} "
                    f"{per_unit:10.2f} µs/{case.unit}",
                    file=sys.stderr,
                    flush=True,
                )
    return samples


def spread(values: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(case: Case, by_client: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Any]:
    raw = [r["cpu_s"] / r["units"] for r in by_client[case.clients[0]]]
    out: Dict[str, Any] = {}
    for client, results in by_client.items():
        cpu = [r["cpu_s"] / r["units"] for r in results]
        ratios = [mine / base for mine, base in zip(cpu, raw)]
        out[client] = {
            "cpu_per_unit_us": spread([c * 1e6 for c in cpu]),
            "units_per_s": spread([r["units"] / r["wall_s"] for r in results]),
            "ratio": spread(ratios),
            "ratios": ratios,
            "connections_per_call": spread([r["connections"] / r["calls"] for r in results]),
            "aiohttp_loaded": any(r["aiohttp_loaded"] for r in results),
            "rounds": results,
        }
    return out


def verdicts(cases: List[Case], summary: Dict[str, Any], memory: Dict[str, Any]) -> List[dict]:
    rows = []
    for case in cases:
        mine = "gc-sync" if "gc-sync" in case.clients else "gc-async"
        if case.target is not None and mine in summary[case.name]:
            ratio = summary[case.name][mine]["ratio"]["median"]
            rows.append(
                {"what": f"{case.name}: {mine} / {case.clients[0]}", "value": ratio,
                 "target": f"<= {case.target}x", "pass": ratio <= case.target}
            )  # fmt: skip
    for case, client in (("import-sync", "gc-sync"), ("chat-sync", "gc-sync")):
        if client in summary.get(case, {}):
            loaded = summary[case][client]["aiohttp_loaded"]
            rows.append(
                {"what": f"{case}: aiohttp in sys.modules after {client}", "value": loaded,
                 "target": "False", "pass": not loaded}
            )  # fmt: skip
    for client, result in memory.items():
        if client.startswith("gc"):
            worst = max(result["traced_mb"], result["rss_mb"])
            rows.append(
                {"what": f"memory: {client}, {result['calls']:,} calls (traced, RSS)",
                 "value": f"{result['traced_mb']:.2f} MB, {result['rss_mb']:.2f} MB",
                 "target": f"<= {MEMORY_TARGET_MB} MB", "pass": worst <= MEMORY_TARGET_MB}
            )  # fmt: skip
    return rows


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}" if value < 10 else f"{value:.1f}"


def _range(s: Dict[str, float], scale: float = 1.0, ratio: bool = False) -> str:
    if ratio:
        return f"{s['median']:.2f}x [{s['min']:.2f}-{s['max']:.2f}]"
    return f"{_fmt(s['median'] * scale)} [{_fmt(s['min'] * scale)}-{_fmt(s['max'] * scale)}]"


def table(cases: List[Case], summary: Dict[str, Any]) -> str:
    head = ("case", "client", "CPU per unit, median [min-max]", "units/s (wall)",
            "ratio vs raw, median [min-max]", "new conns/call", "target")  # fmt: skip
    lines = [head]
    for case in cases:
        for client in case.clients:
            if client not in summary[case.name]:
                continue
            s = summary[case.name][client]
            import_case = case.kind == "import"
            unit = "ms/import" if import_case else f"µs/{case.unit}"
            scale = 1e-3 if import_case else 1.0
            is_target = case.target is not None and client.startswith("gc")
            lines.append(
                (case.name, client, f"{_range(s['cpu_per_unit_us'], scale)} {unit}",
                 "" if import_case else _fmt(s["units_per_s"]["median"]),
                 "1 (raw)" if client == case.clients[0] else _range(s["ratio"], ratio=True),
                 "" if import_case else f"{s['connections_per_call']['median']:.2f}",
                 f"<= {case.target}x" if is_target else "")
            )  # fmt: skip
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in lines]
    out.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in out)


def machine(servers: Servers) -> Dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("gatewayclient", "requests", "urllib3", "aiohttp", "openai", "httpx2", "httpx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    where = "import gatewayclient, os; print(os.path.dirname(gatewayclient.__file__))"
    source = subprocess.run(
        [sys.executable, "-c", where], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    if Path(source) == HERE.parent / "gatewayclient":
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "gatewayclient"],
            capture_output=True, text=True, cwd=HERE.parent,
        ).stdout.strip()  # fmt: skip
        commit += " + uncommitted changes in gatewayclient/" if dirty else ""
    else:
        commit = f"gatewayclient from {source} (the repository is at {commit})"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit,
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1_5_15": [round(load, 2) for load in os.getloadavg()],
        "server": servers.kind,
        "stream_server": "aiohttp (one write per event)",
        "versions": versions,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke: 1 round, tiny N")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; --quick: 1)")
    names = [case.name for case in CASES]
    parser.add_argument("--cases", help=f"comma-separated, of: {','.join(names)},memory")
    parser.add_argument("--no-nginx", action="store_true", help="serve from aiohttp only")
    parser.add_argument("--no-openai", action="store_true", help="leave the openai SDK out")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/)")
    args = parser.parse_args(argv)
    chosen = set(args.cases.split(",")) if args.cases else {*names, "memory"}
    unknown = chosen - {*names, "memory"}
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    cases = [case for case in CASES if case.name in chosen]
    rounds = args.rounds or (1 if args.quick else 5)
    with_openai = not args.no_openai and util.find_spec("openai") is not None

    started, load_before = time.monotonic(), [round(load, 2) for load in os.getloadavg()]
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load_before[0]} on {os.cpu_count()} CPUs: other processes "
              "compete for the CPUs, expect noisy numbers", file=sys.stderr)  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="gc-bench-") as tmp,
        Servers(Path(tmp), use_nginx=not args.no_nginx) as servers,
    ):
        print(f"servers: {servers.kind} at {servers.api_url}; stream: aiohttp at "
              f"{servers.stream_url}", file=sys.stderr)  # fmt: skip
        info = machine(servers)  # before the rounds: the commit measured, not a later one
        for case in cases:  # bytecode compiled, caches warm: nothing below pays first-run costs
            if case.kind == "import":
                for client in available(case, with_openai):
                    measure_import(client, 1, args.quick)
        samples = run_rounds(cases, servers, rounds, args.quick, with_openai)
        memory = {}
        if "memory" in chosen:
            for client in MEMORY_CLIENTS:
                memory[client] = measure_memory(client, servers, args.quick)
                print(f"memory {client}: {memory[client]}", file=sys.stderr, flush=True)
        info["load_average_1_5_15"] = [round(load, 2) for load in os.getloadavg()]
    summary = {case.name: summarize(case, samples[case.name]) for case in cases}
    checks = verdicts(cases, summary, memory)
    elapsed = time.monotonic() - started

    print(table(cases, summary))
    if memory:
        print("\nmemory growth after warm-up (chat calls; traced = Python objects still alive)")
        for client, result in memory.items():
            print(f"  {client:<10} {result['calls']:>6,} calls: traced {result['traced_mb']:.3f}"
                  f" MB, RSS {result['rss_mb']:.3f} MB")  # fmt: skip
    print("\ntargets (median ratio of one run)")
    for row in checks:
        value = f"{row['value']:.2f}x" if isinstance(row["value"], float) else str(row["value"])
        print(f"  {'PASS' if row['pass'] else 'MISS'}  {row['what']}: {value} ({row['target']})")
    print(f"\n{rounds} round(s), {elapsed:.0f} s, server {info['server']}, "
          f"{info['cpus']} CPUs {info['cpu_model']}, Python {info['python']}; load average "
          f"{load_before[0]} before, {info['load_average_1_5_15'][0]} after")  # fmt: skip

    out = args.out or HERE / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    info["load_average_before"] = load_before
    document = {"machine": info, "rounds": rounds, "quick": args.quick, "elapsed_s": elapsed,
                "summary": summary, "memory": memory, "checks": checks}  # fmt: skip
    out.write_text(json.dumps(document, indent=1))
    print(f"JSON: {out}")
    return 1 if args.strict and not all(row["pass"] for row in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
