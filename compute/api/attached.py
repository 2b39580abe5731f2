# No `from __future__ import annotations`: django-ninja reads these annotations at import.
"""Attached computes: machines Hangar did not create (a remote VM or an HDInsight head
node over SSH, the local computer), attached, validated again, detached."""

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.views.decorators.debug import sensitive_variables
from ninja import Router, Schema, Status

from compute.actions import attached as attach_actions
from compute.api.auth import api_access, caller
from compute.api.errors import form_invalid
from compute.api.schemas import ComputeOut, Error
from compute.forms.attached import AttachForm
from compute.models import Attachment, Compute, ComputeKind
from compute.rules.targets import KINDS, kind_of, why_unavailable
from compute.selectors import computes_of
from workspace.access import WorkspaceAccess
from workspace.models import Role

router = Router(tags=["attached"])
REFUSALS: dict[int | str, Any] = {401: Error, 403: Error, 404: Error, 409: Error, 422: Error}
ONE = "/workspaces/{slug}/computes/{int:compute_id}"


class KindOut(Schema):
    key: str
    label: str
    summary: str
    runnable: bool  # false: coming soon
    connects_over_ssh: bool
    unavailable: str  # why the caller may not attach it, or ""


class AttachIn(Schema):
    name: str
    max_concurrent_jobs: int = 1
    host: str = ""
    port: int = 22
    username: str = ""
    secret_kind: str = "key"  # "key" | "password"
    private_key: str = ""
    password: str = ""


class AttachmentOut(Schema):
    target_kind: str
    host: str
    port: int
    username: str
    max_concurrent_jobs: int
    healthy: bool | None
    health_reason: str
    health_checked_at: datetime | None
    facts: dict


@router.get("/attach-kinds", response=list[KindOut])
def list_kinds(request: HttpRequest) -> list[dict]:
    """What can be attached, and whether the caller may (the local computer is for site
    staff with the power to attach it)."""
    user = caller(request)
    return [
        {
            "key": kind.key,
            "label": kind.label,
            "summary": kind.summary,
            "runnable": kind.runnable,
            "connects_over_ssh": kind.connects_over_ssh,
            "unavailable": why_unavailable(kind, user) if kind.runnable else "Coming soon.",
        }
        for kind in KINDS.values()
    ]


@router.post("/workspaces/{slug}/computes/attached/{kind}", response={201: ComputeOut, **REFUSALS})
@sensitive_variables()  # the key or password passes through here in clear
def attach(request: HttpRequest, slug: str, kind: str, payload: AttachIn) -> Status:
    """Attach a machine; a worker validates the connection right after (state `creating`,
    then `steady`, or `failed` with the reason)."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "attaching compute")
    target = kind_of(kind)
    if target is None:
        raise Http404("No such kind of compute.")
    refused = why_unavailable(target, caller(request)) if target.runnable else ""
    if refused:
        raise PermissionDenied(refused)
    form = AttachForm(payload.dict(), kind=target)
    if not form.is_valid():
        raise form_invalid(form)
    return Status(201, form.attach(access))


def attached_of(
    request: HttpRequest, slug: str, compute_id: int, *role: str
) -> tuple[WorkspaceAccess, Compute]:
    access = api_access(request, slug, *role)
    attached = computes_of(access).filter(kind=ComputeKind.ATTACHED)
    return access, get_object_or_404(
        attached.select_related("attachment", "vm_size", "workspace"), pk=compute_id
    )


@router.get(ONE + "/attachment", response={200: AttachmentOut, **REFUSALS})
def show_attachment(request: HttpRequest, slug: str, compute_id: int) -> Attachment:
    """How Hangar reaches it and what it found there (never the key or password)."""
    return attached_of(request, slug, compute_id)[1].attachment


@router.post(ONE + "/validate", response={202: ComputeOut, **REFUSALS})
def validate(request: HttpRequest, slug: str, compute_id: int) -> Status:
    access, compute = attached_of(request, slug, compute_id, Role.CONTRIBUTOR, "validating compute")
    attach_actions.revalidate(access, compute.pk)
    compute.refresh_from_db(fields=["state", "state_changed_at", "last_error"])
    return Status(202, compute)


@router.post(ONE + "/detach", response={202: ComputeOut, **REFUSALS})
def detach(request: HttpRequest, slug: str, compute_id: int) -> Status:
    """Detach: Hangar stops its own jobs there and forgets the credentials; the machine
    is left as it is."""
    access, compute = attached_of(request, slug, compute_id, Role.CONTRIBUTOR, "detaching compute")
    attach_actions.detach(access, compute.pk)
    compute.refresh_from_db(fields=["state", "state_changed_at", "last_error"])
    return Status(202, compute)
