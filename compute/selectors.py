"""Scoped reads: what a page or an action may see of a workspace, in one place."""

from __future__ import annotations

from django.db.models import QuerySet

from compute.lib.diskuse import DiskUse, disk_use
from compute.models import Compute, ComputeState, Job
from workspace.models import Workspace


def workspace_disk_use(workspace: Workspace) -> DiskUse:
    """How much of Hangar's disk the workspace's own jobs take (code and output)."""
    return disk_use(
        f"hangar:disk-use:{workspace.pk}",
        lambda: Job.objects.filter(workspace=workspace).values_list("pk", flat=True).iterator(),
    )


def computes_of(workspace: Workspace) -> QuerySet[Compute]:
    """The workspace's computes, deleted ones left out."""
    return Compute.objects.filter(workspace=workspace).exclude(state=ComputeState.DELETED)
