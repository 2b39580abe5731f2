"""Workspaces the caller belongs to, their members, the VM catalog, the inbox."""

# No `from __future__ import annotations`: django-ninja reads these annotations at import.

from django.db.models import Count, F, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Schema
from ninja.pagination import paginate

from compute.api.auth import api_access, caller, token_of, visible_workspaces
from compute.api.errors import form_invalid
from compute.api.pagination import CursorPagination, newest_first
from compute.api.schemas import MemberOut, NotificationOut, VmSizeOut, WorkspaceOut
from compute.forms.computes import CatalogFilterForm
from compute.models import VmFamily, VmSize
from workspace.models import Membership, Notification

router = Router(tags=["workspaces"])


@router.get("/workspaces", response=list[WorkspaceOut])
@paginate(CursorPagination, **newest_first("name", "id"))
def list_workspaces(request: HttpRequest) -> QuerySet:
    mine = Membership.objects.filter(user=caller(request), workspace=OuterRef("pk"))
    return visible_workspaces(request).annotate(role=Subquery(mine.values("role")[:1]))


@router.get("/workspaces/{slug}", response=WorkspaceOut)
def show_workspace(request: HttpRequest, slug: str) -> dict:
    access = api_access(request, slug)
    workspace = access.workspace
    return {
        "slug": workspace.slug,
        "name": workspace.name,
        "description": workspace.description,
        "role": access.role,
    }


@router.get("/workspaces/{slug}/members", response=list[MemberOut])
@paginate(CursorPagination, **newest_first("username", "id"))
def list_members(request: HttpRequest, slug: str) -> QuerySet:
    access = api_access(request, slug)
    # The cursor reads its position off each row: the username as a field of the row.
    return access.workspace.memberships.select_related("user").annotate(
        username=F("user__username")
    )


class FamilyOut(Schema):
    name: str
    category: str
    restricted: bool  # needs an approved quota before first use
    serves_clusters: bool
    serves_instances: bool
    sizes: int

    @staticmethod
    def resolve_sizes(family: VmFamily) -> int:
        return family.size_count  # type: ignore[attr-defined]  # annotated by the list


@router.get("/catalog/families", response=list[FamilyOut], tags=["catalog"])
@paginate(CursorPagination, **newest_first("name", "id"))
def list_families(request: HttpRequest, category: str | None = None) -> QuerySet:
    """The VM families, with how many sizes each has."""
    families = VmFamily.objects.annotate(size_count=Count("sizes"))
    return families.filter(category=category) if category else families


class CatalogQuery(Schema):
    q: str | None = None
    category: str | None = None
    gpu: str | None = None  # "yes" | "no"
    restricted: str | None = None
    isolated: str | None = None
    min_vcpus: int | None = None
    min_memory: float | None = None


@router.get("/catalog/sizes", response=list[VmSizeOut], tags=["catalog"])
@paginate(CursorPagination, **newest_first("name", "id"))
def list_sizes(request: HttpRequest, filters: Query[CatalogQuery]) -> QuerySet:
    """The VM sizes, filtered as on the catalog page (same form, same messages)."""
    form = CatalogFilterForm({k: v for k, v in filters.dict().items() if v is not None})
    if not form.is_valid():
        raise form_invalid(form)
    return form.filter(VmSize.objects.select_related("family"))


@router.get("/notifications", response=list[NotificationOut], tags=["notifications"])
@paginate(CursorPagination, **newest_first("-created_at", "-id"))
def list_notifications(request: HttpRequest, unread: bool = False) -> QuerySet:
    inbox = Notification.objects.filter(user=caller(request)).select_related("workspace")
    token = token_of(request)
    if token is not None and token.workspace_id is not None:
        inbox = inbox.filter(workspace_id=token.workspace_id)
    if unread:
        inbox = inbox.filter(read_at__isnull=True)
    return inbox


@router.post("/notifications/read", tags=["notifications"])
def read_notifications(request: HttpRequest) -> dict:
    """Mark every unread notification read (those this credential may see)."""
    inbox = Notification.objects.filter(user=caller(request), read_at__isnull=True)
    token = token_of(request)
    if token is not None and token.workspace_id is not None:
        inbox = inbox.filter(workspace_id=token.workspace_id)
    return {"marked_read": inbox.update(read_at=timezone.now())}
