"""`hangar batch list|show|submit|download|cancel` as a user runs it: a subprocess talking
HTTP to a live server (pytest-django's `live_server` on the test database). No worker runs:
a submitted batch job stays running with its mini-batches queued, and what the sweep would
write (rows, counts, the end) is written through the ORM, as tests/support/inference.py's
make_batch does. The real scoring loop is tests/integration/test_batch_scoring.py's."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile

import pytest
from django.db import connection

from compute.inference.models import BatchJob, BatchState, MiniBatch, RegisteredModel
from compute.lib import snapshots
from tests.integration.test_cli import Hangar, one_line_error
from tests.support.inference import make_batch, make_model
from tests.support.teams import Team, make_team
from workspace.tokens import create_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SLUG = "clibatch"
SCRIPT = (
    "def init():\n    pass\n\n\ndef run(mini_batch):\n    return [[p, 1] for p in mini_batch]\n"
)


@pytest.fixture
def team(live_server, transactional_db) -> Team:
    team = make_team(SLUG)
    make_model(team.workspace, "iris")
    return team


def as_user(url: str, user: object, home) -> Hangar:
    return Hangar(url, create_token(user, name="cli test", expires_in_days=1).secret, home)


@pytest.fixture
def hangar(live_server, team, tmp_path) -> Hangar:
    """The workspace's contributor."""
    return as_user(live_server.url, team.contributor, tmp_path)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "batch.py"
    path.write_text(SCRIPT)
    return path


def run(hangar: Hangar, *args: str, **kwargs):
    return hangar(*args, "-w", SLUG, **kwargs)


def ok(hangar: Hangar, *args: str, **kwargs):
    return hangar.ok(*args, "-w", SLUG, **kwargs)


def as_json(hangar: Hangar, *args: str, **kwargs):
    return hangar.json(*args, "-w", SLUG, **kwargs)


def submit_args(name: str, script, *inputs, **options: str) -> list[str]:
    args = ["batch", "submit", name, "--model", "iris", "--script", str(script),
            "--size", "Standard_D2s_v3", "--nodes", "1"]  # fmt: skip
    for option, value in options.items():
        args += [f"--{option.replace('_', '-')}", value]
    return args + [str(path) for path in inputs]


def stored_files(batch_id: int) -> list[str]:
    return snapshots.files_in(snapshots.batch_input_store().folder(batch_id))


