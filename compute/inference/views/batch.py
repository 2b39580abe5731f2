"""Batch scoring pages: the workspace's batch jobs, submitting one (an upload of input
files, or a completed job's output files), one's page (live progress, its mini-batches,
downloads), canceling one."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from compute.inference.actions.batch import cancel_batch
from compute.inference.forms.batch import BatchForm
from compute.inference.models import BatchJob, MiniBatchState
from compute.inference.selectors import batch_jobs_of, errors_csv, predictions_csv
from compute.lib.downloads import csv_download
from compute.lib.uploads import refused_upload
from compute.models import Event
from compute.views.common import add_errors
from compute.views.quota import what_if_for_form
from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view
from workspace.models import Role
from workspace.queries import KeysFirstPaginator
from workspace.views.htmx import render_htmx

PER_PAGE = 50
MINI_BATCHES_PER_PAGE = 50


def base(access: WorkspaceAccess) -> dict[str, object]:
    return {"nav": "batch", "access": access, "workspace": access.workspace}


def batch_of(access: WorkspaceAccess, pk: int) -> BatchJob:
    batch = batch_jobs_of(access.workspace).filter(pk=pk).first()
    if batch is None:
        raise Http404("No such batch job in this workspace.")
    return batch


@workspace_view()
def batch_list(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    paginator = KeysFirstPaginator(batch_jobs_of(access.workspace), PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    steady = not any(batch.is_running for batch in page.object_list)
    return render_htmx(
        request,
        "inference/batches.html",
        {**base(access), "page": page, "steady": steady},
        partial="table",
        steady=steady,
    )


@workspace_view(Role.CONTRIBUTOR, "submitting batch scoring jobs")
def batch_create(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    form = BatchForm(request.POST or None, request.FILES or None, workspace=access.workspace)
    refused = refused_upload(request)
    if request.method == "POST" and refused:
        form.is_valid()
        form.add_error("inputs", refused)
    elif request.method == "POST" and form.is_valid():
        try:
            batch = form.submit(access)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(
                request,
                f"Submitted {batch.name}: {batch.file_count} files in "
                f"{batch.batches_total} mini-batches.",
            )
            return redirect(batch)
    what_if = what_if_for_form(access.workspace, form)
    return render(
        request, "inference/batch_form.html", {**base(access), "form": form, "what_if": what_if}
    )


@workspace_view()
def batch_detail(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    batch = batch_of(access, pk)
    shown = request.GET.get("show", "")
    # Not their rows: the page shows counts, and a page of them may hold megabytes.
    mini_batches = batch.mini_batches.select_related("job").defer("rows").order_by("index")
    if shown in MiniBatchState.values:
        mini_batches = mini_batches.filter(state=shown)
    page = KeysFirstPaginator(mini_batches, MINI_BATCHES_PER_PAGE).get_page(request.GET.get("page"))
    events = (
        Event.objects.filter(compute_id=batch.compute_id).order_by("-created_at", "-id")[:20]
        if batch.compute_id
        else []
    )
    context = {
        **base(access),
        "batch": batch,
        "page": page,
        "shown": shown,
        "query": f"show={shown}" if shown in MiniBatchState.values else "",
        "states": MiniBatchState.choices,
        "events": events,
        "can_cancel": batch.is_running and access.is_contributor,
    }
    steady = not batch.is_running
    return render_htmx(request, "inference/batch.html", context, partial="live", steady=steady)


@workspace_view(Role.CONTRIBUTOR, "canceling batch scoring jobs")
@require_POST
def batch_cancel(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    batch = batch_of(access, pk)
    try:
        cancel_batch(access, batch)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request, f"Canceled {batch.name}: the rows of the mini-batches done are kept."
        )
    return redirect(batch)


@workspace_view()
def batch_predictions(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponseBase:
    batch = batch_of(access, pk)
    return csv_download(predictions_csv(batch), f"{batch.name}-predictions.csv")


@workspace_view()
def batch_errors(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponseBase:
    batch = batch_of(access, pk)
    return csv_download(errors_csv(batch), f"{batch.name}-errors.csv")
