"""Attacks through a job's ./outputs: each test is what a workspace member's job could
write there to make Hangar keep (and serve) a file that is not the job's own, hang its
collection, or fill Hangar's disk. What a job wrote is kept only as folders and regular
files with plain names, within caps; the rest is left out (or the whole set refused) and
the job says why.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.lib import jobfiles, output_collection, output_store
from compute.models import Compute, ComputeState, Event, EventVerb, Job, JobStatus, VmSize
from tests.integration.helpers import wait_for
from tests.support.factories import JobFactory
from tests.support.leftovers import remove_all_nodes
from tests.support.outputs import tar_of, with_outputs
from tests.support.teams import make_team
from workspace.access import get_access

J = JobStatus
CAPS = {"HANGAR_JOB_OUTPUTS_MAX_FILES": "40", "HANGAR_JOB_OUTPUTS_LIMIT_MB": "1"}


@pytest.fixture
def nodes(catalog, workers, settings) -> Iterator[dict]:
    """A local-driver cluster with a worker whose caps are small (40 files, 1 MiB), and a
    victim job of another workspace that kept a file."""
    settings.HANGAR_DRIVER = "local"
    workers.get("local", **CAPS)
    team, victim = make_team("outs-attacker"), make_team("outs-victim")
    access = get_access(team.admin, team.workspace.slug)
    made = actions.create_cluster(
        access,
        name="trainers",
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        min_nodes=0,
        max_nodes=2,
        idle_seconds_before_scaledown=60,
    )
    wait_for(lambda: Compute.objects.get(pk=made.pk).state == ComputeState.STEADY, what="steady")
    secret = with_outputs(
        JobFactory(compute=Compute.objects.create(workspace=victim.workspace, name="v")),
        {"secret.txt": b"the victim's weights"},
    )
    yield {"team": team, "access": access, "compute": made, "victim_job": secret}
    remove_all_nodes()


def run(nodes: dict, command: str) -> Job:
    job = submit_job(nodes["access"], compute_id=nodes["compute"].pk, name="j", command=command)
    wait_for(lambda: Job.objects.get(pk=job.pk).is_terminal, timeout=40, what="job ends")
    return Job.objects.get(pk=job.pk)


def kept(job: Job) -> dict[str, bytes]:
    client = Client()
    client.force_login(job.submitted_by)
    found = {}
    for item in output_store.listing(
        [(r.rank, r.key) for r in job.runs.filter(attempt=job.retries)], job.node_count > 1
    )[0]:
        url = reverse("compute:job-output-file", args=[job.workspace.slug, job.pk, item.path])
        response = client.get(url)
        assert response.status_code == 200
        found[item.path] = b"".join(response.streaming_content)
    return found


def victim_file(nodes: dict) -> Path:
    job = nodes["victim_job"]
    run = job.runs.get()
    return output_store.run_dir(run.key) / output_store.FILES / "secret.txt"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_links_fifos_and_odd_names_in_outputs_are_left_out_and_named(nodes):
    """A link to /etc/passwd, to another workspace's kept outputs, a hard link to a file
    elsewhere (any file the job's user may link: another job's, with host processes), a
    FIFO (which would hang a reader that opened it blocking), links to /, and names with
    a newline or a bidirectional override: none is kept or followed; an HTML name is kept
    as text, shown escaped, downloaded under a safe name. Without the checks the links
    were followed (/etc/passwd came back as the job's output) and the FIFO hung."""
    victim = victim_file(nodes)
    job = run(
        nodes,
        "mkdir outputs && cd outputs && echo ok > real.txt && "
        "ln -s /etc/passwd passwd && "
        f"ln -s {victim.parent} theirs && "
        "echo not-an-output > ../elsewhere.txt && ln ../elsewhere.txt stolen && "
        "mkfifo pipe && ln -s / root && "
        "printf 1 > \"$(printf 'new\\nline')\" && "
        "printf 2 > \"$(printf 'gpj.\\342\\200\\256exe')\" && "
        "printf 3 > '<img src=x onerror=alert(1)>.txt'",
    )
    assert job.status == J.COMPLETED, jobfiles.read_output(job.runs.get().key)
    files = kept(job)
    assert files == {"real.txt": b"ok\n", "<img src=x onerror=alert(1)>.txt": b"3"}
    note = job.outputs_note
    for name, why in (
        ("passwd", "is a symbolic link"),
        ("theirs", "is a symbolic link"),
        ("root", "is a symbolic link"),
        ("stolen", "is a hard link"),
        ("pipe", "is a FIFO"),
        ("new?line", "has control characters in its name"),
        ("gpj.?exe", "has control characters in its name"),
    ):
        assert f"“{name}” {why}" in note, note
    assert "\n" not in note
    event = Event.objects.get(compute=nodes["compute"], verb=EventVerb.JOB_OUTPUTS_NOT_KEPT)
    assert "is a hard link" in event.message
    client = Client()
    client.force_login(nodes["team"].reader)
    page = client.get(job.get_absolute_url()).content.decode()
    assert "<img src=x onerror" not in page and "&lt;img src=x onerror" in page
    assert "is a FIFO" in page
    url = reverse(
        "compute:job-output-file",
        args=[job.workspace.slug, job.pk, files and next(p for p in files if p.startswith("<"))],
    )
    response = client.get(url)
    assert (
        response["Content-Disposition"] == 'attachment; filename="img_src_x_onerror_alert_1_.txt"'
    )
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_outputs_past_a_cap_are_refused_whole_with_the_reason(nodes):
    """Over 40 files, over 1 MiB (for two ranks together), or ./outputs itself a link: no
    file is kept, and the job says which cap (a random part would be worse)."""
    many = run(nodes, "mkdir outputs && for i in $(seq 1 60); do echo $i > outputs/f$i; done")
    big = submit_job(
        nodes["access"],
        compute_id=nodes["compute"].pk,
        name="big",
        node_count=2,
        # 600 KiB per rank: each fits, both together pass the job's 1 MiB.
        command="mkdir outputs && head -c 614400 /dev/zero > outputs/blob",
    )
    linked = run(nodes, "ln -s / outputs")
    wait_for(lambda: Job.objects.get(pk=big.pk).is_terminal, timeout=40, what="big ends")
    big = Job.objects.get(pk=big.pk)
    assert many.outputs_files == 0 and "HANGAR_JOB_OUTPUTS_MAX_FILES" in many.outputs_note
    assert kept(many) == {}
    assert big.outputs_files == 1, big.outputs_note  # rank 0's, counted first
    assert "Rank 1:" in big.outputs_note and "HANGAR_JOB_OUTPUTS_LIMIT_MB" in big.outputs_note
    assert list(kept(big)) == ["rank-0/blob"]
    assert linked.outputs_files == 0 and "“outputs” is a symbolic link" in linked.outputs_note
    assert many.status == big.status == linked.status == J.COMPLETED


def sink_into(tmp_path: Path, **caps: int) -> output_collection.Sink:
    folder = tmp_path / "sink"
    folder.mkdir()
    limits = output_collection.Limits(
        caps.get("max_bytes", 1 << 20), caps.get("max_files", 100), caps.get("max_depth", 8)
    )
    return output_collection.Sink(folder, limits)


def test_an_archive_naming_paths_outside_outputs_writes_nothing_outside(tmp_path, settings):
    """What the Docker engine hands over is a tar: one whose entries say `..`, an absolute
    path, or a link (a hostile or buggy engine of a node host) puts nothing outside the
    sink's folder. Without the checks tarfile's names were joined as they came."""
    settings.HANGAR_JOB_OUTPUTS_MAX_DEPTH = 8
    sink = sink_into(tmp_path)
    link = tarfile.TarInfo()
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    device = tarfile.TarInfo()
    device.type = tarfile.CHRTYPE
    output_collection.from_tar(
        tar_of(
            [
                ("outputs/ok.txt", b"ok"),
                ("outputs/../../escaped.txt", b"x"),
                ("/outputs/abs.txt", b"x"),
                ("outputs/sub/../../up.txt", b"x"),
                ("elsewhere/x.txt", b"x"),
                ("outputs/passwd", link),
                ("outputs/tty", device),
            ],
            chunk=700,
        ),
        "outputs",
        sink,
    )
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert written == ["sink", "sink/ok.txt"]
    assert sink.manifest.files == [("ok.txt", 2)]
    assert sink.manifest.left_out_count == 6
    note = sink.manifest.note()
    assert "is a symbolic link" in note and "is a device" in note
    assert "is outside ./outputs" in note


def test_an_archive_past_a_cap_is_refused_before_it_is_copied(tmp_path, settings):
    """A tar entry whose header says 2 MiB is refused before a byte of it is written; deep
    folders past the depth cap and more entries than the file cap are refused too."""
    settings.HANGAR_JOB_OUTPUTS_LIMIT_MB = 1
    settings.HANGAR_JOB_OUTPUTS_MAX_FILES = 3
    settings.HANGAR_JOB_OUTPUTS_MAX_DEPTH = 2
    for entries, cap in (
        ([("outputs/big", b"\0" * (2 << 20))], "HANGAR_JOB_OUTPUTS_LIMIT_MB"),
        ([(f"outputs/f{i}", b"x") for i in range(5)], "HANGAR_JOB_OUTPUTS_MAX_FILES"),
        ([("outputs/a/b/c", b"x")], "HANGAR_JOB_OUTPUTS_MAX_DEPTH"),
    ):
        sink = output_collection.Sink(tmp_path, output_collection.limits())
        with pytest.raises(output_collection.Refused, match=cap):
            output_collection.from_tar(tar_of(entries, chunk=700), "outputs", sink)
        assert not (tmp_path / "big").exists()


def test_a_collection_killed_midway_leaves_nothing_listed_and_is_redone(tmp_path, settings):
    """A worker killed while it copies leaves a staging folder, never a half set: the run
    reads as not collected, and the next pass collects it whole (once)."""
    settings.HANGAR_JOBS_DIR = tmp_path / "jobs"
    run_key = "7/a0-r0-abc"

    class Killed(BaseException):
        pass

    source = tmp_path / "outputs"
    source.mkdir()
    (source / "a.txt").write_bytes(b"a")
    (source / "b.txt").write_bytes(b"b")
    with (
        pytest.raises(Killed),
        output_collection.collecting(run_key, output_collection.limits()) as sink,
    ):
        sink.file(("a.txt",), io.BytesIO(b"a"), 1)
        raise Killed  # SIGKILL stands in: nothing after this line ran
    assert output_store.read_manifest(run_key) is None
    with output_collection.collecting(run_key, output_collection.limits()) as sink:
        output_collection.from_folder(os.open(source, output_store.OPEN_DIR), sink)
    assert output_store.read_manifest(run_key).files == [("a.txt", 1), ("b.txt", 1)]
    # A late second pass:
    with output_collection.collecting(run_key, output_collection.limits()) as sink:
        sink.file(("c.txt",), io.BytesIO(b"c"), 1)
    assert output_store.read_manifest(run_key).files == [("a.txt", 1), ("b.txt", 1)]
    leftovers = [p.name for p in output_store.job_dir(7).iterdir()]
    assert leftovers == ["a0-r0-abc"], leftovers


@pytest.mark.django_db
def test_batch_inputs_from_another_workspaces_job_are_as_if_it_did_not_exist(client, settings):
    """A contributor names another workspace's job (with outputs) as batch inputs: the
    same answer as for an id no job has, and nothing is stored or created. A job of one's
    own that is not completed, or kept no files, is refused saying so."""
    from compute.inference.models import BatchJob
    from tests.support.inference import SCORING, make_model

    team, other = make_team("outs-batch"), make_team("outs-batch-victim")
    theirs = with_outputs(
        JobFactory(compute=Compute.objects.create(workspace=other.workspace, name="v"))
    )
    mine = Compute.objects.create(workspace=team.workspace, name="mine")
    failed = JobFactory(compute=mine, status=J.FAILED)
    empty = JobFactory(compute=mine, status=J.COMPLETED)
    model = make_model(team.workspace)
    client.force_login(team.contributor)
    url = reverse("inference:batch-create", args=[team.workspace.slug])

    def error_for(job_id: int) -> str:
        form = {
            "name": "weekly", "model": model.pk, "tier": "dedicated", "node_count": "1",
            "vm_size": VmSize.objects.get(name="Standard_DS3_v2").pk, "mini_batch_size": "10",
            "max_attempts": "3", "scoring_script": SCORING, "from_job": str(job_id),
        }  # fmt: skip
        response = client.post(url, form)
        assert response.status_code == 200  # the form again, with the error
        return response.context["form"].errors["from_job"][0]

    assert error_for(theirs.pk) == f"Job #{theirs.pk} does not exist in {team.workspace.name}."
    assert error_for(987654) == f"Job #987654 does not exist in {team.workspace.name}."
    assert "is failed: only the outputs of a completed job" in error_for(failed.pk)
    assert "kept no output files" in error_for(empty.pk)
    assert not BatchJob.objects.exists()
    page = client.get(url).content.decode()
    assert f"(#{theirs.pk})" not in page  # never offered either
