"""The routes outside w/<slug>/ that name an object or read per user: an invitation is its
invitee's alone, an instance's activity needs that instance's token, the inbox shows and
marks only one's own notifications, an API token is revoked by its owner only (more in
test_token_isolation.py), the site admin and the Hosts page are for staff, and /metrics is
there only with its token set and for that bearer token alone. Each refusal leaves every
row as it was.

A new route with an id outside w/<slug>/ fails `test_every_route_with_an_id_is_covered`
until it is added to COVERED, with a test here.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from compute.actions.idle import rotate_token
from compute.actions.quota import request_quota
from compute.models import (
    Compute,
    Event,
    HostState,
    NodeHost,
    QuotaRequest,
    RequestStatus,
    VmFamily,
)
from tests.support.factories import ComputeFactory
from tests.support.teams import Team, make_team
from workspace.access import get_access
from workspace.actions import invitations as invitation_actions
from workspace.models import (
    AccessToken,
    Invitation,
    InvitationState,
    Membership,
    Notification,
    Role,
)
from workspace.tokens import create_token, token_for

pytestmark = pytest.mark.django_db

# Routes outside w/<slug>/ (and the admin, walked by its own staff check) that take an id.
COVERED = {"invitation-accept", "invitation-decline", "compute:activity", "token-revoke"}


def routes_with_ids() -> set[str]:
    """Names of the routes outside w/<slug>/, admin/ and api/v1/ whose path takes a
    parameter."""
    found: set[str] = set()

    def walk(patterns: list, namespace: str, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                # The admin checks staff on every page; the API has its own matrix over every
                # operation (test_api_access.py).
                if str(entry.pattern) in ("admin/", "api/v1/"):
                    continue
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                walk(entry.url_patterns, inner, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern) and entry.name:
                route = prefix + str(entry.pattern)
                if not route.startswith("w/<slug:slug>/") and re.search(r"<\w+:\w+>", route):
                    found.add(namespace + entry.name)

    walk(get_resolver().url_patterns, "", "")
    return found


def test_every_route_with_an_id_is_covered():
    assert routes_with_ids() == COVERED


def test_another_users_token_answers_like_no_token(client, team):
    """Revoking by id probes nothing: another user's token and an id no token has get the
    same 404 page, and the token still works."""
    made = create_token(team.reader, name="reader CI", expires_in_days=30)
    missing = AccessToken.objects.order_by("-pk").first().pk + 1000
    client.force_login(team.outsider)
    urls = [reverse("token-revoke", args=[token_id]) for token_id in (made.token.pk, missing)]
    answers = [client.post(url) for url in urls]
    assert [answer.status_code for answer in answers] == [404, 404]
    # The page's own content (the navigation around it shows live figures that may change).
    said = [re.search(r"<main.*</main>", a.content.decode(), re.S).group(0) for a in answers]
    assert said[0] == said[1]
    assert token_for(made.secret) is not None


def invitations_state() -> list[tuple]:
    return sorted(Invitation.objects.values_list("pk", "state", "responded_at"))


def memberships() -> list[tuple]:
    return sorted(Membership.objects.values_list("pk", "workspace_id", "user_id", "role"))


@pytest.mark.parametrize("answer", ["invitation-accept", "invitation-decline"])
def test_another_users_invitation_does_not_exist_for_them(client, team, answer):
    """The outsider's invitation, opened or answered by someone else (a member of the
    workspace, even its admin): 404, and the invitation stays pending for its invitee."""
    invitation = invitation_actions.invite_member(
        get_access(team.admin, team.workspace.slug),
        identifier=team.outsider.username,
        role=Role.CONTRIBUTOR,
    )
    assert invitation is not None and invitation.invitee == team.outsider
    url = reverse(answer, args=[invitation.pk])
    before = (invitations_state(), memberships())
    for user in (team.reader, team.admin):
        client.force_login(user)
        assert client.get(url).status_code == 404, user
        assert client.post(url).status_code == 404, user
    assert (invitations_state(), memberships()) == before
    # Its invitee is served: the same URL is a real one.
    client.force_login(team.outsider)
    page = client.get(url)
    assert page.status_code == 200 and team.workspace.name in page.content.decode()


def test_an_invitation_answered_with_another_users_notification_reads_only_ones_own(client, team):
    """Accepting from the bell reads "that" notification: only if it is the invitee's."""
    theirs = Notification.objects.create(user=team.reader, title="Your instance stops soon")
    invitation = invitation_actions.invite_member(
        get_access(team.admin, team.workspace.slug),
        identifier=team.outsider.username,
        role=Role.READER,
    )
    assert invitation is not None
    client.force_login(team.outsider)
    response = client.post(
        reverse("invitation-accept", args=[invitation.pk]), {"notification": theirs.pk}
    )
    assert response.status_code == 302
    assert Invitation.objects.get(pk=invitation.pk).state == InvitationState.ACCEPTED
    assert Notification.objects.get(pk=theirs.pk).read_at is None


