"""Scoped reads: what a page, a form or an action may see of a workspace, in one place.

Every lookup of a workspace's compute by an id from a URL or a form goes through here, so
"another workspace's id" is answered the same way everywhere (nothing found → 404 on a
page, "does not exist" from an action)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet

from compute.lib.diskuse import DiskUse, disk_use
from compute.models import Compute, ComputeKind, ComputeState, Job
from workspace.access import WorkspaceAccess
from workspace.models import Workspace


def computes_of(access: WorkspaceAccess) -> QuerySet[Compute]:
    """Every compute of the workspace (deleted ones too: their pages keep the history)."""
    return Compute.objects.of(access.workspace)


def live_computes_of(workspace: Workspace) -> QuerySet[Compute]:
    """The workspace's computes that are not deleted: what a form may offer or check."""
    return Compute.objects.of(workspace).exclude(state=ComputeState.DELETED)


def instance_of(access: WorkspaceAccess, pk: int) -> Compute | None:
    return (
        live_computes_of(access.workspace)
        .select_related("workspace")
        .filter(pk=pk, kind=ComputeKind.INSTANCE)
        .first()
    )


def attached_of(access: WorkspaceAccess, pk: int) -> Compute | None:
    return (
        live_computes_of(access.workspace)
        .select_related("attachment", "created_by")
        .filter(pk=pk, kind=ComputeKind.ATTACHED)
        .first()
    )


def workspace_disk_use(workspace: Workspace) -> DiskUse:
    """How much of Hangar's disk the workspace's own jobs take (code and output)."""
    return disk_use(
        f"hangar:disk-use:{workspace.pk}",
        lambda: Job.objects.filter(workspace=workspace).values_list("pk", flat=True).iterator(),
    )


@dataclass(frozen=True)
class Burning:
    """A running instance's cost today and the idle waste ahead, at its dedicated price."""

    compute: Compute
    idle_for: timedelta
    cost_today: float
    waste: float
    waste_note: str

    @property
    def idle_minutes(self) -> float:
        return self.idle_for.total_seconds() / 60


def burning(workspace: Workspace, now: datetime) -> list[Burning]:
    """Running instances, most idle first. The waste is the idle time so far plus what is
    ahead until the idle shutdown (or midnight, with shutdown off)."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = []
    instances = (
        Compute.objects.of(workspace)
        .filter(kind=ComputeKind.INSTANCE, state=ComputeState.RUNNING)
        .select_related("vm_size", "assigned_to", "created_by")
    )
    for compute in instances:
        idle_for = now - (compute.last_activity_at or compute.state_changed_at)
        assert compute.vm_size is not None  # instances always have one
        price = float(compute.vm_size.price_dedicated)
        running_today = (now - max(today, compute.state_changed_at)).total_seconds() / 3600
        if compute.idle_deadline:
            ahead = max(0.0, (compute.idle_deadline - now).total_seconds() / 3600)
            note = f"until idle shutdown at {compute.idle_deadline:%H:%M} UTC"
        else:
            ahead = (today + timedelta(days=1) - now).total_seconds() / 3600
            note = "no idle shutdown: until midnight at least"
        waste = (idle_for.total_seconds() / 3600 + ahead) * price
        rows.append(Burning(compute, idle_for, running_today * price, waste, note))
    rows.sort(key=lambda row: row.idle_for, reverse=True)
    return rows
