# No `from __future__ import annotations`: django-ninja reads these annotations at import.
"""An instance's idle shutdown, "keep running", and start/stop schedules."""

from datetime import datetime

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status

from compute.actions import idle as idle_actions
from compute.api.auth import api_access
from compute.api.errors import form_invalid
from compute.api.schemas import Error
from compute.forms.computes import IdleSettingsForm, ScheduleForm
from compute.models import Compute, ComputeKind, Schedule
from compute.selectors import computes_of
from workspace.access import WorkspaceAccess
from workspace.models import Role

router = Router(tags=["idle"])
REFUSALS = {401: Error, 403: Error, 404: Error, 409: Error, 422: Error}
ONE = "/workspaces/{slug}/computes/{int:compute_id}"


class IdleOut(Schema):
    idle_shutdown_minutes: int | None  # None: never
    idle_deadline: datetime | None  # when it stops if nothing happens
    keep_running_until: datetime | None
    last_activity_at: datetime | None
    last_activity: str


class IdleIn(Schema):
    idle_shutdown_minutes: int | None  # None or 0: never (if the workspace allows it)


class ScheduleIn(Schema):
    action: str  # "start" | "stop"
    cron: str  # "minute hour day month weekday", e.g. "0 19 * * 1-5"
    timezone: str = "UTC"


class ScheduleOut(Schema):
    id: int
    action: str
    cron: str
    timezone: str
    enabled: bool
    next_run_at: datetime | None
    postponed_to: datetime | None
    last_fired_at: datetime | None


def instance(
    request: HttpRequest, slug: str, compute_id: int, *role: str
) -> tuple[WorkspaceAccess, Compute]:
    access = api_access(request, slug, *role)
    compute = get_object_or_404(
        computes_of(access).filter(kind=ComputeKind.INSTANCE).exclude(state="deleted"),
        pk=compute_id,
    )
    return access, compute


@router.get(ONE + "/idle", response={200: IdleOut, **REFUSALS})
def show_idle(request: HttpRequest, slug: str, compute_id: int) -> Compute:
    return instance(request, slug, compute_id)[1]


@router.put(ONE + "/idle", response={200: IdleOut, **REFUSALS})
def set_idle(request: HttpRequest, slug: str, compute_id: int, payload: IdleIn) -> Compute:
    """Set the idle shutdown, within the workspace's policy (the page's rules)."""
    access, compute = instance(
        request, slug, compute_id, Role.CONTRIBUTOR, "changing idle shutdown"
    )
    minutes = payload.idle_shutdown_minutes
    form = IdleSettingsForm(
        {"idle_shutdown_minutes": "" if not minutes else str(minutes)}, workspace=access.workspace
    )
    if not form.is_valid():
        raise form_invalid(form)
    idle_actions.set_idle_minutes(access, compute.pk, form.cleaned_data["idle_shutdown_minutes"])
    return Compute.objects.get(pk=compute.pk)


@router.post(ONE + "/keep-running", response={200: IdleOut, **REFUSALS})
def keep_running(
    request: HttpRequest, slug: str, compute_id: int, schedule: bool = False
) -> Compute:
    """Push the coming idle stop (or, `schedule=true`, the scheduled stop) back by the
    workspace's keep-running time. 409 when the instance is not running."""
    access, compute = instance(
        request, slug, compute_id, Role.CONTRIBUTOR, "keeping an instance running"
    )
    idle_actions.keep_running(access, compute.pk, "schedule" if schedule else "idle")
    return Compute.objects.get(pk=compute.pk)


@router.get(ONE + "/schedules", response={200: list[ScheduleOut], **REFUSALS})
def list_schedules(request: HttpRequest, slug: str, compute_id: int) -> list[Schedule]:
    return list(instance(request, slug, compute_id)[1].schedules.order_by("id"))


@router.post(ONE + "/schedules", response={201: ScheduleOut, **REFUSALS})
def add_schedule(request: HttpRequest, slug: str, compute_id: int, payload: ScheduleIn) -> Status:
    access, compute = instance(request, slug, compute_id, Role.CONTRIBUTOR, "scheduling")
    form = ScheduleForm({**payload.dict(), "mode": "cron"})
    if not form.is_valid():
        raise form_invalid(form)
    made = idle_actions.add_schedule(
        access,
        compute.pk,
        action=form.cleaned_data["action"],
        cron=form.cleaned_data["expression"],
        tz=form.cleaned_data["timezone"].strip(),
    )
    return Status(201, made)


@router.delete(ONE + "/schedules/{int:schedule_id}", response={204: None, **REFUSALS})
def delete_schedule(request: HttpRequest, slug: str, compute_id: int, schedule_id: int) -> Status:
    access, compute = instance(request, slug, compute_id, Role.CONTRIBUTOR, "scheduling")
    get_object_or_404(compute.schedules, pk=schedule_id)
    idle_actions.delete_schedule(access, compute.pk, schedule_id)
    return Status(204, None)
