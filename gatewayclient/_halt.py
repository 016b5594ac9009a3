"""Stopping a sync batch's worker threads at once: their waits end and their reads are woken.

A thread that runs batch items is given the batch's ``Halt`` (``enter``). From then on every wait
of the library in that thread (a retry's backoff, room in the rate budget) sleeps with ``sleep``,
which returns early and raises ``Stopped`` once the batch is halted, and the transport lends the
halt each connection the thread takes from its pool, so that halting shuts their sockets down
(a read blocked in another thread is woken by a shutdown, not by a close). Any other thread
sleeps with ``time.sleep`` and lends nothing: a plain call pays one thread-local lookup.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable, Optional

__all__ = ["Halt", "Stopped", "current", "sleep"]

_local = threading.local()


class Stopped(Exception):
    """Raised in a worker thread whose batch was halted: the item it ran is left unfinished.
    Not a GatewayClientError, so no retry and no fallback takes it for a failure to mend."""


class Halt:
    """One batch's stop signal and the connections its threads hold."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        # Weak: a connection the pool discarded after a failure is forgotten with it.
        self._held: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = (
            weakref.WeakKeyDictionary()
        )

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise ``Stopped`` when the batch was halted (before a new request leaves)."""
        if self._event.is_set():
            raise Stopped

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or less: ``Stopped`` as soon as the batch is halted."""
        if self._event.wait(seconds):
            raise Stopped

    def hold(self, connection: Any, shut: Callable[[Any], None]) -> None:
        """A worker took ``connection``; ``shut(connection)`` wakes a read blocked on it."""
        with self._lock:
            self._held[connection] = shut
        if self._event.is_set():
            shut(connection)

    def release(self, connection: Any) -> None:
        with self._lock:
            self._held.pop(connection, None)

    def set(self) -> None:
        """Halt: every wait ends, every held connection is shut (callable again, to catch a
        connection that was still connecting the first time)."""
        self._event.set()
        with self._lock:
            held = list(self._held.items())
        for connection, shut in held:
            shut(connection)

    def enter(self) -> None:
        """Make this the halt of the calling thread (a batch worker, for its whole life)."""
        _local.halt = self


def current() -> Optional[Halt]:
    """The calling thread's halt, or None when it runs no batch."""
    halt: Optional[Halt] = getattr(_local, "halt", None)
    return halt


def sleep(seconds: float) -> None:
    """``time.sleep`` in any thread but a batch worker's, where a halt ends it (``Stopped``)."""
    halt: Optional[Halt] = getattr(_local, "halt", None)
    if halt is None:
        time.sleep(seconds)
    else:
        halt.wait(seconds)
