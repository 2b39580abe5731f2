"""The periodic sweep: find every compute whose world drifted, whose transition stalled,
whose jobs need placing or collecting, or whose idle nodes reached their deadline.

It reads all live computes, nodes, job counts and due health checks in four queries and lists the
containers in one driver call, then compares in memory: a constant number of queries
however many computes there are. It returns the computes that need a reconcile.

Each step returns what it found (healthchecks' `sendalerts` is the model), so a test can
ask one step one question with the clock under control.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db.models import (
    Q,
    Value,
)
from django.utils import timezone

from compute.controllers import containers
from compute.controllers.hosts import current_driver as default_driver
from compute.drivers import Driver, DriverUnavailable, NodeObservation
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
from compute.models.expressions import SecondsPassed
from compute.models.jobs import node_holders
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


class ComputeRow(NamedTuple):
    pk: int
    kind: str
    state: str
    min_nodes: int
    max_nodes: int
    idle_seconds: int
    tier: str
    # A deployment's replicas: how many it wants now (0 for every other compute).
    replica_target: int = 0


class NodeRow(NamedTuple):
    pk: int
    compute_id: int
    state: str
    # Its last job ended its compute's idle_seconds_before_scaledown ago or longer (read
    # in SQL; None for a node that never ran one).
    idle_enough: bool | None
    container_ref: str


NO_NODES: list[NodeRow] = []  # shared, never changed: a compute without nodes


def sweep(driver: Driver | None = None) -> SweepReport:
    driver = driver or default_driver()
    report = SweepReport()
    now = timezone.now()
    # Containers first, rows after: a container is made only after its compute's and its
    # node's rows are committed, so every container listed here finds its rows below. Read
    # the other way round, a compute created (and its first node started) between the two
    # reads looked like a stray of no compute, and its new node was removed.
    listing, report.driver_error = list_containers(driver)
    computes = live_computes()
    nodes = live_nodes(now)
    with_jobs = computes_with_unfinished_jobs()
    observed, strays = look(listing, nodes)
    health_due = health_checks_due(now)

    by_compute: defaultdict[int, list[NodeRow]] = defaultdict(list)
    for node in nodes:
        by_compute[node.compute_id].append(node)
    for compute in computes:
        mine = by_compute.get(compute.pk, NO_NODES)
        reason = why_due(compute, mine, with_jobs, health_due)
        if reason:
            report.reasons.setdefault(compute.pk, reason)
        if preemptible(compute):
            live = [n for n in mine if n.state in LIVE_NODE_STATES]
            simulate_preemptions(live, report, compute.pk)
    if observed is not None:
        known = {compute.pk for compute in computes}
        for compute_id, reason in [*dead_containers(nodes, observed), *strays_of(strays, known)]:
            report.reasons.setdefault(compute_id, reason)
        report.strays_removed = remove_foreign_strays(driver, strays, known)
    report.due = sorted(report.reasons)
    return report


# Reads: one query each ---------------------------------------------------------------


# Each read clears the models' default ordering (order_by()): the sweep needs no order, and
# Node's (its compute's name, then index) joined the compute table and sorted every live
# node, every second.


def live_computes() -> list[ComputeRow]:
    # Served by compute_live_idx.
    rows = (
        Compute.objects.exclude(state=ComputeState.DELETED)
        .order_by()
        .values_list(
            "pk",
            "kind",
            "state",
            "min_nodes",
            "max_nodes",
            "idle_seconds_before_scaledown",
            "tier",
            "replica_target",
        )
    )
    return [ComputeRow(*row) for row in rows]


def live_nodes(now: datetime) -> list[NodeRow]:
    # Served by node_live_idx. Whether an idle node is past its scale-down deadline is
    # decided in the query: reading each node's last_busy_at took a third of the sweep at
    # 5,000 nodes (Django loads every timestamp through psycopg's Python loader).
    rows = (
        Node.objects.filter(state__in=NODE_WITH_CONTAINER, ended_at__isnull=True)
        .order_by()
        .annotate(
            idle_enough=SecondsPassed(
                "last_busy_at", "compute__idle_seconds_before_scaledown", Value(now)
            )
        )
        .values_list("pk", "compute_id", "state", "idle_enough", "container_ref")
    )
    return [NodeRow(*row) for row in rows]


def computes_with_unfinished_jobs() -> set[int]:
    """Computes with a job to place or collect, or with a node an ended job still holds
    (its release failed or its pass died): the next pass releases and frees it."""
    # One query (a UNION); the jobs' half is served by job_active_idx.
    unfinished = Job.objects.filter(status__in=JOB_UNFINISHED).order_by().values_list("compute_id")
    taken = node_holders().values("node_id")
    held = (
        Node.objects.filter(state=NodeState.RUNNING)
        .exclude(pk__in=taken)
        .order_by()
        .values_list("compute_id")
    )
    return {compute_id for (compute_id,) in unfinished.union(held)}


def health_checks_due(now: datetime) -> set[int]:
    """Ready attached computes whose health check is due (attachment_health_idx)."""
    stale = now - timedelta(seconds=settings.HANGAR_ATTACHED_HEALTH_SECONDS)
    return set(
        Attachment.objects.filter(compute__state=ComputeState.STEADY)
        .filter(Q(health_checked_at__isnull=True) | Q(health_checked_at__lt=stale))
        .order_by()
        .values_list("compute_id", flat=True)
    )


def list_containers(driver: Driver) -> tuple[list[NodeObservation] | None, str]:
    """Every container of the site in one driver call; (None, why) when the driver cannot
    be reached: nothing is judged on containers then."""
    try:
        return driver.list_nodes(), ""
    except DriverUnavailable as exc:
        return None, str(exc)


def look(
    listing: list[NodeObservation] | None, nodes: list[NodeRow]
) -> tuple[dict[int, NodeObservation] | None, list[NodeObservation]]:
    """(each node's container, strays); (None, []) without a listing."""
    if listing is None:
        return None, []
    return containers.match(
        settings.HANGAR_SITE,
        listing,
        [containers.NodeRef(n.pk, n.compute_id, n.container_ref) for n in nodes],
    )


# Decisions: in memory ----------------------------------------------------------------


def why_due(
    compute: ComputeRow,
    nodes: list[NodeRow],
    with_jobs: set[int],
    health_due: set[int],
) -> str:
    """Why this compute needs a reconcile now, from its rows alone; "" if it does not.
    Called for every live compute each second (10,000 at team scale): the cheap questions
    come first, and a compute without nodes (most of them) builds no list."""
    pk, kind, state = compute.pk, compute.kind, compute.state
    if state in TRANSITIONAL:
        return f"{state} in progress"
    if state == ComputeState.FAILED:
        return ""
    if kind == ComputeKind.ATTACHED:
        # No nodes or containers: only jobs and health checks bring it here.
        if pk in with_jobs:
            return "jobs to place or collect"
        return "health check due" if pk in health_due else ""
    if pk in with_jobs:
        return "jobs to place or collect"
    if not nodes:
        live, busy = nodes, 0
    else:
        if any(n.state in NODE_GOING for n in nodes):
            return "nodes to remove"
        if any(n.state == NodeState.PREPARING for n in nodes):
            # Its start was put off (the driver was unavailable, or a slow machine): a
            # steady cluster counts it as live, so nothing else would bring it back.
            return "a node to start"
        live = [n for n in nodes if n.state in LIVE_NODE_STATES]
        busy = sum(1 for n in live if n.state == NodeState.RUNNING)
    desired = desired_count(
        kind, state, compute.min_nodes, compute.max_nodes, busy, compute.replica_target
    )
    if len(live) == desired:
        return ""
    if kind == "instance" or len(live) < compute.min_nodes or len(live) > compute.max_nodes:
        return "node count differs from desired"
    if len(live) < desired:  # a deployment's replicas below what its load wants
        return "replicas below their target"
    if any(n.state == NodeState.IDLE and n.idle_enough for n in live):
        return "an idle node reached its scale-down deadline"
    return ""


def dead_containers(
    nodes: list[NodeRow], observed: dict[int, NodeObservation]
) -> list[tuple[int, str]]:
    """(compute id, reason) for every started node whose container is gone or stopped."""
    found = []
    for node in nodes:
        observation = observed.get(node.pk)
        started = node.state in NODE_UP
        if started and (observation is None or not observation.running):
            found.append((node.compute_id, "a node's container is gone or stopped"))
    return found


def strays_of(strays: list[NodeObservation], known: set[int]) -> list[tuple[int, str]]:
    """(compute id, reason): a stray of a live compute is its reconciler's to remove."""
    return [
        (observation.compute_id, f"container {observation.name} has no node")
        for observation in strays
        if observation.compute_id in known
    ]


# Actions: the only ones the sweep takes itself -----------------------------------------


def remove_foreign_strays(
    driver: Driver, strays: list[NodeObservation], known: set[int]
) -> list[str]:
    """Strays whose compute is deleted or never existed here: nobody will reconcile them,
    so they go now. Returns their names."""
    removed = []
    for observation in strays:
        if observation.compute_id not in known:
            driver.remove_node(observation.name)
            removed.append(observation.name)
            log.warning("removed stray container %s", observation.name)
    return removed


def preemptible(compute: ComputeRow) -> bool:
    """Demo only: low-priority nodes are preempted at random when the operator asks."""
    return (
        compute.tier == Tier.LOW_PRIORITY
        and compute.state != ComputeState.FAILED
        and bool(settings.HANGAR_SIMULATED_PREEMPTIONS_PER_HOUR)
    )


def simulate_preemptions(live: list[NodeRow], report: SweepReport, compute_id: int) -> None:
    """Demo only: preempt low-priority nodes at HANGAR_SIMULATED_PREEMPTIONS_PER_HOUR."""
    chance = settings.HANGAR_SIMULATED_PREEMPTIONS_PER_HOUR * settings.HANGAR_SWEEP_SECONDS / 3600
    for node in live:
        if node.state in NODE_UP and random.random() < chance:  # noqa: S311
            if Node.objects.filter(pk=node.pk, state=node.state).update(state=NodeState.PREEMPTED):
                report.preempted.append(node.pk)
                report.reasons.setdefault(compute_id, "simulated preemption")
