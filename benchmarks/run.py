"""The benchmark runner: gatewayclient against the raw transports, the openai SDK, and itself
with each feature of the second part switched on.

    python benchmarks/run.py                      # the full run (about 20 minutes on 2 cores)
    python benchmarks/run.py --baseline df13821   # also the package as it was at that commit
    python benchmarks/run.py --quick              # the smoke: every case once, tiny N

It starts the local servers (``servers.py``: nginx when installed, else aiohttp; the stream
always from aiohttp; the drip servers, the vectors server and a redis-server when a chosen case
needs them), then, round after round, runs every (case, client) measurement in a fresh process
(``workloads.py``, ``many_streams.py``, ``bench_batch.py``), clients interleaved and their order
rotated each round; a case with ``processes`` > 1 measures each client in that many processes
per round (its units split between them, interleaved with the other clients') and takes the
fastest process's CPU per unit as the round's. Every ratio is taken within a round against
another client of the same round (the case's first, or the one its target names); the table
gives the median and min-max over the rounds. The cases and their targets are in ``cases.py``;
summaries and verdicts in ``report.py``. Prints the table and the targets, writes JSON to
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import bench_batch
import report
from cases import CASES, MEMORY_CLIENTS, OPTIONAL, Case, base_client, variant
from servers import Servers

HERE = Path(__file__).resolve().parent
IMPORTS = {
    "requests": "import requests",
    "gc": "import gatewayclient",
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
import os
dirs = sorted({{os.path.dirname(m.__file__) for n, m in list(sys.modules.items())
               if n.split(".")[0] == "gatewayclient" and getattr(m, "__file__", None)}})
print(json.dumps({{"cpu_s": cpu, "wall_s": wall, "units": 1, "calls": 1, "connections": 0,
                  "modules": [m for m in {optional!r} if m in sys.modules],
                  "package_dirs": dirs}}))
"""
DRIP_INTERVAL_MS = {False: 100.0, True: 50.0}  # full, quick


@dataclass
class Context:
    """What a measurement needs besides its case: the servers and where the baseline is."""

    servers: Servers
    quick: bool
    drip_url: str = ""
    vectors_url: str = ""
    redis_url: str = ""
    baseline: str = ""  # a directory holding the baseline's gatewayclient/


