"""Attached compute figure: a trivial job on an SSH target, submit → completed, next to the
floor of running the same command with the `ssh` client against the same real sshd, in
the same run (rounds alternate, so both see the same machine)."""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid

from django.conf import settings

from bench.jobs import percentile, wait
from compute.actions import attached as attach_actions
from compute.actions.jobs import submit_job
from compute.models import Compute, ComputeState, Job, JobStatus
from config.celery import app
from tests.support import leftovers
from tests.support.sshd import SSHServer
from tests.support.teams import make_team
from tests.support.worker import Worker
from workspace.access import get_access

ROUNDS = 20
COMMAND = "echo hello"


def floor_run(server: SSHServer) -> float:
    began = time.perf_counter()
    done = subprocess.run(server.ssh_command(COMMAND), capture_output=True, check=True)
    elapsed = time.perf_counter() - began
    assert done.stdout.strip() == b"hello"
    return elapsed


def hangar_run(access, compute: Compute) -> float:
    began = time.perf_counter()
    job = submit_job(access, compute_id=compute.pk, name="trivial", command=COMMAND)
    wait(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.COMPLETED).exists(), timeout=30)
    return time.perf_counter() - began


def run() -> None:
    server = SSHServer().start()
    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    worker = Worker(queue, "local", {"HANGAR_SWEEP_SECONDS": "1"}).start()
    team = make_team("sshbench")
    access = get_access(team.contributor, team.workspace.slug)
    try:
        compute = attach_actions.attach(
            access,
            target_kind="remote_vm",
            name="ssh-bench",
            max_concurrent_jobs=1,
            connection=server.connection(),
        )
        wait(lambda: Compute.objects.get(pk=compute.pk).state == ComputeState.STEADY, timeout=30)
        hangar_run(access, compute)  # warm: the worker's first connection and imports
        floors, hangars = [], []
        for _ in range(ROUNDS):
            floors.append(floor_run(server))
            hangars.append(hangar_run(access, compute))
    finally:
        worker.stop()
        leftovers.end_ssh_runs()  # a run that timed out ends with the section
        server.close()
    floor_ms = statistics.median(floors) * 1000
    hangar_ms = statistics.median(hangars) * 1000
    print(
        f"{'SSH target: trivial job submit → completed':<44} hangar p50={hangar_ms:6.0f} ms "
        f"p95={percentile(hangars, 0.95) * 1000:6.0f} ms  `ssh` floor p50={floor_ms:6.0f} ms  "
        f"over floor={hangar_ms - floor_ms:+5.0f} ms (goal ≤ +300 ms, {ROUNDS} rounds)"
    )
