"""The access layer: every workspace URL, every role."""

from __future__ import annotations

import pytest
from django.urls import reverse

from workspace.access import get_access
from workspace.actions import invitations as invitation_actions
from workspace.models import Activity, Invitation, Membership, Role, Workspace

pytestmark = pytest.mark.django_db


def pending_invitation(team) -> Invitation:
    """One pending invitation, for the revoke URL; made by the admin the first time."""
    found = Invitation.objects.filter(workspace=team.workspace, identifier="pending-one").first()
    if found is None:
        access = get_access(team.admin, team.workspace.slug)
        found = invitation_actions.invite_member(access, identifier="pending-one", role=Role.READER)
    return found


def workspace_urls(team) -> dict[str, tuple[str, dict]]:
    """name -> (url, POST data), for every URL that takes a workspace slug."""
    slug = team.workspace.slug
    reader_membership = Membership.objects.get(workspace=team.workspace, user=team.reader)
    invitation = pending_invitation(team)
    return {
        "overview": (reverse("workspace:overview", args=[slug]), {}),
        "activity": (reverse("workspace:activity", args=[slug]), {}),
        "members": (reverse("workspace:members", args=[slug]), {}),
        "settings": (
            reverse("workspace:settings", args=[slug]),
            {"name": "Renamed", "description": "x"},
        ),
        "member-add": (
            reverse("workspace:member-add", args=[slug]),
            {"identifier": team.outsider.username, "role": Role.ADMIN},
        ),
        "member-role": (
            reverse("workspace:member-role", args=[slug, reader_membership.pk]),
            {"role": Role.ADMIN},
        ),
        "member-remove": (
            reverse("workspace:member-remove", args=[slug, reader_membership.pk]),
            {},
        ),
        "invitation-revoke": (
            reverse("workspace:invitation-revoke", args=[slug, invitation.pk]),
            {},
        ),
    }


def snapshot(team) -> tuple:
    pending_invitation(team)
    workspace = Workspace.objects.get(pk=team.workspace.pk)
    memberships = sorted(
        Membership.objects.filter(workspace=workspace).values_list("user__username", "role")
    )
    invitations = sorted(Invitation.objects.values_list("identifier", "state"))
    return (
        workspace.name,
        workspace.description,
        memberships,
        invitations,
        Activity.objects.count(),
    )


def test_anonymous_is_sent_to_login(client, team):
    for name, (url, data) in workspace_urls(team).items():
        for response in (client.get(url), client.post(url, data)):
            assert response.status_code == 302, name
            assert response["Location"].startswith(reverse("login")), name


def test_outsider_gets_404_everywhere_and_changes_nothing(client, team):
    client.force_login(team.outsider)
    before = snapshot(team)
    for name, (url, data) in workspace_urls(team).items():
        assert client.get(url).status_code == 404, name
        assert client.post(url, data).status_code == 404, name
    assert snapshot(team) == before


def test_unknown_workspace_is_404_for_a_member_of_others(client, team):
    client.force_login(team.admin)
    assert client.get(reverse("workspace:overview", args=["no-such-team"])).status_code == 404


def test_reader_sees_but_cannot_change(client, team):
    client.force_login(team.reader)
    urls = workspace_urls(team)
    for name in ("overview", "activity", "members"):
        assert client.get(urls[name][0]).status_code == 200, name
    before = snapshot(team)
    for name in ("settings", "member-add", "member-role", "invitation-revoke"):
        url, data = urls[name]
        response = client.post(url, data)
        assert response.status_code == 403, name
        assert b"You are a reader in Vision" in response.content
        assert b"needs the admin role" in response.content
    # The reader's only removal right is leaving; removing someone else is refused.
    admin_membership = Membership.objects.get(workspace=team.workspace, user=team.admin)
    url = reverse("workspace:member-remove", args=[team.workspace.slug, admin_membership.pk])
    assert client.post(url).status_code == 403
    assert snapshot(team) == before


def test_contributor_cannot_manage_members(client, team):
    client.force_login(team.contributor)
    urls = workspace_urls(team)
    before = snapshot(team)
    for name in ("settings", "member-add", "member-role", "member-remove", "invitation-revoke"):
        url, data = urls[name]
        response = client.post(url, data)
        assert response.status_code == 403, name
        assert b"You are a contributor in Vision" in response.content
    assert client.get(urls["settings"][0]).status_code == 403
    assert snapshot(team) == before


