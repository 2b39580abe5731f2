"""Scoped reads: another workspace's or a deleted compute is never found; the cost maths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from compute import selectors
from tests.support.factories import ComputeFactory
from workspace.access import get_access

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_an_instance_is_found_only_in_its_own_workspace_and_while_not_deleted(team):
    access = get_access(team.admin, team.workspace.slug)
    mine = ComputeFactory(workspace=team.workspace, instance=True)
    theirs = ComputeFactory(instance=True)  # another workspace
    gone = ComputeFactory(workspace=team.workspace, instance=True, state="deleted")
    assert selectors.instance_of(access, mine.pk) == mine
    assert selectors.instance_of(access, theirs.pk) is None
    assert selectors.instance_of(access, gone.pk) is None
    assert selectors.attached_of(access, mine.pk) is None  # not an attached compute


@pytest.mark.django_db
def test_pages_answer_404_for_another_workspaces_instance(client, team):
    theirs = ComputeFactory(instance=True)
    client.force_login(team.admin)
    url = reverse("compute:idle", args=[team.workspace.slug, theirs.pk])
    assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_burning_counts_today_and_the_idle_waste_ahead(team):
    size_price = 2.0
    box = ComputeFactory(
        workspace=team.workspace,
        instance=True,
        state_changed_at=NOON - timedelta(hours=3),
        last_activity_at=NOON - timedelta(hours=1),
        idle_deadline=NOON + timedelta(hours=1),
    )
    box.vm_size.price_dedicated = size_price
    box.vm_size.save()
    ComputeFactory(workspace=team.workspace, stopped=True)  # costs nothing: not listed
    (row,) = selectors.burning(team.workspace, NOON)
    assert row.compute == box
    assert row.idle_minutes == 60
    assert row.cost_today == pytest.approx(3 * size_price)
    assert row.waste == pytest.approx((1 + 1) * size_price)  # idle so far + until shutdown
