"""Bytes and JSON shapes shared by the fake gateway's handlers: error envelopes and SSE events."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

DONE_EVENT = b"data: [DONE]\n\n"


class ApiError(Exception):
    """An error answer: status, OpenAI error envelope and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: Optional[str] = None,
        code: Any = None,
        param: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_envelope(message, type_ or error_type_for(status), code, param)
        self.headers = dict(headers or {})


def error_envelope(
    message: str, type_: str, code: Any = None, param: Optional[str] = None
) -> Dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    502: "provider_error",
    529: "overloaded_error",
}


def error_type_for(status: int) -> str:
    """The ``type`` a real gateway puts in an error of this status."""
    if status in _TYPES:
        return _TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def format_seconds(seconds: float) -> str:
    """``3`` for whole seconds, ``0.25`` otherwise."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def sse_event(payload: Mapping[str, Any]) -> bytes:
    """One server-sent event: ``data: <compact JSON>`` and a blank line, LF line ends."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