def run_process(argv: List[str], env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=HERE, env=env, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed:\n{done.stderr[-3000:]}")
    result: Dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _env(client: str, ctx: Context, imports: bool = False) -> Dict[str, str]:
    env = dict(os.environ)
    if imports and not ctx.quick:  # installed packages have their bytecode cached; measure that
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    if client.endswith("@base"):
        env["PYTHONPATH"] = ctx.baseline
    return env


def measure(case: Case, client: str, ctx: Context, n: Optional[int] = None) -> Dict[str, Any]:
    result = _measure(case, client, ctx, case.calls(client, ctx.quick) if n is None else n)
    if client.endswith("@base"):
        strays = [d for d in result["package_dirs"] if not d.startswith(ctx.baseline)]
        if strays or not result["package_dirs"]:
            raise RuntimeError(f"{client} imported gatewayclient modules from {strays}")
    return result


def _measure(case: Case, client: str, ctx: Context, n: int) -> Dict[str, Any]:
    if case.kind == "import":
        return measure_import(client, n, ctx)
    if case.kind == "streams":
        return measure_streams(case, client, n, ctx)
    if case.kind == "batch":
        return measure_batch(case, client, n, ctx)
    spec = {
        "kind": case.kind,
        "client": client,
        "n": n,
        "warmup": case.warmup if not ctx.quick else min(case.warmup, 10 * case.concurrency),
        "concurrency": case.concurrency,
        "url": ctx.servers.stream_url if case.kind == "stream" else ctx.servers.api_url,
        "redis_url": ctx.redis_url,
    }
    argv = [sys.executable, str(HERE / "workloads.py"), json.dumps(spec)]
    return run_process(argv, _env(client, ctx))


def measure_import(client: str, processes: int, ctx: Context) -> Dict[str, Any]:
    """The median of ``processes`` fresh interpreters, each timing one import statement."""
    code = _IMPORT_CODE.format(statement=IMPORTS[base_client(client)], optional=OPTIONAL)
    env = _env(client, ctx, imports=True)
    runs = [run_process([sys.executable, "-c", code], env) for _ in range(processes)]
    result = {key: statistics.median(run[key] for run in runs) for key in ("cpu_s", "wall_s")}
    modules = sorted({module for run in runs for module in run["modules"]})
    dirs = sorted({path for run in runs for path in run["package_dirs"]})
    return {**result, "units": 1, "calls": 1, "connections": 0, "modules": modules,
            "package_dirs": dirs}  # fmt: skip


def measure_streams(case: Case, client: str, n: int, ctx: Context) -> Dict[str, Any]:
    chunks = case.options["quick_chunks" if ctx.quick else "chunks"]
    interval = DRIP_INTERVAL_MS[ctx.quick]
    spec = {"client": client, "n": n, "chunks": chunks, "url": ctx.drip_url,
            "warmup": case.warmup, "interval_ms": interval,
            "deadline_s": 120 + 3 * chunks * interval / 1e3}  # fmt: skip
    cpu, wall = ctx.servers.drip_cpu(), time.monotonic()
    result = run_process([sys.executable, str(HERE / "many_streams.py"), json.dumps(spec)])
    wall = time.monotonic() - wall
    used = [after - before for before, after in zip(cpu, ctx.servers.drip_cpu())]
    result["server_cpu_share"] = max(used) / wall  # the busiest drip server's share of a CPU
    return result


def measure_batch(case: Case, client: str, n: int, ctx: Context) -> Dict[str, Any]:
    kind = case.options["of"]
    name = client.split("@", 1)[0]
    repeats = 1 if ctx.quick or kind == "vectors" else bench_batch.repeats(name)
    spec = {"kind": kind, "client": name, "n": n, "url": ctx.servers.api_url, "repeats": repeats}
    if kind == "vectors":
        spec.update(url=ctx.vectors_url, encoding=variant(client))
    argv = [sys.executable, str(HERE / "bench_batch.py"), "--measure", json.dumps(spec)]
    return {"calls": n * repeats, "connections": 0, **run_process(argv, _env(client, ctx))}


def measure_memory(client: str, ctx: Context) -> Dict[str, Any]:
    spec = {
        "kind": "memory",
        "client": client,
        "n": 300 if ctx.quick else 20_000,
        "warmup": 50 if ctx.quick else 1000,
        "url": ctx.servers.api_url,
    }
    return run_process([sys.executable, str(HERE / "memory_workload.py"), json.dumps(spec)])


def rotated(items: Sequence[str], shift: int) -> List[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def available(case: Case, with_openai: bool, ctx: Context) -> List[str]:
    def measured(client: str) -> bool:
        if client.startswith("openai"):
            return with_openai
        if client.endswith("@base"):
            return bool(ctx.baseline)
        return "+redis" not in client or bool(ctx.redis_url)

    return [client for client in case.clients if measured(client)]


def shares(total: int, parts: int) -> List[int]:
    """``total`` units split into ``parts`` (at least one unit each)."""
    parts = max(1, min(parts, total))
    size, extra = divmod(total, parts)
    return [size + (part < extra) for part in range(parts)]


SUMMED = ("cpu_s", "wall_s", "units", "calls", "connections", "spans")


def merged(parts: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One round's result from its processes. CPU and wall time per unit are the fastest
    process's: interference (a neighbour, the scheduler placing the process on the server's
    CPU) only ever adds time, so the fastest process is the code's cost with the least of it,
    as ``timeit`` takes the minimum of its repeats. Units and counts are summed; the rest is as
    the first process had it (package_dirs: all of them); each process's CPU per unit and the
    sums are kept."""
    if len(parts) == 1:
        return parts[0]
    result = {**parts[0], **{key: sum(part[key] for part in parts) for key in SUMMED
                             if key in parts[0]}}  # fmt: skip
    result["cpu_s_sum"], result["wall_s_sum"] = result["cpu_s"], result["wall_s"]
    fastest = min(parts, key=lambda part: part["cpu_s"] / part["units"])
    for key in ("cpu_s", "wall_s"):
        result[key] = fastest[key] / fastest["units"] * result["units"]
    result["package_dirs"] = sorted({d for part in parts for d in part.get("package_dirs", ())})
    result["per_process_cpu_us"] = [part["cpu_s"] / part["units"] * 1e6 for part in parts]
    return result


def run_round(case: Case, clients: List[str], ctx: Context, index: int) -> Dict[str, Any]:
    """Each client's result for round ``index``: measured in ``case.processes`` processes (2 at
    most in --quick), the clients' processes interleaved and their order rotated each time."""
    processes = min(case.processes, 2) if ctx.quick else case.processes
    parts: Dict[str, List[Dict[str, Any]]] = {client: [] for client in clients}
    for part in range(processes):
        for client in rotated(clients, index + part):
            units = shares(case.calls(client, ctx.quick), processes)
            if part < len(units):
                parts[client].append(measure(case, client, ctx, units[part]))
    return {client: merged(results) for client, results in parts.items()}


def run_rounds(
    cases: List[Case], ctx: Context, rounds: int, with_openai: bool
) -> Dict[str, Dict[str, List[Dict[str, Any]]]]:
    samples: Dict[str, Dict[str, List[Dict[str, Any]]]] = {case.name: {} for case in cases}
    for index in range(rounds):
        for case in cases:
            clients = available(case, with_openai, ctx)
            for client, result in run_round(case, clients, ctx, index).items():
                samples[case.name].setdefault(client, []).append(result)
                per_unit = result["cpu_s"] / result["units"] * 1e6
                print(f"round {index + 1}/{rounds}  {case.name:<17} {client:<21} "
                      f"{per_unit:10.2f} µs/{case.unit}", file=sys.stderr, flush=True)  # fmt: skip
    return samples


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE).stdout.strip()


