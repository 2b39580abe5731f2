"""The quota page counts a workspace's own job code and output, and nothing else."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from compute.actions.jobs import Code, submit_job
from compute.lib import jobfiles
from tests.security.conftest import make_cluster
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = pytest.mark.django_db
MiB = 1024 * 1024


def job_with_output(team, cluster, output_bytes: int) -> int:
    job = submit_job(
        get_access(team.contributor, team.workspace.slug),
        compute_id=cluster.pk,
        name="train",
        command="sh train.sh",
        code=Code("script", "train.sh", b"#" * 1000),
    )
    run = jobfiles.run_dir(f"{job.pk}/a0-r0")
    run.mkdir(parents=True)
    with (run / "output.log").open("wb") as handle:
        handle.truncate(output_bytes)  # sparse: cheap to make, its size is what counts
    return job.pk


def test_quota_page_shows_only_this_workspaces_disk_use(
    client, team, jobs_dir, settings, django_capture_on_commit_callbacks
):
    settings.HANGAR_DISK_USAGE_CACHE_SECONDS = 0
    other = make_team("other")
    with django_capture_on_commit_callbacks():
        mine = job_with_output(team, make_cluster(team), 3 * MiB)
        theirs = job_with_output(other, make_cluster(other, "theirs"), 40 * MiB)
    # A job may leave links in its run folder: to another workspace's output, to the root.
    run = jobfiles.run_dir(f"{mine}/a0-r0")
    os.symlink(jobfiles.run_dir(f"{theirs}/a0-r0") / "output.log", run / "theirs.log")
    os.symlink("/", run / "root")
    os.symlink(jobfiles.runs_root() / str(theirs), jobfiles.runs_root() / str(mine) / "a1-r0")

    client.force_login(team.reader)
    page = client.get(reverse("compute:quota", args=[team.workspace.slug])).content.decode()
    assert "Disk: 3.0 MiB of job code and output" in page  # 3 MiB + 1000 bytes
    client.force_login(other.reader)
    page = client.get(reverse("compute:quota", args=[other.workspace.slug])).content.decode()
    assert "Disk: 40.0 MiB of job code and output" in page
