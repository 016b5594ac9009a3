"""The Django application: ``INSTALLED_APPS = [..., "gatewayclient.contrib.django"]``."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks

from .checks import check_settings


class GatewayClientConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    """Registers the checks of the ``GATEWAYCLIENT`` setting; creates no client."""

    name = "gatewayclient.contrib.django"
    label = "gatewayclient"
    verbose_name = "gatewayclient"
    default = True

    def ready(self) -> None:
        # ready() runs again whenever a test overrides INSTALLED_APPS: registering the same
        # function again is a no-op (the registry is a set).
        checks.register(check_settings, "gatewayclient")
