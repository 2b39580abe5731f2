"""The reconcile lease names its owner; only a provably dead owner's hold is taken over."""

from __future__ import annotations

import dataclasses
import subprocess
import time

import pytest

from compute.actions import computes as actions
from compute.controllers import lease
from compute.models import Compute, VmSize
from workspace.access import get_access


@pytest.fixture
def compute(team, django_capture_on_commit_callbacks) -> Compute:
    access = get_access(team.admin, team.workspace.slug)
    with django_capture_on_commit_callbacks():
        return actions.create_cluster(
            access, name="held", vm_size=VmSize.objects.get(name="Standard_DS3_v2"), max_nodes=1
        )


def dead_process_owner() -> str:
    """An owner whose process ran on this machine and has exited."""
    gone = subprocess.Popen(["sleep", "5"])
    started = lease.process_start_time(gone.pid)
    gone.kill()
    gone.wait()
    return lease.Owner(lease.host_name(), lease.boot_id(), gone.pid, started, "x").text()


def test_a_live_owners_hold_is_respected(compute):
    holder = lease.new_owner()  # this very process: alive
    assert lease.take(compute.pk, holder)
    assert not lease.take(compute.pk, lease.new_owner())
    assert Compute.objects.get(pk=compute.pk).lease_owner == holder


def test_a_dead_owners_hold_is_taken_over_at_once(compute):
    assert lease.take(compute.pk, dead_process_owner())
    mine = lease.new_owner()
    assert lease.take(compute.pk, mine)  # long before the hold would lapse
    assert Compute.objects.get(pk=compute.pk).lease_owner == mine


def test_a_reused_pid_does_not_keep_a_dead_owners_hold(compute):
    # Same pid as a live process (this one) but another start time: a different process.
    alive = lease.Owner.parse(lease.new_owner())
    assert alive is not None
    impostor = dataclasses.replace(alive, started=str(int(alive.started) + 1), nonce="old")
    assert lease.take(compute.pk, impostor.text())
    assert lease.take(compute.pk, lease.new_owner())


def test_an_owner_on_another_machine_keeps_its_hold_until_it_lapses(compute):
    remote = lease.Owner("another-host", "b00t", 1, "1", "r").text()
    assert lease.take(compute.pk, remote)
    assert not lease.take(compute.pk, lease.new_owner())  # nothing here can prove it dead
    Compute.objects.filter(pk=compute.pk).update(lease_until=None)
    assert lease.take(compute.pk, lease.new_owner())


@pytest.mark.django_db(transaction=True)
def test_a_slow_pass_keeps_its_hold_past_the_lease_time(catalog, team, settings):
    """A pass slowed by a loaded machine outlives the lease time; its heartbeat keeps the
    hold, so no second reconciler acts beside it. Without the heartbeat, the same wait
    lets the hold lapse (the control at the end)."""
    settings.HANGAR_RECONCILE_LEASE_SECONDS = 1.0
    access = get_access(team.admin, team.workspace.slug)
    compute = actions.create_cluster(
        access, name="slow", vm_size=VmSize.objects.get(name="Standard_DS3_v2"), max_nodes=1
    )
    holder = lease.new_owner()
    assert lease.take(compute.pk, holder)
    with lease.kept(compute.pk, holder):
        time.sleep(2.5)  # the slow step: two and a half lease times
        assert not lease.take(compute.pk, lease.new_owner())
    assert Compute.objects.get(pk=compute.pk).lease_owner == holder
    time.sleep(1.2)  # no heartbeat now: the hold lapses, as an owner's that stopped renewing
    assert lease.take(compute.pk, lease.new_owner())
