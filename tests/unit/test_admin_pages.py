"""Site admin pages, by what the approver sees and what a decision really does: the list
shows the right requests with their figures and writes nothing; approving asks first, then
raises the limit; rejecting changes no limit and tells the requester why."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute import quota
from compute.actions.quota import request_quota
from compute.models import FamilyQuota, QuotaRequest, RequestStatus, VmFamily, WorkspaceQuota
from tests.support.factories import UserFactory
from tests.support.teams import Team, join_group, make_team
from workspace.access import get_access
from workspace.models import Activity, Notification

CHANGELIST = reverse("admin:compute_quotarequest_changelist")

pytestmark = pytest.mark.django_db


def ask(team: Team, family: str, cores: int, why: str = "x") -> QuotaRequest:
    access = get_access(team.contributor, team.workspace.slug)
    return request_quota(
        access, family=VmFamily.objects.get(name=family), cores=cores, justification=why
    )


@pytest.fixture
def approver(db):
    return join_group(UserFactory(username="approver", is_staff=True), "Quota approvers")


def test_the_request_list_shows_each_request_with_its_figures_and_writes_nothing(
    client, team, approver
):
    made = [ask(team, "NCsv3", 12), ask(team, "NDv2", 40)]
    elsewhere = ask(make_team("rivals"), "NCsv3", 24)
    # Rows that were never made (a workspace that never used these families): the page
    # shows the site default for them and makes no row.
    FamilyQuota.objects.all().delete()
    WorkspaceQuota.objects.all().delete()
    client.force_login(approver)

    page = client.get(CHANGELIST)

    assert {row.pk for row in page.context["cl"].result_list} == {
        *(m.pk for m in made),
        elsewhere.pk,
    }
    body = page.content.decode()
    assert "Vision: NCsv3 cores → 12 cores (pending)" in body
    assert "Vision: NDv2 cores → 40 cores (pending)" in body
    assert "Rivals: NCsv3 cores → 24 cores (pending)" in body
    assert 'value="approve"' in body and 'value="reject"' in body  # an approver decides
    assert FamilyQuota.objects.count() == 0
    assert WorkspaceQuota.objects.count() == 0
    # The filters narrow the list to what they say.
    only_rivals = client.get(CHANGELIST, {"workspace__id__exact": elsewhere.workspace_id})
    assert [row.pk for row in only_rivals.context["cl"].result_list] == [elsewhere.pk]
    searched = client.get(CHANGELIST, {"q": "NDv2"})
    assert [row.pk for row in searched.context["cl"].result_list] == [made[1].pk]


def test_approving_asks_first_then_raises_the_limit(client, team, approver):
    made = ask(team, "NCsv3", 12, why="Fine-tuning a ViT")
    client.force_login(approver)

    confirm = client.post(CHANGELIST, {"action": "approve", "_selected_action": [made.pk]})

    body = confirm.content.decode()
    assert "Approving raises each workspace's limit" in body
    assert f"#{made.pk} Vision: NCsv3 cores → 12 cores (pending)" in body
    assert "Fine-tuning a ViT" in body
    assert QuotaRequest.objects.get(pk=made.pk).status == RequestStatus.PENDING
    assert quota.family_limit(team.workspace, made.family) == 0

    done = client.post(
        CHANGELIST,
        {"action": "approve", "_selected_action": [made.pk], "apply": "1", "reason": "ok"},
        follow=True,
    )

    assert f"Approved request #{made.pk}." in done.content.decode()
    assert "Vision: NCsv3 cores → 12 cores (approved)" in done.content.decode()
    made.refresh_from_db()
    assert (made.status, made.decided_by, made.reason) == (RequestStatus.APPROVED, approver, "ok")
    assert quota.family_limit(team.workspace, made.family) == 12
    assert Activity.objects.filter(
        workspace=team.workspace, message="approver approved the request for 12 NCsv3 cores: ok"
    ).exists()
    note = Notification.objects.get(user=team.contributor)
    assert note.title == "Quota request approved: 12 NCsv3 cores"


def test_rejecting_needs_a_reason_changes_no_limit_and_tells_why(client, team, approver):
    made = ask(team, "NDv2", 40)
    client.force_login(approver)
    decide = {"action": "reject", "_selected_action": [made.pk], "apply": "1"}

    missing = client.post(CHANGELIST, {**decide, "reason": ""}, follow=True)

    assert "Give the requester a reason for the rejection." in missing.content.decode()
    assert QuotaRequest.objects.get(pk=made.pk).status == RequestStatus.PENDING

    done = client.post(CHANGELIST, {**decide, "reason": "No V100s this quarter."}, follow=True)

    assert f"Rejected request #{made.pk}." in done.content.decode()
    made.refresh_from_db()
    assert (made.status, made.reason) == (RequestStatus.REJECTED, "No V100s this quarter.")
    assert quota.family_limit(team.workspace, made.family) == 0
    note = Notification.objects.get(user=team.contributor)
    assert "No V100s this quarter." in note.body
