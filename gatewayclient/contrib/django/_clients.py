"""One SyncGatewayClient and one AsyncGatewayClient per process, built from the setting.

They are built on first use (never at import), under a lock; built again after the setting
changes (``setting_changed``: ``override_settings`` in tests) and in a forked child (a changed
pid: a pre-fork server's master never hands its clients to its workers).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TYPE_CHECKING, Any, List, Optional, Set

from django.conf import settings

import gatewayclient

from ._settings import SETTING, read, refused

if TYPE_CHECKING:
    from gatewayclient import AsyncGatewayClient, SyncGatewayClient

__all__ = ["async_gateway", "gateway", "on_setting_changed"]

_lock = threading.Lock()
_current: Optional[_Clients] = None
# A forked parent's clients: never used, closed or collected here. Closing them would act on
# the parent's connections; collecting them would have the parent's sockets and sessions
# warn as unclosed in the child.
_inherited: List[_Clients] = []
_closing: Set[Any] = set()  # async closes scheduled on a running loop, held until done


class _Clients:
    """The clients of one process for one value of the setting; both share one RateLimit."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._value = getattr(settings, SETTING, None)
        options, problems = read(self._value)
        if problems:
            raise problems[0].error()
        self._options = options
        self._lock = threading.Lock()
        self.sync: Optional[SyncGatewayClient] = None
        self.async_: Optional[AsyncGatewayClient] = None

    def get_sync(self) -> SyncGatewayClient:
        client = self.sync
        if client is None:
            with self._lock:
                if self.sync is None:
                    self.sync = self._build(gatewayclient.SyncGatewayClient)
                client = self.sync
        return client

    def get_async(self) -> AsyncGatewayClient:
        client = self.async_
        if client is None:
            with self._lock:
                if self.async_ is None:
                    self.async_ = self._build(gatewayclient.AsyncGatewayClient)
                client = self.async_
        return client

    def _build(self, kind: Any) -> Any:
        try:
            return kind(**self._options)
        except (ValueError, TypeError) as exc:  # GatewayConfigError is a ValueError
            raise refused(exc, self._value).error() from None

    def close(self) -> None:
        if self.sync is not None:
            self.sync.close()
        if self.async_ is not None:
            _close_async(self.async_)


def gateway() -> SyncGatewayClient:
    """This process's SyncGatewayClient, built from ``settings.GATEWAYCLIENT`` on first use;
    ImproperlyConfigured (naming the check id) when the setting is wrong."""
    return _clients().get_sync()


def async_gateway() -> AsyncGatewayClient:
    """This process's AsyncGatewayClient (usable from any event loop), built like gateway()."""
    return _clients().get_async()


def _clients() -> _Clients:
    clients = _current
    if clients is not None and clients.pid == os.getpid():
        return clients
    return _renew()


def _renew() -> _Clients:
    global _current
    with _lock:
        clients = _current
        if clients is None or clients.pid != os.getpid():
            if clients is not None:
                _inherited.append(clients)
            clients = _current = _Clients()
        return clients


def on_setting_changed(setting: str = "", **kwargs: Any) -> None:
    """A change of the setting: the next call builds new clients; this process's old ones are
    closed (their connections released)."""
    global _current
    if setting != SETTING:
        return
    with _lock:
        clients, _current = _current, None
    if clients is not None and clients.pid == os.getpid():
        clients.close()


def _close_async(client: AsyncGatewayClient) -> None:
    """Close an async client from synchronous code: on the running loop of this thread if
    there is one (a task, awaited by nobody), else in a loop of its own, which also closes
    the sessions of loops already closed and hands those of loops running elsewhere to them."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        own = asyncio.new_event_loop()  # not set as this thread's loop: nothing else changes
        try:
            own.run_until_complete(client.aclose())
        finally:
            own.close()
        return
    task = loop.create_task(client.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at the fork; it does not exist here.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
