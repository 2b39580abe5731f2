"""Job pages: the workspace's jobs with filters, submit, the live job page, logs, cancel."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from compute.actions.jobs import cancel_job, preempt_node
from compute.forms.jobs import JobFilterForm, JobSubmitForm
from compute.job_templates import JobTemplate, job_templates
from compute.lib import jobfiles
from compute.lib.uploads import refused_upload
from compute.models import Environment, Job, JobRun, Node
from compute.selectors import job_outputs
from compute.views.common import add_errors
from compute.views.quota import what_if_for_form
from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view
from workspace.models import Role
from workspace.queries import KeysFirstPaginator
from workspace.views.htmx import render_htmx

PAGE_SIZE = 25
OUTPUTS_SHOWN = 200  # on the page; the zip has them all


def jobs_of(access: WorkspaceAccess):
    return Job.objects.filter(workspace=access.workspace)


@workspace_view()
def job_list(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    form = JobFilterForm(request.GET or None, workspace=access.workspace)
    # A row shows names, states and times: not the jobs' variables nor the computes'
    # scripts and secrets (JSON decoded per row for nothing).
    jobs = (
        jobs_of(access)
        .select_related("compute", "submitted_by")
        .defer(
            "environment",
            "secret_environment",
            "compute__secret_environment",
            "compute__setup_script",
        )
    )
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        if data.get("status"):
            jobs = jobs.filter(status=data["status"])
        if data.get("compute"):
            jobs = jobs.filter(compute_id=data["compute"])
        if data.get("submitter"):
            jobs = jobs.filter(submitted_by_id=data["submitter"])
    elif form.is_bound:
        jobs = jobs.none()
    page = KeysFirstPaginator(jobs.order_by("-queued_at", "-id"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    steady = all(job.is_terminal for job in page)
    return render_htmx(
        request,
        "compute/jobs.html",
        {
            "nav": "jobs",
            "access": access,
            "workspace": access.workspace,
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "steady": steady,
        },
        partial="job-table",
        steady=steady,
    )


@sensitive_post_parameters("secret_environment")
# Every local of this view and below it (form cleaning included) is hidden in error
# reports: the secret variables pass through them in clear.
@sensitive_variables()
@workspace_view(Role.CONTRIBUTOR, "submitting jobs")
def job_submit(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    initial: dict[str, object] = {"compute": request.GET.get("compute")}
    template = None
    if request.GET.get("template"):
        template = job_templates().get(request.GET["template"])
        if template is None:
            raise Http404("No such job template.")
        initial.update(template_initial(template))
    form = JobSubmitForm(
        request.POST if request.method == "POST" else None,
        request.FILES or None,
        workspace=access.workspace,
        initial=initial,
        upload_refused=refused_upload(request),
    )
    if request.method == "POST" and form.is_valid():
        try:
            job = form.submit(access)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Submitted {job.name}.")
            return redirect(job)
    return render(
        request,
        "compute/job_submit.html",
        {
            "nav": "jobs",
            "access": access,
            "workspace": access.workspace,
            "form": form,
            "what_if": what_if_for_form(access.workspace, form),
            "templates": job_templates().values(),
            "template": template,
        },
    )


def template_initial(template: JobTemplate) -> dict[str, object]:
    """The submit form as a template fills it in (its environment: the newest curated
    version of that name)."""
    initial: dict[str, object] = {
        "name": template.title[:80],
        "command": template.command,
        "script": template.script,
        "script_name": template.script_name or "train.py",
    }
    if template.environment:  # the site's curated one, never a workspace's look-alike
        found = (
            Environment.objects.filter(workspace=None, name=template.environment)
            .order_by("-version")
            .first()
        )
        initial["runs_in"] = str(found.pk) if found else ""
    return initial


def _job_context(access: WorkspaceAccess, job: Job, rank: int) -> dict:
    runs = list(job.runs.filter(attempt=job.retries).order_by("rank"))
    shown = next((run for run in runs if run.rank == rank), runs[0] if runs else None)
    found = job_outputs(job)
    return {
        "outputs": found,
        "outputs_shown": found.files[:OUTPUTS_SHOWN],
        "outputs_more": max(0, len(found.files) - OUTPUTS_SHOWN),
        "nav": "jobs",
        "access": access,
        "workspace": access.workspace,
        "job": job,
        "runs": runs,
        "shown": shown,
        "log": jobfiles.read_output(shown.key) if shown else "",
        # Readers see names only; contributors and admins the plain values. Secret values
        # never reach a page.
        "variables": job.variables_shown(with_values=access.is_contributor),
        "can_cancel": access.is_contributor and not job.is_terminal and not job.cancel_requested_at,
        "runs_in": job.runs_in(),
        "waits_for": job.waiting_for_environment(),
    }


@workspace_view()
def job_detail(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    job = get_object_or_404(
        jobs_of(access).select_related(
            "compute",
            "submitted_by",
            "compute__environment__image",
            "chosen_environment__image",
        ),
        pk=pk,
    )
    rank = int(request.GET.get("rank", "0")) if request.GET.get("rank", "0").isdigit() else 0
    context = _job_context(access, job, rank)
    return render_htmx(
        request, "compute/job.html", context, partial="live", steady=job.is_terminal, messages=True
    )


@workspace_view()
def job_log(request: AuthedRequest, access: WorkspaceAccess, pk: int, rank: int) -> FileResponse:
    job = get_object_or_404(jobs_of(access), pk=pk)
    run = JobRun.objects.filter(job=job, attempt=job.retries, rank=rank).first()
    # Opened without following any link: the record is Hangar's, but read as hostile.
    output = jobfiles.open_output(run.key) if run else None
    if output is None:
        raise Http404("This run has no output yet.")
    return FileResponse(output, as_attachment=True, filename=f"job-{job.pk}-rank-{rank}.log")


@workspace_view(Role.CONTRIBUTOR, "canceling jobs")
@require_POST
def job_cancel(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    job = get_object_or_404(jobs_of(access), pk=pk)
    try:
        cancel_job(access, job.pk)
        messages.success(request, f"Canceling {job.name}…")
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    return redirect(job)


@workspace_view(Role.ADMIN, "preempting nodes")
@require_POST
def node_preempt(
    request: AuthedRequest, access: WorkspaceAccess, pk: int, node_id: int
) -> HttpResponse:
    node = get_object_or_404(
        Node.objects.filter(compute__workspace=access.workspace, compute_id=pk), pk=node_id
    )
    try:
        preempt_node(access, node.pk)
        messages.success(request, f"Node {node.name} preempted; its jobs go back to the queue.")
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    return redirect(node.compute)
