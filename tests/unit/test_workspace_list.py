"""The workspace list (issue 15, point 2): every workspace shows all its members, not only
the viewer's own membership, and the list costs the same queries for 1 workspace or many."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.support.factories import MembershipFactory, UserFactory, WorkspaceFactory
from workspace.access import workspaces_for
from workspace.models import Role

pytestmark = pytest.mark.django_db


def rows(body: str) -> dict[str, tuple[str, int]]:
    """{workspace slug: (the viewer's role, the member count)} as the page shows them."""
    found = re.findall(
        r'<div class="small text-body-secondary">([a-z0-9-]+).*?'
        r'role-[a-z]+">([A-Za-z]+)</span></td>\s*<td class="text-end">(\d+)</td>',
        body,
        re.S,
    )
    return {slug: (role, int(count)) for slug, role, count in found}


def workspace_with(slug: str, viewer, viewer_role: str, others: int):
    workspace = WorkspaceFactory(name=slug.title(), slug=slug)
    MembershipFactory(workspace=workspace, user=viewer, role=viewer_role)
    for _ in range(others):
        MembershipFactory(workspace=workspace, user=UserFactory(), role=Role.CONTRIBUTOR)
    return workspace


def test_each_workspace_counts_all_its_members(client, team):
    body = client_get(client, team.reader)
    assert rows(body) == {"vision": ("Reader", 3)}  # admin, contributor, reader
    viewer = team.reader
    workspace_with("alpha", viewer, Role.ADMIN, others=0)
    workspace_with("beta", viewer, Role.CONTRIBUTOR, others=4)
    assert rows(client_get(client, viewer)) == {
        "vision": ("Reader", 3),
        "alpha": ("Admin", 1),
        "beta": ("Contributor", 5),
    }


def test_the_list_costs_the_same_queries_for_one_workspace_or_many(
    client, team, django_assert_num_queries
):
    client.force_login(team.reader)
    client.get(reverse("workspace:list"))  # warm: the session's first read
    with CaptureQueriesContext(connection) as one:
        client.get(reverse("workspace:list"))
    for i in range(6):
        workspace_with(f"many-{i}", team.reader, Role.READER, others=i + 1)
    with django_assert_num_queries(len(one.captured_queries)):
        body = client.get(reverse("workspace:list")).content.decode()
    assert len(rows(body)) == 7
    # The list itself is one query: the counts and the viewer's role come with it.
    listing = [q for q in one.captured_queries if "COUNT" in q["sql"] and "role" in q["sql"]]
    assert len(listing) == 1


def test_the_visibility_subquery_still_shows_only_my_workspaces(team):
    assert [w.slug for w in workspaces_for(team.outsider)] == ["vision-other"]
    assert [w.slug for w in workspaces_for(team.reader)] == ["vision"]
    # An aggregate over memberships sees every member, not only the viewer's row.
    assert workspaces_for(team.admin).annotate(n=Count("memberships")).get().n == 3


def client_get(client, user) -> str:
    client.force_login(user)
    response = client.get(reverse("workspace:list"))
    assert response.status_code == 200
    return response.content.decode()
