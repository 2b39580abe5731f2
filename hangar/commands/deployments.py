"""`hangar deployment ...`: an endpoint's deployments, a model version served by replicas."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hangar.commands.common import (
    connected,
    endpoint_argument,
    make_sure,
    model_option,
    output_of,
    read_script,
    shows,
    size_option,
    yes_option,
)
from hangar.commands.endpoints import replicas_text
from hangar.commands.registry import command, group
from hangar.output import Fields, Output, show_fields, show_lines

if TYPE_CHECKING:
    from hangar.client import Deployment

group("deployment", "An endpoint's deployments: a model version served by replicas.")


def deployment_fields(deployment: Deployment) -> Fields:
    return [
        ("id", deployment["id"]),
        ("name", deployment["name"]),
        ("model", deployment["model"]),
        ("environment", deployment["environment"] or "the site's node image"),
        ("target", deployment["target"]),
        ("size", deployment["vm_size"]),
        ("replicas", replicas_text(deployment)),
        ("in flight per replica", deployment["target_in_flight"]),
        ("request timeout", f"{deployment['request_timeout_ms']} ms"),
        ("traffic", f"{deployment['traffic']}%"),
    ]


def show_deployment(deployment: Deployment, output: Output) -> None:
    show_fields(deployment, output, deployment_fields)


def deployment_create_options(parser: argparse.ArgumentParser) -> None:
    endpoint_argument(parser)
    parser.add_argument("name", metavar="NAME", help="The deployment's name (blue, green, …).")
    model_option(parser)
    parser.add_argument(
        "--script",
        required=True,
        type=Path,
        help="The scoring script: init() once, run(request_json) per request.",
    )
    size_option(parser)
    parser.add_argument(
        "--target",
        default="managed_cluster",
        help="managed_cluster (default), container_instance or local_web_service.",
    )
    parser.add_argument(
        "--environment",
        default="",
        help="What the replicas run: an environment's name, name:version or id (default: "
        "the site's node image).",
    )
    parser.add_argument(
        "--min", dest="min_replicas", type=int, default=1, help="Replicas kept up (1)."
    )
    parser.add_argument(
        "--max", dest="max_replicas", type=int, default=1, help="Replicas at most (1)."
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=4,
        help="Requests in flight per replica the autoscaler aims at (4).",
    )
    parser.add_argument(
        "--timeout-ms", type=int, default=5000, help="A request's timeout, in ms (5000)."
    )


@command(
    "deployment",
    "create",
    "Deploy a model behind an endpoint: its replicas start (the first deployment takes all "
    "the traffic).",
    deployment_create_options,
)
def deployment_create(args: argparse.Namespace) -> None:
    script = read_script(args.script)
    client, slug = connected(args)
    made = client.deploy(
        slug,
        args.endpoint,
        args.name,
        args.model,
        script,
        args.size,
        target=args.target,
        environment=args.environment,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_in_flight=args.in_flight,
        request_timeout_ms=args.timeout_ms,
    )
    show_deployment(made, output_of(args))


def deployment_argument(parser: argparse.ArgumentParser) -> None:
    endpoint_argument(parser)
    parser.add_argument("deployment", metavar="DEPLOYMENT", help="The deployment's name or id.")


shows(
    "deployment",
    "show",
    "One of an endpoint's deployments.",
    deployment_argument,
    lambda client, slug, args: client.deployment(slug, args.endpoint, args.deployment)[1],
    show_deployment,
)


def deployment_delete_options(parser: argparse.ArgumentParser) -> None:
    deployment_argument(parser)
    yes_option(parser)


@command(
    "deployment",
    "delete",
    "Remove a deployment (not while it takes traffic beside others): its replicas stop.",
    deployment_delete_options,
)
def deployment_delete(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    endpoint, found = client.deployment(slug, args.endpoint, args.deployment)
    question = (
        f"Remove deployment {found['name']!r} of endpoint {endpoint['name']!r} of {slug}? "
        "Its replicas stop."
    )
    make_sure(args, question, "removed", "remove")
    client.undeploy(slug, endpoint["id"], found["id"])
    line = f"Removed deployment {found['name']} of {endpoint['name']}; its replicas stop."
    show_lines(output_of(args), found, line)
