"""gatewayclient in Django: the ``GATEWAYCLIENT`` setting and its checks, one client of each
kind per process (``gateway()``, ``async_gateway()``), and a view helper that relays a stream
to the browser (``relay_stream``, ``arelay_stream``).

``INSTALLED_APPS = [..., "gatewayclient.contrib.django"]`` registers the checks; importing this
module creates no client and reads no setting.
"""

from __future__ import annotations

from django.core.signals import setting_changed

from ._clients import async_gateway, gateway, on_setting_changed
from ._relay import arelay_stream, relay_stream

__all__ = ["arelay_stream", "async_gateway", "gateway", "relay_stream"]

# Connected here rather than in ready(): gateway() follows override_settings even in a project
# that uses it without installing the app. dispatch_uid makes a second import a no-op.
setting_changed.connect(on_setting_changed, dispatch_uid="gatewayclient.contrib.django")
