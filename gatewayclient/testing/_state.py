"""The fake gateway's mutable state, shared by its server loop and the test thread: tokens,
the request log and the requests-per-minute windows, each guarded by a lock."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

from ._faults import FaultQueue
from ._wire import format_seconds

_SECRET_HEADERS = ("authorization", "x-api-key", "api-key")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as FakeGateway received it.

    ``headers`` has lower-case names (repeated headers joined by ", ") with credentials
    redacted: ``authorization`` reads ``"Bearer ***"``. ``json`` is the parsed body, or None when
    the body is empty or not JSON; ``body`` is the raw bytes (``b""`` for a body over the size
    limit, which is refused unread).
    """

    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    json: Any
    body: bytes
    request_id: str


def redact_headers(items: Any) -> Dict[str, str]:
    """Header pairs as a lower-case dict, with every credential replaced by ``***``."""
    headers: Dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in _SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} ***" if scheme else "***"
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one request against its token's window, and the headers that say so."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float

    def headers(self) -> Dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": f"{format_seconds(self.reset_seconds)}s",
        }


class RateLimiter:
    """A fixed 60 s window per token that opens with the token's first request; rejected
    requests do not count. ``retry_after`` replaces the computed wait (fractions allowed)."""

    def __init__(
        self,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        retry_after: Optional[float] = None,
    ) -> None:
        self.window = window
        self.clock = clock
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._windows: Dict[str, Tuple[float, int]] = {}

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()

    def check(self, key: str, limit: int) -> RateDecision:
        with self._lock:
            now = self.clock()
            start, count = self._windows.get(key, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            allowed = count < limit
            if allowed:
                count += 1
            self._windows[key] = (start, count)
        wait = self.retry_after
        if wait is None:
            wait = max(1.0, float(math.ceil(start + self.window - now)))
        return RateDecision(allowed, limit, limit - count, wait)


class GatewayState:
    """Everything a FakeGateway remembers between requests."""

    def __init__(
        self,
        token: str,
        rpm_limit: Optional[int],
        limiter: RateLimiter,
    ) -> None:
        self.rpm_limit = rpm_limit
        self.limiter = limiter
        self.faults = FaultQueue()
        self._lock = threading.Lock()
        self._initial = (token, rpm_limit)
        self._tokens: Dict[str, Optional[FrozenSet[str]]] = {token: None}
        self._requests: List[RecordedRequest] = []

    def reset(self) -> None:
        """Back to the state the gateway was built with."""
        token, self.rpm_limit = self._initial
        self.faults.clear()
        self.limiter.reset()
        with self._lock:
            self._tokens = {token: None}
            self._requests.clear()

    def add_token(self, token: str, models: Optional[Any] = None) -> None:
        allowed = None if models is None else frozenset(models)
        with self._lock:
            self._tokens[token] = allowed

    def token_models(self, token: str) -> Tuple[bool, Optional[FrozenSet[str]]]:
        """(known, allowed models or None for all) for a bearer token."""
        with self._lock:
            return token in self._tokens, self._tokens.get(token)

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def requests(self) -> List[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
