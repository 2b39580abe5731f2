"""The replicas' autoscaler, a step of every sweep: from the gateway's figures (Redis,
compute/lib/serving_load.py) to each deployment's replica target, every decision an event
with its reason. Up at once, down after a quiet delay (the replicas' cluster's scale-down
seconds), to zero after the deployment's scale_to_zero_seconds without a request."""

from __future__ import annotations

import dataclasses
import logging
import time

from django.db.models import Count, Q

from compute.inference.models import Deployment
from compute.inference.rules import Scaling, Traffic, replicas_needed, replicas_wanted
from compute.lib import serving_load
from compute.models import Compute, ComputeState
from compute.models.events import EventVerb, record
from compute.models.states import NODE_UP

log = logging.getLogger(__name__)
STEADY = (ComputeState.STEADY, ComputeState.CREATING, ComputeState.RESIZING)


def autoscale_replicas(now: float | None = None) -> list[int]:
    """Each serving cluster's replica target from its load; the ids of those it moved
    (their reconcile is due now)."""
    now = now or time.time()
    deployments = list(
        Deployment.objects.filter(compute__isnull=False)
        .exclude(Q(compute__state=ComputeState.DELETING) | Q(compute__state=ComputeState.DELETED))
        .select_related("compute")
        .only(
            "target_in_flight", "scale_to_zero_seconds", "min_replicas", "max_replicas",
            "compute__replica_target", "compute__min_nodes", "compute__max_nodes",
            "compute__idle_seconds_before_scaledown", "compute__state", "compute__workspace_id",
            "compute__name",
        )
    )  # fmt: skip
    if not deployments:
        return []
    ids = [d.pk for d in deployments]
    try:
        loads, seen = serving_load.read(ids), serving_load.read(ids, "seen")
    except Exception:  # Redis away a moment: no decision this second
        log.warning("replica autoscaler: no load figures this sweep", exc_info=True)
        return []
    moved = []
    for deployment in deployments:
        compute = deployment.compute
        assert compute is not None
        load, before = loads.get(deployment.pk), seen.get(deployment.pk)
        traffic, marks = measure(load, before, serving_load.marks(deployment.pk), now)
        scaling = Scaling(
            current=compute.replica_target,
            low=compute.min_nodes,
            high=compute.max_nodes,
            per_replica=deployment.target_in_flight,
            down_delay=compute.idle_seconds_before_scaledown,
            zero_after=deployment.scale_to_zero_seconds,
        )
        wanted, why = replicas_wanted(traffic, scaling)
        # The quiet delay counts from the last time the load needed what runs (or from a
        # step down: the next step waits a whole delay again).
        steady = replicas_needed(traffic, scaling) < scaling.current and wanted == scaling.current
        needed_at = marks.needed_at if steady else now
        serving_load.set_marks(deployment.pk, needed_at, marks.request_at)
        if load is not None:
            serving_load.remember(deployment.pk, load)
        if wanted != compute.replica_target and Compute.objects.filter(
            pk=compute.pk, replica_target=compute.replica_target
        ).update(replica_target=wanted):
            message = f"Replicas {compute.replica_target} → {wanted}: {why}."
            record(compute, EventVerb.REPLICAS_SCALED, message)
            moved.append(compute.pk)
    return moved


def measure(
    load: serving_load.Load | None,
    before: serving_load.Load | None,
    marks: serving_load.Marks,
    now: float,
) -> tuple[Traffic, serving_load.Marks]:
    """Concurrency and rate since the previous reading (a first reading counts its in
    flight alone), and the marks moved by what happened since."""
    if load is None:
        traffic = Traffic(0.0, 0.0, now - marks.needed_at, now - marks.request_at)
        return traffic, marks
    concurrency, rate, request_at = float(load.in_flight), 0.0, marks.request_at
    if before is not None and load.at > before.at:
        span = load.at - before.at
        rate = max(0, load.requests - before.requests) / span
        concurrency = max(concurrency, max(0.0, load.busy_seconds - before.busy_seconds) / span)
        if load.requests > before.requests:
            request_at = load.at
    if load.in_flight:
        request_at = now
    marks = serving_load.Marks(marks.needed_at, request_at)
    return Traffic(concurrency, rate, now - marks.needed_at, now - request_at), marks


def record_series(now: float | None = None, force: bool = False) -> int:
    """Every SERIES_EVERY seconds (whichever sweep comes first), one point per deployment
    with replicas: the gateway's running totals and the replicas up, for the endpoint
    page's last hour and the list's last minute. How many points were appended."""
    if not force:
        try:
            if not serving_load.series_due():
                return 0
        except Exception:  # Redis away a moment: the next sweep tries again
            log.warning("serving series: Redis unavailable", exc_info=True)
            return 0
    now = now or time.time()
    rows = list(
        Deployment.objects.filter(compute__isnull=False)
        .exclude(compute__state=ComputeState.DELETED)
        .annotate(
            up=Count(
                "compute__nodes",
                filter=Q(compute__nodes__state__in=NODE_UP, compute__nodes__ended_at=None),
            )
        )
        .values_list("pk", "up")
    )
    if not rows:
        return 0
    try:
        current, _ = serving_load.read_page([pk for pk, _ in rows], 0)
        serving_load.append_series(
            {pk: dataclasses.replace(current[pk], at=now, replicas=up) for pk, up in rows}
        )
    except Exception:
        log.warning("serving series: no point this time", exc_info=True)
        return 0
    return len(rows)
