"""Attacks on job code snapshots through the real submit page (issue 11, points 6 and 7)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from compute.actions.jobs import remove_code, submit_job
from compute.lib import jobfiles
from compute.models import Job
from tests.security.conftest import form_errors, submit_url, zipped
from workspace.access import get_access

pytestmark = pytest.mark.django_db
MiB = 1024 * 1024


def post(client, team, trainers, **fields):
    data = {"compute": trainers.pk, "command": "python train.py", "node_count": "1", **fields}
    return client.post(submit_url(team), data)


def left_on_disk(jobs_dir: Path) -> list[str]:
    """Everything under the code folder, staging folders included."""
    root = jobs_dir / "code"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_failed_zip_leaves_nothing_for_the_next_job(client, team, trainers, jobs_dir):
    client.force_login(team.contributor)
    # "a" is a file, then "a/b" needs it to be a folder: unpacking fails half-way.
    clash = SimpleUploadedFile("code.zip", zipped({"a": b"first", "a/b": b"second"}))
    errors = form_errors(post(client, team, trainers, upload=clash))
    assert "could not be stored" in errors
    assert not Job.objects.exists()
    assert left_on_disk(jobs_dir) == []

    # The next job's folder is already there (a crash, a restored backup, a reused id):
    # the new job is refused rather than merged into it or handed it.
    probe = submit_job(
        get_access(team.contributor, team.workspace.slug),
        compute_id=trainers.pk,
        name="probe",
        command="true",
    )
    planted = jobfiles.code_dir(probe.pk + 1)
    planted.mkdir(parents=True)
    (planted / "train.py").write_text("print('from an older job')\n")
    upload = SimpleUploadedFile("train.py", b"print('mine')\n")
    errors = form_errors(post(client, team, trainers, upload=upload))
    assert "already exists" in errors
    assert list(Job.objects.values_list("name", flat=True)) == ["probe"]
    assert [p.name for p in planted.iterdir()] == ["train.py"]
    assert (planted / "train.py").read_text() == "print('from an older job')\n"
    assert left_on_disk(jobs_dir) == [str(probe.pk + 1), f"{probe.pk + 1}/train.py"]


def test_long_file_name_is_a_form_error(client, team, trainers, jobs_dir):
    client.force_login(team.contributor)
    long_upload = SimpleUploadedFile("n" * 297 + ".py", b"print(1)\n")
    assert "longer than 200 characters" in form_errors(
        post(client, team, trainers, upload=long_upload)
    )
    long_member = SimpleUploadedFile("code.zip", zipped({"pkg/" + "m" * 300 + ".py": b"1"}))
    assert "too long a name" in form_errors(post(client, team, trainers, upload=long_member))
    long_script = {"script": "print(1)", "script_name": "s" * 297 + ".py"}
    assert "at most 200 characters" in form_errors(post(client, team, trainers, **long_script))
    assert not Job.objects.exists()
    assert left_on_disk(jobs_dir) == []


def forge_sizes(data: bytes, declared: int) -> bytes:
    """The zip claims every entry unpacks to `declared` bytes, whatever it holds."""
    raw = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.find(signature)
        while at != -1:
            struct.pack_into("<I", raw, at + offset, declared)
            at = raw.find(signature, at + 4)
    return bytes(raw)


def test_zip_bomb_refused_early(client, team, trainers, jobs_dir):
    client.force_login(team.contributor)
    bomb = zipped({"weights.bin": bytes(60 * MiB)})
    assert len(bomb) < 100_000  # 60 MiB of zeros packs into a few dozen KiB
    upload = SimpleUploadedFile("code.zip", bomb)
    assert "larger than 50 MiB once unpacked" in form_errors(
        post(client, team, trainers, upload=upload)
    )
    # Declared sizes are not trusted: a zip that says 1 KiB but holds 60 MiB stops at once.
    liar = SimpleUploadedFile("code.zip", forge_sizes(bomb, 1024))
    errors = form_errors(post(client, team, trainers, upload=liar))
    assert "zip archive Hangar can unpack" in errors or "larger than 50 MiB" in errors
    assert not Job.objects.exists()
    assert left_on_disk(jobs_dir) == []


RECEIVED: list[int] = []


class CountingHandler(FileUploadHandler):
    """Sits after Hangar's limit handler and counts what reaches Django's own handlers."""

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        RECEIVED.append(len(raw_data))
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def test_oversized_upload_refused_before_read(client, team, trainers, jobs_dir, settings):
    settings.HANGAR_CODE_LIMIT_MB = 1
    # The counter goes just before Django's own handlers, behind whatever Hangar puts first.
    handlers = list(settings.FILE_UPLOAD_HANDLERS)
    first_django = next(i for i, h in enumerate(handlers) if h.startswith("django."))
    handlers.insert(first_django, f"{__name__}.CountingHandler")
    settings.FILE_UPLOAD_HANDLERS = handlers
    client.force_login(team.contributor)

    # The body says it is far too big: not one byte of the file reaches a handler.
    RECEIVED.clear()
    big = SimpleUploadedFile("data.bin", os.urandom(4 * MiB))
    assert "The upload is larger than 1 MiB." in form_errors(
        post(client, team, trainers, upload=big)
    )
    assert sum(RECEIVED) == 0

    # Only a little too big: dropped at the chunk that passes the limit, not at the end.
    RECEIVED.clear()
    near = SimpleUploadedFile("data.bin", os.urandom(MiB + MiB // 2))
    assert "The upload is larger than 1 MiB." in form_errors(
        post(client, team, trainers, upload=near)
    )
    assert 0 < sum(RECEIVED) <= MiB

    assert not Job.objects.exists()
    assert left_on_disk(jobs_dir) == []


def test_remove_code_never_follows_links(jobs_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("keep me")
    secret.chmod(0o600)
    outside_mode = outside.stat().st_mode
    folder = jobfiles.code_dir(7)
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "train.py").write_text("print(1)\n")
    os.symlink(secret, folder / "pkg" / "file-link")
    os.symlink(outside, folder / "dir-link")
    for path in (folder / "pkg" / "train.py", folder / "pkg", folder):
        path.chmod(0o444 if path.is_file() else 0o555)

    remove_code(7)

    assert not os.path.lexists(folder)
    assert secret.read_text() == "keep me" and secret.stat().st_mode & 0o777 == 0o600
    assert outside.stat().st_mode == outside_mode
