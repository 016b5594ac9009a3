"""What the two clients share beyond the core: construction from settings, identity, repr."""

from __future__ import annotations

import os
import re
from typing import Any, ClassVar, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from . import _telemetry
from ._core import GatewayCore, StreamCall
from .budget import RateLimit, Ticket
from .config import ClientConfig, RetryPolicy
from .errors import GatewayConfigError
from .models import ChatCompletion, CompletionUsage

__all__ = ["ClientBase", "StreamBase"]

C = TypeVar("C", bound="ClientBase")
_UNCHANGED: Any = object()


class ClientBase:
    """Settings are read and checked once, here; a subclass names its transport."""

    _transport_type: ClassVar[Any]  # called with the ClientConfig and its TLS setting

    def __init__(
        self,
        base_url: Optional[str] = None,
        auth_token: Optional[str] = None,
        timeout: Optional[float] = 60.0,
        *,
        max_retries: int = 2,
        max_retry_after: float = 60.0,
        api_prefix: str = "/v1",
        default_headers: Optional[Mapping[str, str]] = None,
        verify: Union[bool, str] = True,
        max_connections: int = 100,
        retry_policy: Optional[RetryPolicy] = None,
        rate_limit: Optional[RateLimit] = None,
        fallbacks: Optional[Mapping[str, Sequence[str]]] = None,
    ) -> None:
        """``base_url`` and ``auth_token`` default to $PLATFORM_API_URL and $AUTH_TOKEN;
        ``timeout`` bounds the connect and each wait for bytes (seconds, or None);
        ``retry_policy`` replaces ``max_retries``/``max_retry_after`` with a whole policy;
        ``rate_limit`` is a budget shared with every client given it; ``fallbacks`` maps a
        model to the models tried after it fails."""
        config = ClientConfig.create(
            base_url, auth_token, timeout, max_retries=max_retries, max_retry_after=max_retry_after,
            api_prefix=api_prefix, default_headers=default_headers, verify=verify,
            max_connections=max_connections, retry_policy=retry_policy, rate_limit=rate_limit,
            fallbacks=fallbacks,
        )  # fmt: skip
        self._setup(config)

    def _setup(self, config: ClientConfig) -> None:
        self._core = GatewayCore(config)
        tls = tls_context(config.verify, config.verify_source)
        self._transport = type(self)._transport_type(config, tls)
        self.usage = self._core.usage

    def with_options(
        self: C,
        *,
        timeout: Any = _UNCHANGED,
        max_retries: Any = _UNCHANGED,
        default_headers: Any = _UNCHANGED,
        rate_limit: Any = _UNCHANGED,
        fallbacks: Any = _UNCHANGED,
    ) -> C:
        """A client of the same kind with some settings changed (``default_headers`` are merged
        over these) that shares this one's connections and usage totals: closing either closes
        the shared pool (both reconnect if used again)."""
        given = {
            "timeout": timeout,
            "max_retries": max_retries,
            "default_headers": default_headers,
            "rate_limit": rate_limit,
            "fallbacks": fallbacks,
        }
        options = {name: value for name, value in given.items() if value is not _UNCHANGED}
        config = self._core.config.with_options(**options)
        clone = type(self).__new__(type(self))
        clone._core = GatewayCore(config, self._core.usage)
        clone._transport = self._transport
        clone.usage = self._core.usage
        return clone

    def __reduce__(self) -> Tuple[Any, ...]:
        # A client pickles as its settings (the token included: keep such pickles private) and
        # is rebuilt on the other side with its own connections and fresh usage totals.
        return (_rebuild, (type(self), self._core.config))

    @property
    def base_url(self) -> str:
        return self._core.config.base_url

    def __repr__(self) -> str:
        token = "'***'" if self._core.config.auth_token else "None"
        return f"{type(self).__name__}(base_url={self.base_url!r}, auth_token={token})"


class StreamBase:
    """What the two stream classes share beyond I/O: the call (and, after a fallback, the next
    model's), its state, its rate-budget ticket, its request id and its span."""

    _transport: Any  # the client's transport (for ``translate``)

    def _setup_stream(self, transport: Any, call: StreamCall, limit: Optional[RateLimit]) -> None:
        self._transport = transport
        self._limit = limit
        self._ticket: Optional[Ticket] = None
        self._request_id: Optional[str] = None  # the answer's (x-request-id and kin)
        self._observation: Optional[_telemetry.Observation] = None
        self._use(call)
        self._opened = False
        self._closed = False  # no more reads: ended, failed or closed
        self._stopped = False  # closed by the caller: whatever the reader meets, it ends quietly

    def _use(self, call: StreamCall) -> None:
        self._call = call
        self._state = call.new_state()
        self._translate = self._transport.translate(call.request)

    def _observe(self) -> Optional[_telemetry.Observation]:
        self._observation = _telemetry.observe(self._call, self._call.request.url)
        return self._observation

    def _ended(self, how: str, error: Optional[BaseException] = None) -> None:
        """End the stream's span, if any: ``how`` it ended (done, closed, cancelled, failed)."""
        observation, self._observation = self._observation, None
        if observation is not None:
            _telemetry.stream_ended(observation, how, self._state.completion(), error)

    def completion(self) -> ChatCompletion:
        """What has reached the caller as one ChatCompletion; after the end, the whole answer."""
        answer = self._state.completion()
        answer._request_id = self._request_id
        return answer

    @property
    def usage(self) -> Optional[CompletionUsage]:
        """The usage the gateway sent, once the stream has reached it; else None."""
        return self._state.usage


def tls_context(verify: Union[bool, str], source: str = "verify") -> Any:
    """``True``, ``False``, or the ``ssl.SSLContext`` of a CA bundle file or of a CA directory
    in OpenSSL's hashed layout (which requests also takes). Loaded here, at construction, so
    that a path holding no CA is a GatewayConfigError at once, naming ``source``: ``verify``
    or the environment variable that gave the path."""
    if not isinstance(verify, str):
        return verify
    import ssl

    named = f"{source}={verify!r}"
    if os.path.isdir(verify):
        if not _has_hashed_names(verify, named):
            raise GatewayConfigError(
                f"{named} is a directory without certificates under OpenSSL's hashed names "
                "(<hash>.0): run `openssl rehash` on it, or name a CA bundle file"
            )
        return ssl.create_default_context(capath=verify)  # read lazily by OpenSSL
    try:
        return ssl.create_default_context(cafile=verify)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise GatewayConfigError(f"{named} is not a CA bundle in PEM form: {exc}") from exc


_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.[0-9]+")  # <subject hash>.<n>; CRLs are .r<n>


def _has_hashed_names(directory: str, named: str) -> bool:
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise GatewayConfigError(f"{named} cannot be read: {exc.strerror}") from exc
    return any(_HASHED_NAME.fullmatch(name) for name in names)


def _rebuild(cls: Any, config: ClientConfig) -> Any:
    client = cls.__new__(cls)
    client._setup(config)
    return client
