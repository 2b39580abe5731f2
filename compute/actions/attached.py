"""The service layer of attached computes: attach, change the connection, validate again,
detach. Contributors and admins only; secrets are encrypted before they reach a row and
never go into a task message (tasks take the compute id)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from compute import enqueue, quota
from compute.actions.errors import StateConflict
from compute.lib import secrets
from compute.models import Attachment, Compute, ComputeKind, ComputeState
from compute.models.events import EventVerb, record
from compute.rules.targets import kind_of, why_unavailable
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Role

S = ComputeState
CONNECTION_FIELDS = ("host", "port", "username", "secret_kind")


@dataclass(frozen=True)
class Connection:
    """How Hangar signs in over SSH. `secret` is the plaintext key or password, encrypted
    before it reaches a row; on an edit an empty secret keeps the stored one."""

    host: str
    port: int
    username: str
    secret_kind: str
    secret: str = field(default="", repr=False)

    @property
    def where(self) -> str:
        return f"{self.username}@{self.host}:{self.port}"


def attach(
    access: WorkspaceAccess,
    *,
    target_kind: str,
    name: str,
    max_concurrent_jobs: int,
    connection: Connection | None = None,
) -> Compute:
    """Attach a machine Hangar did not create; a worker validates it right after."""
    require_role(access, Role.CONTRIBUTOR, "attaching compute")
    kind = kind_of(target_kind)
    if kind is None:
        raise ValidationError("Choose a kind of compute to attach.")
    if not kind.runnable:
        raise ValidationError(f"{kind.label} targets are coming soon: they cannot be attached yet.")
    if kind.connects_over_ssh and connection is None:
        raise ValidationError(f"A {kind.label} is reached over SSH: give its address and key.")
    actor = access.membership.user
    refused = why_unavailable(kind, actor)
    if refused:
        raise PermissionDenied(refused)
    compute = Compute(
        workspace=access.workspace,
        name=name,
        kind=ComputeKind.ATTACHED,
        created_by=actor,
        max_nodes=1,
    )
    compute.full_clean(exclude=["vm_size"])
    reached = connection if kind.connects_over_ssh else None
    try:
        with transaction.atomic():
            quota.ensure_room_for_a_compute(access.workspace)
            compute.save()
            attachment = Attachment(
                compute=compute, target_kind=kind.key, max_concurrent_jobs=max_concurrent_jobs
            )
            if reached is not None:
                for column in CONNECTION_FIELDS:
                    setattr(attachment, column, getattr(reached, column))
                attachment.secret = secrets.encrypt(reached.secret)
            attachment.save()
            where = f" ({reached.where})" if reached else ""
            record(
                compute,
                EventVerb.ATTACHED,
                f"{actor} attached {kind.label} {compute.name}{where}; validating.",
                actor=actor,
            )
            enqueue.reconcile(compute.pk)
    except IntegrityError:
        raise ValidationError({"name": "A compute with this name already exists here."}) from None
    return compute


def _attached(access: WorkspaceAccess, compute_id: int) -> Compute:
    compute = (
        Compute.objects.select_for_update()
        .filter(workspace=access.workspace, pk=compute_id, kind=ComputeKind.ATTACHED)
        .exclude(state=S.DELETED)
        .first()
    )
    if compute is None:
        raise ValidationError("This attached compute no longer exists.")
    return compute


def update_connection(
    access: WorkspaceAccess,
    compute_id: int,
    *,
    max_concurrent_jobs: int,
    connection: Connection | None = None,
    forget_host_key: bool = False,
) -> Compute:
    """Change how Hangar reaches the target; a changed connection is validated again."""
    require_role(access, Role.CONTRIBUTOR, "changing compute")
    actor = access.membership.user
    with transaction.atomic():
        compute = _attached(access, compute_id)
        if compute.state == S.DELETING:
            raise StateConflict(f"{compute.name} is being detached.")
        attachment = Attachment.objects.select_for_update().get(pk=compute.pk)
        changed = []
        if attachment.uses_ssh and connection is not None:
            for column in CONNECTION_FIELDS:
                if getattr(attachment, column) != getattr(connection, column):
                    setattr(attachment, column, getattr(connection, column))
                    changed.append(column)
            if connection.secret:
                attachment.secret = secrets.encrypt(connection.secret)
                changed.append("secret")
        if forget_host_key and attachment.host_key:
            attachment.host_key = ""
            changed.append("pinned host key (forgotten)")
        reconnects = bool(changed)  # anything above means: validate again
        if attachment.max_concurrent_jobs != max_concurrent_jobs:
            attachment.max_concurrent_jobs = max_concurrent_jobs
            changed.append("jobs at once")
        attachment.save()
        what = ", ".join(changed) or "nothing"
        record(compute, EventVerb.ATTACHMENT_UPDATED, f"{actor} changed {what}.", actor=actor)
        if reconnects:
            _validate_again(compute)
        enqueue.reconcile(compute.pk)
    return compute


def revalidate(access: WorkspaceAccess, compute_id: int) -> Compute:
    """Retry after an error, or look again at a ready target's facts."""
    require_role(access, Role.CONTRIBUTOR, "validating compute")
    actor = access.membership.user
    with transaction.atomic():
        compute = _attached(access, compute_id)
        if not compute.can_move(S.CREATING):  # validating already, or detaching
            raise StateConflict(f"{compute.name} is already {compute.state_label.lower()}.")
        _validate_again(compute)
        record(
            compute,
            EventVerb.VALIDATION_REQUESTED,
            f"{actor} asked to validate again.",
            actor=actor,
        )
        enqueue.reconcile(compute.pk)
    return compute


def _validate_again(compute: Compute) -> None:
    if compute.state != S.CREATING:
        compute.transition(compute.state, S.CREATING, last_error="")


def detach(access: WorkspaceAccess, compute_id: int) -> Compute:
    """Remove the target from the workspace: Hangar stops its own jobs there and forgets
    the credentials; the machine itself is left as it is."""
    require_role(access, Role.CONTRIBUTOR, "detaching compute")
    actor = access.membership.user
    with transaction.atomic():
        compute = _attached(access, compute_id)
        if compute.state == S.DELETING:
            raise StateConflict(f"{compute.name} is already being detached.")
        compute.transition(compute.state, S.DELETING)
        record(
            compute, EventVerb.DETACH_REQUESTED, f"{actor} detached {compute.name}.", actor=actor
        )
        enqueue.reconcile(compute.pk)
    return compute
