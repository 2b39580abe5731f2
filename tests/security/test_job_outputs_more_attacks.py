"""More attacks through a job's ./outputs, each one a hole the first attack tests
(test_job_outputs_attacks.py) did not cover: what a workspace member's job could write there
to make Hangar's worker walk, read or keep more than the caps allow.
"""

from __future__ import annotations

import io
import os
import signal
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.lib import output_collection as collection
from compute.lib import output_store
from compute.models import Compute, ComputeState, Job, JobStatus, VmSize
from tests.integration.helpers import wait_for
from tests.support.factories import JobFactory
from tests.support.leftovers import remove_all_nodes
from tests.support.outputs import tar_of, with_outputs
from tests.support.teams import make_team
from workspace.access import get_access

CAPS = {
    "HANGAR_JOB_OUTPUTS_MAX_FILES": 40,
    "HANGAR_JOB_OUTPUTS_LIMIT_MB": 1,
    "HANGAR_JOB_OUTPUTS_MAX_DEPTH": 8,
}


@pytest.fixture
def caps(settings) -> None:
    for name, value in CAPS.items():
        setattr(settings, name, value)


def sink_into(tmp_path: Path) -> collection.Sink:
    folder = tmp_path / "sink"
    folder.mkdir(parents=True)
    return collection.Sink(folder, collection.limits())


def link_to(target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo()
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def folder_entry() -> tarfile.TarInfo:
    info = tarfile.TarInfo()
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


class Counted:
    """The archive's chunks, counting the bytes Hangar asked the engine for."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.read = chunks, 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.read += len(chunk)
            yield chunk


def test_entries_left_out_count_against_the_caps(tmp_path, caps):
    """Only kept entries were counted: a job's ./outputs of links, of files in a folder
    with a newline in its name, or one huge file with a bad name, was walked (and, from a
    node, read) whole whatever the caps — with tarfile holding every entry in memory, a few
    million links in a node's volume took the worker's memory and minutes of its pass, again
    at each pass after it died. Every entry a driver hands over counts now, kept or not, and
    so do the bytes Hangar reads through: past a cap the set is refused, reading stops."""
    links = [(f"outputs/l{i}", link_to("/etc/passwd")) for i in range(2000)]
    with pytest.raises(collection.Refused, match="HANGAR_JOB_OUTPUTS_MAX_FILES"):
        collection.from_tar(tar_of(links), "outputs", sink_into(tmp_path / "links"))

    bad = "outputs/bad\nname"
    hidden = [(bad, folder_entry())] + [(f"{bad}/f{i}", b"") for i in range(500)]
    with pytest.raises(collection.Refused, match="HANGAR_JOB_OUTPUTS_MAX_FILES"):
        collection.from_tar(tar_of(hidden), "outputs", sink_into(tmp_path / "hidden"))

    stream = Counted(tar_of([("outputs/big\x1b", b"\0" * (16 << 20))]))
    with pytest.raises(collection.Refused, match="HANGAR_JOB_OUTPUTS_LIMIT_MB"):
        collection.from_tar(stream, "outputs", sink_into(tmp_path / "big"))
    assert stream.read < 4 << 20, stream.read  # not the 16 MiB behind the bad name

    # A tar may name a file deep down without its folders: those made count too.
    deep = [(f"outputs/{i}/a/b/c/d/e/f", b"") for i in range(10)]
    with pytest.raises(collection.Refused, match="HANGAR_JOB_OUTPUTS_MAX_FILES"):
        collection.from_tar(tar_of(deep), "outputs", sink_into(tmp_path / "deep"))

    # The same on a host process's folder: 30 links in each of 5 folders.
    written = tmp_path / "outputs"
    for folder in "abcde":
        (written / folder).mkdir(parents=True)
        for i in range(30):
            os.symlink("/etc/passwd", written / folder / f"l{i}")
    with pytest.raises(collection.Refused, match="HANGAR_JOB_OUTPUTS_MAX_FILES"):
        collection.from_folder(
            os.open(written, collection.OPEN_DIR), sink_into(tmp_path / "folder")
        )


class KilledWhileRead(io.RawIOBase):
    """A job's file that is being copied when the worker is SIGKILLed (the OOM killer, a
    deploy): the process ends there, no `finally` runs."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0


