"""Batch scoring from the browser's and the API's side: submitting (inputs stored read-only,
split into mini-batches, a job queued per mini-batch on a cluster of its own that no compute
list shows), refusals that leave nothing behind, the downloads, cancel, and the sweep's step
keeping each mini-batch's rows once (the real Docker loop is in
tests/integration/test_batch_scoring.py)."""

from __future__ import annotations

import io
import os
import stat
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute.controllers import batch_scoring
from compute.inference.models import BatchJob, BatchState, MiniBatch, MiniBatchState
from compute.lib import jobfiles, snapshots
from compute.models import Compute, ComputeState, FamilyQuota, Job, JobRun, JobStatus, VmSize
from tests.support.inference import SCORING, make_batch, make_model
from workspace.tokens import create_token

pytestmark = pytest.mark.django_db

BATCH_SCRIPT = "def init():\n    pass\n\n\ndef run(mini_batch):\n    return mini_batch\n"


def url(team, name: str, *args: int) -> str:
    return reverse(f"inference:{name}", args=[team.workspace.slug, *args])


def form(model, **changes) -> dict:
    size = VmSize.objects.get(name="Standard_D2s_v3")
    return {
        "name": "nightly",
        "model": model.pk,
        "vm_size": size.pk,
        "tier": "low_priority",
        "node_count": "2",
        "mini_batch_size": "2",
        "max_attempts": "3",
        "scoring_script": BATCH_SCRIPT,
        "inputs": [SimpleUploadedFile(f"f{n}.txt", f"{n}".encode()) for n in range(5)],
        **changes,
    }


def stored_folders() -> set:
    stores = (snapshots.batch_code_store(), snapshots.batch_input_store())
    return {p for store in stores if store.root.exists() for p in store.root.iterdir()}


def test_a_submitted_batch_job_is_split_into_mini_batches_each_a_job_on_its_own_cluster(
    client, team
):
    model = make_model(team.workspace)
    client.force_login(team.contributor)
    page = client.get(url(team, "batch-create")).content.decode()
    assert 'data-testid="what-if"' in page and "def run(mini_batch)" in page
    answer = client.post(url(team, "batch-create"), form(model))
    batch = BatchJob.objects.get()
    assert answer.url == batch.get_absolute_url()
    assert (batch.file_count, batch.batches_total, batch.state) == (5, 3, BatchState.RUNNING)
    assert list(batch.mini_batches.values_list("files", "state", "attempts")) == [
        (["f0.txt", "f1.txt"], MiniBatchState.RUNNING, 1),
        (["f2.txt", "f3.txt"], MiniBatchState.RUNNING, 1),
        (["f4.txt"], MiniBatchState.RUNNING, 1),
    ]
    # Its nodes: a low-priority cluster of up to 2, hidden from compute lists and job forms.
    cluster = batch.compute
    assert cluster is not None and cluster.is_batch
    assert (cluster.tier, cluster.min_nodes, cluster.max_nodes) == ("low_priority", 0, 2)
    assert not Compute.objects.of(team.workspace).filter(pk=cluster.pk).exists()
    jobs = Job.objects.filter(compute=cluster).order_by("pk")
    assert [j.environment["HANGAR_MINI_BATCH"] for j in jobs] == ["0", "1", "2"]
    assert {j.status for j in jobs} == {JobStatus.QUEUED}
    # Inputs stored read-only, beside the runner and the mini-batch list.
    inputs = snapshots.batch_input_store().folder(batch.pk)
    assert (inputs / "f3.txt").read_bytes() == b"3"
    assert not os.stat(inputs / "f3.txt").st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    code = snapshots.batch_code_store().folder(batch.pk)
    assert sorted(p.name for p in code.iterdir()) == [
        "batch_runner.py",
        "mini_batches.json",
        "score.py",
    ]
    shown = client.get(batch.get_absolute_url()).content.decode()
    assert "0 of 3 mini-batches done" in shown and 'hx-trigger="every 2s"' in shown
    listed = client.get(url(team, "batches")).content.decode()
    assert 'data-batch="nightly"' in listed
    # A mini-batch job's page links back to the batch job, not to a hidden compute.
    job_page = client.get(reverse("compute:job", args=[team.workspace.slug, jobs[0].pk]))
    assert batch.get_absolute_url() in job_page.content.decode()


