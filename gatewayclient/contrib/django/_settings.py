"""The ``GATEWAYCLIENT`` setting: read into the clients' keywords, or what is wrong with it."""

from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Tuple

from django.core.exceptions import ImproperlyConfigured

from gatewayclient import RateLimit, RetryPolicy

SETTING = "GATEWAYCLIENT"
ENV_BASE_URL = "PLATFORM_API_URL"
ENV_AUTH_TOKEN = "AUTH_TOKEN"

# The clients' keywords in upper case (tests compare them with the constructors' signatures).
KEYS = (
    "BASE_URL",
    "AUTH_TOKEN",
    "TIMEOUT",
    "MAX_RETRIES",
    "MAX_RETRY_AFTER",
    "API_PREFIX",
    "DEFAULT_HEADERS",
    "VERIFY",
    "MAX_CONNECTIONS",
    "RETRY_POLICY",
    "RATE_LIMIT",
    "FALLBACKS",
)
# The keys whose value is a dict of a class's keywords (lower case, as the class spells them).
NESTED: Dict[str, Any] = {"RATE_LIMIT": RateLimit, "RETRY_POLICY": RetryPolicy}

UNKNOWN_KEY = "gatewayclient.E001"
BAD_VALUE = "gatewayclient.E002"
NO_BASE_URL = "gatewayclient.E003"

HINTS = {
    UNKNOWN_KEY: f"The keys of {SETTING} are the client's keywords in upper case: "
    + ", ".join(sorted(KEYS))
    + ".",
    BAD_VALUE: "Each key takes what the client's keyword of the same name (in lower case) "
    "takes: see SyncGatewayClient and the README's Django section.",
    NO_BASE_URL: f"Set {SETTING}['BASE_URL'] or the {ENV_BASE_URL} environment variable.",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the setting: a check id, a message and a hint holding no secret."""

    id: str
    msg: str
    hint: str = ""

    def __post_init__(self) -> None:
        if not self.hint:
            object.__setattr__(self, "hint", HINTS[self.id])

    def error(self) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"{self.msg} ({self.id}: {self.hint})")


def read(value: object) -> Tuple[Dict[str, Any], List[Problem]]:
    """The clients' keywords (``RATE_LIMIT`` and ``RETRY_POLICY`` built) and the problems found
    without building a client; the keywords are usable only when there is no problem."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        return {}, [Problem(BAD_VALUE, f"{SETTING} must be a dict, not {type(value).__name__}")]
    problems = [_unknown(SETTING, key, KEYS, str.upper) for key in value if key not in KEYS]
    options = {key.lower(): value[key] for key in KEYS if key in value}
    for key, kind in NESTED.items():
        if value.get(key) is not None:
            options[key.lower()], found = _nested(key, value[key], kind, value)
            problems += found
    base_url = value.get("BASE_URL")
    if base_url is not None and not isinstance(base_url, str):
        problems.append(
            Problem(
                BAD_VALUE, f"{SETTING}['BASE_URL'] must be a string, not {type(base_url).__name__}"
            )
        )
    elif not (base_url if base_url is not None else os.environ.get(ENV_BASE_URL, "")).strip():
        missing = "is empty" if base_url is not None else f"is not set, nor is {ENV_BASE_URL}"
        problems.append(Problem(NO_BASE_URL, f"No gateway URL: {SETTING}['BASE_URL'] {missing}"))
    return options, problems


def refused(exc: Exception, value: object) -> Problem:
    """The client's refusal (a GatewayConfigError) as a problem, with no token in it. Its
    message starts with the keyword at fault when an argument was: that key is named."""
    key = str(exc).split(" ", 1)[0].upper()
    where = f"{SETTING}[{key!r}]" if key in KEYS else "The client's configuration"
    return Problem(BAD_VALUE, redact(f"{where} is refused: {exc}", value))


def redact(text: str, value: object) -> str:
    """``text`` without the token (the setting's, or the environment's that the client reads):
    the client's messages never hold it; this makes sure of it."""
    tokens = [os.environ.get(ENV_AUTH_TOKEN)]
    if isinstance(value, Mapping):
        tokens.append(value.get("AUTH_TOKEN"))
    for token in tokens:
        if isinstance(token, str) and token:
            text = text.replace(token, "***")
    return text


def _unknown(
    where: str, key: object, known: Tuple[str, ...], case: Callable[[str], str]
) -> Problem:
    close = difflib.get_close_matches(case(str(key)), known, 1)
    guess = f": did you mean {close[0]!r}?" if close else ""
    return Problem(UNKNOWN_KEY, f"{where} has an unknown key {key!r}{guess}")


def _nested(key: str, given: object, kind: Any, value: object) -> Tuple[Any, List[Problem]]:
    where = f"{SETTING}[{key!r}]"
    if not isinstance(given, Mapping):
        problem = (
            f"{where} must be a dict of {kind.__name__}'s keywords, not {type(given).__name__}"
        )
        return None, [Problem(BAD_VALUE, problem)]
    known = tuple(inspect.signature(kind).parameters)
    unknown = [_unknown(where, name, known, str.lower) for name in given if name not in known]
    if unknown:
        hint = f"{key} takes the keywords of {kind.__name__}: {', '.join(sorted(known))}."
        return None, [Problem(p.id, p.msg, hint) for p in unknown]
    try:
        return kind(**given), []
    except (ValueError, TypeError) as exc:  # GatewayConfigError is a ValueError
        return None, [Problem(BAD_VALUE, redact(f"{where} is refused: {exc}", value))]
