"""The service layer of compute: one function per user-visible operation.

Each checks the role, validates, changes state by compare-and-set inside one transaction,
writes an event saying who did what, and enqueues the reconciler on commit.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.views.decorators.debug import sensitive_variables

from compute import enqueue, quota
from compute.actions.environments import queue_build
from compute.actions.errors import StateConflict
from compute.actions.idle import idle_minutes_for_new
from compute.lib import secrets
from compute.models import (
    Compute,
    ComputeKind,
    ComputeState,
    ComputeVerb,
    Environment,
    Node,
    NodeState,
    Tier,
    VmSize,
)
from compute.models.compute import INFERENCE_OWNED
from compute.models.events import EventVerb, record
from compute.models.states import INSTANCE_DOWN, INSTANCE_UP, NODE_NOT_BUSY
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Membership, Role

S = ComputeState


def _check_size(vm_size: VmSize, kind: str) -> None:
    family = vm_size.family
    serves = family.serves_instances if kind == ComputeKind.INSTANCE else family.serves_clusters
    if not serves:
        what = "compute instances" if kind == ComputeKind.INSTANCE else "compute clusters"
        raise ValidationError({"vm_size": f"The {family.name} family cannot be used for {what}."})


def _check_quota(compute: Compute) -> None:
    """Inside the creating transaction: the compute count, and for an instance its cores
    (it holds a node from the start). Row locks keep concurrent creations honest."""
    workspace, size = compute.workspace, compute.vm_size
    assert size is not None  # instances and clusters always have one
    quota.ensure_room_for_a_compute(workspace)
    cores = quota.check(workspace, size, 1 if compute.is_instance else 0, Tier.DEDICATED, lock=True)
    if cores.restricted_unapproved or (compute.is_instance and not cores.fits):
        raise ValidationError({"vm_size": cores.message})


def _save_new(compute: Compute, actor: User, message: str) -> Compute:
    compute.full_clean()
    try:
        with transaction.atomic():
            _check_quota(compute)
            compute.save()
            record(compute, EventVerb.COMPUTE_CREATED, message, actor=actor)
            enqueue.reconcile(compute.pk)
    except IntegrityError:
        # Two tabs creating the same name at once: the loser gets the form's message.
        raise ValidationError({"name": "A compute with this name already exists here."})
    return compute


@sensitive_variables("secret_environment")
def create_instance(
    access: WorkspaceAccess,
    *,
    name: str,
    vm_size: VmSize,
    assigned_to: User | None = None,
    idle_shutdown_minutes: int | None = None,
    setup_script: str = "",
    secret_environment: dict[str, str] | None = None,
    environment: Environment | None = None,
) -> Compute:
    """`secret_environment` is encrypted before it reaches the row (compute/lib/secrets.py).

    `idle_shutdown_minutes`: None takes the workspace's default for new instances;
    IDLE_OFF (0) turns idle shutdown off, if the workspace does not require it."""
    require_role(access, Role.CONTRIBUTOR, "creating compute")
    actor = access.membership.user
    assignee = assigned_to or actor
    if assignee.pk != actor.pk:
        require_role(access, Role.ADMIN, "creating an instance on behalf of someone else")
        if not Membership.objects.filter(workspace=access.workspace, user=assignee).exists():
            raise ValidationError({"assigned_to": f"{assignee} is not a member of this workspace."})
    _check_size(vm_size, ComputeKind.INSTANCE)
    idle_shutdown_minutes = idle_minutes_for_new(access.workspace, idle_shutdown_minutes)
    compute = Compute(
        workspace=access.workspace,
        name=name,
        kind=ComputeKind.INSTANCE,
        vm_size=vm_size,
        created_by=actor,
        assigned_to=assignee,
        idle_shutdown_minutes=idle_shutdown_minutes,
        setup_script=setup_script,
        secret_environment=secrets.encrypt_variables(secret_environment),
        max_nodes=1,
        environment=environment_of(access, environment),
    )
    on_behalf = f" for {assignee}" if assignee.pk != actor.pk else ""
    idle = (
        f"idle shutdown after {idle_shutdown_minutes} min"
        if idle_shutdown_minutes
        else "no idle shutdown"
    )
    return _save_new(
        compute, actor, f"{actor} created instance {name} ({vm_size.name}, {idle}){on_behalf}."
    )


def environment_of(access: WorkspaceAccess, environment: Environment | None) -> Environment | None:
    """The environment a new compute runs: the workspace's own or a curated one, never
    another workspace's (404 words: it is not to be known). One not built yet is queued."""
    if environment is None:
        return None
    if environment.workspace_id not in (None, access.workspace.pk):
        raise ValidationError({"environment": "Choose an environment from the list."})
    if environment.image.can_build and not environment.image.is_failed:
        queue_build(environment.image)  # a curated one waiting for someone to ask
    return environment


