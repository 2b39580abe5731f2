"""Secret variables with a real worker: they reach the job's process (Docker node, an
instance's setup script, a remote VM over SSH) and nothing else — no page, no event, no
worker log line, no process list over there, no clear column in the database."""

from __future__ import annotations

import hashlib
import subprocess
import time

import docker
import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.lib import jobfiles, secrets
from compute.models import Compute, ComputeState, Event, Job, JobStatus, VmSize
from tests.integration.helpers import wait_for
from tests.integration.test_attached import attach_vm, attached, settled, sshd  # noqa: F401
from tests.integration.test_jobs import cluster, docker_jobs  # noqa: F401
from tests.support.leftovers import remove_all_nodes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
J = JobStatus
SECRET = "tok-7f3a9c-Secret-Value"
# The job compares a digest, so the value is in no command either (commands are shown).
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()
CHECK = (
    f'[ "$(printf %s "$API_TOKEN" | sha256sum | cut -c1-64)" = {DIGEST} ] && echo ok-token-matches'
)


def job_output(job: Job) -> str:
    return jobfiles.read_output(job.runs.get(attempt=job.retries).key)


def finished(job: Job, timeout: float = 30) -> Job:
    wait_for(lambda: Job.objects.get(pk=job.pk).is_terminal, timeout=timeout, what="job ends")
    return Job.objects.get(pk=job.pk)


def assert_nowhere(job: Job, team, worker, secret_in_job: bool = True) -> None:
    """The secret is in no page, no event, no worker log line, no clear column."""
    token = job.secret_environment.get("API_TOKEN", SECRET)
    client = Client()
    for user in (team.admin, team.contributor, team.reader):
        client.force_login(user)
        for url in (
            job.get_absolute_url(),
            reverse("compute:jobs", args=[team.workspace.slug]),
            job.compute.get_absolute_url(),
        ):
            body = client.get(url).content.decode()
            assert SECRET not in body and token not in body, (user, url)
    for message in Event.objects.values_list("message", flat=True):
        assert SECRET not in message
    assert SECRET not in worker.log_path.read_text(errors="replace")
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(j)::text FROM compute_job j WHERE id = %s", [job.pk])
        assert SECRET not in cursor.fetchone()[0]
    if secret_in_job:
        assert secrets.decrypt_variables(job.secret_environment)["API_TOKEN"] == SECRET


def test_a_secret_reaches_the_docker_job_and_nothing_else(docker_jobs):  # noqa: F811
    access, team, worker = docker_jobs["access"], docker_jobs["team"], docker_jobs["worker"]
    trainers = cluster(access)
    job = submit_job(
        access,
        compute_id=trainers.pk,
        name="uses-token",
        command=CHECK,
        environment={"EPOCHS": "3"},
        secret_environment={"API_TOKEN": SECRET},
    )
    job = finished(job)
    assert job.status == J.COMPLETED, job.error
    # The job saw the value (it says so), and printed nothing of it.
    assert job_output(job) == "ok-token-matches\n"
    assert_nowhere(job, team, worker)
    # Nor does the node keep it: not in its container's configuration.
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": "hangar.compute"}):
        assert SECRET not in str(container.attrs)
    remove_all_nodes()


def test_an_instance_secret_reaches_its_setup_script_and_its_jobs(docker_jobs):  # noqa: F811
    access, team, worker = docker_jobs["access"], docker_jobs["team"], docker_jobs["worker"]
    instance = actions.create_instance(
        access,
        name="notebook",
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        setup_script=CHECK.replace("ok-token-matches", "setup-saw-it > marker.txt"),
        secret_environment={"API_TOKEN": SECRET},
    )
    wait_for(
        lambda: Compute.objects.get(pk=instance.pk).state == ComputeState.RUNNING,
        timeout=30,
        what="instance running",
    )
    job = finished(submit_job(access, compute_id=instance.pk, name="uses-token", command=CHECK))
    assert job.status == J.COMPLETED, job.error
    assert job_output(job) == "ok-token-matches\n"
    node = docker.from_env().containers.list(filters={"label": f"hangar.compute={instance.pk}"})[0]
    wait_for(
        lambda: node.exec_run(["cat", "/work/marker.txt"]).output == b"setup-saw-it\n",
        what="the setup script saw the secret",
    )
    assert_nowhere(job, team, worker, secret_in_job=False)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT row_to_json(c)::text FROM compute_compute c WHERE id = %s", [instance.pk]
        )
        assert SECRET not in cursor.fetchone()[0]
    # Deleted, so the worker does not bring its node back after the test.
    actions.delete_compute(access, instance.pk)
    wait_for(
        lambda: Compute.objects.get(pk=instance.pk).state == ComputeState.DELETED,
        timeout=30,
        what="instance deleted",
    )
    remove_all_nodes()


def test_over_ssh_the_secret_is_in_no_command_line_over_there(attached, sshd):  # noqa: F811
    access, team, worker = attached["access"], attached["team"], attached["worker"]
    compute = settled(attach_vm(access, sshd))
    assert compute.state == ComputeState.STEADY, compute.last_error
    job = submit_job(
        access,
        compute_id=compute.pk,
        name="uses-token",
        command=f"{CHECK}; sleep 2",
        secret_environment={"API_TOKEN": SECRET},
    )
    # While it runs, the remote machine (this one) lists no process whose arguments hold
    # the value: the variables went over the command's stdin, not into its text.
    wait_for(lambda: Job.objects.get(pk=job.pk).status == J.RUNNING, what="running")
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert SECRET not in listing
        time.sleep(0.1)
    job = finished(job)
    assert job.status == J.COMPLETED, job.error
    assert job_output(job) == "ok-token-matches\n"
    assert_nowhere(job, team, worker)
