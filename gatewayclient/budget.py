"""``RateLimit``: one budget of requests and tokens per window, shared by every client given it.

In process, the window is a log of the calls made in the last ``per`` seconds, each with the
tokens it reserved; with ``storage`` (Redis, ``_budget_redis``) the same log lives in Redis and
every process that names the same URL and key shares it. A call takes a ``Ticket`` before its
request leaves, waits when the window is full (the waiting itself is the clients': sleep or
asyncio.sleep, see ``retry``), and settles the ticket with the tokens its answer used.

The arithmetic is exact: in any interval of ``per`` seconds, at most ``requests`` tickets and at
most ``tokens`` tokens (as settled). Nothing here is imported by a client without a budget.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Iterable, List, Optional, Union
from urllib.parse import urlsplit

from .errors import GatewayConfigError, GatewayRateLimitError, GatewayValidationError

__all__ = ["RateLimit", "Ticket", "estimate_tokens"]

_SCHEMES = ("redis", "rediss", "unix")


class Ticket:
    """One request's place in the window: when it was taken and the tokens it holds."""

    __slots__ = ("at", "member", "store", "tokens")

    def __init__(self, at: float, tokens: int, store: Any, member: str = "") -> None:
        self.at = at
        self.tokens = tokens  # None once the ticket has left the window
        self.store = store  # the window that issued it (in process, or the Redis one)
        self.member = member  # its name in Redis


class LocalWindow:
    """The window of one process: a log of tickets, oldest first, guarded by one lock (held for
    microseconds, never across a wait), so threads and event loops share it alike."""

    def __init__(self, requests: Optional[int], tokens: Optional[int], per: float) -> None:
        self.requests = requests
        self.tokens = tokens
        self.per = per
        self._lock = threading.Lock()
        self._log: Deque[Ticket] = deque()
        self._held = 0  # tokens of the tickets in the log
        self._paused_until = 0.0

    def take(self, cost: int, now: Optional[float] = None) -> Union[Ticket, float]:
        """A ticket for a request reserving ``cost`` tokens, or the seconds until one may fit."""
        now = time.monotonic() if now is None else now
        with self._lock:
            log = self._log
            if log and log[0].at <= now - self.per:
                self._expire(now)
            # The wait until the ticket fits (none, the common case): the pause, then the
            # request count, then the tokens, each as the oldest tickets leave the window.
            wait = self._paused_until - now
            requests, tokens = self.requests, self.tokens
            if requests is not None and len(log) >= requests:
                wait = max(wait, log[len(log) - requests].at + self.per - now)
            if tokens is not None and self._held + cost > tokens:
                excess = self._held + cost - tokens
                for ticket in log:  # the oldest tickets must leave until the cost fits
                    excess -= ticket.tokens
                    if excess <= 0:
                        wait = max(wait, ticket.at + self.per - now)
                        break
            if wait > 0:
                return wait
            ticket = Ticket(now, cost, self)
            log.append(ticket)
            self._held += cost
            return ticket

    def _expire(self, now: float) -> None:
        log, horizon = self._log, now - self.per
        while log and log[0].at <= horizon:
            gone = log.popleft()
            self._held -= gone.tokens
            gone.tokens = -1  # out of the window: settling it changes nothing

    def settle(self, ticket: Ticket, tokens: int) -> None:
        """Correct a ticket's reservation to the tokens the answer used."""
        with self._lock:
            if ticket.tokens >= 0:
                self._held += tokens - ticket.tokens
                ticket.tokens = tokens

    def pause(self, seconds: float, now: Optional[float] = None) -> None:
        """No ticket for anyone for ``seconds`` (the gateway answered 429 with that hint)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._paused_until = max(self._paused_until, now + seconds)


def _positive_int(name: str, value: object) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GatewayConfigError(f"RateLimit {name} must be a positive int or None, got {value!r}")
    return value


def _seconds(name: str, value: object, allow_none: bool) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GatewayConfigError(f"RateLimit {name} must be a finite number, got {value!r}")
    if value <= 0 and not (allow_none and value == 0):
        raise GatewayConfigError(f"RateLimit {name} must be > 0 seconds, got {value!r}")
    return float(value)


def _storage(url: object) -> Optional[str]:
    if url is None:
        return None
    if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
        raise GatewayConfigError(
            "RateLimit storage must be None or a redis://, rediss:// or unix:// URL, got "
            + (repr(_shown(url)) if isinstance(url, str) else type(url).__name__)
        )
    missing = [name for name in ("redis", "limits") if importlib.util.find_spec(name) is None]
    if missing:  # found, not imported: constructing a RateLimit connects to (and loads) nothing
        raise GatewayConfigError(
            f"RateLimit storage needs the {' and '.join(missing)} package"
            f"{'s' if len(missing) > 1 else ''}: pip install 'gatewayclient[redis]'"
        )
    return url


def _shown(url: str) -> str:
    """A storage URL fit for a repr or a log line: its password, if any, replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    netloc = f"{user}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return parts._replace(netloc=netloc).geturl()


