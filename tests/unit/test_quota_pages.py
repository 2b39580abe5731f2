"""The quota what-if at its boundaries, and the quota page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.actions import computes as actions
from compute.models import FamilyQuota, VmFamily, VmSize
from workspace.access import get_access

pytestmark = pytest.mark.django_db


@pytest.fixture
def dsv2(team):
    family = VmFamily.objects.get(name="DSv2")
    FamilyQuota.objects.create(workspace=team.workspace, family=family, limit=8, approved=8)
    return VmSize.objects.get(name="Standard_DS3_v2")  # 4 cores


def what_if(client, team, **params) -> str:
    url = reverse("compute:what-if", args=[team.workspace.slug])
    return client.get(url, params).content.decode()


def test_what_if_at_the_boundaries(client, team, dsv2):
    client.force_login(team.contributor)
    exact = what_if(client, team, vm_size=dsv2.pk, min_nodes=2)
    assert "Uses 8 of your 8 free DSv2 cores." in exact
    short = what_if(client, team, vm_size=dsv2.pk, min_nodes=3)
    assert "Short 4 cores: needs 12 DSv2 cores, limit 8, used 0." in short
    assert "family=" in short and "cores=12" in short  # the request form, prefilled


def test_what_if_counts_what_is_in_use(client, team, dsv2, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        actions.create_instance(
            get_access(team.admin, team.workspace.slug), name="box", vm_size=dsv2
        )
    client.force_login(team.contributor)
    assert "Uses 4 of your 4 free DSv2 cores." in what_if(client, team, vm_size=dsv2.pk)
    assert "Short 4 cores" in what_if(client, team, vm_size=dsv2.pk, min_nodes=2)


def test_quota_page_shows_bars_and_admins_cannot_raise_above_approved(client, team, dsv2):
    client.force_login(team.admin)
    url = reverse("compute:quota", args=[team.workspace.slug])
    assert "0 of 8 cores" in client.get(url).content.decode()
    response = client.post(url, {"family": dsv2.family.pk, "limit": "9"}, follow=True)
    assert "Choose 0 to 8 DSv2 cores" in response.content.decode()
    client.post(url, {"family": dsv2.family.pk, "limit": "4"})
    assert FamilyQuota.objects.get(family=dsv2.family).limit == 4
    client.force_login(team.contributor)
    assert client.post(url, {"family": dsv2.family.pk, "limit": "8"}).status_code == 403


def test_a_scale_up_claims_only_what_fits(team, dsv2):
    """The autoscaler's claim at its boundaries (inside the test's transaction: the plain
    path; test_quota_functions.py runs PostgreSQL's one-statement path too)."""
    from compute import quota

    access = get_access(team.admin, team.workspace.slug)
    cluster = actions.create_cluster(access, name="pool", vm_size=dsv2, max_nodes=4)
    fit, first, result = quota.claim_nodes(cluster, 3)  # 12 cores wanted, 8 allowed
    assert (fit, result.limit, result.used, result.short) == (2, 8, 0, 4)
    assert sorted(cluster.nodes.values_list("index", flat=True)) == [first, first + 1]
    assert cluster.nodes.filter(state="preparing").count() == 2
    fit, _, result = quota.claim_nodes(cluster, 1)  # exactly full now
    assert (fit, result.used, result.message) == (
        0,
        8,
        "Short 4 cores: needs 4 DSv2 cores, limit 8, used 8.",
    )
    cluster.nodes.filter(index=first).update(state="leaving")  # cores freed
    fit, then, _ = quota.claim_nodes(cluster, 1)
    assert (fit, then) == (1, first + 2)  # numbers are never reused
