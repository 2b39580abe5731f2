"""The periodic sweep: find every compute whose world drifted, whose transition stalled,
whose jobs need placing or collecting, or whose idle nodes reached their deadline.

It reads all live computes, nodes, job counts and due health checks in four queries and lists the
containers in one driver call, then compares in memory: a constant number of queries
however many computes there are. It returns the computes that need a reconcile.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from compute.controllers import containers
from compute.drivers import Driver, DriverUnavailable
from compute.drivers import get_driver as default_driver
from compute.models import (
    Attachment,
    Compute,
    ComputeKind,
    ComputeState,
    Job,
    Node,
    NodeState,
    Tier,
)
from compute.models.compute import desired_count
from compute.models.states import (
    JOB_UNFINISHED,
    LIVE_NODE_STATES,
    NODE_GOING,
    NODE_UP,
    NODE_WITH_CONTAINER,
    TRANSITIONAL,
)

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    due: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)
    strays_removed: list[str] = field(default_factory=list)
    preempted: list[int] = field(default_factory=list)
    driver_error: str = ""


def sweep(driver: Driver | None = None) -> SweepReport:
    driver = driver or default_driver()
    report = SweepReport()
    now = timezone.now()
    # Served by compute_live_idx, node_live_idx and job_active_idx.
    computes = list(
        Compute.objects.exclude(state=ComputeState.DELETED).values_list(
            "pk", "kind", "state", "min_nodes", "max_nodes", "idle_seconds_before_scaledown", "tier"
        )
    )
    nodes = list(
        Node.objects.filter(
            state__in=NODE_WITH_CONTAINER,
            ended_at__isnull=True,
        ).values_list("pk", "compute_id", "state", "last_busy_at", "container_ref")
    )
    jobs: Counter[tuple[int, str]] = Counter()
    for compute_id, status, count in (
        Job.objects.filter(status__in=JOB_UNFINISHED)
        .values_list("compute_id", "status")
        .annotate(n=Count("id"))
    ):
        jobs[compute_id, status] = count
    try:
        observed, strays = containers.match(
            settings.HANGAR_SITE,
            driver.list_nodes(),
            [containers.NodeRef(pk, cid, ref) for pk, cid, _, _, ref in nodes],
        )
    except DriverUnavailable as exc:
        observed, strays = None, []
        report.driver_error = str(exc)

    # Ready attached computes whose health check is due (attachment_health_idx).
    stale = now - timedelta(seconds=settings.HANGAR_ATTACHED_HEALTH_SECONDS)
    health_due = set(
        Attachment.objects.filter(compute__state=ComputeState.STEADY)
        .filter(Q(health_checked_at__isnull=True) | Q(health_checked_at__lt=stale))
        .values_list("compute_id", flat=True)
    )

    def due(compute_id: int, reason: str) -> None:
        report.reasons.setdefault(compute_id, reason)

    by_compute = defaultdict(list)
    for pk, compute_id, state, last_busy_at, _ in nodes:
        by_compute[compute_id].append((pk, state, last_busy_at))
    known = set()
    for pk, kind, state, min_nodes, max_nodes, idle_seconds, tier in computes:
        known.add(pk)
        mine = by_compute[pk]
        live = [n for n in mine if n[1] in LIVE_NODE_STATES]
        busy = sum(1 for n in live if n[1] == NodeState.RUNNING)
        if state in TRANSITIONAL:
            due(pk, f"{state} in progress")
        elif state == ComputeState.FAILED:
            continue
        elif kind == ComputeKind.ATTACHED:
            # No nodes or containers: only jobs and health checks bring it here.
            if any(jobs[pk, status] for status in JOB_UNFINISHED):
                due(pk, "jobs to place or collect")
            elif pk in health_due:
                due(pk, "health check due")
            continue
        elif any(jobs[pk, status] for status in JOB_UNFINISHED):
            due(pk, "jobs to place or collect")
        elif any(n[1] in NODE_GOING for n in mine):
            due(pk, "nodes to remove")
        elif len(live) != desired_count(kind, state, min_nodes, max_nodes, busy):
            if kind == "instance" or len(live) < min_nodes or len(live) > max_nodes:
                due(pk, "node count differs from desired")
            elif any(
                n[1] == NodeState.IDLE
                and n[2] is not None
                and (now - n[2]).total_seconds() >= idle_seconds
                for n in live
            ):
                due(pk, "an idle node reached its scale-down deadline")
        if tier == Tier.LOW_PRIORITY and settings.HANGAR_SIMULATED_PREEMPTIONS_PER_HOUR:
            simulate_preemptions(live, report, pk)
    if observed is not None:
        for pk, cid, state, _, _ in nodes:
            observation = observed.get(pk)
            started = state in NODE_UP
            if started and (observation is None or not observation.running):
                due(cid, "a node's container is gone or stopped")
        for observation in strays:
            if observation.compute_id in known:
                due(observation.compute_id, f"container {observation.name} has no node")
            else:
                # Its compute is deleted or never existed here: nobody will reconcile it.
                driver.remove_node(observation.name)
                report.strays_removed.append(observation.name)
                log.warning("removed stray container %s", observation.name)
    report.due = sorted(report.reasons)
    return report


def simulate_preemptions(live: list[tuple], report: SweepReport, compute_id: int) -> None:
    """Demo only: preempt low-priority nodes at HANGAR_SIMULATED_PREEMPTIONS_PER_HOUR."""
    chance = settings.HANGAR_SIMULATED_PREEMPTIONS_PER_HOUR * settings.HANGAR_SWEEP_SECONDS / 3600
    for pk, state, _ in live:
        if state in NODE_UP and random.random() < chance:  # noqa: S311
            if Node.objects.filter(pk=pk, state=state).update(state=NodeState.PREEMPTED):
                report.preempted.append(pk)
                report.reasons.setdefault(compute_id, "simulated preemption")
