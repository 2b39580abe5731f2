"""`hangar environment ...`: what a compute's nodes run with, and their images' builds."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hangar.commands.common import connected, in_time, lists, output_of, shows
from hangar.commands.registry import command, group, no_options
from hangar.output import Failure, Fields, Output, note, show_fields, size_text, when

if TYPE_CHECKING:
    from hangar.client import Environment

group("environment", "Environments: what a compute's nodes run with, and their images' builds.")


def image_text(environment: Environment) -> str:
    image = environment["image"]
    return image["state"].replace("_", " ")


def environment_row(e: Environment) -> list[object]:
    return [
        e["id"],
        f"{e['name']}:{e['version']}",
        "site" if e["curated"] else "workspace",
        image_text(e),
        size_text(e["image"]["size_bytes"]) if e["image"]["size_bytes"] else "",
        len(e["debian_packages"]) + len(e["pip_requirements"]),
    ]


def environment_fields(environment: Environment) -> Fields:
    image = environment["image"]
    variables = " ".join(f"{k}={v}" for k, v in environment["variables"].items())
    pairs: Fields = [
        ("id", environment["id"]),
        ("name", f"{environment['name']}:{environment['version']}"),
        ("description", environment["description"]),
        ("from", "the site (curated)" if environment["curated"] else "this workspace"),
        ("debian packages", " ".join(environment["debian_packages"])),
        ("pip requirements", " ".join(environment["pip_requirements"])),
        ("variables", variables),
        ("image", image["tag"]),
        ("state", image_text(environment)),
        ("image id", image["image_id"][:19]),
        ("size", size_text(image["size_bytes"]) if image["size_bytes"] else ""),
        ("build started", when(image["started_at"])),
        ("build ended", when(image["finished_at"])),
    ]
    if image["error"]:
        pairs.append(("error", image["error"].strip()))
    pairs.append(("page", environment["url"]))
    return pairs


def show_environment(environment: Environment, output: Output) -> None:
    show_fields(environment, output, environment_fields)


def environment_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "environment",
        metavar="ENVIRONMENT",
        help="NAME (its newest version; the workspace's before the site's), NAME:VERSION or id.",
    )


lists(
    "environment",
    "list",
    "The workspace's environments and the site's, with their images.",
    no_options,
    lambda client, slug, args: client.environments(slug),
    ["ID", "ENVIRONMENT", "FROM", "IMAGE", "SIZE", "PACKAGES"],
    environment_row,
    "No environments in {slug}.",
)
shows(
    "environment",
    "show",
    "One environment: its packages, variables and image.",
    environment_argument,
    lambda client, slug, args: client.environment(slug, args.environment),
    show_environment,
)


def environment_build_options(parser: argparse.ArgumentParser) -> None:
    environment_argument(parser)
    parser.add_argument(
        "--wait",
        action="store_true",
        help="Wait for the build to end; exit 1 when it failed.",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="With --wait: give up after this many s."
    )


@command(
    "environment",
    "build",
    "Build an environment's image: one that failed, or one not built yet (the log is on its page).",
    environment_build_options,
)
def environment_build(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    found = client.build_environment(slug, args.environment)
    if args.wait:
        note(f"hangar: building {found['name']}:{found['version']} (its page: {found['url']})")
        found = in_time(lambda: client.wait_environment(slug, found["id"], timeout=args.timeout))
    show_environment(found, output_of(args))
    if found["image"]["state"] == "failed":
        reason = (found["image"]["error"].strip().splitlines() or ["see its page"])[0]
        raise Failure(f"the build of {found['name']}:{found['version']} failed: {reason}")
