"""Invitations: how someone becomes a member (issue 12, point 4).

Adding a member only offers a role; the invitee accepts or declines. The inviter's answer
never depends on whether the username or email belongs to an account: both paths do the
same queries and write the same rows, except the invitee's inbox entry (and its email after
commit), which only an existing account can receive.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from workspace.access import WorkspaceAccess, require_role
from workspace.actions.workspaces import record
from workspace.models import Activity, Invitation, InvitationState, Membership, Role
from workspace.notify import notify

State = InvitationState

REFUSALS = {
    State.ACCEPTED: "This invitation was already accepted.",
    State.DECLINED: "This invitation was declined.",
    State.REVOKED: "This invitation was revoked by an admin of the workspace.",
    State.EXPIRED: "This invitation has expired; ask an admin of the workspace for a new one.",
}


def clean_identifier(identifier: str) -> str:
    """A syntactically valid username or email address, else the same error for everyone."""
    identifier = identifier.strip()
    for validate in (UnicodeUsernameValidator(), validate_email):
        try:
            validate(identifier)
        except ValidationError:
            continue
        return identifier
    raise ValidationError("Enter a valid username or email address.")


def resolve_invitee(identifier: str) -> User | None:
    """The active account with this username, or the one account with this email; else None.

    An email shared by several accounts matches nobody: guessing could invite the wrong one.
    """
    matches = list(
        get_user_model().objects.filter(
            Q(username__iexact=identifier) | Q(email__iexact=identifier), is_active=True
        )[:2]
    )
    by_username = [user for user in matches if user.username.lower() == identifier.lower()]
    if by_username:
        return by_username[0]
    return matches[0] if len(matches) == 1 else None


def invite_member(access: WorkspaceAccess, *, identifier: str, role: str) -> Invitation | None:
    """Offer `role` to whoever `identifier` names. None when one is already pending.

    Refuses (ValidationError) only what the admin can already see: a current member.
    """
    require_role(access, Role.ADMIN, "adding members")
    role = Role(role)
    identifier = clean_identifier(identifier)
    workspace, actor = access.workspace, access.membership.user
    invitee = resolve_invitee(identifier)
    # The same query runs with or without an account (user_id IS NULL matches no row).
    member = Membership.objects.filter(  # type: ignore[misc]  # user_id=None on purpose: see above
        workspace=workspace, user_id=invitee.pk if invitee else None
    ).exists()
    if member:
        raise ValidationError(f"{identifier} is already a member of {workspace.name}.")
    now = timezone.now()
    try:
        with transaction.atomic():
            # An expired invitation no longer blocks a new one (the pending-unique constraint).
            Invitation.objects.filter(
                workspace=workspace,
                identifier__iexact=identifier,
                state=State.PENDING,
                expires_at__lte=now,
            ).update(state=State.EXPIRED)
            invitation = Invitation.objects.create(
                workspace=workspace,
                identifier=identifier,
                invitee=invitee,
                role=role,
                invited_by=actor,
                expires_at=now + timedelta(days=settings.HANGAR_INVITATION_DAYS),
            )
            record(
                workspace,
                actor,
                Activity.Verb.MEMBER_INVITED,
                f"{actor} invited {identifier} as {role.label.lower()}",
            )
            if invitee is not None:
                tell_invitee(invitation)
    except IntegrityError:
        # Already pending for this name: the admin gets the same answer as the first time.
        return None
    return invitation


def tell_invitee(invitation: Invitation) -> None:
    """The bell entry with one-click buttons, and (after commit) an email with the links."""
    workspace, role = invitation.workspace, Role(invitation.role)
    assert invitation.invitee is not None  # told only when the invitee has an account
    accept = reverse("invitation-accept", args=[invitation.pk])
    decline = reverse("invitation-decline", args=[invitation.pk])
    days = settings.HANGAR_INVITATION_DAYS
    notify(
        invitation.invitee,
        title=f"{invitation.invited_by} invited you to {workspace.name} as {role.label.lower()}",
        body=(
            f"{Role.describe(role)} You are not a member until you accept; "
            f"the invitation expires in {days} days."
        ),
        url=reverse("invitations"),
        actions=[
            # In an email a link is a GET: it opens a page with the buttons (POST, CSRF).
            {"label": "Accept", "url": accept, "method": "post"},
            {"label": "Decline", "url": decline, "method": "post"},
        ],
        email_on_commit=True,
    )


def pending_for(user: User) -> QuerySet[Invitation]:
    return Invitation.objects.filter(invitee_id=user.pk, state=State.PENDING).select_related(
        "workspace", "invited_by"
    )


def mine(user: User, invitation_id: int) -> Invitation:
    """The user's own invitation; anyone else's does not exist for them (404 in the views)."""
    invitation = (
        Invitation.objects.select_related("workspace", "invited_by")
        .filter(pk=invitation_id, invitee_id=user.pk)
        .first()
    )
    if invitation is None:
        raise Http404("No such invitation.")
    return invitation


def refuse(invitation: Invitation) -> ValidationError:
    """Why a pending-only transition did not happen, moving a lapsed one to EXPIRED."""
    current = Invitation.objects.get(pk=invitation.pk)
    if current.effective_state == State.EXPIRED:
        Invitation.objects.filter(pk=current.pk, state=State.PENDING).update(state=State.EXPIRED)
        return ValidationError(REFUSALS[State.EXPIRED])
    return ValidationError(REFUSALS[State(current.state)])


def accept(user: User, invitation_id: int) -> Membership:
    """Become a member with the invitation's role: once, only while pending and unexpired."""
    invitation = mine(user, invitation_id)
    now = timezone.now()
    with transaction.atomic():
        # Two tabs accepting at once: the row lock makes the second see ACCEPTED and update 0.
        taken = Invitation.objects.filter(
            pk=invitation.pk, state=State.PENDING, expires_at__gt=now
        ).update(state=State.ACCEPTED, responded_at=now)
        if taken:
            membership = join(user, invitation, now)
    if not taken:
        raise refuse(invitation)  # outside the transaction: marking it expired must stick
    return membership


