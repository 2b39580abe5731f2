# No `from __future__ import annotations`: django-ninja reads these annotations at import.
"""Quota: what a workspace may use and uses, what a new compute would take (what-if), and
requests for more (decided by site staff in the admin)."""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.pagination import paginate

from compute import quota
from compute.actions.quota import request_quota
from compute.api.auth import api_access
from compute.api.errors import form_invalid
from compute.api.pagination import CursorPagination, newest_first
from compute.api.schemas import Error
from compute.forms.quota import QuotaRequestForm
from compute.models import QuotaRequest, Tier, VmFamily, VmSize
from workspace.models import Role

router = Router(tags=["quota"])
REFUSALS = {401: Error, 403: Error, 404: Error, 409: Error, 422: Error}


class FamilyUsage(Schema):
    family: str
    limit: int
    approved: int
    used: int
    needs_approval: bool
    request_pending: bool


class QuotaOut(Schema):
    families: list[FamilyUsage]
    low_priority_limit: int
    low_priority_used: int
    computes: int


class WhatIfOut(Schema):
    pool: str
    need: int
    limit: int
    used: int
    fits: bool
    message: str


class QuotaRequestIn(Schema):
    family: str | None = None  # a family's name; none: the low-priority pool
    cores: int
    justification: str


class QuotaRequestOut(Schema):
    id: int
    family: str | None
    requested_limit: int
    justification: str
    requested_by: str | None
    status: str
    reason: str  # why it was decided so (a rejection always says)
    created_at: datetime
    decided_at: datetime | None

    @staticmethod
    def resolve_family(made: QuotaRequest) -> str | None:
        return made.family.name if made.family else None

    @staticmethod
    def resolve_requested_by(made: QuotaRequest) -> str | None:
        return made.requested_by.username if made.requested_by else None


@router.get("/workspaces/{slug}/quota", response={200: QuotaOut, **REFUSALS})
def usage(request: HttpRequest, slug: str) -> dict:
    """Each family in use or with a limit: its limit, approval and the cores in use."""
    access = api_access(request, slug)
    shown = quota.overview(access.workspace)
    return {
        "families": [{**bar, "family": bar["family"].name} for bar in shown["bars"]],
        "low_priority_limit": shown["pool"].low_priority_limit,
        "low_priority_used": shown["pool_used"],
        "computes": shown["computes"],
    }


@router.get("/workspaces/{slug}/quota/what-if", response={200: WhatIfOut, **REFUSALS})
def what_if(
    request: HttpRequest, slug: str, vm_size: str, count: int = 1, tier: str = Tier.DEDICATED
) -> dict:
    """Whether `count` nodes of `vm_size` fit now, and why not."""
    access = api_access(request, slug)
    size = VmSize.objects.select_related("family").filter(name=vm_size).first()
    errors = {}
    if size is None:
        errors["vm_size"] = [f"No VM size is named {vm_size}."]
    if not 1 <= count <= 10_000:
        errors["count"] = ["Ask about 1 to 10000 nodes."]
    if tier not in Tier.values:
        errors["tier"] = [f"Choose one of {', '.join(Tier.values)}."]
    if errors or size is None:
        raise ValidationError(errors)
    check = quota.check(access.workspace, size, count, tier)
    return {
        "pool": check.pool,
        "need": check.need,
        "limit": check.limit,
        "used": check.used,
        "fits": check.fits,
        "message": check.message,
    }


@router.get("/workspaces/{slug}/quota/requests", response=list[QuotaRequestOut])
@paginate(CursorPagination, **newest_first("-created_at", "-id"))
def list_requests(request: HttpRequest, slug: str) -> QuerySet:
    access = api_access(request, slug)
    return QuotaRequest.objects.filter(workspace=access.workspace).select_related(
        "family", "requested_by"
    )


@router.post("/workspaces/{slug}/quota/requests", response={201: QuotaRequestOut, **REFUSALS})
def file_request(request: HttpRequest, slug: str, payload: QuotaRequestIn) -> Status:
    """Ask site staff for a higher limit (a family's, or the low-priority pool's)."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "requesting quota")
    family = VmFamily.objects.filter(name=payload.family).first() if payload.family else None
    data = {
        "family": str(family.pk) if family else (payload.family or ""),
        "cores": str(payload.cores),
        "justification": payload.justification,
    }
    form = QuotaRequestForm(data)
    if not form.is_valid():
        raise form_invalid(form)
    made = request_quota(access, **form.cleaned_data)
    return Status(
        201, QuotaRequest.objects.select_related("family", "requested_by").get(pk=made.pk)
    )
