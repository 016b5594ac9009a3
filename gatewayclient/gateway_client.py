"""Re-exports for code written against the reference's ``flow_sdk.gateway_client`` module."""

from .async_client import AsyncGatewayClient
from .async_client import AsyncGatewayClient as GatewayClient
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
from .sync_client import SyncGatewayClient

__all__ = [
    "AsyncGatewayClient",
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
    "SyncGatewayClient",
]
