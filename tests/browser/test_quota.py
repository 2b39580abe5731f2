"""bob is short of cores, asks for more, the quota approver approves in the Django admin, bob
creates the cluster."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from compute.models import Compute, FamilyQuota, VmFamily
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_first_steps import log_in
from workspace.models import Workspace

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_short_request_approve_create(page, browser, live_server, workers):
    workers.stop()
    call_command("seed_demo", quiet_logins=True)
    FamilyQuota.objects.create(
        workspace=Workspace.objects.get(slug="vision-team"),
        family=VmFamily.objects.get(name="DSv2"),
        limit=0,
        approved=0,
    )
    log_in(page, "bob", "hangar-bob")
    page.goto("/w/vision-team/compute/new/cluster/")
    page.get_by_label("Name").fill("pool")
    size = page.locator("#id_vm_size option:text-matches('^Standard_DS3_v2 —')").inner_text()
    page.get_by_label("VM size").select_option(label=size)
    page.get_by_label("Min nodes").fill("1")
    page.get_by_label("Min nodes").dispatch_event("change")
    what_if = page.get_by_test_id("what-if")
    expect(what_if).to_contain_text("Short 4 cores")
    page.screenshot(path=str(ARTIFACTS / "quota-short.png"), full_page=True)
    what_if.get_by_role("link", name="Request more").click()
    expect(page.get_by_label("New limit (cores)")).to_have_value("4")
    page.get_by_label("Justification").fill("A small pool for nightly evaluation")
    page.get_by_role("button", name="Send request").click()
    expect(page.get_by_text("Requested 4 DSv2 cores")).to_be_visible()

    admin = browser.new_context(base_url=live_server.url).new_page()
    admin.goto("/admin/login/?next=/admin/compute/quotarequest/")
    admin.get_by_label("Username").fill("approver")
    admin.get_by_label("Password").fill("hangar-approver")
    admin.get_by_role("button", name="Log in").click()
    admin.locator("input[name=_selected_action]").first.check()
    admin.locator("select[name=action]").select_option("approve")
    admin.get_by_role("button", name="Go").click()
    admin.get_by_label("Reason").fill("Fine for nightly evaluation")
    admin.get_by_role("button", name="Approve").click()
    expect(admin.get_by_text("Approved request #")).to_be_visible()
    admin.screenshot(path=str(ARTIFACTS / "admin-approved.png"), full_page=True)

    page.goto("/w/vision-team/compute/new/cluster/")
    page.get_by_label("Name").fill("pool")
    page.get_by_label("VM size").select_option(label=size)
    page.get_by_label("Min nodes").fill("1")
    page.get_by_label("Min nodes").dispatch_event("change")
    expect(page.get_by_test_id("what-if")).to_contain_text("Uses 4 of your 4 free DSv2 cores")
    page.get_by_role("button", name="Create cluster").click()
    expect(page.get_by_role("heading", name="pool")).to_be_visible()
    assert Compute.objects.filter(name="pool").exists()
