"""One run's numbers: summaries over rounds, the targets judged, the table, BENCHMARKS.md's text.

python benchmarks/report.py benchmarks/results/<timestamp>.json   # Markdown for BENCHMARKS.md
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from cases import CASES, MEMORY_TARGET_MB, Case, Check

Result = Dict[str, Any]


def spread(values: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _cpu(r: Result) -> float:
    return float(r["cpu_s"]) / r["units"]


def _rate(r: Result) -> float:
    return float(r["units"]) / r["wall_s"]


# metric -> (per round, from this client's result and the reference's; judged on every round?)
METRICS: Dict[str, Callable[[Result, Result], Any]] = {
    "ratio": lambda r, b: _cpu(r) / _cpu(b),
    "delta_us": lambda r, b: (_cpu(r) - _cpu(b)) * 1e6,
    "wall_delta_us": lambda r, b: (r["wall_s"] / r["units"] - b["wall_s"] / b["units"]) * 1e6,
    "rate_ratio": lambda r, b: _rate(r) / _rate(b),
    "paired_ratio": lambda r, b: r["cpu_s"] / r["paired"]["cpu_s"],
    "paired_delta_us": lambda r, b: (r["cpu_s"] - r["paired"]["cpu_s"]) / r["units"] * 1e6,
    "paired_block_delta_us": lambda r, b: r["paired"]["block_delta_us"],
    "paired_wall_delta_us": lambda r, b: (r["wall_s"] - r["paired"]["wall_s"]) / r["units"] * 1e6,
    "rss_ratio": lambda r, b: r["rss_per_stream_kb"] / b["rss_per_stream_kb"],
    "rss_kb": lambda r, b: r["rss_per_stream_kb"],
    "trips": lambda r, b: r["trips"],
    "complete": lambda r, b: r["complete"],
    "all_open": lambda r, b: r["open_at_sample"],
    "fds_left": lambda r, b: r["fds_left"],
    "modules": lambda r, b: tuple(r["modules"]),
    "aiohttp_loaded": lambda r, b: r["aiohttp_loaded"],
}
EVERY = ("complete", "all_open", "fds_left", "modules", "aiohttp_loaded")
LABELS = {
    "ratio": "{client} CPU per {unit} / {against}",
    "delta_us": "{client} CPU per {unit} minus {against}",
    "wall_delta_us": "{client} wall time per {unit} minus {against}",
    "rate_ratio": "{client} {unit}s per second / {against}",
    "paired_ratio": "{client} CPU per {unit} / its twin without the variant, same process",
    "paired_delta_us": "{client} CPU per {unit} minus its twin's, same process (totals)",
    "paired_block_delta_us": (
        "{client} CPU per {unit} minus its twin's, same process (median of the block pairs)"
    ),
    "paired_wall_delta_us": "{client} wall time per {unit} minus its twin's, same process",
    "rss_ratio": "{client} RSS per open stream / {against}",
    "rss_kb": "{client} RSS per open stream",
    "trips": "{client} Redis round trips per call",
    "complete": "{client} streams complete (of {n})",
    "all_open": "{client} streams open at once (of {n})",
    "fds_left": "{client} file descriptors left after closing",
    "modules": "{client}: optional packages in sys.modules",
    "aiohttp_loaded": "{client}: aiohttp in sys.modules",
}
UNITS = {"delta_us": " µs", "wall_delta_us": " µs", "rss_kb": " KB", "trips": "",
         "paired_delta_us": " µs", "paired_block_delta_us": " µs",
         "paired_wall_delta_us": " µs"}  # fmt: skip


def summarize(case: Case, by_client: Dict[str, List[Result]]) -> Dict[str, Any]:
    """Per client: CPU per unit, rate, ratio to the case's first client, over the rounds."""
    base = by_client[case.clients[0]]
    out: Dict[str, Any] = {}
    for client, results in by_client.items():
        ratios = [METRICS["ratio"](r, b) for r, b in zip(results, base)]
        out[client] = {
            "cpu_per_unit_us": spread([_cpu(r) * 1e6 for r in results]),
            "units_per_s": spread([_rate(r) for r in results]),
            "ratio": spread(ratios),
            "ratios": ratios,
            "connections_per_call": spread([r["connections"] / r["calls"] for r in results]),
            "rounds": results,
        }
    return out


def judge(case: Case, check: Check, by_client: Dict[str, List[Result]], n: int) -> Optional[dict]:
    """The check's row, or None when its clients were not measured (no openai, no baseline)."""
    against = check.against or case.clients[0]
    if check.client not in by_client or against not in by_client:
        return None
    values = [METRICS[check.metric](r, b) for r, b in zip(by_client[check.client],
                                                         by_client[against])]  # fmt: skip
    label = LABELS[check.metric].format(client=check.client, unit=case.unit, against=against, n=n)
    row: Dict[str, Any] = {"issue": check.issue, "what": f"{case.name}: {label}"}
    if check.metric in EVERY:
        limit = n if check.limit == "n" else check.limit
        bad = [v for v in values if v != limit]
        row.update(value=repr(bad[0] if bad else values[0]), target=f"{limit!r} in every round",
                   passed=not bad)  # fmt: skip
        return row
    s = spread(values)
    unit = UNITS.get(check.metric, "x")
    row["value"] = f"{s['median']:.2f}{unit} [{s['min']:.2f}-{s['max']:.2f}]"
    row["median"] = s["median"]
    if check.op == "report":
        row.update(target="(reported)", passed=None)
    else:
        ok = s["median"] <= check.limit if check.op == "<=" else s["median"] >= check.limit
        row.update(target=f"{check.op} {check.limit}{unit}", passed=ok)
    if check.note:
        row["target"] += f" ({check.note})"
    return row


