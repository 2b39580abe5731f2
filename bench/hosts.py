"""Node-host figures (issue 20): a cluster 0 → 8 nodes across two extra Docker engines
against the floor of starting the same containers straight through the SDK on them, and
the cost of placing a node as the hosts grow (2, 20, 200 simulated hosts: rows only)."""

from __future__ import annotations

import statistics
import time
import uuid

from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from docker.types import LogConfig, Mount

from compute.actions import computes as actions
from compute.controllers import hosts
from compute.drivers.base import LABEL_SITE
from compute.drivers.docker import MIN_CPUS, MIN_MEMORY
from compute.drivers.node_scripts import NODE_USER, NODE_WORK
from compute.models import (
    Compute,
    ComputeState,
    FamilyQuota,
    Job,
    Node,
    NodeHost,
    NodeState,
    VmSize,
)
from config.celery import app
from tests.support.engines import Engine, copy_image, start_engines
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from tests.support.worker import Worker
from workspace.access import get_access

NODES = 8
ROUNDS = 3
TMP = "/tmp"  # noqa: S108 (the node's own /tmp, a tmpfs)
SIZE = "Standard_DS3_v2"  # 4 vCPUs: 0.2 cores a node at the bench's HANGAR_CPU_SCALE


def wait(predicate, timeout: float = 120, step: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out")
        time.sleep(step)


def floor_start(engines: list[Engine], size: VmSize) -> float:
    """The same 8 containers (half on each engine, one after the other, as a worker
    starts a cluster's nodes) created and started straight through the SDK, with the
    options compute/drivers/docker.py _create gives a node: no Hangar, database or worker."""
    clients = [engine.client() for engine in engines]
    cpus = size.vcpus * settings.HANGAR_CPU_SCALE
    memory = max(int(float(size.memory_gib) * settings.HANGAR_MEMORY_SCALE * 1024**3), MIN_MEMORY)
    labels = {LABEL_SITE: settings.HANGAR_SITE, "hangar.bench": "floor"}
    made = []
    try:
        began = time.perf_counter()
        for index in range(NODES):
            client = clients[index % len(clients)]
            container = client.containers.create(
                settings.HANGAR_NODE_IMAGE,
                command=list(settings.HANGAR_NODE_COMMAND),
                name=f"hangar-bench-floor-{uuid.uuid4().hex[:6]}-{index}",
                labels=labels,
                nano_cpus=int(max(cpus, MIN_CPUS) * 1e9),
                mem_limit=memory,
                memswap_limit=memory,
                init=True,
                log_config=LogConfig(
                    type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "2"}
                ),
                network_mode="none",
                user=NODE_USER,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=settings.HANGAR_NODE_PIDS_LIMIT,
                read_only=True,
                tmpfs={TMP: f"rw,nosuid,nodev,exec,size={settings.HANGAR_NODE_TMP_MB}m,mode=1777"},
                mounts=[Mount(NODE_WORK, None, type="volume", labels=labels)],
                detach=True,
            )
            made.append(container)
            container.start()
            container.reload()  # as ensure_node reads the started container's state
        return time.perf_counter() - began
    finally:
        for container in made:
            container.remove(force=True, v=True)
        for client in clients:
            client.close()


def site_containers(engines: list[Engine]) -> list[int]:
    return [len(engine.site_containers()) for engine in engines]


def hangar_start(access, size: VmSize, engines: list[Engine], round_: int) -> tuple[float, dict]:
    """create_cluster(min_nodes=8) → 8 nodes idle; then deleted, its containers gone."""
    began = time.perf_counter()
    cluster = actions.create_cluster(
        access,
        name=f"spread-{round_}",
        vm_size=size,
        min_nodes=NODES,
        max_nodes=NODES,
        idle_seconds_before_scaledown=600,
    )
    idle = Node.objects.filter(compute=cluster, state=NodeState.IDLE, ended_at__isnull=True)
    wait(lambda: idle.count() == NODES)
    elapsed = time.perf_counter() - began
    where: dict[str, int] = {}
    for name in idle.values_list("host__name", flat=True):
        where[name] = where.get(name, 0) + 1
    actions.delete_compute(access, cluster.pk)
    wait(lambda: Compute.objects.get(pk=cluster.pk).state == ComputeState.DELETED)
    wait(lambda: site_containers(engines) == [0] * len(engines), timeout=60)
    return elapsed, where


