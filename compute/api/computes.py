"""Computes: list, show, create (instance, cluster), resize, start, stop, restart,
delete; their nodes and events. Input goes through the pages' own forms and actions."""

# No `from __future__ import annotations`: django-ninja reads these annotations at import.

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.views.decorators.debug import sensitive_variables
from ninja import Router, Schema, Status
from ninja.pagination import paginate

from compute.actions import computes as actions
from compute.api.auth import api_access
from compute.api.errors import form_invalid
from compute.api.pagination import CursorPagination, newest_first
from compute.api.schemas import ComputeOut, Error, EventOut, NodeOut
from compute.forms.computes import ClusterBoundsForm, ClusterForm, InstanceForm
from compute.models import Compute, VmSize
from compute.selectors import computes_of, default_environment_of, environment_choice
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Role

router = Router(tags=["computes"])
REFUSALS: dict[int | str, Any] = {401: Error, 403: Error, 404: Error, 409: Error, 422: Error}
ONE = "/workspaces/{slug}/computes/{int:compute_id}"
ACCEPTED: dict[int | str, Any] = {202: ComputeOut, **REFUSALS}


class InstanceIn(Schema):
    name: str
    vm_size: str  # a size's name, e.g. "Standard_DS3_v2"
    assigned_to: str | None = None  # a member's username (admins only)
    # Omitted: the workspace's default; 0: never (if the workspace allows it).
    idle_shutdown_minutes: int | None = None
    setup_script: str = ""
    secret_environment: dict[str, str] = {}
    # An environment's id, name or name:version. Omitted: the workspace's default; null or
    # "": the site's node image.
    environment: str | None = None


class ClusterIn(Schema):
    name: str
    vm_size: str
    tier: str = "dedicated"
    min_nodes: int = 0
    max_nodes: int = 1
    idle_seconds_before_scaledown: int = 120
    environment: str | None = None  # as InstanceIn's


class ClusterUpdate(Schema):
    min_nodes: int
    max_nodes: int
    idle_seconds_before_scaledown: int


def compute_in(access: WorkspaceAccess, compute_id: int) -> Compute:
    """One compute of the workspace as the API shows it (404 for any other id); read again
    after an action, it shows the state the action moved it to."""
    return get_object_or_404(
        computes_of(access).select_related("vm_size", "workspace", "environment"), pk=compute_id
    )


def compute_of(request: HttpRequest, slug: str, compute_id: int) -> Compute:
    return compute_in(api_access(request, slug), compute_id)


@router.get("/workspaces/{slug}/computes", response=list[ComputeOut])
@paginate(CursorPagination, **newest_first("name", "id"))
def list_computes(
    request: HttpRequest, slug: str, kind: str | None = None, state: str | None = None
) -> QuerySet:
    """The workspace's computes (deleted ones only when asked for with `state=deleted`)."""
    computes = computes_of(api_access(request, slug)).select_related(
        "vm_size", "workspace", "environment"
    )
    computes = computes.filter(state=state) if state else computes.exclude(state="deleted")
    return computes.filter(kind=kind) if kind else computes


@router.get("/workspaces/{slug}/computes/{int:compute_id}", response={200: ComputeOut, **REFUSALS})
def show_compute(request: HttpRequest, slug: str, compute_id: int) -> Compute:
    return compute_of(request, slug, compute_id)


def size_pk(name: str) -> str:
    """The catalog size named `name`, as the form's choice (its id); the form refuses an
    unknown name with its own message."""
    pk = VmSize.objects.filter(name=name).values_list("pk", flat=True).first()
    return str(pk) if pk is not None else name


def chosen_environment(access: WorkspaceAccess, payload: InstanceIn | ClusterIn) -> str:
    """The form's choice for the environment the payload names; the workspace's default
    when it names none."""
    if "environment" in payload.model_fields_set:
        return environment_choice(access.workspace, payload.environment or "")
    default = default_environment_of(access.workspace)
    return str(default.pk) if default else ""


