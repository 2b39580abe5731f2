"""Two admins acting at once must never leave a workspace without an admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from tests.integration.helpers import run_together
from tests.support.teams import make_team
from workspace.access import get_access
from workspace.actions import workspaces as actions
from workspace.models import Membership, Role

# How the loser of a race between two admins is refused: its role read before the lock
# (PermissionDenied), under the lock (ValidationError), or its membership already gone when
# it looks the workspace up (Http404). Anything else (a deadlock, a crash) fails the test.
REFUSED = (ValidationError, PermissionDenied, Http404)


def one_won_one_refused(results: list[object]) -> tuple[object, Exception]:
    """Exactly one call returned and the other was refused the expected way: a thread that
    crashed with anything else must not pass as the refused one."""
    won = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, REFUSED)]
    assert len(won) == 1 and len(refused) == 1, results
    return won[0], refused[0]


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
    won, refused = one_won_one_refused(results)
    assert isinstance(won, Membership) and won.role == Role.READER
    assert isinstance(refused, ValidationError | PermissionDenied), results
    assert any(
        phrase in str(refused) for phrase in ("no longer an admin", "last admin", "admin role")
    )


def test_two_admins_removing_each_other_leave_one_admin():
    team = make_team("removal")
    Membership.objects.filter(workspace=team.workspace, user=team.contributor).update(
        role=Role.ADMIN
    )
    first = Membership.objects.get(workspace=team.workspace, user=team.admin)
    second = Membership.objects.get(workspace=team.workspace, user=team.contributor)
    slug = team.workspace.slug
    results = run_together(
        lambda: actions.remove_member(get_access(team.admin, slug), membership_id=second.pk),
        lambda: actions.remove_member(get_access(team.contributor, slug), membership_id=first.pk),
    )
    assert Membership.objects.filter(workspace=team.workspace, role=Role.ADMIN).count() == 1
    won, _ = one_won_one_refused(results)
    # The one removed is the one the winner named, and only that one is gone.
    assert isinstance(won, Membership)
    assert not Membership.objects.filter(pk=won.pk).exists()
    assert Membership.objects.filter(pk__in=[first.pk, second.pk]).count() == 1


def test_two_tabs_naming_a_compute_in_different_case_make_one(catalog):
    """ "Train" and "train" would read as one compute on every page: the database, not
    only the form, keeps names unique whatever their case."""
    from compute.actions import computes as compute_actions
    from compute.models import Compute, VmSize

    team = make_team("cases")
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_DS3_v2")
    results = run_together(
        *[
            lambda name=name: compute_actions.create_cluster(
                access, name=name, vm_size=size, min_nodes=0, max_nodes=1
            )
            for name in ("Train", "train")
        ]
    )
    assert Compute.objects.filter(workspace=team.workspace, name__iexact="train").count() == 1
    won, refused = one_won_one_refused(results)
    assert isinstance(won, Compute) and Compute.objects.filter(pk=won.pk).exists()
    assert isinstance(refused, ValidationError) and "already exists" in str(refused)
