"""Hangar from Python and the command line: `hangar.client.Client` for scripts and
notebooks, `hangar` (hangar/cli.py) for the shell, `hangar.pack` for code folders.

Nothing heavy is imported here: `hangar --help` must start fast. `from hangar import
Client` works too (it imports the client on first use)."""

from __future__ import annotations

__version__ = "0.1.0"
# The largest code folder a job takes, zipped (hangar.pack's default; the server's own
# limit may be lower).
CODE_SIZE_LIMIT = 100 * 1024 * 1024


def __getattr__(name: str) -> object:
    if name in ("Client", "ApiError"):
        from hangar import client

        return getattr(client, name)
    raise AttributeError(f"module 'hangar' has no attribute {name!r}")
