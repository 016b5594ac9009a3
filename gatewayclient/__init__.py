"""gatewayclient: sync and async clients for OpenAI-compatible AI gateways.

The two clients are imported on first use, so a sync-only program never loads aiohttp and an
async-only one never loads requests.
"""

import logging
from typing import TYPE_CHECKING, Any

from ._batch import BatchResult
from ._usage import UsageTotals, UsageTracker
from ._version import __version__
from .budget import RateLimit
from .config import RetryPolicy
from .errors import (
    GatewayAuthError,
    GatewayBadRequestError,
    GatewayClientError,
    GatewayConfigError,
    GatewayConnectionError,
    GatewayModelNotFoundError,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayResponseError,
    GatewayServerError,
    GatewayStreamError,
    GatewayTimeoutError,
    GatewayValidationError,
)
from .models import (
    ChatCompletion,
    ChatCompletionChunk,
    CompletionUsage,
    EmbeddingResponse,
    Model,
    ModelList,
    ProviderModels,
)

if TYPE_CHECKING:
    from .async_client import AsyncGatewayClient, AsyncStream
    from .async_client import AsyncGatewayClient as GatewayClient
    from .sync_client import SyncGatewayClient, SyncStream

__all__ = [
    "AsyncGatewayClient",
    "AsyncStream",
    "BatchResult",
    "ChatCompletion",
    "ChatCompletionChunk",
    "CompletionUsage",
    "EmbeddingResponse",
    "GatewayAuthError",
    "GatewayBadRequestError",
    "GatewayClient",
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
    "Model",
    "ModelList",
    "ProviderModels",
    "RateLimit",
    "RetryPolicy",
    "SyncGatewayClient",
    "SyncStream",
    "UsageTotals",
    "UsageTracker",
    "__version__",
]

# A library's logger prints nothing until the application configures logging (without a
# handler, Python's last resort would print every WARNING on stderr).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {
    "AsyncGatewayClient": ("async_client", "AsyncGatewayClient"),
    "AsyncStream": ("async_client", "AsyncStream"),
    "GatewayClient": ("async_client", "AsyncGatewayClient"),
    "SyncGatewayClient": ("sync_client", "SyncGatewayClient"),
    "SyncStream": ("sync_client", "SyncStream"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gatewayclient' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    value = getattr(importlib.import_module(f".{module_name}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(__all__)
