"""Jobs with output files, stored as a run's collection stores them
(compute/lib/output_collection.py), for tests that need one without running a job."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from django.utils import timezone

from compute.lib import output_collection, output_store
from compute.models import Job, JobRun, JobStatus

WEIGHTS = {"model/weights.bin": b"\x00\x01weights", "metrics.json": b'{"auc": 0.9}'}


def with_outputs(job: Job, files: dict[str, bytes] | None = None) -> Job:
    """`job` completed, its rank 0 having written `files` (path: bytes) to ./outputs."""
    files = WEIGHTS if files is None else files
    run = JobRun.objects.filter(job=job, attempt=job.retries, rank=0).first()
    if run is None:
        run = JobRun.objects.create(job=job, rank=0, node_name="n-1", container="none")
    with tempfile.TemporaryDirectory() as folder:
        for path, data in files.items():
            target = Path(folder, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        with output_collection.collecting(run.key, output_collection.limits()) as sink:
            output_collection.from_folder(os.open(folder, output_store.OPEN_DIR), sink)
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.COMPLETED,
        exit_code=0,
        finished_at=timezone.now(),
        outputs_files=len(files),
        outputs_bytes=sum(len(data) for data in files.values()),
    )
    job.refresh_from_db()
    return job


def tar_of(
    entries: Iterable[tuple[str, bytes | tarfile.TarInfo]], chunk: int = 4096
) -> list[bytes]:
    """A tar of `entries` (name: bytes, or a TarInfo for what is not a file), as the Docker
    API sends an archive: in chunks."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in entries:
            if isinstance(data, tarfile.TarInfo):
                data.name = name
                archive.addfile(data)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return [raw[at : at + chunk] for at in range(0, len(raw), chunk)]