def test_an_action_from_the_bell_reads_only_ones_own_notification(client, team):
    """ "Stop now" from a reminder carries the notification's id; another user's stays unread."""
    instance = ComputeFactory(workspace=team.workspace, instance=True)
    theirs = Notification.objects.create(user=team.reader, title=f"{instance.name} stops soon")
    mine = Notification.objects.create(user=team.contributor, title=f"{instance.name} stops soon")
    client.force_login(team.contributor)
    url = reverse("compute:action", args=[team.workspace.slug, instance.pk, "stop"])
    for note in (theirs, mine):
        client.post(url, {"notification": note.pk})
    assert Notification.objects.get(pk=theirs.pk).read_at is None
    assert Notification.objects.get(pk=mine.pk).read_at is not None


@pytest.fixture
def inboxes(team: Team) -> tuple[Notification, Notification]:
    """An unread notification of the victim (a reader of the team) and one of the outsider."""
    theirs = Notification.objects.create(
        user=team.reader, workspace=team.workspace, title="Quota for vision approved"
    )
    mine = Notification.objects.create(user=team.outsider, title="Welcome aboard")
    return theirs, mine


def test_the_inbox_shows_only_ones_own_notifications(client, team, inboxes):
    theirs, mine = inboxes
    client.force_login(team.outsider)
    page = client.get(reverse("notifications")).content.decode()
    assert mine.title in page
    assert theirs.title not in page
    client.force_login(team.reader)
    assert theirs.title in client.get(reverse("notifications")).content.decode()


def test_marking_read_touches_only_ones_own_notifications(client, team, inboxes):
    theirs, mine = inboxes
    client.force_login(team.outsider)
    read = reverse("notifications-read")
    assert client.post(read, {"id": theirs.pk}).status_code == 302
    assert Notification.objects.get(pk=theirs.pk).read_at is None
    assert Notification.objects.get(pk=mine.pk).read_at is None  # the id named neither
    assert client.post(read).status_code == 302  # "Mark all read"
    assert Notification.objects.get(pk=theirs.pk).read_at is None
    assert Notification.objects.get(pk=mine.pk).read_at is not None
    assert client.get(read).status_code == 405  # a GET never marks


def activity_rows(compute: Compute) -> tuple:
    fresh = Compute.objects.get(pk=compute.pk)
    return (
        fresh.last_activity,
        fresh.idle_deadline,
        fresh.keep_running_until,
        Event.objects.filter(compute=compute).count(),
    )


