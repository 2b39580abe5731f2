"""`hangar endpoint ...`: scoring endpoints, their keys and traffic split (their
deployments: hangar/commands/deployments.py); `hangar score`: a request sent to one."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hangar.commands.common import (
    connected,
    endpoint_argument,
    lists,
    make_sure,
    output_of,
    shows,
    yes_option,
)
from hangar.commands.registry import command, group, no_options
from hangar.output import (
    Failure,
    Output,
    note,
    print_fields,
    print_json,
    print_table,
    when,
)

if TYPE_CHECKING:
    from hangar.client import Deployment, Endpoint, EndpointKeys

group("endpoint", "Scoring endpoints: their keys, deployments and traffic split.")


def replicas_text(deployment: Deployment) -> str:
    low, high = deployment["min_replicas"], deployment["max_replicas"]
    return str(low) if low == high else f"{low}–{high}"


def show_deployments(deployments: list[Deployment]) -> None:
    columns = ["DEPLOYMENT", "MODEL", "TARGET", "SIZE", "REPLICAS", "TRAFFIC"]
    rows = [
        [d["name"], d["model"], d["target"], d["vm_size"], replicas_text(d), f"{d['traffic']}%"]
        for d in deployments
    ]
    print_table(columns, rows)


def traffic_text(endpoint: Endpoint) -> str:
    return ", ".join(
        f"{d['name']} {d['traffic']}%" for d in endpoint["deployments"] if d["traffic"]
    )


def endpoint_row(e: Endpoint) -> list[object]:
    return [e["id"], e["name"], len(e["deployments"]), traffic_text(e), e["scoring_url"]]


def show_endpoint(endpoint: Endpoint, output: Output) -> None:
    if output is Output.json:
        print_json(endpoint)
        return
    print_fields(
        [
            ("id", endpoint["id"]),
            ("name", endpoint["name"]),
            ("description", endpoint["description"]),
            ("scoring URL", f"POST {endpoint['scoring_url']}"),
            ("traffic", traffic_text(endpoint) or "none: no deployment yet"),
            ("keys changed", when(endpoint["keys_changed_at"])),
            ("created", when(endpoint["created_at"])),
            ("page", endpoint["url"]),
        ]
    )
    if endpoint["deployments"]:
        print()
        show_deployments(endpoint["deployments"])


def show_keys(name: str, keys: EndpointKeys, output: Output) -> None:
    if output is Output.json:
        print_json(keys)
        return
    print_fields([("primary", keys["primary"]), ("secondary", keys["secondary"])])
    note(f"Send one as `Authorization: Bearer KEY` to endpoint {name}; both work.")


lists(
    "endpoint",
    "list",
    "The workspace's endpoints, their deployments' traffic and URL.",
    no_options,
    lambda client, slug, args: client.endpoints(slug),
    ["ID", "NAME", "DEPLOYMENTS", "TRAFFIC", "SCORING URL"],
    endpoint_row,
    "No endpoints in {slug}.",
)
shows(
    "endpoint",
    "show",
    "One endpoint: where to score, and its deployments.",
    endpoint_argument,
    lambda client, slug, args: client.endpoint(slug, args.endpoint),
    show_endpoint,
)


def endpoint_create_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="The endpoint's name (part of its URL).")
    parser.add_argument("--description", default="", help="What it serves.")


shows(
    "endpoint",
    "create",
    "Make an endpoint (two keys, no deployment yet).",
    endpoint_create_options,
    lambda client, slug, args: client.create_endpoint(slug, args.name, args.description),
    show_endpoint,
)


@command(
    "endpoint",
    "keys",
    "The endpoint's primary and secondary keys (contributors).",
    endpoint_argument,
)
def endpoint_keys(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_keys(args.endpoint, client.endpoint_keys(slug, args.endpoint), output_of(args))


def regenerate_options(parser: argparse.ArgumentParser) -> None:
    endpoint_argument(parser)
    parser.add_argument(
        "slot", choices=["primary", "secondary"], help="Which key: primary or secondary."
    )
    yes_option(parser)


@command(
    "endpoint",
    "regenerate-key",
    "A new key in one slot: the old one stops working, the other slot's keeps working.",
    regenerate_options,
)
def endpoint_regenerate_key(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    found = client.endpoint(slug, args.endpoint)
    question = (
        f"Regenerate the {args.slot} key of endpoint {found['name']!r} of {slug}? "
        "Clients sending it are refused from then on."
    )
    make_sure(args, question, "regenerated", "regenerate")
    keys = client.regenerate_key(slug, found["id"], args.slot)
    show_keys(found["name"], keys, output_of(args))


def shares(pairs: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for pair in pairs:
        name, sep, percent = pair.partition("=")
        if not sep or not name.strip() or not percent.strip().isdigit():
            raise Failure(
                f"traffic takes DEPLOYMENT=PERCENT (e.g. blue=80 green=20), not {pair!r}", 2
            )
        found[name.strip()] = int(percent)
    return found


def traffic_options(parser: argparse.ArgumentParser) -> None:
    endpoint_argument(parser)
    parser.add_argument(
        "shares",
        nargs="+",
        metavar="DEPLOYMENT=PERCENT",
        help="Every deployment's share: whole percents adding up to 100.",
    )


@command(
    "endpoint",
    "traffic",
    "Split the endpoint's requests: hangar endpoint traffic ENDPOINT blue=80 green=20",
    traffic_options,
)
def endpoint_traffic(args: argparse.Namespace) -> None:
    split = shares(args.shares)
    client, slug = connected(args)
    show_endpoint(client.set_traffic(slug, args.endpoint, split), output_of(args))


def score_options(parser: argparse.ArgumentParser) -> None:
    endpoint_argument(parser)
    body = parser.add_mutually_exclusive_group(required=True)
    body.add_argument("--json", "-j", dest="body", metavar="JSON", help="The request, as JSON.")
    body.add_argument(
        "--file", "-f", type=Path, help="A file holding the request's JSON (`-`: stdin)."
    )
    parser.add_argument(
        "--deployment", "-d", help="Send it to this deployment, not by the traffic split."
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="Give up after this many seconds (120)."
    )


def request_of(args: argparse.Namespace) -> Any:
    import json

    if args.file is None:
        text, where = args.body, "--json"
    elif str(args.file) == "-":
        text, where = sys.stdin.read(), "the request on stdin"
    else:
        try:
            text, where = args.file.read_text(encoding="utf-8"), str(args.file)
        except FileNotFoundError:
            raise Failure(f"--file {args.file}: no such file", 2)
        except (OSError, UnicodeError) as error:
            raise Failure(f"--file {args.file}: cannot read it as UTF-8 text ({error})", 2)
    try:
        return json.loads(text)
    except ValueError as error:
        raise Failure(f"{where} is not JSON: {error}", 2)


@command(
    None,
    "score",
    "Send a request to an endpoint through the scoring gateway, with its key; print the "
    "answer.\n\nThe key is the endpoint's primary key as the API gives it to contributors, "
    "or HANGAR_ENDPOINT_KEY; the gateway is where the API says, or HANGAR_SCORE_URL.",
    score_options,
)
def score(args: argparse.Namespace) -> None:
    request = request_of(args)
    client, slug = connected(args)
    answer = client.score(
        slug,
        args.endpoint,
        request,
        deployment=args.deployment,
        key=os.environ.get("HANGAR_ENDPOINT_KEY") or None,
        score_url=os.environ.get("HANGAR_SCORE_URL") or None,
        timeout=args.timeout,
    )
    print_json(answer)
