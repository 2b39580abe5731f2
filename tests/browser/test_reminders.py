"""The bell shows a reminder; "keep running" from the notification moves the deadline
shown on the instance page."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from compute.actions import computes as actions
from compute.controllers.idle import idle_sweep
from compute.controllers.reconcile import reconcile
from compute.models import Compute, ComputeState, VmSize
from compute.models.idle import record_activity
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_first_steps import log_in
from tests.integration.helpers import driver_named
from workspace.access import get_access
from workspace.models import Membership

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_bell_reminder_and_keep_running(page, workers, django_capture_on_commit_callbacks):
    workers.stop()  # this test plays the sweep itself; a live worker's beat would race it
    call_command("seed_demo", quiet_logins=True)
    bob = Membership.objects.get(user__username="bob").user
    with django_capture_on_commit_callbacks():  # no worker here: the row plays the node
        box = actions.create_instance(
            get_access(bob, "vision-team"),
            name="bob-box",
            vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
            idle_shutdown_minutes=60,
        )
    started = timezone.now() - timedelta(minutes=57)
    # Running through the real controller, 57 minutes ago; the no-op driver plays the node.
    with time_machine.travel(started, tick=False):
        reconcile(box.pk, driver_named("noop"))
    assert Compute.objects.get(pk=box.pk).state == ComputeState.RUNNING
    record_activity(box.pk, "job train-42 finished", started)
    box.refresh_from_db()
    old_deadline = box.idle_deadline
    with django_capture_on_commit_callbacks():
        assert len(idle_sweep().reminded) == 2  # 30 and 5 minutes before

    log_in(page, "bob", "hangar-bob")
    expect(page.get_by_test_id("unread")).to_have_text("2")
    page.goto(f"/w/vision-team/compute/{box.pk}/")
    expect(page.get_by_test_id("idle-deadline")).to_have_text(f"{old_deadline:%H:%M:%S} UTC")
    expect(page.get_by_test_id("idle")).to_contain_text("last activity: job train-42 finished")

    page.get_by_test_id("bell").click()
    note = page.get_by_test_id("notification").filter(has_text="stops in about 5 min")
    expect(note).to_contain_text("unless you keep it running")
    page.screenshot(path=str(ARTIFACTS / "notifications.png"), full_page=True)
    note.get_by_role("button", name="Keep running").click()
    expect(page.get_by_text("bob-box keeps running")).to_be_visible()
    expect(page.get_by_test_id("unread")).to_have_text("1")  # acting on it read it

    box.refresh_from_db()
    assert box.idle_deadline >= old_deadline + timedelta(minutes=59)
    page.goto(f"/w/vision-team/compute/{box.pk}/")
    expect(page.get_by_test_id("idle-deadline")).to_have_text(f"{box.idle_deadline:%H:%M:%S} UTC")
    expect(page.get_by_text("bob chose keep running").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "kept-running.png"), full_page=True)
