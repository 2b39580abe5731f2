"""A job's output files: the list, one file, or all of them as a zip (streamed)."""

# No `from __future__ import annotations`: django-ninja reads these annotations at import.

from urllib.parse import quote

from django.http import FileResponse, HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from ninja import Router, Schema

from compute.api.jobs import REFUSALS, jobs_of
from compute.lib.downloads import output_file_download, outputs_zip_download
from compute.selectors import job_outputs
from workspace.notify import absolute

router = Router(tags=["jobs"])
OUTPUTS = "/workspaces/{slug}/jobs/{int:job_id}/outputs"


class OutputFileOut(Schema):
    path: str  # rank-N/... for a job of several nodes
    size: int
    url: str


class JobOutputsOut(Schema):
    job_id: int
    status: str
    files: list[OutputFileOut]
    total_bytes: int
    # What was not kept and why (links left out, a cap passed): empty when all was.
    notes: list[str]
    zip_url: str | None


@router.get(OUTPUTS, response={200: JobOutputsOut, **REFUSALS})
def list_outputs(request: HttpRequest, slug: str, job_id: int) -> JobOutputsOut:
    """The files the job wrote under ./outputs, kept when its runs ended (none while it
    runs). Readers of the workspace may list and download them."""
    job = get_object_or_404(jobs_of(request, slug), pk=job_id)
    found = job_outputs(job)
    base = f"/api/v1/workspaces/{job.workspace.slug}/jobs/{job.pk}/outputs"
    return JobOutputsOut(
        job_id=job.pk,
        status=job.status,
        files=[
            OutputFileOut(path=f.path, size=f.size, url=absolute(f"{base}/{quote(f.path)}"))
            for f in found.files
        ],
        total_bytes=found.total_bytes,
        notes=found.notes,
        zip_url=absolute(f"{base}.zip") if found.files else None,
    )


@router.get(OUTPUTS + ".zip", response={200: None, **REFUSALS})
def outputs_zip(request: HttpRequest, slug: str, job_id: int) -> StreamingHttpResponse:
    """All the job's output files as one zip, made as it is sent."""
    job = get_object_or_404(jobs_of(request, slug), pk=job_id)
    return outputs_zip_download(job.pk, job_outputs(job).files)


@router.get(OUTPUTS + "/{path:path}", response={200: None, **REFUSALS})
def output_file(request: HttpRequest, slug: str, job_id: int, path: str) -> FileResponse:
    """One output file, by its listed path, as an attachment."""
    job = get_object_or_404(jobs_of(request, slug), pk=job_id)
    return output_file_download(job_outputs(job).find(path))
