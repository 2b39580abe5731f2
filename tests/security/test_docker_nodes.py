"""Attacks from inside a Docker node: each test is written as the attack a workspace member
could run as a job, and checks that it reaches nothing outside its own run.

Before the fix every node mounted the installation's job folders (all runs read-write, all
code read-only), ran as root with every default capability, and Hangar followed links and
trusted pid files in folders the job could write.
"""

from __future__ import annotations

import os
from pathlib import Path

import docker
import pytest
from django.conf import settings
from django.urls import reverse

from compute.actions import computes as actions
from compute.actions.jobs import Code, cancel_job, submit_job
from compute.drivers.node_scripts import JOB_USER, NODE_USER, NODE_WORK
from compute.lib import jobfiles
from compute.models import Compute, ComputeState, Event, Job, JobStatus, Node, NodeState, VmSize
from compute.models.jobs import CodeKind
from tests.integration.helpers import wait_for
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
J = JobStatus


@pytest.fixture
def nodes(workers, catalog, node_image, settings):
    settings.HANGAR_DRIVER = "docker"
    settings.HANGAR_JOB_OUTPUT_LIMIT_MB = 1
    workers.get("docker", HANGAR_JOB_OUTPUT_LIMIT_MB="1")
    victim, attacker = make_team("victim"), make_team("attacker")
    yield {
        "victim": get_access(victim.admin, victim.workspace.slug),
        "attacker": get_access(attacker.admin, attacker.workspace.slug),
        "attacker_team": attacker,
    }
    workers.stop()  # no sweep may recreate what is removed next
    remove_all_nodes()


def cluster(access, name: str, max_nodes: int = 1) -> Compute:
    made = actions.create_cluster(
        access,
        name=name,
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        min_nodes=0,
        max_nodes=max_nodes,
        idle_seconds_before_scaledown=60,
    )
    wait_for(lambda: Compute.objects.get(pk=made.pk).state == ComputeState.STEADY, what="steady")
    return made


def run(access, compute: Compute, command: str, code: Code | None = None) -> Job:
    job = submit_job(access, compute_id=compute.pk, name="probe", command=command, code=code)
    wait_for(lambda: status(job) in (J.COMPLETED, J.FAILED, J.CANCELED), timeout=30, what="end")
    return job