def export_baseline(ref: str, into: Path) -> str:
    """The package as it was at ``ref``, unpacked under ``into``; its short commit."""
    archive = subprocess.run(["git", "archive", ref, "gatewayclient"], capture_output=True,
                             cwd=HERE.parent, check=True).stdout  # fmt: skip
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return _git("rev-parse", "--short", ref)


def machine(servers: Servers) -> Dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("gatewayclient", "requests", "urllib3", "aiohttp", "openai", "redis", "limits",
                 "opentelemetry-api", "opentelemetry-sdk"):  # fmt: skip
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    where = "import gatewayclient, os; print(os.path.dirname(gatewayclient.__file__))"
    source = subprocess.run(
        [sys.executable, "-c", where], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    commit = _git("rev-parse", "--short", "HEAD")
    if Path(source) == HERE.parent / "gatewayclient":
        dirty = _git("status", "--porcelain", "--", str(HERE.parent / "gatewayclient"))
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


def _redis_available() -> bool:
    import _local_servers

    try:
        _local_servers._redis_binary()
    except SystemExit:
        return False
    return True


def start_services(cases: List[Case], ctx: Context, stack: contextlib.ExitStack) -> None:
    """The servers only some cases need, started when one of them was chosen."""
    clients = {client for case in cases for client in case.clients}
    if any(case.kind == "streams" for case in cases):
        ctx.drip_url = ctx.servers.start_drip(DRIP_INTERVAL_MS[ctx.quick])
    if any(case.options.get("of") == "vectors" for case in cases):
        ctx.vectors_url = ctx.servers.start_vectors()
    if any("+redis" in client for client in clients):
        if _redis_available():
            import _local_servers

            ctx.redis_url = stack.enter_context(_local_servers.redis_server())
        else:
            print("no redis-server: the +redis clients are left out", file=sys.stderr)


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke: 1 round, tiny N")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; --quick: 1)")
    names = [case.name for case in CASES]
    parser.add_argument("--cases", help=f"comma-separated, of: {','.join(names)},memory")
    parser.add_argument("--baseline", metavar="REF", help="also measure gatewayclient at REF")
    parser.add_argument("--no-nginx", action="store_true", help="serve from aiohttp only")
    parser.add_argument("--no-openai", action="store_true", help="leave the openai SDK out")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/)")
    args = parser.parse_args(argv)
    args.chosen = set(args.cases.split(",")) if args.cases else {*names, "memory"}
    unknown = args.chosen - {*names, "memory"}
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    cases = [case for case in CASES if case.name in args.chosen]
    rounds = args.rounds or (1 if args.quick else 5)
    with_openai = not args.no_openai and util.find_spec("openai") is not None

    started, load_before = time.monotonic(), [round(load, 2) for load in os.getloadavg()]
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load_before[0]} on {os.cpu_count()} CPUs: other processes "
              "compete for the CPUs, expect noisy numbers", file=sys.stderr)  # fmt: skip
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gc-bench-")))
        servers = stack.enter_context(Servers(tmp, use_nginx=not args.no_nginx))
        ctx = Context(servers, args.quick)
        start_services(cases, ctx, stack)
        info = machine(servers)  # before the rounds: the commit measured, not a later one
        if args.baseline:
            ctx.baseline = str(tmp / "baseline")
            info["baseline"] = export_baseline(args.baseline, tmp / "baseline")
        print(f"servers: {servers.kind} at {servers.api_url}; stream: aiohttp at "
              f"{servers.stream_url}; drip: {ctx.drip_url or '-'}; redis: "
              f"{ctx.redis_url or '-'}", file=sys.stderr)  # fmt: skip
        for case in cases:  # bytecode compiled, caches warm: nothing below pays first-run costs
            if case.kind == "import":
                for client in available(case, with_openai, ctx):
                    measure_import(client, 1, ctx)
        samples = run_rounds(cases, ctx, rounds, with_openai)
        memory = {}
        if "memory" in args.chosen:
            for client in MEMORY_CLIENTS:
                memory[client] = measure_memory(client, ctx)
                print(f"memory {client}: {memory[client]}", file=sys.stderr, flush=True)
        info["load_average_1_5_15"] = [round(load, 2) for load in os.getloadavg()]
    summary = {case.name: report.summarize(case, samples[case.name]) for case in cases}
    checks = report.verdicts(cases, samples, args.quick, memory)
    elapsed = time.monotonic() - started
    info["load_average_before"] = load_before
    document = {"machine": info, "rounds": rounds, "quick": args.quick, "elapsed_s": elapsed,
                "summary": summary, "memory": memory, "checks": checks}  # fmt: skip
    show(cases, document)
    out = args.out or HERE / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1))
    print(f"JSON: {out}")
    return 1 if args.strict and any(row["passed"] is False for row in checks) else 0


