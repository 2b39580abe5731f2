"""Invitations end to end through the test client: invite, bell, Invitations page, accept,
decline, expiry, revoke, who may do what, concurrent accepts, and the email."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse

from tests.support.factories import UserFactory
from tests.support.teams import make_team
from workspace.access import get_access
from workspace.actions import invitations as invitation_actions
from workspace.models import Activity, Invitation, InvitationState, Membership, Notification, Role

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def invite(client, team, identifier: str, role: str = Role.CONTRIBUTOR, **extra):
    client.force_login(team.admin)
    url = reverse("workspace:member-add", args=[team.workspace.slug])
    return client.post(url, {"identifier": identifier, "role": role}, **extra)


def invitation_of(team, identifier: str) -> Invitation:
    return Invitation.objects.get(workspace=team.workspace, identifier=identifier)


def is_member(team, user) -> bool:
    return Membership.objects.filter(workspace=team.workspace, user=user).exists()


def test_invitee_sees_it_in_the_bell_and_on_the_invitations_page_then_accepts(client, team):
    invite(client, team, "vision-outsider")
    invitation = invitation_of(team, "vision-outsider")
    assert not is_member(team, team.outsider)

    client.force_login(team.outsider)
    listing = client.get(reverse("workspace:list")).content.decode()
    assert 'data-testid="unread">1<' in listing  # the bell
    assert ">Vision</a>" not in listing  # not a member yet: not in their list
    inbox = client.get(reverse("notifications")).content.decode()
    assert "vision-admin invited you to Vision as contributor" in inbox
    assert reverse("invitation-accept", args=[invitation.pk]) in inbox
    page = client.get(reverse("invitations")).content.decode()
    assert 'data-invitation="vision"' in page and "Accept" in page
    assert client.get(reverse("workspace:overview", args=["vision"])).status_code == 404

    note = Notification.objects.get(user=team.outsider)
    response = client.post(
        reverse("invitation-accept", args=[invitation.pk]), {"notification": note.pk}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("workspace:overview", args=["vision"])
    membership = Membership.objects.get(workspace=team.workspace, user=team.outsider)
    assert (membership.role, membership.added_by) == (Role.CONTRIBUTOR, team.admin)
    assert Invitation.objects.get(pk=invitation.pk).state == InvitationState.ACCEPTED
    assert Notification.objects.get(pk=note.pk).read_at is not None
    assert team.workspace.activity.filter(
        verb=Activity.Verb.MEMBER_JOINED,
        message="vision-outsider joined as contributor (invited by vision-admin)",
    ).exists()
    overview = client.get(response["Location"]).content.decode()
    assert "You joined Vision as contributor." in overview
    assert ">Vision</a>" in client.get(reverse("workspace:list")).content.decode()


def test_accepting_twice_changes_nothing_the_second_time(client, team):
    invite(client, team, "vision-outsider")
    url = reverse("invitation-accept", args=[invitation_of(team, "vision-outsider").pk])
    client.force_login(team.outsider)
    client.post(url)
    activity = Activity.objects.count()
    response = client.post(url, follow=True)
    assert "This invitation was already accepted." in response.content.decode()
    assert Membership.objects.filter(user=team.outsider, workspace=team.workspace).count() == 1
    assert Activity.objects.count() == activity


def test_decline_makes_no_member_and_cannot_be_accepted_later(client, team):
    invite(client, team, "vision-outsider")
    invitation = invitation_of(team, "vision-outsider")
    client.force_login(team.outsider)
    response = client.post(reverse("invitation-decline", args=[invitation.pk]), follow=True)
    assert "You declined the invitation to Vision." in response.content.decode()
    response = client.post(reverse("invitation-accept", args=[invitation.pk]), follow=True)
    assert "This invitation was declined." in response.content.decode()
    assert not is_member(team, team.outsider)
    assert Invitation.objects.get(pk=invitation.pk).state == InvitationState.DECLINED


def test_an_expired_invitation_cannot_be_accepted(client, team, settings):
    settings.HANGAR_INVITATION_DAYS = 7
    with time_machine.travel(T0, tick=False):
        invite(client, team, "vision-outsider")
    invitation = invitation_of(team, "vision-outsider")
    assert invitation.expires_at == T0 + timedelta(days=7)
    client.force_login(team.outsider)
    with time_machine.travel(T0 + timedelta(days=6, hours=23), tick=False):
        assert "Accept" in client.get(reverse("invitations")).content.decode()
    with time_machine.travel(T0 + timedelta(days=7, minutes=1), tick=False):
        assert "expired" in client.get(reverse("invitations")).content.decode()
        response = client.post(reverse("invitation-accept", args=[invitation.pk]), follow=True)
        assert "This invitation has expired" in response.content.decode()
        assert not is_member(team, team.outsider)
        assert Invitation.objects.get(pk=invitation.pk).state == InvitationState.EXPIRED
        # The admin may invite again; the new one can be accepted.
        invite(client, team, "vision-outsider")
        fresh = Invitation.objects.get(workspace=team.workspace, state=InvitationState.PENDING)
        client.force_login(team.outsider)
        client.post(reverse("invitation-accept", args=[fresh.pk]))
    assert is_member(team, team.outsider)


def alerts(response, identifier: str) -> list[str]:
    """The page's messages, with the invited name replaced so two answers compare."""
    body = response.content.decode().replace(identifier, "X")
    return [" ".join(m.split()) for m in re.findall(r'role="alert">(.*?)<button', body, re.S)]