def join(user: User, invitation: Invitation, now: datetime) -> Membership:
    """The membership an accepted invitation grants; runs inside accept's transaction."""
    workspace = invitation.workspace
    try:
        with transaction.atomic():
            membership = Membership.objects.create(
                workspace=workspace, user=user, role=invitation.role, added_by=invitation.invited_by
            )
    except IntegrityError:
        # Raising rolls the acceptance back too: nothing changes.
        raise ValidationError(f"You are already a member of {workspace.name}.") from None
    # Other invitations to the same workspace (under another name) are fulfilled now.
    Invitation.objects.filter(workspace=workspace, invitee_id=user.pk, state=State.PENDING).update(
        state=State.ACCEPTED, responded_at=now
    )
    role = Role(invitation.role).label.lower()
    inviter = f" (invited by {invitation.invited_by})" if invitation.invited_by else ""
    record(workspace, user, Activity.Verb.MEMBER_JOINED, f"{user} joined as {role}{inviter}")
    return membership


def decline(user: User, invitation_id: int) -> Invitation:
    invitation = mine(user, invitation_id)
    declined = Invitation.objects.filter(pk=invitation.pk, state=State.PENDING).update(
        state=State.DECLINED, responded_at=timezone.now()
    )
    if not declined:
        raise refuse(invitation)
    return invitation


def revoke(access: WorkspaceAccess, invitation_id: int) -> Invitation:
    require_role(access, Role.ADMIN, "revoking invitations")
    invitation = Invitation.objects.filter(workspace=access.workspace, pk=invitation_id).first()
    if invitation is None:
        raise ValidationError("That invitation no longer exists.")
    actor = access.membership.user
    with transaction.atomic():
        revoked = Invitation.objects.filter(pk=invitation.pk, state=State.PENDING).update(
            state=State.REVOKED, responded_at=timezone.now()
        )
        if not revoked:
            raise ValidationError(
                f"The invitation to {invitation.identifier} is no longer pending."
            )
        record(
            access.workspace,
            actor,
            Activity.Verb.INVITATION_REVOKED,
            f"{actor} revoked the invitation to {invitation.identifier}",
        )
    return invitation