def test_batch_jobs_are_submitted_from_files_a_folder_or_a_zip_listed_shown_and_canceled(
    hangar, script, tmp_path
):
    assert ok(hangar, "batch", "list").stderr == f"No batch jobs in {SLUG}.\n"

    # Files, side by side: mini-batches of N of them in name order.
    files = []
    for name in ("c.txt", "a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
        files.append(tmp_path / name)
    made = ok(hangar, *submit_args("nightly", script, *files, mini_batch_size="2",
                                   tier="low_priority", attempts="2"))  # fmt: skip
    for words in ("nightly", "running", "0 of 2 mini-batches done", "iris:1", "low_priority",
                  "2 files, 2 attempts", "inputs        3 files, 15 B", "up to 1",
                  "the site's node image"):  # fmt: skip
        assert words in made.stdout, (words, made.stdout)
    batch = BatchJob.objects.get(name="nightly")
    assert [m.files for m in batch.mini_batches.order_by("index")] == [
        ["a.txt", "b.txt"], ["c.txt"],
    ]  # fmt: skip
    assert (batch.tier, batch.max_attempts, batch.node_count) == ("low_priority", 2, 1)
    stored = snapshots.batch_input_store().folder(batch.pk)
    assert [(stored / n).read_text() for n in ("a.txt", "b.txt", "c.txt")] == [
        "a.txt", "b.txt", "c.txt",
    ]  # fmt: skip

    # A folder is zipped with every regular file in it (ignore files ignored, .git too);
    # a link is left out, and said so.
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / ".gitignore").write_text("*.txt\n")
    (folder / ".git" / "HEAD").write_text("ref\n")
    (folder / "one.txt").write_text("1")
    (folder / "sub" / "two.txt").write_text("22")
    (folder / "link.txt").symlink_to(folder / "one.txt")
    zipped = ok(hangar, *submit_args("weekly", script, folder))
    assert zipped.stderr.splitlines() == [
        "hangar: zipped 4 files (13 B) into images.zip",
        "hangar: left out 1 symbolic link(s): link.txt",
    ], zipped.stderr
    assert "images.zip: 4 files, 13 B" in zipped.stdout
    weekly = BatchJob.objects.get(name="weekly")
    assert weekly.input_name == "images.zip" and weekly.file_count == 4
    assert stored_files(weekly.pk) == [".git/HEAD", ".gitignore", "one.txt", "sub/two.txt"]

    # A .zip is sent as it is (the server unpacks it).
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("day/x.csv", "1,2\n")
        opened.writestr("day/y.csv", "3,4\n")
    (tmp_path / "days.zip").write_bytes(archive.getvalue())
    daily = as_json(hangar, *submit_args("daily", script, tmp_path / "days.zip"))
    assert (daily["input_name"], daily["file_count"], daily["batches_total"]) == (
        "days.zip", 2, 1,
    )  # fmt: skip
    assert stored_files(daily["id"]) == ["day/x.csv", "day/y.csv"]

    # Listed newest first; shown by name or by id.
    table = ok(hangar, "batch", "list").stdout
    assert table.index("daily") < table.index("weekly") < table.index("nightly")
    for words in ("DONE", "0/2", "0/1", "running", "iris:1"):
        assert words in table, (words, table)
    assert [b["name"] for b in as_json(hangar, "batch", "list", "--limit", "2")] == [
        "daily", "weekly",
    ]  # fmt: skip
    assert as_json(hangar, "batch", "show", "weekly")["id"] == weekly.pk
    shown = as_json(hangar, "batch", "show", str(batch.pk))
    assert shown["name"] == "nightly" and shown["predictions_url"].endswith(
        f"/batch-jobs/{batch.pk}/predictions"
    )
    # On a terminal, the upload's progress (over every file) is shown on stderr.
    done, shown = hangar.on_a_terminal(*submit_args("hourly", script, *files), "-w", SLUG,
                                       "-o", "json")  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in shown, shown
    assert "uploading" in shown and "bytes" in shown
    assert json.loads(done.stdout)["file_count"] == 3
    line = one_line_error(run(hangar, "batch", "show", "monthly"))
    assert line == f"hangar: Not found: no batch job named 'monthly' in '{SLUG}'. (404)"

    # Cancel asks first; once canceled, again is a conflict in the API's words.
    asked = run(hangar, "batch", "cancel", "nightly", input="n\n")
    assert asked.returncode == 1 and asked.stderr == (
        f"Cancel batch job 'nightly' of {SLUG} (0 of 2 mini-batches done)? Its running "
        "mini-batches stop. [y/N]: hangar: not canceled (pass --yes to cancel without being "
        "asked)\n"
    )
    assert BatchJob.objects.get(pk=batch.pk).state == BatchState.RUNNING
    canceled = ok(hangar, "batch", "cancel", "nightly", "--yes").stdout
    assert "canceled" in canceled and f"Canceled by {SLUG}-contributor." in canceled
    assert BatchJob.objects.get(pk=batch.pk).state == BatchState.CANCELED
    line = one_line_error(run(hangar, "batch", "cancel", "nightly", "--yes"))
    assert line == "hangar: nightly is already canceled. (409)"
    assert as_json(hangar, "batch", "cancel", str(weekly.pk), "--yes")["state"] == "canceled"


