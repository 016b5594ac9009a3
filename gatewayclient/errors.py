"""Turn gateway failures (HTTP error statuses, in-stream error events) into typed exceptions.

The exception tree::

    GatewayClientError                  any other HTTP status (418, 501, 505, ...)
    ├── GatewayAuthError                401, 403
    ├── GatewayModelNotFoundError       404
    ├── GatewayRateLimitError           429                     retryable
    ├── GatewayProviderError            502                     retryable
    ├── GatewayServerError              500, 503, 504, 529      retryable
    ├── GatewayBadRequestError          400, 409, 413, 422
    ├── GatewayConnectionError          refused, reset, dropped retryable
    │   └── GatewayTimeoutError         connect or read timeout, 408 retryable
    ├── GatewayStreamError              stream malformed or ended early
    ├── GatewayResponseError            body not the JSON promised
    ├── GatewayValidationError          bad arguments, nothing sent      (also ValueError)
    └── GatewayConfigError              bad or missing configuration     (also ValueError)

The functions here return exceptions, they never raise them. Standard library only.
"""

from __future__ import annotations

import datetime
import email.utils
import http
import json
import math
import re
import time
from typing import Any, Mapping, Optional, Union

__all__ = [
    "GatewayAuthError",
    "GatewayBadRequestError",
    "GatewayClientError",
    "GatewayConfigError",
    "GatewayConnectionError",
    "GatewayModelNotFoundError",
    "GatewayProviderError",
    "GatewayRateLimitError",
    "GatewayResponseError",
    "GatewayServerError",
    "GatewayStreamError",
    "GatewayTimeoutError",
    "GatewayValidationError",
    "error_class_for_status",
    "error_from_event",
    "error_from_response",
    "parse_duration",
    "parse_retry_after",
    "redact_error",
    "request_id_of",
]


class GatewayClientError(Exception):
    """Base of every gatewayclient error; also any HTTP status without a class of its own."""

    # A class's default; an instance may say otherwise (a TLS certificate that failed
    # verification is a connection error that no retry can mend).
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        error_type: Optional[str] = None,
        error_code: Optional[Union[str, int]] = None,
        request_id: Optional[str] = None,
        body: Any = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_type = error_type
        self.error_code = error_code
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = self.message
        if self.status_code is not None and not text.startswith(f"HTTP {self.status_code}"):
            text = f"HTTP {self.status_code}: {text}"
        if self.request_id is not None:
            text = f"{text} (request id {self.request_id})"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive BaseException's default pickling.
        return (type(self), (self.message,), self.__dict__.copy())


class GatewayAuthError(GatewayClientError):
    """401 or 403: the token is missing, invalid, expired or not allowed."""


class GatewayModelNotFoundError(GatewayClientError):
    """404: the model (or route) is not known to the gateway."""


class GatewayRateLimitError(GatewayClientError):
    """429: a request or token quota is exhausted; see ``retry_after``."""

    retryable = True


class GatewayProviderError(GatewayClientError):
    """502: the upstream LLM provider failed."""

    retryable = True


class GatewayServerError(GatewayClientError):
    """500, 503, 504 or 529: the gateway failed or is overloaded."""

    retryable = True


class GatewayBadRequestError(GatewayClientError):
    """400, 409, 413 or 422: the gateway refused the request as sent."""


class GatewayConnectionError(GatewayClientError):
    """The connection was refused, reset or dropped."""

    retryable = True


class GatewayTimeoutError(GatewayConnectionError):
    """Connecting, or waiting for the next bytes, took longer than the timeout; or a 408."""


class GatewayStreamError(GatewayClientError):
    """An event stream was malformed or ended before ``[DONE]``."""


class GatewayResponseError(GatewayClientError):
    """A response body was not the JSON the endpoint promises."""


class GatewayValidationError(GatewayClientError, ValueError):
    """Call arguments were rejected before anything was sent."""


class GatewayConfigError(GatewayClientError, ValueError):
    """The client's configuration is missing or invalid."""


