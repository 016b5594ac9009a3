"""The system check of the ``GATEWAYCLIENT`` setting (``manage.py check``), ids gatewayclient.E00N.

It builds the configuration as the clients would, connecting to nothing, and reports every
problem it finds as an Error; no message holds the token.
"""

from __future__ import annotations

from typing import Any, List

from django.apps import apps
from django.conf import settings
from django.core import checks

import gatewayclient

from ._settings import SETTING, Problem, read, refused

__all__ = ["check_settings"]

APP = "gatewayclient.contrib.django"


def check_settings(app_configs: Any = None, **kwargs: Any) -> List[Any]:
    """Errors for an unknown key (E001), a bad value (E002) and no base URL at all (E003)."""
    if not apps.is_installed(APP):  # registered once, the registry outlives INSTALLED_APPS
        return []
    return [
        checks.Error(p.msg, hint=p.hint, obj=f"settings.{SETTING}", id=p.id) for p in problems()
    ]


def problems() -> List[Problem]:
    value = getattr(settings, SETTING, None)
    options, found = read(value)
    if found:
        return found
    try:
        gatewayclient.SyncGatewayClient(**options).close()  # connects to nothing
    except (ValueError, TypeError) as exc:  # GatewayConfigError is a ValueError
        return [refused(exc, value)]
    return []
