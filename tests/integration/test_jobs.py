"""Jobs on real nodes with a real worker: autoscaling, ranks, failure, cancel, crashes,
concurrency, preemption."""

from __future__ import annotations

import threading

import docker
import pytest
from django.db import connection, transaction

from compute.actions import computes as actions
from compute.actions.jobs import cancel_job, preempt_node, submit_job
from compute.drivers import node_scripts, processes
from compute.drivers.node_runs import node_run_dir
from compute.lib import jobfiles
from compute.models import (
    Compute,
    ComputeState,
    EventVerb,
    Job,
    JobStatus,
    Node,
    NodeState,
    VmSize,
)
from tests.integration.helpers import (
    ContainerEvents,
    driver_named,
    peak_claimed_nodes,
    wait_for,
)
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from tests.support.worker import SWEEP_SECONDS as SWEEP_EVERY
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
J = JobStatus
JOB_UID = int(node_scripts.JOB_USER.split(":")[0])
SWEEP_SECONDS = float(SWEEP_EVERY)


@pytest.fixture
def docker_jobs(workers, catalog, node_image, settings):
    settings.HANGAR_DRIVER = "docker"
    settings.HANGAR_NODE_NETWORK = "host"
    worker = workers.get("docker", HANGAR_NODE_NETWORK="host")
    team = make_team("jobs")
    yield {
        "access": get_access(team.admin, team.workspace.slug),
        "team": team,
        "worker": worker,
        "driver": driver_named("docker"),
    }
    remove_all_nodes()


def cluster(access, name="trainers", **bounds) -> Compute:
    values = {"min_nodes": 0, "max_nodes": 2, "idle_seconds_before_scaledown": 2, **bounds}
    made = actions.create_cluster(
        access, name=name, vm_size=VmSize.objects.get(name="Standard_DS3_v2"), **values
    )
    wait_for(lambda: Compute.objects.get(pk=made.pk).state == ComputeState.STEADY, what="steady")
    return made


def live_nodes(compute: Compute) -> int:
    return Node.objects.filter(compute=compute, state__in=("preparing", "idle", "running")).count()


def output(job: Job, rank: int = 0) -> str:
    run = job.runs.get(rank=rank, attempt=job.retries)
    return jobfiles.read_output(run.key)