_STATUS_CLASSES: dict[int, type[GatewayClientError]] = {
    **dict.fromkeys((400, 409, 413, 422), GatewayBadRequestError),
    **dict.fromkeys((401, 403), GatewayAuthError),
    404: GatewayModelNotFoundError,
    408: GatewayTimeoutError,  # a gateway's own upstream timeout: worth another try
    429: GatewayRateLimitError,
    502: GatewayProviderError,
    **dict.fromkeys((500, 503, 504, 529), GatewayServerError),
}

_TYPE_CLASSES: dict[str, type[GatewayClientError]] = {
    "rate_limit_error": GatewayRateLimitError,
    "authentication_error": GatewayAuthError,
    "permission_error": GatewayAuthError,
    "not_found_error": GatewayModelNotFoundError,
    "invalid_request_error": GatewayBadRequestError,
    "provider_error": GatewayProviderError,
    "upstream_error": GatewayProviderError,
    "overloaded_error": GatewayServerError,
}

# A non-numeric ``code`` that names its class whatever the ``type`` (OpenAI sends
# ``{"type": "tokens", "code": "rate_limit_exceeded"}``).
_CODE_CLASSES: dict[str, type[GatewayClientError]] = {
    "rate_limit_exceeded": GatewayRateLimitError,
}

_ID_HEADERS = ("x-request-id", "request-id", "x-litellm-call-id", "x-amzn-requestid", "cf-ray")
_REDACTED = "[REDACTED]"
_MAX_MESSAGE = 300
_SCAN_LIMIT = 65536
_NUMBER = re.compile(r"[0-9]*\.?[0-9]+")
_DURATION = re.compile(r"(?:[0-9]*\.?[0-9]+(?:h|ms|m|s|us|µs|ns))+")
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_NOT_JSON: Any = object()
# A plain number in x-ratelimit-reset-* at least this large is a point in time, not a wait:
# 1e9 seconds is 31 years as a wait and 2001-09-09 as a Unix time, so no real wait and no recent
# time lies on the wrong side. From 1e12 on it is in milliseconds (1e12 s would be year 33658).
_EPOCH_SECONDS = 1e9
_EPOCH_MILLISECONDS = 1e12


def error_class_for_status(status: int) -> type[GatewayClientError]:
    """The exception class for an HTTP error status (the one status table)."""
    return _STATUS_CLASSES.get(status, GatewayClientError)


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    reason: str = "",
    secret: Optional[str] = None,
    now: Optional[float] = None,
) -> GatewayClientError:
    """The exception for an HTTP error response: its status, headers and raw body."""
    lowered = _lower_keys(headers)
    raw = body.decode("utf-8-sig", errors="replace") if isinstance(body, (bytes, bytearray)) else ""
    text = _redact(raw, secret)
    data: Any = _redact_body(_parse_json(raw), secret) if raw.strip() else None
    if data is _NOT_JSON:
        data = text
    error = data.get("error") if isinstance(data, dict) else None
    fields = error if isinstance(error, dict) else {}
    message = (
        _message_from(data)
        or _only_string(data)
        or _summarize(text)
        or _empty_body_message(status, reason)
    )
    cls = error_class_for_status(status)
    return cls(
        _redact(message, secret),
        status_code=status,
        error_type=_str_or_none(fields.get("type")),
        error_code=_code_or_none(fields.get("code")),
        request_id=_redact(_request_id(lowered), secret),
        body=data,
        retry_after=parse_retry_after(lowered, now, rate_limited=cls is GatewayRateLimitError),
    )


