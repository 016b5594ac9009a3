"""The ``gateway`` Airflow connection: its form, as Airflow 3 reads it from the provider info,
and what its fields mean to a client. Plain values in, the clients' keywords out; no Airflow.

``host`` is the base URL, or a host name that ``schema`` (the URL scheme, ``https`` when empty)
and ``port`` complete; ``password`` is the token; the JSON ``extra`` holds ``timeout``,
``max_retries``, ``api_prefix``, ``rate_limit`` (``RateLimit``'s keywords) and ``fallbacks``.
A connection written as a URI gives every extra as a string: numbers are read from their text,
and ``rate_limit`` and ``fallbacks`` from their JSON text.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

from gatewayclient import GatewayConfigError, RateLimit

__all__ = ["CONN_FIELDS", "UI_FIELD_BEHAVIOUR", "base_url", "client_settings"]

EXAMPLE_EXTRA = {
    "timeout": 60,
    "max_retries": 2,
    "rate_limit": {"requests": 500, "tokens": 200000, "storage": "redis://redis:6379/0"},
    "fallbacks": {"openai/gpt-4o": ["anthropic/claude-sonnet-4-20250514"]},
}

# The JSON extra's fields: Airflow 3 draws one form field for each (stored unprefixed in extra).
CONN_FIELDS: Dict[str, Dict[str, Any]] = {
    "timeout": {
        "label": "Timeout (seconds)",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "description": "Bound on connecting and on each wait for bytes; empty: 60 seconds.",
    },
    "max_retries": {
        "label": "Max retries",
        "schema": {"type": ["integer", "null"], "minimum": 0},
        "description": "Retries of a 429, 5xx, timeout or connection failure; empty: 2.",
    },
    "api_prefix": {
        "label": "API prefix",
        "schema": {"type": ["string", "null"]},
        "description": "Path of the OpenAI-compatible API under the base URL; empty: /v1.",
    },
    "rate_limit": {
        "label": "Rate limit",
        "schema": {"type": ["object", "null"]},
        "description": (
            "A budget shared by every task that uses this connection: RateLimit's keywords, "
            'e.g. {"requests": 500, "tokens": 200000, "per": 60, '
            '"storage": "redis://redis:6379/0", "key": "team-a"}. Without storage it is '
            "shared only within one task process."
        ),
    },
    "fallbacks": {
        "label": "Fallbacks",
        "schema": {"type": ["object", "null"]},
        "description": (
            "Models tried in turn when a model fails, e.g. "
            '{"openai/gpt-4o": ["anthropic/claude-sonnet-4-20250514"]}.'
        ),
    },
}

UI_FIELD_BEHAVIOUR: Dict[str, Any] = {
    "hidden-fields": ["login"],
    "relabeling": {
        "host": "Gateway URL or host",
        "schema": "Scheme",
        "port": "Port",
        "password": "Auth token",
    },
    "placeholders": {
        "host": "https://gateway.example.com",
        "schema": "https (when the host is a name, not a URL)",
        "port": "443",
        "password": "the gateway's bearer token",
        "extra": json.dumps(EXAMPLE_EXTRA),
    },
}

_RATE_LIMIT_KEYWORDS = ("requests", "tokens", "per", "storage", "key", "max_wait")


def base_url(host: Optional[str], schema: Optional[str], port: Optional[int]) -> Optional[str]:
    """The base URL that ``host``, ``schema`` and ``port`` name; None when there is no host
    (the client then reads $PLATFORM_API_URL)."""
    host, schema = (host or "").strip(), (schema or "").strip().lower()
    if not host:
        if schema or port:
            raise GatewayConfigError("the connection has a scheme or a port but no host")
        return None
    if "://" not in host:
        if schema not in ("", "http", "https"):
            raise GatewayConfigError(
                f"the connection's schema is the URL scheme, http or https; got {schema!r}"
            )
        host, slash, path = host.partition("/")
        netloc = f"{host}:{port}" if port else host
        return f"{schema or 'https'}://{netloc}{slash}{path}"
    parts = urlsplit(host)
    if schema and schema != parts.scheme.lower():
        raise GatewayConfigError(
            f"the connection's host is a {parts.scheme} URL but its schema says {schema!r}"
        )
    if port:
        try:
            given = parts.port
        except ValueError:
            given = None  # a malformed port: the client's check names it
        if given is None:
            parts = parts._replace(netloc=f"{parts.netloc}:{port}")
        elif given != port:
            raise GatewayConfigError(
                f"the connection's host names port {given} and its port field {port}"
            )
    return urlunsplit(parts)


def client_settings(
    host: Optional[str],
    schema: Optional[str],
    port: Optional[int],
    password: Optional[str],
    extra: Mapping[str, Any],
) -> Dict[str, Any]:
    """The keywords of ``SyncGatewayClient`` / ``AsyncGatewayClient`` that a connection's
    fields give; a field left empty (absent, null, or an empty string for a number or an
    object) keeps the client's default. The clients check the values themselves."""
    unknown = sorted(set(extra) - set(CONN_FIELDS))
    if unknown:
        raise GatewayConfigError(
            f"unknown key(s) in the connection's extra: {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(CONN_FIELDS)}"
        )
    settings: Dict[str, Any] = {
        "base_url": base_url(host, schema, port),
        "auth_token": password or None,
    }
    readers = {
        "timeout": _timeout,
        "max_retries": _max_retries,
        "api_prefix": _api_prefix,
        "rate_limit": _rate_limit,
        "fallbacks": _fallbacks,
    }
    for name, read in readers.items():
        value = extra.get(name)
        if value is None or (value == "" and name != "api_prefix"):
            continue
        settings[name] = read(value)
    return settings


def _timeout(value: Any) -> Any:
    return _number("timeout", value, float)


def _max_retries(value: Any) -> Any:
    return _number("max_retries", value, int)


def _number(name: str, value: Any, kind: Any) -> Any:
    if not isinstance(value, str):
        return value  # the client checks it
    try:
        return kind(value.strip())
    except ValueError:
        raise GatewayConfigError(f"extra {name} must be a number, got {value!r}") from None


def _api_prefix(value: Any) -> Any:
    if not isinstance(value, str):
        raise GatewayConfigError(f"extra api_prefix must be a string such as '/v1', got {value!r}")
    return value


def _json_object(name: str, value: Any) -> Dict[str, Any]:
    # The value is not echoed: a rate limit's storage URL may hold Redis's password.
    if isinstance(value, str):  # from a URI's query string
        try:
            value = json.loads(value)
        except ValueError:
            raise GatewayConfigError(
                f"extra {name} must be a JSON object; its text is not JSON"
            ) from None
    if not isinstance(value, dict):
        raise GatewayConfigError(f"extra {name} must be a JSON object, got {type(value).__name__}")
    return value


def _rate_limit(value: Any) -> Optional[RateLimit]:
    keywords = _json_object("rate_limit", value)
    if not keywords:
        return None
    unknown = sorted(set(keywords) - set(_RATE_LIMIT_KEYWORDS))
    if unknown:
        raise GatewayConfigError(
            f"unknown key(s) in extra rate_limit: {', '.join(map(repr, unknown))}; "
            f"RateLimit takes {', '.join(_RATE_LIMIT_KEYWORDS)}"
        )
    return RateLimit(**keywords)


def _fallbacks(value: Any) -> Dict[str, Any]:
    return _json_object("fallbacks", value)