def test_refusals_are_one_line_in_the_apis_words_or_a_usage_error(hangar, team, script, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    inputs = tmp_path / "a.txt"

    # A reader may look but not submit or cancel.
    reader = as_user(hangar.url, team.reader, tmp_path)
    line = one_line_error(run(reader, *submit_args("nightly", script, inputs)))
    assert "submitting batch scoring jobs" in line and line.endswith("(403)"), line
    assert not BatchJob.objects.exists()

    # The API's refusals: the field and its words, 422; nothing is kept.
    cases = {
        "mini_batch_size: Ensure this value is greater than or equal to 1.": submit_args(
            "nightly", script, inputs, mini_batch_size="0"
        ),
        "name: 3–32 lowercase letters": submit_args("Nightly!", script, inputs),
        "model: ": submit_args("nightly", script, inputs, model="tulip"),
    }
    for words, args in cases.items():
        line = one_line_error(run(hangar, *args))
        assert words in line and line.endswith("(422)"), (words, line)
    # Two inputs of one name (from two folders), and a folder holding no file.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("b")
    line = one_line_error(run(hangar, *submit_args("nightly", script, inputs,
                                                   tmp_path / "other" / "a.txt")))  # fmt: skip
    assert line == "hangar: inputs: Two files are named “a.txt”. (422)"
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    line = one_line_error(run(hangar, *submit_args("nightly", script, tmp_path / "empty")), 2)
    assert line == f"hangar: {tmp_path / 'empty'}: the folder holds no file"
    bad_script = tmp_path / "bad.py"
    bad_script.write_text("print('no functions')\n")
    line = one_line_error(run(hangar, *submit_args("nightly", bad_script, inputs)))
    assert line == (
        "hangar: scoring_script: A batch scoring script defines init() and run(mini_batch). (422)"
    )
    assert not BatchJob.objects.exists()
    assert not MiniBatch.objects.exists()

    # Usage errors, before anything is sent (status 2).
    usage = {
        "hangar: nope.txt: no such file or folder": submit_args("nightly", script, "nope.txt"),
        f"hangar: {tmp_path / 'other'} is a folder: give one folder alone (it is zipped), or "
        "files": submit_args("nightly", script, inputs, tmp_path / "other"),
        "hangar: --script nope.py: no such file": submit_args("nightly", "nope.py", inputs),
    }
    for expected, args in usage.items():
        assert one_line_error(run(hangar, *args), 2) == expected
    line = one_line_error(run(hangar, *submit_args("nightly", script, inputs, tier="spot")), 2)
    assert "invalid choice: 'spot'" in line
    line = one_line_error(run(hangar, "batch", "submit", "nightly", "--model", "iris"), 2)
    assert "the following arguments are required" in line

    # A name is one batch job's in its workspace: a second of that name is refused.
    first = as_json(hangar, *submit_args("nightly", script, inputs))
    line = one_line_error(run(hangar, *submit_args("nightly", script, inputs)))
    assert line == "hangar: name: Clibatch already has a batch job named nightly. (422)"
    assert as_json(hangar, "batch", "show", "nightly")["id"] == first["id"]
    line = one_line_error(run(reader, "batch", "cancel", "nightly", "--yes"))
    assert "canceling batch scoring jobs" in line and line.endswith("(403)")


def test_download_streams_the_predictions_and_errors_as_they_are(hangar, team, tmp_path):
    batch = make_batch(team.workspace, RegisteredModel.objects.get(name="iris"))
    MiniBatch.objects.filter(batch=batch, index=0).update(rows="a.txt,small\na2.txt,big\n")

    got = ok(hangar, "batch", "download", "nightly")
    assert got.stdout == "a.txt,small\na2.txt,big\n"
    assert got.stderr == (
        "hangar: nightly is still running (1 of 3 mini-batches done, 1 failed): download "
        "again once it ends for the rest\n"
    )
    errors = ok(hangar, "batch", "download", str(batch.pk), "--errors").stdout
    assert errors.splitlines() == [
        "mini_batch,attempts,error,files",
        "2,3,exit code 1: ValueError: cannot read b.txt,b.txt",
    ]

    # Into a file: whole, then renamed; nothing beside it.
    BatchJob.objects.filter(pk=batch.pk).update(state=BatchState.PARTIAL)
    target = tmp_path / "out" / "predictions.csv"
    target.parent.mkdir()
    saved = ok(hangar, "batch", "download", "nightly", "-o", str(target))
    assert saved.stdout == ""
    assert saved.stderr == f"hangar: wrote nightly's predictions.csv to {target} (23 B)\n"
    assert target.read_text() == "a.txt,small\na2.txt,big\n"
    assert os.listdir(target.parent) == ["predictions.csv"]
    ok(hangar, "batch", "download", "nightly", "-o", "/dev/null", "--errors")

    line = one_line_error(run(hangar, "batch", "download", "nightly", "-o", "json"), 2)
    assert line == (
        "hangar: -o of batch download names the file to write; to write one named json, give ./json"
    )
    nowhere = tmp_path / "no" / "x.csv"
    line = one_line_error(run(hangar, "batch", "download", "nightly", "-o", str(nowhere)))
    assert line == f"hangar: {nowhere}: No such file or directory"
    line = one_line_error(run(hangar, "batch", "download", "9999"))
    assert line.endswith("(404)"), line
    # An outsider's token sees no such workspace.
    outsider = as_user(hangar.url, team.outsider, tmp_path)
    assert one_line_error(run(outsider, "batch", "download", str(batch.pk))).endswith("(404)")


def test_submit_wait_follows_the_progress_and_ends_with_its_state(hangar, script, tmp_path):
    """--wait polls the batch job; its progress is a line on stderr each time it moves, and
    a batch job that ends with failed mini-batches exits 1 after it is shown."""
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text(name)

    def sweep() -> None:  # what the worker's sweep would write, step by step
        try:
            deadline = time.monotonic() + 30
            while not BatchJob.objects.filter(name="nightly").exists():
                assert time.monotonic() < deadline
                time.sleep(0.1)
            rows = BatchJob.objects.filter(name="nightly")
            time.sleep(1)
            rows.update(batches_done=1, row_count=1)
            time.sleep(1.5)
            rows.update(batches_done=2, batches_failed=1, row_count=2, state=BatchState.PARTIAL)
        finally:
            connection.close()

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    inputs = [tmp_path / n for n in ("a.txt", "b.txt", "c.txt")]
    done = run(hangar, *submit_args("nightly", script, *inputs, mini_batch_size="1"), "--wait")
    sweeper.join()
    assert done.returncode == 1, done
    assert "completed with errors" in done.stdout and "2 of 3 mini-batches done, 1 failed" in (
        done.stdout
    )
    lines = done.stderr.splitlines()
    assert lines[0].startswith(
        "hangar: batch job nightly submitted: 3 files in 3 mini-batches (its page: http://"
    )
    assert lines[1:] == [
        "hangar: nightly running: 0 of 3 mini-batches done",
        "hangar: nightly running: 1 of 3 mini-batches done",
        "hangar: nightly completed with errors: 2 of 3 mini-batches done, 1 failed",
        "hangar: batch job nightly completed with errors: 2 of 3 mini-batches done, 1 failed",
    ], done.stderr

    # One that succeeds exits 0 (with --output json: the batch job as JSON, nothing else).
    def succeed() -> None:
        try:
            deadline = time.monotonic() + 30
            while not BatchJob.objects.filter(name="weekly").exists():
                assert time.monotonic() < deadline
                time.sleep(0.1)
            time.sleep(0.5)
            BatchJob.objects.filter(name="weekly").update(
                batches_done=1, row_count=3, state=BatchState.SUCCEEDED
            )
        finally:
            connection.close()

    sweeper = threading.Thread(target=succeed)
    sweeper.start()
    done = run(hangar, *submit_args("weekly", script, *inputs), "--wait", "--output", "json")
    sweeper.join()
    assert done.returncode == 0, done
    assert json.loads(done.stdout)["state"] == "succeeded"
