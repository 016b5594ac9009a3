"""The fake gateway's mutable state, shared by its server loop and the test thread: tokens,
the request and arrival logs and the rate-limit windows, each guarded by a lock."""

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
class Arrival:
    """One request under ``/v1`` as FakeGateway received it, for tests of rates: ``at`` is
    ``time.monotonic()`` in the gateway's process when its handling began, ``tokens`` the
    ``total_tokens`` of the usage its answer reported (0 for an error answer), ``status`` the
    status answered (0 when no answer was written: the client went away)."""

    at: float
    path: str
    model: Optional[str]
    tokens: int
    status: int


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one request against its token's window, and the headers that say so."""

    allowed: bool
    limit: Optional[int]
    remaining: int
    reset_seconds: float
    token_limit: Optional[int] = None
    tokens_remaining: int = 0

    def headers(self) -> Dict[str, str]:
        reset = f"{format_seconds(self.reset_seconds)}s"
        headers: Dict[str, str] = {}
        if self.limit is not None:
            headers["x-ratelimit-limit-requests"] = str(self.limit)
            headers["x-ratelimit-remaining-requests"] = str(self.remaining)
            headers["x-ratelimit-reset-requests"] = reset
        if self.token_limit is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.token_limit)
            headers["x-ratelimit-remaining-tokens"] = str(self.tokens_remaining)
            headers["x-ratelimit-reset-tokens"] = reset
        return headers


class RateLimiter:
    """A fixed window per token that opens with the token's first request and counts its
    requests and their tokens; refused requests count for neither. ``retry_after`` replaces the
    computed wait (fractions allowed)."""

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
        self._windows: Dict[str, Tuple[float, int, int]] = {}

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()

    def check(
        self, key: str, limit: Optional[int], token_limit: Optional[int] = None, tokens: int = 0
    ) -> RateDecision:
        """Count a request of ``tokens`` tokens if its window has room for it under ``limit``
        requests and ``token_limit`` tokens (None: no such limit)."""
        with self._lock:
            now = self.clock()
            start, count, used = self._windows.get(key, (now, 0, 0))
            if now - start >= self.window:
                start, count, used = now, 0, 0
            allowed = (limit is None or count < limit) and (
                token_limit is None or used + tokens <= token_limit
            )
            if allowed:
                count, used = count + 1, used + tokens
            self._windows[key] = (start, count, used)
        wait = self.retry_after
        if wait is None:
            wait = max(1.0, float(math.ceil(start + self.window - now)))
        left = 0 if token_limit is None else max(0, token_limit - used)
        return RateDecision(
            allowed, limit, 0 if limit is None else limit - count, wait, token_limit, left
        )


class GatewayState:
    """Everything a FakeGateway remembers between requests."""

    def __init__(
        self,
        token: str,
        rpm_limit: Optional[int],
        limiter: RateLimiter,
        tpm_limit: Optional[int] = None,
        latency: float = 0.0,
    ) -> None:
        self.rpm_limit = rpm_limit
        self.tpm_limit = tpm_limit
        self.latency = latency
        self.limiter = limiter
        self.faults = FaultQueue()
        self._lock = threading.Lock()
        self._initial = (token, rpm_limit, tpm_limit, latency)
        self._tokens: Dict[str, Optional[FrozenSet[str]]] = {token: None}
        self._requests: List[RecordedRequest] = []
        self._arrivals: List[Arrival] = []

    def reset(self) -> None:
        """Back to the state the gateway was built with."""
        token, self.rpm_limit, self.tpm_limit, self.latency = self._initial
        self.faults.clear()
        self.limiter.reset()
        with self._lock:
            self._tokens = {token: None}
            self._requests.clear()
            self._arrivals.clear()

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
            self._arrivals.clear()

    def arrive(self, arrival: Arrival) -> None:
        with self._lock:
            self._arrivals.append(arrival)

    def arrivals(self) -> List[Arrival]:
        with self._lock:
            return list(self._arrivals)
