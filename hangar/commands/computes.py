"""`hangar compute ...`: compute instances and clusters."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hangar.commands.common import (
    connected,
    in_time,
    lists,
    make_sure,
    output_of,
    shows,
    size_option,
    yes_option,
)
from hangar.commands.registry import command, group
from hangar.output import Failure, Fields, Output, show_fields, when

if TYPE_CHECKING:
    from hangar.client import Client, Compute

group("compute", "Compute instances and clusters.")


def nodes_of(compute: Compute) -> str:
    if compute["kind"] == "cluster":
        return f"{compute['min_nodes']}–{compute['max_nodes']}"
    return "1" if compute["kind"] == "instance" else ""


def compute_row(c: Compute) -> list[object]:
    return [c["id"], c["name"], c["kind"], c["state"], c["vm_size"], c["tier"], nodes_of(c)]


def compute_fields(compute: Compute) -> Fields:
    pairs: Fields = [
        ("id", compute["id"]),
        ("name", compute["name"]),
        ("kind", compute["kind"]),
        ("state", compute["state"]),
        ("size", compute["vm_size"]),
        ("tier", compute["tier"]),
    ]
    if compute["kind"] != "attached":
        pairs.append(("environment", compute.get("environment") or "the site's node image"))
    if compute["kind"] == "cluster":
        pairs += [
            ("nodes", nodes_of(compute)),
            ("scale down after", f"{compute['idle_seconds_before_scaledown']} s idle"),
            ("autoscaler", compute["autoscale_note"]),
        ]
    elif compute["kind"] == "instance":
        minutes = compute["idle_shutdown_minutes"]
        pairs.append(("idle shutdown", f"after {minutes} min" if minutes else "never"))
    pairs += [
        ("last error", compute["last_error"]),
        ("created", when(compute["created_at"])),
        ("page", compute["url"]),
    ]
    return pairs


def show_compute(compute: Compute, output: Output) -> None:
    show_fields(compute, output, compute_fields)


def changed(args: argparse.Namespace, client: Client, slug: str, compute: Compute) -> None:
    """Show the compute a command changed; with --wait, once it is no longer changing."""
    if args.wait:
        compute = in_time(lambda: client.wait_compute(slug, compute["id"]))
    show_compute(compute, output_of(args))


def compute_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("compute", metavar="COMPUTE", help="The compute's name or id.")


def wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="Wait until the compute is no longer changing."
    )


def compute_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", help="instance, cluster or attached.")


lists(
    "compute",
    "list",
    "The workspace's computes.",
    compute_list_options,
    lambda client, slug, args: client.computes(slug, kind=args.kind),
    ["ID", "NAME", "KIND", "STATE", "SIZE", "TIER", "NODES"],
    compute_row,
    "No computes in {slug}.",
)
shows(
    "compute",
    "show",
    "One compute.",
    compute_argument,
    lambda client, slug, args: client.compute(slug, args.compute),
    show_compute,
)


def compute_create_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="The compute's name.")
    size_option(parser)
    parser.add_argument("--instance", action="store_true", help="A single-node instance.")
    parser.add_argument("--cluster", action="store_true", help="A cluster of nodes.")
    parser.add_argument(
        "--min", dest="min_nodes", type=int, default=0, help="Cluster: nodes kept up (0)."
    )
    parser.add_argument(
        "--max", dest="max_nodes", type=int, default=1, help="Cluster: nodes at most (1)."
    )
    parser.add_argument(
        "--tier", default="dedicated", help="Cluster: dedicated (default) or low_priority."
    )
    parser.add_argument(
        "--idle-seconds",
        type=int,
        default=120,
        help="Cluster: idle seconds before scale-down (120).",
    )
    parser.add_argument(
        "--environment",
        help="What its nodes run: an environment's name, name:version or id (default: the "
        "workspace's default; '' for the site's node image).",
    )
    parser.add_argument(
        "--idle-shutdown-minutes",
        dest="idle_shutdown",
        type=int,
        help="Instance: stop after this many idle minutes (0: never; default: the workspace's).",
    )
    wait_option(parser)


@command(
    "compute",
    "create",
    "Create a compute instance (--instance) or cluster (--cluster).",
    compute_create_options,
)
def compute_create(args: argparse.Namespace) -> None:
    if args.instance == args.cluster:
        raise Failure("say what to create: --instance or --cluster", 2)
    client, slug = connected(args)
    if args.cluster:
        made = client.create_cluster(
            slug,
            args.name,
            args.size,
            min_nodes=args.min_nodes,
            max_nodes=args.max_nodes,
            tier=args.tier,
            idle_seconds_before_scaledown=args.idle_seconds,
            environment=args.environment,
        )
    else:
        made = client.create_instance(
            slug,
            args.name,
            args.size,
            idle_shutdown_minutes=args.idle_shutdown,
            environment=args.environment,
        )
    changed(args, client, slug, made)


def compute_verb(verb: str, help: str) -> None:
    def run(args: argparse.Namespace) -> None:
        client, slug = connected(args)
        changed(args, client, slug, getattr(client, verb)(slug, args.compute))

    def verb_options(parser: argparse.ArgumentParser) -> None:
        compute_argument(parser)
        wait_option(parser)

    command("compute", verb, help, verb_options)(run)


compute_verb("start", "Start a stopped instance.")
compute_verb("stop", "Stop an instance (its node goes; it costs nothing while stopped).")
compute_verb("restart", "Restart an instance.")


def compute_resize_options(parser: argparse.ArgumentParser) -> None:
    compute_argument(parser)
    parser.add_argument("--min", dest="min_nodes", type=int, help="Nodes kept up.")
    parser.add_argument("--max", dest="max_nodes", type=int, help="Nodes at most.")
    parser.add_argument("--idle-seconds", type=int, help="Idle seconds before scale-down.")
    wait_option(parser)


@command(
    "compute",
    "resize",
    "Change a cluster's node bounds or scale-down delay (what is not given stays).",
    compute_resize_options,
)
def compute_resize(args: argparse.Namespace) -> None:
    if args.min_nodes is None and args.max_nodes is None and args.idle_seconds is None:
        raise Failure("give --min, --max or --idle-seconds", 2)
    client, slug = connected(args)
    resized = client.resize(
        slug,
        args.compute,
        min_nodes=args.min_nodes,
        max_nodes=args.max_nodes,
        idle_seconds_before_scaledown=args.idle_seconds,
    )
    changed(args, client, slug, resized)


def compute_delete_options(parser: argparse.ArgumentParser) -> None:
    compute_argument(parser)
    yes_option(parser)
    wait_option(parser)


@command(
    "compute",
    "delete",
    "Delete a compute (admins only): its nodes go, its jobs are canceled.",
    compute_delete_options,
)
def compute_delete(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    found = client.compute(slug, args.compute)
    question = f"Delete {found['kind']} {found['name']!r} of {slug}? Its nodes go."
    make_sure(args, question, "deleted", "delete")
    changed(args, client, slug, client.delete(slug, found["id"]))
