"""The quota what-if at its boundaries, and the quota page."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from compute.actions import computes as actions
from compute.models import FamilyQuota, VmFamily, VmSize
from tests.support.factories import ComputeFactory, NodeFactory
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


# The quota line paints the right answer on first paint (issue 15, point 4): the form's
# own values, no request needed, so no "Pick a VM size…" next to a size already shown.


def quota_line(body: str) -> str:
    start = body.rindex("<div", 0, body.index('data-testid="what-if-line"'))
    return body[start : body.index("</div></div>", start)]


def test_the_job_form_paints_the_line_of_its_preselected_target(client, team, dsv2):
    from tests.support.factories import ComputeFactory

    cluster = ComputeFactory(workspace=team.workspace, vm_size=dsv2)
    client.force_login(team.contributor)
    url = reverse("compute:job-submit", args=[team.workspace.slug])
    line = quota_line(client.get(url, {"compute": cluster.pk}).content.decode())
    assert "Uses 4 of your 8 free DSv2 cores." in line
    assert "Pick a VM size" not in line


def test_a_form_posted_back_with_errors_paints_the_line_for_its_values(client, team, dsv2):
    client.force_login(team.contributor)
    url = reverse("compute:create", args=[team.workspace.slug, "cluster"])
    posted = {"name": "", "vm_size": dsv2.pk, "tier": "dedicated", "min_nodes": 3}
    response = client.post(url, {**posted, "max_nodes": 3, "idle_seconds_before_scaledown": 120})
    assert response.status_code == 200  # the name is missing: the form again
    line = quota_line(response.content.decode())
    assert "Short 4 cores: needs 12 DSv2 cores, limit 8, used 0." in line
    assert f"family={dsv2.family.pk}&amp;cores=12" in line


def test_an_empty_form_paints_its_line_and_asks_only_when_it_changes(client, team):
    client.force_login(team.contributor)
    body = client.get(reverse("compute:create", args=[team.workspace.slug, "instance"]))
    line = quota_line(body.content.decode())
    assert "Pick a VM size to see how it sits in your quota." in line
    # No request on load (whose late answer said "Pick a VM size…" after a pick); a change
    # replaces any answer still on its way.
    assert 'hx-trigger="change from:closest form"' in line and 'hx-sync="this:replace"' in line


# An unapproved restricted family (issue 15, point 4): "needs approval" and a way to ask,
# never "0 of 0 cores" and a form to cap it at 0.


@pytest.fixture
def ncsv3(team) -> VmFamily:
    family = VmFamily.objects.get(name="NCsv3")
    assert family.restricted
    FamilyQuota.objects.create(workspace=team.workspace, family=family, limit=0, approved=0)
    return family


def family_line(client, team, family) -> str:
    body = client.get(reverse("compute:quota", args=[team.workspace.slug])).content.decode()
    start = body.index(f'data-testid="quota-{family.name}"')
    end = body.find('data-testid="quota-', start + 1)  # the next family, or the requests
    return body[start:end]


def test_an_unapproved_restricted_family_reads_needs_approval_with_a_request_link(
    client, team, ncsv3
):
    client.force_login(team.admin)
    line = family_line(client, team, ncsv3)
    assert "needs approval" in line
    request = reverse("compute:quota-request", args=[team.workspace.slug])
    assert f'<a href="{request}?family={ncsv3.pk}">Request cores</a>' in line
    assert "0 of 0 cores" not in line
    assert f'id="limit-{ncsv3.pk}"' not in line and "Cap at" not in line


def test_a_reader_sees_needs_approval_without_a_link_they_could_not_use(client, team, ncsv3):
    client.force_login(team.reader)
    line = family_line(client, team, ncsv3)
    assert "needs approval" in line and "A contributor or admin can request cores." in line
    assert "Request cores" not in line and "0 of 0 cores" not in line


def test_a_pending_request_is_said_instead_of_asking_again(client, team, ncsv3):
    from compute.actions.quota import request_quota

    access = get_access(team.contributor, team.workspace.slug)
    request_quota(access, family=ncsv3, cores=12, justification="Training runs")
    client.force_login(team.contributor)
    line = family_line(client, team, ncsv3)
    assert "needs approval" in line and "Request sent; site admins decide." in line
    assert "Request cores" not in line


def test_an_approved_restricted_family_has_its_bar_and_cap(client, team, ncsv3):
    FamilyQuota.objects.filter(family=ncsv3).update(limit=12, approved=12)
    client.force_login(team.admin)
    line = family_line(client, team, ncsv3)
    assert "0 of 12 cores" in line and f'id="limit-{ncsv3.pk}"' in line
    assert "needs approval" not in line


def test_the_quota_page_reads_usage_in_one_query_however_many_families(client, team):
    """One usage query for every family on the page, not one per family (27 queries)."""
    sizes = []
    for family in VmFamily.objects.filter(restricted=False, serves_clusters=True)[:5]:
        sizes.append(family.sizes.order_by("vcpus").first())
    url = reverse("compute:quota", args=[team.workspace.slug])
    client.force_login(team.admin)

    def in_use(size: VmSize) -> None:
        NodeFactory(compute=ComputeFactory(workspace=team.workspace, vm_size=size))

    in_use(sizes[0])
    client.get(url)  # caches filled once per process are not the page's
    with CaptureQueriesContext(connection) as one_family:
        client.get(url)
    for size in sizes[1:]:
        in_use(size)
    with CaptureQueriesContext(connection) as five_families:
        page = client.get(url)

    assert len(five_families.captured_queries) == len(one_family.captured_queries)
    used = {bar["family"].name: bar["used"] for bar in page.context["bars"]}
    assert used == {size.family.name: size.vcpus for size in sizes}