def verdicts(cases: List[Case], samples: Dict[str, Dict[str, List[Result]]], quick: bool,
             memory: Dict[str, Any]) -> List[dict]:  # fmt: skip
    rows = []
    for case in cases:
        for check in case.checks:
            row = judge(case, check, samples[case.name], case.quick_n if quick else case.n)
            if row is not None:
                rows.append(row)
    for client, result in memory.items():
        worst = max(result["traced_mb"], result["rss_mb"])
        rows.append({"issue": "5", "what": f"memory: {client}, {result['calls']:,} chat calls "
                     "(growth: traced, RSS)", "value": f"{result['traced_mb']:.2f} MB, "
                     f"{result['rss_mb']:.2f} MB", "target": f"<= {MEMORY_TARGET_MB} MB",
                     "passed": worst <= MEMORY_TARGET_MB})  # fmt: skip
    return rows


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}" if value < 10 else f"{value:.1f}"


def _range(s: Dict[str, float], scale: float = 1.0, ratio: bool = False) -> str:
    if ratio:
        return f"{s['median']:.2f}x [{s['min']:.2f}-{s['max']:.2f}]"
    return f"{_fmt(s['median'] * scale)} [{_fmt(s['min'] * scale)}-{_fmt(s['max'] * scale)}]"


def notes(case: Case, results: List[Result]) -> str:
    """What the case measures besides CPU, from its rounds (medians; worst where it counts)."""
    first = results[0]
    if case.kind == "import":
        return "imports " + (", ".join(first["modules"]) or "none of the optional packages")
    if case.kind == "streams":

        def med(key: str) -> float:
            return float(statistics.median(r[key] for r in results))

        return (f"RSS {med('rss_per_stream_kb'):.1f} KB/stream, open in {med('open_s'):.1f} s, "
                f"{min(r['complete'] for r in results)} complete, fds left "
                f"{max(r['fds_left'] for r in results)}, slowest x{med('stretch_max'):.2f}, "
                f"server {med('server_cpu_share'):.0%} CPU")  # fmt: skip
    if "trips" in first:
        return f"{statistics.median(r['trips'] for r in results):.2f} Redis trips/call"
    if first.get("spans"):
        return f"{first['spans']:,} spans exported"
    return ""


def table(cases: List[Case], summary: Dict[str, Any]) -> str:
    head = ("case", "client", "CPU per unit, median [min-max]", "units/s (wall)",
            "ratio to first, median [min-max]", "conns/call", "notes")  # fmt: skip
    lines = [head]
    for case in cases:
        for client in case.clients:
            if client not in summary[case.name]:
                continue
            s = summary[case.name][client]
            imports = case.kind == "import"
            unit, scale = ("ms/import", 1e-3) if imports else (f"µs/{case.unit}", 1.0)
            lines.append(
                (case.name, client, f"{_range(s['cpu_per_unit_us'], scale)} {unit}",
                 "" if imports else _fmt(s["units_per_s"]["median"]),
                 "1 (first)" if client == case.clients[0] else _range(s["ratio"], ratio=True),
                 "" if imports else f"{s['connections_per_call']['median']:.2f}",
                 notes(case, s["rounds"]))
            )  # fmt: skip
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in lines]
    out.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in out)


def verdict_word(passed: Optional[bool]) -> str:
    return "report" if passed is None else "pass" if passed else "**miss**"


def targets(document: Dict[str, Any]) -> List[str]:
    lines = ["| issue | target | measured (median [min-max] over rounds) | |", "|---|---|---|---|"]
    for row in document["checks"]:
        lines.append(f"| {row['issue']} | {row['what']} {row['target']} | {row['value']} | "
                     f"{verdict_word(row['passed'])} |")  # fmt: skip
    return lines


def machine(document: Dict[str, Any]) -> List[str]:
    info = document["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    return [
        f"- date: {info['date']}; commit {info['commit']}",
        f"- {info['cpus']} CPUs, {info['cpu_model']}; {info['platform']}; Python {info['python']}",
        f"- {versions}",
        f"- chat and embeddings served by {info['server']}; streams by {info['stream_server']}",
        f"- {document['rounds']} rounds in {document['elapsed_s']:.0f} s; load average (1 min) "
        f"{info.get('load_average_before', ['?'])[0]} before, "
        f"{info.get('load_average_1_5_15', ['?'])[0]} after",
    ]


def main() -> None:
    document = json.loads(Path(sys.argv[1]).read_text())
    cases = [case for case in CASES if case.name in document["summary"]]
    print("\n".join(targets(document)))
    print()
    print("\n".join(machine(document)))
    print("\n```")
    print(table(cases, document["summary"]))
    for client, result in document["memory"].items():
        print(f"memory {client:<9} {result['calls']:,} chat calls after warm-up: traced "
              f"{result['traced_mb']:.3f} MB, RSS {result['rss_mb']:.3f} MB")  # fmt: skip
    print("```")


if __name__ == "__main__":
    main()
