"""Job submission without a worker: bad input, access, refusals; nothing is ever queued."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compute.actions import computes as actions
from compute.actions.jobs import cancel_job, submit_job
from compute.lib import jobfiles
from compute.models import Compute, ComputeState, Job, JobStatus, VmSize
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = pytest.mark.django_db


@pytest.fixture
def trainers(team, django_capture_on_commit_callbacks) -> Compute:
    with django_capture_on_commit_callbacks():
        cluster = actions.create_cluster(
            get_access(team.admin, team.workspace.slug),
            name="trainers",
            vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
            max_nodes=2,
        )
    Compute.objects.filter(pk=cluster.pk).update(state=ComputeState.STEADY)
    return cluster


def submit_url(team) -> str:
    return reverse("compute:job-submit", args=[team.workspace.slug])


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"command": "   "}, "command", "This field is required."),
        ({"node_count": "0"}, "node_count", "greater than or equal to 1"),
        ({"node_count": "3"}, "node_count", "takes 1 to 2 nodes per job"),
        ({"compute": "999999"}, "compute", "Select a valid choice"),
        ({"environment": "no equals sign"}, "environment", "write KEY=value"),
        ({"environment": "RANK=3"}, "environment", "RANK is set by Hangar"),
        ({"environment": "1BAD=x"}, "environment", "write KEY=value"),
        ({"script": "print(1)", "script_name": ""}, "script_name", "Name the script file"),
        ({"script": "print(1)", "script_name": ".."}, "code", "not a usable file name"),
    ],
)
def test_bad_submissions_explain_and_queue_nothing(
    client, team, trainers, data, field, message, django_capture_on_commit_callbacks
):
    client.force_login(team.contributor)
    base = {"compute": trainers.pk, "command": "python train.py", "node_count": "1"}
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(submit_url(team), {**base, **data})
    form = response.context["form"]
    errors = form.errors.get(field) or form.non_field_errors()
    assert message in str(errors)
    assert callbacks == [] and not Job.objects.exists()


def test_a_compute_of_another_workspace_is_refused(team, django_capture_on_commit_callbacks):
    from django.core.exceptions import ValidationError

    other = make_team("other")
    with django_capture_on_commit_callbacks():
        foreign = actions.create_cluster(
            get_access(other.admin, other.workspace.slug),
            name="theirs",
            vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        )
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(ValidationError, match="Choose a compute of this workspace"):
            submit_job(
                get_access(team.admin, team.workspace.slug),
                compute_id=foreign.pk,
                name="x",
                command="true",
            )
    assert callbacks == [] and not Job.objects.exists()


def test_a_stopped_instance_refuses_jobs(team, django_capture_on_commit_callbacks):
    from django.core.exceptions import ValidationError

    access = get_access(team.admin, team.workspace.slug)
    with django_capture_on_commit_callbacks():
        box = actions.create_instance(
            access, name="box", vm_size=VmSize.objects.get(name="Standard_DS3_v2")
        )
    Compute.objects.filter(pk=box.pk).update(state=ComputeState.STOPPED)
    with pytest.raises(ValidationError, match="box is stopped; start it first"):
        submit_job(access, compute_id=box.pk, name="x", command="true")
    Compute.objects.filter(pk=box.pk).update(state=ComputeState.RUNNING)
    with pytest.raises(ValidationError, match="runs one-node jobs only"):
        submit_job(access, compute_id=box.pk, name="x", command="true", node_count=2)
    assert not Job.objects.exists()


def test_zip_escaping_its_folder_is_refused(client, team, trainers):
    client.force_login(team.contributor)
    evil = SimpleUploadedFile("code.zip", zipped({"../../etc/cron.d/x": b"boom"}))
    response = client.post(
        submit_url(team),
        {"compute": trainers.pk, "command": "true", "node_count": "1", "upload": evil},
    )
    assert "points outside its folder" in response.content.decode()
    assert not Job.objects.exists()


def test_good_submission_stores_code_read_only(client, team, trainers, settings, tmp_path):
    settings.HANGAR_JOBS_DIR = tmp_path
    client.force_login(team.contributor)
    upload = SimpleUploadedFile("code.zip", zipped({"pkg/train.py": b"print('hi')\n"}))
    response = client.post(
        submit_url(team),
        {
            "compute": trainers.pk,
            "name": "zipped",
            "command": "python pkg/train.py",
            "node_count": "1",
            "environment": "EPOCHS=3\nLR = 0.1",
            "upload": upload,
        },
    )
    job = Job.objects.get()
    assert response["Location"] == reverse("compute:job", args=[team.workspace.slug, job.pk])
    assert job.environment == {"EPOCHS": "3", "LR": " 0.1"}
    stored = jobfiles.code_dir(job.pk) / "pkg" / "train.py"
    assert stored.read_text() == "print('hi')\n"
    assert stored.stat().st_mode & 0o222 == 0  # nobody may write


def test_readers_cannot_submit_or_cancel(
    client, team, trainers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        job = submit_job(
            get_access(team.admin, team.workspace.slug),
            compute_id=trainers.pk,
            name="j",
            command="true",
        )
    client.force_login(team.reader)
    assert client.get(reverse("compute:jobs", args=[team.workspace.slug])).status_code == 200
    assert client.get(submit_url(team)).status_code == 403
    cancel = reverse("compute:job-cancel", args=[team.workspace.slug, job.pk])
    assert client.post(cancel).status_code == 403
    client.force_login(team.outsider)
    assert client.get(reverse("compute:job", args=[team.workspace.slug, job.pk])).status_code == 404
    assert client.post(cancel).status_code == 404
    assert Job.objects.get().status == JobStatus.QUEUED


def test_cancel_a_queued_job_at_once_and_twice_is_refused(team, trainers):
    from django.core.exceptions import ValidationError

    access = get_access(team.contributor, team.workspace.slug)
    job = submit_job(access, compute_id=trainers.pk, name="wait", command="true")
    assert cancel_job(access, job.pk).status == JobStatus.CANCELED
    with pytest.raises(ValidationError, match="already canceled"):
        cancel_job(access, job.pk)


def test_every_job_is_on_exactly_one_page_newest_first(client, team, trainers):
    """The job list picks a page's jobs by key first (a deep page skips no joined rows):
    walking the pages still lists every job once, newest first, ties broken by id."""
    same_moment = timezone.now()
    Job.objects.bulk_create(
        Job(
            workspace=team.workspace,
            compute=trainers,
            name=f"tied-{n}",
            command="true",
            submitted_by=team.contributor,
            queued_at=same_moment - timedelta(minutes=n // 7),  # runs of seven equal times
        )
        for n in range(60)
    )
    client.force_login(team.reader)
    url = reverse("compute:jobs", args=[team.workspace.slug])
    walked = []
    for number in (1, 2, 3):
        with CaptureQueriesContext(connection) as queries:
            page = client.get(url, {"page": number}).context["page"]
        walked += [(job.queued_at, job.pk) for job in page]
        rows_query = next(q["sql"] for q in queries if 'FROM "compute_job" INNER JOIN' in q["sql"])
        # The skipped rows are counted off in the keys' subquery, not in the joined rows.
        assert rows_query.count("OFFSET") <= 1 and "LIMIT" in rows_query.split("IN (")[1]
    assert len(walked) == 60 and len(set(walked)) == 60
    assert walked == sorted(walked, reverse=True)


def test_job_list_filters_and_paginates(client, team, trainers):
    access = get_access(team.contributor, team.workspace.slug)
    for i in range(30):
        submit_job(access, compute_id=trainers.pk, name=f"job-{i}", command="true")
    Job.objects.filter(name="job-3").update(status=JobStatus.FAILED)
    client.force_login(team.reader)
    url = reverse("compute:jobs", args=[team.workspace.slug])
    first = client.get(url)
    assert first.context["page"].paginator.count == 30 and len(first.context["page"]) == 25
    failed = client.get(url, {"status": "failed"})
    assert [job.name for job in failed.context["page"]] == ["job-3"]
    mine = client.get(url, {"submitter": team.admin.pk})
    assert mine.context["page"].paginator.count == 0
