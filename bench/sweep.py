"""Sweep figures at team scale (issue 16): the whole `hangar.sweep` task body over 10,000
computes of which 5,000 are due, timed in-process on the no-op driver, with the messages it
puts on a queue no worker consumes; and one retention batch over 500,000 events.

The no-op driver keeps Docker's listing out of the figure (one call whatever the count):
what is measured is Hangar's own work, the database and the broker round trips.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
import uuid
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

from bench.jobs import percentile
from compute.drivers import get_driver
from compute.drivers.base import LABEL_COMPUTE, LABEL_NODE, LABEL_SITE, container_name
from compute.models import (
    Compute,
    ComputeKind,
    ComputeState,
    Event,
    EventVerb,
    Node,
    NodeState,
    VmSize,
)
from compute.tasks import reconcile_sweep
from config.celery import app
from tests.support.teams import make_team

COMPUTES = 10_000
DUE = 5_000
RUNS = 20
EVENTS = 500_000


def make_computes(team, size: VmSize) -> None:
    """DUE clusters short of their min_nodes (due: "node count differs"), and running
    instances, each with an idle node whose container the driver lists (not due)."""
    Compute.objects.bulk_create(
        Compute(
            workspace=team.workspace,
            name=f"due-{i}",
            kind=ComputeKind.CLUSTER,
            state=ComputeState.STEADY,
            vm_size=size,
            min_nodes=1,
            max_nodes=2,
        )
        for i in range(DUE)
    )
    settled = Compute.objects.bulk_create(
        Compute(
            workspace=team.workspace,
            name=f"ok-{i}",
            kind=ComputeKind.INSTANCE,
            state=ComputeState.RUNNING,
            vm_size=size,
        )
        for i in range(COMPUTES - DUE)
    )
    nodes = Node.objects.bulk_create(
        Node(compute=c, index=0, state=NodeState.IDLE, last_busy_at=timezone.now()) for c in settled
    )
    driver = get_driver()
    for node in nodes:
        name = container_name(settings.HANGAR_SITE, node.compute_id, node.pk)
        # The no-op driver's bookkeeping, filled as ensure_node would: a container each.
        driver.nodes[name] = {
            LABEL_SITE: settings.HANGAR_SITE,
            LABEL_COMPUTE: str(node.compute_id),
            LABEL_NODE: str(node.pk),
        }
    for node in nodes:
        node.container_ref = container_name(settings.HANGAR_SITE, node.compute_id, node.pk)
    Node.objects.bulk_update(nodes, ["container_ref"], batch_size=1000)


def bench_sweep_task() -> None:
    settings.HANGAR_DRIVER = "noop"
    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"  # no worker consumes it
    app.conf.task_default_queue = queue
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    broker = redis.Redis.from_url(settings.REDIS_URL)
    team = make_team("sweepbench")
    make_computes(team, VmSize.objects.get(name="Standard_D2s_v3"))
    timings, messages, dues = [], [], []
    try:
        reconcile_sweep()  # warm connections (and run what runs once a minute)
        broker.delete(queue)
        for _ in range(RUNS):
            started = time.perf_counter()
            result = reconcile_sweep()
            timings.append((time.perf_counter() - started) * 1000)
            messages.append(broker.llen(queue))
            dues.append(result["due"] if isinstance(result["due"], int) else len(result["due"]))
            broker.delete(queue)
    finally:
        broker.delete(queue)
        get_driver().nodes.clear()
    assert set(dues) == {DUE}, dues
    label = f"sweep task, {COMPUTES:,} computes, {DUE:,} due"
    print(
        f"{label:<44} n={RUNS:<4} p50={statistics.median(timings):7.1f} ms  "
        f"p95={percentile(timings, 0.95):7.1f} ms  broker messages/run={sorted(set(messages))} "
        "(goal ≤ 200 ms)"
    )


def bench_retention() -> None:
    """One bounded batch of the retention step over EVENTS events, most of them old."""
    if importlib.util.find_spec("compute.controllers.retention") is None:
        print(f"{'retention batch':<44} (no retention in this version)")
        return
    from compute.controllers import retention

    team = make_team("retentionbench")
    size = VmSize.objects.get(name="Standard_D2s_v3")
    computes = Compute.objects.bulk_create(
        Compute(workspace=team.workspace, name=f"r-{i}", vm_size=size, state=ComputeState.STOPPED)
        for i in range(1_000)
    )
    now = timezone.now()
    old = now - timedelta(days=settings.HANGAR_EVENT_RETENTION_DAYS + 30)
    step = timedelta(days=settings.HANGAR_EVENT_RETENTION_DAYS + 60) / EVENTS
    for start in range(0, EVENTS, 50_000):
        Event.objects.bulk_create(
            (
                Event(
                    compute=computes[i % len(computes)],
                    verb=EventVerb.NODE_ADDED,
                    message="bench",
                    created_at=old - timedelta(days=30) + i * step,
                )
                for i in range(start, start + 50_000)
            ),
            batch_size=5_000,
        )
    timings, deleted = [], []
    for _ in range(10):
        started = time.perf_counter()
        report = retention.prune(now)
        timings.append((time.perf_counter() - started) * 1000)
        deleted.append(report.deleted.get("events", 0))
    print(
        f"{f'retention batch over {EVENTS:,} events':<44} n=10   "
        f"p50={statistics.median(timings):7.1f} ms  p95={percentile(timings, 0.95):7.1f} ms  "
        f"events deleted/batch={sorted(set(deleted))}"
    )
    Event.objects.filter(compute__workspace=team.workspace).delete()


def run() -> None:
    bench_sweep_task()
    bench_retention()
