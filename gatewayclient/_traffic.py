"""Traffic control around each request, for both clients: room in the rate budget before an
attempt leaves, the answer's usage settled after it, the whole budget paused by a 429, and the
next fallback model when one has failed. The twins differ only in how they wait (``time.sleep``
or ``asyncio.sleep``) and in awaiting a Redis window; the decisions are made here, once.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any, Awaitable, Callable, Optional, Tuple, TypeVar

from . import _halt, _telemetry
from .budget import LocalWindow, RateLimit, Ticket
from .errors import (
    GatewayAuthError,
    GatewayClientError,
    GatewayModelNotFoundError,
    GatewayRateLimitError,
)

__all__ = [
    "afailed",
    "arun_chain",
    "asettle",
    "aspend",
    "atake",
    "failed",
    "run_chain",
    "settle",
    "spend",
    "take",
    "window",
]

T = TypeVar("T")
A = TypeVar("A")
logger = logging.getLogger("gatewayclient")
_REDIS_WINDOW = "gatewayclient._budget_redis"


def window(limit: RateLimit) -> Any:
    """The window a budget's tickets come from: Redis's when it has storage (made on first
    use, importing redis only then), else the process's own."""
    if limit.storage is None:
        return limit.local
    shared = limit._shared
    if shared is None:
        with limit._shared_lock:
            if limit._shared is None:
                from ._budget_redis import RedisWindow

                limit._shared = RedisWindow(limit.storage, limit.key, limit.local)
            shared = limit._shared
    return shared


def _waited(limit: RateLimit, waited: float, wait: float) -> None:
    refusal = limit.refusal(wait, waited)
    if refusal is not None:
        raise refusal


def take(limit: RateLimit, cost: int) -> Ticket:
    """A ticket for one attempt, after waiting for room (raises the budget's refusal when
    the wait would pass ``max_wait``)."""
    source = window(limit)
    waited = 0.0
    while True:
        got = source.take(cost)
        if isinstance(got, Ticket):
            return got
        _waited(limit, waited, got)
        _telemetry.event("gatewayclient.rate_limit.wait", **{"gatewayclient.wait": got})
        _halt.sleep(got)  # time.sleep, except in a batch worker: its batch's halt ends it
        waited += got


async def atake(limit: RateLimit, cost: int) -> Ticket:
    """The awaitable twin of ``take``: a cancelled task stops waiting and holds no ticket."""
    # asyncio is imported where it is used: a sync program never imports it (~10 ms).
    if limit.storage is not None and _REDIS_WINDOW not in sys.modules:
        import asyncio

        # Importing redis takes ~0.1 s, once: done in a thread, not in the loop's, where it
        # would hold up every task of the loop.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, importlib.import_module, _REDIS_WINDOW)
    source = window(limit)
    local = isinstance(source, LocalWindow)
    waited = 0.0
    while True:
        got = source.take(cost) if local else await source.atake(cost)
        if isinstance(got, Ticket):
            return got
        _waited(limit, waited, got)
        _telemetry.event("gatewayclient.rate_limit.wait", **{"gatewayclient.wait": got})
        import asyncio

        await asyncio.sleep(got)
        waited += got


def used_tokens(answer: Any) -> Optional[int]:
    """The ``total_tokens`` of an answer (or of a usage mapping), None when it has none."""
    usage: Any = answer.get("usage", answer) if hasattr(answer, "get") else None
    total = usage.get("total_tokens") if hasattr(usage, "get") else None
    return total if type(total) is int and total >= 0 else None


def after_error(error: BaseException) -> Tuple[Optional[int], Optional[float]]:
    """What a failed attempt leaves in the budget: the tokens to settle (0 when the gateway
    answered with an error status; kept when the request may have been served) and the
    seconds to pause everyone (a 429 from the gateway with a retry hint)."""
    if not isinstance(error, GatewayClientError) or error.status_code is None:
        return None, None
    pause = None
    if isinstance(error, GatewayRateLimitError) and error.status_code == 429:
        pause = error.retry_after if error.retry_after else None
    return 0, pause


def failed(ticket: Ticket, error: BaseException) -> None:
    """Leave a failed attempt's mark in the budget (see ``after_error``)."""
    tokens, pause = after_error(error)
    if pause is not None:
        ticket.store.pause(pause)
    if tokens is not None:
        ticket.store.settle(ticket, tokens)


