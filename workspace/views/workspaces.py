"""Workspace pages. Every view resolves the workspace through workspace.access."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view, workspaces_for
from workspace.actions import invitations as invitation_actions
from workspace.actions import workspaces as actions
from workspace.forms import (
    AddMemberForm,
    ChangeRoleForm,
    IdlePolicyForm,
    NodePlacementForm,
    WorkspaceCreateForm,
    WorkspaceSettingsForm,
)
from workspace.models import IDLE_POLICY_FIELDS, InvitationState, Membership, Notification, Role
from workspace.redirects import local_target
from workspace.views.htmx import render_htmx

ACTIVITY_PAGE_SIZE = 25


def report(request: AuthedRequest, error: ValidationError) -> None:
    for message in error.messages:
        messages.error(request, message)


@login_required
def workspace_list(request: AuthedRequest) -> HttpResponse:
    # One query: every member counted (not only the viewer), and the viewer's own role.
    own_role = Membership.objects.filter(workspace=OuterRef("pk"), user=request.user)
    workspaces = (
        workspaces_for(request.user)
        .annotate(
            member_count=Count("memberships", distinct=True),
            own_role=Subquery(own_role.values("role")[:1]),
        )
        .order_by("name")
    )
    rows = [(workspace, Role(workspace.own_role)) for workspace in workspaces]
    return render(request, "workspace/list.html", {"rows": rows})


@login_required
def workspace_create(request: AuthedRequest) -> HttpResponse:
    if not actions.can_create_workspaces(request.user):
        raise PermissionDenied(actions.NOT_A_CREATOR)
    form = WorkspaceCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            workspace = actions.create_workspace(request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Created {workspace.name}. You are its admin.")
            return redirect(workspace)
    return render(request, "workspace/create.html", {"form": form})


@workspace_view()
def overview(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    workspace = access.workspace
    role_counts = dict(
        workspace.memberships.values_list("role").annotate(n=Count("id")).values_list("role", "n")
    )
    activity = workspace.activity.select_related("actor")[:15]
    return render(
        request,
        "workspace/overview.html",
        {
            "nav": "overview",
            "access": access,
            "workspace": workspace,
            "role_counts": [(Role(r).label, role_counts.get(r, 0)) for r in reversed(Role.values)],
            "member_total": sum(role_counts.values()),
            "activity": activity,
            "role_description": Role.describe(access.role),
        },
    )


@workspace_view()
def activity(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    paginator = Paginator(access.workspace.activity.select_related("actor"), ACTIVITY_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return render(
        request,
        "workspace/activity.html",
        {"access": access, "workspace": access.workspace, "page": page},
    )


@workspace_view(Role.ADMIN, "changing the workspace settings")
def workspace_settings(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    posted_policy = request.method == "POST" and "idle_min_minutes" in request.POST
    posted_placement = request.method == "POST" and "node_placement" in request.POST
    form = WorkspaceSettingsForm(
        None if posted_policy or posted_placement else request.POST or None,
        instance=access.workspace,
    )
    policy = IdlePolicyForm(request.POST if posted_policy else None, instance=access.workspace)
    placement = NodePlacementForm(
        request.POST if posted_placement else None, instance=access.workspace
    )
    if posted_placement:
        if placement.is_valid():
            actions.update_node_placement(
                access, node_placement=placement.cleaned_data["node_placement"]
            )
            messages.success(request, "Node placement saved.")
            return redirect("workspace:settings", access.workspace.slug)
        access.workspace.refresh_from_db()  # the ModelForm wrote the bad value onto it
    if posted_policy and policy.is_valid():
        actions.update_idle_policy(
            access, **{f: policy.cleaned_data[f] for f in IDLE_POLICY_FIELDS}
        )
        messages.success(request, "Idle-shutdown policy saved.")
        return redirect("workspace:settings", access.workspace.slug)
    if posted_policy:
        access.workspace.refresh_from_db()  # the ModelForm wrote bad values onto it
    if request.method == "POST" and not (posted_policy or posted_placement) and form.is_valid():
        try:
            actions.update_workspace(access, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, "Workspace settings saved.")
            return redirect("workspace:overview", access.workspace.slug)
    return render(
        request,
        "workspace/settings.html",
        {
            "access": access,
            "workspace": access.workspace,
            "form": form,
            "policy": policy,
            "placement": placement,
        },
    )


def members_page(
    request: AuthedRequest, access: WorkspaceAccess, add_form: AddMemberForm | None = None
) -> HttpResponse:
    """The members page, or only its table when htmx asked (one view, two renders)."""
    memberships = access.workspace.memberships.select_related("user", "added_by").order_by(
        "user__username"
    )
    admin_count = sum(1 for m in memberships if m.role == Role.ADMIN)
    invitations = (
        access.workspace.invitations.filter(state=InvitationState.PENDING)
        .select_related("invited_by")
        .order_by("-created_at")
        if access.is_admin
        else []
    )
    return render_htmx(
        request,
        "workspace/members.html",
        {
            "nav": "members",
            "access": access,
            "workspace": access.workspace,
            "memberships": memberships,
            "admin_count": admin_count,
            "invitations": invitations,
            "invitation_days": settings.HANGAR_INVITATION_DAYS,
            "add_form": add_form or AddMemberForm(),
            "roles": [(Role(r), Role.describe(r)) for r in reversed(Role.values)],
            "role_choices": Role.choices,
        },
        partial="members-panel",
        messages=True,
    )


@workspace_view()
def members(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    return members_page(request, access)


def after_member_change(
    request: AuthedRequest, access: WorkspaceAccess, add_form: AddMemberForm | None = None
) -> HttpResponse:
    if request.htmx:
        return members_page(request, access, add_form)
    if add_form is not None and add_form.errors:
        return members_page(request, access, add_form)
    return redirect("workspace:members", access.workspace.slug)


@workspace_view(Role.ADMIN, "adding members")
@require_POST
def member_add(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    """Invite: the answer is the same whether or not the name belongs to an account."""
    form = AddMemberForm(request.POST)
    if form.is_valid():
        try:
            invitation_actions.invite_member(access, **form.cleaned_data)
        except ValidationError as error:
            form.add_error("identifier", error)
        else:
            messages.success(request, f"Invitation sent to {form.cleaned_data['identifier']}.")
            form = AddMemberForm()
    return after_member_change(request, access, form)


@workspace_view(Role.ADMIN, "changing roles")
@require_POST
def member_role(
    request: AuthedRequest, access: WorkspaceAccess, membership_id: int
) -> HttpResponse:
    form = ChangeRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles: admin, contributor or reader.")
        return after_member_change(request, access)
    try:
        membership = actions.change_role(access, membership_id=membership_id, **form.cleaned_data)
    except ValidationError as error:
        report(request, error)
    else:
        messages.success(
            request, f"{membership.user} is now {Role(membership.role).label.lower()}."
        )
    return after_member_change(request, access)


@workspace_view(Role.READER, "leaving")
@require_POST
def member_remove(
    request: AuthedRequest, access: WorkspaceAccess, membership_id: int
) -> HttpResponse:
    try:
        removed = actions.remove_member(access, membership_id=membership_id)
    except ValidationError as error:
        report(request, error)
        return after_member_change(request, access)
    if removed.user_id == request.user.pk:
        messages.success(request, f"You left {access.workspace.name}.")
        target = reverse("workspace:list")
        # The panel htmx would swap is no longer theirs to see: the browser goes to the list.
        return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    messages.success(request, f"Removed {removed.user} from {access.workspace.name}.")
    return after_member_change(request, access)


@login_required
def notifications(request: AuthedRequest) -> HttpResponse:
    inbox = Notification.objects.filter(user=request.user).select_related("workspace")
    page = Paginator(inbox, 30).get_page(request.GET.get("page"))
    return render(request, "workspace/notifications.html", {"page": page, "nav": "notifications"})


@login_required
@require_POST
def notifications_read(request: AuthedRequest) -> HttpResponse:
    """Mark one (id given) or all of the user's notifications read."""
    unread = Notification.objects.filter(user=request.user, read_at__isnull=True)
    if request.POST.get("id", "").isdigit():
        unread = unread.filter(pk=int(request.POST["id"]))
    unread.update(read_at=timezone.now())
    return redirect(local_target(request, request.POST.get("next", ""), reverse("notifications")))