def show(cases: List[Case], document: Dict[str, Any]) -> None:
    print(report.table(cases, document["summary"]))
    if document["memory"]:
        print("\nmemory growth after warm-up (chat calls; traced = Python objects still alive)")
        for client, result in document["memory"].items():
            print(f"  {client:<10} {result['calls']:>6,} calls: traced {result['traced_mb']:.3f}"
                  f" MB, RSS {result['rss_mb']:.3f} MB")  # fmt: skip
    print("\ntargets (issue: what, median [min-max] over rounds)")
    for row in document["checks"]:
        word = {None: "    ", True: "PASS", False: "MISS"}[row["passed"]]
        print(f"  {word}  [{row['issue']}] {row['what']}: {row['value']} ({row['target']})")
    info = document["machine"]
    print(f"\n{document['rounds']} round(s), {document['elapsed_s']:.0f} s, server "
          f"{info['server']}, {info['cpus']} CPUs {info['cpu_model']}, Python {info['python']}; "
          f"load average {info['load_average_before'][0]} before, "
          f"{info['load_average_1_5_15'][0]} after")  # fmt: skip


def _stop_on_sigterm() -> None:
    """``kill`` (SIGTERM) ends the run as Ctrl-C does: through the ExitStack that stops the
    servers it started, by PID, instead of leaving them behind."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    _stop_on_sigterm()
    sys.exit(main())
