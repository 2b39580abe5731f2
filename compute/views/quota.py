"""Quota pages: usage against limits, requests, and the live what-if for forms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import HttpResponse
from django.shortcuts import redirect, render

from compute import quota
from compute.actions.quota import lower_limit, request_quota
from compute.forms.quota import QuotaRequestForm
from compute.models import Compute, QuotaRequest, Tier, VmFamily, VmSize
from compute.selectors import workspace_disk_use
from compute.views.common import add_errors
from workspace.access import AuthedRequest, WorkspaceAccess, require_role, workspace_view
from workspace.models import Role, Workspace
from workspace.views.htmx import render_htmx


@workspace_view()
def quota_page(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    if request.method == "POST":
        require_role(access, Role.ADMIN, "changing quota limits")
        family = VmFamily.objects.filter(pk=request.POST.get("family") or 0).first()
        raw = request.POST.get("limit", "")
        try:
            if family is None or not raw.isdigit():
                raise ValidationError("Choose a family and a whole number of cores.")
            lower_limit(access, family, int(raw))
            messages.success(request, f"{family.name} limit set to {raw} cores.")
        except ValidationError as error:
            for message in error.messages:
                messages.error(request, message)
        return redirect("compute:quota", access.workspace.slug)
    requests = QuotaRequest.objects.filter(workspace=access.workspace).select_related(
        "family", "requested_by", "decided_by"
    )[:50]
    return render(
        request,
        "compute/quota.html",
        {
            "nav": "quota",
            "access": access,
            "workspace": access.workspace,
            "requests": requests,
            "disk": workspace_disk_use(access.workspace),
            **quota.overview(access.workspace),
        },
    )


@workspace_view(Role.CONTRIBUTOR, "requesting quota")
def quota_request(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    initial = {"family": request.GET.get("family"), "cores": request.GET.get("cores")}
    form = QuotaRequestForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            made = request_quota(access, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(
                request, f"Requested {made.requested_limit} {made.target}; site admins decide."
            )
            return redirect("compute:quota", access.workspace.slug)
    return render(
        request,
        "compute/quota_request.html",
        {"nav": "quota", "access": access, "workspace": access.workspace, "form": form},
    )


# The fields of the create and submit forms the quota line depends on.
# A deployment's replicas count like nodes, up to its max replicas.
WHAT_IF_FIELDS = ("vm_size", "tier", "node_count", "max_replicas", "min_nodes", "compute")


def what_if_line(workspace: Workspace, params: Mapping[str, Any]) -> dict[str, Any]:
    """The quota line's context for these form values (as the browser would send them)."""
    size = VmSize.objects.select_related("family").filter(pk=_pk(params.get("vm_size"))).first()
    tier: str = Tier.LOW_PRIORITY if params.get("tier") == Tier.LOW_PRIORITY else Tier.DEDICATED
    count_raw = str(
        params.get("node_count") or params.get("max_replicas") or params.get("min_nodes") or "1"
    )
    target = (
        Compute.objects.filter(workspace=workspace, pk=_pk(params.get("compute")))
        .select_related("vm_size__family")
        .first()
    )
    if target is not None:  # the job form: the target's size and tier
        size, tier = target.vm_size, target.tier
    count = int(count_raw) if count_raw.isdigit() else 1
    count = max(count, 1)
    result = quota.check(workspace, size, count, tier) if size and count else None
    link = quota.request_url(workspace, result, size.family) if result and size else ""
    return {"result": result, "link": link, "count": count}


def what_if_for_form(workspace: Workspace, form: Form) -> dict[str, Any]:
    """The quota line as the page first paints it: for the values the form shows (what was
    posted back, else its initial values), so it never says "Pick a VM size…" next to a
    size already picked, and never waits for a request to say anything."""
    values = {name: form[name].value() for name in WHAT_IF_FIELDS if name in form.fields}
    return what_if_line(workspace, {k: "" if v is None else str(v) for k, v in values.items()})


def _pk(raw: object) -> int:
    text = str(raw or "")
    return int(text) if text.isdigit() and len(text) < 18 else 0


@workspace_view()
def what_if(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    """The quota line under a create or submit form, re-rendered as the form changes."""
    return render_htmx(
        request, "compute/partials/what_if.html", what_if_line(access.workspace, request.GET)
    )
