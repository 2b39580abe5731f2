"""`hangar job outputs` and `hangar batch submit --from-job` as a user runs them: a
subprocess talking HTTP to a live server (pytest-django's `live_server` on the test
database). A job's output files are stored as a run's collection stores them
(tests/support/outputs.py); collecting them from real runs is
tests/integration/test_job_outputs.py's. A hostile server (a small one of this test's)
sends a zip whose names leave the folder: refused, nothing written."""

from __future__ import annotations

import io
import json
import stat
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from compute.inference.models import BatchJob
from compute.lib import snapshots
from compute.models import Compute, Job, JobStatus
from tests.integration.test_cli import Hangar, one_line_error
from tests.integration.test_cli_batch import SCRIPT, as_user
from tests.support.factories import JobFactory
from tests.support.inference import make_model
from tests.support.outputs import WEIGHTS, with_outputs
from tests.support.teams import Team, make_team

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SLUG = "cliouts"


@pytest.fixture
def team(live_server, transactional_db) -> Team:
    return make_team(SLUG)


@pytest.fixture
def hangar(live_server, team, tmp_path) -> Hangar:
    """The workspace's contributor."""
    return as_user(live_server.url, team.contributor, tmp_path)


def job_in(team: Team, **fields: object) -> Job:
    compute = Compute.objects.get_or_create(workspace=team.workspace, name="trainers")[0]
    return JobFactory(compute=compute, **fields)


def run(hangar: Hangar, *args: str):
    return hangar(*args, "-w", SLUG)


def ok(hangar: Hangar, *args: str):
    done = run(hangar, *args)
    assert done.returncode == 0, done
    return done


def everything_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_jobs_outputs_are_listed_and_downloaded_all_or_one(hangar, team, tmp_path):
    job = with_outputs(job_in(team))
    listed = ok(hangar, "job", "outputs", str(job.pk))
    assert listed.stderr == ""
    lines = [line.split() for line in listed.stdout.splitlines()]
    assert ["PATH", "SIZE"] in lines
    assert ["metrics.json", "12", "B"] in lines and ["model/weights.bin", "9", "B"] in lines
    document = json.loads(ok(hangar, "job", "outputs", str(job.pk), "-o", "json").stdout)
    assert [(f["path"], f["size"]) for f in document["files"]] == [
        ("metrics.json", 12), ("model/weights.bin", 9),
    ]  # fmt: skip
    assert (document["job_id"], document["total_bytes"], document["notes"]) == (job.pk, 21, [])

    # All of them (the zip, extracted), into a folder made for them; again, replaced.
    into = tmp_path / "got" / "outs"
    for _ in range(2):
        got = ok(hangar, "job", "outputs", str(job.pk), "--download", str(into))
        assert got.stdout == ""
        assert got.stderr == f"hangar: wrote 2 files (21 B) of job {job.pk}'s outputs into {into}\n"
        assert {p: (into / p).read_bytes() for p in WEIGHTS} == WEIGHTS
        assert everything_in(into) == ["metrics.json", "model", "model/weights.bin"]

    # One file, at its listed path under the folder; as JSON, what was written.
    one = tmp_path / "one"
    done = ok(hangar, "job", "outputs", str(job.pk), "-d", str(one), "--file", "model/weights.bin",
              "-o", "json")  # fmt: skip
    assert json.loads(done.stdout) == {
        "job_id": job.pk, "directory": str(one),
        "files": [{"path": "model/weights.bin", "size": 9}],
    }  # fmt: skip
    assert everything_in(one) == ["model", "model/weights.bin"]
    assert (one / "model" / "weights.bin").read_bytes() == WEIGHTS["model/weights.bin"]

    # A link in the folder is in the way, never followed.
    elsewhere, linked = tmp_path / "elsewhere", tmp_path / "linked"
    elsewhere.mkdir()
    linked.mkdir()
    (linked / "model").symlink_to(elsewhere)
    line = one_line_error(run(hangar, "job", "outputs", str(job.pk), "-d", str(linked)))
    assert line == (
        f"hangar: refused to write job {job.pk}'s output files: {linked / 'model'} is in the "
        "way: not a folder"
    )
    assert everything_in(elsewhere) == []

    # Refusals: a file it does not have, --file alone, a job that is not there.
    line = one_line_error(run(hangar, "job", "outputs", str(job.pk), "-d", str(one), "--file",
                              "../metrics.json"))  # fmt: skip
    assert line == (
        f"hangar: job {job.pk} has no output file '../metrics.json' (`hangar job outputs "
        f"{job.pk}` lists them)"
    )
    line = one_line_error(run(hangar, "job", "outputs", str(job.pk), "--file", "metrics.json"), 2)
    assert line == "hangar: --file needs --download DIR (the folder to write it into)"
    line = one_line_error(run(hangar, "job", "outputs", "987654"))
    assert line == f"hangar: Not found: no job 987654 in '{SLUG}'. (404)"
    outsider = as_user(hangar.url, team.outsider, tmp_path)
    line = one_line_error(run(outsider, "job", "outputs", str(job.pk), "-d", str(tmp_path / "x")))
    assert line == f"hangar: Not found: no job {job.pk} in '{SLUG}'. (404)"
    assert not (tmp_path / "x").exists()
    # A reader may list and download them.
    reader = as_user(hangar.url, team.reader, tmp_path)
    assert "metrics.json" in ok(reader, "job", "outputs", str(job.pk)).stdout


