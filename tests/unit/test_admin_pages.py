"""Site admin pages read; they never write."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.actions.quota import request_quota
from compute.models import FamilyQuota, VmFamily, WorkspaceQuota
from tests.support.factories import UserFactory
from tests.support.teams import join_group
from workspace.access import get_access

CHANGELIST = reverse("admin:compute_quotarequest_changelist")


@pytest.mark.django_db
def test_viewing_quota_requests_writes_no_quota_row(client, team):
    access = get_access(team.contributor, team.workspace.slug)
    for name in ("NCsv3", "NDv2"):
        request_quota(access, family=VmFamily.objects.get(name=name), cores=12, justification="x")
    # Rows that were never made (a workspace that never used these families): the page
    # shows the site default for them and makes no row.
    FamilyQuota.objects.all().delete()
    WorkspaceQuota.objects.all().delete()
    approver = join_group(UserFactory(username="approver", is_staff=True), "Quota approvers")
    client.force_login(approver)

    page = client.get(CHANGELIST)

    assert page.status_code == 200
    assert page.content.decode().count("ncsv3") + page.content.decode().count("NCsv3") >= 1
    assert FamilyQuota.objects.count() == 0
    assert WorkspaceQuota.objects.count() == 0
