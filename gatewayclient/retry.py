"""The retry policy run by tenacity: the only module that uses tenacity.

A call's first attempt runs bare: tenacity is imported and a fresh controller is built only once
an attempt has failed with a retryable error, so a call that succeeds pays nothing for retries.
The failed attempt is replayed into the controller as its attempt 1, so tenacity counts and waits
exactly as if it had run from the start. A controller is never shared between calls, threads or
tasks.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, TypeVar

from . import _halt, _telemetry
from .config import RetryPolicy
from .errors import GatewayClientError

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["RetryPolicy", "arun", "arun_again", "retried", "run", "run_again", "should_retry"]

T = TypeVar("T")
logger = logging.getLogger("gatewayclient")


def should_retry(policy: RetryPolicy, error: BaseException) -> bool:
    """Retryable by its class, and not asking for a longer wait than the policy accepts."""
    if not isinstance(error, GatewayClientError) or not error.retryable:
        return False
    return error.retry_after is None or error.retry_after <= policy.max_retry_after


def _wait_seconds(policy: RetryPolicy, state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome is not None else None
    hint = getattr(error, "retry_after", None)
    if hint is not None:
        return float(hint)  # the server's word wins over backoff
    # Exponential backoff with full jitter: uniform(0, min(cap, base * 2 ** (attempt - 1))).
    exponent = min(state.attempt_number - 1, 64)  # 2**64 * base is past any cap, and finite
    ceiling = min(policy.backoff_max, policy.backoff_base * 2.0**exponent)
    return random.uniform(0, ceiling)


def _controller_options(policy: RetryPolicy, what: str) -> Dict[str, Any]:
    import tenacity

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        status = getattr(error, "status_code", None)
        seconds = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "%s failed (%s%s); retry %d of %d in %.2f s",
            what,
            f"HTTP {status}: " if status else "",
            type(error).__name__,
            state.attempt_number,
            policy.max_retries,
            seconds,
        )
        _telemetry.event(
            "gatewayclient.retry",
            **{
                "gatewayclient.retry.attempt": state.attempt_number,
                "gatewayclient.retry.wait": seconds,
                "error.type": type(error).__name__,
                "http.response.status_code": status,
            },
        )

    return {
        "stop": tenacity.stop_after_attempt(policy.max_retries + 1),
        "wait": lambda state: _wait_seconds(policy, state),
        "retry": tenacity.retry_if_exception(lambda error: should_retry(policy, error)),
        "before_sleep": log_retry,
        "reraise": True,
    }


def _replaying(first: BaseException, attempt: Callable[[], T]) -> Callable[[], T]:
    replay = [first]

    def again() -> T:
        if replay:
            raise replay.pop()
        return attempt()

    return again


def retried(policy: RetryPolicy, error: BaseException) -> bool:
    """Whether a first attempt that failed with ``error`` is tried again at all."""
    return policy.max_retries != 0 and should_retry(policy, error)


def run(policy: RetryPolicy, attempt: Callable[[], T], what: str) -> T:
    """Call ``attempt`` until it succeeds or the policy gives up; ``what`` names it in logs."""
    try:
        return attempt()
    except GatewayClientError as error:
        if not retried(policy, error):
            raise
        first = error
    return run_again(policy, attempt, what, first)


def run_again(policy: RetryPolicy, attempt: Callable[[], T], what: str, first: BaseException) -> T:
    """``run`` after its first attempt failed with ``first``, a retryable error: a caller that
    makes the first attempt itself (the common call, one layer less) goes on here."""
    import tenacity

    # A batch worker's backoff ends at once when its batch is halted (``_halt``).
    controller = tenacity.Retrying(sleep=_halt.sleep, **_controller_options(policy, what))
    return controller(_replaying(first, attempt))


async def arun(policy: RetryPolicy, attempt: Callable[[], Awaitable[T]], what: str) -> T:
    """The awaitable twin of ``run``."""
    try:
        return await attempt()
    except GatewayClientError as error:
        if not retried(policy, error):
            raise
        first = error
    return await arun_again(policy, attempt, what, first)


async def arun_again(
    policy: RetryPolicy, attempt: Callable[[], Awaitable[T]], what: str, first: BaseException
) -> T:
    """The awaitable twin of ``run_again``."""
    import tenacity

    replay = [first]

    async def again() -> T:
        if replay:
            raise replay.pop()
        return await attempt()

    controller = tenacity.AsyncRetrying(**_controller_options(policy, what))
    result: T = await controller(again)
    return result
