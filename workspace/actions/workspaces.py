"""Service layer for workspaces: one function per user-visible operation.

Each checks the actor's role, validates, changes state inside one transaction and writes
an Activity row, so the log and the state can never disagree. Nobody is added to a workspace
here: people join by accepting an invitation (workspace/actions/invitations.py).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from workspace.access import WorkspaceAccess, require_role
from workspace.models import IDLE_POLICY_FIELDS, Activity, Membership, Role, Workspace


def record(workspace: Workspace, actor: User | None, verb: Activity.Verb, message: str) -> None:
    # Activity.Verb(verb) raises for a verb outside the vocabulary, as compute's record does.
    Activity.objects.create(
        workspace=workspace, actor=actor, verb=Activity.Verb(verb), message=message
    )


CREATE_PERMISSION = "workspace.add_workspace"
NOT_A_CREATOR = (
    "Creating workspaces is for site staff in the “Workspace creators” group. "
    "Ask a site admin to create one for your team, or to invite you to one."
)


def can_create_workspaces(user: User) -> bool:
    return user.is_authenticated and user.has_perm(CREATE_PERMISSION)


def create_workspace(user: User, *, name: str, slug: str, description: str = "") -> Workspace:
    """Create a workspace; its creator becomes its first admin. A site power: it needs the
    `workspace.add_workspace` permission, and even then HANGAR_MAX_WORKSPACES_PER_USER."""
    if not can_create_workspaces(user):
        raise PermissionDenied(NOT_A_CREATOR)
    workspace = Workspace(name=name, slug=slug, description=description, created_by=user)
    workspace.full_clean()
    try:
        with transaction.atomic():
            # The user's row is the lock: two tabs at the cap cannot both get past it.
            get_user_model().objects.select_for_update().filter(pk=user.pk).first()
            made = Workspace.objects.filter(created_by=user).count()
            cap = settings.HANGAR_MAX_WORKSPACES_PER_USER
            if made >= cap:
                raise ValidationError(
                    f"You have created {made} workspaces, the most one person may "
                    f"(HANGAR_MAX_WORKSPACES_PER_USER={cap}). Ask a site admin for more."
                )
            workspace.save()
            Membership.objects.create(
                workspace=workspace, user=user, role=Role.ADMIN, added_by=user
            )
            record(workspace, user, Activity.Verb.WORKSPACE_CREATED, f"{user} created {name}")
    except IntegrityError:
        # Two tabs submitting the same name at once: the loser gets the form error.
        raise ValidationError({"slug": "A workspace with this name or slug already exists."})
    return workspace


def update_workspace(access: WorkspaceAccess, *, name: str, description: str) -> Workspace:
    require_role(access, Role.ADMIN, "changing the workspace settings")
    workspace = Workspace.objects.get(pk=access.workspace.pk)
    changes = []
    if workspace.name != name:
        changes.append(f"renamed it from {workspace.name} to {name}")
    if workspace.description != description:
        changes.append("changed the description")
    if not changes:
        return workspace
    workspace.name, workspace.description = name, description
    workspace.full_clean()
    try:
        with transaction.atomic():
            workspace.save(update_fields=["name", "description"])
            record(
                workspace,
                access.membership.user,
                Activity.Verb.WORKSPACE_UPDATED,
                f"{access.membership.user} {' and '.join(changes)}",
            )
    except IntegrityError:
        raise ValidationError({"name": "Another workspace already has this name."})
    return workspace


def _lock_admins(access: WorkspaceAccess, *, actor_must_be_admin: bool = True) -> list[int]:
    """Lock the workspace's admin rows so two admins cannot demote each other at once.

    The actor's role was read before the lock; re-check it under the lock, so an admin
    demoted a moment ago by another tab cannot act on the stale page.
    """
    admins = list(
        Membership.objects.select_for_update()
        .filter(workspace=access.workspace, role=Role.ADMIN)
        .values_list("pk", flat=True)
    )
    if actor_must_be_admin and access.membership.pk not in admins:
        raise ValidationError(f"You are no longer an admin of {access.workspace.name}.")
    return admins


def change_role(access: WorkspaceAccess, *, membership_id: int, role: str) -> Membership:
    require_role(access, Role.ADMIN, "changing roles")
    role = Role(role)
    actor = access.membership.user
    with transaction.atomic():
        admins = _lock_admins(access)
        membership = (
            Membership.objects.select_related("user")
            .filter(workspace=access.workspace, pk=membership_id)
            .first()
        )
        if membership is None:
            raise ValidationError("That person is no longer a member.")
        if membership.role == role:
            return membership
        if membership.pk in admins and len(admins) == 1:
            raise ValidationError(
                f"{membership.user} is the last admin of {access.workspace.name}; "
                "make someone else an admin first."
            )
        old = Role(membership.role)
        updated = Membership.objects.filter(pk=membership.pk, role=old).update(role=role)
        if not updated:
            raise ValidationError(f"{membership.user}'s role changed meanwhile; try again.")
        record(
            access.workspace,
            actor,
            Activity.Verb.MEMBER_ROLE_CHANGED,
            f"{actor} changed {membership.user} from {old.label.lower()} to {role.label.lower()}",
        )
    membership.role = role
    return membership


def remove_member(access: WorkspaceAccess, *, membership_id: int) -> Membership:
    """Admins remove anyone; any member may remove themselves (leave)."""
    actor = access.membership.user
    leaving = membership_id == access.membership.pk
    if not leaving:
        require_role(access, Role.ADMIN, "removing members")
    with transaction.atomic():
        admins = _lock_admins(access, actor_must_be_admin=not leaving)
        membership = (
            Membership.objects.select_related("user")
            .filter(workspace=access.workspace, pk=membership_id)
            .first()
        )
        if membership is None:
            raise ValidationError("That person is no longer a member.")
        if membership.pk in admins and len(admins) == 1:
            raise ValidationError(
                f"{membership.user} is the last admin of {access.workspace.name}; "
                "make someone else an admin first."
            )
        membership.delete()
        if membership.user_id == actor.pk:
            message = f"{actor} left the workspace"
        else:
            message = f"{actor} removed {membership.user}"
        record(access.workspace, actor, Activity.Verb.MEMBER_REMOVED, message)
    return membership


def update_idle_policy(access: WorkspaceAccess, **values: object) -> Workspace:
    """Admins set the idle-shutdown policy; the form has validated the values."""
    require_role(access, Role.ADMIN, "changing the idle-shutdown policy")
    workspace = Workspace.objects.get(pk=access.workspace.pk)
    changed = [f for f in IDLE_POLICY_FIELDS if getattr(workspace, f) != values[f]]
    if not changed:
        return workspace
    for field in changed:
        setattr(workspace, field, values[field])
    with transaction.atomic():
        workspace.save(update_fields=changed)
        actor = access.membership.user
        summary = ", ".join(f"{f.replace('_', ' ')} → {values[f]}" for f in changed)
        record(
            workspace,
            actor,
            Activity.Verb.IDLE_POLICY_CHANGED,
            f"{actor} set the idle policy: {summary}",
        )
    return workspace


def update_node_placement(access: WorkspaceAccess, *, node_placement: str) -> Workspace:
    """Admins choose where the workspace's new nodes go among the node hosts."""
    require_role(access, Role.ADMIN, "changing where new nodes are placed")
    choices = dict(Workspace._meta.get_field("node_placement").choices or [])
    if node_placement not in choices:
        raise ValidationError({"node_placement": "Choose binpack or spread."})
    workspace = Workspace.objects.get(pk=access.workspace.pk)
    if workspace.node_placement == node_placement:
        return workspace
    with transaction.atomic():
        Workspace.objects.filter(pk=workspace.pk).update(node_placement=node_placement)
        workspace.node_placement = node_placement
        actor = access.membership.user
        record(
            workspace,
            actor,
            Activity.Verb.WORKSPACE_UPDATED,
            f"{actor} set node placement to {choices[node_placement]}",
        )
    return workspace
