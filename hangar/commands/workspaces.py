"""`hangar login` and `hangar workspace ...`: a token checked and stored, the workspaces it
sees."""

from __future__ import annotations

import argparse
import os
import sys

from hangar.commands.common import output_of
from hangar.commands.registry import command, group, no_options
from hangar.output import Failure, show_lines, show_rows
from hangar.profiles import (
    DEFAULT_PROFILE,
    Settings,
    make_client,
    profile_name,
    read_config,
    write_config,
)


def login_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="The dashboard's address (or HANGAR_URL).")
    parser.add_argument(
        "--token",
        help="A personal access token (hgr_...; or HANGAR_TOKEN; `-` reads it from stdin; "
        "asked for when omitted).",
    )


def token_of(token: str | None) -> str:
    """--token, `-` (stdin), HANGAR_TOKEN, or asked for at a terminal."""
    if token == "-":
        token = sys.stdin.readline().strip()
    elif not token:
        token = os.environ.get("HANGAR_TOKEN")
    if not token:
        if not sys.stdin.isatty():
            raise Failure("give the token with --token (or `--token -` to read it from stdin)", 2)
        import getpass

        token = getpass.getpass("Token: ", stream=sys.stderr)
    return str(token)


@command(
    None,
    "login",
    "Check a token against the server and store it in a profile (mode 0600).",
    login_options,
)
def login(args: argparse.Namespace) -> None:
    url, workspace = args.url, args.workspace
    url = url or os.environ.get("HANGAR_URL")
    if not url:
        raise Failure("give the server's address with --url (e.g. http://127.0.0.1:8000)", 2)
    token = token_of(args.token)
    client = make_client(url, token)
    workspaces = client.workspaces()  # refuses a bad token with 401
    slugs = [w["slug"] for w in workspaces]
    if workspace and workspace not in slugs:
        raise Failure(f"this token sees no workspace {workspace!r} (it sees: {', '.join(slugs)})")
    if not workspace and len(slugs) == 1:
        workspace = slugs[0]

    name = profile_name(args.profile) or DEFAULT_PROFILE
    config = read_config()
    profiles = config.get("profiles", {})
    profiles = dict(profiles) if isinstance(profiles, dict) else {}
    entry = {"url": client.url, "token": token}
    if workspace:
        entry["workspace"] = workspace
    profiles[name] = entry
    config["profiles"] = profiles
    if not config.get("default") or config["default"] not in profiles:
        config["default"] = name
    path = write_config(config)
    summary = {
        "profile": name,
        "url": client.url,
        "workspace": workspace,
        "workspaces": slugs,
        "config": str(path),
    }
    where = f", workspace {workspace}" if workspace else ""
    show_lines(
        output_of(args),
        summary,
        f"Logged in to {client.url} as profile {name!r}{where}; saved in {path}.",
        f"The token sees {len(slugs)} workspace(s): {', '.join(slugs) or 'none'}.",
    )


group("workspace", "Workspaces the token can see.")


@command(
    "workspace",
    "list",
    "The workspaces the token sees, and your role in each.",
    no_options,
    workspace=False,
)
def workspace_list(args: argparse.Namespace) -> None:
    settings = Settings(args.profile)
    workspaces = settings.client().workspaces()
    show_rows(
        workspaces,
        output_of(args),
        ["SLUG", "NAME", "ROLE"],
        lambda w: [
            ("* " if w["slug"] == settings.workspace else "") + w["slug"],
            w["name"],
            w["role"],
        ],
        "No workspaces.",
    )
