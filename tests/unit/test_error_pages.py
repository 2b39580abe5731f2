"""Error pages keep the navigation and say what to do next (issue 15, point 4): a member
refused or lost inside a workspace keeps that workspace's menu; a 500 keeps it too, and
falls back to a plain page when the navigation itself cannot be drawn.

(That a non-member's 404 shows nothing of the workspace: tests/security/test_error_pages.py.)
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def workspace_nav(team) -> list[str]:
    """The links of the workspace's own menu in base.html."""
    slug = team.workspace.slug
    return [
        f'href="{reverse("compute:list", args=[slug])}"',
        f'href="{reverse("compute:jobs", args=[slug])}"',
        f'href="{reverse("compute:quota", args=[slug])}"',
        f'href="{reverse("workspace:members", args=[slug])}"',
    ]


def test_a_403_inside_a_workspace_keeps_its_menu_and_names_who_to_ask(client, team):
    client.force_login(team.reader)
    response = client.get(reverse("workspace:settings", args=[team.workspace.slug]))
    body = response.content.decode()
    assert response.status_code == 403
    assert "You are a reader in Vision" in body and "needs the admin role" in body
    for link in workspace_nav(team):
        assert link in body, link
    assert 'data-testid="workspace-switcher">\n            Vision' in body  # the current one
    assert "Ask an admin of Vision for a higher role (vision-admin)" in body
    assert "Back to Vision" in body


def test_a_403_from_an_action_inside_a_workspace_keeps_its_menu(client, team):
    """Refused by the view, past the decorator: a reader's POST of a quota cap."""
    client.force_login(team.reader)
    response = client.post(reverse("compute:quota", args=[team.workspace.slug]), {"limit": "1"})
    assert response.status_code == 403
    body = response.content.decode()
    for link in workspace_nav(team):
        assert link in body, link


@pytest.mark.parametrize(
    "path",
    [
        "/w/vision/compute/987654/",  # the view's 404: no such compute here
        "/w/vision/no-such-page/",  # no view at all: the address is mistyped
    ],
)
def test_a_404_inside_a_members_workspace_keeps_its_menu(client, team, path):
    client.force_login(team.reader)
    response = client.get(path)
    body = response.content.decode()
    assert response.status_code == 404
    for link in workspace_nav(team):
        assert link in body, link
    assert "Vision has no such page" in body
    assert "pick a page from the menu above" in body and "Back to Vision" in body


def test_a_404_outside_workspaces_says_what_to_do(client, team):
    client.force_login(team.reader)
    response = client.get("/no-such-page/")
    body = response.content.decode()
    assert response.status_code == 404
    assert 'data-testid="workspace-switcher"' in body  # the user's own menu
    assert f'href="{reverse("workspace:overview", args=["vision"])}"' in body  # their workspace
    assert "ask them to invite you" in body and "Back to your workspaces" in body
    assert workspace_nav(team)[0] not in body  # no current workspace: no workspace menu


@pytest.fixture
def failing_quota_page(monkeypatch):
    def broken(workspace):
        raise RuntimeError("a bug in the quota page")

    monkeypatch.setattr("compute.views.quota.quota.overview", broken)


def test_the_500_page_keeps_the_workspace_menu(team, failing_quota_page):
    client = Client(raise_request_exception=False)
    client.force_login(team.reader)
    response = client.get(reverse("compute:quota", args=[team.workspace.slug]))
    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in body
    assert "If it keeps happening, tell whoever runs this Hangar" in body
    for link in workspace_nav(team):
        assert link in body, link
    assert 'data-testid="bell"' in body  # the rest of the user's navigation too


def test_the_500_page_falls_back_to_the_plain_one_when_the_menu_fails(
    team, failing_quota_page, monkeypatch
):
    """The menu reads the database; when that is what broke, the plain page still answers."""

    def database_down(user):
        raise RuntimeError("the database is down")

    monkeypatch.setattr("workspace.context_processors.workspaces_for", database_down)
    client = Client(raise_request_exception=False)
    client.force_login(team.reader)
    response = client.get(reverse("compute:quota", args=[team.workspace.slug]))
    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in body and "Try again in a moment" in body
    assert 'data-testid="workspace-switcher"' not in body
