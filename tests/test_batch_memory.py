"""``gatewayclient batch`` holds neither the input lines nor the answers: a large generated input
whose output file already answers all but ten lines is checked, read and resumed in a child
process whose memory is measured.

The default size keeps the suite fast (tracemalloc's peak, in a child); CI's own stage runs it
at 1,000,000 lines (``GATEWAYCLIENT_BATCH_LINES=1000000``), measured by the child's peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gatewayclient.testing import FakeGateway

LINES = int(os.environ.get("GATEWAYCLIENT_BATCH_LINES", "20000"))
LARGE = LINES > 100_000
UNANSWERED = 10

pytestmark = pytest.mark.timeout(900 if LARGE else 120)

CHILD = textwrap.dedent(
    """
    import json, resource, sys, tracemalloc
    from gatewayclient import cli
    traced = sys.argv[1] == "traced"
    if traced:
        tracemalloc.start()
    status = cli.main(sys.argv[2:])
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"status": status, "peak": peak, "rss": rss}))
    """
)


def generate(source: Path, output: Path, lines: int, pad: int) -> int:
    """The input file, and an output file answering every line but the last ten; their size."""
    filler = "x" * pad
    with open(source, "w") as handle:
        for n in range(lines):
            messages = [{"role": "user", "content": f"{n} {filler}"}]
            body = {"model": "openai/gpt-4o-mini", "messages": messages}
            line = {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions"}
            handle.write(json.dumps({**line, "body": body}) + "\n")
    with open(output, "w") as handle:
        for n in range(lines - UNANSWERED):
            message = {"role": "assistant", "content": filler * 2}
            answer = {"id": f"c{n}", "object": "chat.completion", "choices": [{"message": message}]}
            response = {"status_code": 200, "request_id": f"r{n}", "body": answer}
            line = {"id": f"b{n}", "custom_id": f"req-{n}", "response": response, "error": None}
            handle.write(json.dumps(line) + "\n")
    return source.stat().st_size + output.stat().st_size


def test_a_large_file_runs_in_bounded_memory(gw: FakeGateway, tmp_path: Path) -> None:
    source, output = tmp_path / "input.jsonl", tmp_path / "output.jsonl"
    size = generate(source, output, LINES, 100 if LARGE else 1000)
    argv = ["rss" if LARGE else "traced", "batch", str(source), "-o", str(output),
            "--base-url", gw.url, "--token", gw.token, "--no-progress"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    print(f"{LINES} lines, files of {size} bytes: {report}")  # seen with -s (CI's own stage)
    assert report["status"] == 0, done.stderr
    assert len(gw.requests) == UNANSWERED
    with open(output, "rb") as handle:
        assert sum(1 for _ in handle) == LINES
    if LARGE:
        # Holding the lines or the answers would take more than the files' size; what is held
        # is one 16-byte digest of each custom_id (about 100 bytes a line), and the interpreter.
        assert size > 600_000_000
        assert report["rss"] < 240_000_000, report
    else:
        assert report["peak"] < size / 4, (report, size)  # the input file alone is a third