def bench_spread() -> None:
    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.HANGAR_DRIVER = "docker"
    size = VmSize.objects.get(name=SIZE)
    node_cores = size.vcpus * settings.HANGAR_CPU_SCALE
    engines: list[Engine] = []
    worker = None
    try:
        engines = start_engines(2)
        for engine in engines:  # copying is not what is timed
            copy_image(settings.HANGAR_NODE_IMAGE, engine)
        # Room for half the cluster on each: binpack fills host-a, then host-b.
        for engine in engines:
            NodeHost.objects.create(
                name=engine.name,
                docker_url=engine.url,
                cpus_override=NODES // 2 * node_cores,
                memory_gib_override=8,
            )
        team = make_team("hostbench")
        access = get_access(team.admin, team.workspace.slug)
        FamilyQuota.objects.create(
            workspace=team.workspace, family=size.family, limit=1000, approved=1000
        )
        worker = Worker(queue, "docker", {}).start()
        floors, ours, spreads = [], [], []
        hangar_start(access, size, engines, -1)  # warm: the worker's first driver, caches
        for round_ in range(ROUNDS):
            floors.append(floor_start(engines, size))
            elapsed, where = hangar_start(access, size, engines, round_)
            ours.append(elapsed)
            spreads.append(where)
    finally:
        if worker is not None:
            worker.stop()
        remove_all_nodes()
        for engine in engines:
            engine.wipe()
        Job.objects.all().delete()
        Compute.objects.all().delete()
        NodeHost.objects.all().delete()
    floor, hangar = statistics.median(floors), statistics.median(ours)
    print(
        f"{f'cluster 0 → {NODES} nodes idle on 2 hosts (p50 of {ROUNDS})':<44} "
        f"hangar={hangar * 1000:7.0f} ms  floor={floor * 1000:7.0f} ms  "
        f"ratio={hangar / floor:.2f} (goal ≤ 1.5)"
    )
    print(
        f"{'':<44} rounds hangar={[round(t * 1000) for t in ours]} "
        f"floor={[round(t * 1000) for t in floors]}; nodes per host {spreads[-1]}"
    )


def bench_placement(counts: tuple[int, ...] = (2, 20, 200), nodes: int = 200) -> None:
    """place() for `nodes` preparing nodes, one transaction each, with 2, 20, 200 ready
    hosts whose capacity spreads the nodes over all of them (the count of what each
    holds is one row per host): time and queries per node."""
    team = make_team("placebench")
    size = VmSize.objects.get(name="Standard_D2s_v3")
    node_cores = size.vcpus * settings.HANGAR_CPU_SCALE
    cluster = Compute.objects.create(
        workspace=team.workspace,
        name="placed",
        kind="cluster",
        state=ComputeState.STEADY,
        vm_size=size,
        min_nodes=0,
        max_nodes=nodes,
    )
    cluster = Compute.objects.select_related("vm_size", "workspace").get(pk=cluster.pk)
    try:
        for count in counts:
            Node.objects.filter(compute=cluster).delete()
            NodeHost.objects.all().delete()
            per_host = -(-nodes // count)  # the nodes fill every host
            NodeHost.objects.bulk_create(
                NodeHost(
                    name=f"sim-{count}-{index}",
                    docker_url="unix:///nowhere.sock",
                    cpus_override=per_host * node_cores,
                    memory_gib_override=64,
                )
                for index in range(count)
            )
            rows = Node.objects.bulk_create(
                Node(compute=cluster, index=index, state=NodeState.PREPARING)
                for index in range(1, nodes + 1)
            )
            timings, queries, placed = [], set(), 0
            for node in rows:
                with CaptureQueriesContext(connection) as captured:
                    began = time.perf_counter()
                    with transaction.atomic():
                        outcome = hosts.place(cluster, node)
                    timings.append(time.perf_counter() - began)
                queries.add(len(captured))
                placed += outcome.host is not None
            used = Node.objects.filter(compute=cluster).values("host").distinct().count()
            p50 = statistics.median(timings) * 1e6
            p95 = sorted(timings)[int(len(timings) * 0.95) - 1] * 1e6
            label = f"placement: {nodes} nodes on {count} hosts"
            print(
                f"{label:<44} p50={p50:6.0f} µs  p95={p95:6.0f} µs per node  "
                f"queries={'/'.join(map(str, sorted(queries)))}  "
                f"({placed} placed, on {used} hosts)"
            )
    finally:
        Node.objects.filter(compute=cluster).delete()
        cluster.delete()
        NodeHost.objects.all().delete()


def run() -> None:
    bench_placement()
    bench_spread()