@router.post("/workspaces/{slug}/computes/instances", response={201: ComputeOut, **REFUSALS})
@sensitive_variables()  # the secret variables pass through here in clear
def create_instance(request: HttpRequest, slug: str, payload: InstanceIn) -> Status:
    access = api_access(request, slug, Role.CONTRIBUTOR, "creating compute")
    members = [m.user for m in access.workspace.memberships.select_related("user")]
    data: dict[str, Any] = {
        "name": payload.name,
        "vm_size": size_pk(payload.vm_size),
        "setup_script": payload.setup_script,
        "secret_environment": "\n".join(f"{k}={v}" for k, v in payload.secret_environment.items()),
        "environment": chosen_environment(access, payload),
    }
    if "idle_shutdown_minutes" in payload.model_fields_set:
        minutes = payload.idle_shutdown_minutes
        data["idle_shutdown_minutes"] = "" if not minutes else str(minutes)
    if payload.assigned_to:
        assignee = next((u for u in members if u.username == payload.assigned_to), None)
        data["assigned_to"] = str(assignee.pk) if assignee else payload.assigned_to
    form = InstanceForm(
        data, workspace=access.workspace, members=members, can_assign=access.is_admin
    )
    if payload.assigned_to:
        # The page hides the field from non-admins; the API says why it refuses.
        require_role(access, Role.ADMIN, "creating an instance on behalf of someone else")
    if not form.is_valid():
        raise form_invalid(form)
    return Status(201, actions.create_instance(access, **form.cleaned_data))


@router.post("/workspaces/{slug}/computes/clusters", response={201: ComputeOut, **REFUSALS})
def create_cluster(request: HttpRequest, slug: str, payload: ClusterIn) -> Status:
    access = api_access(request, slug, Role.CONTRIBUTOR, "creating compute")
    data = {
        **payload.dict(),
        "vm_size": size_pk(payload.vm_size),
        "environment": chosen_environment(access, payload),
    }
    form = ClusterForm(data, workspace=access.workspace)
    if not form.is_valid():
        raise form_invalid(form)
    return Status(201, actions.create_cluster(access, **form.cleaned_data))


@router.patch(
    "/workspaces/{slug}/computes/{int:compute_id}", response={200: ComputeOut, **REFUSALS}
)
def resize_cluster(
    request: HttpRequest, slug: str, compute_id: int, payload: ClusterUpdate
) -> Compute:
    """A cluster's node bounds and scale-down delay."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "changing compute")
    compute = compute_in(access, compute_id)
    form = ClusterBoundsForm(payload.dict())
    if not form.is_valid():
        raise form_invalid(form)
    actions.update_cluster(access, compute.pk, **form.cleaned_data)
    return compute_in(access, compute_id)


def instance_verb(request: HttpRequest, slug: str, compute_id: int, verb: str) -> Status:
    access = api_access(request, slug, Role.CONTRIBUTOR, "changing compute")
    actions.instance_verb(access, compute_in(access, compute_id).pk, verb)
    return Status(202, compute_in(access, compute_id))


@router.post(
    "/workspaces/{slug}/computes/{int:compute_id}/start", response={202: ComputeOut, **REFUSALS}
)
def start(request: HttpRequest, slug: str, compute_id: int) -> Status:
    return instance_verb(request, slug, compute_id, "start")


@router.post(
    "/workspaces/{slug}/computes/{int:compute_id}/stop", response={202: ComputeOut, **REFUSALS}
)
def stop(request: HttpRequest, slug: str, compute_id: int) -> Status:
    return instance_verb(request, slug, compute_id, "stop")


@router.post(
    "/workspaces/{slug}/computes/{int:compute_id}/restart", response={202: ComputeOut, **REFUSALS}
)
def restart(request: HttpRequest, slug: str, compute_id: int) -> Status:
    return instance_verb(request, slug, compute_id, "restart")


@router.delete(
    "/workspaces/{slug}/computes/{int:compute_id}", response={202: ComputeOut, **REFUSALS}
)
def delete(request: HttpRequest, slug: str, compute_id: int) -> Status:
    """Delete a compute: its nodes are removed, its history stays (state `deleting`)."""
    access = api_access(request, slug, Role.ADMIN, "deleting compute")
    actions.delete_compute(access, compute_in(access, compute_id).pk)
    return Status(202, compute_in(access, compute_id))


@router.get("/workspaces/{slug}/computes/{int:compute_id}/nodes", response=list[NodeOut])
@paginate(CursorPagination, **newest_first("-created_at", "-id"))
def list_nodes(request: HttpRequest, slug: str, compute_id: int, live: bool = False) -> QuerySet:
    """The compute's nodes, newest first; `live=true`: only those up."""
    nodes = compute_of(request, slug, compute_id).nodes.order_by()
    return nodes.filter(ended_at__isnull=True) if live else nodes


@router.get("/workspaces/{slug}/computes/{int:compute_id}/events", response=list[EventOut])
@paginate(CursorPagination, **newest_first("-created_at", "-id"))
def list_events(request: HttpRequest, slug: str, compute_id: int) -> QuerySet:
    return compute_of(request, slug, compute_id).events.select_related("actor").order_by()
