"""A job's output files: one downloaded, or all of them as one zip (both streamed). The
job page lists them (compute/views/jobs.py)."""

from __future__ import annotations

from django.http import FileResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404

from compute.lib.downloads import output_file_download, outputs_zip_download
from compute.models import Job
from compute.selectors import JobOutputs, job_outputs
from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view


def outputs_of(access: WorkspaceAccess, pk: int) -> tuple[Job, JobOutputs]:
    job = get_object_or_404(Job.objects.filter(workspace=access.workspace), pk=pk)
    return job, job_outputs(job)


@workspace_view()
def job_output_file(
    request: AuthedRequest, access: WorkspaceAccess, pk: int, path: str
) -> FileResponse:
    _, found = outputs_of(access, pk)
    return output_file_download(found.find(path))


@workspace_view()
def job_outputs_zip(
    request: AuthedRequest, access: WorkspaceAccess, pk: int
) -> StreamingHttpResponse:
    job, found = outputs_of(access, pk)
    return outputs_zip_download(job.pk, found.files)
