"""``GatewayHook``: gatewayclient's sync and async clients, built from an Airflow connection of
type ``gateway`` (fields as ``_connection`` reads them). Imports Airflow through ``airflow.sdk``
only, so it runs on Airflow 3's task SDK."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from airflow.sdk import BaseHook

from gatewayclient import GatewayClientError, GatewayConfigError

from ._connection import client_settings

if TYPE_CHECKING:
    from gatewayclient import AsyncGatewayClient, SyncGatewayClient

__all__ = ["GatewayHook"]


class GatewayHook(BaseHook):
    """Clients for the AI gateway that an Airflow connection names.

    ``get_client()`` gives a ``SyncGatewayClient`` and ``get_async_client()`` an
    ``AsyncGatewayClient``. The connection is read once, at the first of them; each client is
    built once per hook and given again on every later call (the OpenAI provider's way), and
    the two share one ``RateLimit``, so a budget without Redis is shared by the hook's clients.
    Closing a client (``with hook.get_client() as client:``) only closes its connections: the
    same client opens new ones if used again. Make a hook per task run to see an edited
    connection.

    :param gateway_conn_id: the id of a connection of type ``gateway``.
    """

    conn_name_attr = "gateway_conn_id"
    default_conn_name = "gateway_default"
    conn_type = "gateway"
    hook_name = "AI gateway (gatewayclient)"

    def __init__(self, gateway_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gateway_conn_id = gateway_conn_id
        self._lock = threading.Lock()  # tasks may ask from several threads at once
        self._settings: Optional[Dict[str, Any]] = None
        self._client: Optional[SyncGatewayClient] = None
        self._async_client: Optional[AsyncGatewayClient] = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gateway_conn_id={self.gateway_conn_id!r})"

    def _client_settings(self) -> Dict[str, Any]:
        """The clients' keywords from the connection (read once); call with the lock held."""
        if self._settings is None:
            conn = self.get_connection(self.gateway_conn_id)
            try:
                self._settings = client_settings(
                    conn.host, conn.schema, conn.port, conn.password, conn.extra_dejson
                )
            except GatewayConfigError as exc:
                raise GatewayConfigError(f"connection {self.gateway_conn_id!r}: {exc}") from exc
        return self._settings

    def get_client(self) -> SyncGatewayClient:
        """This hook's ``SyncGatewayClient`` (built at the first call)."""
        with self._lock:
            if self._client is None:
                from gatewayclient import SyncGatewayClient

                self._client = SyncGatewayClient(**self._client_settings())
            return self._client

    def get_async_client(self) -> AsyncGatewayClient:
        """This hook's ``AsyncGatewayClient`` (built at the first call; it opens its session
        inside whichever event loop uses it)."""
        with self._lock:
            if self._async_client is None:
                from gatewayclient import AsyncGatewayClient

                self._async_client = AsyncGatewayClient(**self._client_settings())
            return self._async_client

    def get_conn(self) -> SyncGatewayClient:
        """``BaseHook``'s name for ``get_client()``."""
        return self.get_client()

    def test_connection(self) -> Tuple[bool, str]:
        """List the gateway's models: ``(True, what was found)`` or ``(False, why not)``. The
        reason is the client's error, which never holds the token."""
        try:
            client = self.get_client()
            models = client.list_models()
        except GatewayClientError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        count = len(models.data or [])
        return True, f"Connected to {client.base_url}: {count} model(s) listed"
