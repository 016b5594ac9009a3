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
    """The body as UTF-8 JSON; anything JSON or UTF-8 cannot carry is a GatewayValidationError."""
    try:
        text = _ENCODE(body)
    except (TypeError, ValueError) as exc:
        raise GatewayValidationError(f"the request cannot be sent as JSON: {exc}") from exc
    except RecursionError:
        raise GatewayValidationError(
            "the request cannot be sent as JSON: nested too deeply"
        ) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate: text decoded with errors="surrogateescape" (argv, os.fsdecode) or
        # read from JSON's "\udce9". The error names where it is, never the text around it.
        char = exc.object[exc.start]
        raise GatewayValidationError(
            f"{_where_unencodable(body)} holds the lone surrogate {char!r}, which cannot be sent "
            "as UTF-8 (text decoded with errors='surrogateescape'?)"
        ) from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _where_unencodable(body: Dict[str, Any]) -> str:
    """Where the first string UTF-8 cannot encode sits: ``messages[0]['content']``."""
    stack: List[Tuple[Any, str]] = [(body, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if isinstance(key, str) and not _encodable(key):
                    return f"a key of {path}" if path else "a field name"
                stack.append((item, f"{path}[{key!r}]" if path else str(key)))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(value))))
    return "the request"


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
    if (
        not isinstance(provider, str)
        or not provider.strip()
        or "/" in provider
        or not _encodable(provider)
    ):
        raise GatewayValidationError(f"provider must be a name like 'openai', got {provider!r}")
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
