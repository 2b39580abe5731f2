"""Collecting a job's output files when its runs end (compute/lib/output_collection.py;
they are kept as compute/lib/output_store.py reads them).

Called by `jobs.collect` for a job every rank of which exited, before the job's ending is
written and before its runs are released (which clears their work folders): so a job that
reads as ended has its outputs in place, and a pass killed anywhere in between finds each
run either collected (its folder is there: not collected again) or not (collected now,
from a work folder nothing cleared yet).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Sum

from compute.drivers import JobRunner
from compute.lib import output_collection, output_store
from compute.models import Job, JobRun
from compute.models.jobs import CodeKind

log = logging.getLogger(__name__)
NOTE_LIMIT = 2000


@dataclass(frozen=True)
class Collected:
    files: int = 0
    bytes: int = 0
    note: str = ""


def workspace_room(job: Job) -> tuple[int, str]:
    """(bytes, why refused past them) the job's workspace may still keep as output files:
    HANGAR_WORKSPACE_OUTPUTS_LIMIT_MB less what its other jobs keep. Two of its jobs ending
    at once may each take the same room: the excess is at most a job's cap per pass."""
    limit = settings.HANGAR_WORKSPACE_OUTPUTS_LIMIT_MB
    kept = (
        Job.objects.filter(workspace_id=job.workspace_id, outputs_files__gt=0)
        .exclude(pk=job.pk)
        .aggregate(total=Sum("outputs_bytes"))["total"]
        or 0
    )
    why = (
        f"The workspace's output files would pass {limit:,} MiB "
        f"(HANGAR_WORKSPACE_OUTPUTS_LIMIT_MB; its other jobs keep {kept / 2**20:,.1f} MiB): "
        "none of this job's files were kept."
    )
    return limit * 2**20 - kept, why


def collect_job(driver: JobRunner, job: Job, runs: list[JobRun]) -> Collected:
    """Every rank's ./outputs, rank 0 first, against the job's caps (what earlier ranks
    took counts for the later ones). Idempotent: a collected run is read, not redone."""
    # The job's caps within its workspace's room: a query, made only if a run wrote
    # something (most write no ./outputs).
    budgets: list[output_collection.Limits] = []

    def budget(used_bytes: int, used_files: int) -> Callable[[], output_collection.Limits]:
        def worked_out() -> output_collection.Limits:
            if not budgets:
                budgets.append(output_collection.limits().within(*workspace_room(job)))
            return budgets[0].less(used_bytes, used_files)

        return worked_out

    code_job_id = job.pk if job.code_kind != CodeKind.NONE else None
    several = len(runs) > 1
    files = size = 0
    notes: list[str] = []
    for run in sorted(runs, key=lambda r: r.rank):
        manifest = output_store.read_manifest(run.key)
        if manifest is None:
            try:
                with output_collection.collecting(run.key, budget(size, files)) as sink:
                    driver.collect_outputs(run.container, run.key, code_job_id, sink)
            except OSError as exc:  # this machine's disk (full, say): the job ends anyway
                if output_store.read_manifest(run.key) is None:
                    log.warning("outputs of run %s not kept: %s", run.key, exc)
                    notes.append(
                        (f"Rank {run.rank}: " if several else "")
                        + f"its output files could not be stored ({exc.strerror or exc})."
                    )
                    continue
                # Else a pass that collected it meanwhile removed this one's staging.
            manifest = output_store.read_manifest(run.key) or output_store.Manifest()
        files += len(manifest.files)
        size += manifest.total_bytes
        note = manifest.note()
        if note:
            notes.append(f"Rank {run.rank}: {note}" if several else note)
    note = " ".join(notes)
    if len(note) > NOTE_LIMIT:
        note = note[: NOTE_LIMIT - 1] + "…"
    return Collected(files, size, note)
