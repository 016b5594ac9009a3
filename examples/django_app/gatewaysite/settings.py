"""Settings for the example: no database, no sessions, no templates; a JSON API only.

The gateway is the GATEWAYCLIENT setting, read by the gatewayclient app (its keys are the
client's keywords in upper case; ``manage.py check`` reports a mistake in it). BASE_URL and
AUTH_TOKEN are left out here, so they come from the environment (PLATFORM_API_URL, AUTH_TOKEN).
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = ["gatewayclient.contrib.django"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "gatewaysite.urls"
WSGI_APPLICATION = "gatewaysite.wsgi.application"
ASGI_APPLICATION = "gatewaysite.asgi.application"
DATABASES = {}
USE_TZ = True

GATEWAYCLIENT = {"TIMEOUT": 30, "MAX_RETRIES": 2}
GATEWAY_MODEL = os.environ.get("GATEWAY_MODEL", "openai/gpt-4o-mini")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        # The client logs each retry on "gatewayclient" at WARNING (a relayed stream that
        # fails after its first chunk too).
        "gatewayclient": {"handlers": ["console"], "level": "WARNING"},
        "django.request": {"handlers": ["console"], "level": "ERROR"},  # a view that raised
    },
}
