"""What a failed exchange tells the caller: the one place that words transport failures.

Each transport names what went wrong as a ``Failure`` (a kind and the few facts it needs: seconds,
a proxy's status, the operating system's or the TLS library's words); the error and its message
are built here, from those facts alone. A foreign exception's text or repr is never used: it may
hold the request's headers (the token), a proxy's credentials or megabytes of body.
Standard library only; both clients share it, so the twins raise the same class with the same
message for the same failure.
"""

from __future__ import annotations

import errno
import http
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Type
from urllib.parse import urlsplit

from .errors import (
    GatewayClientError,
    GatewayConnectionError,
    GatewayResponseError,
    GatewayTimeoutError,
)

__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "MAX_REDIRECTS",
    "Failure",
    "failure_error",
    "length_defect",
    "origin_of",
    "os_reason",
]

MAX_REDIRECTS = 20  # both twins follow at most this many (requests allows 30, aiohttp 10)
# The two twins must read the same response heads alike. http.client (under requests) allows at
# most 99 header lines (its limit of 100 counts the blank line that ends the head) and 65,536
# bytes a line; the async transport sets aiohttp to the same limits.
# aiohttp refuses a malformed Content-Length itself; http.client would read such a body to the
# connection's end, so the sync transport checks that one header (``length_defect``).
MAX_HEADERS = 99
MAX_HEADER_LINE = 65536


@dataclass(frozen=True)
class Failure:
    """What went wrong, in safe facts only. ``kind`` is a key of ``_KINDS``."""

    kind: str
    seconds: Optional[float] = None  # the timeout that ran out
    reason: str = ""  # fixed words: an OS error's strerror, a TLS verify message, a head defect
    status: Optional[int] = None  # a proxy's answer to CONNECT
    proxy: Optional[str] = None  # the proxy's URL (its userinfo is never shown)


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a URL, without userinfo, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


def os_reason(number: Optional[int]) -> str:
    """Words for an operating-system error number: ours for the common ones, else the system's
    own (``os.strerror``; never the exception's text, which a library may have written)."""
    if not isinstance(number, int):
        return "the connection was closed"
    words = _ERRNO_WORDS.get(errno.errorcode.get(number, ""))
    if words:
        return words
    try:
        return os.strerror(number).lower()
    except ValueError:
        return f"system error {number}"


_ERRNO_WORDS = {
    "ECONNREFUSED": "connection refused",
    "ECONNRESET": "connection reset by the gateway",
    "ECONNABORTED": "connection aborted",
    "EPIPE": "connection closed by the gateway while the request was being sent",
    "ENETUNREACH": "network unreachable",
    "EHOSTUNREACH": "host unreachable",
    "EADDRNOTAVAIL": "address not available",
    "ETIMEDOUT": "connection timed out",
}


def length_defect(value: Optional[str]) -> Optional[str]:
    """What is wrong with a response's Content-Length (several are joined by commas), or None."""
    if value is None:
        return None
    digits = value.strip()
    if digits.isascii() and digits.isdigit():
        return None
    return "its Content-Length is not one number"


def _clean(text: str) -> str:
    """One short printable line (a TLS library's words may hold a host name, never more)."""
    return "".join(ch if ch.isprintable() else " " for ch in text[:200]).strip()


def _seconds(value: Optional[float]) -> str:
    return "?" if value is None else f"{value:g}"


def _phrase(status: Optional[int]) -> str:
    if status is None:
        return "an error"
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


