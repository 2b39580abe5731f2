"""Environment image build logs: one file per image (by its spec's hash), written by the
build (compute/controllers/environments.py) and read by the environment's page."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

LOG_LIMIT = 4 * 1024 * 1024  # a build's log is cut here (pip can be verbose)
SHOWN = 64 * 1024  # the page shows the end of a longer log


def log_path(spec_hash: str) -> Path:
    if not spec_hash.isalnum():
        raise ValueError(f"not a spec hash: {spec_hash!r}")
    return Path(settings.HANGAR_ENV_BUILD_LOG_DIR) / f"{spec_hash}.log"


def read_log(spec_hash: str, offset: int = 0) -> tuple[str, int]:
    """The log from byte `offset` on, and the offset after it."""
    try:
        with open(log_path(spec_hash), "rb") as handle:
            handle.seek(offset)
            data = handle.read(LOG_LIMIT)
    except FileNotFoundError:
        return "", 0
    return data.decode("utf-8", errors="replace"), offset + len(data)


def log_tail(spec_hash: str) -> str:
    """The end of the log, as the page shows it."""
    try:
        with open(log_path(spec_hash), "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - SHOWN))
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text if size <= SHOWN else "…\n" + text.split("\n", 1)[-1]
