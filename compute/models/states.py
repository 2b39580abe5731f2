"""State machines of computes, nodes and jobs, with their allowed transitions written down,
and the named state sets the rest of the code asks instead of spelling tuples out.

A transition is a compare-and-set: `filter(pk=pk, state=expected).update(state=new)`,
acted on only if it returned 1 (see `Compute.transition` and `JobQuerySet.transition`).
A move the table does not allow raises `IllegalTransition`: that is a programming error,
never a race; a race lost is a transition that returns False (or 0).
"""

from __future__ import annotations

from django.db import models


class IllegalTransition(ValueError):
    """A move the transition table forbids."""


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
# The reconciler is working towards a new state.
TRANSITIONAL = (S.CREATING, S.STOPPING, S.STARTING, S.RESTARTING, S.RESIZING, S.DELETING)
# States in which nodes should exist (the count comes from the kind's rules).
WANTS_NODES = (S.CREATING, S.RUNNING, S.STARTING, S.RESTARTING, S.STEADY, S.RESIZING)
# On the way out or out: no new jobs, no new settings.
GONE = (S.DELETING, S.DELETED)
# Nodes are removed, whatever they run: their jobs are canceled.
GOING_AWAY = (S.STOPPING, S.DELETING)
# The reconciler places queued jobs onto idle nodes.
PLACES_JOBS = (S.RUNNING, S.STEADY, S.RESIZING, S.CREATING)
# An instance up or coming up: it holds its node's cores (quota), it can be stopped.
INSTANCE_UP = (S.CREATING, S.STARTING, S.RUNNING, S.RESTARTING)
# An instance down or going down.
INSTANCE_DOWN = (S.STOPPING, S.STOPPED)
# A schedule acts only on an instance that is plainly off or on: it never retries a failed
# start, and never cuts a restart short.
SCHEDULED_START_FROM = (S.STOPPED,)
SCHEDULED_STOP_FROM = (S.RUNNING, S.CREATING, S.STARTING)
# A cluster whose bounds may be edited; it settles once its live nodes are within them.
RESIZABLE = (S.CREATING, S.STEADY, S.RESIZING, S.FAILED)
SETTLES_WITHIN_BOUNDS = (S.CREATING, S.RESIZING, S.STEADY)


class NodeState(models.TextChoices):
    """preparing → idle ⇄ running; any → leaving (being removed); preempted; unusable."""

    PREPARING = "preparing", "Preparing"
    IDLE = "idle", "Idle"
    RUNNING = "running", "Running"
    LEAVING = "leaving", "Leaving"
    PREEMPTED = "preempted", "Preempted"
    UNUSABLE = "unusable", "Unusable"


N = NodeState
LIVE_NODE_STATES = (N.PREPARING, N.IDLE, N.RUNNING)
# Started: its container must be running (else the node is unusable); it can be preempted.
NODE_UP = (N.IDLE, N.RUNNING)
# Not running a job: a stop, restart or delete removes it at once.
NODE_NOT_BUSY = (N.PREPARING, N.IDLE)
# Its container is to be removed by the next reconcile.
NODE_GOING = (N.LEAVING, N.PREEMPTED)
# Coming or going: the compute's page keeps polling.
NODE_CHANGING = (N.PREPARING, N.LEAVING)
# A container may exist for it: what the reconciler and the sweep look at.
NODE_WITH_CONTAINER = (*LIVE_NODE_STATES, *NODE_GOING)


class JobStatus(models.TextChoices):
    """queued → preparing → running → completed | failed | canceled; a job of a lost node
    goes back to queued (up to its retries)."""

    QUEUED = "queued", "Queued"
    PREPARING = "preparing", "Preparing"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    PREEMPTED = "preempted", "Preempted"  # not written today: lost jobs go back to QUEUED


J = JobStatus
# Enforced by `JobQuerySet.transition` (compute/models/jobs.py).
JOB_TRANSITIONS: dict[str, set[str]] = {
    # FAILED: it can never run (its compute's environment did not build).
    J.QUEUED: {J.PREPARING, J.CANCELED, J.FAILED},
    # COMPLETED: the collector ends a job by its runs' exit codes, whether or not the row
    # had caught up with its start.
    J.PREPARING: {J.RUNNING, J.COMPLETED, J.FAILED, J.CANCELED, J.PREEMPTED, J.QUEUED},
    # QUEUED: its node was lost (preempted or dead) and a retry is left.
    J.RUNNING: {J.COMPLETED, J.FAILED, J.CANCELED, J.PREEMPTED, J.QUEUED},
    J.PREEMPTED: {J.QUEUED, J.FAILED},
    J.COMPLETED: set(),
    J.FAILED: set(),
    J.CANCELED: set(),
}
JOB_TERMINAL = (J.COMPLETED, J.FAILED, J.CANCELED)
# Placed: its runs hold nodes (or a target's slots).
JOB_ACTIVE = (J.PREPARING, J.RUNNING)
# Waiting or at work: it keeps its compute busy and its page live.
JOB_UNFINISHED = (J.QUEUED, *JOB_ACTIVE)


def check_job_move(sources: tuple[str, ...], new: str) -> None:
    for source in sources:
        if new not in JOB_TRANSITIONS[JobStatus(source)]:
            raise IllegalTransition(f"a job cannot go from {source} to {new}")


# A compute that takes no new job now, and why: the submit refusal, and the reason the
# Submit job button is not offered (`Compute.job_refusal`). A starting or restarting
# instance takes jobs: they wait for its node.
JOB_REFUSALS: dict[str, str] = {
    S.STOPPED: "is stopped; start it first",
    S.STOPPING: "is stopping; start it again once it has stopped",
    S.DELETING: "is being deleted",
    S.DELETED: "is deleted",
    S.FAILED: "has failed; fix it or retry first",
}
ATTACHED_JOB_REFUSALS: dict[str, str] = {
    S.FAILED: "cannot be reached; fix its connection or validate it again first",
    S.DELETING: "is being detached",
    S.DELETED: "is detached",
}


class ComputeVerb(models.TextChoices):
    """What a member may ask of a compute: the buttons of its page. `Compute.state_verbs`
    says which its kind and state allow now (from the transition tables); the pages
    offer those (`Compute.allowed_verbs`, by role) and the actions accept only those."""

    SUBMIT = "submit", "Submit job"
    START = "start", "Start"
    STOP = "stop", "Stop"
    RESTART = "restart", "Restart"
    KEEP_RUNNING = "keep_running", "Keep running"
    IDLE_SETTINGS = "idle_settings", "Idle & schedules"
    TOKEN = "token", "Activity token"
    RESIZE = "resize", "Resize"
    PREEMPT = "preempt", "Preempt a node"
    EDIT = "edit", "Edit connection"
    VALIDATE = "validate", "Validate again"
    DETACH = "detach", "Detach"
    DELETE = "delete", "Delete"


# The verbs only an admin is offered; the others are a contributor's too.
ADMIN_VERBS = frozenset({ComputeVerb.DELETE, ComputeVerb.PREEMPT})


class ScheduleAction(models.TextChoices):
    START = "start", "Start"
    STOP = "stop", "Stop"
