"""Invitation pages: the invitee's inbox of invitations, accept and decline; an admin's revoke.

An invitation is reachable only by its invitee: anyone else's answers 404, like a workspace
the user is not a member of.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view
from workspace.actions import invitations as invitation_actions
from workspace.models import Invitation, InvitationState, Notification, Role
from workspace.views.workspaces import after_member_change, report

EARLIER_SHOWN = 10


@login_required
def invitations(request: AuthedRequest) -> HttpResponse:
    earlier = (
        Invitation.objects.filter(invitee_id=request.user.pk)
        .exclude(state=InvitationState.PENDING)
        .select_related("workspace", "invited_by")
        .order_by("-responded_at", "-id")[:EARLIER_SHOWN]
    )
    return render(
        request,
        "workspace/invitations.html",
        {
            "nav": "invitations",
            "pending": invitation_actions.pending_for(request.user).order_by("-created_at"),
            "earlier": earlier,
        },
    )


def read_notification(request: AuthedRequest) -> None:
    """Acting on an invitation from the bell reads that notification."""
    note = request.POST.get("notification", "")
    if note.isdigit():
        Notification.objects.filter(user=request.user, pk=int(note)).update(read_at=timezone.now())


def show(request: AuthedRequest, invitation_id: int) -> HttpResponse:
    """The page an emailed link opens: the invitation and its buttons (a GET never acts)."""
    invitation = invitation_actions.mine(request.user, invitation_id)
    return render(
        request,
        "workspace/invitation.html",
        {"invitation": invitation, "role_description": Role.describe(invitation.role)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def invitation_accept(request: AuthedRequest, invitation_id: int) -> HttpResponse:
    if request.method == "GET":
        return show(request, invitation_id)
    try:
        membership = invitation_actions.accept(request.user, invitation_id)
    except ValidationError as error:
        report(request, error)
        return redirect("invitations")
    read_notification(request)
    workspace = membership.workspace
    messages.success(
        request, f"You joined {workspace.name} as {Role(membership.role).label.lower()}."
    )
    return redirect(workspace)


@login_required
@require_http_methods(["GET", "POST"])
def invitation_decline(request: AuthedRequest, invitation_id: int) -> HttpResponse:
    if request.method == "GET":
        return show(request, invitation_id)
    try:
        invitation = invitation_actions.decline(request.user, invitation_id)
    except ValidationError as error:
        report(request, error)
    else:
        read_notification(request)
        messages.info(request, f"You declined the invitation to {invitation.workspace.name}.")
    return redirect("invitations")


@workspace_view(Role.ADMIN, "revoking invitations")
@require_POST
def invitation_revoke(
    request: AuthedRequest, access: WorkspaceAccess, invitation_id: int
) -> HttpResponse:
    try:
        invitation = invitation_actions.revoke(access, invitation_id)
    except ValidationError as error:
        report(request, error)
    else:
        messages.success(request, f"Revoked the invitation to {invitation.identifier}.")
    return after_member_change(request, access)