def error_from_event(
    payload: Any,
    headers: Optional[Mapping[str, str]] = None,
    *,
    secret: Optional[str] = None,
    now: Optional[float] = None,
) -> GatewayClientError:
    """The exception for an error object sent inside an event stream (``{"error": {...}}``).

    A numeric ``code`` wins over a numeric ``status``, either over a known text ``code``
    (``rate_limit_exceeded``), that over ``type``. Retry hints in the error object
    (``retry_after_ms``, ``retry_after``) win over the stream's headers, which are read by the
    rules of ``error_from_response`` (the rate-limit hints only for a rate-limit error).
    """
    payload = _redact_body(payload, secret)
    inner = payload.get("error", payload) if isinstance(payload, dict) else None
    fields: dict[Any, Any] = inner if isinstance(inner, dict) else {}
    message = inner if isinstance(inner, str) and inner.strip() else _message_from(fields)
    status, cls = _event_class(fields)
    error_type = _str_or_none(fields.get("type"))
    retry_after = _event_retry_after(fields)
    if retry_after is None and headers is not None:
        retry_after = parse_retry_after(headers, now, rate_limited=cls is GatewayRateLimitError)
    return cls(
        message or f"the gateway sent an error event ({error_type or 'no type'})",
        status_code=status,
        error_type=error_type,
        error_code=_code_or_none(fields.get("code")),
        request_id=_redact(_request_id(_lower_keys(headers)), secret),
        body=payload if payload is not _NOT_JSON else None,
        retry_after=retry_after,
    )


def _event_class(fields: Mapping[Any, Any]) -> tuple[Optional[int], type[GatewayClientError]]:
    """The status (if the event gives one) and the class of an in-stream error object."""
    status = _status_number(fields.get("code"))
    if status is None:
        status = _status_number(fields.get("status"))
    if status is not None:
        return status, error_class_for_status(status)
    code = fields.get("code")
    if isinstance(code, str) and code in _CODE_CLASSES:
        return None, _CODE_CLASSES[code]
    error_type = fields.get("type")
    return None, _TYPE_CLASSES.get(
        error_type if isinstance(error_type, str) else "", GatewayServerError
    )


def parse_retry_after(
    headers: Mapping[str, str], now: Optional[float] = None, *, rate_limited: bool = True
) -> Optional[float]:
    """Seconds the server asked to wait before retrying, or None when it gave no usable hint.

    ``retry-after-ms`` and ``Retry-After`` are read for any answer; ``x-ratelimit-reset-*`` and
    ``llm_provider-retry-after`` describe a quota, so they are read only when ``rate_limited``
    (a 429): gateways copy them onto every answer. A reset that is a Unix time (seconds, or
    milliseconds) is read as the wait until then, from ``now`` (default: the clock).
    """
    lowered = _lower_keys(headers)
    millis = _seconds(lowered.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    retry_after = _retry_after_value(lowered.get("retry-after"), now)
    if retry_after is not None or not rate_limited:
        return retry_after
    resets = [
        _reset_value(lowered.get(f"x-ratelimit-reset-{kind}", ""), now)
        for kind in ("requests", "tokens")
    ]
    longest = max((reset for reset in resets if reset is not None), default=None)
    if longest is not None:
        return longest
    return _seconds(lowered.get("llm_provider-retry-after"))


def _reset_value(value: str, now: Optional[float]) -> Optional[float]:
    """An x-ratelimit-reset-* value: a duration, or a Unix time when it is that large."""
    seconds = _seconds(value)
    if seconds is None or seconds < _EPOCH_SECONDS:
        return parse_duration(value) if seconds is None else seconds
    if seconds >= _EPOCH_MILLISECONDS:
        seconds /= 1000.0
    delay = seconds - (time.time() if now is None else now)
    return max(0.0, delay) if math.isfinite(delay) else None


def parse_duration(text: str) -> Optional[float]:
    """Seconds in ``"1.5"`` or a Go-style duration (``"1m30s"``, ``"20ms"``); None if neither."""
    plain = _seconds(text)
    if plain is not None or not isinstance(text, str):
        return plain
    text = text.strip()
    if not _DURATION.fullmatch(text):
        return None
    total = sum(
        float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
    )
    return total if math.isfinite(total) else None


def _seconds(value: Any) -> Optional[float]:
    """A non-negative finite number of seconds written in plain ASCII decimals, else None."""
    if not isinstance(value, str) or not _NUMBER.fullmatch(value.strip()):
        return None
    number = float(value.strip())
    return number if math.isfinite(number) else None


def _retry_after_value(value: Any, now: Optional[float]) -> Optional[float]:
    # RFC 9110 section 10.2.3: Retry-After = HTTP-date / delay-seconds.
    seconds = _seconds(value)
    if seconds is not None or not isinstance(value, str) or not value.strip():
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        delay = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return max(0.0, delay) if math.isfinite(delay) else None


def _event_retry_after(fields: Mapping[Any, Any]) -> Optional[float]:
    for key, scale in (("retry_after_ms", 1000.0), ("retry_after", 1.0)):
        value = fields.get(key)
        seconds: Optional[float] = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value) if abs(value) < 1e300 else None
        else:
            seconds = _retry_after_value(value, None) if scale == 1.0 else _seconds(value)
        if seconds is not None and math.isfinite(seconds) and seconds >= 0:
            return seconds / scale
    return None


