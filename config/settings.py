"""Hangar settings, read from the environment (see README "Configuration").

Development defaults need no environment at all: secrets are generated into the untracked
`.local/` folder. `config.settings_production` tightens everything for deployment.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.env import (
    default_job_user,
    docker_engine_answers,
    env_bool,
    env_choice,
    env_database,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_redis_url,
    env_str,
    new_django_secret,
    new_fernet_key,
    parse_fernet_keys,
    read_or_create_local_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# Untracked state of a development checkout: SQLite database, generated secrets, logs.
LOCAL_DIR = Path(env_str("HANGAR_LOCAL_DIR", str(BASE_DIR / ".local")))
# Secrets, the database and job records live here: no host process may read it (0700).
LOCAL_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
if LOCAL_DIR.stat().st_uid == os.geteuid() and LOCAL_DIR.stat().st_mode & 0o077:
    LOCAL_DIR.chmod(0o700)

PRODUCTION = False
DEBUG = env_bool("DEBUG", True)

SECRET_KEY = env_str("SECRET_KEY") or read_or_create_local_secret(
    LOCAL_DIR / "secret_key", new_django_secret
)
if len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY is shorter than 32 characters.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Encryption keys for secrets of attached computes, newest first (MultiFernet).
HANGAR_SECRET_KEYS = parse_fernet_keys(
    "HANGAR_SECRET_KEYS",
    env_str("HANGAR_SECRET_KEYS")
    or read_or_create_local_secret(LOCAL_DIR / "fernet_keys", new_fernet_key),
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_celery_beat",
    "axes",
    "workspace",
    "compute",
    "compute.inference",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # HTML and JSON compressed (Django's, with its BREACH padding; CSRF tokens are masked
    # per response); static files come compressed already from WhiteNoise.
    "django.middleware.gzip.GZipMiddleware",
    "compute.api.guard.RefuseNulCharacters",  # only /api/v1/: before any lookup by name
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # After it (it reads request.htmx): a signed-out htmx request gets HX-Redirect to login.
    "workspace.signed_out.SignedOutHtmx",
    # Last, as django-axes documents: it turns a lockout flagged during the request into
    # the lockout page (AXES_LOCKOUT_CALLABLE below).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "workspace.context_processors.workspace_switcher",
                "compute.context_processors.host_processes",
                "compute.context_processors.worker_health",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

DATABASES = {"default": env_database("DATABASE_URL", LOCAL_DIR / "hangar.sqlite3")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web server, worker and beat share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out username + address before any password is
# checked; ModelBackend then authenticates as before.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# django-ninja's bundled Swagger UI (compute/api/docs.py): the API docs page loads nothing
# from a CDN. Found without importing ninja, which only the web process needs.
_ninja = importlib.util.find_spec("ninja")
if _ninja is not None and _ninja.origin:
    STATICFILES_DIRS.append(Path(_ninja.origin).parent / "static")
STATIC_ROOT = LOCAL_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing root
# Hashed names (cached for a year), compressed once by collectstatic (WhiteNoise): always
# in production; under `make run` too (it runs collectstatic first), unless a developer
# editing CSS or JS asks for the files as they are (HANGAR_STATIC_BUILT=false).
HANGAR_STATIC_BUILT = env_bool("HANGAR_STATIC_BUILT", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "config.static_storage.BuiltStaticFiles"
            if HANGAR_STATIC_BUILT
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Built files are what is served, as in production (no look through the app folders).
WHITENOISE_USE_FINDERS = not HANGAR_STATIC_BUILT
WHITENOISE_AUTOREFRESH = DEBUG and not HANGAR_STATIC_BUILT
MEDIA_ROOT = LOCAL_DIR / "media"

# Celery: Redis carries task ids only; the database is the source of truth (DESIGN.md).
REDIS_URL = env_redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "hangar") or "hangar"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE

# How long the worker-health indicator trusts its last answer.
HANGAR_HEALTH_CACHE_SECONDS = env_int("HANGAR_HEALTH_CACHE_SECONDS", 5, minimum=0)
HANGAR_DOCKER_URL = env_str("HANGAR_DOCKER_URL", "")  # empty: DOCKER_HOST or the local socket
# Where nodes live: "docker" when an engine answers, else "local" (host processes).
if "HANGAR_DRIVER" in os.environ and "HANGAR_ALLOW_HOST_PROCESSES" in os.environ:
    _docker_answers = None  # both decided: no need to look for an engine
else:
    _docker_answers = docker_engine_answers(HANGAR_DOCKER_URL)
HANGAR_DRIVER = env_choice(
    "HANGAR_DRIVER", "docker" if _docker_answers else "local", ("docker", "local", "noop")
)
# Host processes (the local driver, the "local computer" target) share this machine with
# Hangar, unisolated: the operator's decision. By default only a development machine
# without a Docker engine has them; production settings default to false.
HANGAR_ALLOW_HOST_PROCESSES = env_bool("HANGAR_ALLOW_HOST_PROCESSES", not _docker_answers)
if HANGAR_DRIVER == "local" and not HANGAR_ALLOW_HOST_PROCESSES:
    raise ImproperlyConfigured(
        "HANGAR_DRIVER=local runs every node as a process on this host, not isolated: set "
        "HANGAR_ALLOW_HOST_PROCESSES=true to allow it, or use HANGAR_DRIVER=docker."
    )
# Environment image builds' logs, one file per image (compute/controllers/environments.py).
HANGAR_ENV_BUILD_LOG_DIR = Path(
    env_str("HANGAR_ENV_BUILD_LOG_DIR") or str(LOCAL_DIR / "environment-builds")
)
# Host processes run as this user (never root), in folders of their own under
# HANGAR_HOST_WORK_DIR, outside LOCAL_DIR.
HANGAR_JOB_USER = env_str("HANGAR_JOB_USER") or default_job_user()
# Labels every container of this installation, so two Hangars (or a test run) sharing one
# Docker engine never adopt or remove each other's containers.
HANGAR_SITE = env_str("HANGAR_SITE") or (
    "dev" + hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:6]
)
if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", HANGAR_SITE):
    raise ImproperlyConfigured(
        f"HANGAR_SITE={HANGAR_SITE!r}: use up to 31 lowercase letters, digits, -."
    )
# A shared /var/tmp is safe here: hostproc uses the folder only if it is Hangar's own
# (its owner, not a link), and each run's folder in it is made fresh.
HANGAR_HOST_WORK_DIR = Path(env_str("HANGAR_HOST_WORK_DIR") or f"/var/tmp/hangar-{HANGAR_SITE}")  # noqa: S108
HANGAR_NODE_IMAGE = env_str("HANGAR_NODE_IMAGE", "hangar/node:v2")
HANGAR_NODE_NETWORK = env_choice("HANGAR_NODE_NETWORK", "none", ("none", "host"))
# What a node runs while it waits for work; init=True makes it stop promptly.
HANGAR_NODE_COMMAND = ("sleep", "2147483647")
HANGAR_LOCAL_NODES_DIR = LOCAL_DIR / "nodes"
# Job code snapshots and each run's record (output, exit code): Hangar's alone, never
# mounted into a node or readable by a job.
HANGAR_JOBS_DIR = Path(env_str("HANGAR_JOBS_DIR") or LOCAL_DIR / "jobs")
# A run's output past this is cut, with a visible marker: a job cannot fill Hangar's disk.
HANGAR_JOB_OUTPUT_LIMIT_MB = env_int("HANGAR_JOB_OUTPUT_LIMIT_MB", 100, minimum=1)
# Job output files (what a job writes under ./outputs, kept when its run ends): the caps of
# one job's, all its ranks together. A job past one has its whole set refused, saying why.
HANGAR_JOB_OUTPUTS_LIMIT_MB = env_int("HANGAR_JOB_OUTPUTS_LIMIT_MB", 1024, minimum=1)
HANGAR_JOB_OUTPUTS_MAX_FILES = env_int("HANGAR_JOB_OUTPUTS_MAX_FILES", 10_000, minimum=1)
HANGAR_JOB_OUTPUTS_MAX_DEPTH = env_int("HANGAR_JOB_OUTPUTS_MAX_DEPTH", 32, minimum=1, maximum=256)
# All of one workspace's kept output files: without it, a workspace's queue of jobs each at
# the job's cap fills Hangar's disk for every workspace. A job past it keeps none, saying so.
HANGAR_WORKSPACE_OUTPUTS_LIMIT_MB = env_int(
    "HANGAR_WORKSPACE_OUTPUTS_LIMIT_MB", 20 * 1024, minimum=1
)
# Output files of jobs that ended longer ago than this go (the job row stays, saying so);
# 0 keeps them as long as the job.
HANGAR_JOB_OUTPUTS_RETENTION_DAYS = env_int("HANGAR_JOB_OUTPUTS_RETENTION_DAYS", 0, minimum=0)
# Processes a node may hold at once (a fork bomb stops there, not at the host's limit).
HANGAR_NODE_PIDS_LIMIT = env_int("HANGAR_NODE_PIDS_LIMIT", 512, minimum=16)
# Size of a node's /tmp (memory-backed, counted in the node's memory).
HANGAR_NODE_TMP_MB = env_int("HANGAR_NODE_TMP_MB", 256, minimum=1)
# A job whose node is preempted goes back to the queue this many times at most.
HANGAR_JOB_MAX_RETRIES = env_int("HANGAR_JOB_MAX_RETRIES", 3, minimum=0, maximum=100)
# Job code: an upload, and the code it unpacks to, may each take this many MiB. The upload
# handler refuses a bigger body before reading its file; a zip is counted as it unpacks.
HANGAR_CODE_LIMIT_MB = env_int("HANGAR_CODE_LIMIT_MB", 50, minimum=1, maximum=100_000)
# Registered models (compute/inference): stored like job code, under their own folder and
# cap (a container instance serves only models under 1 GB; a cluster may take more).
HANGAR_MODELS_DIR = Path(env_str("HANGAR_MODELS_DIR") or LOCAL_DIR / "models")
HANGAR_MODEL_LIMIT_MB = env_int("HANGAR_MODEL_LIMIT_MB", 4096, minimum=1, maximum=1_000_000)
# Serving replicas: their scripts (code/<deployment>/) and the folder each one's scoring
# socket appears in (sockets/<container>/), under a folder only Hangar may enter.
HANGAR_SERVING_DIR = Path(env_str("HANGAR_SERVING_DIR") or LOCAL_DIR / "serving")
# The scoring gateway (compute/inference/gateway, `gateway` in the Procfile): where clients
# send POST /score/<workspace>/<endpoint>, how often it rereads the routes, the largest
# request it forwards, and how many requests may wait for a replica per deployment.
HANGAR_GATEWAY_PORT = env_int(
    "HANGAR_GATEWAY_PORT", (env_int("HANGAR_PORT", 8000, minimum=1, maximum=65535) % 65535) + 1
)
HANGAR_SCORE_URL = env_str("HANGAR_SCORE_URL") or f"http://127.0.0.1:{HANGAR_GATEWAY_PORT}"
HANGAR_GATEWAY_REFRESH = float(env_str("HANGAR_GATEWAY_REFRESH") or "0.5")
HANGAR_SCORE_BODY_LIMIT = env_int("HANGAR_SCORE_BODY_LIMIT", 16 * 1024 * 1024, minimum=1024)
HANGAR_SCORE_QUEUE_LIMIT = env_int("HANGAR_SCORE_QUEUE_LIMIT", 100, minimum=1)
FILE_UPLOAD_HANDLERS = [
    "compute.lib.uploads.LimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Form fields other than files (Django answers 400 beyond it): a 1,000,000-character script
# may take 4 bytes a character.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Files per request: compute.lib.uploads.LimitUploadHandler refuses past MAX_FILES with
# the form's words (Django's own limit answers a bare 400).
DATA_UPLOAD_MAX_NUMBER_FILES = None
# The quota page's disk use of a workspace is recounted at most this often.
HANGAR_DISK_USAGE_CACHE_SECONDS = env_int("HANGAR_DISK_USAGE_CACHE_SECONDS", 60, minimum=0)
# Demo only: chance per node-hour that the sweep preempts a low-priority node.
HANGAR_SIMULATED_PREEMPTIONS_PER_HOUR = env_float("HANGAR_SIMULATED_PREEMPTIONS_PER_HOUR", 0.0)
# One host stands in for many VMs: a VM size's vCPUs and memory are scaled by these.
# Node hosts (compute/models/hosts.py): an unreachable host's nodes are written off (their
# jobs requeued, replaced elsewhere) after this long without an answer.
HANGAR_HOST_GRACE_SECONDS = env_int("HANGAR_HOST_GRACE_SECONDS", 60, minimum=0)
HANGAR_CPU_SCALE = env_float("HANGAR_CPU_SCALE", 0.05)
HANGAR_MEMORY_SCALE = env_float("HANGAR_MEMORY_SCALE", 0.02)
HANGAR_MAX_NODES_LIMIT = env_int("HANGAR_MAX_NODES_LIMIT", 16, minimum=1, maximum=1000)
# Attached computes: jobs at once per target, and how often an idle target is checked.
HANGAR_ATTACHED_JOBS_PER_TARGET = env_int(
    "HANGAR_ATTACHED_JOBS_PER_TARGET", 1, minimum=1, maximum=64
)
HANGAR_ATTACHED_HEALTH_SECONDS = env_float("HANGAR_ATTACHED_HEALTH_SECONDS", 30.0, minimum=1.0)
# Remote VMs and HDInsight are never reached at these addresses (nor at a name resolving
# into them): link-local is where cloud metadata services answer with the host's secrets.
HANGAR_ATTACH_DENY_NETWORKS = env_networks(
    "HANGAR_ATTACH_DENY_NETWORKS", ["169.254.0.0/16", "fe80::/10", "0.0.0.0/8"]
)
# A reconciler holds a compute for this long at most; a dead worker's hold expires.
HANGAR_RECONCILE_LEASE_SECONDS = env_float("HANGAR_RECONCILE_LEASE_SECONDS", 10.0, minimum=1.0)
# Beat's sweep enforces idle deadlines and collects finished jobs: its period bounds how
# late a scale-down or a job's completion can be noticed. Whole seconds: beat's
# DatabaseScheduler stores the interval (and the expiry below) as whole seconds, and would
# turn 0.5 into 0, a sweep sent as fast as beat can loop.
HANGAR_SWEEP_SECONDS = env_int("HANGAR_SWEEP_SECONDS", 1, minimum=1)
# The sweep hands the computes it finds due to the workers in at most this many messages
# a run: that many or fewer due, one reconcile task each (each starts at once, in
# parallel); more, their ids dealt into this many batches (compute/enqueue.py). It bounds
# the sweep's broker round trips however many computes are due.
HANGAR_SWEEP_MAX_MESSAGES = env_int("HANGAR_SWEEP_MAX_MESSAGES", 20, minimum=1, maximum=1000)
# A compute's events, a workspace's activity, cluster chart samples, ended node rows, read
# notifications and reminders of past deadlines are deleted once older than this many days,
# a bounded batch at a time by the sweep (compute/controllers/retention.py). The newest
# events (and activity, samples) of each compute or workspace stay whatever their age.
HANGAR_EVENT_RETENTION_DAYS = env_int("HANGAR_EVENT_RETENTION_DAYS", 90, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "reconcile-sweep": {
        "task": "hangar.sweep",
        "schedule": HANGAR_SWEEP_SECONDS,
        # A sweep that waited a whole period is stale: a newer one is already queued behind
        # it. So after a worker outage of any length the backlog runs at most one old sweep
        # (the rest are discarded as expired when received, prefetched ones too: a worker
        # checks the expiry of each message it takes). `expire_seconds` is the key
        # django-celery-beat's DatabaseScheduler keeps (PeriodicTask.expire_seconds, sent as
        # `expires` by its ModelEntry); it drops a plain `expires` option. Tests run the same
        # scheduler (tests/support/worker.py).
        "options": {"expire_seconds": HANGAR_SWEEP_SECONDS},
    },
}

# Idle shutdown counts in minutes; tests and demos shrink a "minute" to see it happen.
HANGAR_SECONDS_PER_IDLE_MINUTE = env_float("HANGAR_SECONDS_PER_IDLE_MINUTE", 60.0, minimum=0.01)
# The port `make run` serves on (the Procfile's runserver reads the same variable).
HANGAR_PORT = env_int("HANGAR_PORT", 8000, minimum=1, maximum=65535)
# Absolute links in reminder emails point here.
HANGAR_BASE_URL = env_str("HANGAR_BASE_URL") or f"http://127.0.0.1:{HANGAR_PORT}"
# A workspace invitation can be accepted for this many days.
HANGAR_INVITATION_DAYS = env_int("HANGAR_INVITATION_DAYS", 7, minimum=1, maximum=365)
# Calls a node may make to the activity endpoint per instance and minute.
HANGAR_ACTIVITY_RATE_PER_MINUTE = env_int("HANGAR_ACTIVITY_RATE_PER_MINUTE", 30, minimum=1)

# Quota defaults for a workspace without its own limits; restricted families start at 0.
HANGAR_DEFAULT_FAMILY_CORES = env_int("HANGAR_DEFAULT_FAMILY_CORES", 96, minimum=0)
HANGAR_DEFAULT_LOW_PRIORITY_CORES = env_int("HANGAR_DEFAULT_LOW_PRIORITY_CORES", 96, minimum=0)
HANGAR_DEFAULT_MAX_COMPUTES = env_int("HANGAR_DEFAULT_MAX_COMPUTES", 50, minimum=1)
# Site powers. Even a user allowed to create workspaces stops at this many: quota comes per
# workspace, so making workspaces must not multiply it.
HANGAR_MAX_WORKSPACES_PER_USER = env_int("HANGAR_MAX_WORKSPACES_PER_USER", 5, minimum=0)
# Jobs waiting in one workspace's queues at once; past it a submission is refused.
HANGAR_MAX_QUEUED_JOBS = env_int("HANGAR_MAX_QUEUED_JOBS", 1000, minimum=1)
# API requests per credential (a token, or a signed-in user): "600/m", "20/s" (ninja's form).
HANGAR_API_RATE = env_str("HANGAR_API_RATE", "600/m") or "600/m"
# Nobody decides their own quota request unless the operator says so (a one-person site).
HANGAR_ALLOW_SELF_APPROVAL = env_bool("HANGAR_ALLOW_SELF_APPROVAL", False)
# GET /metrics (Prometheus, compute/metrics.py): off (404) unless set; then only for
# `Authorization: Bearer <token>`. At least 16 characters: it guards the site's figures.
HANGAR_METRICS_TOKEN = env_str("HANGAR_METRICS_TOKEN", "").strip()
if HANGAR_METRICS_TOKEN and (len(HANGAR_METRICS_TOKEN) < 16 or " " in HANGAR_METRICS_TOKEN):
    raise ImproperlyConfigured(
        "HANGAR_METRICS_TOKEN: use at least 16 characters without spaces "
        "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or leave it "
        "empty to turn /metrics off."
    )

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "hangar@localhost")
# A mail server that stops answering holds a worker this long at most, not forever.
EMAIL_TIMEOUT = int(env_str("EMAIL_TIMEOUT", "10"))

# Login throttling (django-axes): this many failed sign-ins for one username from one client
# address lock that pair for the cool-off; every failure during it starts the cool-off anew.
# Attempts live in the database (AccessAttempt), so every web process sees them and site
# staff unlock a pair by deleting its attempt in the Django admin.
HANGAR_LOGIN_FAILURES = env_int("HANGAR_LOGIN_FAILURES", 10, minimum=1, maximum=1000)
HANGAR_LOGIN_COOLOFF_MINUTES = env_int("HANGAR_LOGIN_COOLOFF_MINUTES", 15, minimum=1)
AXES_ENABLED = True
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = HANGAR_LOGIN_FAILURES
AXES_COOLOFF_TIME = timedelta(minutes=HANGAR_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# A right password clears that pair's failures: typos over a day never add up to a lockout.
AXES_RESET_ON_SUCCESS = True
# The login page again, with the reason, instead of a bare error page.
AXES_LOCKOUT_CALLABLE = "workspace.lockout.lockout_response"
# The client address is REMOTE_ADDR: django-ipware is not installed, so no forwarded header
# is trusted (axes.helpers.get_client_ip_address falls back to REMOTE_ADDR).

# Failed activity-endpoint calls (wrong or missing token, unknown instance) counted per
# client address and per instance; past this in a minute, both answer 429 untested.
HANGAR_ACTIVITY_FAILURES_PER_MINUTE = env_int("HANGAR_ACTIVITY_FAILURES_PER_MINUTE", 10, minimum=1)


def redis_cache(url: str, prefix: str) -> dict:
    """Django's own Redis cache: counters of rate limits hold across web processes."""
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        # Installations (and test runs) sharing one Redis DB keep apart by prefix.
        "KEY_PREFIX": prefix,
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
    }


HANGAR_CACHE_PREFIX = env_str("HANGAR_CACHE_PREFIX") or HANGAR_SITE
# With a Redis named (make run, production, tests) the cache lives there; a bare
# `manage.py runserver` keeps the local-memory cache and needs no Redis to serve pages.
CACHES = {
    "default": redis_cache(REDIS_URL, HANGAR_CACHE_PREFIX)
    if "REDIS_URL" in os.environ
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        # A 403 or 404 is one line, without the traceback Django attaches (config/logfilters).
        "refusal_without_traceback": {"()": "config.logfilters.RefusalWithoutTraceback"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "mail_admins": {
            "level": "ERROR",
            "filters": ["require_debug_false"],
            "class": "django.utils.log.AdminEmailHandler",
        },
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO") or "INFO"},
    "loggers": {
        # Django's default config gives "django" a console handler of its own: with the root's,
        # every line of Django printed twice. Root's console only, and mail to ADMINS as before.
        "django": {"handlers": ["mail_admins"], "level": "INFO", "propagate": True},
        "django.request": {"filters": ["refusal_without_traceback"]},
        # "AXES: BEGIN version ..." from every process at every start: not news.
        "axes.apps": {"level": "WARNING"},
    },
}
