"""Schedules and the activity token in a real browser, where the interaction is the
point: the weekly form's day boxes, and the confirmations that guard removing a schedule
and issuing a token (a dismissed dialog must change nothing)."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from compute.models import Compute, Schedule
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_first_steps import log_in
from tests.support.factories import ComputeFactory
from workspace.models import Membership, Workspace

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_bob_adds_a_weekly_stop_removes_it_and_issues_a_token(page: Page, workers) -> None:
    workers.stop()  # nothing here needs a worker; its sweeps would only race the rows
    call_command("seed_demo", quiet_logins=True)
    bob = Membership.objects.get(user__username="bob").user
    box = ComputeFactory(
        workspace=Workspace.objects.get(slug="vision-team"),
        instance=True,
        name="bob-box",
        created_by=bob,
        assigned_to=bob,
    )
    log_in(page, "bob", "hangar-bob")
    page.goto(f"/w/vision-team/compute/{box.pk}/")
    page.get_by_role("link", name="Idle & schedules").click()
    expect(page.get_by_text("No schedules.")).to_be_visible()

    page.get_by_label("Action").select_option("stop")
    page.get_by_label("Mode").select_option("weekly")
    page.get_by_label("Mon").check()
    page.get_by_label("Fri").check()
    page.get_by_label("Time", exact=True).fill("19:00")
    page.get_by_label("Timezone").fill("Europe/Berlin")
    page.get_by_role("button", name="Add schedule").click()
    expect(page.get_by_text("Schedule added.")).to_be_visible()
    row = page.get_by_test_id("schedule")
    expect(row).to_contain_text("Stop 0 19 * * 1,5 · Europe/Berlin")
    page.screenshot(path=str(ARTIFACTS / "schedule-added.png"), full_page=True)

    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Remove").click()
    expect(row).to_have_count(1)
    assert Schedule.objects.filter(compute=box).count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Remove").click()
    expect(page.get_by_text("Schedule removed.")).to_be_visible()
    expect(page.get_by_test_id("schedule")).to_have_count(0)
    assert not Schedule.objects.exists()

    page.goto(f"/w/vision-team/compute/{box.pk}/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Activity token").click()
    expect(page.get_by_role("heading", name="Activity token for bob-box")).to_have_count(0)
    assert not Compute.objects.get(pk=box.pk).activity_token_hash
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Activity token").click()
    token = page.get_by_test_id("token")
    expect(token).to_have_value(re.compile(r"^hgr_[\w-]{40,}$"))
    token.click()  # one click selects the whole token, ready to copy
    selected = page.evaluate(
        "() => { const t = document.getElementById('token');"
        " return t.value.slice(t.selectionStart, t.selectionEnd); }"
    )
    assert selected == token.input_value()
    assert Compute.objects.get(pk=box.pk).activity_token_hash
