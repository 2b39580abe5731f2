"""Two admins acting at once must never leave a workspace without an admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from tests.integration.helpers import run_together
from tests.support.teams import make_team
from workspace.access import get_access
from workspace.actions import workspaces as actions
from workspace.models import Membership, Role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("attempt", range(3))
def test_two_admins_demoting_each_other_leave_one_admin(attempt):
    team = make_team(f"race{attempt}")
    Membership.objects.filter(workspace=team.workspace, user=team.contributor).update(
        role=Role.ADMIN
    )
    first = Membership.objects.get(workspace=team.workspace, user=team.admin)
    second = Membership.objects.get(workspace=team.workspace, user=team.contributor)
    slug = team.workspace.slug

    results = run_together(
        lambda: actions.change_role(
            get_access(team.admin, slug), membership_id=second.pk, role=Role.READER
        ),
        lambda: actions.change_role(
            get_access(team.contributor, slug), membership_id=first.pk, role=Role.READER
        ),
    )
    # The first demotion wins; the second actor is no longer an admin and is refused,
    # whether its role is read before (PermissionDenied) or under the lock (ValidationError).
    assert Membership.objects.filter(workspace=team.workspace, role=Role.ADMIN).count() == 1
    errors = [r for r in results if isinstance(r, ValidationError | PermissionDenied)]
    assert len(errors) == 1, results
    assert any(
        phrase in str(errors[0]) for phrase in ("no longer an admin", "last admin", "admin role")
    )


def test_two_admins_removing_each_other_leave_one_admin():
    team = make_team("removal")
    Membership.objects.filter(workspace=team.workspace, user=team.contributor).update(
        role=Role.ADMIN
    )
    first = Membership.objects.get(workspace=team.workspace, user=team.admin)
    second = Membership.objects.get(workspace=team.workspace, user=team.contributor)
    slug = team.workspace.slug
    run_together(
        lambda: actions.remove_member(get_access(team.admin, slug), membership_id=second.pk),
        lambda: actions.remove_member(get_access(team.contributor, slug), membership_id=first.pk),
    )
    assert Membership.objects.filter(workspace=team.workspace, role=Role.ADMIN).count() == 1
