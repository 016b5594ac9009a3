"""Settings for the example: no database, no sessions, no templates; a JSON API only.

The gateway itself is configured by the environment (PLATFORM_API_URL, AUTH_TOKEN), which
SyncGatewayClient reads; only the model to use is a Django setting.
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "gatewaysite.urls"
WSGI_APPLICATION = "gatewaysite.wsgi.application"
DATABASES = {}
USE_TZ = True

GATEWAY_MODEL = os.environ.get("GATEWAY_MODEL", "openai/gpt-4o-mini")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # The client logs each retry on "gatewayclient" at WARNING.
    "loggers": {"gatewayclient": {"handlers": ["console"], "level": "WARNING"}},
}
