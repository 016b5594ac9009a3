"""WSGI entry point, for gunicorn and friends: ``gunicorn gatewaysite.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatewaysite.settings")
application = get_wsgi_application()
