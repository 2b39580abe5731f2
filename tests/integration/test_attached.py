"""Attached computes against a real OpenSSH server on 127.0.0.1 and a real worker:
validation and its failures, host key pinning, jobs over SSH (output, failure, cancel, a
worker killed mid-job), health, and the local computer."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from compute.actions import attached as attach_actions
from compute.actions.jobs import Code, cancel_job, submit_job
from compute.lib import jobfiles
from compute.models import Attachment, Compute, ComputeState, Job, JobRun, JobStatus
from tests.integration.helpers import run_together, wait_for
from tests.support import leftovers
from tests.support.sshd import SSHServer
from tests.support.teams import make_site_staff, make_team
from tests.support.worker import children
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S, J = ComputeState, JobStatus
WORKER_ENV = {"HANGAR_ATTACHED_HEALTH_SECONDS": "1"}
LONG = "sleep 300; echo long done"
# A reconcile that did the work (not skipped) and left the compute steady: the validation.
VALIDATED_LINE = re.compile(
    r"hangar\.reconcile\[[^\]]+\] succeeded .*'skipped': False, 'state': 'steady'"
)


def age(path: Path, seconds: float = 120) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def remote_session(job: Job) -> int:
    """The session the job leads over there (this machine), by the pid its run recorded:
    the `sleep` child is in it too, unlike in a command-line marker."""
    run = wait_for(lambda: job.runs.first(), what="a run")
    pid_file = leftovers.ssh_runs_root() / run.key / "pid"
    return wait_for(lambda: leftovers.recorded_session(pid_file), what="the remote process runs")


@pytest.fixture(scope="module")
def sshd():
    server = SSHServer().start()
    yield server
    server.close()


@pytest.fixture
def attached(workers, catalog, sshd, settings):
    settings.HANGAR_ATTACHED_HEALTH_SECONDS = 1.0
    worker = workers.get("local", **WORKER_ENV)
    team = make_team("remote")
    access = get_access(team.contributor, team.workspace.slug)
    yield {"team": team, "access": access, "worker": worker}
    # Jobs a test left running end now, and their wrappers write their exit codes before
    # the next test starts (on SQLite job ids, hence run folders, are reused).
    ended = leftovers.end_ssh_runs()
    wait_for(
        lambda: all((run / "exit_code").exists() for run in ended), timeout=5, what="exit codes"
    )


def attach_vm(
    access, sshd, name="gpu-box", target_kind="remote_vm", max_concurrent_jobs=1, **connection
) -> Compute:
    return attach_actions.attach(
        access,
        target_kind=target_kind,
        name=name,
        max_concurrent_jobs=max_concurrent_jobs,
        connection=sshd.connection(**connection),
    )


def settled(compute: Compute) -> Compute:
    wait_for(
        lambda: Compute.objects.get(pk=compute.pk).state in (S.STEADY, S.FAILED),
        what=f"{compute.name} validated",
    )
    return Compute.objects.select_related("attachment").get(pk=compute.pk)


def finished(job: Job, timeout: float = 20) -> Job:
    wait_for(lambda: Job.objects.get(pk=job.pk).is_terminal, timeout=timeout, what="job ends")
    return Job.objects.get(pk=job.pk)


def output(job: Job) -> str:
    return jobfiles.read_output(job.runs.get(attempt=job.retries).key)


def test_attach_with_a_key_shows_the_facts_and_pins_the_host_key(client, attached, sshd):
    team = attached["team"]
    worker = attached["worker"]
    log_mark = worker.log_size()  # the worker serves several tests: only this one's lines
    client.force_login(team.contributor)
    url = reverse("compute:attach-kind", args=[team.workspace.slug, "remote_vm"])
    response = client.post(
        url,
        {
            "name": "gpu-box",
            "host": "127.0.0.1",
            "port": sshd.port,
            "username": sshd.user,
            "secret_kind": "key",
            "private_key": sshd.private_key,
            "max_concurrent_jobs": 1,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    compute = settled(Compute.objects.get(name="gpu-box"))
    assert compute.state == S.STEADY, compute.last_error
    attachment = compute.attachment
    assert attachment.host_key == sshd.host_public_key  # pinned on first use
    assert attachment.healthy is True
    page = client.get(compute.get_absolute_url()).content.decode()
    assert f'<dd class="col-7">{os.cpu_count()}</dd>' in page  # the machine's CPUs
    assert attachment.host_key_fingerprint in page
    assert "Python 3" in page and "ML pipelines" in page
    assert "pinned (trust on first use)" in page  # the event says what was trusted
    # Never logged: the worker that validated it, in what it wrote during this test (which
    # must include that validation's reconcile), wrote nothing of the key.
    key_body = sshd.private_key.splitlines()[1]
    logged = "\n".join(entry.text for entry in worker.log_entries(since=log_mark))
    assert VALIDATED_LINE.search(logged), logged[-2000:]
    assert key_body not in logged


def test_wrong_key_wrong_user_and_a_closed_port_explain_themselves(attached, sshd):
    access = attached["access"]
    closed = SSHServer()  # never started: its port refuses
    cases = {
        "wrong-key": (
            {"secret": sshd.other_key.read_text()},
            f"authentication failed for user {sshd.user} on 127.0.0.1:{sshd.port}",
        ),
        "wrong-user": (
            {"username": "nobody-here"},
            f"authentication failed for user nobody-here on 127.0.0.1:{sshd.port}",
        ),
        "closed-port": (
            {"port": closed.port},
            f"connection refused on 127.0.0.1:{closed.port}",
        ),
    }
    made = {name: attach_vm(access, sshd, name=name, **case[0]) for name, case in cases.items()}
    for name, (_, message) in cases.items():
        compute = settled(made[name])
        assert compute.state == S.FAILED
        assert message in compute.last_error
        assert compute.attachment.healthy is False
    closed.close()
    # Fixing the connection retries the validation, which now succeeds.
    attach_actions.update_connection(
        access, made["wrong-key"].pk, max_concurrent_jobs=1, connection=sshd.connection()
    )
    assert settled(made["wrong-key"]).state == S.STEADY


def test_a_changed_host_key_is_refused(attached, sshd):
    access = attached["access"]
    compute = settled(attach_vm(access, sshd))
    assert compute.state == S.STEADY
    pinned = compute.attachment.host_key
    sshd.new_host_key()
    attach_actions.revalidate(access, compute.pk)
    compute = settled(compute)
    assert compute.state == S.FAILED
    assert "host key changed" in compute.last_error
    assert Attachment.objects.get(pk=compute.pk).host_key == pinned  # still the old one
    # Forgetting the pinned key (the machine was rebuilt) trusts the new one.
    attach_actions.update_connection(
        access,
        compute.pk,
        max_concurrent_jobs=1,
        connection=sshd.connection(secret=""),  # an empty secret keeps the stored key
        forget_host_key=True,
    )
    compute = settled(compute)
    assert compute.state == S.STEADY
    assert compute.attachment.host_key == sshd.host_public_key != pinned


def test_jobs_over_ssh_complete_fail_and_cancel(attached, sshd):
    access = attached["access"]
    compute = settled(attach_vm(access, sshd))
    done = submit_job(
        access, compute_id=compute.pk, name="hello", command="echo hello from $(hostname)"
    )
    done = finished(done)
    assert done.status == J.COMPLETED and done.exit_code == 0
    assert "hello from" in output(done)
    # Its folder over there goes at a health check once it is a minute old (the target is
    # this machine: the test ages it instead of waiting).
    remote = Path.home() / ".hangar" / settings.HANGAR_SITE / "runs" / str(done.pk)
    age(remote)
    wait_for(lambda: not remote.exists(), what="the remote run folder removed")
    assert "hello from" in output(done)  # the page reads the copy here
    failing = submit_job(access, compute_id=compute.pk, name="bad", command="echo oops >&2; exit 3")
    failing = finished(failing)
    assert failing.status == J.FAILED and failing.exit_code == 3
    assert "oops" in output(failing)
    # Cancel reaches the process over there.
    long = submit_job(access, compute_id=compute.pk, name="long", command=LONG)
    wait_for(lambda: Job.objects.get(pk=long.pk).status == J.RUNNING, what="running")
    session = remote_session(long)
    cancel_job(access, long.pk)
    long = finished(long)
    assert long.status == J.CANCELED
    wait_for(lambda: not leftovers.session_alive(session), what="the remote process is gone")


def test_one_job_at_a_time_by_default_and_the_result_survives_a_killed_worker(
    attached, sshd, workers
):
    access = attached["access"]
    compute = settled(attach_vm(access, sshd))
    first = submit_job(
        access, compute_id=compute.pk, name="first", command="sleep 2; echo first done"
    )
    second = submit_job(access, compute_id=compute.pk, name="second", command="echo second")
    wait_for(lambda: Job.objects.get(pk=first.pk).status == J.RUNNING, what="first runs")
    attached["worker"].kill()  # SIGKILL, as a crash
    assert Job.objects.get(pk=second.pk).status == J.QUEUED  # the target runs one at a time
    time.sleep(2.5)  # the job ends while no worker lives
    workers.get("local", **WORKER_ENV)
    first, second = finished(first), finished(second)
    assert first.status == J.COMPLETED and "first done" in output(first)
    assert second.status == J.COMPLETED and second.running_at >= first.finished_at


def test_an_unreachable_target_is_unhealthy_and_its_jobs_wait_with_the_reason(
    client, attached, sshd
):
    access = attached["access"]
    compute = settled(attach_vm(access, sshd))
    sshd.stop(sessions=True)
    try:
        wait_for(
            lambda: Attachment.objects.get(pk=compute.pk).healthy is False,
            what="marked unhealthy",
        )
        reason = Attachment.objects.get(pk=compute.pk).health_reason
        assert f"connection refused on 127.0.0.1:{sshd.port}" in reason
        job = submit_job(access, compute_id=compute.pk, name="waits", command="echo ran")
        time.sleep(1.5)  # health checks and sweeps pass; nothing may happen to wait for
        assert Job.objects.get(pk=job.pk).status == J.QUEUED
        client.force_login(attached["team"].contributor)
        page = client.get(job.get_absolute_url()).content.decode()
        assert "is unreachable (connection refused" in page and "last seen" in page
    finally:
        sshd.start()
    job = finished(job)
    assert job.status == J.COMPLETED and "ran" in output(job)
    assert Attachment.objects.get(pk=compute.pk).healthy is True


def test_the_local_computer_runs_jobs_as_local_processes(attached):
    team = attached["team"]
    access = get_access(make_site_staff(team.contributor), team.workspace.slug)
    compute = attach_actions.attach(
        access, target_kind="local", name="my-laptop", max_concurrent_jobs=2
    )
    compute = settled(compute)
    assert compute.state == S.STEADY
    assert compute.attachment.facts["cpus"] == os.cpu_count()
    job = finished(submit_job(access, compute_id=compute.pk, name="here", command="echo pid $$"))
    assert job.status == J.COMPLETED and re.search(r"pid \d+", output(job))


def test_a_local_computer_job_outlives_a_killed_worker_with_live_output(attached, workers):
    team = attached["team"]
    access = get_access(make_site_staff(team.contributor), team.workspace.slug)
    compute = settled(
        attach_actions.attach(access, target_kind="local", name="here", max_concurrent_jobs=1)
    )
    job = submit_job(
        access, compute_id=compute.pk, name="long", command="echo begun; sleep 2; echo ended"
    )
    wait_for(lambda: Job.objects.get(pk=job.pk).status == J.RUNNING, what="running")
    # Live: the first line is in the record well before the job ends.
    wait_for(lambda: "begun" in output(Job.objects.get(pk=job.pk)), timeout=1.5, what="output")
    attached["worker"].kill()  # SIGKILL, as a crash: the supervisor lives on
    time.sleep(2.5)  # the job ends while no worker lives
    workers.get("local", **WORKER_ENV)
    job = finished(job)
    assert job.status == J.COMPLETED and output(job) == "begun\nended\n"


def test_detach_stops_our_jobs_and_forgets_the_secret_but_not_the_machine(attached, sshd):
    access = attached["access"]
    compute = settled(attach_vm(access, sshd))
    job = submit_job(access, compute_id=compute.pk, name="long", command=LONG)
    wait_for(lambda: Job.objects.get(pk=job.pk).status == J.RUNNING, what="running")
    session = remote_session(job)
    attach_actions.detach(access, compute.pk)
    wait_for(lambda: Compute.objects.get(pk=compute.pk).state == S.DELETED, what="detached")
    assert Job.objects.get(pk=job.pk).status == J.CANCELED
    wait_for(lambda: not leftovers.session_alive(session), what="the remote process is gone")
    assert Attachment.objects.get(pk=compute.pk).secret == ""
    assert sshd.process.poll() is None  # the machine (its sshd) is as it was


def test_an_hdinsight_head_node_is_reached_over_ssh_like_a_vm(attached, sshd):
    access = attached["access"]
    compute = settled(attach_vm(access, sshd, name="spark-head", target_kind="hdinsight"))
    assert compute.state == S.STEADY and compute.attachment.get_target_kind_display() == "HDInsight"
    job = finished(submit_job(access, compute_id=compute.pk, name="etl", command="echo etl ok"))
    assert job.status == J.COMPLETED and "etl ok" in output(job)


def test_output_shows_while_the_job_runs_and_is_never_doubled(attached, sshd):
    access = attached["access"]
    compute = settled(attach_vm(access, sshd))
    job = submit_job(
        access,
        compute_id=compute.pk,
        name="slow",
        command="echo first line; sleep 3; echo second line",
    )
    wait_for(lambda: Job.objects.get(pk=job.pk).status == J.RUNNING, what="running")
    wait_for(lambda: "first line" in output(Job.objects.get(pk=job.pk)), what="live output")
    assert Job.objects.get(pk=job.pk).status == J.RUNNING  # seen before the end
    job = finished(job)
    assert job.status == J.COMPLETED
    assert output(job) == "first line\nsecond line\n"  # the final copy replaced, not added


def test_concurrent_reconciles_never_run_more_jobs_than_the_target_allows(attached, sshd, workers):
    from compute.controllers.reconcile import reconcile

    access = attached["access"]
    compute = settled(attach_vm(access, sshd, max_concurrent_jobs=2))
    workers.stop()  # this test plays the workers itself: four of them at once
    jobs = [submit_job(access, compute_id=compute.pk, name=f"j{i}", command=LONG) for i in range(5)]
    run_together(*[lambda: reconcile(compute.pk) for _ in range(4)])
    active = Job.objects.filter(pk__in=[j.pk for j in jobs], status__in=(J.PREPARING, J.RUNNING))
    assert active.count() == 2
    assert Job.objects.filter(pk__in=[j.pk for j in jobs], status=J.QUEUED).count() == 3
    assert JobRun.objects.filter(job__in=jobs).count() == 2  # nothing started twice


def test_a_job_with_code_gets_its_snapshot_copied_over(attached, sshd):
    access = attached["access"]
    compute = settled(attach_vm(access, sshd))
    job = submit_job(
        access,
        compute_id=compute.pk,
        name="train",
        command="sh train.sh epochs=3",
        code=Code(kind="script", name="train.sh", data=b'echo "trained with $1"; pwd\n'),
    )
    job = finished(job)
    assert job.status == J.COMPLETED, (job.error, output(job))
    assert "trained with epochs=3" in output(job)
    code = Path.home() / ".hangar" / settings.HANGAR_SITE / "code" / str(job.pk)
    assert str(code) in output(job)  # it ran in the copied snapshot
    age(code)
    wait_for(lambda: not code.exists(), what="the remote code folder removed")


def test_a_watched_ssh_job_is_waited_on_not_polled(attached, sshd):
    """The command that watches a job over there waits on it: no `sleep` fifty times a
    second on the user's machine for the job's whole run."""
    access = attached["access"]
    compute = settled(attach_vm(access, sshd))
    job = submit_job(access, compute_id=compute.pk, name="still", command="sleep 30")
    wait_for(lambda: Job.objects.get(pk=job.pk).status == J.RUNNING, what="running")
    run = job.runs.get(attempt=0)
    pid_file = Path.home() / ".hangar" / settings.HANGAR_SITE / "runs" / run.key / "pid"
    wait_for(pid_file.exists, what="the job's pid recorded")
    wrapper = parent_of(int(pid_file.read_text()))
    watcher = parent_of(wrapper)
    busy = 0
    for _ in range(50):  # one second
        busy += any(child != wrapper for child in children(watcher))
        time.sleep(0.02)
    cancel_job(access, job.pk)
    finished(job)
    assert busy == 0, f"the watcher had other children in {busy} of 50 looks"


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return int(handle.read().rsplit(b")", 1)[1].split()[1])