def zip_of(files: dict[str, bytes]) -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return data.getvalue()


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"inputs": []}, "inputs", "Upload the input files"),
        ({"mini_batch_size": "0"}, "mini_batch_size", "greater than or equal to 1"),
        ({"max_attempts": "11"}, "max_attempts", "less than or equal to 10"),
        ({"scoring_script": "print(1)"}, "scoring_script", "init() and run(mini_batch)"),
        ({"name": "Bad Name"}, "name", "lowercase letters"),
        (
            {"inputs": [SimpleUploadedFile("in.zip", zip_of({"../up.txt": b"x"}))]},
            "inputs",
            "points outside its folder",
        ),
        (
            {"inputs": [SimpleUploadedFile("in.zip", zip_of({"empty/": b""}))]},
            "inputs",
            "holds no file to score",
        ),
        (
            {"inputs": [SimpleUploadedFile("a.txt", b"1"), SimpleUploadedFile("a.txt", b"2")]},
            "inputs",
            "Two files are named",
        ),
    ],
)
def test_bad_input_gets_a_clear_error_and_leaves_nothing_behind(
    client, team, changes, field, words
):
    model = make_model(team.workspace)
    client.force_login(team.contributor)
    folders = stored_folders()
    answer = client.post(url(team, "batch-create"), form(model, **changes))
    assert answer.status_code == 200
    assert words in " ".join(answer.context["form"].errors.get(field, []))
    assert not BatchJob.objects.exists() and not Job.objects.exists()
    assert not Compute.objects.filter(workspace=team.workspace).exists()
    assert stored_folders() == folders


def test_a_zip_of_a_folder_is_scored_file_by_file_in_name_order(client, team):
    model = make_model(team.workspace)
    client.force_login(team.contributor)
    archive = zip_of({"b/2.txt": b"2", "a/1.txt": b"1", "a/3.txt": b"3"})
    client.post(
        url(team, "batch-create"), form(model, inputs=[SimpleUploadedFile("in.zip", archive)])
    )
    batch = BatchJob.objects.get()
    assert [m.files for m in batch.mini_batches.order_by("index")] == [
        ["a/1.txt", "a/3.txt"],
        ["b/2.txt"],
    ]


def test_the_downloads_give_each_done_mini_batchs_rows_once_and_the_failed_ones(client, team):
    batch = make_batch(team.workspace, make_model(team.workspace))
    client.force_login(team.reader)
    answer = client.get(url(team, "batch-predictions", batch.pk))
    assert answer["Content-Disposition"] == 'attachment; filename="nightly-predictions.csv"'
    assert b"".join(answer.streaming_content) == b"a.txt,small\n"
    errors = b"".join(client.get(url(team, "batch-errors", batch.pk)).streaming_content)
    assert errors.decode().splitlines() == [
        "mini_batch,attempts,error,files",
        "2,3,exit code 1: ValueError: cannot read b.txt,b.txt",
    ]
    page = client.get(batch.get_absolute_url()).content.decode()
    assert "1 of 3 mini-batches done, 1 failed" in page and "errors.csv (1)" in page
    assert "Cancel batch job" not in page  # readers may not


