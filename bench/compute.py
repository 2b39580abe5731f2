"""Managed-compute figures: cluster 0 → 4 against the Docker SDK floor, and the sweep."""

from __future__ import annotations

import statistics
import time
import uuid

import docker
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compute.actions import computes as actions
from compute.controllers.sweep import sweep
from compute.drivers import build_driver
from compute.lib import images
from compute.models import Compute, ComputeKind, ComputeState, Node, NodeState, VmSize
from config.celery import app
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from tests.support.worker import Worker
from workspace.access import get_access

NODES = 4
ROUNDS = 3


def docker_floor(client: docker.DockerClient, size: VmSize) -> float:
    """4 × create + start of the same image with the same options, straight through the SDK."""
    names = [f"hangar-bench-floor-{uuid.uuid4().hex[:6]}-{i}" for i in range(NODES)]
    started = time.perf_counter()
    for name in names:
        container = client.containers.create(
            settings.HANGAR_NODE_IMAGE,
            command=list(settings.HANGAR_NODE_COMMAND),
            name=name,
            labels={"hangar.bench": "floor"},
            nano_cpus=int(size.vcpus * settings.HANGAR_CPU_SCALE * 1e9),
            mem_limit=int(float(size.memory_gib) * settings.HANGAR_MEMORY_SCALE * 1024**3),
            init=True,
            network_mode="none",
            detach=True,
        )
        container.start()
    elapsed = time.perf_counter() - started
    for name in names:
        client.containers.get(name).remove(force=True)
    return elapsed


def idle_nodes(cluster: Compute) -> int:
    return Node.objects.filter(compute=cluster, state=NodeState.IDLE).count()


def hangar_scale_up(access, size: VmSize, round_: int) -> float:
    cluster = actions.create_cluster(
        access, name=f"bench-{round_}", vm_size=size, min_nodes=0, max_nodes=NODES
    )
    wait(lambda: Compute.objects.get(pk=cluster.pk).state == ComputeState.STEADY)
    started = time.perf_counter()
    actions.update_cluster(
        access, cluster.pk, min_nodes=NODES, max_nodes=NODES, idle_seconds_before_scaledown=120
    )
    wait(lambda: idle_nodes(cluster) == NODES)
    elapsed = time.perf_counter() - started
    actions.delete_compute(access, cluster.pk)
    wait(lambda: Compute.objects.get(pk=cluster.pk).state == ComputeState.DELETED)
    return elapsed


def wait(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out")
        time.sleep(0.005)


def bench_scale_up() -> None:
    client = docker.from_env()
    if not images.image_exists(client, settings.HANGAR_NODE_IMAGE):
        images.build_tiny(client, settings.HANGAR_NODE_IMAGE)
    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.HANGAR_DRIVER = "docker"
    worker = Worker(queue, "docker", {}).start()
    try:
        team = make_team("bench")
        access = get_access(team.admin, team.workspace.slug)
        size = VmSize.objects.get(name="Standard_DS3_v2")
        floors, hangar = [], []
        for round_ in range(ROUNDS):
            floors.append(docker_floor(client, size))
            hangar.append(hangar_scale_up(access, size, round_))
    finally:
        worker.stop()
        remove_all_nodes()  # a round that failed or timed out leaves no node running
    floor, ours = statistics.median(floors), statistics.median(hangar)
    print(
        f"{'cluster 0 → 4 nodes idle (median of 3)':<44} hangar={ours * 1000:7.0f} ms  "
        f"floor={floor * 1000:7.0f} ms  ratio={ours / floor:.2f} (goal ≤ 1.5)"
    )
    print(
        f"{'':<44} rounds hangar={[round(h * 1000) for h in hangar]} "
        f"floor={[round(f * 1000) for f in floors]}"
    )


def bench_sweep(total: int = 500, with_nodes: int = 20) -> None:
    """500 computes with nothing to do: 20 clusters each holding one real idle node."""
    settings.HANGAR_DRIVER = "docker"
    driver = build_driver("docker", settings.HANGAR_SITE)
    team = make_team("sweep")
    size = VmSize.objects.get(name="Standard_D2s_v3")
    computes = Compute.objects.bulk_create(
        Compute(
            workspace=team.workspace,
            name=f"idle-{i}",
            kind=ComputeKind.CLUSTER if i % 2 else ComputeKind.INSTANCE,
            state=ComputeState.STEADY if i % 2 else ComputeState.STOPPED,
            vm_size=size,
            min_nodes=1 if i < with_nodes * 2 and i % 2 else 0,
            max_nodes=2,
        )
        for i in range(total)
    )
    from compute.controllers.reconcile import reconcile

    timings, queries = [], set()
    try:
        for compute in computes:
            if compute.min_nodes:
                reconcile(compute.pk, driver)
        assert not sweep(driver).due, "bench setup left work for the sweep"
        for _ in range(30):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                report = sweep(driver)
                timings.append((time.perf_counter() - started) * 1000)
            queries.add(len(captured))
            assert not report.due
    finally:
        remove_all_nodes()
    timings.sort()
    print(
        f"{f'sweep over {total} computes, nothing to do':<44} n=30   "
        f"p50={statistics.median(timings):7.2f} ms  p95={timings[28]:7.2f} ms  "
        f"SQL queries per sweep={sorted(queries)} (goal ≤ 50 ms, constant)"
    )


def run() -> None:
    bench_scale_up()
    bench_sweep()
