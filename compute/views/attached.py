"""Attached compute pages: the kind picker, the attach and edit forms, the live target page
and its actions (validate again, detach)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from compute.actions import attached as attach_actions
from compute.forms.attached import AttachForm
from compute.models import Attachment, Compute, ComputeState
from compute.models.states import JOB_UNFINISHED
from compute.rules.targets import KINDS, kind_of, why_unavailable
from compute.selectors import attached_of
from compute.views.common import add_errors
from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view
from workspace.models import Role
from workspace.views.htmx import render_htmx

EVENTS_ON_PAGE = 30
S = ComputeState


def _page(access: WorkspaceAccess, **extra) -> dict:
    return {"nav": "compute", "access": access, "workspace": access.workspace, **extra}


@workspace_view(Role.CONTRIBUTOR, "attaching compute")
def attach_pick(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    kinds = [(kind, why_unavailable(kind, request.user)) for kind in KINDS.values()]
    return render(request, "compute/attach_pick.html", _page(access, kinds=kinds))


@workspace_view(Role.CONTRIBUTOR, "attaching compute")
def attach_create(request: AuthedRequest, access: WorkspaceAccess, kind: str) -> HttpResponse:
    target = kind_of(kind)
    if target is None:
        raise Http404("No such kind of compute.")
    if not target.runnable:
        messages.info(request, f"{target.label} targets are coming soon.")
        return redirect("compute:attach", access.workspace.slug)
    refused = why_unavailable(target, request.user)
    if refused:
        raise PermissionDenied(refused)  # before the form: nothing is read, nothing stored
    form = AttachForm(request.POST or None, kind=target)
    if request.method == "POST" and form.is_valid():
        try:
            compute = form.attach(access)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Attached {compute.name}: validating the connection…")
            return redirect(compute)
    return render(request, "compute/attach_form.html", _page(access, form=form, kind=target))


def _attached(access: WorkspaceAccess, pk: int) -> Compute:
    compute = attached_of(access, pk)
    if compute is None:
        raise Http404("No such attached compute here.")
    return compute


@workspace_view(Role.CONTRIBUTOR, "changing compute")
def attach_edit(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    compute = _attached(access, pk)
    attachment: Attachment = compute.attachment
    target = kind_of(attachment.target_kind)
    assert target is not None  # a stored attachment has a known kind
    form = AttachForm(request.POST or None, kind=target, stored=attachment)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            attach_actions.update_connection(
                access,
                compute.pk,
                max_concurrent_jobs=data["max_concurrent_jobs"],
                connection=form.connection(),
                forget_host_key=data.get("forget_host_key", False),
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"{compute.name}: saved.")
            return redirect(compute)
    context = _page(access, form=form, kind=target, compute=compute)
    return render(request, "compute/attach_form.html", context)


def attached_context(access: WorkspaceAccess, compute: Compute) -> dict:
    busy = compute.jobs.filter(status__in=JOB_UNFINISHED).exists()
    attachment = compute.attachment
    return _page(
        access,
        compute=compute,
        attachment=attachment,
        kind=kind_of(attachment.target_kind),
        steady=compute.is_steady and not busy,
        recent_jobs=compute.jobs.select_related("submitted_by").order_by("-queued_at")[:10],
        events=compute.events.select_related("actor")[:EVENTS_ON_PAGE],
        verbs=compute.allowed_verbs(access.role),
    )


def attached_detail(
    request: AuthedRequest, access: WorkspaceAccess, compute: Compute
) -> HttpResponse:
    context = attached_context(access, compute)
    return render_htmx(
        request,
        "compute/attached_detail.html",
        context,
        partial="live",
        steady=context["steady"],
        messages=True,
    )


@workspace_view(Role.CONTRIBUTOR, "changing compute")
def attached_action(
    request: AuthedRequest, access: WorkspaceAccess, pk: int, verb: str
) -> HttpResponse:
    if verb not in ("validate", "detach"):
        raise Http404("No such action.")
    compute = _attached(access, pk)
    if request.method != "POST":
        return redirect(compute)
    try:
        if verb == "detach":
            attach_actions.detach(access, compute.pk)
            messages.success(request, f"Detaching {compute.name}; the machine is not touched.")
        else:
            attach_actions.revalidate(access, compute.pk)
            messages.success(request, f"{compute.name}: validating again…")
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    if verb == "detach":
        return redirect(reverse("compute:list", args=[access.workspace.slug]) + "?tab=attached")
    return redirect(compute)