def test_admin_invites_changes_and_removes_members(client, team):
    client.force_login(team.admin)
    urls = workspace_urls(team)
    response = client.post(*urls["member-add"], follow=True)
    assert response.status_code == 200
    assert "Invitation sent to vision-outsider." in response.content.decode()
    # An invitation, not a membership: the outsider joins only by accepting.
    assert not Membership.objects.filter(workspace=team.workspace, user=team.outsider).exists()
    invitation = Invitation.objects.get(workspace=team.workspace, identifier="vision-outsider")
    assert (invitation.invitee, invitation.role) == (team.outsider, Role.ADMIN)
    assert client.post(*urls["member-role"]).status_code == 302
    assert Membership.objects.get(workspace=team.workspace, user=team.reader).role == Role.ADMIN
    assert client.post(*urls["member-remove"]).status_code == 302
    assert not Membership.objects.filter(workspace=team.workspace, user=team.reader).exists()
    assert client.post(*urls["settings"]).status_code == 302
    assert Workspace.objects.get(pk=team.workspace.pk).name == "Renamed"
    messages = list(team.workspace.activity.values_list("message", flat=True))
    assert f"{team.admin} invited vision-outsider as admin" in messages
    assert f"{team.admin} changed {team.reader} from reader to admin" in messages
    assert f"{team.admin} removed {team.reader}" in messages
    assert any("renamed it from Vision to Renamed" in m for m in messages)


def test_admin_invites_by_email(client, team):
    client.force_login(team.admin)
    url = reverse("workspace:member-add", args=[team.workspace.slug])
    client.post(url, {"identifier": team.outsider.email.upper(), "role": Role.READER})
    assert not Membership.objects.filter(workspace=team.workspace, user=team.outsider).exists()
    invitation = Invitation.objects.get(workspace=team.workspace)
    assert invitation.invitee == team.outsider
    assert invitation.identifier == team.outsider.email.upper()


def test_the_last_admin_can_be_neither_demoted_nor_removed(client, team):
    client.force_login(team.admin)
    mine = Membership.objects.get(workspace=team.workspace, user=team.admin)
    slug = team.workspace.slug
    before = snapshot(team)
    response = client.post(
        reverse("workspace:member-role", args=[slug, mine.pk]), {"role": Role.READER}, follow=True
    )
    assert "is the last admin" in response.content.decode()
    response = client.post(reverse("workspace:member-remove", args=[slug, mine.pk]), follow=True)
    assert "is the last admin" in response.content.decode()
    assert snapshot(team) == before
    # With a second admin the first may step down.
    Membership.objects.filter(workspace=team.workspace, user=team.contributor).update(
        role=Role.ADMIN
    )
    client.post(reverse("workspace:member-role", args=[slug, mine.pk]), {"role": Role.READER})
    assert Membership.objects.get(pk=mine.pk).role == Role.READER


def test_a_reader_may_leave(client, team):
    client.force_login(team.reader)
    mine = Membership.objects.get(workspace=team.workspace, user=team.reader)
    response = client.post(reverse("workspace:member-remove", args=[team.workspace.slug, mine.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("workspace:list")
    assert not Membership.objects.filter(pk=mine.pk).exists()
    assert client.get(reverse("workspace:overview", args=[team.workspace.slug])).status_code == 404


def test_membership_of_another_workspace_cannot_be_touched_through_mine(client, team):
    """An admin of A posting a membership id of B under A's slug changes nothing."""
    other = Membership.objects.get(user__username="vision-outsider")
    client.force_login(team.admin)
    slug = team.workspace.slug
    response = client.post(
        reverse("workspace:member-role", args=[slug, other.pk]), {"role": Role.READER}, follow=True
    )
    assert "no longer a member" in response.content.decode()
    client.post(reverse("workspace:member-remove", args=[slug, other.pk]))
    assert Membership.objects.get(pk=other.pk).role == Role.ADMIN


def test_htmx_member_change_returns_the_panel_only(client, team):
    client.force_login(team.admin)
    url = reverse("workspace:member-add", args=[team.workspace.slug])
    response = client.post(
        url, {"identifier": "vision-outsider", "role": Role.READER}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body
    assert 'data-invitation="vision-outsider"' in body
    assert 'data-member="vision-outsider"' not in body
    assert "Invitation sent to vision-outsider." in body


def test_workspace_list_shows_only_mine_with_constant_queries(
    client, team, django_assert_max_num_queries
):
    client.force_login(team.admin)
    with django_assert_max_num_queries(8):
        body = client.get(reverse("workspace:list")).content.decode()
    assert "Vision" in body
    assert "vision-other" not in body


def test_empty_workspace_list_explains_what_to_do(client, db):
    from tests.support.factories import UserFactory

    client.force_login(UserFactory(username="newcomer"))
    body = client.get(reverse("workspace:list")).content.decode()
    assert "You are not in any workspace yet" in body
    assert "newcomer" in body