def _lower_keys(headers: Optional[Mapping[str, str]]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    if headers is None:
        return lowered
    for key, value in headers.items():
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            lowered.setdefault(str(key).lower(), value)
    return lowered


def request_id_of(
    headers: Optional[Mapping[str, str]], *, secret: Optional[str] = None
) -> Optional[str]:
    """The request id a response's headers carry (``x-request-id`` and the similar headers
    that errors read into ``request_id``), or None; ``secret`` is redacted from it."""
    found: Optional[str] = _redact(_request_id(_lower_keys(headers)), secret)
    return found


def _request_id(lowered: Mapping[str, str]) -> Optional[str]:
    for name in _ID_HEADERS:
        value = lowered.get(name, "").strip()
        if value:
            return value
    return None


def _message_from(data: Any) -> Optional[str]:
    """The message of a JSON error body, in the shapes gateways use; None when there is none."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        message = _text_of(error.get("message"))
        if message:
            return message
    elif isinstance(error, str) and error.strip():
        return error
    return _text_of(data.get("detail")) or _text_of(data.get("message"))


def _only_string(data: Any) -> Optional[str]:
    """The text of a JSON object with a single string field (Portkey's ``{"html-message"}``)."""
    if isinstance(data, dict) and len(data) == 1:
        (value,) = data.values()
        if isinstance(value, str) and value.strip():
            return _summarize(value)
    return None


def _text_of(value: Any) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value if value and value.strip() else None
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return None


def _summarize(text: str) -> str:
    """The body's text for a message: an HTML page's title or text, whitespace-collapsed."""
    text = text[:_SCAN_LIMIT]
    if "<" in text and re.search(r"<(?:!doctype|html|head|body|title)\b", text, re.IGNORECASE):
        title = _TITLE.search(text)
        import html  # only on this error path: it costs import time

        text = html.unescape(
            title.group(1) if title and title.group(1).strip() else _TAG.sub(" ", text)
        )
    return _shorten(text)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= _MAX_MESSAGE:
        return text
    return text[: _MAX_MESSAGE - 1].rstrip() + "…"


def _empty_body_message(status: int, reason: str) -> str:
    phrase = reason.strip()
    if not phrase:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Overloaded" if status == 529 else ""
    return " ".join(part for part in (f"HTTP {status}", phrase, "with an empty body") if part)


def _str_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _code_or_none(value: Any) -> Optional[Union[str, int]]:
    if value is None or (isinstance(value, (str, int)) and not isinstance(value, bool)):
        return value
    return _text_of(value)


def _status_number(value: Any) -> Optional[int]:
    """An HTTP status given as an int or a string of digits ("429"); None otherwise."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip()) if len(value.strip()) <= 3 else None
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


def _redact(value: Any, secret: Optional[str]) -> Any:
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, _REDACTED)
    if isinstance(value, list):
        return [_redact(item, secret) for item in value]
    if isinstance(value, dict):
        return {_redact(key, secret): _redact(item, secret) for key, item in value.items()}
    return value


def redact_error(error: GatewayClientError, secret: Optional[str]) -> GatewayClientError:
    """Remove ``secret`` from an error's message, arguments and body, in place; returns it."""
    if secret:
        error.message = _redact(error.message, secret)
        error.args = tuple(_redact(arg, secret) for arg in error.args)
        error.body = _redact_body(error.body, secret)
    return error


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _redact_body(data: Any, secret: Optional[str]) -> Any:
    try:
        return _redact(data, secret)
    except RecursionError:
        return _NOT_JSON
