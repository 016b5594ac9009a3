"""gatewayclient's Airflow provider: the ``gateway`` connection type and ``GatewayHook``.

Airflow finds it through the ``apache_airflow_provider`` entry point, which names
``get_provider_info``; the connection form is declared there, the Airflow 3 way, so Airflow
draws it without importing the hook. Reading this module imports no Airflow: ``GatewayHook``
(in ``hook``, which imports ``airflow.sdk``) is loaded when first asked for.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Dict

from gatewayclient import __version__

from ._connection import CONN_FIELDS, UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:
    from .hook import GatewayHook

__all__ = ["GatewayHook", "get_provider_info"]

HOOK_CLASS = "gatewayclient.contrib.airflow.GatewayHook"


def get_provider_info() -> Dict[str, Any]:
    """The provider's description, as Airflow's providers manager reads it (a fresh copy)."""
    return {
        "package-name": "gatewayclient",
        "name": "gatewayclient",
        "description": (
            "AI gateways speaking the OpenAI API (models named provider/model): a connection "
            "type and a hook giving gatewayclient's sync and async clients, with a rate "
            "budget that tasks can share through Redis."
        ),
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "gateway",
                "hook-class-name": HOOK_CLASS,
                "hook-name": "AI gateway (gatewayclient)",
                "conn-fields": copy.deepcopy(CONN_FIELDS),
                "ui-field-behaviour": copy.deepcopy(UI_FIELD_BEHAVIOUR),
            }
        ],
    }


def __getattr__(name: str) -> Any:
    if name == "GatewayHook":
        from .hook import GatewayHook

        return GatewayHook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> Any:
    return sorted([*globals(), "GatewayHook"])