class RateLimit:
    """A budget of ``requests`` and ``tokens`` per ``per`` seconds, shared by every client given
    this object (threads, tasks, event loops), or, with ``storage``, by every process using the
    same Redis URL and ``key``. Constructing it connects to nothing."""

    def __init__(
        self,
        requests: Optional[int] = None,
        tokens: Optional[int] = None,
        *,
        per: float = 60.0,
        storage: Optional[str] = None,
        key: str = "gatewayclient",
        max_wait: Optional[float] = None,
    ) -> None:
        self.requests = _positive_int("requests", requests)
        self.tokens = _positive_int("tokens", tokens)
        if self.requests is None and self.tokens is None:
            raise GatewayConfigError("RateLimit needs requests=, tokens= or both")
        self.per = float(_seconds("per", per, allow_none=False) or 0.0)
        self.storage = _storage(storage)
        if not isinstance(key, str) or not key or len(key) > 200:
            raise GatewayConfigError(f"RateLimit key must be a non-empty string, got {key!r}")
        self.key = key
        self.max_wait = _seconds("max_wait", max_wait, allow_none=True)
        self._local = LocalWindow(self.requests, self.tokens, self.per)
        self._shared: Any = None  # the Redis window, made on first use
        self._shared_lock = threading.Lock()

    def __repr__(self) -> str:
        fields = [f"requests={self.requests!r}", f"tokens={self.tokens!r}", f"per={self.per!r}"]
        if self.storage is not None:
            fields += [f"storage={_shown(self.storage)!r}", f"key={self.key!r}"]
        if self.max_wait is not None:
            fields.append(f"max_wait={self.max_wait!r}")
        return f"RateLimit({', '.join(fields)})"

    def __reduce__(self) -> Any:
        # Pickles as its settings: another process gets its own in-process window (and shares
        # the Redis one, which lives in Redis).
        options = {"per": self.per, "storage": self.storage, "key": self.key}
        return (_rebuild, (self.requests, self.tokens, options, self.max_wait))

    @property
    def local(self) -> LocalWindow:
        """The in-process window (also what a Redis budget falls back on)."""
        return self._local

    def check_cost(self, cost: int) -> None:
        """A call whose estimate alone exceeds the budget could never be sent."""
        if self.tokens is not None and cost > self.tokens:
            raise GatewayValidationError(
                f"this call is estimated at {cost} tokens, more than the rate limit's "
                f"{self.tokens} tokens per {self.per:g} s: it could never be sent"
            )

    def refusal(self, wait: float, waited: float = 0.0) -> Optional[GatewayRateLimitError]:
        """The error for a call that has waited ``waited`` seconds and would have to wait
        ``wait`` more, if that makes more than ``max_wait``; None when it may wait. Its
        ``retry_after`` is the wait still needed. Neither retried nor a reason to fall back."""
        if self.max_wait is None or waited + wait <= self.max_wait:
            return None
        error = GatewayRateLimitError(
            f"the rate limit ({self._describe()}) has no room for {wait:.2f} s, "
            f"longer than max_wait={self.max_wait:g} s: nothing was sent",
            retry_after=wait,
        )
        error.retryable = False
        return error

    def _describe(self) -> str:
        parts = [f"{self.requests} requests"] if self.requests is not None else []
        parts += [f"{self.tokens} tokens"] if self.tokens is not None else []
        return f"{' and '.join(parts)} per {self.per:g} s"


def _rebuild(
    requests: Optional[int], tokens: Optional[int], options: Dict[str, Any], max_wait: Any
) -> RateLimit:
    return RateLimit(requests, tokens, max_wait=max_wait, **options)


def _text_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts: only the text ones count
        return sum(
            len(part["text"])
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def estimate_tokens(
    messages: Optional[Iterable[Any]] = None,
    inputs: Union[str, List[str], None] = None,
    max_tokens: Any = None,
) -> int:
    """The tokens a call reserves: the characters of its text (message contents, embedding
    inputs) divided by 4, rounded up, plus its ``max_tokens`` when given. No tokenizer."""
    characters = 0
    for message in messages or ():
        if isinstance(message, dict):
            characters += _text_length(message.get("content"))
    if isinstance(inputs, str):
        characters += len(inputs)
    elif inputs is not None:
        characters += sum(len(text) for text in inputs)
    reserved = max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else 0
    return -(-characters // 4) + max(reserved, 0)
