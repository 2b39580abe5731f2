"""Job figures: cold and warm start against the Docker SDK floor, scale-down lateness,
and placement throughput on the no-op driver."""

from __future__ import annotations

import os
import shutil
import statistics
import time
import uuid

import docker
from django.conf import settings
from django.utils import timezone
from docker.types import Mount

from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.controllers.reconcile import reconcile
from compute.drivers import build_driver
from compute.drivers.base import container_name
from compute.drivers.node_scripts import JOB_USER, NODE_USER, NODE_WORK
from compute.lib import images, jobfiles
from compute.models import (
    Compute,
    ComputeState,
    FamilyQuota,
    Job,
    JobStatus,
    Node,
    NodeState,
    VmSize,
)
from config.celery import app
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from tests.support.worker import Worker
from workspace.access import get_access

MARKER = "echo started; sleep 30"
# The warm job prints the machine's uptime (the same clock in a container as here) every
# 0.2 s: how late each line reaches Hangar's record is how late it reaches the page.
TICKER = "echo started; while :; do cat /proc/uptime; sleep 0.2; done"
ROUNDS = 7


def wait(predicate, timeout: float = 60, step: float = 0.002):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out")
        time.sleep(step)
    return value


def started(job: Job) -> bool:
    """The job's first output is in the record. The run's key is looked up once, then only
    the file is polled: a query every few milliseconds would slow the worker it measures
    on 2 cores."""
    key = _keys.get(job.pk)
    if key is None:
        run = job.runs.filter(attempt=0, rank=0).first()
        if run is None:
            time.sleep(0.005)  # not placed yet: no need to ask again at once
            return False
        key = _keys[job.pk] = run.key
    return jobfiles.read_output(key).startswith("started")


_keys: dict[int, str] = {}


