"""ASGI entry point, for uvicorn and friends: ``uvicorn gatewaysite.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatewaysite.settings")
application = get_asgi_application()
