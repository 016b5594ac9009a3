"""The async client's batch runner: one task per item in flight, the calling task keeps the books.

The calling task hands out items (at most ``concurrency`` sent and not yet on file), writes the
outcomes of the tasks that ended (the fsync in a worker thread, so the loop runs on) and counts
them. Cancelling it (``task.cancel()``, Ctrl-C under ``asyncio.run``) cancels the item tasks,
which release their connections as any cancelled call does, writes what had finished before,
and goes on up.
"""

from __future__ import annotations

import asyncio
from typing import Any, List, Set, Tuple

from . import _telemetry, _traffic
from ._batch import Outcome, Pending, Run
from .errors import GatewayClientError

__all__ = ["run_tasks"]


async def run_tasks(client: Any, run: Run, concurrency: int) -> Run:
    """Send the run's items in up to ``concurrency`` tasks; returns once all are counted."""
    loop = asyncio.get_running_loop()
    tasks: Set[asyncio.Future[Outcome]] = set()
    ended: List[asyncio.Future[Outcome]] = []  # tasks done and not yet counted, in that order
    wake: List[asyncio.Future[None]] = []  # the calling task's wait for the next end, if any

    def on_end(task: asyncio.Future[Outcome]) -> None:
        # O(1) per item, where asyncio.wait() would add and remove a callback on every task
        # in flight for each one that ends.
        ended.append(task)
        if wake and not wake[0].done():
            wake[0].set_result(None)

    try:
        while True:
            while len(tasks) < concurrency:
                job = run.next()
                if job is None:
                    break
                task = loop.create_task(_send(client, *job))
                task.add_done_callback(on_end)
                tasks.add(task)
            if not tasks:
                break
            if not ended:
                wake.append(loop.create_future())
                try:
                    await wake[0]
                finally:
                    wake.clear()
            done = ended[:]
            del ended[:]
            tasks.difference_update(done)
            outcomes = [task.result() for task in done]  # a bug in one raises here
            if run.checkpoint is not None:
                await loop.run_in_executor(None, run.write, outcomes)
            run.count(outcomes)
        run.finish()
    except BaseException:
        await _stop(tasks, run)
        raise
    finally:
        run.close()
    return run


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


async def _stop(tasks: Set[asyncio.Future[Outcome]], run: Run) -> None:
    """Cancel the tasks in flight, wait for them to end, and keep what had finished before."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    finished: List[Outcome] = [
        task.result() for task in tasks if not task.cancelled() and task.exception() is None
    ]
    run.write(finished)  # a few lines, once: the loop may block for this fsync
