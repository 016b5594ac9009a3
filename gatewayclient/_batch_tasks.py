"""The async client's batch runner: ``concurrency`` worker tasks take, send and count items;
the calling task puts outcomes on file.

Each worker takes the next item as soon as its last one has ended (and, with a checkpoint, is
on file: at most ``concurrency`` items are ever sent and not yet on file), so no item waits for
the calling task to hand it out. Without a checkpoint a worker counts its own outcome (one
thread: nothing races); with one, the calling task writes the outcomes that came back (several
per fsync when they arrive together, the fsync in a worker thread so the loop runs on) and
counts them. Cancelling it (``task.cancel()``, Ctrl-C under ``asyncio.run``) cancels the
workers, whose calls release their connections as any cancelled call does, writes what had
finished before, and goes on up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from contextlib import suppress
from typing import Any, List, Optional, Tuple

from . import _telemetry, _traffic
from ._batch import Outcome, Pending, Run
from .errors import GatewayClientError

__all__ = ["run_tasks"]

_Ended = Tuple[Outcome, Optional["asyncio.Future[None]"]]  # an outcome; set once it is on file


async def run_tasks(client: Any, run: Run, concurrency: int) -> Run:
    """Send the run's items from up to ``concurrency`` tasks; returns once all are counted."""
    loop = asyncio.get_running_loop()
    ended: List[_Ended] = []  # outcomes not yet counted, in the order they came
    wake: List[asyncio.Future[None]] = []  # the calling task's wait for the next report
    failures: List[BaseException] = []  # a worker's unexpected exception (a bug)
    checkpoint = run.checkpoint is not None
    live = 0  # workers not yet ended

    def report() -> None:
        if wake and not wake[0].done():
            wake[0].set_result(None)

    async def work() -> None:
        while True:
            job = run.next()
            if job is None:
                return
            outcome = await _send(client, *job)
            if not checkpoint:  # nothing to put on file: no need to wake the caller
                run.count_one(outcome.item, outcome.answer, outcome.error)
                continue
            run.stop_on(outcome)  # a 401 stops the run before any worker takes another item
            written = loop.create_future()
            ended.append((outcome, written))
            report()
            await written

    def on_end(worker: asyncio.Task[None]) -> None:
        nonlocal live
        live -= 1
        if not worker.cancelled() and worker.exception() is not None:
            failures.append(worker.exception())  # type: ignore[arg-type]
        report()

    workers: List[asyncio.Task[None]] = []
    writing: Optional[concurrent.futures.Future[None]] = None
    try:
        for _ in range(max(1, min(concurrency, run.todo))):  # no more workers than items
            worker = loop.create_task(work())
            worker.add_done_callback(on_end)
            workers.append(worker)
            live += 1
        while True:
            if not ended and not failures:
                if not live:
                    break
                wake.append(loop.create_future())
                try:
                    await wake[0]
                finally:
                    wake.clear()
            if failures:
                raise failures[0]
            taken = ended[:]
            del ended[:]
            outcomes = [outcome for outcome, _ in taken]
            if checkpoint:
                writing = _write_in_thread(run, outcomes)
                await asyncio.wrap_future(writing)
                writing = None
            run.count(outcomes)
            for _, written in taken:
                if written is not None and not written.done():
                    written.set_result(None)
        run.finish()
    except BaseException:
        await _stop(workers, ended, writing, run)
        raise
    finally:
        run.close()
    return run


def _write_in_thread(run: Run, outcomes: List[Outcome]) -> concurrent.futures.Future[None]:
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()  # a cancelled wait must not cancel the write itself

    def write() -> None:
        try:
            run.write(outcomes)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    asyncio.get_running_loop().run_in_executor(None, write)
    return future


def _answer(result: Tuple[Any, Any]) -> Any:
    return result[1]  # (the call that answered, its answer)


async def _send(client: Any, item: Pending, call: Any) -> Outcome:
    """One item with the client's retries, fallbacks and rate budget."""
    observation = _telemetry.observe(call, call.request.url)
    try:
        if observation is None and not call.next_models:  # the common case, one layer less
            answered, answer = call, await client._run_one(call)
        else:

            async def run_one(current: Any) -> Tuple[Any, Any]:
                return current, await client._run_one(current)

            async def chain() -> Tuple[Any, Any]:
                if call.next_models:
                    return await _traffic.arun_chain(call, run_one)
                return await run_one(call)

            answered, answer = await (
                chain() if observation is None else _telemetry.arun(observation, chain, _answer)
            )
    except GatewayClientError as error:
        return Outcome(item, None, None, error)
    return Outcome(item, answered, answer, None)


async def _stop(
    workers: List[asyncio.Task[None]],
    ended: List[_Ended],
    writing: Optional[concurrent.futures.Future[None]],
    run: Run,
) -> None:
    """Cancel the workers, wait for them to end, and keep what had finished before."""
    for worker in workers:
        worker.cancel()
    if workers:
        await asyncio.wait(workers)
    if writing is not None:  # the lines being written when we were stopped: on file first
        with suppress(Exception):  # its error must not hide why we stopped
            writing.result()
    run.write([outcome for outcome, _ in ended])  # a few lines, once: the loop may block
