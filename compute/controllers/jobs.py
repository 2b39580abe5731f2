"""Job steps of a reconcile pass: collect finished runs, deliver cancels, requeue the jobs
of lost nodes, and place queued jobs onto idle nodes (FIFO, all nodes of a job at once).

Placement and collection work in batches (a handful of queries per pass, not per job), so
a queue of thousands moves at thousands of placements per second.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Sum
from django.utils import timezone

from compute import enqueue
from compute.drivers import DriverUnavailable, JobLaunch, JobRunner, NodeStartError
from compute.lib import jobfiles, secrets
from compute.models import Compute, Job, JobRun, JobStatus, Node, NodeState
from compute.models.events import EventVerb, record
from compute.models.idle import record_activity
from compute.models.jobs import CodeKind
from compute.models.states import JOB_ACTIVE, JOB_UNFINISHED

J = JobStatus
PLACE_BATCH = 500
RELAUNCH_AFTER = timedelta(seconds=5)


@dataclass
class JobReport:
    placed: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)


def collect_soon(compute_id: int) -> None:
    """A followed run ended: reconcile now rather than at the next sweep."""
    enqueue.reconcile(compute_id)


def free_port() -> int:
    """A port for MASTER_PORT: free on this machine now (nodes share its loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def current_runs(jobs: list[Job]) -> dict[int, list[JobRun]]:
    runs: dict[int, list[JobRun]] = defaultdict(list)
    attempts = {job.pk: job.retries for job in jobs}
    for run in JobRun.objects.filter(job__in=attempts).order_by("rank"):
        if run.attempt == attempts[run.job_id]:
            runs[run.job_id].append(run)
    return runs


def collect(compute: Compute, driver: JobRunner, report: JobReport) -> None:
    """Finished runs become finished jobs; their nodes go back to idle."""
    active = list(Job.objects.filter(compute=compute, status__in=JOB_ACTIVE))
    if not active:
        return
    runs = current_runs(active)
    now = timezone.now()
    completed, freed_nodes, finished_runs, finished_here = [], [], [], []
    endings: list[tuple[Job, str, int | None, str]] = []
    for job in active:
        job_runs = runs.get(job.pk, [])
        states = [driver.job_state(run.key, run.container) for run in job_runs]
        never_launched = job.status == J.PREPARING and not any(r.launches for r in job_runs)
        if job.cancel_requested_at and never_launched and claim_launch(job_runs):
            # Canceled before its (dead) placer launched it: claiming the launch means no
            # one launches it now, and there is nothing to stop.
            endings.append((job, J.CANCELED, None, job.error or "Canceled."))
            freed_nodes += [run.node_id for run in job_runs if run.node_id]
            finished_runs += job_runs
            report.finished.append(job.pk)
            finished_here.append(job)
            continue
        if job.cancel_requested_at and any(s.exit_code is None for s in states):
            for run, state in zip(job_runs, states, strict=True):
                if state.exit_code is None:
                    driver.cancel_job(run.container, run.key)
            continue
        if job.status == J.PREPARING and job_runs and not any(s.started for s in states):
            relaunch_if_lost(compute, driver, job, job_runs, now, report)
            continue
        if any(s.started for s in states) and (job.status == J.PREPARING or not job.running_at):
            # Placed by a worker that died before it could say so: it runs all the same.
            show_running(job, job_runs, now)
        if not job_runs or any(s.exit_code is None for s in states):
            continue
        for run, state in zip(job_runs, states, strict=True):
            # Before its node takes another job: nothing of this run may be left there.
            driver.release_run(run.container, run.key)
            run.exit_code, run.finished_at = state.exit_code, now
            finished_runs.append(run)
        if any(state.output_cut for state in states):
            record(
                compute,
                EventVerb.JOB_OUTPUT_CUT,
                f"Output of job {job.name} (#{job.pk}) was cut at "
                f"{settings.HANGAR_JOB_OUTPUT_LIMIT_MB} MB (HANGAR_JOB_OUTPUT_LIMIT_MB).",
                level="warning",
            )
        freed_nodes += [run.node_id for run in job_runs if run.node_id]
        codes = [s.exit_code for s in states]
        if job.cancel_requested_at:
            endings.append((job, J.CANCELED, next((c for c in codes if c), 0), "Canceled."))
        elif all(code == 0 for code in codes):
            completed.append(job.pk)
        else:
            rank, code = next((r, c) for r, c in enumerate(codes) if c != 0)
            endings.append((job, J.FAILED, code, f"Rank {rank} exited with code {code}."))
        report.finished.append(job.pk)
        finished_here.append(job)
    # A job shows as ended in the same moment its nodes are free again (all released
    # above), so whoever waits for the end finds the nodes ready for the next job.
    with transaction.atomic():
        for job, status, code, error in endings:
            finish(job, status, code, error, now)
        if completed:
            Job.objects.filter(pk__in=completed).transition(
                JOB_ACTIVE, J.COMPLETED, exit_code=0, finished_at=now
            )
        if compute.is_instance and finished_here:
            record_activity(compute.pk, f"job {finished_here[-1].name} finished", now)
        # One UPDATE per distinct exit code (almost always just 0), not one per run.
        by_code: dict[int | None, list[int]] = defaultdict(list)  # None: canceled unlaunched
        for run in finished_runs:
            by_code[run.exit_code].append(run.pk)
        for code, run_ids in by_code.items():
            JobRun.objects.filter(pk__in=run_ids).update(exit_code=code, finished_at=now)
        if freed_nodes:
            Node.objects.filter(pk__in=freed_nodes, state=NodeState.RUNNING).update(
                state=NodeState.IDLE, last_busy_at=now
            )


def show_running(job: Job, runs: list[JobRun], now: datetime) -> None:
    """A job found started whose row still says otherwise gets its start written in: the
    moment its record says it started (close enough: when the launcher marked it)."""
    ages = [jobfiles.seconds_since(run.key, jobfiles.STARTED_FILE) for run in runs]
    began = now - timedelta(seconds=max((a for a in ages if a is not None), default=0.0))
    Job.objects.filter(pk=job.pk).transition(J.PREPARING, J.RUNNING)
    Job.objects.filter(pk=job.pk, running_at__isnull=True).update(running_at=began)
    JobRun.objects.filter(pk__in=[r.pk for r in runs], started_at__isnull=True).update(
        started_at=began
    )
    job.status, job.running_at = J.RUNNING, job.running_at or began


def relaunch_if_lost(
    compute: Compute,
    driver: JobRunner,
    job: Job,
    runs: list[JobRun],
    now: datetime,
    report: JobReport,
) -> None:
    """A placed job that has not started. Never launched (the placer died between placing
    and launching): launch it now. Launched a while ago and still not started: launch
    again. Either way the driver starts an attempt at most once (a relaunch of one that did
    start follows it), and the compare-and-set in `launch` lets one reconciler do it."""
    launched = [run.launched_at for run in runs if run.launched_at]
    if launched and now - max(launched) < RELAUNCH_AFTER:
        return  # still starting
    try:
        if not launch(compute, driver, job, runs):
            return
    except NodeStartError as exc:
        finish(job, J.FAILED, None, str(exc), timezone.now())
        return
    why = "was never launched" if not launched else "had not started"
    record(
        compute,
        EventVerb.JOB_RELAUNCHED,
        f"Job {job.name} (#{job.pk}) {why}: the worker placing it stopped. Launched again "
        "(an attempt starts at most once; a start already made is followed, not repeated).",
        level="warning",
    )
    mark_running([job.pk], timezone.now())
    report.placed.append(job.pk)


def mark_running(job_ids: list[int], now: datetime) -> None:
    Job.objects.filter(pk__in=job_ids).transition(J.PREPARING, J.RUNNING, running_at=now)
    JobRun.objects.filter(job_id__in=job_ids, started_at__isnull=True).update(started_at=now)


def finish(job: Job, status: str, exit_code: int | None, error: str, now) -> None:
    Job.objects.filter(pk=job.pk).transition(
        JOB_ACTIVE, status, exit_code=exit_code, error=error, finished_at=now
    )


def requeue_lost(
    compute: Compute, driver: JobRunner, lost: dict[int, str], report: JobReport
) -> None:
    """Jobs that ran on lost nodes (preempted or dead) go back to the queue, up to a limit."""
    if not lost:
        return
    now = timezone.now()
    hit = Job.objects.filter(
        compute=compute,
        status__in=JOB_ACTIVE,
        runs__node_id__in=list(lost),
    ).distinct()
    for job in hit:
        job_runs = current_runs([job]).get(job.pk, [])
        why = next((lost[r.node_id] for r in job_runs if r.node_id in lost), "its node was lost")
        for run in job_runs:  # the other ranks cannot finish alone: end them, now
            if run.node_id not in lost:
                driver.release_run(run.container, run.key)
        survivors = [r.node_id for r in job_runs if r.node_id and r.node_id not in lost]
        with transaction.atomic():
            Node.objects.filter(pk__in=survivors, state=NodeState.RUNNING).update(
                state=NodeState.IDLE, last_busy_at=now
            )
            if job.retries < job.max_retries:
                Job.objects.filter(pk=job.pk).transition(
                    job.status,
                    J.QUEUED,
                    retries=F("retries") + 1,
                    preparing_at=None,
                    running_at=None,
                    error=f"Requeued: {why}.",
                )
                message = (
                    f"Job {job.name} (#{job.pk}) requeued: {why} "
                    f"(retry {job.retries + 1} of {job.max_retries})."
                )
                report.requeued.append(job.pk)
                verb = EventVerb.JOB_REQUEUED
            else:
                finish(job, J.FAILED, None, f"{why}; gave up after {job.max_retries} retries.", now)
                message = f"Job {job.name} (#{job.pk}) failed: {why}, retries exhausted."
                verb = EventVerb.JOB_GAVE_UP
            record(compute, verb, message, level="warning")


def cancel_dropped(compute: Compute, reason: str) -> None:
    """A stopping or deleted compute takes its queued and running jobs with it."""
    now = timezone.now()
    Job.objects.filter(compute=compute).transition(
        JOB_UNFINISHED, J.CANCELED, error=reason, finished_at=now, cancel_requested_at=now
    )


def place(compute: Compute, driver: JobRunner, report: JobReport) -> None:
    """FIFO: the head of the queue takes the idle nodes it needs, or everyone waits."""
    free = list(
        Node.objects.filter(compute=compute, state=NodeState.IDLE)
        .exclude(container_ref="")
        .order_by("index")
    )
    if not free:
        return
    queue = list(
        Job.objects.filter(compute=compute, status=J.QUEUED).order_by("queued_at", "id")[
            : min(PLACE_BATCH, len(free))
        ]
    )
    assignments: list[tuple[Job, list[Node]]] = []
    for job in queue:
        if job.node_count > len(free):
            break
        assignments.append((job, free[: job.node_count]))
        free = free[job.node_count :]
    if not assignments:
        return
    now = timezone.now()
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
            return
        runs = JobRun.objects.bulk_create(
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
    now = timezone.now()
    mark_running(started, now)
    if compute.is_instance and started:
        # A running job is activity that lasts: no idle deadline until it ends.
        record_activity(compute.pk, f"job {assignments[0][0].name} started", now)
    report.placed += started


def place_on_target(compute: Compute, runner: JobRunner, slots: int, report: JobReport) -> None:
    """Attached computes: FIFO, one rank per job, at most `slots` jobs at once, no nodes.
    The reconcile lease makes this pass the only one placing on this compute."""
    active = Job.objects.filter(compute=compute, status__in=JOB_ACTIVE).count()
    if active >= slots:
        return
    queue = Job.objects.filter(compute=compute, status=J.QUEUED).order_by("queued_at", "id")
    for job in queue[: slots - active]:
        with transaction.atomic():
            if not Job.objects.filter(pk=job.pk).transition(
                J.QUEUED, J.PREPARING, preparing_at=timezone.now()
            ):
                continue  # canceled meanwhile
            run = JobRun.objects.create(
                job=job,
                attempt=job.retries,
                rank=0,
                node_name=compute.name,
                container=compute.name,
            )
        job.status = J.PREPARING
        try:
            if not launch(compute, runner, job, [run]):
                continue
        except NodeStartError as exc:
            finish(job, J.FAILED, None, str(exc), timezone.now())
            continue
        except DriverUnavailable:
            # Nothing started over there: back to the head of the queue, as it was.
            with transaction.atomic():
                run.delete()
                Job.objects.filter(pk=job.pk).transition(J.PREPARING, J.QUEUED, preparing_at=None)
            raise
        now = timezone.now()
        Job.objects.filter(pk=job.pk).transition(J.PREPARING, J.RUNNING, running_at=now)
        JobRun.objects.filter(pk=run.pk).update(started_at=now)
        report.placed.append(job.pk)


def node_container(compute: Compute, node: Node) -> str:
    from compute.drivers.base import container_name

    return container_name(settings.HANGAR_SITE, compute.pk, node.pk)


def claim_launch(runs: list[JobRun]) -> bool:
    """Write down a launch before anything starts: a compare-and-set on the runs' launch
    count, so of two reconcilers launching one attempt (a lease that lapsed, a relaunch
    racing a slow first launch) exactly one goes on."""
    now = timezone.now()
    counts = {run.launches for run in runs}
    if len(counts) != 1:
        return False
    with transaction.atomic():
        claimed = JobRun.objects.filter(pk__in=[r.pk for r in runs], launches=counts.pop()).update(
            launches=F("launches") + 1, launched_at=now
        )
        if claimed != len(runs):
            transaction.set_rollback(True)
            return False
    for run in runs:
        run.launches, run.launched_at = run.launches + 1, now
    return True


def launch(
    compute: Compute, driver: JobRunner, job: Job, runs: list[JobRun], claimed: bool = False
) -> bool:
    """Start every rank of the job; False if another reconciler claimed this launch.
    `claimed`: the caller already wrote this launch down (claim_launch)."""
    if not claimed and not claim_launch(runs):
        return False
    compute_id = compute.pk
    port = job.master_port or free_port()
    if not job.master_port and job.node_count > 1:
        # Kept so a relaunch after a crash gives every rank the same rendezvous port.
        Job.objects.filter(pk=job.pk).update(master_port=port)
        job.master_port = port
    world = len(runs)
    hidden = secret_variables(compute, job)
    for run in runs:
        environment = {
            **{str(k): str(v) for k, v in (job.environment or {}).items()},
            **hidden,
            "HANGAR_COMMAND": job.command,
            "HANGAR_JOB_ID": str(job.pk),
            "HANGAR_JOB_NAME": job.name,
            "RANK": str(run.rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": "0",
            "NODE_RANK": str(run.rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        driver.start_job(
            JobLaunch(
                container=run.container,
                run_key=run.key,
                command=job.command,
                environment=environment,
                code_job_id=job.pk if job.code_kind != CodeKind.NONE else None,
                on_finish=lambda: collect_soon(compute_id),
            )
        )
    return True


def secret_variables(compute: Compute, job: Job) -> dict[str, str]:
    """The instance's secret variables, then the job's own (which win): decrypted here, in
    the worker launching the job, into the process environment and nowhere else. A job
    whose secrets no key opens fails with the variable's name, never a value."""
    try:
        found = secrets.decrypt_variables(compute.secret_environment) if compute.is_instance else {}
        return {**found, **secrets.decrypt_variables(job.secret_environment)}
    except secrets.SecretUnreadable as exc:
        raise NodeStartError(str(exc)) from None


def demand(compute: Compute) -> tuple[int, int]:
    """(nodes the queue needs, queued jobs) for the autoscaler, in one query."""
    totals = Job.objects.filter(compute=compute, status=J.QUEUED).aggregate(
        nodes=Sum("node_count"), jobs=Count("id")
    )
    return totals["nodes"] or 0, totals["jobs"]
