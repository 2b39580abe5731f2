"""Settings for the test suite: config.settings with isolated Redis and queue names.

A `make run` on the same machine uses Redis db 0 and the queue "hangar"; tests use db 15
and their own queue so the two never take each other's tasks.
"""

import os
from pathlib import Path

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_QUEUE", "hangar-test")
# The suite runs the local driver and the local computer next to Docker ones; the tests of
# the opt-out turn it off where they need to.
os.environ.setdefault("HANGAR_DRIVER", "local")
os.environ.setdefault("HANGAR_ALLOW_HOST_PROCESSES", "true")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
HANGAR_HEALTH_CACHE_SECONDS = 0
# Django's test outbox; a worker process a test reads the mail of writes files instead.
EMAIL_BACKEND = (
    os.environ.get("HANGAR_TEST_EMAIL_BACKEND") or "django.core.mail.backends.locmem.EmailBackend"
)
EMAIL_FILE_PATH = os.environ.get("HANGAR_TEST_EMAIL_FILE_PATH")

# Containers of a test run carry their own site label: the sweep of a test never touches
# the containers of `make run` on the same Docker engine, and vice versa.
HANGAR_SITE = os.environ.get("HANGAR_TEST_SITE") or "t" + HANGAR_SITE  # noqa: F405
# Under `pytest -n N` each xdist worker is a session of its own: its own site label, so its
# containers, folders, SQLite file and leftover check never meet another worker's. Idempotent:
# a Celery worker a test starts inherits the suffixed label (and PYTEST_XDIST_WORKER).
if (xdist_worker := os.environ.get("PYTEST_XDIST_WORKER")) and not HANGAR_SITE.endswith(
    f"-{xdist_worker}"
):
    HANGAR_SITE = f"{HANGAR_SITE}-{xdist_worker}"
HANGAR_NODE_IMAGE = os.environ.get("HANGAR_NODE_IMAGE", "hangar/node-tiny:v2")
# A worker in another process must open the same test database: SQLite tests use a file,
# one per test site.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(LOCAL_DIR / f"test-{HANGAR_SITE}.sqlite3")}  # noqa: F405
# Per test site too: a session clears its job records when it starts, and checks for its
# leftovers when it ends, without touching another session's.
HANGAR_LOCAL_NODES_DIR = LOCAL_DIR / f"test-nodes-{HANGAR_SITE}"  # noqa: F405
HANGAR_JOBS_DIR = LOCAL_DIR / f"test-jobs-{HANGAR_SITE}"  # noqa: F405
HANGAR_MODELS_DIR = LOCAL_DIR / f"test-models-{HANGAR_SITE}"  # noqa: F405
HANGAR_SERVING_DIR = LOCAL_DIR / f"test-serving-{HANGAR_SITE}"  # noqa: F405
HANGAR_ENV_BUILD_LOG_DIR = LOCAL_DIR / f"test-env-builds-{HANGAR_SITE}"  # noqa: F405
HANGAR_HOST_WORK_DIR = Path(  # per test site, like the containers
    os.environ.get("HANGAR_HOST_WORK_DIR") or f"/var/tmp/hangar-{HANGAR_SITE}"  # noqa: S108
)
HANGAR_RECONCILE_LEASE_SECONDS = float(os.environ.get("HANGAR_RECONCILE_LEASE_SECONDS", "3"))

# The cache is Redis (REDIS_URL is always set above), under the test site's prefix unless
# HANGAR_CACHE_PREFIX says otherwise: `make run` on db 0 and other test runs keep apart.
HANGAR_CACHE_PREFIX = os.environ.get("HANGAR_CACHE_PREFIX") or HANGAR_SITE
CACHES = {"default": redis_cache(REDIS_URL, HANGAR_CACHE_PREFIX)}  # noqa: F405

# django-axes' documented test setup: off, because Django's test Client.login() calls
# authenticate() without a request, which axes refuses. The tests of login throttling turn
# it back on (tests/security/test_login_throttling.py); pages and force_login are unaffected.
AXES_ENABLED = False
