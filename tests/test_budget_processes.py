"""One budget honoured by several processes (through a real Redis), and by threads and tasks
of one process (without Redis), under demand far above it, against a FakeGateway whose own
limits are the budget's and which logs every arrival.

Checked over a run of several windows: the budget's tickets (on the budget's clock) never
hold more than ``requests`` nor more than ``tokens`` (as settled) in any ``per`` seconds; the
arrivals at the gateway never do either in any ``per - TRANSIT`` seconds (an arrival trails its
departure by a transit time that varies by milliseconds: a connection opened or reused, a
thread scheduled late); the gateway, which counts the same requests and tokens over the same
window less that variation, answered no 429; and at least 90 % of the budget was used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from redis_server import RedisServer

from gatewayclient.testing import Arrival, FakeGateway

WORKER = Path(__file__).with_name("budget_worker.py")
PER = 1.0
SECONDS = 6.0  # of demand: five whole windows measured, and a margin
WINDOWS = 5
TRANSIT = 0.05
USED = 0.9


@pytest.fixture
def workers() -> Iterator[List[subprocess.Popen[str]]]:
    """Worker processes a test starts: any still running at its end is stopped by PID."""
    started: List[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.communicate()


def limited_gateway(requests: int, tokens: int) -> FakeGateway:
    """A gateway whose limits are the budget's counts, over its window less the transit's
    variation: what no client can see or remove (see the module's docstring)."""
    return FakeGateway(rpm_limit=requests, tpm_limit=tokens, window=PER - TRANSIT)


def run_workers(
    workers: List[subprocess.Popen[str]],
    gateway: FakeGateway,
    budget: Dict[str, Any],
    shapes: List[Dict[str, int]],
) -> List[Dict[str, Any]]:
    """Start one worker per shape (its threads and tasks), all under ``budget``, and collect
    their reports."""
    start_at = time.time() + 1.5  # every worker imported and ready by then
    for shape in shapes:
        config = {**budget, **shape, "url": gateway.url, "token": gateway.token}
        config.update(start_at=start_at, seconds=SECONDS, per=PER)
        command = [sys.executable, str(WORKER), json.dumps(config)]
        workers.append(
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    reports = []
    for process in workers:
        out, err = process.communicate(timeout=SECONDS + 30)
        assert process.returncode == 0, err
        reports.append(json.loads(out))
    return reports


def most_in_any_window(times: List[float], weights: List[int], span: float) -> Any:
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


def check(
    reports: List[Dict[str, Any]],
    arrivals: List[Arrival],
    requests: int,
    tokens: int,
    store: str,
    binding: str,
) -> None:
    errors = [error for report in reports for error in report["errors"]]
    assert errors == []  # not one 429 (nor anything else) from the gateway
    assert [a.status for a in arrivals if a.status != 200] == []
    tickets = [ticket for report in reports for ticket in report["tickets"]]
    assert {ticket[2] for ticket in tickets} == {store}
    # The promise, on the budget's own clock (Redis's; in one process, its own): exact.
    at, spent = [t[0] for t in tickets], [t[1] for t in tickets]
    assert most_in_any_window(at, spent, PER) <= (requests, tokens)
    # At the gateway: within the transit's variation.
    at, spent = [a.at for a in arrivals], [a.tokens for a in arrivals]
    assert most_in_any_window(at, spent, PER - TRANSIT) <= (requests, tokens)
    # Not timid: the whole windows of the run were (nearly) full.
    first = min(at)
    inside = [a for a in arrivals if a.at < first + WINDOWS * PER]
    if binding == "requests":
        assert len(inside) >= USED * requests * WINDOWS, len(inside)
    else:
        assert sum(a.tokens for a in inside) >= USED * tokens * WINDOWS


def test_four_processes_share_one_budget_through_redis(
    redis_server: RedisServer, workers: List[subprocess.Popen[str]]
) -> None:
    requests, tokens = 20, 570  # requests bind; tokens nearly (28 a call answered, 30 reserved)
    budget = {"requests": requests, "tokens": tokens, "storage": redis_server.url}
    budget["key"] = uuid.uuid4().hex
    shapes = [{"threads": 3, "tasks": 0}, {"threads": 0, "tasks": 3}] * 2
    with limited_gateway(requests, tokens) as gateway:
        reports = run_workers(workers, gateway, budget, shapes)
        check(reports, gateway.arrivals, requests, tokens, "RedisWindow", "requests")


def test_threads_and_tasks_of_one_process_share_one_budget(
    workers: List[subprocess.Popen[str]],
) -> None:
    requests, tokens = 100, 560  # tokens bind: twenty calls a second
    budget: Dict[str, Optional[Any]] = {"requests": requests, "tokens": tokens, "storage": None}
    budget["key"] = "unused"
    with limited_gateway(requests, tokens) as gateway:
        reports = run_workers(workers, gateway, budget, [{"threads": 4, "tasks": 4}])
        check(reports, gateway.arrivals, requests, tokens, "LocalWindow", "tokens")
