"""Client settings: read from arguments and the environment, validated once, frozen.

Both clients build one ``ClientConfig`` at construction and never validate settings again.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from .budget import RateLimit
from .errors import GatewayConfigError

__all__ = [
    "ENV_AUTH_TOKEN",
    "ENV_BASE_URL",
    "ClientConfig",
    "RetryPolicy",
    "check_timeout",
    "header_problem",
    "merge_headers",
]

ENV_BASE_URL = "PLATFORM_API_URL"
ENV_AUTH_TOKEN = "AUTH_TOKEN"

logger = logging.getLogger("gatewayclient")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: exponential backoff with full jitter.

    ``max_retries`` counts retries, not attempts. A server hint (Retry-After and kin) wins over
    the backoff; a hint longer than ``max_retry_after`` is not waited for. Tests pass
    ``RetryPolicy(backoff_base=0)`` for zero waits instead of patching anything.
    """

    max_retries: int = 2
    max_retry_after: float = 60.0
    backoff_base: float = 0.5
    backoff_max: float = 8.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise GatewayConfigError("max_retries must be an int >= 0")
        if self.max_retries < 0:
            raise GatewayConfigError("max_retries must be an int >= 0")
        for name in ("max_retry_after", "backoff_base", "backoff_max"):
            _non_negative(name, getattr(self, name))


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GatewayConfigError(f"{name} must be a number >= 0, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise GatewayConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


MAX_TIMEOUT = 30 * 86400.0  # past this, the socket layer overflows (about 9e9 s): None means none


def check_timeout(value: object, name: str = "timeout") -> Optional[float]:
    """A timeout is a positive number of seconds up to 30 days, or None for no limit."""
    if value is None:
        return None
    seconds = _non_negative(name, value)
    if seconds == 0 or seconds > MAX_TIMEOUT:
        raise GatewayConfigError(
            f"{name} must be > 0 seconds and at most {MAX_TIMEOUT:.0f} (30 days), got {value!r}; "
            "None means no limit"
        )
    return seconds


def _setting(argument: object, name: str, variable: str) -> Tuple[object, str]:
    """The argument, else the environment variable, with the name an error should give."""
    if argument is not None:
        return argument, name
    return os.environ.get(variable), variable


def _api_root(base_url: str, api_prefix: str, source: str) -> str:
    """The API root for ``base_url`` (named ``source`` in errors) and ``api_prefix``."""
    if "?" in base_url or "#" in base_url:
        # Even an empty one: the endpoint's path would land in the query or the fragment.
        raise GatewayConfigError(f"{source} must not carry a query string or a fragment ('?', '#')")
    parts = urlsplit(base_url)
    if "@" in parts.netloc:
        # requests would send Basic auth instead of the token, aiohttp refuse it on every call,
        # and the password would show in every repr, error and log line.
        raise GatewayConfigError(
            f"{source} must not carry a user name or password (user:password@host): pass the "
            f"token as auth_token=... or in ${ENV_AUTH_TOKEN}; it travels as a Bearer token"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GatewayConfigError(
            f"{source} must be an absolute http(s) URL such as https://gateway.example.com, "
            f"got {_shown_url(base_url)}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise GatewayConfigError(f"{source} has an invalid port: {_shown_url(base_url)}") from None
    if "?" in api_prefix or "#" in api_prefix:
        raise GatewayConfigError("api_prefix must be a path such as '/v1', without '?' or '#'")
    root = base_url.rstrip("/")
    prefix = "/" + api_prefix.strip("/") if api_prefix.strip("/") else ""
    if prefix and not urlsplit(root).path.endswith(prefix):
        root += prefix
    return root


def _shown_url(url: str) -> str:
    """``url`` as an error may show it. Userinfo and queries are refused before any error
    echoes a URL; this is the second guard: all up to the last ``@`` is hidden, and a value
    without ``://`` (perhaps the token, the arguments swapped) is not shown at all."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return "a value without http:// or https://"
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return repr(scheme + separator + rest)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ClientConfig:
    """Validated settings shared by the sync and the async client."""

    base_url: str
    api_root: str
    auth_token: Optional[str] = field(repr=False)
    timeout: Optional[float]
    retry: RetryPolicy
    default_headers: Tuple[Tuple[str, str], ...]
    verify: Union[bool, str]
    max_connections: int
    origin: str
    proxy: Optional[str] = None
    verify_source: str = "verify"  # what named a CA path: the argument or a variable
    rate_limit: Optional[RateLimit] = None
    fallbacks: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        base_url: Optional[str],
        auth_token: Optional[str],
        timeout: Optional[float],
        *,
        max_retries: int,
        max_retry_after: float,
        api_prefix: str,
        default_headers: Optional[Mapping[str, str]],
        verify: Union[bool, str],
        max_connections: int,
        retry_policy: Optional[RetryPolicy],
        rate_limit: Optional[RateLimit] = None,
        fallbacks: Optional[Mapping[str, Sequence[str]]] = None,
    ) -> ClientConfig:
        url, url_source = _setting(base_url, "base_url", ENV_BASE_URL)
        if not url or not isinstance(url, str) or not url.strip():
            raise GatewayConfigError(
                f"no gateway URL: pass base_url=... or set the {ENV_BASE_URL} environment variable"
            )
        token = _token(*_setting(auth_token, "auth_token", ENV_AUTH_TOKEN))
        if not isinstance(api_prefix, str):
            raise GatewayConfigError("api_prefix must be a string such as '/v1' or ''")
        url = url.strip()
        root = _api_root(url, api_prefix, url_source)
        parts = urlsplit(root)
        if token and parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            logger.warning(
                "sending the auth token over plain http to %s: use https outside loopback",
                parts.hostname,
            )
        ca, ca_source = _ca_location(verify)
        return cls(
            base_url=url.rstrip("/"),
            api_root=root,
            auth_token=token,
            timeout=check_timeout(timeout),
            retry=retry_policy or RetryPolicy(max_retries, max_retry_after),
            default_headers=_headers(default_headers),
            verify=ca,
            max_connections=_max_connections(max_connections),
            origin=f"{parts.scheme}://{parts.netloc}",
            proxy=_environment_proxy(root),
            verify_source=ca_source,
            rate_limit=_rate_limit(rate_limit),
            fallbacks=_fallbacks(fallbacks),
        )

    def __repr__(self) -> str:
        token = "'***'" if self.auth_token else "None"
        return f"ClientConfig(base_url={self.base_url!r}, auth_token={token})"

    def with_options(self, **options: object) -> ClientConfig:
        """These settings with ``options`` changed (``timeout``, ``max_retries``,
        ``default_headers`` merged over the current ones, ``rate_limit``, ``fallbacks``),
        each checked as at construction."""
        unknown = set(options) - _CHANGEABLE
        if unknown:
            raise GatewayConfigError(
                f"with_options() takes {', '.join(sorted(_CHANGEABLE))}; "
                f"not {', '.join(sorted(unknown))}"
            )
        changes: Dict[str, object] = {}
        if "timeout" in options:
            changes["timeout"] = check_timeout(options["timeout"])
        if "max_retries" in options:
            retries = options["max_retries"]
            changes["retry"] = dataclasses.replace(self.retry, max_retries=retries)  # type: ignore[arg-type]
        if "default_headers" in options:
            added = _headers(options["default_headers"])  # type: ignore[arg-type]
            changes["default_headers"] = tuple(
                merge_headers(dict(self.default_headers), added).items()
            )
        if "rate_limit" in options:
            changes["rate_limit"] = _rate_limit(options["rate_limit"])
        if "fallbacks" in options:
            changes["fallbacks"] = _fallbacks(options["fallbacks"])
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_CHANGEABLE = frozenset({"timeout", "max_retries", "default_headers", "rate_limit", "fallbacks"})


def _rate_limit(value: object) -> Optional[RateLimit]:
    if value is None or isinstance(value, RateLimit):
        return value
    raise GatewayConfigError(
        f"rate_limit must be a RateLimit(requests=..., tokens=...) or None, got "
        f"{type(value).__name__}"
    )


def _fallbacks(value: object) -> Mapping[str, Tuple[str, ...]]:
    """``{"openai/gpt-4o": ["anthropic/claude-sonnet-4-20250514", ...]}``, checked."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise GatewayConfigError(
            f"fallbacks must map a model to the models to try after it, got {type(value).__name__}"
        )
    checked: Dict[str, Tuple[str, ...]] = {}
    for model, others in value.items():
        if not isinstance(model, str) or not model.strip():
            raise GatewayConfigError(f"fallbacks has a key that is not a model name: {model!r}")
        if isinstance(others, (str, bytes)) or not isinstance(others, Sequence):
            raise GatewayConfigError(f"fallbacks[{model!r}] must be a list of model names")
        if not all(isinstance(other, str) and other.strip() for other in others):
            raise GatewayConfigError(f"fallbacks[{model!r}] must hold only model names")
        checked[model] = tuple(others)
    return checked


# RFC 9110 section 5.1: a field name is a token.
_TOKEN_CHARACTERS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
# RFC 9110 section 5.5: a field value is visible ASCII with spaces and tabs inside. obs-text
# (bytes 0x80-0xFF) is refused too: requests would send Latin-1 and aiohttp UTF-8.
_NOT_IN_A_VALUE = re.compile(r"[^\t !-~]")
_AROUND_A_TOKEN = " \t\r\n"


def _character_at(text: str, index: int) -> str:
    """``U+200B (ZERO WIDTH SPACE) at position 42 of 42``: where, and what, never the text."""
    import unicodedata

    char = text[index]
    name = unicodedata.name(char, "")
    what = f"U+{ord(char):04X} ({name})" if name else f"U+{ord(char):04X}"
    return f"{what} at position {index + 1} of {len(text)}"


def _token(value: object, source: str) -> Optional[str]:
    """The token as it will travel, or None. Whitespace around it (a pasted line end) is
    dropped; a character that a header cannot carry is refused, by position."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise GatewayConfigError(f"{source} must be a string")
    token = value.strip(_AROUND_A_TOKEN)
    if token[:7].lower() == "bearer ":
        raise GatewayConfigError(
            f"{source} starts with 'Bearer ': pass the token alone, the client adds the scheme"
        )
    bad = _NOT_IN_A_VALUE.search(token)
    if bad is not None:
        index = len(value) - len(value.lstrip(_AROUND_A_TOKEN)) + bad.start()
        raise GatewayConfigError(
            f"{source} contains {_character_at(value, index)}, which an HTTP header cannot carry"
        )
    return token or None


def header_problem(headers: object) -> Optional[str]:
    """What is wrong with a mapping of HTTP headers, or None when it can be sent as it is.
    The answer names the header, never its value (which may be a key)."""
    if not isinstance(headers, Mapping):
        return "must be a mapping of str to str"
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            return "must be a mapping of str to str"
        if not name or not _TOKEN_CHARACTERS.issuperset(name):
            return f"has an invalid header name {name!r}"
        bad = _NOT_IN_A_VALUE.search(value)
        if bad is not None:
            where = _character_at(value, bad.start())
            return f"has {where} in the value of {name!r}, which an HTTP header cannot carry"
        if value != value.strip(" \t"):
            # requests refuses leading whitespace, aiohttp sends it, servers drop it.
            return f"has whitespace around the value of {name!r}: remove it"
    return None


def merge_headers(base: Dict[str, str], extra: Iterable[Tuple[str, str]]) -> Dict[str, str]:
    """``base`` updated by ``extra``, one header per name whatever its case; ``extra`` wins."""
    merged = dict(base)
    names = {name.lower(): name for name in merged}
    for name, value in extra:
        key = name.lower()
        previous = names.get(key)
        if previous is not None and previous != name:
            del merged[previous]
        merged[name] = value
        names[key] = name
    return merged


def _headers(headers: Optional[Mapping[str, str]]) -> Tuple[Tuple[str, str], ...]:
    if headers is None:
        return ()
    problem = header_problem(headers)
    if problem:
        raise GatewayConfigError(f"default_headers {problem}")
    return tuple(headers.items())


def _verify(verify: Union[bool, str]) -> Union[bool, str]:
    if isinstance(verify, bool):
        return verify
    if isinstance(verify, (str, os.PathLike)) and os.path.exists(verify):
        return os.fspath(verify)
    raise GatewayConfigError(
        "verify must be True, False, or the path of an existing CA bundle file or CA directory, "
        f"got {verify!r}"
    )


def _ca_location(verify: Union[bool, str]) -> Tuple[Union[bool, str], str]:
    """``verify`` checked, or the CA path that the variables requests honours name, read once
    here for both clients (not on every call); with the name an error about it should give."""
    checked = _verify(verify)
    if checked is True:
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            path = os.environ.get(name)
            if path and os.path.exists(path):
                return path, name
    return checked, "verify"


def _environment_proxy(url: str) -> Optional[str]:
    """The proxy that the *_PROXY / NO_PROXY variables name for ``url``, read once."""
    import urllib.request

    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    return proxy


def _max_connections(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GatewayConfigError(f"max_connections must be an int >= 1, got {value!r}")
    return value