def status(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def output(job: Job) -> str:
    return jobfiles.read_output(job.runs.get(attempt=job.retries).key)


def page_and_download(team, job: Job) -> str:
    from django.test import Client

    client = Client()
    client.force_login(team.admin)
    slug = team.workspace.slug
    page = client.get(reverse("compute:job", args=[slug, job.pk]))
    log = client.get(reverse("compute:job-log", args=[slug, job.pk, 0]))
    body = b"".join(log.streaming_content) if log.status_code == 200 else b""
    return page.content.decode() + body.decode(errors="replace")


def test_a_node_sees_no_other_jobs_output_or_code(nodes):
    secret = "victim-secret-41fd"
    victims = cluster(nodes["victim"], "victims")
    code = Code(CodeKind.SCRIPT, "train.py", f"print('{secret}')".encode())
    victim_job = run(nodes["victim"], victims, f"cat train.py; echo {secret}", code=code)
    assert secret in output(victim_job)

    attackers = cluster(nodes["attacker"], "attackers")
    job = run(
        nodes["attacker"],
        attackers,
        "find / /work /tmp -xdev 2>/dev/null | grep -c . ; "
        "cat /hangar/runs/*/*/output.log /hangar/code/*/* "
        f"{NODE_WORK}/run-*/output.log {NODE_WORK}/code/*/* 2>&1; "
        f"find / /work /tmp -xdev -type f 2>/dev/null | xargs grep -l {secret}; echo done",
    )
    assert job.status == J.COMPLETED
    seen = output(job)
    assert "done" in seen and secret not in seen
    # Nothing of this machine is mounted into the node: only its own /work volume.
    container = docker.from_env().containers.get(job.runs.get().container)
    mounts = container.attrs["Mounts"]
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", NODE_WORK)]


def test_the_next_job_on_a_node_finds_nothing_of_the_last(nodes):
    own = cluster(nodes["attacker"], "reused")
    first = run(
        nodes["attacker"],
        own,
        f"echo left > {NODE_WORK}/leftover; echo left > /tmp/leftover; (sleep 300 &) ; echo first",
    )
    second = run(
        nodes["attacker"],
        own,
        f"ls {NODE_WORK} /tmp; cat {NODE_WORK}/leftover /tmp/leftover 2>&1; ps -o user,args",
    )
    assert first.runs.get().node_id == second.runs.get().node_id  # the same node
    seen = output(second)
    assert "left\n" not in seen and "sleep 300" not in seen


def test_a_linked_output_file_does_not_make_hangar_read_host_files(nodes):
    team = nodes["attacker_team"]
    secret_file = Path(settings.LOCAL_DIR) / "secret_key"
    key = secret_file.read_text().strip()
    own = cluster(nodes["attacker"], "linker")
    job = run(
        nodes["attacker"],
        own,
        f"rm -f output.log; ln -s {secret_file} output.log; ln -s {secret_file} exit_code; "
        f"ln -s {secret_file} /tmp/x; echo linked",
    )
    assert job.status in (J.COMPLETED, J.FAILED)
    assert key not in page_and_download(team, job)
    # And were a link planted in Hangar's own record, it would not be followed either.
    record = jobfiles.run_dir(job.runs.get().key)
    (record / jobfiles.OUTPUT_FILE).unlink(missing_ok=True)
    (record / jobfiles.OUTPUT_FILE).symlink_to(secret_file)
    assert jobfiles.read_output(job.runs.get().key) == ""
    assert key not in page_and_download(team, job)


def test_a_linked_run_folder_makes_hangar_change_nothing_outside(nodes, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    job_folder = jobfiles.runs_root() / "999999"
    job_folder.mkdir(parents=True, exist_ok=True)
    (job_folder / "a0-r0").symlink_to(outside)
    try:
        with pytest.raises(OSError):
            jobfiles.prepare_run_dir("999999/a0-r0")
        with pytest.raises(OSError):
            jobfiles.write_output("999999/a0-r0", 0, b"x")
        assert oct(outside.stat().st_mode & 0o777) == oct(0o700)
        assert list(outside.iterdir()) == []
    finally:
        (job_folder / "a0-r0").unlink()


def test_a_forged_pid_file_cannot_make_cancel_kill_the_node(nodes):
    own = cluster(nodes["attacker"], "forger")
    job = submit_job(
        nodes["attacker"],
        compute_id=own.pk,
        name="forger",
        command="for f in pid ../pid /tmp/pid; do echo 1 > $f; done 2>/dev/null; "
        "echo started; sleep 300",
    )
    wait_for(lambda: status(job) == J.RUNNING and "started" in output(job), timeout=20)
    container = docker.from_env().containers.get(job.runs.get().container)
    cancel_job(nodes["attacker"], job.pk)
    wait_for(lambda: status(job) == J.CANCELED, timeout=5, what="canceled")
    container.reload()
    assert container.status == "running"  # pid 1 and the node's own process untouched
    assert "sleep 300" not in container.exec_run(["ps", "-o", "user,args"]).output.decode()
    # The node is handed back once the run is collected (the same pass or the next one).
    node_id = job.runs.get().node_id
    wait_for(
        lambda: Node.objects.get(pk=node_id).state == NodeState.IDLE,
        timeout=10,
        what="the node idle again",
    )


def test_an_output_flood_is_cut_at_the_limit(nodes):
    own = cluster(nodes["attacker"], "flood")
    # 5 MiB against a 1 MiB limit; the job itself goes on and ends normally.
    job = run(nodes["attacker"], own, "head -c 5242880 /dev/zero | tr '\\0' x; echo; exit 0")
    assert job.status == J.COMPLETED
    run_key = job.runs.get().key
    size = jobfiles.output_size(run_key)
    limit = 1024 * 1024
    assert limit < size <= limit + len(jobfiles.cut_marker())
    assert "output cut at 1 MB" in jobfiles.read_output(run_key)
    assert Event.objects.filter(verb="job.output_cut", message__contains=job.name).exists()
    # Nor did the node's own disk take the flood.
    container = docker.from_env().containers.get(job.runs.get().container)
    assert "x" * 100 not in container.exec_run(["ls", "-la", f"{NODE_WORK}/runs"]).output.decode()


def test_a_node_container_is_a_locked_down_sandbox(nodes):
    own = cluster(nodes["attacker"], "locked")
    job = run(nodes["attacker"], own, "id -u; touch /etc/x 2>&1; echo done")
    seen = output(job)
    assert seen.splitlines()[0] == JOB_USER.split(":")[0]
    assert "Read-only file system" in seen
    container = docker.from_env().containers.get(job.runs.get().container)
    host = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == NODE_USER
    assert int(NODE_USER.split(":")[0]) >= 1000
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["PidsLimit"] == settings.HANGAR_NODE_PIDS_LIMIT
    assert host["ReadonlyRootfs"] is True
    assert host["MemorySwap"] == host["Memory"] > 0
    assert list(host["Tmpfs"]) == ["/tmp"]  # noqa: S108 (the node's own /tmp)
    assert not host["Binds"]
    assert not host["Privileged"]
    assert host["NetworkMode"] == "none"
    # What its own process prints cannot fill this machine's disk.
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "2"},
    }
    local_dir = os.fspath(settings.LOCAL_DIR)
    assert all(local_dir not in (m.get("Source") or "") for m in container.attrs["Mounts"])
