"""Strict parsing of settings from the environment.

Every reader raises ImproperlyConfigured naming the variable, the bad value and what
would be accepted, so a typo in a deployment fails at start-up instead of at 3 a.m.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import overload

import dj_database_url
from cryptography.fernet import Fernet
from dj_database_url import DBConfig
from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...
def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off."
    )


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} is above the maximum of {maximum}.")
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise ImproperlyConfigured(
            f"{name}={raw!r} has an empty item: separate values with single commas."
        )
    return items


def env_networks(name: str, default: list[str]) -> list[str]:
    """Comma-separated CIDRs (IPv4 or IPv6), each exactly a network: "10.0.0.1/8" has host
    bits set and is refused rather than guessed at. An empty value means none."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not raw.strip():
        return []
    networks = []
    for item in env_list(name, default):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"{name}={raw!r}: {item!r} is not a network ({exc}); write CIDRs such as "
                "169.254.0.0/16,fe80::/10."
            ) from None
    return networks


def docker_engine_answers(url: str | None, timeout: float = 0.3) -> bool:
    """Whether something listens where the Docker engine would: one connect, no request,
    so settings can choose their defaults cheaply at every start."""
    url = url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        if url.startswith("unix://"):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(timeout)
            with probe:
                probe.connect(url.removeprefix("unix://"))
            return True
        if url.startswith("tcp://"):
            host, _, port = url.removeprefix("tcp://").rstrip("/").rpartition(":")
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            return True
    except (OSError, ValueError):
        return False
    return True  # ssh:// and the like: assume it is there rather than open a session here


def default_job_user() -> str:
    """Who host processes run as: hangar-job when Hangar is root, else Hangar's own user."""
    if os.geteuid() == 0:
        return "hangar-job"
    return pwd.getpwuid(os.geteuid()).pw_name


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={raw!r} must be one of: {', '.join(choices)}.")
    return value


SUPPORTED_DATABASE_ENGINES = {
    "django.db.backends.sqlite3",
    "django.db.backends.postgresql",
}


def env_database(name: str, default_sqlite_path: Path) -> DBConfig:
    """DATABASE_URL: sqlite:///path or postgres://user:pass@host:port/db."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(default_sqlite_path),
        }
    try:
        config = dj_database_url.parse(raw.strip(), conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # dj_database_url raises several types for bad URLs
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a database URL ({exc}). "
            "Use sqlite:////abs/path.sqlite3 or postgres://user@host:5432/dbname."
        ) from None
    if config.get("ENGINE") not in SUPPORTED_DATABASE_ENGINES:
        raise ImproperlyConfigured(f"{name}={raw!r}: only SQLite and PostgreSQL are supported.")
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name}={raw!r} names no database.")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config.pop("CONN_MAX_AGE", None)
        config.pop("CONN_HEALTH_CHECKS", None)
    return config


def env_redis_url(name: str, default: str) -> str:
    raw = env_str(name, default) or default
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a Redis URL: use redis://host:port/db.")
    return raw


def read_or_create_local_secret(path: Path, make: Callable[[], str]) -> str:
    """A development secret kept in an untracked file so restarts keep sessions valid."""
    if path.exists():
        if path.stat().st_mode & 0o077 and path.stat().st_uid == os.geteuid():
            path.chmod(0o600)  # made by an older version, or by hand: the owner's alone
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # O_EXCL: two processes starting at once must not write two different secrets.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def new_django_secret() -> str:
    return secrets.token_urlsafe(50)


def new_fernet_key() -> str:
    return Fernet.generate_key().decode()


def parse_fernet_keys(name: str, raw: str) -> list[str]:
    """Comma-separated Fernet keys, newest first (MultiFernet encrypts with the first)."""
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    if not keys:
        raise ImproperlyConfigured(f"{name} is empty: give at least one Fernet key.")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"{name}: key #{position} is not a Fernet key (32 url-safe base64 bytes). "
                "Generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None
    return keys
