"""A test session that leaks on purpose (not collected: no `test_` prefix). It is run in
a pytest of its own, on a site of its own, by test_leftovers.py: it leaves a node
container, a local node, a host-process run and a celery worker running, then fails."""

from __future__ import annotations

import os

from django.conf import settings

from compute.drivers import JobLaunch, NodeSpec, build_driver
from tests.support.worker import Worker


def spec(node_id: int, image: str) -> NodeSpec:
    return NodeSpec(
        site=settings.HANGAR_SITE,
        workspace="leaky",
        compute_id=1,
        node_id=node_id,
        node_name=f"leaky-{node_id}",
        image=image,
        cpus=0.1,
        memory_bytes=64 * 1024**2,
        network="none",
        command=settings.HANGAR_NODE_COMMAND,
    )


def test_leaves_everything_running_then_fails(db, node_image):
    build_driver("docker", settings.HANGAR_SITE).ensure_node(spec(1, node_image))
    local = build_driver("local", settings.HANGAR_SITE)
    node = local.ensure_node(spec(2, node_image))
    local.start_job(JobLaunch(node.name, "1/a0-r0", "sleep 300", environment={}))
    Worker(os.environ["LEAKY_QUEUE"], "local", {}, beat=False).start()
    raise AssertionError("fails on purpose, with all of it still running")