def validate_cluster_bounds(min_nodes: int, max_nodes: int) -> None:
    limit = settings.HANGAR_MAX_NODES_LIMIT
    errors = {}
    if max_nodes < 1:
        errors["max_nodes"] = "Max nodes must be at least 1."
    elif max_nodes > limit:
        errors["max_nodes"] = f"Max nodes can be at most {limit} on this Hangar."
    if min_nodes > max_nodes:
        errors["min_nodes"] = f"Min nodes ({min_nodes}) cannot exceed max nodes ({max_nodes})."
    if errors:
        raise ValidationError(errors)


def create_cluster(
    access: WorkspaceAccess,
    *,
    name: str,
    vm_size: VmSize,
    tier: str = Tier.DEDICATED,
    min_nodes: int = 0,
    max_nodes: int = 1,
    idle_seconds_before_scaledown: int = 120,
    environment: Environment | None = None,
    serving: dict[str, int] | None = None,
) -> Compute:
    """`serving`: the cluster is a deployment's replicas (compute/inference), which start
    at min_nodes and run the scoring server instead of jobs."""
    require_role(access, Role.CONTRIBUTOR, "creating compute")
    validate_cluster_bounds(min_nodes, max_nodes)
    _check_size(vm_size, ComputeKind.CLUSTER)
    actor = access.membership.user
    compute = Compute(
        workspace=access.workspace,
        name=name,
        kind=ComputeKind.CLUSTER,
        vm_size=vm_size,
        created_by=actor,
        tier=tier,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        idle_seconds_before_scaledown=idle_seconds_before_scaledown,
        environment=environment_of(access, environment),
        serving=serving or {},
        replica_target=min_nodes if serving else 0,
    )
    what = "replicas" if serving else "nodes"
    return _save_new(
        compute,
        actor,
        f"{actor} created cluster {name} ({vm_size.name}, {Tier(tier).label.lower()}, "
        f"{min_nodes}–{max_nodes} {what}).",
    )


def _locked(access: WorkspaceAccess, compute_id: int) -> Compute:
    compute = (
        Compute.objects.select_for_update()
        .filter(workspace=access.workspace, pk=compute_id)
        .exclude(state=S.DELETED)
        .first()
    )
    if compute is None:
        raise ValidationError("This compute no longer exists.")
    return compute


def update_cluster(
    access: WorkspaceAccess,
    compute_id: int,
    *,
    min_nodes: int,
    max_nodes: int,
    idle_seconds_before_scaledown: int,
) -> Compute:
    require_role(access, Role.CONTRIBUTOR, "changing compute")
    validate_cluster_bounds(min_nodes, max_nodes)
    actor = access.membership.user
    with transaction.atomic():
        compute = _locked(access, compute_id)
        if not compute.is_cluster:
            raise ValidationError("Only clusters have node bounds.")
        if ComputeVerb.RESIZE not in compute.state_verbs():
            raise StateConflict(f"{compute.name} is {compute.state}; it cannot be resized now.")
        old = (compute.min_nodes, compute.max_nodes, compute.idle_seconds_before_scaledown)
        new = (min_nodes, max_nodes, idle_seconds_before_scaledown)
        if old == new:
            return compute
        Compute.objects.filter(pk=compute.pk).update(
            min_nodes=min_nodes,
            max_nodes=max_nodes,
            idle_seconds_before_scaledown=idle_seconds_before_scaledown,
            last_error="",
        )
        compute.min_nodes, compute.max_nodes = min_nodes, max_nodes
        compute.idle_seconds_before_scaledown = idle_seconds_before_scaledown
        if compute.can_move(S.RESIZING):
            compute.transition(compute.state, S.RESIZING)
        changes = []
        if old[:2] != new[:2]:
            changes.append(f"nodes {old[0]}–{old[1]} → {min_nodes}–{max_nodes}")
        if old[2] != new[2]:
            changes.append(f"idle before scale-down {old[2]} s → {new[2]} s")
        record(
            compute,
            EventVerb.COMPUTE_UPDATED,
            f"{actor} changed {', '.join(changes)}.",
            actor=actor,
        )
        enqueue.reconcile(compute.pk)
    return compute


