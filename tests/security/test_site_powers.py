"""Site powers belong to site staff with the matching permission, never to a workspace role
or to being staff alone. Each test is the attack that worked before: any user making
workspaces (quota multiplies with them), an unbounded queue, a staff user with no
permission approving quota, a requester approving their own request."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from compute import quota
from compute.actions.quota import decide, request_quota
from compute.models import (
    FamilyQuota,
    Job,
    QuotaRequest,
    RequestStatus,
    VmFamily,
)
from tests.integration.helpers import run_together
from tests.support.factories import UserFactory
from tests.support.teams import join_group, make_team
from workspace.access import get_access
from workspace.actions import workspaces as actions
from workspace.models import Activity, Workspace

CREATE = reverse("workspace:create")
CHANGELIST = reverse("admin:compute_quotarequest_changelist")


@pytest.mark.django_db
def test_a_plain_user_cannot_create_workspaces(client, team):
    client.force_login(team.admin)  # an admin of a workspace is no site power
    before = Workspace.objects.count()
    assert "+ New workspace" not in client.get(reverse("workspace:list")).content.decode()
    assert client.get(CREATE).status_code == 403
    response = client.post(CREATE, {"name": "Quota farm", "slug": "quota-farm"})
    assert response.status_code == 403
    assert "Workspace creators" in response.content.decode()
    assert Workspace.objects.count() == before
    with pytest.raises(PermissionDenied):
        actions.create_workspace(team.admin, name="Farm", slug="farm")
    assert Workspace.objects.count() == before


@pytest.mark.django_db
def test_a_workspace_creator_stops_at_the_cap(client, team, settings):
    settings.HANGAR_MAX_WORKSPACES_PER_USER = 2
    creator = join_group(team.contributor, "Workspace creators")
    client.force_login(creator)
    assert "+ New workspace" in client.get(reverse("workspace:list")).content.decode()
    for index in (1, 2):
        response = client.post(CREATE, {"name": f"Lab {index}", "slug": f"lab-{index}"})
        assert response.status_code == 302
    response = client.post(CREATE, {"name": "Lab 3", "slug": "lab-3"})
    assert "You have created 2 workspaces, the most one person may" in response.content.decode()
    assert Workspace.objects.filter(created_by=creator).count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_tabs_at_the_workspace_cap_create_one(settings):
    settings.HANGAR_MAX_WORKSPACES_PER_USER = 1
    creator = join_group(UserFactory(username="racer"), "Workspace creators")
    results = run_together(
        lambda: actions.create_workspace(creator, name="Tab one", slug="tab-one"),
        lambda: actions.create_workspace(creator, name="Tab two", slug="tab-two"),
    )
    assert sum(isinstance(r, Workspace) for r in results) == 1
    refused = [r for r in results if not isinstance(r, Workspace)]
    assert len(refused) == 1 and isinstance(refused[0], ValidationError), refused
    assert Workspace.objects.filter(created_by=creator).count() == 1


@pytest.mark.django_db
def test_the_queue_of_a_workspace_is_capped(
    client, team, trainers, settings, django_capture_on_commit_callbacks
):
    settings.HANGAR_MAX_QUEUED_JOBS = 3
    cluster = trainers
    client.force_login(team.contributor)
    url = reverse("compute:job-submit", args=[team.workspace.slug])
    form = {"compute": cluster.pk, "command": "sleep 60", "node_count": 1}
    with django_capture_on_commit_callbacks():
        for _ in range(3):
            assert client.post(url, form).status_code == 302
        response = client.post(url, form)
    assert "already has 3 jobs waiting" in response.content.decode()
    assert Job.objects.filter(workspace=team.workspace).count() == 3


def pending_request(team, family: str = "NCsv3", cores: int = 12) -> QuotaRequest:
    access = get_access(team.contributor, team.workspace.slug)
    return request_quota(
        access, family=VmFamily.objects.get(name=family), cores=cores, justification="ViT"
    )


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_decide_quota(client, team):
    made = pending_request(team)
    staff = UserFactory(username="helpdesk", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_quotarequest"))
    client.force_login(staff)
    page = client.get(CHANGELIST)
    assert page.status_code == 200 and str(made.workspace) in page.content.decode()
    assert 'value="approve"' not in page.content.decode()  # no action offered
    client.post(
        CHANGELIST,
        {"action": "approve", "_selected_action": [made.pk], "apply": "1", "reason": "ok"},
    )
    assert QuotaRequest.objects.get(pk=made.pk).status == RequestStatus.PENDING
    assert quota.family_row(team.workspace, made.family).limit == 0
    with pytest.raises(PermissionDenied):
        decide(made.pk, approve=True, admin=staff, reason="ok")
    # Nor may they change quota rows directly.
    row = quota.family_row(team.workspace, made.family)
    edit = reverse("admin:compute_familyquota_change", args=[row.pk])
    client.post(edit, {"limit": 500, "approved": 500})
    assert FamilyQuota.objects.get(pk=row.pk).limit == 0


@pytest.mark.django_db
def test_nobody_decides_their_own_quota_request(client, team, settings):
    made = pending_request(team)
    # The requester is made a quota approver, even a superuser: still not for their own.
    requester = join_group(team.contributor, "Quota approvers")
    requester.is_staff = requester.is_superuser = True
    requester.save()
    client.force_login(requester)
    response = client.post(
        CHANGELIST,
        {"action": "approve", "_selected_action": [made.pk], "apply": "1", "reason": "mine"},
        follow=True,
    )
    assert "another approver must decide it" in response.content.decode()
    assert QuotaRequest.objects.get(pk=made.pk).status == RequestStatus.PENDING
    # Another approver may; and a one-person site can allow self-approval.
    approver = join_group(UserFactory(username="approver2", is_staff=True), "Quota approvers")
    decide(made.pk, approve=True, admin=approver, reason="ok")
    assert quota.family_row(team.workspace, made.family).limit == 12
    settings.HANGAR_ALLOW_SELF_APPROVAL = True
    again = pending_request(team, cores=24)
    decide(again.pk, approve=True, admin=requester, reason="solo site")
    assert quota.family_row(team.workspace, made.family).limit == 24


@pytest.mark.django_db
def test_quota_edits_in_the_admin_are_logged_decisions(client, team):
    approver = join_group(UserFactory(username="approver3", is_staff=True), "Quota approvers")
    family = VmFamily.objects.get(name="NCsv3")
    row = quota.family_row(team.workspace, family)
    client.force_login(approver)
    edit = reverse("admin:compute_familyquota_change", args=[row.pk])
    response = client.post(edit, {"limit": 24, "approved": 24}, follow=True)
    assert response.status_code == 200
    assert FamilyQuota.objects.get(pk=row.pk).limit == 24
    logged = Activity.objects.get(workspace=team.workspace, verb=Activity.Verb.QUOTA_CHANGED)
    assert (
        "approver3 changed the NCsv3 cores" in logged.message and "limit 0 → 24" in logged.message
    )
    other = make_team("other")
    assert not Activity.objects.filter(workspace=other.workspace, verb="quota.changed").exists()