def status(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def job_processes(container: str) -> list[str]:
    """Every live process of the job user in the node, read from the node's /proc: what a
    job started, children and grandchildren included, whatever their command lines."""
    script = (
        "for d in /proc/[0-9]*; do s=$(cat $d/status 2>/dev/null) || continue; "
        "echo \"$s\" | grep -E '^(Name|State|Pid|Uid):' | tr '\\n\\t' '  '; echo; done"
    )
    listed = docker.from_env().containers.get(container).exec_run(["sh", "-c", script])
    found = []
    for line in listed.output.decode().splitlines():
        fields = line.split()
        if "Uid:" not in fields:
            continue
        uid = int(fields[fields.index("Uid:") + 1])
        state = fields[fields.index("State:") + 1]
        if uid == JOB_UID and state not in ("Z", "X"):
            found.append(f"{fields[fields.index('Pid:') + 1]} {fields[fields.index('Name:') + 1]}")
    return found


def node_has_exit_code(run_key: str, container: str) -> bool:
    """The run's wrapper wrote its exit code inside the node (nothing of Hangar's needed)."""
    found = (
        docker.from_env()
        .containers.get(container)
        .exec_run(["test", "-e", f"{node_run_dir(run_key)}/exit_code"])
    )
    return found.exit_code == 0


def test_three_jobs_scale_a_cluster_up_and_back_to_zero(docker_jobs):
    access, driver = docker_jobs["access"], docker_jobs["driver"]
    trainers = cluster(access)
    with ContainerEvents() as containers:
        with transaction.atomic():  # one click on "submit 3": the autoscaler sees them together
            jobs = [
                submit_job(
                    access,
                    compute_id=trainers.pk,
                    name=f"train-{i}",
                    command=f"sleep 1; echo done {i}",
                )
                for i in range(3)
            ]

        wait_for(
            lambda: all(status(job) == J.COMPLETED for job in jobs),
            timeout=30,
            what="3 jobs completed",
        )
        finished = max(job.finished_at for job in jobs)
        for i, job in enumerate(jobs):
            assert job.exit_code == 0
            assert output(job) == f"done {i}\n"
        wait_for(
            lambda: live_nodes(trainers) == 0 and not driver.list_nodes(trainers.pk), timeout=8
        )
        # Counted over the whole run, not sampled: never a third node, nor a third container.
        assert peak_claimed_nodes(trainers) == 2
        assert containers.peak_running(trainers) == 2
    messages = list(trainers.events.order_by("created_at").values_list("message", flat=True))
    assert any(m.startswith("Scaled 0 → 2: 3 jobs queued need 3 node(s)") for m in messages)
    # Removed once idle 2 s, by the sweep after: timed when the removal happened (its
    # event), not when this test looked; a second's sweep period and two of slack.
    removals = trainers.events.filter(verb=EventVerb.NODE_REMOVED)
    assert removals.count() == 2
    assert all(
        "removed: idle" in m and "≥ 2 s" in m for m in removals.values_list("message", flat=True)
    )
    last_removal = max(removals.values_list("created_at", flat=True))
    assert (last_removal - finished).total_seconds() <= 2 + SWEEP_SECONDS + 2


def test_a_two_node_job_gets_ranks_and_its_nodes_reach_each_other(docker_jobs):
    access = docker_jobs["access"]
    trainers = cluster(access, name="pair")
    # Rank 0's nc keeps its stdin open a moment: busybox nc, its stdin at an end (a job's
    # is /dev/null), quits as soon as it accepts, before the peer's line can arrive (the CI
    # caught it on a loaded machine: rank 0 printed nothing).
    command = (
        'echo "rank=$RANK world=$WORLD_SIZE local=$LOCAL_RANK job=$HANGAR_JOB_ID"; '
        'if [ "$RANK" = 0 ]; then sleep 3 | nc -l -p "$MASTER_PORT"; '
        'else for i in $(seq 50); do echo "hello from rank 1" | nc "$MASTER_ADDR" "$MASTER_PORT" '
        "&& break; sleep 0.1; done; fi"
    )
    job = submit_job(access, compute_id=trainers.pk, name="ddp", command=command, node_count=2)
    wait_for(lambda: status(job) in (J.COMPLETED, J.FAILED), timeout=30, what="finished")
    assert job.status == J.COMPLETED, job.error
    assert output(job, 0) == f"rank=0 world=2 local=0 job={job.pk}\nhello from rank 1\n"
    assert output(job, 1).startswith(f"rank=1 world=2 local=0 job={job.pk}\n")
    assert len({run.node_id for run in job.runs.all()}) == 2


def test_a_failing_command_keeps_its_exit_code_and_stderr(docker_jobs):
    access = docker_jobs["access"]
    trainers = cluster(access, name="failing", max_nodes=1)
    job = submit_job(
        access,
        compute_id=trainers.pk,
        name="oops",
        command="echo out; echo 'bad thing' >&2; exit 3",
    )
    wait_for(lambda: status(job) == J.FAILED, timeout=20, what="failed")
    assert job.exit_code == 3
    assert "Rank 0 exited with code 3." in job.error
    assert output(job) == "out\nbad thing\n"


def test_cancel_ends_every_process_of_a_running_job_and_keeps_the_node(docker_jobs):
    """Counted in the node's /proc, not by a command line: the job's shell, the `sleep` it
    waits on and a child that ignores TERM (only the KILL that follows reaches it)."""
    access = docker_jobs["access"]
    trainers = cluster(access, name="cancel", max_nodes=1)
    command = "(trap '' TERM; sleep 300) & echo started; sleep 300; echo never"
    job = submit_job(access, compute_id=trainers.pk, name="long", command=command)
    wait_for(lambda: status(job) == J.RUNNING and "started" in output(job), timeout=20)
    run = job.runs.get()

    def both_sleeps_seen() -> list[str]:
        found = job_processes(run.container)
        return found if sum(p.endswith(" sleep") for p in found) >= 2 else []

    before = wait_for(both_sleeps_seen, what="the job's processes, counted")  # the count sees them
    cancel_job(access, job.pk)
    # Bounded well below the job's 300 s: a TERM→KILL second, a sweep period, slack.
    wait_for(lambda: status(job) == J.CANCELED, timeout=15, what="canceled")
    took = (job.finished_at - job.cancel_requested_at).total_seconds()
    assert took <= processes.KILL_AFTER + SWEEP_SECONDS + 3, took
    # Released before the node takes another job: not one of the job's processes is left.
    wait_for(lambda: not job_processes(run.container), timeout=3, what=f"none of {before} left")
    assert "never" not in output(job)
    assert Node.objects.get(pk=run.node_id).state == NodeState.IDLE
    assert docker.from_env().containers.get(run.container).status == "running"  # the node stays


def test_a_job_outlives_a_killed_worker_and_its_result_is_collected(docker_jobs, workers):
    access = docker_jobs["access"]
    trainers = cluster(access, name="survivor", max_nodes=1)
    job = submit_job(
        access, compute_id=trainers.pk, name="steady", command="echo begin; sleep 3; echo end"
    )
    wait_for(lambda: status(job) == J.RUNNING, timeout=20, what="running")
    docker_jobs["worker"].kill()
    run = job.runs.get()
    # The job finishes while no worker is alive: its exit code is in the node, not yet here.
    wait_for(lambda: node_has_exit_code(run.key, run.container), timeout=10, what="ended")
    assert status(job) == J.RUNNING
    workers.get("docker", HANGAR_NODE_NETWORK="host")
    wait_for(lambda: status(job) == J.COMPLETED, timeout=20, what="collected")
    assert job.exit_code == 0 and output(job) == "begin\nend\n"


def test_twenty_concurrent_submissions_never_exceed_max_nodes(docker_jobs):
    access = docker_jobs["access"]
    trainers = cluster(access, name="crowd", max_nodes=3)
    barrier = threading.Barrier(20)
    submitted: list[Job] = []

    def submit(i: int) -> None:
        try:
            barrier.wait()
            submitted.append(
                submit_job(access, compute_id=trainers.pk, name=f"j{i}", command="sleep 0.5")
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    with ContainerEvents() as containers:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_for(
            lambda: len(submitted) == 20 and all(status(job) == J.COMPLETED for job in submitted),
            timeout=120,  # liveness only, on a shared and sometimes heavily loaded machine
            what="20 jobs",
        )
        # Counted over the whole run, not sampled: a node claimed for a moment too many, or
        # a container started for one, is in the count however short it lived.
        assert peak_claimed_nodes(trainers) == 3
        assert containers.peak_running(trainers) == 3


def test_a_preempted_node_requeues_its_job_which_completes_elsewhere(docker_jobs):
    access = docker_jobs["access"]
    trainers = cluster(access, name="cheap", tier="low_priority", min_nodes=2, max_nodes=2)
    wait_for(lambda: live_nodes(trainers) == 2, what="2 nodes")
    job = submit_job(
        access, compute_id=trainers.pk, name="resilient", command="echo try; sleep 2; echo ok"
    )
    wait_for(lambda: status(job) == J.RUNNING, timeout=20)
    first = job.runs.get().node
    preempt_node(access, first.pk)
    wait_for(lambda: status(job) == J.COMPLETED, timeout=30, what="completed after requeue")
    assert job.retries == 1
    second = job.runs.get(attempt=1).node_id
    assert second != first.pk
    assert output(job) == "try\nok\n"
    assert trainers.events.filter(message__contains="requeued: node").exists()
    assert Node.objects.get(pk=first.pk).state == NodeState.PREEMPTED
