"""Idle figures: the idle sweep over 5,000 running instances with nothing due; the sweep
with much due at once (idle stops, reminders, schedules, and all of them together); and
how late an idle instance is stopped after its deadline (real worker, Docker)."""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import datetime, timedelta

import docker
from django.conf import settings
from django.db import connection, reset_queries
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.jobs import container_gone, percentile, wait
from compute.actions import computes as actions
from compute.controllers.idle import IdleReport, idle_sweep
from compute.drivers.base import container_name
from compute.models import Compute, ComputeKind, ComputeState, Node, VmSize
from config.celery import app
from tests.support.due import due_reminders, due_schedules, due_stops, plenty_of_cores
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import Team, make_team
from tests.support.worker import Worker
from workspace.access import get_access


def bench_idle_sweep(total: int = 5_000) -> None:
    team = make_team("idlebench")
    size = VmSize.objects.get(name="Standard_D2s_v3")
    now = timezone.now()
    Compute.objects.bulk_create(
        Compute(
            workspace=team.workspace,
            name=f"i-{i}",
            kind=ComputeKind.INSTANCE,
            state=ComputeState.RUNNING,
            vm_size=size,
            idle_shutdown_minutes=60,
            last_activity_at=now,
            idle_deadline=now + timedelta(minutes=60),
            idle_next_check_at=now + timedelta(minutes=30),  # first reminder, not yet due
        )
        for i in range(total)
    )
    timings, queries = [], set()
    for _ in range(30):
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            report = idle_sweep()
            timings.append((time.perf_counter() - started) * 1000)
        queries.add(len(captured))
        assert not report.stopped and not report.reminded
    label = f"idle sweep over {total} running, nothing due"
    print(
        f"{label:<44} n=30   p50={statistics.median(timings):7.2f} ms  "
        f"p95={percentile(timings, 0.95):7.2f} ms  SQL queries={sorted(queries)} "
        "(goal ≤ 100 ms, constant)"
    )
    Compute.objects.filter(workspace=team.workspace).delete()


# What is made due before each timed sweep: (stops, instances with 2 reminders, schedules).
MIX = (100, 100, 100)
DUE_LOADS = [
    ("100 stops due", (100, 0, 0)),
    ("100×2 reminders due", (0, 100, 0)),
    ("100 schedules due (50 starts, 50 stops)", (0, 0, 100)),
    ("100 stops + 200 reminders + 100 schedules due", MIX),
]


def make_due(team: Team, load: tuple[int, int, int], round_: int) -> datetime:
    """Fresh rows due at the moment returned, for one timed sweep."""
    stops, reminders, schedules = load
    now = timezone.now()
    workspace, owner = team.workspace, team.contributor
    due_stops(workspace, owner, stops, now, prefix=f"s{round_}")
    due_reminders(workspace, owner, reminders, now, prefix=f"r{round_}")
    due_schedules(workspace, owner, schedules, now, prefix=f"c{round_}")
    return now


def acted_on(report: IdleReport) -> tuple[int, int, int]:
    return len(report.stopped), len(report.reminded), len(report.fired)


def bench_due_sweep(label: str, load: tuple[int, int, int], runs: int = 20) -> None:
    """The sweep with `load` due, timed alone: the rows are made before, and removed
    after, each run. Its statements are counted as beat runs it (BEGIN and COMMIT too)."""
    team = make_team(f"due{uuid.uuid4().hex[:6]}")
    plenty_of_cores(team.workspace)
    stops, reminders, schedules = load
    timings, queries = [], set()
    for round_ in range(runs + 1):  # the first warms caches and connections
        now = make_due(team, load, round_)
        reset_queries()  # the log keeps 9,000 statements: a full one counts none
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            report = idle_sweep(now)
            elapsed = (time.perf_counter() - started) * 1000
        assert acted_on(report) == (stops, 2 * reminders, schedules), acted_on(report)
        assert not report.skipped
        Compute.objects.filter(workspace=team.workspace).delete()
        if round_:
            timings.append(elapsed)
            queries.add(len(captured))
    print(
        f"{'idle sweep with ' + label:<72} n={runs:<3} "
        f"p50={statistics.median(timings):7.2f} ms  p95={percentile(timings, 0.95):7.2f} ms  "
        f"SQL queries={sorted(queries)} (goal ≤ 100 ms, ≤ 10 queries)"
    )


def bench_shutdown_lateness(rounds: int = 7) -> None:
    client = docker.from_env()
    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.HANGAR_DRIVER = "docker"
    settings.HANGAR_SECONDS_PER_IDLE_MINUTE = 0.1  # 15 idle "minutes" = 1.5 s
    worker = Worker(
        queue, "docker", {"HANGAR_SWEEP_SECONDS": "1", "HANGAR_SECONDS_PER_IDLE_MINUTE": "0.1"}
    ).start()
    team = make_team("latebench")
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_D2s_v3")
    lateness = []
    try:
        for round_ in range(rounds):
            box = actions.create_instance(
                access, name=f"late-{round_}", vm_size=size, idle_shutdown_minutes=15
            )
            deadline = wait(lambda b=box: Compute.objects.get(pk=b.pk).idle_deadline)
            node = Node.objects.get(compute=box)
            name = container_name(settings.HANGAR_SITE, box.pk, node.pk)
            wait(lambda n=name: container_gone(client, n), step=0.01)
            lateness.append(time.time() - deadline.timestamp())
    finally:
        worker.stop()
        remove_all_nodes()  # a round that failed or timed out leaves no node running
    print(
        f"{'idle shutdown lateness: deadline → gone':<44} "
        f"p50={statistics.median(lateness):5.2f} s  p95={percentile(lateness, 0.95):5.2f} s "
        "(goal p95 ≤ 2 s)"
    )


def run() -> None:
    bench_idle_sweep()
    for label, load in DUE_LOADS:
        bench_due_sweep(label, load)
    bench_shutdown_lateness()