# kind -> (class, retryable, message template). ``{label}`` is "METHOD URL" of the request,
# ``{origin}`` the gateway's scheme://host:port, the rest are Failure fields.
_Template = Tuple[Type[GatewayClientError], bool, str]
_KINDS: Dict[str, _Template] = {
    "connect": (
        GatewayConnectionError,
        True,
        "cannot connect to the gateway at {origin}: {reason}",
    ),
    "dns": (
        GatewayConnectionError,
        True,
        "cannot connect to the gateway at {origin}: its host name could not be resolved",
    ),
    "connect_timeout": (  # a free connection of the pool, or a new one: both twins alike
        GatewayTimeoutError,
        True,
        "cannot connect to the gateway at {origin}: no connection within {seconds} s "
        "(none of max_connections free, or connecting took longer)",
    ),
    "read_timeout": (
        GatewayTimeoutError,
        True,
        "{label} timed out: the gateway sent nothing for {seconds} s",
    ),
    "write_timeout": (
        GatewayTimeoutError,
        True,
        "{label} timed out: the gateway took none of the request for {seconds} s",
    ),
    "dropped": (
        GatewayConnectionError,
        True,
        "{label}: the connection was closed before the answer was complete ({reason})",
    ),
    "tls_verify": (
        GatewayConnectionError,
        False,  # a certificate that failed verification fails the same way on every attempt
        "cannot connect to the gateway at {origin}: TLS certificate verification failed: {reason}",
    ),
    "tls": (
        GatewayConnectionError,
        True,
        "cannot connect to the gateway at {origin}: the TLS handshake failed ({reason})",
    ),
    "proxy": (
        GatewayConnectionError,
        True,
        "cannot connect to the gateway at {origin} through the proxy at {proxy}: {reason}",
    ),
    "proxy_refused": (
        GatewayConnectionError,
        False,  # the proxy wants credentials or forbids the host: asking again changes nothing
        "cannot connect to the gateway at {origin}: the proxy at {proxy} answered {phrase}",
    ),
    "malformed": (
        GatewayResponseError,
        False,  # the gateway answered, unreadably: the same request would be answered so again
        "{label}: the gateway's answer is not valid HTTP ({reason})",
    ),
    "decode": (
        GatewayResponseError,
        False,
        "{label}: the answer's compressed body could not be decoded ({reason})",
    ),
    "redirects": (
        GatewayClientError,
        False,
        "{label}: stopped after " + str(MAX_REDIRECTS) + " redirects",
    ),
    "redirect_target": (
        GatewayClientError,
        False,
        "{label}: the gateway redirected to a URL that cannot be followed",
    ),
    "other": (GatewayClientError, False, "{label} failed ({reason})"),
}


def failure_error(failure: Failure, label: str, url: str) -> GatewayClientError:
    """The typed error for ``failure`` of the request ``label`` (``METHOD URL``) to ``url``."""
    cls, retryable, template = _KINDS.get(failure.kind, _KINDS["other"])
    message = template.format(
        label=label,
        origin=origin_of(url),
        seconds=_seconds(failure.seconds),
        reason=_clean(failure.reason) or "no details",
        proxy=origin_of(failure.proxy) if failure.proxy else "the configured proxy",
        phrase=_phrase(failure.status),
    )
    error = cls(message, status_code=failure.status if failure.kind == "proxy_refused" else None)
    if error.retryable != retryable:
        error.retryable = retryable
    return error


Classifier = Callable[[BaseException, Optional[str], Optional[float]], Optional[Failure]]


class Translate:
    """``with Translate(request, proxy, classify):`` raises gatewayclient's error for whatever
    the transport's ``classify`` recognises (a Failure), chained; anything else (cancellation,
    a bug) passes. A class, not a generator context manager: a stream enters it on every read."""

    __slots__ = ("classify", "proxy", "request")

    def __init__(self, request: Any, proxy: Optional[str], classify: Classifier) -> None:
        self.request = request  # a _core.Request: its label, URL and timeout
        self.proxy = proxy
        self.classify = classify

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Optional[BaseException], traceback: Any) -> None:
        if exc is not None:
            self.raise_for(exc)

    def raise_for(self, exc: BaseException) -> None:
        """What leaving the block with ``exc`` does: raise our error for it, or nothing (the
        caller re-raises ``exc``). A stream's read calls it in its ``except``, so that a read
        that raises nothing pays no ``with``."""
        request = self.request
        failure = self.classify(exc, self.proxy, request.timeout)
        if failure is not None:
            raise failure_error(failure, request.label, request.url) from exc