# Instance verbs: (to state, past tense for the message, the event, role needed). The
# states each starts from are the transition table's, as for the page's buttons.
VERBS = {
    "start": (S.STARTING, "started", EventVerb.START_REQUESTED, Role.CONTRIBUTOR),
    "stop": (S.STOPPING, "stopped", EventVerb.STOP_REQUESTED, Role.CONTRIBUTOR),
    "restart": (S.RESTARTING, "restarted", EventVerb.RESTART_REQUESTED, Role.CONTRIBUTOR),
}


def instance_verb(access: WorkspaceAccess, compute_id: int, verb: str) -> Compute:
    target, past, event, role = VERBS[verb]
    require_role(
        access, role, f"{verb}ing an instance" if verb != "stop" else "stopping an instance"
    )
    actor = access.membership.user
    with transaction.atomic():
        compute = _locked(access, compute_id)
        if not compute.is_instance:
            raise ValidationError(
                f"Only compute instances can be {past}; {compute.name} is a cluster."
            )
        # The rule the page's buttons follow; the compare-and-set below settles a race.
        if verb not in compute.state_verbs():
            raise StateConflict(_refusal(compute, verb))
        if verb == "start":
            # Checked before the move: a starting instance already counts as holding cores.
            assert compute.vm_size is not None  # instances always have one
            cores = quota.check(access.workspace, compute.vm_size, 1, Tier.DEDICATED, lock=True)
            if not cores.fits:
                raise ValidationError(f"Cannot start {compute.name}: {cores.message}")
        if not compute.transition(compute.state, target):
            raise StateConflict(_refusal(compute, verb))
        if verb in ("stop", "restart"):
            Compute.objects.filter(pk=compute.pk).update(
                idle_deadline=None, idle_next_check_at=None
            )
        if verb == "restart":
            # The reconciler removes leaving nodes and brings up a fresh one.
            compute.nodes.filter(state__in=NODE_NOT_BUSY).update(state=NodeState.LEAVING)
        if verb == "start" and compute.last_error:
            Compute.objects.filter(pk=compute.pk).update(last_error="")
        record(compute, event, f"{actor} {past} {compute.name}.", actor=actor)
        enqueue.reconcile(compute.pk)
    return compute


def _refusal(compute: Compute, verb: str) -> str:
    state = compute.get_state_display().lower()
    if verb == "start" and compute.state in INSTANCE_UP:
        return f"{compute.name} is already {state}."
    if verb == "stop" and compute.state in INSTANCE_DOWN:
        return f"{compute.name} is already {state}."
    if verb == "start":
        return f"{compute.name} is {state}; only a stopped instance can be started."
    return f"{compute.name} is {state}; it cannot be {VERBS[verb][1]} now."


def delete_compute(access: WorkspaceAccess, compute_id: int) -> Compute:
    require_role(access, Role.ADMIN, "deleting compute")
    return _delete(access, compute_id)


def delete_replicas(access: WorkspaceAccess, compute_id: int) -> Compute:
    """A deployment's replicas go with it: its caller (compute/inference) checked the
    role that may remove the deployment."""
    return _delete(access, compute_id, serving=True)


def _delete(access: WorkspaceAccess, compute_id: int, serving: bool = False) -> Compute:
    actor = access.membership.user
    with transaction.atomic():
        found = Compute.objects.select_for_update().filter(
            workspace=access.workspace, pk=compute_id
        )
        # A deployment's replicas go with their deployment, never by the compute's delete
        # (nor do a batch job's nodes: they go when it ends).
        replicas = Q(serving__has_key="deployment")
        compute = (found.filter(replicas) if serving else found.exclude(INFERENCE_OWNED)).first()
        if compute is None:
            raise ValidationError("This compute no longer exists.")
        if compute.is_attached:
            raise StateConflict(f"{compute.name} is attached: detach it instead.")
        if ComputeVerb.DELETE not in compute.state_verbs():
            raise StateConflict(f"{compute.name} is already {compute.get_state_display().lower()}.")
        compute.transition(compute.state, S.DELETING)
        Node.objects.filter(compute=compute, state__in=NODE_NOT_BUSY).update(
            state=NodeState.LEAVING
        )
        record(compute, EventVerb.DELETE_REQUESTED, f"{actor} deleted {compute.name}.", actor=actor)
        enqueue.reconcile(compute.pk)
    return compute
