"""Quotas a user meets outside the family bars: the low-priority pool, the workspace's
limit on computes, and the cores an instance takes again when it starts (by a click or
by its schedule). Through the pages where a user meets them, the reconciler on the no-op
driver standing in for the nodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from compute import quota
from compute.actions import computes as actions
from compute.actions.idle import add_schedule
from compute.controllers.idle import idle_sweep
from compute.controllers.reconcile import reconcile
from compute.drivers import Driver, build_driver
from compute.models import (
    Compute,
    ComputeState,
    EventVerb,
    FamilyQuota,
    Node,
    NodeState,
    Tier,
    VmSize,
    WorkspaceQuota,
)
from tests.support.factories import ComputeFactory
from tests.support.teams import Team
from workspace.access import get_access
from workspace.models import Notification, Workspace

pytestmark = pytest.mark.django_db
S = ComputeState
T0 = datetime(2026, 3, 27, 7, 0, tzinfo=UTC)  # a Friday morning


@pytest.fixture
def noop(settings) -> Driver:
    settings.HANGAR_DRIVER = "noop"
    return build_driver("noop", settings.HANGAR_SITE)


@pytest.fixture
def ds3() -> VmSize:
    return VmSize.objects.get(name="Standard_DS3_v2")  # 4 cores, family DSv2


def set_pool(workspace: Workspace, *, low_priority: int = 96, max_computes: int = 50) -> None:
    WorkspaceQuota.objects.update_or_create(
        workspace=workspace,
        defaults={
            "low_priority_limit": low_priority,
            "low_priority_approved": low_priority,
            "max_computes": max_computes,
        },
    )


def set_family(workspace: Workspace, size: VmSize, cores: int) -> None:
    FamilyQuota.objects.update_or_create(
        workspace=workspace, family=size.family, defaults={"limit": cores, "approved": cores}
    )


def live_nodes(cluster: Compute) -> int:
    return cluster.nodes.filter(state__in=(NodeState.PREPARING, NodeState.IDLE)).count()


def test_low_priority_nodes_draw_on_the_pool_not_the_family(
    client: Client, team: Team, ds3: VmSize, noop: Driver, django_capture_on_commit_callbacks
) -> None:
    """A low-priority cluster scales only as far as the pool allows, whatever its family
    has left; the cluster says why it holds, and the quota page counts the pool."""
    set_pool(team.workspace, low_priority=8)
    set_family(team.workspace, ds3, 0)  # no dedicated DSv2 at all: not what limits here
    client.force_login(team.contributor)
    create = reverse("compute:create", args=[team.workspace.slug, "cluster"])
    form = {
        "name": "spot",
        "vm_size": ds3.pk,
        "tier": Tier.LOW_PRIORITY,
        "min_nodes": 3,
        "max_nodes": 3,
        "idle_seconds_before_scaledown": 120,
    }
    with django_capture_on_commit_callbacks():
        assert client.post(create, form).status_code == 302
    cluster = Compute.objects.get(name="spot")
    reconcile(cluster.pk, noop)
    assert live_nodes(cluster) == 2  # 8 cores of 12 wanted
    cluster.refresh_from_db()
    assert cluster.autoscale_note == (
        "Not scaling to 3: Short 4 cores: needs 12 low-priority cores, limit 8, used 0. "
        "Scaling to 2 instead."
    )
    detail = client.get(cluster.get_absolute_url()).content.decode()
    assert "Short 4 cores: needs 12 low-priority cores" in detail
    assert quota.dedicated_used(team.workspace, ds3.family) == 0
    page = client.get(reverse("compute:quota", args=[team.workspace.slug])).content.decode()
    assert "8 of 8 cores" in page  # the pool bar
    # More pool cores (a quota approved): the cluster reaches its min nodes.
    set_pool(team.workspace, low_priority=96)
    reconcile(cluster.pk, noop)
    assert live_nodes(cluster) == 3


def test_the_compute_limit_refuses_the_next_creation_on_the_form(
    client: Client, team: Team, ds3: VmSize, noop: Driver, django_capture_on_commit_callbacks
) -> None:
    """max_computes counts every compute of the workspace that is not deleted, attached
    ones included; the form says so, creates nothing, and a deletion makes room."""
    set_pool(team.workspace, max_computes=2)
    ComputeFactory(workspace=team.workspace, name="old", state=S.DELETED)  # does not count
    ComputeFactory(workspace=team.workspace, attached=True, name="my-vm")
    client.force_login(team.contributor)
    create = reverse("compute:create", args=[team.workspace.slug, "cluster"])
    form = {
        "name": "second",
        "vm_size": ds3.pk,
        "tier": Tier.DEDICATED,
        "min_nodes": 0,
        "max_nodes": 1,
        "idle_seconds_before_scaledown": 120,
    }
    with django_capture_on_commit_callbacks():
        assert client.post(create, form).status_code == 302
    refused = client.post(create, {**form, "name": "third"})
    assert "Vision has reached its limit of 2 computes." in refused.content.decode()
    assert not Compute.objects.filter(name="third").exists()
    page = client.get(reverse("compute:quota", args=[team.workspace.slug])).content.decode()
    assert "2 of 2" in page

    second = Compute.objects.get(name="second")
    with django_capture_on_commit_callbacks():
        actions.delete_compute(get_access(team.admin, team.workspace.slug), second.pk)
    reconcile(second.pk, noop)
    assert Compute.objects.get(pk=second.pk).state == S.DELETED
    with django_capture_on_commit_callbacks():
        assert client.post(create, {**form, "name": "third"}).status_code == 302


@pytest.fixture
def parked(team: Team, ds3: VmSize) -> Compute:
    """A stopped instance of the contributor's, while two running ones fill the 8 DSv2
    cores of the workspace: starting it again would need 4 more."""
    set_family(team.workspace, ds3, 8)
    for name in ("left", "right"):
        ComputeFactory(workspace=team.workspace, instance=True, name=name)
    return ComputeFactory(
        workspace=team.workspace,
        stopped=True,
        name="parked",
        created_by=team.contributor,
        assigned_to=team.contributor,
    )


def test_starting_a_stopped_instance_checks_the_quota_again(
    client: Client, team: Team, parked: Compute, noop: Driver, django_capture_on_commit_callbacks
) -> None:
    """A stopped instance holds no cores, so they may be gone when it starts: the Start
    button says how many are short and the instance stays stopped; once cores are free
    it starts."""
    client.force_login(team.contributor)
    start = reverse("compute:action", args=[team.workspace.slug, parked.pk, "start"])
    refused = client.post(start, follow=True).content.decode()
    assert "Cannot start parked: Short 4 cores: needs 4 DSv2 cores, limit 8, used 8." in refused
    assert Compute.objects.get(pk=parked.pk).state == S.STOPPED
    assert not parked.events.filter(verb=EventVerb.START_REQUESTED).exists()

    left = Compute.objects.get(name="left")
    with django_capture_on_commit_callbacks():
        actions.instance_verb(get_access(team.admin, team.workspace.slug), left.pk, "stop")
    reconcile(left.pk, noop)
    assert Compute.objects.get(pk=left.pk).state == S.STOPPED
    with django_capture_on_commit_callbacks():
        done = client.post(start, follow=True).content.decode()
    assert "parked: start requested." in done
    assert Compute.objects.get(pk=parked.pk).state == S.STARTING


def test_a_scheduled_start_checks_the_quota_like_a_click(
    team: Team, parked: Compute, ds3: VmSize, django_capture_on_commit_callbacks
) -> None:
    """The 08:00 start of a schedule must not take cores the workspace no longer has: it
    is skipped with the reason in the event log and a notification to the owner, and the
    next morning's start, with cores free again, goes ahead."""
    access = get_access(team.contributor, team.workspace.slug)
    with time_machine.travel(T0, tick=False):
        schedule = add_schedule(access, parked.pk, action="start", cron="0 8 * * *", tz="UTC")
    eight = T0 + timedelta(hours=1)
    with time_machine.travel(eight, tick=False), django_capture_on_commit_callbacks():
        report = idle_sweep()
    assert report.skipped == [schedule.pk] and report.to_reconcile == []
    assert Compute.objects.get(pk=parked.pk).state == S.STOPPED
    assert quota.dedicated_used(team.workspace, ds3.family) == 8
    skipped = parked.events.get(verb=EventVerb.SCHEDULE_SKIPPED)
    assert skipped.message == (
        "Skipped the scheduled start of Fri 08:00 UTC: "
        "Short 4 cores: needs 4 DSv2 cores, limit 8, used 8."
    )
    note = Notification.objects.get(user=team.contributor)
    assert note.title == "parked did not start at its scheduled time"
    assert "Short 4 cores" in note.body

    Compute.objects.filter(name="left").update(state=S.STOPPED)  # cores free again
    with time_machine.travel(eight + timedelta(days=1), tick=False):
        with django_capture_on_commit_callbacks():
            report = idle_sweep()
    assert report.fired == [(schedule.pk, "start")] and report.to_reconcile == [parked.pk]
    assert Compute.objects.get(pk=parked.pk).state == S.STARTING
    assert parked.events.filter(verb=EventVerb.SCHEDULED_START).count() == 1


def test_a_scheduled_start_of_a_running_instance_needs_no_cores(
    team: Team, ds3: VmSize, django_capture_on_commit_callbacks
) -> None:
    """Already running at the start time, with the family full (by itself among others):
    nothing to start, nothing to refuse."""
    set_family(team.workspace, ds3, 4)
    box = ComputeFactory(workspace=team.workspace, instance=True, name="box")
    access = get_access(team.contributor, team.workspace.slug)
    with time_machine.travel(T0, tick=False):
        add_schedule(access, box.pk, action="start", cron="0 8 * * *", tz="UTC")
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        with django_capture_on_commit_callbacks():
            report = idle_sweep()
    assert report.skipped == []
    assert box.events.get(verb=EventVerb.SCHEDULE_IDLE).message == (
        "Schedule for Fri 08:00 UTC: box was running."
    )
    assert not Node.objects.exists()