def test_a_worker_killed_mid_collection_leaves_no_staging_behind(tmp_path, settings):
    """A worker SIGKILLed while it copies a run's outputs leaves a staging folder (up to the
    job's cap of copied bytes). The next pass, seconds later, collects the run again; it
    removed only staging older than ten minutes, and no later pass looks at that run again,
    so each kill left its folder on Hangar's disk for good (counted in the workspace's disk
    use, listed nowhere). Once a run's outputs are in place, every staging folder of that
    run goes."""
    settings.HANGAR_JOBS_DIR = tmp_path / "jobs"
    run_key = "8/a0-r0-def"
    child = os.fork()
    if child == 0:  # the worker, killed midway
        try:
            with collection.collecting(run_key, collection.limits()) as sink:
                sink.file(("a.txt",), io.BufferedReader(KilledWhileRead()), None)
        finally:
            os._exit(1)  # not reached: SIGKILL
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    job_dir = output_store.job_dir(8)
    left = [p.name for p in job_dir.iterdir()]
    assert len(left) == 1 and left[0].startswith(collection.STAGING), left
    with collection.collecting(run_key, collection.limits()) as sink:  # the next pass
        sink.file(("a.txt",), io.BytesIO(b"a"), 1)
    assert output_store.read_manifest(run_key).files == [("a.txt", 1)]
    assert [p.name for p in job_dir.iterdir()] == ["a0-r0-def"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_workspace_cannot_fill_hangars_disk_one_job_at_a_time(catalog, workers, settings):
    """Each job's outputs were capped (HANGAR_JOB_OUTPUTS_LIMIT_MB, 1 GiB), the workspace's
    not at all, and they are kept as long as the job by default: a contributor's queue of a
    thousand jobs each writing 1 GiB filled Hangar's disk (the database's and every other
    workspace's). A workspace keeps at most HANGAR_WORKSPACE_OUTPUTS_LIMIT_MB now; another
    workspace's files do not count against it."""
    settings.HANGAR_DRIVER = "local"
    workers.get("local", HANGAR_JOB_OUTPUTS_LIMIT_MB="1", HANGAR_WORKSPACE_OUTPUTS_LIMIT_MB="2")
    team, other = make_team("outs-fill"), make_team("outs-spare")
    access = get_access(team.admin, team.workspace.slug)
    made = actions.create_cluster(
        access,
        name="fillers",
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        min_nodes=0,
        max_nodes=1,
        idle_seconds_before_scaledown=60,
    )
    wait_for(lambda: Compute.objects.get(pk=made.pk).state == ComputeState.STEADY, what="steady")
    blob = b"\0" * (900 << 10)
    mine = Compute.objects.create(workspace=team.workspace, name="old")
    with_outputs(JobFactory(compute=mine), {"a": blob})
    theirs = Compute.objects.create(workspace=other.workspace, name="v")
    for _ in range(2):  # 1.8 MiB of another workspace's: not this one's
        with_outputs(JobFactory(compute=theirs), {"a": blob})

    def run(name: str) -> Job:
        job = submit_job(
            access,
            compute_id=made.pk,
            name=name,
            command="mkdir outputs && head -c 614400 /dev/zero > outputs/blob",
        )
        wait_for(lambda: Job.objects.get(pk=job.pk).is_terminal, timeout=40, what="job ends")
        return Job.objects.get(pk=job.pk)

    try:
        first = run("first")  # 0.9 + 0.6 MiB: within the workspace's 2 MiB
        assert first.status == JobStatus.COMPLETED and first.outputs_files == 1, first.outputs_note
        second = run("second")  # 1.5 + 0.6 MiB: past it
        assert second.status == JobStatus.COMPLETED
        assert second.outputs_files == 0 and second.outputs_bytes == 0
        assert "HANGAR_WORKSPACE_OUTPUTS_LIMIT_MB" in second.outputs_note, second.outputs_note
        assert "its other jobs keep 1.5 MiB" in second.outputs_note
    finally:
        remove_all_nodes()
