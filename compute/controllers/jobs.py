"""Job steps of a reconcile pass: collect finished runs, deliver cancels, requeue the jobs
of lost nodes, and place queued jobs on attached targets. Placement onto nodes is in
placement.py, the launch of a placed job in launches.py.

Collection works in batches (a handful of queries per pass, not per job), so a queue of
thousands moves at thousands of placements per second. Its steps return what they found
or decided (healthchecks' `sendalerts` is the model), so each can be tested on its own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Sum
from django.utils import timezone

from compute.controllers import job_images, job_outputs
from compute.controllers.launches import claim_launch, launch
from compute.drivers import DriverUnavailable, JobRunner, NodeStartError
from compute.lib import jobfiles
from compute.models import Compute, Job, JobRun, JobStatus, Node, NodeState
from compute.models.events import EventVerb, record
from compute.models.idle import record_activity
from compute.models.jobs import node_holders
from compute.models.states import GOING_AWAY, JOB_ACTIVE, JOB_UNFINISHED

J = JobStatus
RELAUNCH_AFTER = timedelta(seconds=5)


@dataclass
class JobReport:
    placed: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)


def current_runs(jobs: list[Job]) -> dict[int, list[JobRun]]:
    runs: dict[int, list[JobRun]] = defaultdict(list)
    attempts = {job.pk: job.retries for job in jobs}
    for run in JobRun.objects.filter(job__in=attempts).order_by("rank"):
        if run.attempt == attempts[run.job_id]:
            runs[run.job_id].append(run)
    return runs


@dataclass
class Ending:
    """How one job ended, written with the others in one transaction by `write_endings`."""

    job: Job
    status: str
    exit_code: int | None
    error: str
    runs: list[JobRun]
    output_cut: bool = False
    ran: bool = True  # False: canceled before it was launched, nothing to collect
    outputs: job_outputs.Collected = field(default_factory=job_outputs.Collected)


class Verdict(Enum):
    """What collect does with an active job, from what the driver says of its ranks."""

    STOP = "stop"  # canceled: deliver the cancel to the ranks still running
    RELAUNCH = "relaunch"  # placed, nothing started yet: launch again if lost
    WAIT = "wait"  # a rank is still running
    END = "end"  # every rank exited


def collect(compute: Compute, driver: JobRunner, report: JobReport) -> None:
    """Finished runs become finished jobs; then what is left of each run goes from its
    node, and the node goes back to idle.

    A job's output files are collected before it is ended (job_outputs.py), so a job that
    reads as ended has them in place. The job ends before the clean-up, so whoever waits
    for it hears at once, not after it (a command in the node: ~100 ms). Its nodes stay
    held meanwhile: no other job gets a node before nothing of the last one is left there.
    A pass that dies in between leaves nodes held by ended jobs; the next pass frees them
    (`free_held_nodes`)."""
    free_held_nodes(compute, driver)
    active = list(Job.objects.filter(compute=compute, status__in=JOB_ACTIVE))
    if not active:
        return
    runs = current_runs(active)
    now = timezone.now()
    endings: list[Ending] = []
    for job in active:
        ending = look_at(compute, driver, job, runs.get(job.pk, []), now, report)
        if ending is None:
            continue
        if ending.ran and not compute.serving:  # batch and serving jobs are Hangar's own
            ending.outputs = job_outputs.collect_job(driver, job, ending.runs)
            if ending.outputs.note:
                record(
                    compute,
                    EventVerb.JOB_OUTPUTS_NOT_KEPT,
                    f"Output files of job {job.name} (#{job.pk}): {ending.outputs.note}"[:1000],
                    level="warning",
                )
        if ending.output_cut:
            record(
                compute,
                EventVerb.JOB_OUTPUT_CUT,
                f"Output of job {job.name} (#{job.pk}) was cut at "
                f"{settings.HANGAR_JOB_OUTPUT_LIMIT_MB} MB (HANGAR_JOB_OUTPUT_LIMIT_MB).",
                level="warning",
            )
        report.finished.append(job.pk)
        endings.append(ending)
    write_endings(compute, endings, now)
    ended_runs = [run for e in endings for run in e.runs]
    for run in ended_runs:
        driver.release_run(run.container, run.key)
    free_nodes([run.node_id for run in ended_runs if run.node_id], timezone.now())


def free_nodes(node_ids: list[int], now: datetime) -> None:
    """Nodes whose last run was released go back to idle. A pass whose lease lapsed while
    it worked (a slow machine) may free a node another pass gave its next job meanwhile:
    a node a still-active job runs on stays running."""
    if not node_ids:
        return
    taken = node_holders().filter(node_id__in=node_ids).values("node_id")
    Node.objects.filter(pk__in=node_ids, state=NodeState.RUNNING).exclude(pk__in=taken).update(
        state=NodeState.IDLE, last_busy_at=now
    )


def free_held_nodes(compute: Compute, driver: JobRunner) -> None:
    """Running nodes no active job runs on: a pass ended their job and died before it
    released them (or a job failed to start on them). Their last run is released, as
    `collect` would have, and they go back to idle. One query when there are none.
    A compute going away removes its nodes whole instead."""
    if compute.state in GOING_AWAY:
        return
    taken = node_holders().filter(node__compute=compute).values("node_id")
    held = list(
        Node.objects.filter(compute=compute, state=NodeState.RUNNING)
        .exclude(pk__in=taken)
        .values_list("pk", flat=True)
    )
    if not held:
        return
    latest = JobRun.objects.filter(node_id__in=held).values("node_id").annotate(last=Max("pk"))
    for run in JobRun.objects.filter(pk__in=[row["last"] for row in latest]):
        driver.release_run(run.container, run.key)
    free_nodes(held, timezone.now())


def look_at(
    compute: Compute,
    driver: JobRunner,
    job: Job,
    runs: list[JobRun],
    now: datetime,
    report: JobReport,
) -> Ending | None:
    """Act on one active job as its ranks stand; its Ending if it ended, its ranks released."""
    states = [driver.job_state(run.key, run.container) for run in runs]
    never_launched = job.status == J.PREPARING and not any(r.launches for r in runs)
    if job.cancel_requested_at and never_launched and claim_launch(runs):
        # Canceled before its (dead) placer launched it: claiming the launch means no
        # one launches it now, and there is nothing to stop.
        return Ending(job, J.CANCELED, None, job.error or "Canceled.", runs, ran=False)
    verdict = judge(job, states)
    if verdict == Verdict.STOP:
        for run, state in zip(runs, states, strict=True):
            if state.exit_code is None:
                driver.cancel_job(run.container, run.key)
        return None
    if verdict == Verdict.RELAUNCH:
        relaunch_if_lost(compute, driver, job, runs, now, report)
        return None
    if started_unseen(job, runs, states):
        # Placed by a worker that died before it could say so: it runs all the same.
        show_running(job, runs, now)
    if verdict == Verdict.WAIT:
        return None
    for run, state in zip(runs, states, strict=True):
        run.exit_code, run.finished_at = state.exit_code, now
    status, code, error = how_it_ended(job, [s.exit_code for s in states])
    return Ending(job, status, code, error, runs, any(s.output_cut for s in states))


def judge(job: Job, states: list[jobfiles.RunState]) -> Verdict:
    """`states`: the driver's word on each rank of the job's current attempt."""
    if job.cancel_requested_at and any(s.exit_code is None for s in states):
        return Verdict.STOP
    if job.status == J.PREPARING and states and not any(s.started for s in states):
        return Verdict.RELAUNCH
    if not states or any(s.exit_code is None for s in states):
        return Verdict.WAIT
    return Verdict.END


def started_unseen(job: Job, runs: list[JobRun], states: list[jobfiles.RunState]) -> bool:
    """Started on its nodes while its rows say it has not: the job preparing or without a
    start time, or a run without one (its start is written in statements of their own, so
    a worker killed between them leaves the job running and a run without a start)."""
    unseen = job.status == J.PREPARING or not job.running_at
    return any(s.started for s in states) and (unseen or any(not r.started_at for r in runs))


def how_it_ended(job: Job, codes: list[int | None]) -> tuple[str, int | None, str]:
    """(status, exit code, error) of a job every rank of which exited with `codes`."""
    if job.cancel_requested_at:
        # The cancel's own words ("Canceled by bob."), as for a job canceled before it ran.
        return J.CANCELED, next((c for c in codes if c), 0), job.error or "Canceled."
    if all(code == 0 for code in codes):
        return J.COMPLETED, 0, ""
    rank, code = next((r, c) for r, c in enumerate(codes) if c != 0)
    return J.FAILED, code, f"Rank {rank} exited with code {code}."


def write_endings(compute: Compute, endings: list[Ending], now: datetime) -> None:
    """The ended jobs and their runs, in one transaction and a handful of statements
    however many jobs ended. Their nodes stay held until released (`collect`)."""
    if not endings:
        return
    completed = [e.job.pk for e in endings if e.status == J.COMPLETED]
    with transaction.atomic():
        for e in endings:
            if e.status != J.COMPLETED:
                finish(e.job, e.status, e.exit_code, e.error, now)
        if completed:
            Job.objects.filter(pk__in=completed).transition(
                JOB_ACTIVE, J.COMPLETED, exit_code=0, finished_at=now
            )
        for e in endings:
            if e.outputs.files or e.outputs.note:
                Job.objects.filter(pk=e.job.pk).update(
                    outputs_files=e.outputs.files,
                    outputs_bytes=e.outputs.bytes,
                    outputs_note=e.outputs.note,
                )
        if compute.is_instance:
            record_activity(compute.pk, f"job {endings[-1].job.name} finished", now)
        # One UPDATE per distinct exit code (almost always just 0), not one per run.
        by_code: dict[int | None, list[int]] = defaultdict(list)  # None: canceled unlaunched
        for run in (run for e in endings for run in e.runs):
            by_code[run.exit_code].append(run.pk)
        for code, run_ids in by_code.items():
            JobRun.objects.filter(pk__in=run_ids).update(exit_code=code, finished_at=now)


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


def fail_queued(compute: Compute, reason: str) -> int:
    """The queued jobs of a compute's own environment, which did not build: failed with the
    reason, rather than waiting for ever (jobs in other environments are not its)."""
    now = timezone.now()
    own = Job.objects.filter(compute=compute).filter(job_images.needs_own_image(compute))
    return own.transition(J.QUEUED, J.FAILED, error=reason, finished_at=now)


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


def demand(compute: Compute) -> tuple[int, int]:
    """(nodes the queue needs, queued jobs) for the autoscaler, in one query. A job waiting
    for its environment's build is no demand yet."""
    queued = Job.objects.filter(compute=compute, status=J.QUEUED)
    totals = queued.filter(job_images.placeable(compute)).aggregate(
        nodes=Sum("node_count"), jobs=Count("id")
    )
    return totals["nodes"] or 0, totals["jobs"]
