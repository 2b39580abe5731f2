"""The home page gathers a user's things across workspaces: it must gather only from the
workspaces they are a member of *now*. An attacker who used to be in the victim's workspace
(their instance still running there, their jobs still queued, their quota request still
pending), or is named on the victim's rows some other way, sees none of it — whole page
or htmx fragment — and the victim's costs and counts are not added to theirs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute.models import Compute, QuotaRequest
from tests.support.factories import ComputeFactory, JobFactory, MembershipFactory, NodeFactory
from workspace.models import Invitation, Membership, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def victim(team):
    """vision-other (the outsider's workspace), full of rows naming vision-contributor,
    who was a member there and left."""
    attacker = team.contributor
    workspace = Membership.objects.get(user=team.outsider).workspace
    gone = MembershipFactory(workspace=workspace, user=attacker, role=Role.CONTRIBUTOR)
    box = ComputeFactory(workspace=workspace, instance=True, name="secret-box", created_by=attacker)
    Compute.objects.filter(pk=box.pk).update(
        idle_deadline=timezone.now() + timedelta(minutes=30),
        state_changed_at=timezone.now() - timedelta(minutes=5),
    )
    ComputeFactory(workspace=workspace, instance=True, name="secret-given", assigned_to=attacker)
    ComputeFactory(
        workspace=workspace, instance=True, name="secret-theirs", created_by=team.outsider
    )
    pool = ComputeFactory(workspace=workspace, name="secret-pool")
    NodeFactory(compute=pool, running=True)
    JobFactory(compute=pool, submitted_by=attacker, name="secret-queued")
    JobFactory(compute=pool, submitted_by=attacker, name="secret-running", status="running")
    JobFactory(compute=pool, submitted_by=team.outsider, name="secret-other")
    QuotaRequest.objects.create(
        workspace=workspace, requested_limit=999, justification="x", requested_by=attacker
    )
    Invitation.objects.create(
        workspace=workspace,
        identifier=team.reader.username,
        invitee=team.reader,  # someone else's invitation to the victim
        role=Role.ADMIN,
        expires_at=timezone.now() + timedelta(days=7),
    )
    gone.delete()  # the attacker left (or was removed)
    return workspace


def test_a_member_never_sees_another_workspaces_items_on_the_home_page(client, team, victim):
    attacker = team.contributor
    own = ComputeFactory(
        workspace=team.workspace, instance=True, name="own-box", created_by=attacker
    )
    client.force_login(attacker)
    for headers in ({}, {"HX-Request": "true"}):
        body = client.get("/", headers=headers).content.decode()
        assert 'data-compute="own-box"' in body  # the page works: own things show
        assert "secret-" not in body
        assert "999" not in body
        assert victim.name not in body and f"/w/{victim.slug}/" not in body
        assert 'data-testid="count-my-instances">1<' in body
        assert 'data-testid="count-my-running-jobs">0<' in body
        assert 'data-testid="count-my-queued-jobs">0<' in body
        assert 'data-testid="count-nodes-up">0<' in body
        assert "cluster nodes up in 0 clusters" in body  # the victim's pool not counted
        assert 'data-testid="cost-today">$0.00<' in body
    assert own.workspace_id != victim.pk


def test_another_users_invitation_to_a_workspace_is_not_shown(client, team, victim):
    client.force_login(team.admin)
    body = client.get("/").content.decode()
    assert "No invitation is waiting for you." in body
    assert victim.name not in body
