"""The sync client's batch runner: worker threads send items, the calling thread keeps the books.

The calling thread hands out items (at most ``concurrency`` sent and not yet on file), writes
the outcomes that came back (several per fsync when they arrive together) and counts them. A
KeyboardInterrupt there (Ctrl-C), or any other exception, halts the workers (``_halt``: their
waits end, their blocked reads are woken, no new request leaves), writes what had finished
before the stop, joins the workers, and goes on up.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from typing import Any, List, Optional, Tuple, Union

from . import _halt, _telemetry, _traffic
from ._batch import Outcome, Pending, Run
from .errors import GatewayClientError

__all__ = ["run_threads"]

_Job = Optional[Tuple[contextvars.Context, Pending, Any]]
_Report = Union[Outcome, None, BaseException]  # None: halted before it finished
_JOIN_POLL = 0.1  # seconds between wake-ups of a stopped worker (one may still be connecting)


def run_threads(client: Any, run: Run, concurrency: int) -> Run:
    """Send the run's items from up to ``concurrency`` threads; returns once all are counted."""
    halt = _halt.Halt()
    jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
    reports: queue.SimpleQueue[_Report] = queue.SimpleQueue()
    workers: List[threading.Thread] = []
    try:
        in_flight = 0
        while True:
            while in_flight < concurrency:
                job = run.next()
                if job is None:
                    break
                if len(workers) == in_flight:  # a thread per place in flight, started as needed
                    workers.append(_start(client, halt, jobs, reports, len(workers)))
                # The caller's context goes with the item (its current span, for the item's span).
                jobs.put((contextvars.copy_context(), *job))
                in_flight += 1
            if not in_flight:
                break
            got = _drain(reports, block=True)
            in_flight -= len(got)
            _take(run, got)
        run.finish()
    except BaseException:
        halt.set()
        _stop(workers, jobs, reports, halt, run)
        raise
    finally:
        for _ in workers:
            jobs.put(None)
        for worker in workers:
            worker.join()
        run.close()
    return run


def _start(
    client: Any,
    halt: _halt.Halt,
    jobs: queue.SimpleQueue[_Job],
    reports: queue.SimpleQueue[_Report],
    number: int,
) -> threading.Thread:
    worker = threading.Thread(
        target=_work, args=(client, halt, jobs, reports), name=f"gatewayclient-batch-{number}"
    )
    worker.daemon = True  # never keeps a dying interpreter waiting; joined on every way out
    worker.start()
    return worker


def _work(
    client: Any,
    halt: _halt.Halt,
    jobs: queue.SimpleQueue[_Job],
    reports: queue.SimpleQueue[_Report],
) -> None:
    halt.enter()
    job = jobs.get()
    while job is not None:
        context, item, call = job
        try:
            reports.put(context.run(_send, client, halt, item, call))
        except BaseException as exc:  # a bug: the calling thread raises it
            reports.put(exc)
        job = jobs.get()


def _answer(result: Tuple[Any, Any]) -> Any:
    return result[1]  # (the call that answered, its answer)


def _send(client: Any, halt: _halt.Halt, item: Pending, call: Any) -> Optional[Outcome]:
    """One item with the client's retries, fallbacks and rate budget; None when halted."""

    def run_one(current: Any) -> Tuple[Any, Any]:
        halt.check()  # before each model of the chain: after a stop, nothing more leaves
        return current, client._run_one(current)

    def chain() -> Tuple[Any, Any]:
        return _traffic.run_chain(call, run_one) if call.next_models else run_one(call)

    observation = _telemetry.observe(call, call.request.url)
    try:
        answered, answer = (
            chain() if observation is None else _telemetry.run(observation, chain, _answer)
        )
    except _halt.Stopped:
        return None
    except GatewayClientError as error:
        # A failure after the stop is the stop's doing (a woken read): not a final outcome.
        return None if halt.is_set() else Outcome(item, None, None, error)
    return Outcome(item, answered, answer, None)


def _drain(reports: queue.SimpleQueue[_Report], block: bool) -> List[_Report]:
    got: List[_Report] = [reports.get()] if block else []
    while True:
        try:
            got.append(reports.get_nowait())
        except queue.Empty:
            return got


def _take(run: Run, got: List[_Report]) -> None:
    """Write and count the outcomes in ``got``; raise a worker's unexpected exception."""
    failure = next((report for report in got if isinstance(report, BaseException)), None)
    outcomes = [report for report in got if isinstance(report, Outcome)]
    run.write(outcomes)
    run.count(outcomes)
    if failure is not None:
        raise failure


def _stop(
    workers: List[threading.Thread],
    jobs: queue.SimpleQueue[_Job],
    reports: queue.SimpleQueue[_Report],
    halt: _halt.Halt,
    run: Run,
) -> None:
    """After a halt: let every worker end, and keep what had finished before it."""
    for _ in workers:
        jobs.put(None)
    for worker in workers:
        while worker.is_alive():
            worker.join(_JOIN_POLL)
            halt.set()  # again: a connection that was still connecting is held by now
    got = _drain(reports, block=False)
    run.write([report for report in got if isinstance(report, Outcome)])