def test_cancel_ends_it_keeps_the_rows_and_its_nodes_go(
    client, team, dsv2_quota, django_capture_on_commit_callbacks
):
    model = make_model(team.workspace)
    client.force_login(team.contributor)
    client.post(url(team, "batch-create"), form(model))
    batch = BatchJob.objects.get()
    answer = client.post(url(team, "batch-cancel", batch.pk), follow=True)
    assert "Canceled nightly" in answer.content.decode()
    batch.refresh_from_db()
    assert batch.state == BatchState.CANCELED and not batch.nodes_released
    with django_capture_on_commit_callbacks(execute=True):
        batch_scoring.advance(batch.pk)  # the sweep's next pass
    batch.refresh_from_db()
    assert batch.nodes_released
    # Its rows are in the ledger: its inputs and scripts leave the disk.
    assert not snapshots.batch_input_store().folder(batch.pk).exists()
    assert not snapshots.batch_code_store().folder(batch.pk).exists()
    assert Compute.objects.get(pk=batch.compute_id).state == ComputeState.DELETING
    again = client.post(url(team, "batch-cancel", batch.pk), follow=True)
    assert "nightly is already canceled." in again.content.decode()


@pytest.fixture
def dsv2_quota(team):
    FamilyQuota.objects.update_or_create(
        workspace=team.workspace,
        family=VmSize.objects.get(name="Standard_D2s_v3").family,
        defaults={"limit": 24, "approved": 24},
    )


def finish_job(job: Job, output: bytes, status: str = JobStatus.COMPLETED, code: int = 0) -> None:
    """What the reconciler writes when a mini-batch's job ends: its output record, its
    status (the real loop: tests/integration/test_batch_scoring.py)."""
    run = JobRun.objects.create(job=job, rank=0, node_name="n-1", container="c")
    jobfiles.prepare_run_dir(run.key)
    jobfiles.write_output(run.key, 0, output)
    Job.objects.filter(pk=job.pk).update(status=status, exit_code=code)


@pytest.fixture
def jobs_dir(settings, tmp_path):
    settings.HANGAR_JOBS_DIR = tmp_path / "jobs"
    return settings.HANGAR_JOBS_DIR


def test_the_sweep_keeps_marked_rows_once_retries_a_failure_then_lists_it(
    client, team, jobs_dir, django_capture_on_commit_callbacks
):
    model = make_model(team.workspace)
    client.force_login(team.contributor)
    client.post(url(team, "batch-create"), form(model, max_attempts="2"))
    batch = BatchJob.objects.get()
    first, second, third = (m.job for m in batch.mini_batches.order_by("index"))
    mark = first.environment["HANGAR_RESULT_MARK"]
    finish_job(
        first,
        f'scored f0\n{mark}\t["f0.txt", 0.5]\nhangar-row-forged\t["no"]\n'
        f'{mark}\t["f1.txt", null]\n'.encode(),
    )
    finish_job(second, b"Traceback\nValueError: bad pixel\n", JobStatus.FAILED, 1)
    batch_scoring.advance(batch.pk)
    batch_scoring.advance(batch.pk)  # a second pass (a second sweep) changes nothing
    batch.refresh_from_db()
    assert (batch.batches_done, batch.row_count, batch.batches_failed) == (1, 2, 0)
    done, retried = batch.mini_batches.order_by("index")[:2]
    assert (done.state, done.rows) == (MiniBatchState.DONE, "f0.txt,0.5\nf1.txt,\n")
    assert (retried.state, retried.attempts) == (MiniBatchState.RUNNING, 2)
    assert retried.job_id != second.pk and "ValueError: bad pixel" in retried.error
    # Its second attempt fails too: listed, and the batch job ends with the others.
    assert retried.job is not None
    finish_job(retried.job, b"ValueError: bad pixel\n", JobStatus.FAILED, 1)
    third_mark = third.environment["HANGAR_RESULT_MARK"]
    finish_job(third, f'{third_mark}\t["f4.txt", 1]\n'.encode())
    with django_capture_on_commit_callbacks(execute=True):
        batch_scoring.advance(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.batches_done, batch.batches_failed) == (BatchState.PARTIAL, 2, 1)
    assert MiniBatch.objects.get(batch=batch, index=1).state == MiniBatchState.FAILED
    rows = b"".join(client.get(url(team, "batch-predictions", batch.pk)).streaming_content)
    assert rows == b"f0.txt,0.5\nf1.txt,\nf4.txt,1\n"
    assert batch.nodes_released
    assert not snapshots.batch_input_store().folder(batch.pk).exists()


