"""The CLI's profiles: `config.toml` under $XDG_CONFIG_HOME/hangar (~/.config/hangar),
written by `hangar login` with mode 0600, and the environment that overrides it
(HANGAR_URL, HANGAR_TOKEN, HANGAR_WORKSPACE, HANGAR_PROFILE).

    default = "default"

    [profiles."default"]
    url = "http://127.0.0.1:8000"
    token = "hgr_..."
    workspace = "vision"
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hangar.output import Failure, warn

if TYPE_CHECKING:
    from hangar.client import Client

DEFAULT_PROFILE = "default"
# `hangar --profile NAME ...` (set by the root command; a command's own --profile wins).
CHOSEN: dict[str, str | None] = {"profile": None}


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "hangar" / "config.toml"


def read_config(path: Path | None = None) -> dict[str, Any]:
    import tomllib

    path = path or config_path()
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            data = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise Failure(f"cannot read {path}: {error}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warn(f"{path} can be read by others and holds tokens: chmod 600 {path}")
    return data


def toml_string(value: str) -> str:
    # A JSON string is a TOML basic string, once DEL is escaped too.
    return json.dumps(value).replace("\x7f", "\\u007f")


def write_config(data: dict[str, Any], path: Path | None = None) -> Path:
    """Write the profiles, readable by their owner only (0600, in a 0700 folder)."""
    import tempfile

    path = path or config_path()
    lines = [
        "# hangar CLI profiles, written by `hangar login`. They hold API tokens: keep this",
        "# file private (mode 0600).",
    ]
    if data.get("default"):
        lines.append(f"default = {toml_string(str(data['default']))}")
    for name, profile in sorted(data.get("profiles", {}).items()):
        lines += ["", f"[profiles.{toml_string(name)}]"]
        for key, value in profile.items():
            if isinstance(value, str) and value:
                lines.append(f"{key} = {toml_string(value)}")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write("\n".join(lines) + "\n")
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def profile_name(explicit: str | None) -> str | None:
    """The profile asked for: the command's --profile, hangar's, or HANGAR_PROFILE."""
    return explicit or CHOSEN["profile"] or os.environ.get("HANGAR_PROFILE") or None


class Settings:
    """The server, token and default workspace: the environment over the profile."""

    def __init__(self, profile: str | None) -> None:
        config = read_config()
        chosen = profile_name(profile)
        profiles = config.get("profiles", {})
        name = chosen or config.get("default") or DEFAULT_PROFILE
        found = profiles.get(name, {}) if isinstance(profiles, dict) else {}
        self.url = os.environ.get("HANGAR_URL") or found.get("url")
        self.token = os.environ.get("HANGAR_TOKEN") or found.get("token")
        self.workspace = os.environ.get("HANGAR_WORKSPACE") or found.get("workspace")
        if chosen and not found and not (os.environ.get("HANGAR_URL") and self.token):
            raise Failure(
                f"no profile {chosen!r} in {config_path()}: "
                f"run `hangar login --profile {chosen} --url URL --token TOKEN`"
            )
        if not self.url or not self.token:
            raise Failure(
                "not logged in: run `hangar login --url URL --token TOKEN` "
                "(or set HANGAR_URL and HANGAR_TOKEN)"
            )

    def client(self) -> Client:
        return make_client(str(self.url), str(self.token))


def make_client(url: str, token: str) -> Client:
    from hangar.client import Client, InvalidInput

    try:
        return Client(url, token)
    except InvalidInput as error:
        raise Failure(str(error), 2)


def connect(profile: str | None, workspace: str | None = None) -> tuple[Client, str]:
    """A client, and the workspace to act in (the option, else the profile's)."""
    settings = Settings(profile)
    chosen = workspace or settings.workspace
    if not chosen:
        raise Failure(
            "which workspace? give --workspace (-w), or store one with "
            "`hangar login --workspace SLUG`",
            2,
        )
    return settings.client(), chosen
