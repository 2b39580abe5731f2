"""Named users per role, as in healthchecks' hc/test.py: an admin, a contributor, a reader
of one workspace, and an outsider (an admin elsewhere); site powers for a user."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.factories import MembershipFactory, UserFactory, WorkspaceFactory
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


def make_site_staff(user: object) -> object:
    """Site staff holding the permission to attach the local computer."""
    from django.contrib.auth.models import Permission

    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.user_permissions.add(Permission.objects.get(codename="attach_local_computer"))
    return type(user).objects.get(pk=user.pk)  # a fresh object: no cached permissions


def join_group(user: object, group: str) -> object:
    """A site power through one of the groups the migrations make ("Workspace creators",
    "Quota approvers"); returns a fresh object, since Django caches permissions."""
    from django.contrib.auth.models import Group

    from workspace.sitepowers import ensure_site_groups

    ensure_site_groups()  # a transactional test's flush drops what migrations made
    user.groups.add(Group.objects.get(name=group))
    return type(user).objects.get(pk=user.pk)
