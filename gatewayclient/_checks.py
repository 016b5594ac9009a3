"""Call arguments, checked before a request exists: each bad one is a GatewayValidationError."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional, Tuple, Union

from .config import check_timeout, header_problem
from .errors import GatewayConfigError, GatewayValidationError
from .models import GatewayObject

__all__ = [
    "ROLES",
    "call_options",
    "check_input",
    "check_messages",
    "check_model",
    "check_provider",
    "check_sampling",
    "encode_json",
]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_ROLE_NAMES = ", ".join(sorted(ROLES))


# One encoder for every request: json.dumps with options would build a new one on each call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def encode_json(body: Dict[str, Any]) -> bytes:
    try:
        text = _ENCODE(body)
    except (TypeError, ValueError) as exc:
        raise GatewayValidationError(f"the request cannot be sent as JSON: {exc}") from exc
    return text.encode("utf-8")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise GatewayValidationError(
            f"model must be a non-empty string like 'openai/gpt-4o', got {model!r}"
        )
    return model


def check_messages(messages: Any) -> List[Dict[str, Any]]:
    if type(messages) is not list and (
        isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence)
    ):
        raise GatewayValidationError(
            "messages must be a list of {'role': ..., 'content': ...} mappings"
        )
    if not messages:
        raise GatewayValidationError("messages must not be empty")
    checked = []
    for position, message in enumerate(messages):
        if type(message) is not dict and isinstance(message, GatewayObject):
            message = message.to_dict()
        if type(message) is not dict and not isinstance(message, Mapping):
            raise GatewayValidationError(
                f"messages[{position}] must be a mapping, got {type(message).__name__}"
            )
        role = message.get("role")
        if role not in ROLES:
            raise GatewayValidationError(
                f"messages[{position}]['role'] must be one of {_ROLE_NAMES}, got {role!r}"
            )
        checked.append(message if isinstance(message, dict) else dict(message))
    return checked


def check_sampling(temperature: Any, max_tokens: Any, top_p: Any) -> None:
    if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 2):
        raise GatewayValidationError(
            f"temperature must be a number from 0 to 2, got {temperature!r}"
        )
    if top_p is not None and not (_is_number(top_p) and 0 < top_p <= 1):
        raise GatewayValidationError(f"top_p must be a number in (0, 1], got {top_p!r}")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0
    ):
        raise GatewayValidationError(f"max_tokens must be a positive int, got {max_tokens!r}")


def check_input(value: Any) -> Union[str, List[str]]:
    if isinstance(value, str):
        if not value:
            raise GatewayValidationError("input must not be empty")
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            raise GatewayValidationError("input must not be an empty list")
        for position, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise GatewayValidationError(f"input[{position}] must be a non-empty string")
        return list(value)
    raise GatewayValidationError(
        f"input must be a string or a list of strings, got {type(value).__name__}"
    )


def check_provider(provider: Any) -> str:
    """A name that travels as one path segment. Quoting keeps ``%`` and ``/`` inside it, but
    not ``.`` or ``..``: a transport removes those as dot segments (RFC 3986 section 5.2.4),
    and ``..`` would ask for ``/v1/models``."""
    if not isinstance(provider, str) or not provider.strip() or "/" in provider:
        raise GatewayValidationError(f"provider must be a name like 'openai', got {provider!r}")
    if provider in (".", ".."):
        raise GatewayValidationError(
            f"provider must be a name like 'openai', not the path segment {provider!r}"
        )
    try:
        provider.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GatewayValidationError(
            f"provider must be a name like 'openai': {provider!r} has a lone surrogate "
            f"at position {exc.start + 1}, which cannot be sent"
        ) from None
    return provider


def call_options(params: Dict[str, Any]) -> Tuple[Dict[str, str], Optional[float]]:
    """Pop and check the two keywords that are not body fields: extra_headers and timeout."""
    if "extra_headers" not in params and "timeout" not in params:
        return {}, None
    extra = params.pop("extra_headers", None) or {}
    problem = header_problem(extra)
    if problem:
        raise GatewayValidationError(f"extra_headers {problem}")
    timeout = params.pop("timeout", None)
    try:
        timeout = check_timeout(timeout)
    except GatewayConfigError as exc:
        raise GatewayValidationError(str(exc)) from exc
    return dict(extra), timeout
