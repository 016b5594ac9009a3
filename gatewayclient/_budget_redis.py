"""The rate budget's window in Redis: the only module that talks to Redis.

The window is a sorted set of the calls of the last ``per`` seconds (member ``<id>|<tokens>``,
scored by the Redis server's clock), a counter of the tokens they hold, and a "paused until" key.
Three Lua scripts keep them, each one atomic round trip: ``take`` (one per attempt), ``settle``
(once the answer's usage is known, only when it differs from the reservation) and ``pause``
(after a 429). Connections come from the ``limits`` package's Redis storages (``limits.storage``
for the sync client, ``limits.aio`` with redis-py for the async one, one per event loop).

When Redis fails (refused, reset, slower than ``STALL_BOUND``, an error reply), the call goes on
under the process's own window of the same size, one WARNING says so, and Redis is tried again
``RETRY_AFTER`` seconds later; it is used again as soon as it answers.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import os
import sys
import threading
import time
import weakref
from typing import Any, List, Optional, Set, Tuple, Union

from redis.exceptions import RedisError

from ._loops import close_socket, drive, keeper
from .budget import LocalWindow, Ticket, _shown

__all__ = ["RETRY_AFTER", "STALL_BOUND", "RedisWindow"]

logger = logging.getLogger("gatewayclient")

STALL_BOUND = 0.25  # seconds a call waits for Redis (connect, or an answer) before going on
RETRY_AFTER = 2.0  # seconds Redis is left alone after it failed
_ASYNC_STORAGE = "limits.aio.storage"

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local per, requests, tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
    tonumber(ARGV[4])
local horizon = now - per
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon)
if #gone > 0 then
  local freed = 0
  for i = 1, #gone do freed = freed + tonumber(string.match(gone[i], '|(%d+)$')) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
  redis.call('DECRBY', KEYS[3], freed)
end
local count = redis.call('ZCARD', KEYS[1])
local held = 0
if count > 0 then held = tonumber(redis.call('GET', KEYS[3]) or '0') end
local wait = tonumber(redis.call('GET', KEYS[2]) or '0') - now
if requests >= 0 and count >= requests then
  local oldest = redis.call('ZRANGE', KEYS[1], count - requests, count - requests, 'WITHSCORES')
  wait = math.max(wait, tonumber(oldest[2]) + per - now)
end
if tokens >= 0 and held + cost > tokens then
  local excess = held + cost - tokens
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    excess = excess - tonumber(string.match(entries[i], '|(%d+)$'))
    if excess <= 0 then
      wait = math.max(wait, tonumber(entries[i + 1]) + per - now)
      break
    end
  end
end
if wait > 0 then return {0, tostring(wait)} end
redis.call('ZADD', KEYS[1], now, ARGV[5])
if count == 0 then redis.call('SET', KEYS[3], cost) else redis.call('INCRBY', KEYS[3], cost) end
local keep = math.ceil(per * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[3], keep)
return {1, t[1], t[2]}
"""

_SETTLE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], score, ARGV[2])
redis.call('INCRBY', KEYS[2], ARGV[3])
return 1
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seconds = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + seconds > current then
  redis.call('SET', KEYS[1], tostring(now + seconds), 'PX', math.ceil(seconds * 1000) + 1000)
end
return 1
"""

_RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then redis.call('DECRBY', KEYS[2], ARGV[2]) end
return 1
"""

_SCRIPTS = {"take": _TAKE, "settle": _SETTLE, "pause": _PAUSE, "release": _RELEASE}


def _client_url(url: str) -> str:
    # limits names a Unix socket redis+unix://; the contract's unix:// means the same.
    return "redis+unix://" + url[len("unix://") :] if url.startswith("unix://") else url


class _Sync:
    """The sync side: one limits RedisStorage (a redis-py client and its pool) per process."""

    def __init__(self, url: str) -> None:
        from limits.storage import RedisStorage

        storage = RedisStorage(
            _client_url(url), socket_timeout=STALL_BOUND, socket_connect_timeout=STALL_BOUND
        )
        connection: Any = storage.get_connection()
        self.errors = storage.base_exceptions
        self.scripts = {name: connection.register_script(lua) for name, lua in _SCRIPTS.items()}
        self.pid = os.getpid()


