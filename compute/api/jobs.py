"""Jobs: submit (multipart, with a code archive), list, show, cancel, output, follow."""

# No `from __future__ import annotations`: django-ninja reads these annotations at import.

import json
import time
from collections.abc import Iterator

from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.debug import sensitive_variables
from ninja import File, Form, Router, Status
from ninja.files import UploadedFile
from ninja.pagination import paginate

from compute.actions.jobs import cancel_job
from compute.api.auth import api_access
from compute.api.errors import form_invalid
from compute.api.pagination import CursorPagination, newest_first
from compute.api.schemas import Error, JobOut
from compute.forms.jobs import JobSubmitForm
from compute.lib import jobfiles
from compute.lib.uploads import refused_upload
from compute.models import Job, JobRun
from compute.models.states import JOB_TERMINAL
from compute.selectors import ID, environment_choice, live_computes_of
from workspace.access import WorkspaceAccess
from workspace.models import Role

router = Router(tags=["jobs"])
REFUSALS = {401: Error, 403: Error, 404: Error, 409: Error, 422: Error}
# How often a follow looks for new output and a finished job, and for how long at most
# (the client reconnects from its offset after that).
FOLLOW_POLL_SECONDS = 0.5
FOLLOW_LIMIT_SECONDS = 3600
FOLLOW_CHUNK = 64 * 1024
WAIT_LIMIT_SECONDS = 60
# `wait` looks this often while a job may well be a short one, then as `follow` does.
WAIT_QUICK_POLL_SECONDS = 0.02
WAIT_QUICK_FOR = 3.0


def jobs_of(request: HttpRequest, slug: str) -> QuerySet[Job]:
    return jobs_in(api_access(request, slug))


def jobs_in(access: WorkspaceAccess) -> QuerySet[Job]:
    """The workspace's jobs with what a JobOut shows of them."""
    return Job.objects.filter(workspace=access.workspace).select_related(
        "compute__environment", "chosen_environment", "submitted_by", "workspace"
    )


@router.get("/workspaces/{slug}/jobs", response=list[JobOut])
@paginate(CursorPagination, **newest_first("-queued_at", "-id"))
def list_jobs(
    request: HttpRequest,
    slug: str,
    status: str | None = None,
    compute: int | None = None,
    submitted_by: str | None = None,
) -> QuerySet:
    """Newest first; filter by status, compute id, or submitter's username."""
    jobs = jobs_of(request, slug).defer("environment", "secret_environment")
    if status:
        jobs = jobs.filter(status=status)
    if compute:
        jobs = jobs.filter(compute_id=compute)
    if submitted_by:
        jobs = jobs.filter(submitted_by__username=submitted_by)
    return jobs


@router.get("/workspaces/{slug}/jobs/{int:job_id}", response={200: JobOut, **REFUSALS})
def show_job(request: HttpRequest, slug: str, job_id: int) -> Job:
    return get_object_or_404(jobs_of(request, slug), pk=job_id)


