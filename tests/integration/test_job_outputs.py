"""Job output files with a real worker and real nodes: what a job writes under ./outputs is
kept when its run ends, listed on its page and in the API, downloadable one by one or as a
zip; a job of several nodes keeps each rank's under rank-N/."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import reverse

from compute.actions import computes as actions
from compute.actions.jobs import Code, submit_job
from compute.models import Compute, ComputeState, Job, JobStatus, VmSize
from compute.models.jobs import CodeKind
from tests.integration.helpers import wait_for
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import Team, make_team
from workspace.access import WorkspaceAccess, get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
J = JobStatus

# Nested folders, binary bytes, and a page that must be saved, never rendered.
WRITE_OUTPUTS = r"""
mkdir -p outputs/checkpoints/epoch-2 outputs/empty
printf 'rank %s\n' "$RANK" > outputs/checkpoints/epoch-2/state.txt
printf '\000\001\002\377' > outputs/weights.bin
printf '<script>alert(1)</script>' > outputs/report.html
"""


def admin_of(team: Team) -> WorkspaceAccess:
    return get_access(team.admin, team.workspace.slug)


def cluster(team: Team, max_nodes: int = 2) -> Compute:
    made = actions.create_cluster(
        admin_of(team),
        name="trainers",
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        min_nodes=0,
        max_nodes=max_nodes,
        idle_seconds_before_scaledown=60,
    )
    wait_for(lambda: Compute.objects.get(pk=made.pk).state == ComputeState.STEADY, what="steady")
    return made


def ended(job: Job, timeout: float = 40) -> Job:
    wait_for(lambda: Job.objects.get(pk=job.pk).is_terminal, timeout=timeout, what="job ends")
    return Job.objects.get(pk=job.pk)


def logged_in(user: object) -> Client:
    client = Client()
    client.force_login(user)
    return client


def file_url(job: Job, path: str) -> str:
    return reverse("compute:job-output-file", args=[job.workspace.slug, job.pk, path])


def download(client: Client, job: Job, path: str) -> bytes:
    response = client.get(file_url(job, path))
    assert response.status_code == 200, (path, response.status_code)
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "application/octet-stream"
    return b"".join(response.streaming_content)


def zipped(client: Client, job: Job) -> dict[str, bytes]:
    response = client.get(reverse("compute:job-outputs-zip", args=[job.workspace.slug, job.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="job-{job.pk}-outputs.zip"'
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.fixture
def local_team(catalog, workers, settings) -> Iterator[Team]:
    settings.HANGAR_DRIVER = "local"
    workers.get("local")
    yield make_team("outputs")
    remove_all_nodes()


def test_a_two_node_job_keeps_each_ranks_outputs_on_the_local_driver(local_team):
    """Rank 0's and rank 1's ./outputs, under rank-N/, with their bytes; listed on the page
    and in the API, downloadable one by one and as one zip; a reader may download, a
    member of another workspace gets 404; a job writing nothing shows the empty state."""
    team = local_team
    compute = cluster(team)
    job = submit_job(
        admin_of(team), compute_id=compute.pk, name="train", command=WRITE_OUTPUTS, node_count=2
    )
    quiet = submit_job(admin_of(team), compute_id=compute.pk, name="quiet", command="true")
    job, quiet = ended(job), ended(quiet)
    assert job.status == J.COMPLETED, job.error
    assert (job.outputs_files, job.outputs_note) == (6, "")
    reader = logged_in(team.reader)
    expected = {
        f"rank-{rank}/{path}": data
        for rank in (0, 1)
        for path, data in {
            "checkpoints/epoch-2/state.txt": f"rank {rank}\n".encode(),
            "report.html": b"<script>alert(1)</script>",
            "weights.bin": b"\x00\x01\x02\xff",
        }.items()
    }
    page = reader.get(job.get_absolute_url()).content.decode()
    for path in expected:
        assert path in page
    assert "<script>alert(1)</script>" not in page
    for path, data in expected.items():
        assert download(reader, job, path) == data
    response = reader.get(file_url(job, "rank-0/report.html"))
    assert response["Content-Disposition"] == 'attachment; filename="report.html"'
    assert zipped(reader, job) == expected

    listed = reader.get(f"/api/v1/workspaces/{team.workspace.slug}/jobs/{job.pk}/outputs").json()
    assert [(f["path"], f["size"]) for f in listed["files"]] == [
        (path, len(data)) for path, data in sorted(expected.items())
    ]
    assert listed["notes"] == []

    outsider = logged_in(team.outsider)
    assert outsider.get(file_url(job, "rank-0/weights.bin")).status_code == 404
    assert reader.get(file_url(job, "rank-0/../../etc/passwd")).status_code == 404
    assert reader.get(file_url(job, "rank-2/weights.bin")).status_code == 404

    assert quiet.status == J.COMPLETED and quiet.outputs_files == 0
    assert "This job wrote no files to <code>./outputs</code>" in (
        reader.get(quiet.get_absolute_url()).content.decode()
    )


@pytest.mark.usefixtures("node_image")
def test_a_docker_job_with_code_keeps_its_outputs_through_the_docker_api(
    workers, catalog, settings
):
    """A job with a code snapshot runs in its (read-only) code folder: its ./outputs is
    the one folder there it may write, and comes out through get_archive whole."""
    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    team = make_team("outputs-docker")
    try:
        compute = cluster(team, max_nodes=1)
        code = Code(CodeKind.SCRIPT, "train.sh", WRITE_OUTPUTS.encode())
        job = ended(
            submit_job(
                admin_of(team),
                compute_id=compute.pk,
                name="train",
                command="sh train.sh",
                code=code,
            )
        )
        assert job.status == J.COMPLETED, job.error
        reader = logged_in(team.reader)
        assert job.outputs_files == 3, job.outputs_note
        assert download(reader, job, "checkpoints/epoch-2/state.txt") == b"rank 0\n"
        assert download(reader, job, "weights.bin") == b"\x00\x01\x02\xff"
        assert set(zipped(reader, job)) == {
            "checkpoints/epoch-2/state.txt",
            "report.html",
            "weights.bin",
        }
    finally:
        workers.stop()
        remove_all_nodes()


# One row per file: its path relative to the inputs, and its size.
BATCH_SCRIPT = """
import os


