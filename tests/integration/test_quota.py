"""Quotas under concurrency (PostgreSQL in CI) and the approval flow through the Django
admin's own views."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.urls import reverse

from compute import quota
from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.controllers.reconcile import reconcile
from compute.models import (
    Compute,
    ComputeState,
    FamilyQuota,
    Node,
    QuotaRequest,
    RequestStatus,
    VmFamily,
    VmSize,
    WorkspaceQuota,
)
from tests.integration.helpers import driver_named, run_together
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access
from workspace.models import Notification

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def set_limit(workspace, family_name: str, cores: int) -> None:
    family = VmFamily.objects.get(name=family_name)
    FamilyQuota.objects.update_or_create(
        workspace=workspace, family=family, defaults={"limit": cores, "approved": cores}
    )


def test_fifty_concurrent_creations_against_a_quota_for_ten(catalog, workers):
    workers.stop()  # creations only: no worker needed, none racing
    team = make_team("fifty")
    WorkspaceQuota.objects.create(
        workspace=team.workspace, low_priority_limit=0, low_priority_approved=0, max_computes=100
    )
    set_limit(team.workspace, "DSv2", 40)  # Standard_DS3_v2 has 4 cores: 10 fit
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_DS3_v2")
    results = run_together(
        *[
            (lambda i=i: actions.create_instance(access, name=f"box-{i}", vm_size=size))
            for i in range(50)
        ]
    )
    made = [r for r in results if isinstance(r, Compute)]
    refused = [r for r in results if isinstance(r, ValidationError)]
    assert len(made) == 10 and len(refused) == 40, [
        r for r in results if not isinstance(r, Compute | ValidationError)
    ]
    assert all("Short 4 cores" in " ".join(r.messages) for r in refused)
    assert quota.dedicated_used(team.workspace, size.family) == 40
    assert Compute.objects.filter(workspace=team.workspace).count() == 10


def test_two_clusters_sharing_a_family_quota_never_exceed_it(catalog, workers, settings):
    workers.stop()  # this test runs the reconciler itself, two at once
    settings.HANGAR_DRIVER = "local"
    driver = driver_named("local")
    team = make_team("sharing")
    set_limit(team.workspace, "DSv2", 24)  # 6 nodes of 4 cores
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_DS3_v2")
    try:
        clusters = [
            actions.create_cluster(access, name=name, vm_size=size, max_nodes=4)
            for name in ("left", "right")
        ]
        for cluster in clusters:
            reconcile(cluster.pk, driver)  # created → steady at zero nodes, the real path
            assert Compute.objects.get(pk=cluster.pk).state == ComputeState.STEADY
            for i in range(4):
                submit_job(
                    access, compute_id=cluster.pk, name=f"{cluster.name}-{i}", command="sleep 30"
                )
        outcomes = run_together(*[(lambda c=c: reconcile(c.pk, driver)) for c in clusters])
        assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
        live = Node.objects.filter(compute__in=clusters, state__in=("preparing", "idle", "running"))
        assert live.count() == 6
        assert quota.dedicated_used(team.workspace, size.family) == 24
        blocked = [
            c
            for c in Compute.objects.filter(pk__in=[c.pk for c in clusters])
            if c.nodes.filter(state__in=("idle", "running")).count() < 4
        ]
        assert len(blocked) == 1, [(c.name, c.autoscale_note) for c in blocked]
        # What it saw depends on which of the two claimed first; the note must add up.
        note = re.fullmatch(
            r"Not scaling to 4: Short (\d+) cores: needs (\d+) DSv2 cores, limit 24, "
            r"used (\d+)\. Scaling to (\d+) instead\.",
            blocked[0].autoscale_note,
        )
        assert note, blocked[0].autoscale_note
        short, need, used, scaled_to = map(int, note.groups())
        assert short == need - (24 - used) > 0
        assert scaled_to == blocked[0].nodes.filter(state__in=("idle", "running")).count() == 2
        # Cores are freed: the other cluster goes away; the blocked one proceeds.
        other = next(c for c in clusters if c.pk != blocked[0].pk)
        actions.delete_compute(access, other.pk)
        reconcile(other.pk, driver)
        reconcile(blocked[0].pk, driver)
        assert blocked[0].nodes.filter(state__in=("idle", "running")).count() == 4
    finally:
        remove_all_nodes()


def admin_client(client):
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    return client


def test_a_restricted_family_needs_an_approval_given_in_the_admin(client, catalog, workers):
    workers.stop()
    team = make_team("gpu")
    access = get_access(team.contributor, team.workspace.slug)
    nc6 = VmSize.objects.get(name="Standard_NC6s_v3")
    with pytest.raises(ValidationError, match="NCsv3 is a restricted family"):
        actions.create_cluster(access, name="gpus", vm_size=nc6, max_nodes=2)
    from compute.actions.quota import request_quota

    made = request_quota(access, family=nc6.family, cores=12, justification="Fine-tuning a ViT")
    # A non-staff user cannot reach the admin, let alone its actions.
    client.force_login(team.admin)
    changelist = reverse("admin:compute_quotarequest_changelist")
    assert client.get(changelist).status_code == 302
    admin_client(client)
    page = client.post(changelist, {"action": "approve", "_selected_action": [made.pk]})
    assert "Approving raises each workspace" in page.content.decode()  # asks first
    assert QuotaRequest.objects.get(pk=made.pk).status == RequestStatus.PENDING
    done = client.post(
        changelist,
        {"action": "approve", "_selected_action": [made.pk], "apply": "1", "reason": "ok"},
        follow=True,
    )
    assert f"Approved request #{made.pk}." in done.content.decode()
    assert quota.family_row(team.workspace, nc6.family).limit == 12
    cluster = actions.create_cluster(access, name="gpus", vm_size=nc6, max_nodes=2)
    assert cluster.pk
    assert Notification.objects.filter(user=team.contributor, title__contains="approved").exists()
    again = client.post(
        changelist,
        {"action": "reject", "_selected_action": [made.pk], "apply": "1", "reason": "no"},
        follow=True,
    )
    assert f"Request #{made.pk} was already approved." in again.content.decode()


def test_a_rejection_changes_nothing_and_says_why(client, catalog, workers):
    workers.stop()
    team = make_team("nope")
    access = get_access(team.contributor, team.workspace.slug)
    family = VmFamily.objects.get(name="NDv2")
    from compute.actions.quota import request_quota

    made = request_quota(access, family=family, cores=40, justification="LLM pretraining")
    changelist = reverse("admin:compute_quotarequest_changelist")
    admin_client(client)
    missing = client.post(
        changelist,
        {"action": "reject", "_selected_action": [made.pk], "apply": "1", "reason": ""},
        follow=True,
    )
    assert "Give the requester a reason" in missing.content.decode()
    client.post(
        changelist,
        {
            "action": "reject",
            "_selected_action": [made.pk],
            "apply": "1",
            "reason": "No V100s free this quarter.",
        },
    )
    assert QuotaRequest.objects.get(pk=made.pk).status == RequestStatus.REJECTED
    assert quota.family_row(team.workspace, family).limit == 0
    note = Notification.objects.get(user=team.contributor, title__contains="rejected")
    assert "No V100s free this quarter." in note.body
    # Someone of another workspace neither sees nor requests for this one.
    other = make_team("stranger")
    client.force_login(other.admin)
    assert client.get(reverse("compute:quota", args=[team.workspace.slug])).status_code == 404
    assert (
        client.post(
            reverse("compute:quota-request", args=[team.workspace.slug]),
            {"family": family.pk, "cores": 80, "justification": "mine"},
        ).status_code
        == 404
    )
    assert QuotaRequest.objects.count() == 1