def floor_start(client: docker.DockerClient, size: VmSize, image: str = "") -> float:
    """The same sandbox straight through the SDK: create + start a container with the
    node's limits and lock-down, exec the command, and read its first output off the exec
    stream (no Hangar, no database, no worker)."""
    name = f"hangar-bench-floor-{uuid.uuid4().hex[:6]}"
    memory = int(float(size.memory_gib) * settings.HANGAR_MEMORY_SCALE * 1024**3)
    began = time.perf_counter()
    container = client.containers.create(
        image or settings.HANGAR_NODE_IMAGE,
        command=list(settings.HANGAR_NODE_COMMAND),
        name=name,
        labels={"hangar.site": settings.HANGAR_SITE},
        nano_cpus=int(size.vcpus * settings.HANGAR_CPU_SCALE * 1e9),
        mem_limit=memory,
        memswap_limit=memory,
        init=True,
        network_mode="none",
        user=NODE_USER,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        pids_limit=settings.HANGAR_NODE_PIDS_LIMIT,
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,exec,size=64m,mode=1777"},  # noqa: S108
        mounts=[Mount(NODE_WORK, None, type="volume")],
        detach=True,
    )
    try:
        container.start()
        exec_id = client.api.exec_create(container.id, ["sh", "-c", MARKER], user=JOB_USER)
        stream = client.api.exec_start(exec_id["Id"], stream=True)
        first = next(iter(stream))
        assert first.startswith(b"started"), first
        return time.perf_counter() - began
    finally:
        container.remove(force=True, v=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def bench_starts() -> None:
    client = docker.from_env()
    if not images.image_exists(client, settings.HANGAR_NODE_IMAGE):
        images.build_tiny(client, settings.HANGAR_NODE_IMAGE)  # about a second, no registry
    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.HANGAR_DRIVER = "docker"
    worker = Worker(queue, "docker", {"HANGAR_SWEEP_SECONDS": os.environ.get("SWEEP", "1")}).start()
    team = make_team("jobbench")
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_DS3_v2")
    try:
        cold, warm, floors, lateness, live, steps = [], [], [], [], [], []
        back_to_back: list[float] = []
        for round_ in range(ROUNDS):
            floors.append(floor_start(client, size))
            cluster = actions.create_cluster(
                access,
                name=f"cold-{round_}",
                vm_size=size,
                max_nodes=1,
                idle_seconds_before_scaledown=1,
            )
            wait(lambda c=cluster: Compute.objects.get(pk=c.pk).state == ComputeState.STEADY)
            began = time.perf_counter()
            job = submit_job(access, compute_id=cluster.pk, name="cold", command=MARKER)
            wait(lambda j=job: started(j))
            cold.append(time.perf_counter() - began)
            cancel_and_idle(access, job)
            time.sleep(0.5)  # an idle node: the last run's teardown in the engine is over
            began, asked = time.perf_counter(), timezone.now()
            job = submit_job(access, compute_id=cluster.pk, name="warm", command=TICKER)
            wait(lambda j=job: started(j))
            warm.append(time.perf_counter() - began)
            steps.append(warm_steps(job, asked))
            live += output_delays(job)
            cancel_and_idle(access, job)
            # Back to back: submitted the moment the last job's cancel completed.
            began = time.perf_counter()
            job = submit_job(access, compute_id=cluster.pk, name="next", command=MARKER)
            wait(lambda j=job: started(j))
            back_to_back.append(time.perf_counter() - began)
            cancel_and_idle(access, job)
            lateness.append(scale_down_lateness(client, cluster))
            actions.delete_compute(access, cluster.pk)
            wait(lambda c=cluster: Compute.objects.get(pk=c.pk).state == ComputeState.DELETED)
    finally:
        worker.stop()
        remove_all_nodes()  # a round that failed or timed out leaves no node running
    floor = statistics.median(floors)
    cold_ms, floor_ms = statistics.median(cold) * 1000, floor * 1000
    print(
        f"{'cold start: submit → process running':<44} hangar p50={cold_ms:6.0f} ms  "
        f"floor p50={floor_ms:6.0f} ms  over floor={cold_ms - floor_ms:+5.0f} ms (goal ≤ +150 ms)"
    )
    print(
        f"{'warm start: submit → process running':<44} "  # on an idle node
        f"p50={statistics.median(warm) * 1000:6.0f} ms  "
        f"p95={percentile(warm, 0.95) * 1000:6.0f} ms (goals p50 ≤ 100 ms, p95 ≤ 250 ms)"
    )
    print(
        f"{'back to back: submit → process running':<44} "
        f"p50={statistics.median(back_to_back) * 1000:6.0f} ms  "
        f"p95={percentile(back_to_back, 0.95) * 1000:6.0f} ms (the last job's cancel just done)"
    )
    stored, placed, launched, shown = (
        statistics.median(c) * 1000 for c in zip(*steps, strict=True)
    )
    print(
        f"{'  warm start, where the time goes (p50)':<44} call → stored {stored:4.0f} ms, "
        f"stored → placed {placed:4.0f} ms, "
        f"placed → launched {launched:4.0f} ms, launched → output seen {shown:4.0f} ms"
    )
    print(
        f"{'live output: written in node → in record':<44} "
        f"p50={statistics.median(live) * 1000:6.0f} ms  "
        f"p95={percentile(live, 0.95) * 1000:6.0f} ms  max={max(live) * 1000:6.0f} ms "
        f"(n={len(live)}; goal ≤ 1 s)"
    )
    print(
        f"{'scale-down lateness: deadline → gone':<44} "
        f"p50={statistics.median(lateness):5.2f} s  "
        f"p95={percentile(lateness, 0.95):5.2f} s (goal p95 ≤ 1.5 s)"
    )


def warm_steps(job: Job, asked) -> tuple[float, float, float, float]:
    """Seconds from the call to the stored job, from there to placement, placement to a
    launched process, and from there to its first output in the record (read just now,
    so an upper bound)."""
    seen = timezone.now()
    job.refresh_from_db()
    return (
        (job.queued_at - asked).total_seconds(),
        (job.preparing_at - job.queued_at).total_seconds(),
        (job.running_at - job.preparing_at).total_seconds(),
        (seen - job.running_at).total_seconds(),
    )


def uptime() -> float:
    with open("/proc/uptime") as handle:
        return float(handle.read().split()[0])


def output_delays(job: Job, lines: int = 10) -> list[float]:
    """Seconds from each uptime line being written in the node to its being in the record
    (uptime has 10 ms steps, so a delay reads up to 10 ms long)."""
    key = job.runs.get(attempt=0, rank=0).key
    seen = set(jobfiles.read_output(key).splitlines())  # written before we looked
    delays: list[float] = []
    deadline = time.monotonic() + 10
    while len(delays) < lines and time.monotonic() < deadline:
        now = uptime()
        for line in jobfiles.read_output(key).splitlines()[1:]:
            if line not in seen and line.split():
                seen.add(line)
                delays.append(max(0.0, now - float(line.split()[0])))
        time.sleep(0.005)
    return delays


def cancel_and_idle(access, job: Job) -> None:
    from compute.actions.jobs import cancel_job

    cancel_job(access, job.pk)
    wait(lambda: Job.objects.get(pk=job.pk).status == JobStatus.CANCELED)


def scale_down_lateness(client: docker.DockerClient, cluster: Compute) -> float:
    node = wait(lambda: Node.objects.filter(compute=cluster, state=NodeState.IDLE).first())
    deadline = node.last_busy_at.timestamp() + cluster.idle_seconds_before_scaledown
    name = container_name(settings.HANGAR_SITE, cluster.pk, node.pk)
    wait(lambda: container_gone(client, name), step=0.01)
    return time.time() - deadline


def container_gone(client: docker.DockerClient, name: str) -> bool:
    try:
        client.containers.get(name)
        return False
    except docker.errors.NotFound:
        return True


def bench_placement(total: int = 10_000, nodes: int = 100) -> None:
    settings.HANGAR_DRIVER = "noop"
    settings.HANGAR_MAX_NODES_LIMIT = nodes  # a bench-sized site
    driver = build_driver("noop", settings.HANGAR_SITE)
    team = make_team("placement")
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_D2s_v3")
    FamilyQuota.objects.create(  # room for the whole bench-sized cluster
        workspace=team.workspace, family=size.family, limit=10_000, approved=10_000
    )
    cluster = actions.create_cluster(
        access, name="wide", vm_size=size, min_nodes=nodes, max_nodes=nodes
    )
    reconcile(cluster.pk, driver)
    assert Node.objects.filter(compute=cluster, state=NodeState.IDLE).count() == nodes
    now = timezone.now()
    Job.objects.bulk_create(
        Job(
            workspace=team.workspace,
            compute=cluster,
            name=f"j{i}",
            command="true",
            queued_at=now,
            submitted_by=team.admin,
        )
        for i in range(total)
    )
    began = time.perf_counter()
    passes = placed = 0
    outcome = None
    while placed < total or (outcome and outcome.jobs.finished):
        outcome = reconcile(cluster.pk, driver)
        placed += len(outcome.jobs.placed)
        passes += 1
        if passes > total:
            raise SystemExit("placement did not finish")
    elapsed = time.perf_counter() - began
    assert Job.objects.filter(compute=cluster, status=JobStatus.COMPLETED).count() == total
    label = f"placement: {total} jobs on {nodes} idle nodes (no-op)"
    print(
        f"{label:<44} {total / elapsed:7.0f} placements/s  "
        f"({elapsed:.2f} s, {passes} passes; goal ≥ 1,000/s)"
    )
    for job_id in Job.objects.filter(compute=cluster).values_list("pk", flat=True):
        shutil.rmtree(jobfiles.runs_root() / str(job_id), ignore_errors=True)


def bench_worker_kill(rounds: int = 5) -> None:
    """A worker SIGKILLed the moment its last job completed (it may still be collecting
    it, holding the cluster's lease); a short job is submitted to the cluster's idle node
    while no worker lives; a new worker starts. From the kill, and from the new worker
    being ready, to that job completed."""
    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.HANGAR_DRIVER = "docker"
    environment = {"HANGAR_SWEEP_SECONDS": os.environ.get("SWEEP", "1")}
    team = make_team("killbench")
    access = get_access(team.admin, team.workspace.slug)
    worker = Worker(queue, "docker", environment).start()
    kill_to_done, start_up, ready_to_done = [], [], []
    try:
        cluster = actions.create_cluster(
            access,
            name="survivor",
            vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
            min_nodes=1,
            max_nodes=1,
        )
        wait(lambda: Node.objects.filter(compute=cluster, state=NodeState.IDLE).exists())
        for round_ in range(rounds):
            job = submit_job(access, compute_id=cluster.pk, name=f"before-{round_}", command="true")
            wait(lambda j=job: Job.objects.get(pk=j.pk).status == JobStatus.COMPLETED)
            killed = time.perf_counter()
            worker.kill()
            job = submit_job(access, compute_id=cluster.pk, name=f"after-{round_}", command="true")
            worker = Worker(queue, "docker", environment).start()
            ready = time.perf_counter()
            wait(lambda j=job: Job.objects.get(pk=j.pk).status == JobStatus.COMPLETED)
            done = time.perf_counter()
            kill_to_done.append(done - killed)
            start_up.append(ready - killed)
            ready_to_done.append(done - ready)
    finally:
        worker.stop()
        remove_all_nodes()
    start_p50 = statistics.median(start_up)
    print(
        f"{'worker SIGKILL → next job completed':<44} p50={statistics.median(kill_to_done):5.2f} s"
        f"  max={max(kill_to_done):5.2f} s  worker start-up p50={start_p50:5.2f} s "
        f"(goal ≤ start-up + 1 s = {start_p50 + 1:4.2f} s)"
    )
    print(
        f"{'  of which new worker ready → completed':<44} "
        f"p50={statistics.median(ready_to_done):5.2f} s  max={max(ready_to_done):5.2f} s "
        f"(n={rounds}; goal ≤ 1 s; lease {settings.HANGAR_RECONCILE_LEASE_SECONDS:g} s)"
    )


def run() -> None:
    bench_starts()
    bench_worker_kill()
    bench_placement()
