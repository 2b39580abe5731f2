"""A scheduled start for real: the schedule saved through its form, beat's sweep task run
at the cron moment (time-machine), and a real worker bringing the stopped instance's
container back up."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from compute.actions import computes as actions
from compute.controllers.idle import idle_sweep
from compute.models import ComputeState, EventVerb, Schedule, VmSize
from compute.tasks import reconcile_sweep
from tests.integration.helpers import converged, driver_named, wait_for
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ComputeState


def test_a_stopped_instance_is_back_up_at_its_scheduled_start(
    workers, catalog, node_image, settings
) -> None:
    """The schedule is only worth having if the instance is really running after the cron
    moment: the sweep fires once and the worker starts a fresh container."""
    settings.HANGAR_DRIVER = "docker"
    # The worker's own beat sweeps once an hour: the start must come from the sweep this
    # test runs, through the reconcile that sweep enqueues.
    workers.get("docker", HANGAR_SWEEP_SECONDS="3600")
    driver = driver_named("docker")
    team = make_team("morning")
    access = get_access(team.contributor, team.workspace.slug)
    try:
        box = actions.create_instance(
            access, name="desk", vm_size=VmSize.objects.get(name="Standard_D2s_v3")
        )
        wait_for(lambda: converged(driver, box, 1, S.RUNNING), what="first start")
        first_node = box.nodes.get().pk
        actions.instance_verb(access, box.pk, "stop")
        wait_for(lambda: converged(driver, box, 0, S.STOPPED), what="stopped")

        # Twelve hours from now, so the worker's own beat (on the real clock) never fires it.
        at = timezone.now() + timedelta(hours=12)
        client = Client()
        client.force_login(team.contributor)
        url = reverse("compute:schedule-add", args=[team.workspace.slug, box.pk])
        cron = f"{at.minute} {at.hour} * * *"
        form = {"action": "start", "mode": "cron", "cron": cron, "timezone": "UTC"}
        assert client.post(url, form).status_code == 302
        schedule = Schedule.objects.get(compute=box)
        assert schedule.next_run_at == at.replace(second=0, microsecond=0)

        with time_machine.travel(schedule.next_run_at - timedelta(seconds=1), tick=False):
            assert idle_sweep().fired == []
        box.refresh_from_db()
        assert box.state == S.STOPPED
        with time_machine.travel(schedule.next_run_at, tick=False):
            report = reconcile_sweep()  # the task beat sends, run here at the cron moment
        assert report["schedules_fired"] == [(schedule.pk, "start")]

        wait_for(lambda: converged(driver, box, 1, S.RUNNING), what="scheduled start")
        assert box.nodes.get(state="idle").pk != first_node  # a fresh container
        fired = box.events.get(verb=EventVerb.SCHEDULED_START)
        assert fired.message == (
            f"Scheduled start ({cron}, UTC) started desk for {schedule.next_run_at:%a %H:%M} UTC."
        )
        schedule.refresh_from_db()
        assert schedule.next_run_at == at.replace(second=0, microsecond=0) + timedelta(days=1)
    finally:
        workers.stop()
        remove_all_nodes()
