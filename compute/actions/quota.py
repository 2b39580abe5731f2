"""Quota requests and decisions, and workspace admins lowering their own limits."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from compute import quota
from compute.models import FamilyQuota, QuotaRequest, RequestStatus, VmFamily, WorkspaceQuota
from workspace.access import WorkspaceAccess, require_role
from workspace.actions.workspaces import record as record_activity
from workspace.models import Activity, Role
from workspace.notify import notify

MAX_REQUEST = 100_000


def request_quota(
    access: WorkspaceAccess, *, family: VmFamily | None, cores: int, justification: str
) -> QuotaRequest:
    require_role(access, Role.CONTRIBUTOR, "requesting quota")
    justification = justification.strip()
    if not justification:
        raise ValidationError({"justification": "Say what the cores are for."})
    if not 1 <= cores <= MAX_REQUEST:
        raise ValidationError({"cores": f"Ask for 1 to {MAX_REQUEST} cores."})
    workspace, actor = access.workspace, access.membership.user
    current = (
        quota.family_row(workspace, family).approved
        if family
        else quota.pool_row(workspace).low_priority_approved
    )
    if cores <= current:
        raise ValidationError({"cores": f"The limit is already {current}; ask for more."})
    with transaction.atomic():
        made = QuotaRequest.objects.create(
            workspace=workspace,
            family=family,
            requested_limit=cores,
            justification=justification,
            requested_by=actor,
        )
        record_activity(
            workspace,
            actor,
            Activity.Verb.QUOTA_REQUESTED,
            f"{actor} requested {cores} {made.target} (now {current})",
        )
    return made


DECIDE_PERMISSION = "compute.decide_quotarequest"
NOT_AN_APPROVER = (
    "Deciding quota is for site staff in the “Quota approvers” group "
    "(permission compute.decide_quotarequest)."
)


def can_decide(user: User) -> bool:
    return user.is_authenticated and user.is_staff and user.has_perm(DECIDE_PERMISSION)


def check_not_own(made: QuotaRequest, admin: User) -> None:
    if made.requested_by_id == admin.pk and not settings.HANGAR_ALLOW_SELF_APPROVAL:
        raise ValidationError(
            f"You asked for request #{made.pk} yourself: another approver must decide it."
        )


def decide(request_id: int, *, approve: bool, admin: User, reason: str) -> QuotaRequest:
    """A quota approver's decision: once only, never on their own request; an approval
    raises the limit in the same transaction; the requester hears about it either way."""
    if not can_decide(admin):
        raise PermissionDenied(NOT_AN_APPROVER)
    reason = reason.strip()
    if not approve and not reason:
        raise ValidationError("Give the requester a reason for the rejection.")
    status = RequestStatus.APPROVED if approve else RequestStatus.REJECTED
    with transaction.atomic():
        made = QuotaRequest.objects.select_related("workspace", "family", "requested_by").get(
            pk=request_id
        )
        check_not_own(made, admin)
        decided = QuotaRequest.objects.filter(pk=request_id, status=RequestStatus.PENDING).update(
            status=status, decided_by=admin, decided_at=timezone.now(), reason=reason
        )
        made.refresh_from_db()
        if not decided:
            raise ValidationError(f"Request #{made.pk} was already {made.status}.")
        if approve:
            raise_limit(made)
        verb = "approved" if approve else "rejected"
        record_activity(
            made.workspace,
            admin,
            Activity.Verb.QUOTA_APPROVED if approve else Activity.Verb.QUOTA_REJECTED,
            f"{admin} {verb} the request for {made.requested_limit} {made.target}"
            + (f": {reason}" if reason else ""),
        )
    if made.requested_by:
        url = reverse("compute:quota", args=[made.workspace.slug])
        notify(
            made.requested_by,
            workspace=made.workspace,
            title=f"Quota request {verb}: {made.requested_limit} {made.target}",
            body=(reason or "") + ("" if not approve else " The new limit applies now."),
            url=url,
        )
    return made


def raise_limit(made: QuotaRequest) -> None:
    if made.family is not None:
        row = quota.family_row(made.workspace, made.family, lock=True)
        FamilyQuota.objects.filter(pk=row.pk).update(
            limit=made.requested_limit, approved=made.requested_limit
        )
    else:
        pool = quota.pool_row(made.workspace, lock=True)
        WorkspaceQuota.objects.filter(pk=pool.pk).update(
            low_priority_limit=made.requested_limit, low_priority_approved=made.requested_limit
        )


def lower_limit(access: WorkspaceAccess, family: VmFamily, limit: int) -> FamilyQuota:
    """Workspace admins may cap a family below what was approved, never above it."""
    require_role(access, Role.ADMIN, "changing quota limits")
    with transaction.atomic():
        row = quota.family_row(access.workspace, family, lock=True)
        if not 0 <= limit <= row.approved:
            raise ValidationError(
                f"Choose 0 to {row.approved} {family.name} cores: more needs an approved request."
            )
        FamilyQuota.objects.filter(pk=row.pk).update(limit=limit)
        actor = access.membership.user
        record_activity(
            access.workspace,
            actor,
            Activity.Verb.QUOTA_CHANGED,
            f"{actor} set the {family.name} limit to {limit} cores (approved {row.approved})",
        )
    row.limit = limit
    return row


def set_quota(admin: User, row: FamilyQuota | WorkspaceQuota, changes: dict[str, int]) -> None:
    """A quota approver editing a quota row in the Django admin: the same power as a
    decision, so the same permission, and the change lands in the workspace's log."""
    if not can_decide(admin):
        raise PermissionDenied(NOT_AN_APPROVER)
    model = type(row)
    with transaction.atomic():
        before = model.objects.select_for_update().get(pk=row.pk)
        changed = {f: v for f, v in changes.items() if getattr(before, f) != v}
        if not changed:
            return
        if any(value < 0 for value in changed.values()):
            raise ValidationError("Quota limits are 0 or more.")
        model.objects.filter(pk=row.pk).update(**changed)
        what = ", ".join(
            f"{f.replace('_', ' ')} {getattr(before, f)} → {v}" for f, v in changed.items()
        )
        target = (
            f"{before.family.name} cores" if isinstance(before, FamilyQuota) else "workspace quota"
        )
        record_activity(
            before.workspace,
            admin,
            Activity.Verb.QUOTA_CHANGED,
            f"{admin} changed the {target} in the site admin: {what}",
        )
