"""Attacks through host processes (the local computer, the local driver): issue 11.

Each test is the attack as a workspace member would try it; each succeeded on the code
before host processes got their own user, environment, folder and verified identities.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.urls import reverse

from compute.actions import attached as attach_actions
from compute.actions.jobs import cancel_job, submit_job
from compute.drivers import hostproc, processes
from compute.lib import jobfiles
from compute.models import Attachment, Compute, ComputeState, Job, JobStatus
from tests.integration.helpers import wait_for
from tests.support.teams import make_site_staff, make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
J = JobStatus
# What a job may see of its environment: the basics and what Hangar gives every job.
JOB_VARIABLES = {
    "PATH", "HOME", "LANG", "PWD", "SHLVL", "_", "OLDPWD",
    "HANGAR_COMMAND", "HANGAR_JOB_ID", "HANGAR_JOB_NAME", "HANGAR_WORKDIR",
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
}  # fmt: skip


@pytest.fixture
def host(workers, catalog, settings):
    settings.HANGAR_DRIVER = "local"
    worker = workers.get("local")
    team = make_team("host")
    staff = make_site_staff(team.admin)
    access = get_access(staff, team.workspace.slug)
    compute = attach_actions.attach(
        access, target_kind="local", name="laptop", max_concurrent_jobs=2
    )
    wait_for(
        lambda: Compute.objects.get(pk=compute.pk).state == ComputeState.STEADY,
        what="local computer ready",
    )
    return {"team": team, "access": access, "compute": compute, "worker": worker}


def finished(job: Job, timeout: float = 20) -> Job:
    wait_for(lambda: Job.objects.get(pk=job.pk).is_terminal, timeout=timeout, what="job ends")
    return Job.objects.get(pk=job.pk)


def output(job: Job) -> str:
    return jobfiles.read_output(job.runs.get(attempt=job.retries).key)


def test_local_computer_job_cannot_read_hangar_secrets(host):
    secret_file = settings.LOCAL_DIR / "secret_key"
    secret = secret_file.read_text().strip()
    fernet = (settings.LOCAL_DIR / "fernet_keys").read_text().strip()
    command = (
        f"echo uid=$(id -u); cat {secret_file} {settings.LOCAL_DIR}/fernet_keys; "
        f"ls {jobfiles.jobs_root()}; echo ENV-BEGIN; env; echo ENV-END"
    )
    job = finished(
        submit_job(host["access"], compute_id=host["compute"].pk, name="peek", command=command)
    )
    text = output(job)
    assert "uid=" in text and "uid=0\n" not in text, text
    assert secret not in text and secret[:12] not in text
    assert fernet[:12] not in text
    environment = text.split("ENV-BEGIN\n", 1)[1].split("ENV-END", 1)[0]
    names = {line.split("=", 1)[0] for line in environment.splitlines() if "=" in line}
    assert names <= JOB_VARIABLES, names - JOB_VARIABLES
    for leaked in ("REDIS_URL", "SECRET_KEY", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"):
        assert leaked not in environment
    assert settings.REDIS_URL not in text


def test_non_staff_cannot_attach_the_local_computer(client, db):
    team = make_team("nostaff")
    client.force_login(team.admin)  # a workspace admin, but not site staff
    slug = team.workspace.slug
    picker = client.get(reverse("compute:attach", args=[slug])).content.decode()
    assert "Only site staff with the “Can attach the local computer” permission" in picker
    url = reverse("compute:attach-kind", args=[slug, "local"])
    response = client.post(url, {"name": "my-laptop", "max_concurrent_jobs": 1})
    assert response.status_code == 403
    assert client.get(url).status_code == 403
    assert not Compute.objects.filter(workspace=team.workspace).exists()
    assert not Attachment.objects.exists()


def test_forged_pid_file_cannot_make_cancel_kill_another_process(host):
    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        # The job plants the victim's pid wherever a pid file of its run could be (its
        # folder, its home), then waits for the cancel.
        forge = f"echo {victim.pid} > pid; echo {victim.pid} > $HOME/pid; echo {victim.pid}"
        # A link to Hangar's folder, for the removal of its folder to follow.
        command = f"{forge}; ln -s {settings.LOCAL_DIR} $HOME/hangar; sleep 300"
        # And a child that ignores TERM: only the KILL that follows reaches it.
        command = f"(trap '' TERM; sleep 300) & {command}"
        job = submit_job(
            host["access"], compute_id=host["compute"].pk, name="forge", command=command
        )
        key = lambda: Job.objects.get(pk=job.pk).runs.get().key  # noqa: E731
        wait_for(lambda: Job.objects.get(pk=job.pk).status == J.RUNNING, what="running")
        wait_for(lambda: f"{victim.pid}\n" in jobfiles.read_output(key()), what="pid planted")
        identity = hostproc.run_identity(key())  # what the supervisor started
        assert identity is not None and identity.uid != 0
        wait_for(lambda: len(processes.group_members(identity)) >= 2, what="the group counted")
        asked = time.monotonic()
        cancel_job(host["access"], job.pk)
        job = finished(job)
        assert job.status == J.CANCELED
        # Every process of the recorded group, counted in /proc: the TERM-ignoring child
        # goes only with the KILL a second after the TERM.
        wait_for(
            lambda: not processes.is_alive(identity) and not processes.group_members(identity),
            timeout=5,
            what="no process of the job's group left",
        )
        # Past the KILL, with margin: only the passing of that time can show the victim
        # was spared (nothing happens to wait for).
        time.sleep(max(0.0, asked + processes.KILL_AFTER + 0.5 - time.monotonic()))
        assert victim.poll() is None, "cancel killed a process the job named"
        # Released once collected: its folder goes, and only its folder (the link to
        # Hangar's folder inside it was removed, not followed).
        wait_for(lambda: not hostproc.run_work_dir(key()).exists(), what="released")
        assert (settings.LOCAL_DIR / "secret_key").exists()
        hostproc.release_run(key())  # a second release is harmless
        assert (settings.LOCAL_DIR / "secret_key").exists()
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


def test_host_processes_disabled_hide_and_refuse_the_local_computer(client, db, settings):
    settings.HANGAR_ALLOW_HOST_PROCESSES = False
    settings.HANGAR_DRIVER = "docker"
    team = make_team("nohost")
    staff = make_site_staff(team.admin)
    client.force_login(staff)
    slug = team.workspace.slug
    picker = client.get(reverse("compute:attach", args=[slug])).content.decode()
    assert "The operator has not allowed host processes on this site" in picker
    assert reverse("compute:attach-kind", args=[slug, "local"]) not in picker
    url = reverse("compute:attach-kind", args=[slug, "local"])
    assert client.post(url, {"name": "my-laptop", "max_concurrent_jobs": 1}).status_code == 403
    assert not Compute.objects.filter(workspace=team.workspace).exists()


def manage_check(**extra_env: str) -> subprocess.CompletedProcess:
    inherited = ("DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")
    environment = {
        k: v for k, v in os.environ.items() if k not in inherited and not k.startswith("HANGAR_")
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings_production",
        SECRET_KEY=Fernet.generate_key().decode() + "-production-secret-key",
        HANGAR_SECRET_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="hangar.example.com",
        **extra_env,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_the_local_driver_without_the_operators_opt_in():
    refused = manage_check(HANGAR_DRIVER="local")
    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr
    assert "HANGAR_ALLOW_HOST_PROCESSES" in refused.stderr
    allowed = manage_check(HANGAR_DRIVER="local", HANGAR_ALLOW_HOST_PROCESSES="true")
    assert allowed.returncode == 0, allowed.stderr


BANNER = "Development driver: nodes are processes on this host, not isolated."


@pytest.mark.parametrize(("driver", "shown"), [("local", True), ("docker", False)])
def test_banner_while_the_local_driver_is_in_use(client, db, settings, driver, shown):
    settings.HANGAR_DRIVER = driver
    team = make_team(f"banner-{driver}")
    client.force_login(team.reader)
    page = client.get(reverse("workspace:overview", args=[team.workspace.slug])).content.decode()
    assert (BANNER in page) is shown


def test_cancel_never_signals_a_reused_pid_nor_init(tmp_path, settings):
    """The identity check itself: a pid whose start time or owner differs from what the
    supervisor recorded (a reused pid, say) is never signalled, nor pid 1 or root's."""
    # As the job user, like a job: only the identity check can save it, not its owner.
    as_job_user = {}
    if os.geteuid() == 0:
        user = hostproc.job_user()
        as_job_user = {"user": user.uid, "group": user.gid, "extra_groups": []}
    victim = subprocess.Popen(["sleep", "300"], start_new_session=True, **as_job_user)
    try:
        real = processes.identify(victim.pid)
        assert real is not None
        for forged in (
            processes.ProcessIdentity(victim.pid, real.start - 1, real.uid),  # reused pid
            processes.ProcessIdentity(victim.pid, real.start, real.uid + 1),  # another user
            processes.ProcessIdentity(victim.pid, real.start, 0),  # root's
            processes.ProcessIdentity(1, 0, 0),
            processes.ProcessIdentity(0, 0, 1),
        ):
            assert hostproc.signal_group(forged, signal.SIGKILL) is False
        time.sleep(0.1)  # a KILL that was sent lands within this; none may have been
        assert victim.poll() is None
        assert hostproc.signal_group(real, signal.SIGTERM) is True  # the real one, yes
        assert victim.wait(timeout=5) == -signal.SIGTERM
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
