"""Markdown for BENCHMARKS.md from one run's JSON: the targets, the machine, the full table.

python benchmarks/report.py benchmarks/results/<timestamp>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

from run import CASES, table


def targets(document: Dict[str, Any]) -> List[str]:
    summary = document["summary"]
    lines = ["| target | measured (median [min-max] over rounds) | |", "|---|---|---|"]
    for row in document["checks"]:
        what, value = row["what"], row["value"]
        case = what.split(":", 1)[0]
        client = "gc-sync" if "gc-sync" in what else "gc-async"
        if isinstance(value, float) and client in summary.get(case, {}):
            ratio = summary[case][client]["ratio"]
            value = f"{ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]"
        verdict = "pass" if row["pass"] else "**miss**"
        lines.append(f"| {what} {row['target']} | {value} | {verdict} |")
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
