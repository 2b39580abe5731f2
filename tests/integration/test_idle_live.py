"""Idle shutdown for real: two sweeps racing for the same reminders (PostgreSQL in CI),
and an instance stopped by its idle limit with a real worker and Docker."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection

from compute.actions import computes as actions
from compute.controllers.idle import idle_sweep
from compute.models import Compute, ComputeState, EventVerb, Reminder, VmSize
from compute.models.idle import record_activity
from tests.integration.helpers import converged, driver_named, wait_for
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access
from workspace.models import Notification

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_two_concurrent_sweeps_send_each_reminder_once(catalog, workers):
    workers.stop()  # the two sweeps here are the only ones
    team = make_team("reminders")
    access = get_access(team.admin, team.workspace.slug)
    boxes = []
    for i in range(5):
        box = actions.create_instance(
            access,
            name=f"box-{i}",
            vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
            idle_shutdown_minutes=60,
        )
        Compute.objects.filter(pk=box.pk).update(state=ComputeState.RUNNING)
        record_activity(box.pk, "started")
        box.refresh_from_db()
        boxes.append(box)
    moment = boxes[0].idle_deadline - timedelta(minutes=4)  # both leads (30, 5) are due
    barrier = threading.Barrier(2)
    reports = []

    def sweep() -> None:
        try:
            with time_machine.travel(moment, tick=False):
                barrier.wait()
                reports.append(idle_sweep())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    sent = sorted(r for report in reports for r in report.reminded)
    assert sent == sorted((box.pk, "idle", lead) for box in boxes for lead in (30, 5))
    assert Reminder.objects.count() == 10
    assert Notification.objects.filter(title__contains="stops in about").count() == 10


def test_an_idle_instance_loses_its_container_for_real(workers, catalog, node_image, settings):
    settings.HANGAR_DRIVER = "docker"
    settings.HANGAR_SECONDS_PER_IDLE_MINUTE = 0.1  # 15 "minutes" of idle = 1.5 s
    workers.get("docker", HANGAR_SECONDS_PER_IDLE_MINUTE="0.1")
    driver = driver_named("docker")
    team = make_team("idle-live")
    try:
        box = actions.create_instance(
            get_access(team.admin, team.workspace.slug),
            name="forgotten",
            vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
            idle_shutdown_minutes=15,
        )
        wait_for(lambda: converged(driver, box, 1, ComputeState.RUNNING), what="running")
        wait_for(lambda: converged(driver, box, 0, ComputeState.STOPPED), timeout=15, what="stop")
        assert box.events.filter(verb=EventVerb.IDLE_STOPPED).count() == 1
        assert Notification.objects.filter(title__contains="was stopped after 15 min idle").exists()
    finally:
        workers.stop()
        remove_all_nodes()
