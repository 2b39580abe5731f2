"""`hangar quota ...`: limits, usage, what a compute would take, requests for more."""

from __future__ import annotations

import argparse
from typing import Any

from hangar.commands.common import connected, output_of, size_option
from hangar.commands.registry import command, group, no_options
from hangar.output import Output, print_json, print_table, show_lines

group("quota", "Quota: limits, usage, what a compute would take, requests for more.")


def family_note(family: dict[str, Any]) -> str:
    if family["needs_approval"]:
        return "needs approval"
    return "request pending" if family["request_pending"] else ""


@command(
    "quota", "show", "Each family's limit and the cores in use; the low-priority pool.", no_options
)
def quota_show(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    usage = client.quota(slug)
    if output_of(args) is Output.json:
        print_json(usage)
        return
    rows = [[f["family"], f["used"], f["limit"], family_note(f)] for f in usage["families"]]
    rows.append(["low-priority pool", usage["low_priority_used"], usage["low_priority_limit"], ""])
    print_table(["FAMILY", "USED", "LIMIT", "NOTE"], rows)


def quota_what_if_options(parser: argparse.ArgumentParser) -> None:
    size_option(parser)
    parser.add_argument("--count", type=int, default=1, help="How many nodes (1).")
    parser.add_argument("--tier", default="dedicated", help="dedicated (default) or low_priority.")


@command(
    "quota",
    "what-if",
    "Whether COUNT nodes of SIZE fit now (exit 1 when they do not).",
    quota_what_if_options,
)
def quota_what_if(args: argparse.Namespace) -> int:
    client, slug = connected(args)
    answer = client.what_if(slug, args.size, args.count, args.tier)
    show_lines(output_of(args), answer, answer["message"])
    return 0 if answer["fits"] else 1


def quota_request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cores", type=int, required=True, help="The new limit, in cores.")
    parser.add_argument("--why", required=True, help="What the cores are for, for how long.")
    parser.add_argument("--family", help="A VM family; none: the low-priority pool.")


@command("quota", "request", "Ask site staff for a higher limit.", quota_request_options)
def quota_request(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    made = client.request_quota(slug, args.cores, args.why, args.family)
    target = made["family"] or "the low-priority pool"
    line = f"Requested {made['requested_limit']} cores for {target}; site staff decide."
    show_lines(output_of(args), made, line)