def test_a_job_without_outputs_says_why(hangar, team, tmp_path):
    kept_none = job_in(team, status=JobStatus.COMPLETED)
    listed = ok(hangar, "job", "outputs", str(kept_none.pk))
    assert (listed.stdout, listed.stderr) == ("", f"Job {kept_none.pk} kept no output files.\n")
    line = one_line_error(run(hangar, "job", "outputs", str(kept_none.pk), "-d", str(tmp_path)))
    assert line == f"hangar: Job {kept_none.pk} kept no output files. Nothing to download."

    queued = job_in(team)
    listed = ok(hangar, "job", "outputs", str(queued.pk))
    assert listed.stderr == (
        f"Job {queued.pk} is queued: its output files are kept when it ends.\n"
    )
    assert (
        json.loads(ok(hangar, "job", "outputs", str(queued.pk), "-o", "json").stdout)["files"] == []
    )

    # Past a cap: none kept, and the reason (on stderr, after the empty table's line).
    why = "./outputs holds more than 1,024 MiB (HANGAR_JOB_OUTPUTS_LIMIT_MB): none kept."
    refused = job_in(team, status=JobStatus.FAILED, outputs_note=why)
    listed = ok(hangar, "job", "outputs", str(refused.pk))
    assert listed.stderr.splitlines() == [
        f"Job {refused.pk} kept no output files.", f"hangar: {why}",
    ]  # fmt: skip
    line = one_line_error(run(hangar, "job", "outputs", str(refused.pk), "-d", str(tmp_path)))
    assert line == f"hangar: Job {refused.pk} kept no output files. {why} Nothing to download."
    assert everything_in(tmp_path) == []


