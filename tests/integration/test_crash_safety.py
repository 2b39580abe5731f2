"""A worker SIGKILLed at any line: a job starts once, shows as running, and a dead worker's
compute is resumed at once by a live one. Starts are counted outside Hangar (StartCounter)."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import docker
import pytest
from django.conf import settings

from compute.actions.jobs import cancel_job, submit_job
from compute.controllers.reconcile import reconcile
from compute.drivers import JobLaunch, hostproc
from compute.drivers.node_runs import node_run_dir
from compute.drivers.node_scripts import JOB_USER
from compute.drivers.runners import SSHRunner
from compute.lib import jobfiles, ssh
from compute.models import Compute, Event, Job, JobRun, JobStatus, Node, NodeState
from tests.integration.helpers import run_together, wait_for
from tests.integration.test_jobs import cluster, docker_jobs  # noqa: F401 (fixture)
from tests.support.crash import StartCounter, reconcile_until
from tests.support.leftovers import remove_all_nodes
from tests.support.sshd import SSHServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
J = JobStatus


@pytest.fixture
def counter():
    counter = StartCounter()
    yield counter
    counter.close()


def one_idle_node(access, name: str) -> Compute:
    made = cluster(access, name=name, min_nodes=1, max_nodes=1, idle_seconds_before_scaledown=60)
    wait_for(
        lambda: (
            Node.objects.filter(compute=made, state=NodeState.IDLE)
            .exclude(container_ref="")
            .exists()
        ),
        what="an idle node",
    )
    return made


def refreshed(job: Job) -> Job:
    job.refresh_from_db()
    return job


def assert_ran_once(job: Job, counter: StartCounter) -> None:
    job = refreshed(job)
    assert job.status == J.COMPLETED, (job.status, job.error, story_of(job))
    assert counter.count(job.pk) == 1, f"job {job.pk} started {counter.count(job.pk)} times"
    assert job.running_at is not None and job.running_at <= job.finished_at
    runs = JobRun.objects.filter(job=job, attempt=job.retries)
    assert runs.exists() and not runs.filter(started_at__isnull=True).exists()


def story_of(job: Job) -> list[str]:
    """What its compute's events and its runs say (a failure's message: the CI run that
    fails is the one to read)."""
    runs = [
        f"run {r.attempt}/{r.rank} on node {r.node_id} launches={r.launches} "
        f"started={r.started_at} exit={r.exit_code}"
        for r in JobRun.objects.filter(job=job).order_by("attempt", "rank")
    ]
    events = [
        f"{e.created_at:%H:%M:%S.%f} {e.verb}: {e.message}"
        for e in job.compute.events.order_by("created_at", "id")
    ]
    return runs + events[-40:]


@pytest.mark.parametrize(
    ("module", "function", "relaunched"),
    [
        # Placed (committed) but never launched: launched again at once.
        ("compute.controllers.launches", "claim_launch", "was never launched"),
        # Launch written down, then the worker died before reaching the node: relaunched
        # once the launch is old enough to be lost, never twice.
        ("compute.drivers.docker", "_exec_stream", "had not started"),
        # Started in the node, the worker died before marking it running: it shows as
        # running (and finishes) without a second start.
        ("compute.controllers.jobs", "mark_running", ""),
    ],
    ids=["before-launch", "launch-recorded", "started-not-marked"],
)
def test_a_worker_killed_while_starting_a_job_starts_it_exactly_once(
    docker_jobs,  # noqa: F811
    workers,
    counter,
    module,
    function,
    relaunched,
):
    access = docker_jobs["access"]
    compute = one_idle_node(access, "crashy")
    workers.stop()  # nobody else reconciles: the crash below is the only placer
    job = submit_job(access, compute_id=compute.pk, name="once", command=counter.command())
    reconcile_until(compute.pk, module, function)
    assert refreshed(job).status == J.PREPARING

    workers.get("docker", HANGAR_NODE_NETWORK="host")
    wait_for(lambda: refreshed(job).status in (J.COMPLETED, J.FAILED), timeout=30, what="done")
    assert_ran_once(job, counter)
    events = Event.objects.filter(compute=compute, verb="job.relaunched")
    if relaunched:
        assert relaunched in events.get().message
    else:
        assert not events.exists()


def test_a_job_canceled_after_its_placer_died_ends_without_starting(
    docker_jobs,  # noqa: F811
    workers,
    counter,
):
    access = docker_jobs["access"]
    compute = one_idle_node(access, "dropped")
    workers.stop()
    job = submit_job(access, compute_id=compute.pk, name="never", command=counter.command())
    reconcile_until(compute.pk, "compute.controllers.launches", "claim_launch")
    cancel_job(access, job.pk)
    workers.get("docker", HANGAR_NODE_NETWORK="host")
    wait_for(lambda: refreshed(job).status == J.CANCELED, timeout=10, what="canceled")
    wait_for(
        lambda: Node.objects.filter(compute=compute, state=NodeState.IDLE).exists(),
        what="its node idle again",
    )
    time.sleep(1)  # a launch, if one were still coming, would have connected by now
    assert counter.count(job.pk) == 0


def test_a_worker_killed_between_a_jobs_end_and_its_release_frees_the_node_clean(
    docker_jobs,  # noqa: F811
    workers,
):
    """The job's end is written before its node is cleaned (so a waiter hears at once);
    a worker dying in between leaves the node held, never idle with the last job's files
    and processes in it. The next pass cleans it and frees it."""
    access = docker_jobs["access"]
    compute = one_idle_node(access, "held")
    job = submit_job(
        access,
        compute_id=compute.pk,
        name="leaves",
        command="echo left > /tmp/leftover; (sleep 300 &) ; sleep 2; echo done",
    )
    wait_for(lambda: refreshed(job).status == J.RUNNING, what="the job running")
    workers.stop()  # the job ends with nobody following it
    run = JobRun.objects.get(job=job)
    container = docker.from_env().containers.get(run.container)
    wait_for(
        lambda: container.exec_run(["cat", f"{node_run_dir(run.key)}/exit_code"]).exit_code == 0,
        what="the run's end in the node",
    )
    reconcile_until(compute.pk, "compute.drivers.docker", "release_run")
    assert refreshed(job).status == J.COMPLETED  # the end is written...
    node = Node.objects.get(pk=run.node_id)
    assert node.state == NodeState.RUNNING  # ...and the node, not cleaned, is still held
    assert "sleep 300" in str(container.top())

    reconcile(compute.pk)  # the next pass
    assert Node.objects.get(pk=node.pk).state == NodeState.IDLE
    assert "sleep 300" not in str(container.top())
    listed = container.exec_run(["ls", "-A", "/tmp"], user=JOB_USER).output.decode()  # noqa: S108 (the node's)
    assert "leftover" not in listed


def test_a_dead_workers_lease_is_taken_over_within_2_s_of_a_live_worker(
    docker_jobs,  # noqa: F811
    workers,
    counter,
):
    access = docker_jobs["access"]
    compute = one_idle_node(access, "leased")
    workers.stop()
    job = submit_job(access, compute_id=compute.pk, name="after", command=counter.command())
    # Dies holding a 60-second lease, just before placing the job.
    reconcile_until(
        compute.pk, "compute.controllers.placement", "place", HANGAR_RECONCILE_LEASE_SECONDS="60"
    )
    held = Compute.objects.get(pk=compute.pk)
    assert held.lease_owner and held.lease_until is not None

    workers.get("docker", HANGAR_NODE_NETWORK="host")
    ready = time.monotonic()
    wait_for(lambda: counter.count(job.pk) == 1, timeout=10, what="the job started")
    assert time.monotonic() - ready <= 2.0
    wait_for(lambda: refreshed(job).status == J.COMPLETED, timeout=15, what="completed")
    assert_ran_once(job, counter)


def test_a_look_alike_container_is_a_stray_and_never_hides_its_nodes_loss(
    docker_jobs,  # noqa: F811
    node_image,
):
    access = docker_jobs["access"]
    client = docker.from_env()
    compute = one_idle_node(access, "twins")
    job = submit_job(access, compute_id=compute.pk, name="long", command="sleep 60")
    wait_for(lambda: refreshed(job).status == J.RUNNING, what="running")
    node = Node.objects.get(compute=compute, state=NodeState.RUNNING)
    real = client.containers.get(node.container_ref)

    def look_alike(suffix: str):
        twin = client.containers.create(
            node_image,
            ["sleep", "300"],
            name=f"{real.name}-{suffix}",
            labels=real.labels,  # the node's exact labels
            network_mode="none",
        )
        try:
            twin.start()
        except docker.errors.APIError:
            # A sweep between create and start already took it for the stray it is (the
            # caller then waits for it to be gone, which holds already).
            pass
        return twin

    try:
        # A look-alike beside a live node: removed as a stray, the job untouched.
        twin = look_alike("a")
        wait_for(lambda: not container_exists(client, twin.id), timeout=10, what="stray removed")
        assert refreshed(job).status == J.RUNNING
        # The sweep records the removal just after it: polled (asked the moment the
        # container was gone, the event's row was once not yet committed).
        wait_for(
            lambda: Event.objects.filter(
                compute=compute, verb="node.orphan_removed", message__contains="carries the labels"
            ).exists(),
            timeout=5,
            what="the stray's removal recorded",
        )

        # The real container removed behind Hangar's back while a look-alike stands in.
        twin = look_alike("b")
        lost_at = time.monotonic()
        real.remove(force=True, v=True)
        wait_for(
            lambda: Node.objects.get(pk=node.pk).state == NodeState.UNUSABLE,
            timeout=10,
            what="the node's loss seen",
        )
        # Seen by the next sweeps (one a second), not hidden by the twin for long.
        assert time.monotonic() - lost_at <= 5.0
        assert refreshed(job).status in (J.QUEUED, J.PREPARING, J.RUNNING)
        # Requeued onto a new node, not left "running": by the same pass, a few milliseconds
        # after it marked the node (polled: asked at once, it was seen to fail either side).
        wait_for(lambda: refreshed(job).retries == 1, timeout=2, what="the job requeued")
        wait_for(lambda: not container_exists(client, twin.id), timeout=10, what="twin removed")
    finally:
        for container in client.containers.list(
            all=True,
            filters={"name": f"{real.name}-", "label": f"hangar.site={settings.HANGAR_SITE}"},
        ):
            container.remove(force=True, v=True)


def container_exists(client, ref: str) -> bool:
    try:
        client.containers.get(ref)
        return True
    except docker.errors.NotFound:
        return False


def test_chaos_every_job_completes_exactly_once_through_worker_kills(
    docker_jobs,  # noqa: F811
    workers,
    counter,
):
    """~30 short jobs on two clusters while the worker is SIGKILLed at random moments
    about 8 times (a fixed seed, so a failure can be replayed)."""
    access = docker_jobs["access"]
    chance = random.Random(13)  # noqa: S311
    clusters = [
        cluster(access, name=f"chaos-{i}", max_nodes=2, idle_seconds_before_scaledown=30)
        for i in range(2)
    ]
    jobs = []
    for i in range(30):
        target = clusters[i % 2]
        jobs.append(
            submit_job(
                access,
                compute_id=target.pk,
                name=f"c{i}",
                command=counter.command(then=f"sleep 0.{chance.randint(1, 6)}"),
            )
        )
        if i % 4 == 1:  # 8 kills, at random moments
            time.sleep(chance.uniform(0.0, 0.8))
            workers.current.kill()  # SIGKILL, worker and beat
            workers.get("docker", HANGAR_NODE_NETWORK="host")
    ended = (J.COMPLETED, J.FAILED, J.CANCELED)
    wait_for(
        lambda: all(refreshed(job).status in ended for job in jobs), timeout=60, what="all ended"
    )
    for job in jobs:
        assert_ran_once(job, counter)
    # Nothing stranded: every container of these clusters is a live node's container.
    driver = docker_jobs["driver"]
    for made in clusters:
        assert Job.objects.filter(compute=made).exclude(status__in=ended).count() == 0
        wait_for(
            lambda c=made: (
                {o.ref for o in driver.list_nodes(c.pk)}
                == set(
                    Node.objects.filter(compute=c, state__in=("idle", "running")).values_list(
                        "container_ref", flat=True
                    )
                )
            ),
            timeout=5,
            what="containers and nodes agree",
        )
    remove_all_nodes()


def test_a_host_process_run_launched_twice_at_once_starts_once(counter, settings):
    """Two reconcilers (a lapsed lease) launch one run on the local driver within the
    moment its supervisor takes to start: one process, not two."""
    job_id = 900_000 + random.randrange(99_999)  # noqa: S311 (a record of its own)
    launch = JobLaunch(
        container="local",
        run_key=f"{job_id}/a0-r0-twice",
        command=counter.command(then="true", nc="busybox nc"),
        environment={"HANGAR_JOB_ID": str(job_id)},
    )
    try:
        run_together(*[lambda: hostproc.start_run(launch)] * 3)
        wait_for(lambda: jobfiles.read_run(launch.run_key).exit_code is not None, what="ended")
        time.sleep(0.5)  # a second supervisor, if one started, has connected by now
        assert counter.count(job_id) == 1
    finally:
        shutil.rmtree(jobfiles.runs_root() / str(job_id), ignore_errors=True)


def test_an_ssh_run_launched_again_after_a_crash_starts_once(counter, settings):
    """A relaunch of a run already started over SSH leaves it be: no second process, and
    the first one's output is not wiped."""
    server = SSHServer().start()
    try:
        endpoint = ssh.Endpoint("127.0.0.1", server.port, server.user, server.private_key)
        runner = SSHRunner(endpoint, settings.HANGAR_SITE)
        job_id = 900_000 + random.randrange(99_999)  # noqa: S311 (a record of its own)
        command = counter.command(then="echo first; sleep 1", nc="busybox nc")
        launch = JobLaunch(
            container="vm",
            run_key=f"{job_id}/a0-r0-again",
            command=command,
            environment={"HANGAR_JOB_ID": str(job_id), "HANGAR_COMMAND": command},
        )
        runner.start_job(launch)
        wait_for(lambda: counter.count(job_id) == 1, what="the first start")
        runner.start_job(launch)  # the relaunch
        wait_for(lambda: runner.job_state(launch.run_key, "vm").exit_code is not None, what="end")
        assert counter.count(job_id) == 1
        assert "first" in jobfiles.read_output(launch.run_key)
    finally:
        server.close()
        shutil.rmtree(jobfiles.runs_root() / str(job_id), ignore_errors=True)
        shutil.rmtree(Path.home() / ".hangar" / settings.HANGAR_SITE / "runs" / str(job_id), True)
