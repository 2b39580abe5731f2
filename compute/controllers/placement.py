"""Placement: queued jobs onto idle nodes, FIFO, all nodes of a job at once.

It works in batches (a handful of queries per pass, not per job), so a queue of
thousands moves at thousands of placements per second.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.controllers.jobs import JobReport, finish, mark_running
from compute.controllers.launches import claim_launch, launch
from compute.drivers import JobRunner, NodeStartError
from compute.models import Compute, Job, JobRun, JobStatus, Node, NodeState
from compute.models.idle import record_activity

J = JobStatus
PLACE_BATCH = 500


def place(compute: Compute, driver: JobRunner, report: JobReport) -> None:
    """FIFO: the head of the queue takes the idle nodes it needs, or everyone waits."""
    free = free_nodes(compute)
    if not free:
        return
    assignments = assign(queue_head(compute, min(PLACE_BATCH, len(free))), free)
    if not assignments:
        return
    runs = reserve(compute, assignments, timezone.now())
    if runs is None:
        return
    started = launch_all(compute, driver, assignments, runs)
    now = timezone.now()
    mark_running(started, now)
    if compute.is_instance and started:
        # A running job is activity that lasts: no idle deadline until it ends.
        record_activity(compute.pk, f"job {assignments[0][0].name} started", now)
    report.placed += started


def free_nodes(compute: Compute) -> list[Node]:
    """Idle nodes whose container is up, in node order."""
    return list(
        Node.objects.filter(compute=compute, state=NodeState.IDLE)
        .exclude(container_ref="")
        .order_by("index")
    )


def queue_head(compute: Compute, limit: int) -> list[Job]:
    """The first `limit` queued jobs, oldest first (job_queue_idx)."""
    return list(
        Job.objects.filter(compute=compute, status=J.QUEUED).order_by("queued_at", "id")[:limit]
    )


def assign(queue: list[Job], free: list[Node]) -> list[tuple[Job, list[Node]]]:
    """Each job in queue order takes the nodes it needs; the first that does not fit stops
    the rest, so a big job is never starved by small ones behind it."""
    assignments: list[tuple[Job, list[Node]]] = []
    for job in queue:
        if job.node_count > len(free):
            break
        assignments.append((job, free[: job.node_count]))
        free = free[job.node_count :]
    return assignments


def reserve(
    compute: Compute, assignments: list[tuple[Job, list[Node]]], now: datetime
) -> list[JobRun] | None:
    """Nodes to running, jobs to preparing and one run per rank, all or nothing; None if
    a cancel or another placement got to some of them first."""
    node_ids = [node.pk for _, nodes in assignments for node in nodes]
    job_ids = [job.pk for job, _ in assignments]
    with transaction.atomic():
        claimed = Node.objects.filter(pk__in=node_ids, state=NodeState.IDLE).update(
            state=NodeState.RUNNING, last_busy_at=now
        )
        moved = Job.objects.filter(pk__in=job_ids).transition(
            J.QUEUED, J.PREPARING, preparing_at=now
        )
        if claimed != len(node_ids) or moved != len(job_ids):
            # A cancel or another placement got there first: undo, look again next pass.
            transaction.set_rollback(True)
            return None
        return JobRun.objects.bulk_create(
            JobRun(
                job=job,
                attempt=job.retries,
                rank=rank,
                node=node,
                node_name=node.name,
                container=node_container(compute, node),
            )
            for job, nodes in assignments
            for rank, node in enumerate(nodes)
        )


def launch_all(
    compute: Compute,
    driver: JobRunner,
    assignments: list[tuple[Job, list[Node]]],
    runs: list[JobRun],
) -> list[int]:
    """Launch every placed job; returns the ids of those started. One that cannot start
    fails with the reason; one another reconciler launched is left to it."""
    by_job: dict[int, list[JobRun]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    # The whole batch's launches written down in one statement (one per job only if
    # another reconciler got to some of them meanwhile).
    claimed = claim_launch(runs)
    started = []
    for job, _ in assignments:
        job.status = J.PREPARING
        try:
            if not launch(compute, driver, job, by_job[job.pk], claimed=claimed):
                continue
        except NodeStartError as exc:
            finish(job, J.FAILED, None, str(exc), timezone.now())
            continue
        started.append(job.pk)
    return started


def node_container(compute: Compute, node: Node) -> str:
    from compute.drivers.base import container_name

    return container_name(settings.HANGAR_SITE, compute.pk, node.pk)
