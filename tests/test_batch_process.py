"""Batches in a real child process, stopped for real: SIGKILL mid-batch loses no finished item
and the resumed run sends at most ``concurrency`` items again; SIGINT (Ctrl-C) stops the calls
in flight at once, ends the workers, releases the connections and leaves a checkpoint that
resumes. Both clients; FakeGateway (in this process) answers slowly with scripted stalls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, List, Set

import pytest
from test_batch import answered_ids, requests_of, sent_items
from twin import Twin

from gatewayclient.testing import FakeGateway

pytestmark = pytest.mark.timeout(90)

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, threading
    from gatewayclient import AsyncGatewayClient, SyncGatewayClient

    kind, url, token, path, count, concurrency = sys.argv[1:]
    items = [
        {"model": "openai/gpt-4o-mini", "custom_id": f"id-{n}",
         "messages": [{"role": "user", "content": f"item {n}"}]}
        for n in range(int(count))
    ]

    def report(**fields):
        print(json.dumps(fields), flush=True)

    def checked_out(client):
        session = client._transport._session
        managers = [adapter.poolmanager for adapter in session.adapters.values()]
        pools = [pool for manager in managers for pool in manager.pools._container.values()]
        return sum(pool.pool.maxsize - pool.pool.qsize() for pool in pools)

    def run_sync():
        client = SyncGatewayClient(url, token)
        try:
            client.batch_chat_completions(items, concurrency=int(concurrency), checkpoint=path)
        except KeyboardInterrupt:
            report(threads=threading.active_count(), checked_out=checked_out(client))
            return
        report(finished=True)

    async def run_async():
        client = AsyncGatewayClient(url, token)
        try:
            await client.batch_chat_completions(
                items, concurrency=int(concurrency), checkpoint=path
            )
        except asyncio.CancelledError:
            pool = await client._transport.pool()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            report(tasks=len(others), checked_out=len(pool.session.connector._acquired))
            raise
        report(finished=True)

    if kind == "sync":
        run_sync()
    else:
        try:
            asyncio.run(run_async())
        except KeyboardInterrupt:
            pass
    """
)


def start_child(
    kind: str, gw: FakeGateway, path: Path, count: int, concurrency: int
) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-c",
        CHILD,
        kind,
        gw.url,
        gw.token,
        str(path),
        str(count),
        str(concurrency),
    ]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A background job inherits SIGINT ignored, and Python then installs no handler: give
        # the child the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def whole_answered(path: Path) -> List[str]:
    """The custom_ids of the whole answered lines (a torn last line left out)."""
    if not path.exists():
        return []
    found = []
    for raw in path.read_bytes().split(b"\n")[:-1]:
        line = json.loads(raw)
        if line["error"] is None:
            found.append(line["custom_id"])
    return found


def ended(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
    child.communicate(timeout=30)


def test_sigkill_mid_batch_loses_no_finished_item(
    kind: str, gw: FakeGateway, make: Callable[..., Twin], tmp_path: Path
) -> None:
    path = tmp_path / "answers.jsonl"
    count, concurrency = 40, 4
    gw.stall(0.15, times=1000)  # every request answers slowly
    child = start_child(kind, gw, path, count, concurrency)
    try:
        wait_until(lambda: len(whole_answered(path)) >= 10 or child.poll() is not None)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        ended(child)
    before: Set[str] = set(sent_items(gw))
    finished = set(whole_answered(path))
    assert 10 <= len(finished) < count
    gw.clear_faults()
    gw.clear_requests()
    results = make().call(
        "batch_chat_completions", requests_of(count), concurrency=concurrency, checkpoint=path
    )
    assert all(r.ok for r in results)
    again = set(sent_items(gw))
    assert not again & {f"item {cid.split('-')[1]}" for cid in finished}  # nothing finished is lost
    assert len(again & before) <= concurrency  # sent twice: at most those in flight at the kill
    assert sorted(answered_ids(path)) == sorted(f"id-{n}" for n in range(count))  # once each


def test_ctrl_c_stops_the_calls_in_flight_and_the_checkpoint_resumes(
    kind: str, gw: FakeGateway, make: Callable[..., Twin], tmp_path: Path
) -> None:
    path = tmp_path / "answers.jsonl"
    count, concurrency = 12, 3
    gw.stall(0.0, times=6)  # the first six answer at once ...
    gw.stall(30.0, times=100)  # ... the rest would hang for 30 s
    child = start_child(kind, gw, path, count, concurrency)
    try:
        wait_until(lambda: len(whole_answered(path)) == 6 and len(gw.requests) == 9)
        interrupted = time.monotonic()
        child.send_signal(signal.SIGINT)
        assert child.stdout is not None
        report = json.loads(child.stdout.readline() or "{}")
        took = time.monotonic() - interrupted
        _, err = child.communicate(timeout=30)
    finally:
        ended(child)
    assert report.get("checked_out") == 0, err  # the connections in flight were released
    assert report.get("threads", 1) == 1 and report.get("tasks", 0) == 0  # the workers ended
    assert took < 5  # prompt: the stalled answers were not waited for
    assert child.returncode == 0, err
    time.sleep(0.2)
    assert len(gw.requests) == 9  # nothing new was sent after the interrupt (no retry either)
    # The first six requests to arrive were answered (threads and tasks need not send items in
    # their order): exactly those are on file, and the resumed run sends all the others.
    quick = {item.split()[1] for item in sent_items(gw)[:6]}
    assert sorted(whole_answered(path)) == sorted(f"id-{n}" for n in quick)
    gw.clear_faults()
    gw.clear_requests()
    results = make().call(
        "batch_chat_completions", requests_of(count), concurrency=concurrency, checkpoint=path
    )
    assert all(r.ok for r in results)
    rest = {str(n) for n in range(count)} - quick
    assert sorted(sent_items(gw)) == sorted(f"item {n}" for n in rest)
    assert sorted(answered_ids(path)) == sorted(f"id-{n}" for n in range(count))


@pytest.mark.parametrize("kind", ["sync"])
def test_ctrl_c_ends_a_wait_for_the_rate_budget(gw: FakeGateway, make: Callable[..., Twin]) -> None:
    """Sync: workers waiting for room in the budget (a minute here) end at once on Ctrl-C.
    (An async batch's waits are its tasks' own: cancelling them ends them; tested above.)"""
    from gatewayclient import RateLimit

    twin = make(rate_limit=RateLimit(requests=2))
    # Ctrl-C raises KeyboardInterrupt here even when this process was started with SIGINT
    # ignored (a background job), as it does in a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = threading.active_count()
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))  # Ctrl-C, for real
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            twin.call("batch_chat_completions", requests_of(6), concurrency=3)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 3
    assert threading.active_count() == before  # the workers ended
    assert len(gw.requests) == 2
