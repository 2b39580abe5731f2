"""State machines of computes and nodes, with their allowed transitions written down.

A transition is a compare-and-set: `filter(pk=pk, state=expected).update(state=new)`,
acted on only if it returned 1 (see `Compute.transition`).
"""

from __future__ import annotations

from django.db import models


class ComputeKind(models.TextChoices):
    INSTANCE = "instance", "Compute instance"
    CLUSTER = "cluster", "Compute cluster"
    ATTACHED = "attached", "Attached compute"


class ComputeState(models.TextChoices):
    CREATING = "creating", "Creating"
    RUNNING = "running", "Running"  # instance
    STOPPING = "stopping", "Stopping"  # instance
    STOPPED = "stopped", "Stopped"  # instance
    STARTING = "starting", "Starting"  # instance
    RESTARTING = "restarting", "Restarting"  # instance
    STEADY = "steady", "Steady"  # cluster
    RESIZING = "resizing", "Resizing"  # cluster
    DELETING = "deleting", "Deleting"
    DELETED = "deleted", "Deleted"
    FAILED = "failed", "Failed"


S = ComputeState

# Who may move where. Actions move a compute into a transitional state; the reconciler
# moves it out once the world matches. Any live state may go to DELETING or FAILED.
INSTANCE_TRANSITIONS: dict[str, set[str]] = {
    S.CREATING: {S.RUNNING, S.STOPPING, S.FAILED, S.DELETING},
    S.RUNNING: {S.STOPPING, S.RESTARTING, S.DELETING, S.FAILED},
    S.STOPPING: {S.STOPPED, S.FAILED, S.DELETING},
    S.STOPPED: {S.STARTING, S.DELETING},
    S.STARTING: {S.RUNNING, S.STOPPING, S.FAILED, S.DELETING},
    S.RESTARTING: {S.RUNNING, S.STOPPING, S.FAILED, S.DELETING},
    S.FAILED: {S.STARTING, S.DELETING},  # start = retry
    S.DELETING: {S.DELETED},
    S.DELETED: set(),
}
CLUSTER_TRANSITIONS: dict[str, set[str]] = {
    S.CREATING: {S.STEADY, S.FAILED, S.DELETING},
    S.STEADY: {S.RESIZING, S.DELETING, S.FAILED},
    S.RESIZING: {S.STEADY, S.FAILED, S.DELETING},
    S.FAILED: {S.RESIZING, S.DELETING},  # resize = retry
    S.DELETING: {S.DELETED},
    S.DELETED: set(),
}
# Attached: creating = validating the connection, steady = ready for jobs, failed =
# validation failed (retry goes back to creating), deleting = detaching.
ATTACHED_TRANSITIONS: dict[str, set[str]] = {
    S.CREATING: {S.STEADY, S.FAILED, S.DELETING},
    S.STEADY: {S.CREATING, S.FAILED, S.DELETING},
    S.FAILED: {S.CREATING, S.DELETING},
    S.DELETING: {S.DELETED},
    S.DELETED: set(),
}
TRANSITIONS = {
    ComputeKind.INSTANCE: INSTANCE_TRANSITIONS,
    ComputeKind.CLUSTER: CLUSTER_TRANSITIONS,
    ComputeKind.ATTACHED: ATTACHED_TRANSITIONS,
}

# Nothing to do until someone acts; the page stops polling.
STEADY = (S.RUNNING, S.STOPPED, S.STEADY, S.FAILED, S.DELETED)
TERMINAL = (S.DELETED,)
# The reconciler is working towards a new state.
TRANSITIONAL = (S.CREATING, S.STOPPING, S.STARTING, S.RESTARTING, S.RESIZING, S.DELETING)
# States in which nodes should exist (the count comes from the kind's rules).
WANTS_NODES = (S.CREATING, S.RUNNING, S.STARTING, S.RESTARTING, S.STEADY, S.RESIZING)


class NodeState(models.TextChoices):
    """preparing → idle ⇄ running; any → leaving (being removed); preempted; unusable."""

    PREPARING = "preparing", "Preparing"
    IDLE = "idle", "Idle"
    RUNNING = "running", "Running"
    LEAVING = "leaving", "Leaving"
    PREEMPTED = "preempted", "Preempted"
    UNUSABLE = "unusable", "Unusable"


LIVE_NODE_STATES = (NodeState.PREPARING, NodeState.IDLE, NodeState.RUNNING)
