"""Placement: queued jobs onto idle nodes of their image, FIFO, all nodes of a job at once.

It works in batches (a handful of queries per pass, not per job), so a queue of
thousands moves at thousands of placements per second.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.controllers import job_images
from compute.controllers.jobs import JobReport, finish, mark_running
from compute.controllers.launches import claim_launch, launch
from compute.drivers import JobRunner, NodeStartError
from compute.models import Compute, Job, JobRun, JobStatus, Node, NodeState
from compute.models.idle import record_activity

J = JobStatus
PLACE_BATCH = 500


def place(
    compute: Compute, driver: JobRunner, report: JobReport, default_tag: str | None
) -> Unplaced | None:
    """FIFO: the head of the queue takes the idle nodes of its image it needs, or everyone
    waits. `default_tag`: the compute's image (None while its environment builds).
    Returns the first job that found no room, and the idle nodes of other images."""
    free = free_nodes(compute)
    if not free:
        return None
    queue = queue_head(compute, min(PLACE_BATCH, len(free)))
    assignments, unplaced = assign(compute, default_tag, queue, free)
    if not assignments:
        return unplaced
    runs = reserve(compute, default_tag, assignments, timezone.now())
    if runs is None:
        return None
    started = launch_all(compute, driver, assignments, runs)
    now = timezone.now()
    mark_running(started, now)
    if compute.is_instance and started:
        # A running job is activity that lasts: no idle deadline until it ends.
        record_activity(compute.pk, f"job {assignments[0][0].name} started", now)
    report.placed += started
    return unplaced


@dataclass
class Unplaced:
    """The head of what is left of the queue: it needs `short` more nodes of its image
    (`key`), and `others` idle nodes run an image it cannot use."""

    job: Job
    key: str
    short: int
    others: list[Node]


def free_nodes(compute: Compute) -> list[Node]:
    """Idle nodes whose container is up, in node order."""
    return list(
        Node.objects.filter(compute=compute, state=NodeState.IDLE)
        .exclude(container_ref="")
        .order_by("index")
    )


def queue_head(compute: Compute, limit: int) -> list[Job]:
    """The first `limit` jobs that can run, oldest first (job_queue_idx); a job whose
    environment still builds is passed over, not in the way of those behind it."""
    return list(
        Job.objects.filter(compute=compute, status=J.QUEUED)
        .filter(job_images.placeable(compute))
        .select_related("chosen_environment__image")
        .order_by("queued_at", "id")[:limit]
    )


def assign(
    compute: Compute, default_tag: str | None, queue: list[Job], free: list[Node]
) -> tuple[list[tuple[Job, list[Node]]], Unplaced | None]:
    """Each job in queue order takes the idle nodes of its image it needs; the first that
    does not fit stops the rest, so a big job is never starved by small ones behind it."""
    by_image: dict[str, list[Node]] = defaultdict(list)
    for node in free:
        by_image[job_images.node_key(default_tag, node)].append(node)
    assignments: list[tuple[Job, list[Node]]] = []
    for job in queue:
        key = job_images.image_key(compute, default_tag, job)
        fitting = by_image[key]
        if (key == job_images.DEFAULT and default_tag is None) or job.node_count > len(fitting):
            others = [n for other, nodes in by_image.items() if other != key for n in nodes]
            return assignments, Unplaced(job, key, job.node_count - len(fitting), others)
        assignments.append((job, fitting[: job.node_count]))
        by_image[key] = fitting[job.node_count :]
    return assignments, None


def images_lacking(compute: Compute, default_tag: str | None, count: int) -> list[str]:
    """The images `count` new nodes should run (job_images keys): those the queue's jobs
    lack among the idle nodes, in queue order, then the compute's own."""
    keys: list[str] = []
    if compute.is_cluster:
        free = free_nodes(compute)
        by_image: dict[str, int] = defaultdict(int)
        # Idle nodes, and those a previous pass already started for an image.
        starting = Node.objects.filter(compute=compute, state=NodeState.PREPARING).exclude(image="")
        for node in [*free, *starting]:
            by_image[job_images.node_key(default_tag, node)] += 1
        for job in queue_head(compute, min(PLACE_BATCH, len(free) + count)):
            key = job_images.image_key(compute, default_tag, job)
            lacking = job.node_count - by_image[key]
            by_image[key] = max(0, -lacking)
            keys += [key] * max(0, lacking)
            if len(keys) >= count:
                break
    return (keys + [job_images.DEFAULT] * count)[:count]


def reserve(
    compute: Compute,
    default_tag: str | None,
    assignments: list[tuple[Job, list[Node]]],
    now: datetime,
) -> list[JobRun] | None:
    """Nodes to running, jobs to preparing (with the image their nodes run, for their
    page) and one run per rank, all or nothing; None if a cancel or another placement got
    to some of them first."""
    node_ids = [node.pk for _, nodes in assignments for node in nodes]
    jobs_by_image: dict[str, list[int]] = defaultdict(list)
    for job, nodes in assignments:
        jobs_by_image[nodes[0].image or default_tag or ""].append(job.pk)
    with transaction.atomic():
        claimed = Node.objects.filter(pk__in=node_ids, state=NodeState.IDLE).update(
            state=NodeState.RUNNING, last_busy_at=now
        )
        moved = sum(  # one statement per image in the batch: mostly one
            Job.objects.filter(pk__in=job_ids).transition(
                J.QUEUED, J.PREPARING, preparing_at=now, image=image
            )
            for image, job_ids in jobs_by_image.items()
        )
        job_ids = [job.pk for job, _ in assignments]
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