def test_the_api_submits_shows_downloads_and_cancels(client, team):
    make_model(team.workspace)
    secret = create_token(team.contributor, name="test", expires_in_days=30).secret
    headers = {"Authorization": f"Bearer {secret}"}
    base = f"/api/v1/workspaces/{team.workspace.slug}/batch-jobs"
    answer = client.post(
        base,
        {
            "name": "weekly",
            "model": "iris",
            "scoring_script": BATCH_SCRIPT,
            "vm_size": "Standard_D2s_v3",
            "node_count": "1",
            "mini_batch_size": "1",
            "inputs": [SimpleUploadedFile("a.txt", b"1"), SimpleUploadedFile("b.txt", b"2")],
        },
        headers=headers,
    )
    assert answer.status_code == 201, answer.content
    made = answer.json()
    assert (made["file_count"], made["batches_total"], made["state"]) == (2, 2, "running")
    shown = client.get(f"{base}/{made['id']}", headers=headers).json()
    assert shown["model"] == "iris:1" and shown["predictions_url"].endswith("/predictions")
    assert client.post(f"{base}/{made['id']}/cancel", headers=headers).json()["state"] == "canceled"
    again = client.post(f"{base}/{made['id']}/cancel", headers=headers)
    assert again.status_code == 409 and "already canceled" in again.json()["detail"]
    bad = client.post(
        base,
        {"name": "x1x", "model": "nope", "scoring_script": SCORING, "vm_size": "Standard_D2s_v3"},
        headers=headers,
    )
    assert bad.status_code == 422


def test_a_second_batch_job_of_the_same_name_is_refused_and_stores_nothing(client, team):
    model = make_model(team.workspace)
    client.force_login(team.contributor)
    client.post(url(team, "batch-create"), form(model))
    folders = stored_folders()
    answer = client.post(url(team, "batch-create"), form(model))
    assert "Vision already has a batch job named nightly." in answer.context["form"].errors["name"]
    assert BatchJob.objects.count() == 1 and stored_folders() == folders
    assert Compute.objects.filter(workspace=team.workspace).count() == 1


def tar_of(files: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as archive:
        for name, body in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(body)
            archive.addfile(member, io.BytesIO(body))
        for name in links:
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(link)
    return data.getvalue()


def test_a_tar_of_a_folder_is_scored_too_and_its_links_are_left_out(client, team):
    model = make_model(team.workspace)
    client.force_login(team.contributor)
    archive = tar_of({"b/2.txt": b"2", "a/1.txt": b"1"}, links=("a/0-link.txt",))
    client.post(
        url(team, "batch-create"), form(model, inputs=[SimpleUploadedFile("in.tar.gz", archive)])
    )
    batch = BatchJob.objects.get()
    assert [m.files for m in batch.mini_batches.order_by("index")] == [["a/1.txt", "b/2.txt"]]
    assert not (snapshots.batch_input_store().folder(batch.pk) / "a/0-link.txt").exists()


def test_a_tar_that_escapes_its_folder_stores_nothing(client, team):
    model = make_model(team.workspace)
    client.force_login(team.contributor)
    folders = stored_folders()
    archive = tar_of({"ok.txt": b"1", "../../up.txt": b"x"})
    answer = client.post(
        url(team, "batch-create"), form(model, inputs=[SimpleUploadedFile("in.tgz", archive)])
    )
    assert "points outside its folder" in " ".join(answer.context["form"].errors["inputs"])
    assert not BatchJob.objects.exists() and stored_folders() == folders
