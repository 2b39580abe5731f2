"""Production settings: everything of config.settings, hardened.

`DJANGO_SETTINGS_MODULE=config.settings_production manage.py check --deploy` is clean.
Secrets must come from the environment here: nothing is generated into files.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

for required in ("SECRET_KEY", "HANGAR_SECRET_KEYS", "ALLOWED_HOSTS"):
    if not os.environ.get(required):
        raise ImproperlyConfigured(f"{required} must be set in production.")
os.environ.setdefault("DEBUG", "false")
# Nodes are containers here. Host processes (the local driver, the local computer) are
# unisolated: only an explicit HANGAR_ALLOW_HOST_PROCESSES=true allows them, and
# HANGAR_DRIVER=local without it stops start-up (config/settings.py says why).
os.environ.setdefault("HANGAR_DRIVER", "docker")
os.environ.setdefault("HANGAR_ALLOW_HOST_PROCESSES", "false")

from config.env import env_bool, env_int  # noqa: E402
from config.settings import *  # noqa: E402,F403

PRODUCTION = True
if DEBUG:  # noqa: F405
    raise ImproperlyConfigured("DEBUG must be false in production.")
if HANGAR_DRIVER == "noop":  # noqa: F405
    # It would show nodes up and every job "completed" while nothing ran.
    raise ImproperlyConfigured(
        "HANGAR_DRIVER=noop starts nothing (it measures the scheduler in `make bench`): "
        "production runs nodes with HANGAR_DRIVER=docker."
    )

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Every web process must share the rate limits' counters (the activity endpoint's): the
# cache is Redis here even when REDIS_URL is left at its default.
CACHES = {"default": redis_cache(REDIS_URL, HANGAR_CACHE_PREFIX)}  # noqa: F405
