"""Fixtures shared by the whole suite: named users per role, as in healthchecks' hc/test.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from workspace.models import Role, Workspace


@dataclass
class Team:
    workspace: Workspace
    admin: object
    contributor: object
    reader: object
    outsider: object


def make_team(slug: str = "vision") -> Team:
    workspace = WorkspaceFactory(name=slug.title(), slug=slug)
    admin = UserFactory(username=f"{slug}-admin")
    contributor = UserFactory(username=f"{slug}-contributor")
    reader = UserFactory(username=f"{slug}-reader")
    for user, role in ((admin, Role.ADMIN), (contributor, Role.CONTRIBUTOR), (reader, Role.READER)):
        MembershipFactory(workspace=workspace, user=user, role=role)
    # The outsider is an admin elsewhere: being an admin must not leak across workspaces.
    MembershipFactory(
        workspace=WorkspaceFactory(slug=f"{slug}-other"),
        user=UserFactory(username=f"{slug}-outsider"),
        role=Role.ADMIN,
    )
    outsider = UserFactory(username=f"{slug}-outsider")
    return Team(workspace, admin, contributor, reader, outsider)


@pytest.fixture
def team(db) -> Team:
    return make_team()
