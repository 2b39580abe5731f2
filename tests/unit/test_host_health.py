"""A node host's health from the sweep's side, without a second engine: one that does not
answer is marked unreachable (a disabled or draining one keeps the state its admin chose
and is known down by when it went), past the grace its nodes are written off; the driver
then leaves it out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute.controllers import hosts
from compute.lib import serving_load
from compute.models import HostState, NodeHost

pytestmark = pytest.mark.django_db

NOWHERE = "unix:///run/hangar-no-such-engine.sock"


@pytest.fixture(autouse=True)
def fresh_looks():
    for key in serving_load.client().scan_iter("hangar:*:host-look:*"):
        serving_load.client().delete(key)


def test_hosts_that_do_not_answer_are_marked_and_keep_an_admins_state(settings):
    settings.HANGAR_DRIVER = "docker"
    ready = NodeHost.objects.create(name="gone-box", docker_url=NOWHERE)
    disabled = NodeHost.objects.create(name="off-box", docker_url=NOWHERE, state=HostState.DISABLED)
    report = hosts.check_hosts()
    ready.refresh_from_db()
    disabled.refresh_from_db()
    assert ready.state == HostState.UNREACHABLE and ready.unreachable_since is not None
    assert disabled.state == HostState.DISABLED and disabled.unreachable_since is not None
    assert "gone-box unreachable" in report.changed and ready.last_error
    engines = {e.name: e for e in hosts.current_driver().engines.values()}  # type: ignore[attr-defined]
    assert engines["gone-box"].down and engines["off-box"].down
    assert not engines["gone-box"].lost

    # Past the grace: written off once, and the driver no longer asks it.
    NodeHost.objects.update(unreachable_since=timezone.now() - timedelta(minutes=5))
    report = hosts.check_hosts()
    assert "gone-box's nodes written off" in report.changed
    assert NodeHost.objects.get(name="gone-box").nodes_lost_at is not None
    engines = {e.name: e for e in hosts.current_driver().engines.values()}  # type: ignore[attr-defined]
    assert engines["gone-box"].lost and engines["off-box"].lost
    assert "gone-box's nodes written off" not in hosts.check_hosts().changed