async def afailed(ticket: Ticket, error: BaseException) -> None:
    tokens, pause = after_error(error)
    store, local = ticket.store, isinstance(ticket.store, LocalWindow)
    if pause is not None:
        store.pause(pause) if local else await store.apause(pause)
    if tokens is not None:
        store.settle(ticket, tokens) if local else await store.asettle(ticket, tokens)


def settle(ticket: Ticket, answer: Any) -> None:
    """Correct the ticket to the tokens the answer used (no round trip when it reserved them
    exactly, or when the answer says nothing)."""
    tokens = used_tokens(answer)
    if tokens is not None and tokens != ticket.tokens:
        ticket.store.settle(ticket, tokens)


async def asettle(ticket: Ticket, answer: Any) -> None:
    tokens = used_tokens(answer)
    if tokens is not None and tokens != ticket.tokens:
        store = ticket.store
        store.settle(ticket, tokens) if isinstance(store, LocalWindow) else await store.asettle(
            ticket, tokens
        )


def spend(limit: RateLimit, cost: int, attempt: Callable[[A], T], call: A) -> T:
    """One attempt, ``attempt(call)``, under the budget: a ticket first, then the answer's
    tokens settled."""
    ticket = take(limit, cost)
    try:
        answer = attempt(call)
    except GatewayClientError as error:
        failed(ticket, error)
        raise
    settle(ticket, answer)
    return answer


async def aspend(limit: RateLimit, cost: int, attempt: Callable[[A], Awaitable[T]], call: A) -> T:
    """The awaitable twin of ``spend``."""
    # An in-process budget with room awaits nothing: its ticket and its settling are taken
    # here, without the coroutines of atake and asettle (a microsecond of a call's ten).
    got = limit.local.take(cost) if limit.storage is None else None
    ticket = got if isinstance(got, Ticket) else await atake(limit, cost)
    try:
        answer = await attempt(call)
    except GatewayClientError as error:
        await afailed(ticket, error)
        raise
    if isinstance(ticket.store, LocalWindow):
        settle(ticket, answer)
    else:
        await asettle(ticket, answer)
    return answer


# -- fallbacks ------------------------------------------------------------------------------


def falls_back(error: BaseException) -> bool:
    """Whether another model may mend ``error``: a retryable failure (after its own retries),
    or at once a 404 (no such model) or a 403 (this token may not use it). Never a bad request,
    a 401, a malformed answer, a stream cut after its first chunk, or the budget's refusal."""
    if not isinstance(error, GatewayClientError):
        return False
    if isinstance(error, GatewayModelNotFoundError):
        return True
    if isinstance(error, GatewayAuthError):
        return error.status_code == 403 or (
            error.status_code is None and error.error_type == "permission_error"
        )
    return error.retryable


def next_call(call: Any, error: BaseException) -> Any:
    """The same call for the next fallback model, or None when there is none to try."""
    if not call.next_models or call.retarget is None or not falls_back(error):
        return None
    following = call.retarget(call.next_models[0])
    status = getattr(error, "status_code", None)
    logger.warning(
        "%s failed (%s%s); falling back to %s",
        call.model,
        f"HTTP {status}: " if status else "",
        type(error).__name__,
        following.model,
    )
    _telemetry.event(
        "gatewayclient.fallback",
        **{
            "gatewayclient.fallback.from": call.model,
            "gatewayclient.fallback.to": following.model,
            "error.type": type(error).__name__,
            "http.response.status_code": status,
        },
    )
    return following


def run_chain(call: Any, run_one: Callable[[Any], T]) -> T:
    """``run_one(call)``, then for each fallback model while the last one failed in a way
    another model may mend. The last error is raised with the one before as its context."""
    previous: Optional[BaseException] = None
    while True:
        try:
            return run_one(call)
        except GatewayClientError as error:
            _chain_context(error, previous)
            call, previous = next_call(call, error), error
            if call is None:
                raise


async def arun_chain(call: Any, run_one: Callable[[Any], Awaitable[T]]) -> T:
    """The awaitable twin of ``run_chain``."""
    previous: Optional[BaseException] = None
    while True:
        try:
            return await run_one(call)
        except GatewayClientError as error:
            _chain_context(error, previous)
            call, previous = next_call(call, error), error
            if call is None:
                raise


def _chain_context(error: BaseException, previous: Optional[BaseException]) -> None:
    if previous is not None and previous is not error:
        error.__context__ = previous