def test_an_instances_activity_needs_its_own_token(client, team):
    """Another instance's valid token (of another workspace, or of the same one) reports
    nothing for this one: 401, and the victim's idle clock and events are as they were."""
    victim = ComputeFactory(workspace=team.workspace, instance=True, name="victim-box")
    other = make_team("rivals")
    foreign = ComputeFactory(workspace=other.workspace, instance=True, name="rival-box")
    sibling = ComputeFactory(workspace=team.workspace, instance=True, name="sibling-box")
    rotate_token(get_access(team.contributor, team.workspace.slug), victim.pk)
    tokens = [
        rotate_token(get_access(other.contributor, other.workspace.slug), foreign.pk),
        rotate_token(get_access(team.contributor, team.workspace.slug), sibling.pk),
    ]
    url = reverse("compute:activity", args=[victim.pk])
    before = activity_rows(victim)
    for token in tokens:
        response = client.post(
            url,
            {"source": "x"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 401, response.content
    assert client.get(url).status_code == 405
    # Nor does a member's session stand in for the token.
    client.force_login(team.admin)
    assert client.post(url, content_type="application/json").status_code == 401
    assert activity_rows(victim) == before
    # The foreign token still works for its own instance: it was a real token.
    response = client.post(
        reverse("compute:activity", args=[foreign.pk]),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {tokens[0]}",
    )
    assert response.status_code == 200


def test_the_site_admin_is_for_staff_only(client, team):
    """A workspace admin (no staff flag) and an anonymous visitor are sent to the admin's
    login, for pages and for an action that would decide quota; nothing is decided."""
    made = request_quota(
        get_access(team.contributor, team.workspace.slug),
        family=VmFamily.objects.get(name="NCsv3"),
        cores=12,
        justification="ViT",
    )
    changelist = reverse("admin:compute_quotarequest_changelist")
    pages = [reverse("admin:index"), changelist, reverse("admin:workspace_workspace_changelist")]
    decide = {"action": "approve", "_selected_action": [made.pk], "apply": "1", "reason": "ok"}
    for user in (None, team.admin):
        client.logout()
        if user is not None:
            client.force_login(user)
        for url in pages:
            response = client.get(url)
            assert response.status_code == 302, (user, url)
            assert response["Location"].startswith(reverse("admin:login")), (user, url)
        response = client.post(changelist, decide)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    made.refresh_from_db()
    assert (made.status, made.decided_by) == (RequestStatus.PENDING, None)
    assert QuotaRequest.objects.count() == 1


def test_the_hosts_page_is_for_staff_only(client, team):
    """The node hosts (Docker URLs, errors, labels) are the site staff's: an anonymous
    visitor is sent to log in; any other user, a workspace admin included, finds no page
    there (404), for the page and its htmx fragment. The admin's host pages are staff's
    too (to the admin login)."""
    NodeHost.objects.create(name="gpu-box-2", docker_url="ssh://ml@gpu-box-2")
    url = reverse("compute:hosts")
    admin_pages = [
        reverse("admin:compute_nodehost_changelist"),
        reverse("admin:compute_nodehost_add"),
    ]
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    for user in (team.admin, team.contributor, team.outsider):
        client.force_login(user)
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            answer = client.get(url, **headers)
            assert answer.status_code == 404, user
            assert b"gpu-box-2" not in answer.content
        for page in admin_pages:
            assert client.get(page)["Location"].startswith(reverse("admin:login"))
        posted = client.post(
            admin_pages[0],
            {"action": "disable", "_selected_action": [NodeHost.objects.get().pk], "apply": "1"},
        )
        assert posted.status_code == 302
    assert NodeHost.objects.get().state == HostState.READY
    staff = team.admin
    staff.is_staff = True
    staff.save()
    client.force_login(staff)
    assert b"gpu-box-2" in client.get(url).content


def test_an_expired_invitation_of_another_user_is_404_too(client, team):
    """Whatever state it is in, someone else's invitation answers as no invitation."""
    invitation = Invitation.objects.create(
        workspace=team.workspace,
        identifier=team.outsider.username,
        invitee=team.outsider,
        invited_by=team.admin,
        expires_at=timezone.now() - timedelta(days=1),
    )
    client.force_login(team.reader)
    for answer in ("invitation-accept", "invitation-decline"):
        assert client.post(reverse(answer, args=[invitation.pk])).status_code == 404
    assert Invitation.objects.get(pk=invitation.pk).state == InvitationState.PENDING


def test_metrics_are_absent_unless_turned_on_and_need_their_token(client, team, settings):
    """/metrics (Prometheus) takes no id but reads the whole site's figures: off it is an
    unknown address to everyone, staff included; on, no session stands in for the token
    (more in tests/unit/test_metrics.py)."""
    staff = team.admin
    staff.is_staff = staff.is_superuser = True
    staff.save()
    settings.HANGAR_METRICS_TOKEN = ""
    for user in (None, staff):
        if user is not None:
            client.force_login(user)
        assert client.get("/metrics").status_code == 404
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404
    settings.HANGAR_METRICS_TOKEN = "the-metrics-token-0123456789"
    assert client.get("/metrics").status_code == 401  # staff's session: not the token
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer the-metrics-token-012345678")
    assert wrong.status_code == 401 and b"hangar_" not in wrong.content
    client.logout()
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer the-metrics-token-0123456789")
    assert right.status_code == 200 and b"hangar_computes" in right.content
