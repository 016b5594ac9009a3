"""Scale-out: four Airflow task processes (``airflow tasks test ... --map-index i``) answer the
mapped shards of one DAG run at the same time, sharing the connection's budget through a real
Redis, against a FakeGateway in a process of its own whose own limits are the budget's.

Checked: the four wrote answers at the same time; the gateway answered no 429 (nor anything
but 200), and never saw more than the budget in any window (its window is shorter than the
budget's ``per`` by the transit's variation: an arrival trails its departure by milliseconds that
vary, see tests/test_budget_processes.py); at least 90 % of the budget was used while there was
demand; one shard's process, killed (SIGKILL) mid-run, is run again and resumes from its
checkpoint, sending at most ``concurrency`` items a second time; the merged output answers every
input exactly once; the token is in no log.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from batch_files import asked_for, check_output, input_lines, write_lines
from conftest import AIRFLOW, HOME, airflow
from redis_server import RedisServer

DAG_ID = "gateway_batch"
TOKEN = "sk-gateway-scale-out-5ecret-token"
PER = 1.0
TRANSIT = 0.05
REQUESTS = 20
TOKENS = 570  # a call is answered 28 tokens and reserves 31: requests bind, tokens nearly
SHARDS = 4
PER_SHARD = 50
CONCURRENCY = 4
LATENCY = 0.05  # one shard alone could send 80 calls a second: demand is far above the budget
WINDOWS = 5
USED = 0.9
VICTIM = 1
KILL_AT = 10  # answers in the victim's checkpoint when it is killed
GATEWAY = Path(__file__).with_name("gateway_process.py")
DEADLINE = 240.0  # seconds for the shards, however slow the machine


@dataclass
class Shard:
    """One mapped task instance's process(es) and its checkpoint's growth, on this clock."""

    index: int
    checkpoint: Path
    process: Optional[subprocess.Popen[bytes]] = None
    lines: List[Tuple[float, int]] = field(default_factory=list)  # (time, lines) at each change

    def watch(self, now: float) -> int:
        count = self.checkpoint.read_bytes().count(b"\n") if self.checkpoint.exists() else 0
        if not self.lines or self.lines[-1][1] != count:
            self.lines.append((now, count))
        return count


@pytest.fixture
def gateway(tmp_path: Path, processes: List[subprocess.Popen[bytes]]) -> Iterator[Dict[str, Any]]:
    """The FakeGateway process: its URL, and (once stopped) what it saw."""
    config = {"token": TOKEN, "rpm": REQUESTS, "tpm": TOKENS, "window": PER - TRANSIT}
    config.update(latency=LATENCY, log=str(tmp_path / "gateway.json"))
    process = subprocess.Popen(
        [sys.executable, str(GATEWAY), json.dumps(config)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    processes.append(process)
    assert process.stdout is not None
    url = process.stdout.readline().decode().strip()
    assert url.startswith("http://127.0.0.1:"), url

    def stop() -> Dict[str, Any]:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert process.stdout is not None
        process.stdout.close()
        return dict(json.loads(Path(config["log"]).read_text()))

    yield {"url": url, "stop": stop}
    if process.stdout is not None:
        process.stdout.close()


def start_task(
    processes: List[subprocess.Popen[bytes]], run_id: str, index: int, log: Path, env: Any
) -> subprocess.Popen[bytes]:
    command = [str(AIRFLOW), "tasks", "test", DAG_ID, "answer_shard", run_id]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*command, "--map-index", str(index)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed whole by its id
        )
    processes.append(process)
    return process


def report(message: str) -> None:
    print(f"[scale-out] {message}", flush=True)


def most_in_any_window(times: List[float], weights: List[int], span: float) -> Tuple[int, int]:
    """The largest count and the largest weight in any half-open interval of ``span``."""
    order = sorted(range(len(times)), key=times.__getitem__)
    most_count = most_weight = weight = start = 0
    for end, index in enumerate(order):
        weight += weights[index]
        while times[order[start]] <= times[index] - span:
            weight -= weights[order[start]]
            start += 1
        most_count, most_weight = max(most_count, end - start + 1), max(most_weight, weight)
    return most_count, most_weight


def test_four_task_processes_share_the_budget_and_a_killed_one_resumes(
    redis_server: RedisServer,
    gateway: Dict[str, Any],
    processes: List[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    inputs = input_lines(SHARDS * PER_SHARD)
    source = write_lines(tmp_path / "requests.jsonl", inputs)
    output, work = tmp_path / "answers.jsonl", tmp_path / "work"
    budget = {"requests": REQUESTS, "tokens": TOKENS, "per": PER}
    budget.update(storage=redis_server.url, key=uuid.uuid4().hex)
    conn = {"conn_type": "gateway", "host": gateway["url"], "password": TOKEN}
    conn["extra"] = {"rate_limit": budget}
    env = dict(os.environ, AIRFLOW_CONN_GATEWAY_DEFAULT=json.dumps(conn))
    run_id = f"scale-out-{uuid.uuid4().hex[:8]}"
    conf = {"input": str(source), "output": str(output), "work_dir": str(work)}
    conf.update(shards=SHARDS, concurrency=CONCURRENCY)
    logs = [airflow("dags", "reserialize", env=env)]
    logs.append(
        airflow("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(conf), env=env)
    )
    logs.append(airflow("tasks", "test", DAG_ID, "split", run_id, env=env))

    shards = [Shard(i, work / run_id / f"shard-{i:04d}.output.jsonl") for i in range(SHARDS)]
    for shard in shards:
        shard.process = start_task(
            processes, run_id, shard.index, tmp_path / f"{shard.index}.log", env
        )
    victim = shards[VICTIM]
    killed_at, at_kill, rerun = None, 0, None
    started_with = None  # the victim's answers when all four had begun answering
    deadline = time.monotonic() + DEADLINE
    running = [shard.process for shard in shards]
    while any(p is not None and p.poll() is None for p in running):
        now = time.monotonic()
        assert now < deadline, f"the shards' processes ran for more than {DEADLINE:g} s"
        counts = [shard.watch(now) for shard in shards]
        if started_with is None and min(counts) > 0:
            started_with = counts[VICTIM]
        # Killed once it has answered more since all four began: they overlapped, for sure.
        if (
            killed_at is None
            and started_with is not None
            and counts[VICTIM] >= max(KILL_AT, started_with + 2)
        ):
            assert victim.process is not None
            os.killpg(victim.process.pid, signal.SIGKILL)  # mid-run: no chance to tidy up
            victim.process.wait(timeout=30)
            killed_at, at_kill = time.monotonic(), victim.watch(time.monotonic())
            rerun = start_task(processes, run_id, VICTIM, tmp_path / "rerun.log", env)
            running.append(rerun)
        time.sleep(0.02)
    now = time.monotonic()
    for shard in shards:
        shard.watch(now)
    assert killed_at is not None, "the victim finished before all four were answering"
    assert 0 < at_kill < PER_SHARD  # killed mid-run
    assert [s.process.returncode for s in shards if s.process] == [0, -signal.SIGKILL, 0, 0]
    assert rerun is not None and rerun.returncode == 0
    logs.append(airflow("tasks", "test", DAG_ID, "merge", run_id, env=env))
    seen = gateway["stop"]()

    # Four processes at the same time: each wrote answers before any had its last answer.
    first = [next(t for t, count in shard.lines if count) for shard in shards]
    last = [t for t, count in victim.lines if t < killed_at][-1:] + [
        shard.lines[-1][0] for shard in shards if shard is not victim
    ]
    assert max(first) < min(last)
    report(
        f"four shards answering at once from +{max(first) - min(first):.2f} s to "
        f"+{min(last) - min(first):.2f} s after the first answer"
    )

    arrivals = seen["arrivals"]
    statuses = collections.Counter(a["status"] for a in arrivals)
    # Not one 429, nor any error: only answers, and (status 0) requests whose client was
    # killed before the answer, at most the killed shard's concurrency.
    assert set(statuses) <= {200, 0} and statuses[0] <= CONCURRENCY, statuses
    at, spent = [a["at"] for a in arrivals], [a["tokens"] for a in arrivals]
    assert most_in_any_window(at, spent, PER - TRANSIT) <= (REQUESTS, TOKENS)
    # Not timid: the first windows were (nearly) full, and there was demand throughout them.
    start = min(at)
    inside = [t for t in at if t < start + WINDOWS * PER]
    report(
        f"{len(arrivals)} requests, statuses {dict(statuses)}; "
        f"{len(inside)} in the first {WINDOWS} windows of {PER:g} s "
        f"({len(inside) / (REQUESTS * WINDOWS):.0%} of the budget of {REQUESTS})"
    )
    assert len(inside) >= USED * REQUESTS * WINDOWS, len(inside)
    assert (
        max(shard.lines[-1][0] for shard in shards if shard is not victim) > start + WINDOWS * PER
    )

    # The rerun resumed: no item was asked for more than twice, and only the victim's in flight
    # when it was killed were asked for twice.
    asked = collections.Counter(asked_for(a["content"]) for a in seen["asked"])
    assert set(asked) == {line["custom_id"] for line in inputs}
    again = sorted(custom_id for custom_id, times in asked.items() if times > 1)
    victims = {line["custom_id"] for line in inputs[VICTIM * PER_SHARD : (VICTIM + 1) * PER_SHARD]}
    report(
        f"shard {VICTIM} killed with {at_kill} of {PER_SHARD} answered; its rerun asked "
        f"{len(again)} again (concurrency {CONCURRENCY})"
    )
    assert set(again) <= victims and len(again) <= CONCURRENCY and max(asked.values()) <= 2
    check_output(output, inputs, {a["request_id"] for a in seen["asked"]})

    logs += [path.read_text(errors="replace") for path in tmp_path.glob("*.log")]
    logs += [p.read_text(errors="replace") for p in (HOME / "logs").rglob("*") if p.is_file()]
    text = "".join(logs)
    assert f"shard {VICTIM}: {PER_SHARD} answered, 0 failed" in text  # the rerun's own log
    assert TOKEN not in text
