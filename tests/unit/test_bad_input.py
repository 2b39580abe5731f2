"""Bad input gets a clear message and writes nothing; markup is always escaped."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.support.teams import join_group
from workspace.models import Activity, Invitation, Membership, Role, Workspace

pytestmark = pytest.mark.django_db

CREATE = reverse("workspace:create")


def counts() -> tuple[int, int, int, int]:
    return (
        Workspace.objects.count(),
        Membership.objects.count(),
        Activity.objects.count(),
        Invitation.objects.count(),
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "slug": ""}, "This field is required."),
        ({"name": "   ", "slug": "blank"}, "This field is required."),
        ({"name": "x" * 65, "slug": "long"}, "at most 64 characters"),
        ({"name": "Long slug", "slug": "a" * 41}, "at most 40 characters"),
        ({"name": "<b>Bold</b>", "slug": "bold"}, "Names cannot contain"),
        ({"name": "Ok name", "slug": "<script>"}, "lowercase letters, digits and hyphens"),
        ({"name": "Ok name", "slug": "Has Caps"}, "lowercase letters, digits and hyphens"),
        ({"name": "Ok name", "slug": "-dash-first"}, "lowercase letters, digits and hyphens"),
        ({"name": "!!!", "slug": ""}, "no letters or digits"),
        ({"name": "vision", "slug": "fresh"}, "A workspace with this name already exists."),
        ({"name": "Fresh", "slug": "vision"}, "A workspace with this slug already exists."),
    ],
)
def test_bad_workspace_is_rejected_and_nothing_written(client, team, data, message):
    client.force_login(join_group(team.admin, "Workspace creators"))
    before = counts()
    response = client.post(CREATE, {"description": "", **data})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert counts() == before


def test_good_workspace_makes_creator_admin_and_logs_it(client, team):
    client.force_login(join_group(team.reader, "Workspace creators"))
    response = client.post(CREATE, {"name": "  Speech   models ", "slug": "", "description": ""})
    workspace = Workspace.objects.get(slug="speech-models")
    assert response["Location"] == reverse("workspace:overview", args=["speech-models"])
    assert workspace.name == "Speech models"
    assert Membership.objects.get(workspace=workspace, user=team.reader).role == Role.ADMIN
    assert workspace.activity.get().message == f"{team.reader} created Speech models"


def test_script_in_description_is_rendered_escaped(client, team):
    client.force_login(join_group(team.admin, "Workspace creators"))
    evil = "<script>alert('x')</script>"
    client.post(CREATE, {"name": "Escapes", "slug": "escapes", "description": evil})
    for url in (reverse("workspace:overview", args=["escapes"]), reverse("workspace:list")):
        body = client.get(url).content.decode()
        assert "<script>alert(" not in body
        assert "&lt;script&gt;alert(" in body


def test_settings_reject_bad_name_and_keep_the_old(client, team):
    client.force_login(team.admin)
    url = reverse("workspace:settings", args=[team.workspace.slug])
    before = counts()
    response = client.post(url, {"name": "", "description": "new"})
    assert "This field is required." in response.content.decode()
    assert Workspace.objects.get(pk=team.workspace.pk).description == ""
    assert counts() == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"identifier": "no body<b>", "role": "reader"}, "Enter a valid username or email"),
        ({"identifier": "", "role": "reader"}, "This field is required."),
        ({"identifier": "vision-reader", "role": "reader"}, "already a member"),
        ({"identifier": "vision-outsider", "role": "owner"}, "Select a valid choice"),
    ],
)
def test_bad_invitations_explain_themselves(client, team, data, message):
    client.force_login(team.admin)
    before = counts()
    response = client.post(reverse("workspace:member-add", args=[team.workspace.slug]), data)
    assert message in response.content.decode()
    assert counts() == before


def test_invalid_role_change_is_refused(client, team):
    client.force_login(team.admin)
    member = Membership.objects.get(workspace=team.workspace, user=team.reader)
    url = reverse("workspace:member-role", args=[team.workspace.slug, member.pk])
    response = client.post(url, {"role": "superuser"}, follow=True)
    assert "Choose one of the roles" in response.content.decode()
    assert Membership.objects.get(pk=member.pk).role == Role.READER