def test_batch_submit_from_a_jobs_outputs(hangar, team, tmp_path):
    make_model(team.workspace, "iris")
    script = tmp_path / "batch.py"
    script.write_text(SCRIPT)
    job = with_outputs(job_in(team, name="featurize"))
    submit = ["batch", "submit", "weekly", "-m", "iris", "--script", str(script),
              "--size", "Standard_D2s_v3", "--nodes", "1"]  # fmt: skip

    made = json.loads(ok(hangar, *submit, "--from-job", str(job.pk), "-o", "json").stdout)
    assert (made["input_name"], made["file_count"]) == (f"outputs of job featurize (#{job.pk})", 2)
    stored = snapshots.batch_input_store().folder(made["id"])
    assert snapshots.files_in(stored) == ["metrics.json", "model/weights.bin"]
    assert (stored / "metrics.json").read_bytes() == WEIGHTS["metrics.json"]

    # Refusals: both inputs and a job, neither (usage); the API's for a job that cannot be.
    (tmp_path / "a.txt").write_text("a")
    line = one_line_error(run(hangar, *submit, "--from-job", str(job.pk), str(tmp_path / "a.txt")),
                          2)  # fmt: skip
    assert line == "hangar: give INPUT files or --from-job JOB, not both"
    line = one_line_error(run(hangar, *submit), 2)
    assert line == "hangar: give the INPUT files, a folder or a .zip (or --from-job JOB)"
    failed = job_in(team, status=JobStatus.FAILED)
    for job_id, words in [
        (987654, f"from_job: Job #987654 does not exist in {team.workspace.name}."),
        (failed.pk, "is failed: only the outputs of a completed job"),
    ]:
        line = one_line_error(run(hangar, *submit[:2], "monthly", *submit[3:], "--from-job",
                                  str(job_id)))  # fmt: skip
        assert words in line and line.endswith("(422)"), line
    assert list(BatchJob.objects.values_list("name", flat=True)) == ["weekly"]


# A hostile server ---------------------------------------------------------------------


def hostile_zip(name: str, symlink: bool = False) -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("fine.txt", b"ok")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, b"/etc/passwd" if symlink else b"evil")
    return data.getvalue()


@pytest.fixture
def hostile() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A server that answers as Hangar's API would, with what the test puts in `answers`
    (path: body), on 127.0.0.1."""
    answers: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.get(self.path.split("?")[0])
            self.send_response(200 if body is not None else 404)
            kind = "application/zip" if self.path.endswith(".zip") else "application/json"
            self.send_header("Content-Type", kind)
            body = body if body is not None else b'{"detail": "Not Found"}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answers
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("name", "symlink", "why"),
    [
        (
            "../../evil.txt",
            False,
            "“../../evil.txt” is not a plain path (empty, `.` or `..` in it)",
        ),
        ("/hangar-cli-evil.txt", False, "“/hangar-cli-evil.txt” is not a relative path"),
        (
            "model/../../evil.txt",
            False,
            "“model/../../evil.txt” is not a plain path (empty, `.` or `..` in it)",
        ),
        ("passwd", True, "“passwd” is not a regular file (a link?)"),
        ("evil\x1b[2J.txt", False, "“evil?[2J.txt” has control characters in its name"),
    ],
)
def test_a_zip_from_a_hostile_server_that_leaves_the_folder_is_refused_whole(
    hostile, tmp_path, name, symlink, why
):
    url, answers = hostile
    base = f"/api/v1/workspaces/{SLUG}/jobs/5/outputs"
    listing = {"job_id": 5, "status": "completed", "total_bytes": 6, "notes": [],
               "files": [{"path": "fine.txt", "size": 2, "url": ""},
                         {"path": name, "size": 4, "url": ""}],
               "zip_url": f"{url}{base}.zip"}  # fmt: skip
    answers[base] = json.dumps(listing).encode()
    answers[f"{base}.zip"] = hostile_zip(name, symlink)
    (tmp_path / "home").mkdir()
    hangar = Hangar(url, "hgr_not-checked-by-this-server", tmp_path / "home")
    into = tmp_path / "a" / "b" / "into"
    line = one_line_error(run(hangar, "job", "outputs", "5", "--download", str(into)))
    assert line == f"hangar: refused to write job 5's output files: {why}"
    assert everything_in(tmp_path / "a") == ["b", "b/into"]  # not even fine.txt
    assert not Path("/hangar-cli-evil.txt").exists()
    # One file by such a name is refused before it is asked for.
    if not symlink:
        line = one_line_error(run(hangar, "job", "outputs", "5", "-d", str(into), "--file", name))
        assert line == f"hangar: refused to write job 5's output files: {why}"
        assert everything_in(tmp_path / "a") == ["b", "b/into"]
