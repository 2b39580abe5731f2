"""A job's output files: one downloaded, or all of them as one zip (both streamed). The
job page lists them (compute/views/jobs.py)."""

from __future__ import annotations

from django.http import FileResponse, Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404

from compute.lib import output_store
from compute.lib.downloads import file_download, zip_download
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
    item = found.find(path)
    if item is None:
        raise Http404("This job has no such output file.")
    try:
        return file_download(output_store.open_file(item), item.path)
    except OSError:
        raise Http404("This output file is gone.") from None


@workspace_view()
def job_outputs_zip(
    request: AuthedRequest, access: WorkspaceAccess, pk: int
) -> StreamingHttpResponse:
    job, found = outputs_of(access, pk)
    if not found.files:
        raise Http404("This job kept no output files.")
    return zip_download(output_store.zip_stream(found.files), f"job-{job.pk}-outputs.zip")