def init():
    pass


def run(mini_batch):
    root = os.environ.get("HANGAR_INPUT_DIR", "")
    return [[os.path.relpath(path, root) if root else path, os.path.getsize(path)]
            for path in mini_batch]
"""


@pytest.mark.image_builds  # its batch nodes need Python: the scikit-learn image
@pytest.mark.usefixtures("node_image")
def test_batch_scoring_of_a_previous_jobs_outputs_gives_one_row_per_file(
    workers, catalog, settings
):
    """A job writes eight files (in folders); a batch job scores that job's outputs: eight
    rows, one per file, in the upload's order. Its inputs are copies: they are the batch's
    whatever happens to the job's files."""
    from compute.actions.environments import sync_curated
    from compute.inference.actions.batch import Inputs, submit_batch
    from compute.inference.actions.models import register_model
    from compute.inference.models import BatchJob, BatchState
    from compute.inference.selectors import predictions_csv
    from compute.lib import snapshots
    from compute.models import Environment

    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    team = make_team("batch-from-job")
    access = get_access(team.contributor, team.workspace.slug)
    try:
        compute = cluster(team, max_nodes=1)
        job = ended(
            submit_job(
                access,
                compute_id=compute.pk,
                name="featurize",
                command="mkdir -p outputs/day-1 outputs/day-2 && for i in 1 2 3 4; do "
                "printf %${i}s > outputs/day-1/p$i.txt; printf x > outputs/day-2/q$i.txt; done",
            )
        )
        assert job.status == J.COMPLETED and job.outputs_files == 8, job.outputs_note
        sync_curated()
        sklearn = Environment.objects.filter(workspace=None, name="scikit-learn").latest("version")
        model = register_model(access, name="sizes", file_name="model.json", data=b"{}")
        batch = submit_batch(
            access, name="from-job", model=model, scoring_script=BATCH_SCRIPT,
            environment=sklearn, vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
            inputs=Inputs([], job_id=job.pk), node_count=1, mini_batch_size=3,
        )  # fmt: skip
        assert batch.input_name == f"outputs of job featurize (#{job.pk})"
        assert (batch.file_count, batch.batches_total) == (8, 3)
        stored = snapshots.files_in(snapshots.batch_input_store().folder(batch.pk))
        assert stored == [f"day-1/p{i}.txt" for i in range(1, 5)] + [
            f"day-2/q{i}.txt" for i in range(1, 5)
        ]
        wait_for(
            lambda: BatchJob.objects.get(pk=batch.pk).state != BatchState.RUNNING,
            timeout=600,
            what="the batch job ends (the environment built first, if need be)",
        )
        batch = BatchJob.objects.get(pk=batch.pk)
        assert batch.state == BatchState.SUCCEEDED, batch.error
        rows = [row.split(",") for row in "".join(predictions_csv(batch)).strip().splitlines()]
        assert [(path.rsplit("/", 2)[-2:], int(size)) for path, size in rows] == [
            (["day-1", f"p{i}.txt"], i) for i in range(1, 5)
        ] + [(["day-2", f"q{i}.txt"], 1) for i in range(1, 5)]
    finally:
        workers.stop()
        remove_all_nodes()