def test_the_same_answer_whether_or_not_the_account_exists(client, team):
    UserFactory(username="stranger", email="stranger@example.org")
    pairs = [
        ("vision-outsider", "nobody-by-this-name"),
        ("stranger@example.org", "nobody@example.org"),
    ]
    for existing, missing in pairs:
        answers = []
        for identifier in (existing, missing):
            response = invite(client, team, identifier, follow=True)
            answers.append(
                (response.status_code, response.redirect_chain, alerts(response, identifier))
            )
        assert answers[0] == answers[1]
        assert answers[0][2] == ["Invitation sent to X."]
    # Again, through htmx, while both are pending: still one answer, and no second row.
    htmx = [
        invite(client, team, identifier, HTTP_HX_REQUEST="true")
        for identifier in ("vision-outsider", "nobody-by-this-name")
    ]
    assert [r.status_code for r in htmx] == [200, 200]
    assert alerts(htmx[0], "vision-outsider") == alerts(htmx[1], "nobody-by-this-name")
    assert alerts(htmx[0], "vision-outsider") == ["Invitation sent to X."]
    # Nobody became a member; each name has one pending invitation.
    assert Membership.objects.filter(workspace=team.workspace).count() == 3
    assert Invitation.objects.filter(state=InvitationState.PENDING).count() == 4


def test_an_existing_member_gets_a_clear_message(client, team):
    response = invite(client, team, "vision-reader", HTTP_HX_REQUEST="true")
    assert "vision-reader is already a member of Vision." in response.content.decode()
    assert not Invitation.objects.exists()