@router.post("/workspaces/{slug}/jobs", response={201: JobOut, **REFUSALS})
@sensitive_variables()  # the secret variables pass through here in clear
def submit(
    request: HttpRequest,
    slug: str,
    compute: str = Form(..., description="The compute's id or name."),
    command: str = Form(...),
    name: str = Form(""),
    node_count: int = Form(1),
    environment: str = Form("", description="One KEY=value per line."),
    secret_environment: str = Form("", description="One KEY=value per line; stored encrypted."),
    script: str = Form(""),
    script_name: str = Form("train.py"),
    upload: UploadedFile | None = File(None, description="A file, or a .zip of a folder."),
    runs_in: str = Form(
        "",
        description="The environment to run in (its id, name or name:version) when not the "
        "compute's; a cluster starts nodes of it.",
    ),
) -> Status:
    """Submit a job, with its code as a script or an uploaded file or zip (as the page)."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "submitting jobs")
    target = live_computes_of(access.workspace).filter(
        **({"pk": int(compute)} if ID.fullmatch(compute) else {"name": compute})
    )
    data = {
        "compute": str(target.values_list("pk", flat=True).first() or compute),
        "command": command,
        "name": name,
        "node_count": str(node_count),
        "environment": environment,
        "secret_environment": secret_environment,
        "script": script,
        "script_name": script_name,
        "runs_in": environment_choice(access.workspace, runs_in),
    }
    files = {"upload": upload} if upload is not None else {}
    form = JobSubmitForm(
        data, files, workspace=access.workspace, upload_refused=refused_upload(request)
    )
    if not form.is_valid():
        raise form_invalid(form)
    job = form.submit(access)
    return Status(201, jobs_in(access).get(pk=job.pk))


@router.post("/workspaces/{slug}/jobs/{int:job_id}/cancel", response={202: JobOut, **REFUSALS})
def cancel(request: HttpRequest, slug: str, job_id: int) -> Status:
    access = api_access(request, slug, Role.CONTRIBUTOR, "canceling jobs")
    job = get_object_or_404(Job.objects.filter(workspace=access.workspace), pk=job_id)
    cancel_job(access, job.pk)
    return Status(202, jobs_in(access).get(pk=job.pk))


@router.get("/workspaces/{slug}/jobs/{int:job_id}/wait", response={200: JobOut, **REFUSALS})
def wait(request: HttpRequest, slug: str, job_id: int, timeout: float = 30) -> Job:
    """Answers as soon as the job has finished, or after `timeout` seconds (at most 60)
    with the job as it is then: call again until its status is final. Looks every 20 ms
    for the first seconds (one read by key, a millisecond or two), so a short job's end is
    seen at once, then every half second."""
    jobs = jobs_of(request, slug)
    job = get_object_or_404(jobs, pk=job_id)
    if job.is_terminal:
        return job
    began = time.monotonic()
    deadline = began + min(max(timeout, 0.0), WAIT_LIMIT_SECONDS)
    ended = Job.objects.filter(pk=job_id, status__in=JOB_TERMINAL)
    while time.monotonic() < deadline:
        waited = time.monotonic() - began
        time.sleep(WAIT_QUICK_POLL_SECONDS if waited < WAIT_QUICK_FOR else FOLLOW_POLL_SECONDS)
        if ended.exists():
            break
    # Meanwhile only the status is looked at; the whole row (and its joins) is read once.
    return jobs.get(pk=job_id)


def current_run(job: Job, rank: int) -> JobRun | None:
    return JobRun.objects.filter(job=job, attempt=job.retries, rank=rank).first()


@router.get("/workspaces/{slug}/jobs/{int:job_id}/output", response={200: None, **REFUSALS})
def output(request: HttpRequest, slug: str, job_id: int, rank: int = 0) -> FileResponse:
    """The output of the job's current attempt (a rank's, for multi-node jobs), as a file."""
    job = get_object_or_404(jobs_of(request, slug), pk=job_id)
    run = current_run(job, rank)
    stream = jobfiles.open_output(run.key) if run else None
    if stream is None:
        raise Http404("This run has no output yet.")
    return FileResponse(stream, content_type="text/plain; charset=utf-8")


@router.get("/workspaces/{slug}/jobs/{int:job_id}/follow", response={200: None, **REFUSALS})
def follow(
    request: HttpRequest, slug: str, job_id: int, offset: int = 0, rank: int = 0
) -> StreamingHttpResponse:
    """Server-sent events: `output` events ({"offset", "text"}) from `offset` on as the job
    writes, then one `end` event ({"status", "exit_code", "error"}) once it has finished
    and all its output is sent. Reconnect with the last `offset` after a drop."""
    job = get_object_or_404(jobs_of(request, slug), pk=job_id)
    if offset < 0:
        offset = 0
    response = StreamingHttpResponse(
        follow_events(job.pk, offset, rank), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def follow_events(job_id: int, offset: int, rank: int) -> Iterator[str]:
    deadline = time.monotonic() + FOLLOW_LIMIT_SECONDS
    attempt = None
    while True:
        job = Job.objects.get(pk=job_id)
        if attempt is not None and job.retries != attempt:
            yield event("attempt", {"attempt": job.retries})
            offset = 0  # a retry writes a new log
        attempt = job.retries
        finished = job.is_terminal  # read before the output: none is written after
        run = current_run(job, rank)
        for chunk, after in read_from(run, offset):
            offset = after
            yield event("output", {"offset": offset, "text": chunk})
        if finished:
            yield event(
                "end", {"status": job.status, "exit_code": job.exit_code, "error": job.error}
            )
            return
        if time.monotonic() > deadline:
            yield event("timeout", {"offset": offset})
            return
        yield ": waiting\n\n"  # a comment: keeps proxies from closing an idle stream
        time.sleep(FOLLOW_POLL_SECONDS)


def read_from(run: JobRun | None, offset: int) -> Iterator[tuple[str, int]]:
    """The run's output after `offset` in chunks, each with the offset after it."""
    stream = jobfiles.open_output(run.key) if run else None
    if stream is None:
        return
    with stream:
        stream.seek(offset)
        while data := stream.read(FOLLOW_CHUNK):
            offset += len(data)
            yield data.decode("utf-8", errors="replace"), offset


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
