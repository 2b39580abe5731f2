"""Launching a placed job: the claim that lets one reconciler launch an attempt, the
ranks' environment, and the start on the driver.

Every path that starts a job goes through here (placement on nodes or on an attached
target, a relaunch after a worker died), so "an attempt starts at most once" holds in one
place: `claim_launch`, a compare-and-set made before anything starts.
"""

from __future__ import annotations

import socket

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from compute import enqueue
from compute.drivers import JobLaunch, JobRunner, NodeStartError
from compute.lib import secrets
from compute.models import Compute, Job, JobRun
from compute.models.jobs import CodeKind


def collect_soon(compute_id: int) -> None:
    """A followed run ended: reconcile now rather than at the next sweep."""
    enqueue.reconcile(compute_id)


def free_port() -> int:
    """A port for MASTER_PORT: free on this machine now (nodes share its loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
            **(job.chosen_environment.variables if job.chosen_environment else {}),
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
