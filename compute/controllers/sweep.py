"""The periodic sweep: find every compute whose world drifted or whose transition stalled.

It reads all live computes and nodes in two queries and lists the containers in one
driver call, then compares them in memory: a constant number of queries however many
computes there are. It returns the computes that need a reconcile; the task enqueues them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from compute.drivers import Driver, DriverUnavailable
from compute.drivers import get_driver as default_driver
from compute.models import Compute, ComputeState, Node, NodeState
from compute.models.states import LIVE_NODE_STATES, TRANSITIONAL, WANTS_NODES

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    due: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)
    strays_removed: list[str] = field(default_factory=list)
    driver_error: str = ""


def desired_count(kind: str, state: str, min_nodes: int, max_nodes: int) -> int:
    """Same rule as Compute.desired_node_count, on plain values (no model per row)."""
    if state not in WANTS_NODES:
        return 0
    return 1 if kind == "instance" else min(min_nodes, max_nodes)


def sweep(driver: Driver | None = None) -> SweepReport:
    driver = driver or default_driver()
    report = SweepReport()
    # Served by compute_live_idx and node_live_idx.
    computes = list(
        Compute.objects.exclude(state=ComputeState.DELETED).values_list(
            "pk", "kind", "state", "min_nodes", "max_nodes"
        )
    )
    nodes = list(
        Node.objects.filter(state__in=(*LIVE_NODE_STATES, NodeState.LEAVING)).values_list(
            "pk", "compute_id", "state"
        )
    )
    try:
        observed = {o.node_id: o for o in driver.list_nodes()}
    except DriverUnavailable as exc:
        observed = None
        report.driver_error = str(exc)

    def due(compute_id: int, reason: str) -> None:
        report.reasons.setdefault(compute_id, reason)

    live_per_compute = Counter(cid for _, cid, state in nodes if state in LIVE_NODE_STATES)
    known_computes = set()
    for pk, kind, state, min_nodes, max_nodes in computes:
        known_computes.add(pk)
        if state in TRANSITIONAL:
            due(pk, f"{state} in progress")
        elif live_per_compute[pk] != desired_count(kind, state, min_nodes, max_nodes):
            if state != ComputeState.FAILED:
                due(pk, "node count differs from desired")
    if observed is not None:
        node_rows = {pk: (cid, state) for pk, cid, state in nodes}
        for pk, cid, state in nodes:
            observation = observed.get(pk)
            started = state in (NodeState.IDLE, NodeState.RUNNING)
            if started and (observation is None or not observation.running):
                due(cid, "a node's container is gone or stopped")
        for node_id, observation in observed.items():
            if node_id in node_rows:
                continue
            if observation.compute_id in known_computes:
                due(observation.compute_id, f"container {observation.name} has no node")
            else:
                # Its compute is deleted or never existed here: nobody will reconcile it.
                driver.remove_node(observation.name)
                report.strays_removed.append(observation.name)
                log.warning("removed stray container %s", observation.name)
    report.due = sorted(report.reasons)
    return report
