"""Settings parse strictly, and production mode passes `check --deploy`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from config import env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", ["maybe", "2", "Tru"])
def test_bad_booleans_name_the_variable(monkeypatch, value):
    monkeypatch.setenv("DEBUG", value)
    with pytest.raises(ImproperlyConfigured, match=r"DEBUG=.* is not a boolean"):
        env.env_bool("DEBUG", True)


@pytest.mark.parametrize(("value", "expected"), [("TRUE", True), ("off", False), ("1", True)])
def test_good_booleans(monkeypatch, value, expected):
    monkeypatch.setenv("DEBUG", value)
    assert env.env_bool("DEBUG", not expected) is expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mysql://root@localhost/x", "only SQLite and PostgreSQL"),
        ("not a url", "is not a database URL"),
        ("postgres://postgres@127.0.0.1:5432/", "names no database"),
    ],
)
def test_bad_database_urls(monkeypatch, tmp_path, value, message):
    monkeypatch.setenv("DATABASE_URL", value)
    with pytest.raises(ImproperlyConfigured, match=message):
        env.env_database("DATABASE_URL", tmp_path / "db.sqlite3")


def test_database_url_defaults_to_sqlite_and_parses_postgres(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert env.env_database("DATABASE_URL", tmp_path / "x.sqlite3")["ENGINE"].endswith("sqlite3")
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hangar")
    config = env.env_database("DATABASE_URL", tmp_path / "x.sqlite3")
    assert (config["ENGINE"], config["NAME"], config["PORT"]) == (
        "django.db.backends.postgresql",
        "hangar",
        5432,
    )


def test_fernet_keys_are_checked_one_by_one():
    good = Fernet.generate_key().decode()
    assert env.parse_fernet_keys("K", f"{good}, {good}") == [good, good]
    with pytest.raises(ImproperlyConfigured, match="key #2 is not a Fernet key"):
        env.parse_fernet_keys("K", f"{good},short")


def test_redis_url_and_lists_are_checked(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "localhost:6379")
    with pytest.raises(ImproperlyConfigured, match="is not a Redis URL"):
        env.env_redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("ALLOWED_HOSTS", "a.example,,b.example")
    with pytest.raises(ImproperlyConfigured, match="has an empty item"):
        env.env_list("ALLOWED_HOSTS", [])


def test_local_secret_is_generated_once_and_kept(tmp_path):
    path = tmp_path / "secret"
    first = env.read_or_create_local_secret(path, env.new_django_secret)
    assert env.read_or_create_local_secret(path, env.new_django_secret) == first
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def manage(*args: str, **extra_env: str | None) -> subprocess.CompletedProcess:
    """manage.py in a fresh process; a variable given as None is left out."""
    # The browser tests' DJANGO_ALLOW_ASYNC_UNSAFE must not leak into a deployment check.
    inherited = ("DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")
    environment = {k: v for k, v in os.environ.items() if k not in inherited}
    environment.update(extra_env)
    environment = {k: v for k, v in environment.items() if v is not None}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_pass_check_deploy():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SETTINGS_MODULE="config.settings_production",
        SECRET_KEY=Fernet.generate_key().decode() + "-production-secret-key",
        HANGAR_SECRET_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="hangar.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_secrets():
    result = manage(
        "check",
        DJANGO_SETTINGS_MODULE="config.settings_production",
        SECRET_KEY="",
        HANGAR_SECRET_KEYS="",
        ALLOWED_HOSTS="",
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set in production" in result.stderr


def test_a_bad_value_stops_manage_py_with_a_clear_message():
    result = manage("check", DEBUG="perhaps")
    assert result.returncode != 0
    assert "DEBUG='perhaps' is not a boolean" in result.stderr


PRINT_CACHE = "from django.conf import settings; print(settings.CACHES['default']['BACKEND'])"
REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"


def cache_backend(**extra_env: str | None) -> str:
    result = manage("shell", "-c", PRINT_CACHE, **extra_env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_the_cache_is_redis_when_redis_url_is_set_else_local_memory():
    development = {"DJANGO_SETTINGS_MODULE": "config.settings"}
    assert cache_backend(**development, REDIS_URL="redis://127.0.0.1:6379/3") == REDIS_CACHE
    assert cache_backend(**development, REDIS_URL=None).endswith("LocMemCache")


def test_production_keeps_rate_limits_in_redis_even_with_the_default_url():
    environment = {
        "DJANGO_SETTINGS_MODULE": "config.settings_production",
        "SECRET_KEY": Fernet.generate_key().decode() + "-production-secret-key",
        "HANGAR_SECRET_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "hangar.example.com",
    }
    assert cache_backend(**environment, REDIS_URL=None) == REDIS_CACHE


def test_the_test_suite_counts_in_redis_under_its_own_prefix(settings):
    default = settings.CACHES["default"]
    assert default["BACKEND"] == REDIS_CACHE
    assert default["LOCATION"] == settings.REDIS_URL
    assert default["KEY_PREFIX"].startswith(settings.HANGAR_SITE)


def test_axes_guards_every_login_and_renders_the_login_page_when_locked(settings):
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AXES_LOCKOUT_CALLABLE == "workspace.lockout.lockout_response"
    assert settings.AXES_HANDLER == "axes.handlers.database.AxesDatabaseHandler"


def test_login_limits_come_from_the_environment():
    code = (
        "from django.conf import settings; "
        "print(settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME.total_seconds())"
    )
    result = manage(
        "shell",
        "-c",
        code,
        DJANGO_SETTINGS_MODULE="config.settings",
        HANGAR_LOGIN_FAILURES="4",
        HANGAR_LOGIN_COOLOFF_MINUTES="2",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "4 120.0"
    result = manage("check", HANGAR_LOGIN_FAILURES="0")
    assert result.returncode != 0
    assert "HANGAR_LOGIN_FAILURES=0 is below the minimum of 1" in result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("169.254.0.0/16,,fe80::/10", "has an empty item"),
        ("10.0.0.1/8", "is not a network"),  # host bits set: refused, not guessed at
        ("link-local", "is not a network"),
        ("169.254.0.0/33", "is not a network"),
    ],
)
def test_bad_deny_networks_name_the_variable(monkeypatch, value, message):
    monkeypatch.setenv("HANGAR_ATTACH_DENY_NETWORKS", value)
    with pytest.raises(ImproperlyConfigured, match=rf"HANGAR_ATTACH_DENY_NETWORKS=.*{message}"):
        env.env_networks("HANGAR_ATTACH_DENY_NETWORKS", [])


def test_deny_networks_parse_both_families_and_empty_means_none(monkeypatch):
    monkeypatch.setenv("HANGAR_ATTACH_DENY_NETWORKS", " 169.254.0.0/16 , FE80::/10")
    assert env.env_networks("HANGAR_NOT_SET_HERE", []) == []  # unset: the default
    assert env.env_networks("HANGAR_ATTACH_DENY_NETWORKS", []) == ["169.254.0.0/16", "fe80::/10"]
    monkeypatch.setenv("HANGAR_ATTACH_DENY_NETWORKS", "")
    assert env.env_networks("HANGAR_ATTACH_DENY_NETWORKS", ["0.0.0.0/8"]) == []