class _Async:
    """The async side for one event loop: a limits.aio RedisStorage on redis-py's asyncio
    client, closed by the loop's own shutdown (or by hand, if the loop was closed without it)."""

    def __init__(self, url: str) -> None:
        from limits.aio.storage import RedisStorage

        storage = RedisStorage(
            "async+" + _client_url(url),
            implementation="redispy",
            socket_timeout=STALL_BOUND,
            socket_connect_timeout=STALL_BOUND,
        )
        bridge: Any = storage.bridge  # the redis-py side of limits.aio's storage
        self.client = bridge.get_connection()
        self.errors = storage.base_exceptions
        self.scripts = {name: self.client.register_script(lua) for name, lua in _SCRIPTS.items()}
        self.keeper: Any = None

    async def start(self) -> None:
        self.keeper = keeper(self.client.aclose)
        await self.keeper.__anext__()

    def close_dead(self) -> None:
        pool = self.client.connection_pool
        for connection in [*pool._available_connections, *pool._in_use_connections]:
            writer = getattr(connection, "_writer", None)
            if writer is not None:
                close_socket(writer.transport)
                connection._reader = connection._writer = None
        drive(self.keeper.aclose())


class RedisWindow:
    """A budget's window in Redis, for both clients; the process's window stands in for it
    while Redis fails."""

    def __init__(self, url: str, key: str, local: LocalWindow) -> None:
        self._url = url
        self._local = local
        # One hash tag: the three keys live on the same node of a Redis Cluster.
        self._keys = [f"gatewayclient:{{{key}}}:{part}" for part in ("log", "pause", "held")]
        self._limits = [
            local.per,
            -1 if local.requests is None else local.requests,
            -1 if local.tokens is None else local.tokens,
        ]
        self._names = itertools.count()
        self._prefix = os.urandom(8).hex()
        self._lock = threading.Lock()
        self._sync: Optional[_Sync] = None
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Async] = (
            weakref.WeakKeyDictionary()
        )
        self._down_until = 0.0  # monotonic time before which Redis is not tried
        self._warned = False
        # The last loop's side, if that loop was closed by hand, is closed when this goes.
        weakref.finalize(self, _close_dead_loops, self._loops)

    # -- health ----------------------------------------------------------------------------

    def _usable(self) -> bool:
        return self._down_until == 0.0 or time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._down_until = time.monotonic() + RETRY_AFTER
            warn, self._warned = not self._warned, True
        if warn:
            logger.warning(
                "the rate limit's Redis at %s failed (%s): calls go on under this process's own "
                "budget of the same size; Redis is tried again every %g s",
                _shown(self._url),
                type(exc).__name__,
                RETRY_AFTER,
            )

    def _answered(self) -> None:
        if self._down_until:
            with self._lock:
                back, self._down_until, self._warned = self._warned, 0.0, False
            if back:
                logger.info("the rate limit's Redis at %s answers again", _shown(self._url))

    # -- sync --------------------------------------------------------------------------------

    def _sync_side(self) -> _Sync:
        side = self._sync
        if side is None or side.pid != os.getpid():
            with self._lock:
                if self._sync is None or self._sync.pid != os.getpid():
                    self._sync = _Sync(self._url)
                side = self._sync
        return side

    def _member(self, cost: int) -> str:
        return f"{self._prefix}:{next(self._names)}|{cost}"

    def take(self, cost: int) -> Union[Ticket, float]:
        if not self._usable():
            return self._local.take(cost)
        member = self._member(cost)
        try:
            side = self._sync_side()
            answer = side.scripts["take"](keys=self._keys, args=[*self._limits, cost, member])
        except Exception as exc:
            if not self._storage_error(exc, self._sync):
                raise
            self._failed(exc)
            return self._local.take(cost)
        self._answered()
        return self._ticket(answer, cost, member)

    def settle(self, ticket: Ticket, tokens: int) -> None:
        args = self._settle_args(ticket, tokens)
        if args is None or not self._usable():
            return
        try:
            self._sync_side().scripts["settle"](keys=[self._keys[0], self._keys[2]], args=args)
        except Exception as exc:
            if not self._storage_error(exc, self._sync):
                raise
            self._failed(exc)
            return
        ticket.member, ticket.tokens = args[1], tokens

    def pause(self, seconds: float) -> None:
        self._local.pause(seconds)  # this process at once, whatever Redis does
        if not self._usable():
            return
        try:
            self._sync_side().scripts["pause"](keys=[self._keys[1]], args=[seconds])
        except Exception as exc:
            if not self._storage_error(exc, self._sync):
                raise
            self._failed(exc)

    # -- async -------------------------------------------------------------------------------

    async def _async_side(self) -> _Async:
        loop = asyncio.get_running_loop()
        side = self._loops.get(loop)
        if side is None:
            if _ASYNC_STORAGE not in sys.modules:
                # Its first import takes ~0.1 s: done in a thread, not in the loop's, where it
                # would hold up every task of the loop.
                await loop.run_in_executor(None, importlib.import_module, _ASYNC_STORAGE)
            side = self._loops.get(loop)  # another task of this loop may have made it meanwhile
        if side is None:
            _close_dead_loops(self._loops)
            side = _Async(self._url)
            await side.start()
            self._loops[loop] = side
        return side

    async def atake(self, cost: int) -> Union[Ticket, float]:
        if not self._usable():
            return self._local.take(cost)
        member = self._member(cost)
        side: Optional[_Async] = None
        try:
            side = await self._async_side()
            call = side.scripts["take"](keys=self._keys, args=[*self._limits, cost, member])
            answer = await _unless_cancelled(call, self, member)
        except Exception as exc:
            if not self._storage_error(exc, side):
                raise
            self._failed(exc)
            return self._local.take(cost)
        self._answered()
        return self._ticket(answer, cost, member)

    async def asettle(self, ticket: Ticket, tokens: int) -> None:
        args = self._settle_args(ticket, tokens)
        if args is None or not self._usable():
            return
        side: Optional[_Async] = None
        try:
            side = await self._async_side()
            await side.scripts["settle"](keys=[self._keys[0], self._keys[2]], args=args)
        except Exception as exc:
            if not self._storage_error(exc, side):
                raise
            self._failed(exc)
            return
        ticket.member, ticket.tokens = args[1], tokens

    async def apause(self, seconds: float) -> None:
        self._local.pause(seconds)
        if not self._usable():
            return
        side: Optional[_Async] = None
        try:
            side = await self._async_side()
            await side.scripts["pause"](keys=[self._keys[1]], args=[seconds])
        except Exception as exc:
            if not self._storage_error(exc, side):
                raise
            self._failed(exc)

    async def arelease(self, member: str) -> None:
        """Take a ticket back whole (its task was cancelled before it could use it)."""
        side: Optional[_Async] = None
        try:
            side = await self._async_side()
            cost = member.rsplit("|", 1)[1]
            await side.scripts["release"](keys=[self._keys[0], self._keys[2]], args=[member, cost])
        except Exception as exc:
            if not self._storage_error(exc, side):
                raise
            self._failed(exc)

    # -- shared ------------------------------------------------------------------------------

    def _ticket(self, answer: List[Any], cost: int, member: str) -> Union[Ticket, float]:
        if not int(answer[0]):
            return float(answer[1])  # the wait
        # Redis's time in seconds and microseconds: a float of their sum keeps every microsecond
        # (Lua's tostring would keep only 14 digits: a tenth of a millisecond).
        return Ticket(int(answer[1]) + int(answer[2]) / 1e6, cost, self, member)

    def _settle_args(self, ticket: Ticket, tokens: int) -> Optional[Tuple[str, str, int]]:
        if self._local.tokens is None or ticket.tokens == tokens or not ticket.member:
            return None  # no token budget, or nothing to correct: no round trip
        name = ticket.member.rsplit("|", 1)[0]
        return ticket.member, f"{name}|{tokens}", tokens - ticket.tokens

    @staticmethod
    def _storage_error(exc: BaseException, side: Any) -> bool:
        """Whether ``exc`` is Redis failing: refused, reset, timed out, an error reply."""
        return isinstance(exc, (RedisError, OSError, asyncio.TimeoutError))


def _close_dead_loops(loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Async]) -> None:
    """Close the sides of loops that were closed by hand (without shutting their generators
    down, which closes a side inside its loop)."""
    for loop, side in list(loops.items()):
        if loop.is_closed():
            loops.pop(loop, None)
            side.close_dead()


async def _unless_cancelled(call: Any, window: RedisWindow, member: str) -> Any:
    """The take script's answer; a task cancelled meanwhile reserves nothing: the script still
    runs to its end (shielded), and a ticket it gave is taken back."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda done: _give_back(done, window, member))
        raise


def _give_back(done: asyncio.Future[Any], window: RedisWindow, member: str) -> None:
    if done.cancelled() or done.exception() is not None or not int(done.result()[0]):
        return
    task = asyncio.ensure_future(window.arelease(member))
    _GIVING_BACK.add(task)  # held until done: the loop keeps only a weak reference to a task
    task.add_done_callback(_GIVING_BACK.discard)


_GIVING_BACK: Set[asyncio.Future[None]] = set()
