"""Two workers placing at once never overfill a host (PostgreSQL): placement takes the
ready hosts' row lock, counts what their nodes hold and writes its choice before the
lock goes. Here several threads, each with its own connection and its own transaction
per node as a worker's reconcile has, place the preparing nodes of several clusters on
hosts of known capacity at the same moment. Rows only: place() never calls an engine."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest
from django.db import connection, transaction

from compute.controllers import hosts
from compute.models import Compute, Node, NodeHost, NodeState, VmSize
from compute.models.hosts import GIB
from tests.support.factories import ComputeFactory, WorkspaceFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

THREADS = 4
# Scaled by the tests' HANGAR_CPU_SCALE (0.05): 0.1, 0.2 and 0.4 cores a node.
SIZES = ("Standard_D2s_v3", "Standard_DS3_v2", "Standard_D8s_v3")
HOST_CORES = (1.0, 0.6, 0.5)  # 2.1 cores in all, for 8.4 asked


@pytest.fixture
def crowd():
    """Three ready hosts and 12 clusters of 6 preparing nodes each, no host yet: twice
    as many cores asked as there are (one binpack workspace, one spread)."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks (SELECT … FOR UPDATE) are PostgreSQL's")
    rows = [
        NodeHost.objects.create(
            name=f"race-{index}", docker_url="unix:///nowhere.sock", cpus_override=cores,
            memory_gib_override=64,
        )
        for index, cores in enumerate(HOST_CORES)
    ]  # fmt: skip
    binpack = WorkspaceFactory()
    spread = WorkspaceFactory(node_placement="spread")
    clusters = [
        ComputeFactory(
            workspace=(binpack, spread)[index % 2],
            vm_size=VmSize.objects.get(name=SIZES[index % len(SIZES)]),
            min_nodes=6,
            max_nodes=6,
        )
        for index in range(12)
    ]
    for cluster in clusters:
        Node.objects.bulk_create(
            Node(compute=cluster, index=index, state=NodeState.PREPARING) for index in range(1, 7)
        )
    return rows, clusters


def place_all(clusters: list[Compute], start: threading.Barrier, results: dict, errors: list):
    """One worker: each node placed in a transaction of its own, as NodeSteps does."""
    try:
        nodes = [
            (compute, node)
            for compute in Compute.objects.filter(pk__in=[c.pk for c in clusters])
            .select_related("vm_size", "workspace")
            .order_by("pk")
            for node in Node.objects.filter(compute=compute).order_by("index")
        ]
        start.wait(timeout=30)
        for compute, node in nodes:
            with transaction.atomic():
                placed = hosts.place(compute, node)
            results[node.pk] = placed
    except BaseException as error:
        errors.append(error)
    finally:
        connection.close()  # this thread's own connection


def race(clusters: list[Compute]) -> dict:
    results: dict = {}
    errors: list = []
    start = threading.Barrier(THREADS)
    threads = [
        threading.Thread(target=place_all, args=(clusters[index::THREADS], start, results, errors))
        for index in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "placement hung (a deadlock?)"
    assert not errors, errors
    return results


def test_workers_placing_at_once_never_overfill_a_host(crowd):
    rows, clusters = crowd
    results = race(clusters)

    held = hosts.held_by_host([row.pk for row in rows])
    free = {}
    for row in rows:
        cores, memory, _ = held.get(row.pk, (0.0, 0, 0))
        assert cores <= row.capacity_cpus + 1e-9, (
            f"{row.name} holds {cores:g} of {row.capacity_cpus:g} cores"
        )
        assert memory <= row.capacity_memory_bytes
        free[row.pk] = row.capacity_cpus - cores

    nodes = Node.objects.filter(compute__in=clusters).select_related("compute__vm_size")
    assert len(results) == nodes.count() == 72
    waiting = 0
    by_host: dict[int, float] = defaultdict(float)
    for node in nodes:
        placed = results[node.pk]
        need = hosts.need_of(node.compute)
        if placed.host is not None:
            # Told where, and the row says the same.
            assert node.host_id == placed.host.pk, placed.why
            assert f"{node.name} on {placed.host.name}:" in placed.why
            by_host[placed.host.pk] += need.cpus
        else:
            # Told why it waits; and it waits only because it fits nowhere, even now.
            waiting += 1
            assert node.host_id is None
            assert f"{node.name} {hosts.WAITS} for {need.cpus:g} cores" in placed.why
            assert all(room + 1e-9 < need.cpus for room in free.values()), placed.why
            assert need.memory_bytes < 64 * GIB
    for row in rows:  # what each thread was told adds up to what the rows hold
        assert by_host[row.pk] == pytest.approx(held.get(row.pk, (0.0, 0, 0))[0])
    assert 0 < waiting < 72
    # Every host filled to the last tenth of a core (the smallest node is 0.1 core).
    assert all(room < 0.1 - 1e-9 for room in free.values()), free
