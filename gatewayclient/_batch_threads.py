"""The sync client's batch runner: worker threads take, send and count items; the calling
thread puts outcomes on file and answers Ctrl-C.

Each worker takes the next item itself as soon as its last one has ended (and, with a
checkpoint, once there is room: at most ``concurrency`` items are ever sent and not yet on
file), so no item waits for the calling thread to hand it out. Without a checkpoint a worker
counts its own outcome (under the run's lock) and the calling thread only waits; with one, the
calling thread writes the outcomes that came back (several per fsync when they arrive
together) and counts them. A KeyboardInterrupt there (Ctrl-C), or any other exception, halts
the workers (``_halt``: their waits end, their blocked reads are woken, no new request leaves),
writes what had finished before the stop, joins the workers, and goes on up.
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


class _Ended:
    """A worker's last report: it has taken its last item."""


_ENDED = _Ended()
_Report = Union[Outcome, None, BaseException, _Ended]  # None: halted before it finished
_JOIN_POLL = 0.1  # seconds between wake-ups of a stopped worker (one may still be connecting)


class _Shared:
    """What the workers of one run share: the run (its items taken under ``lock``), the halt,
    the reports to the calling thread, and the room left on file (None without a checkpoint)."""

    def __init__(self, client: Any, run: Run, concurrency: int) -> None:
        self.client = client
        self.run = run
        self.halt = _halt.Halt()
        self.lock = threading.Lock()
        self.reports: queue.SimpleQueue[_Report] = queue.SimpleQueue()
        self.room = threading.Semaphore(concurrency) if run.checkpoint is not None else None

    def next(self) -> Optional[Tuple[Pending, Any]]:
        if self.room is not None:
            self.room.acquire()  # given back once an outcome is on file, or by a stop
        with self.lock:
            return None if self.halt.is_set() else self.run.next()


def run_threads(client: Any, run: Run, concurrency: int) -> Run:
    """Send the run's items from up to ``concurrency`` threads; returns once all are counted."""
    shared = _Shared(client, run, concurrency)
    workers: List[threading.Thread] = []
    try:
        for number in range(max(1, min(concurrency, run.todo))):  # no more threads than items
            # The caller's context goes with each worker (its current span, for the items' spans).
            workers.append(_start(shared, contextvars.copy_context(), number))
        live = len(workers)
        while live:
            got = _drain(shared.reports, block=True)
            live -= sum(1 for report in got if report is _ENDED)
            _take(shared, got)
        run.finish()
    except BaseException:
        shared.halt.set()
        _stop(workers, shared)
        raise
    finally:
        for worker in workers:
            worker.join()
        run.close()
    return run


def _start(shared: _Shared, context: contextvars.Context, number: int) -> threading.Thread:
    worker = threading.Thread(
        target=_work, args=(shared, context), name=f"gatewayclient-batch-{number}"
    )
    worker.daemon = True  # never keeps a dying interpreter waiting; joined on every way out
    worker.start()
    return worker


def _work(shared: _Shared, context: contextvars.Context) -> None:
    shared.halt.enter()
    reports = shared.reports
    try:
        job = shared.next()
        while job is not None:
            outcome = context.run(_send, shared.client, shared.halt, *job)
            if outcome is None:  # halted
                pass
            elif shared.room is None:
                # Nothing to put on file: counted here, without waking the calling thread.
                with shared.lock:
                    shared.run.count_one(outcome.item, outcome.answer, outcome.error)
                outcome = None
            else:
                with shared.lock:  # a 401 stops the run before any worker takes another item
                    shared.run.stop_on(outcome)
            if outcome is not None:
                reports.put(outcome)
            job = shared.next()
    except BaseException as exc:  # a bug: the calling thread raises it
        reports.put(exc)
    finally:
        reports.put(_ENDED)


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


def _take(shared: _Shared, got: List[_Report]) -> None:
    """Write and count the outcomes in ``got``; raise a worker's unexpected exception."""
    failure = next((report for report in got if isinstance(report, BaseException)), None)
    outcomes = [report for report in got if isinstance(report, Outcome)]
    if outcomes:
        shared.run.write(outcomes)
        shared.run.count(outcomes)
        if shared.room is not None:
            shared.room.release(len(outcomes))
    if failure is not None:
        raise failure


def _stop(workers: List[threading.Thread], shared: _Shared) -> None:
    """After a halt: let every worker end, and keep what had finished before it."""
    if shared.room is not None:
        shared.room.release(len(workers))  # a worker waiting for room sees the halt
    for worker in workers:
        while worker.is_alive():
            worker.join(_JOIN_POLL)
            shared.halt.set()  # again: a connection that was still connecting is held by now
    got = _drain(shared.reports, block=False)
    shared.run.write([report for report in got if isinstance(report, Outcome)])
