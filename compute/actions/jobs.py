"""The service layer of jobs: submit, cancel, and preempt a low-priority node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from compute import enqueue
from compute.actions.environments import queue_build
from compute.actions.errors import StateConflict
from compute.lib import secrets, snapshots
from compute.models import (
    CodeKind,
    Compute,
    ComputeState,
    ComputeVerb,
    Environment,
    Job,
    JobStatus,
    Node,
    NodeState,
    Tier,
)
from compute.models.events import EventVerb, record
from compute.models.idle import record_activity
from compute.models.states import JOB_ACTIVE, NODE_UP
from compute.selectors import live_computes_of
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Role, Workspace

S = ComputeState
J = JobStatus


@dataclass(frozen=True)
class Code:
    """A code snapshot from the submit form: bytes, or an uploaded file read in chunks."""

    kind: str
    name: str
    data: bytes | IO[bytes]


@sensitive_variables("secret_environment")
def submit_job(
    access: WorkspaceAccess,
    *,
    compute_id: int,
    name: str,
    command: str,
    node_count: int = 1,
    environment: dict[str, str] | None = None,
    secret_environment: dict[str, str] | None = None,
    code: Code | None = None,
    runs_in: Environment | None = None,
) -> Job:
    """`secret_environment` is encrypted here, before it reaches a row; no event, message
    or task names its values. `runs_in`: an environment other than the compute's."""
    require_role(access, Role.CONTRIBUTOR, "submitting jobs")
    actor = access.membership.user
    command = command.strip()
    if not command:
        raise ValidationError({"command": "Enter the command to run."})
    compute = live_computes_of(access.workspace).filter(pk=compute_id).first()
    if compute is None:
        raise ValidationError({"compute": "Choose a compute of this workspace."})
    refusal = compute.job_refusal()  # the rule the Submit job button follows too
    if refusal:
        raise StateConflict({"compute": refusal})
    check_node_count(compute, node_count)
    runs_in = job_environment(access, compute, runs_in)
    stored = False
    try:
        with transaction.atomic():
            check_queue_room(access.workspace)
            job = Job.objects.create(
                workspace=access.workspace,
                compute=compute,
                name=name.strip() or command.split()[0][:80],
                command=command,
                environment=environment or {},
                secret_environment=secrets.encrypt_variables(secret_environment),
                chosen_environment=runs_in,
                node_count=node_count,
                submitted_by=actor,
                max_retries=settings.HANGAR_JOB_MAX_RETRIES,
                code_kind=code.kind if code else CodeKind.NONE,
                code_name=code.name if code else "",
            )
            if code:
                store_code(job, code)
                stored = True
            nodes = "1 node" if node_count == 1 else f"{node_count} nodes"
            within = f" in environment {runs_in}" if runs_in else ""
            record(
                compute,
                EventVerb.JOB_SUBMITTED,
                f"{actor} submitted job {job.name} (#{job.pk}) needing {nodes}{within}.",
                actor=actor,
            )
            enqueue.reconcile(compute.pk)
    except BaseException:
        # The job was rolled back; its id may come again (SQLite), and the next job of that
        # id must find no folder (it would be refused, never handed this one).
        if stored:
            snapshots.remove_code(job.pk)
        raise
    if compute.is_instance:
        record_activity(compute.pk, f"job {job.name} submitted by {actor}")
    return job


def job_environment(
    access: WorkspaceAccess, compute: Compute, chosen: Environment | None
) -> Environment | None:
    """The environment a job runs in when not its compute's (None: the compute's). Only a
    cluster's nodes can run several; one not built yet is asked for now."""
    if chosen is None or chosen.pk == compute.environment_id:
        return None
    if chosen.workspace_id not in (None, access.workspace.pk):
        raise ValidationError({"runs_in": "Choose an environment from the list."})
    if compute.is_attached:
        raise ValidationError(
            {
                "runs_in": f"{compute.name} is attached: its jobs run with what its machine "
                "has. Environments are for instances and clusters."
            }
        )
    if compute.is_instance:
        own = compute.environment or "the site's node image"
        raise ValidationError(
            {
                "runs_in": f"Instance {compute.name} runs {own}, and so do its jobs. Run a "
                f"job in {chosen} on a cluster, or on an instance made with it."
            }
        )
    image = chosen.image
    if image.is_failed:
        reason = image.first_error_line
        raise ValidationError(
            {
                "runs_in": f"Environment {chosen} did not build ({reason}). Build it again "
                "on its page, or make a version that builds."
            }
        )
    if image.can_build:
        queue_build(image)  # curated and never asked for, or removed as unused since
    return chosen