def test_revoked_by_an_admin_cannot_be_accepted(client, team):
    invite(client, team, "vision-outsider")
    invitation = invitation_of(team, "vision-outsider")
    url = reverse("workspace:invitation-revoke", args=["vision", invitation.pk])
    panel = client.post(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Revoked the invitation to vision-outsider." in panel
    assert 'data-invitation="vision-outsider"' not in panel
    assert "vision-admin revoked the invitation to vision-outsider" in set(
        team.workspace.activity.values_list("message", flat=True)
    )
    again = client.post(url, follow=True).content.decode()
    assert "is no longer pending" in again
    client.force_login(team.outsider)
    response = client.post(reverse("invitation-accept", args=[invitation.pk]), follow=True)
    assert "This invitation was revoked" in response.content.decode()
    assert not is_member(team, team.outsider)


def test_members_page_lists_pending_invitations_to_admins_only(client, team):
    invite(client, team, "someone@example.com")
    members = reverse("workspace:members", args=["vision"])
    body = client.get(members).content.decode()
    assert 'data-invitation="someone@example.com"' in body and "Revoke" in body
    for user in (team.contributor, team.reader):
        client.force_login(user)
        assert "someone@example.com" not in client.get(members).content.decode()


def test_readers_and_contributors_cannot_invite_or_revoke_and_outsiders_get_404(client, team):
    invite(client, team, "pending-person")
    revoke = reverse("workspace:invitation-revoke", args=["vision", Invitation.objects.get().pk])
    add = reverse("workspace:member-add", args=["vision"])
    data = {"identifier": "vision-outsider", "role": Role.ADMIN}
    for user, role in ((team.reader, "reader"), (team.contributor, "contributor")):
        client.force_login(user)
        for url in (add, revoke):
            response = client.post(url, data)
            assert response.status_code == 403
            assert f"You are a {role} in Vision" in response.content.decode()
    client.force_login(team.outsider)
    assert client.post(add, data).status_code == 404
    assert client.post(revoke).status_code == 404
    assert list(Invitation.objects.values_list("identifier", "state")) == [
        ("pending-person", InvitationState.PENDING)
    ]


def test_someone_elses_invitation_is_404(client, team):
    invite(client, team, "vision-outsider")
    invitation = invitation_of(team, "vision-outsider")
    for user in (team.reader, team.admin, make_team("nlp").outsider):
        client.force_login(user)
        for name in ("invitation-accept", "invitation-decline"):
            url = reverse(name, args=[invitation.pk])
            assert client.get(url).status_code == 404
            assert client.post(url).status_code == 404
    assert Invitation.objects.get(pk=invitation.pk).state == InvitationState.PENDING
    assert not is_member(team, team.outsider)


def test_the_emailed_link_opens_a_page_that_does_not_accept_by_itself(client, team):
    invite(client, team, "vision-outsider", Role.READER)
    invitation = invitation_of(team, "vision-outsider")
    client.force_login(team.outsider)
    page = client.get(reverse("invitation-accept", args=[invitation.pk])).content.decode()
    assert "Invitation to Vision" in page and 'type="submit">Accept<' in page
    assert not is_member(team, team.outsider)


def test_accepting_one_of_two_invitations_fulfils_both(client, team):
    invite(client, team, "vision-outsider")
    invite(client, team, "vision-outsider@example.com", Role.READER)
    first = invitation_of(team, "vision-outsider@example.com")
    client.force_login(team.outsider)
    client.post(reverse("invitation-accept", args=[first.pk]))
    assert Membership.objects.get(workspace=team.workspace, user=team.outsider).role == Role.READER
    assert set(Invitation.objects.values_list("state", flat=True)) == {InvitationState.ACCEPTED}


def test_email_with_the_accept_link_goes_out_on_commit(
    client, team, settings, django_capture_on_commit_callbacks
):
    settings.HANGAR_BASE_URL = "https://hangar.example.test/"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        invite(client, team, "vision-outsider")
        invite(client, team, "nobody-at-all")
        invite(client, team, "nobody@example.com")
    assert mail.outbox == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert len(mail.outbox) == 1  # no account, no address: no email
    message = mail.outbox[0]
    invitation = invitation_of(team, "vision-outsider")
    assert message.to == ["vision-outsider@example.com"]
    assert message.subject == "vision-admin invited you to Vision as contributor"
    link = f"https://hangar.example.test/invitations/{invitation.pk}/accept/"
    assert f"Accept: {link}" in message.body


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_accepts_make_one_membership():
    team = make_team()
    access = get_access(team.admin, team.workspace.slug)
    invitation = invitation_actions.invite_member(
        access, identifier="vision-outsider", role=Role.ADMIN
    )
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def accept() -> None:
        try:
            start.wait()
            invitation_actions.accept(team.outsider, invitation.pk)
            outcomes.append("joined")
        except ValidationError as error:
            outcomes.append(error.messages[0])
        finally:
            connection.close()

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["This invitation was already accepted.", "joined"]
    assert Membership.objects.filter(workspace=team.workspace, user=team.outsider).count() == 1
    assert Activity.objects.filter(verb=Activity.Verb.MEMBER_JOINED).count() == 1