def check_queue_room(workspace: Workspace) -> None:
    """HANGAR_MAX_QUEUED_JOBS per workspace. The workspace row is the lock (held to the end
    of the submit's transaction), so concurrent submissions at the cap cannot both pass."""
    Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
    queued = Job.objects.filter(workspace=workspace, status=J.QUEUED).count()
    cap = settings.HANGAR_MAX_QUEUED_JOBS
    if queued >= cap:
        raise ValidationError(
            f"{workspace.name} already has {queued} jobs waiting, the most a workspace may "
            f"queue (HANGAR_MAX_QUEUED_JOBS={cap}). Wait for some to start, or cancel some."
        )


def check_node_count(compute: Compute, node_count: int) -> None:
    if compute.is_instance and node_count != 1:
        raise ValidationError({"node_count": "A compute instance runs one-node jobs only."})
    if compute.is_attached and node_count != 1:
        raise ValidationError({"node_count": "An attached compute runs one-node jobs only."})
    if node_count < 1 or node_count > compute.max_nodes:
        raise ValidationError(
            {"node_count": f"{compute.name} takes 1 to {compute.max_nodes} nodes per job."}
        )
    if node_count > 1 and settings.HANGAR_DRIVER == "docker":
        if settings.HANGAR_NODE_NETWORK == "none":
            raise ValidationError(
                {
                    "node_count": "Multi-node jobs need nodes that reach each other: this "
                    "Hangar isolates nodes (HANGAR_NODE_NETWORK=none); ask an admin to set host."
                }
            )


def store_code(job: Job, code: Code) -> None:
    """Stores the snapshot whole or not at all; a failure leaves nothing on disk."""
    try:
        if code.kind == CodeKind.ZIP:
            snapshots.store_zip(job.pk, code.data)
        elif code.kind == CodeKind.SCRIPT:
            snapshots.store_script(job.pk, code.name, _text(code.data))
        else:
            snapshots.store_file(job.pk, code.name, code.data)
    except snapshots.CodeError as exc:
        # No remove_code here: what sits at code/<job> on failure is not this job's.
        raise ValidationError({"code": str(exc)}) from None


def _text(data: bytes | IO[bytes]) -> str:
    return (data if isinstance(data, bytes) else data.read()).decode()


def remove_code(job_id: int) -> None:
    """Deletes a job's snapshot; links inside are removed, never followed."""
    snapshots.remove_code(job_id)


def cancel_job(access: WorkspaceAccess, job_id: int) -> Job:
    require_role(access, Role.CONTRIBUTOR, "canceling jobs")
    actor = access.membership.user
    job = Job.objects.filter(workspace=access.workspace, pk=job_id).first()
    if job is None:
        raise ValidationError("This job does not exist.")
    now = timezone.now()
    with transaction.atomic():
        error = f"Canceled by {actor}."
        if not job.transition(
            J.QUEUED, J.CANCELED, cancel_requested_at=now, finished_at=now, error=error
        ):
            # Placed already: the reconciler stops its runs, then ends it as canceled.
            if not Job.objects.filter(
                pk=job.pk, status__in=JOB_ACTIVE, cancel_requested_at__isnull=True
            ).update(cancel_requested_at=now, error=error):
                job.refresh_from_db()
                if job.cancel_requested_at and not job.is_terminal:
                    raise StateConflict(f"{job.name} is already being canceled.")
                raise StateConflict(f"{job.name} is already {job.get_status_display().lower()}.")
            enqueue.reconcile(job.compute_id)
        record(
            job.compute,
            EventVerb.JOB_CANCELED,
            f"{actor} canceled job {job.name} (#{job.pk}).",
            actor=actor,
        )
    return job


def preempt_node(access: WorkspaceAccess, node_id: int) -> Node:
    """What a cloud does to a low-priority VM at any moment, on demand (admins, demos)."""
    require_role(access, Role.ADMIN, "preempting nodes")
    actor = access.membership.user
    node = (
        Node.objects.select_related("compute")
        .filter(compute__workspace=access.workspace, pk=node_id)
        .first()
    )
    if node is None:
        raise ValidationError("This node does not exist.")
    if not node.compute.is_cluster or node.compute.tier != Tier.LOW_PRIORITY:
        raise ValidationError("Only nodes of low-priority clusters can be preempted.")
    if ComputeVerb.PREEMPT not in node.compute.state_verbs():
        raise ValidationError(f"{node.compute.name} is {node.compute.state_label.lower()}.")
    with transaction.atomic():
        if not Node.objects.filter(pk=node.pk, state__in=NODE_UP).update(state=NodeState.PREEMPTED):
            raise ValidationError(f"Node {node.name} is {node.get_state_display().lower()}.")
        record(
            node.compute,
            EventVerb.NODE_PREEMPTED_ON_DEMAND,
            f"{actor} preempted node {node.name} (as the cloud may do to low-priority nodes).",
            actor=actor,
        )
        enqueue.reconcile(node.compute_id)
    return node
