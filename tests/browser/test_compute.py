"""Compute in a real browser: create from the form, watch the state change live, stop
with a confirmation, resize a cluster — with a real worker bringing nodes up."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from compute.models import Compute, ComputeState
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_first_steps import log_in
from tests.support.leftovers import remove_all_nodes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(workers, catalog, settings):
    settings.HANGAR_DRIVER = "local"
    yield workers.get("local")
    remove_all_nodes()


def test_instance_and_cluster_lifecycle_live_in_the_browser(page, worker):
    call_command("seed_demo", quiet_logins=True)
    log_in(page, "bob", "hangar-bob")
    page.get_by_role("link", name="Vision team").click()
    page.get_by_role("link", name="Compute").click()
    expect(page.get_by_text("No compute instances yet")).to_be_visible()

    page.get_by_role("link", name="+ New instance").first.click()
    page.get_by_label("Name").fill("1bad")
    page.get_by_role("button", name="Create instance").click()
    expect(page.locator(".invalid-feedback", has_text="starting with a letter")).to_be_visible()
    expect(page.get_by_text("This field is required.")).to_be_visible()  # no VM size chosen
    assert not Compute.objects.exists()

    page.get_by_label("Name").fill("bob-notebook")
    page.get_by_label("VM size").select_option(label=pick_size(page, "Standard_DS3_v2"))
    page.get_by_role("button", name="Create instance").click()
    state = page.get_by_test_id("state").first
    try:
        expect(state).to_have_text("Running", timeout=15_000)  # live, without a reload
    except AssertionError as failed:
        raise AssertionError(f"{failed}\nWhy, by the record: {why_not_running()}") from None
    expect(page.locator('tr[data-node="n-1"]')).to_contain_text("Idle")
    expect(page.get_by_text("Instance running.")).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop").click()
    expect(state).to_have_text("Stopped", timeout=15_000)
    expect(page.get_by_text("Stopped: no node, no cost.")).to_be_visible()
    assert Compute.objects.get(name="bob-notebook").state == ComputeState.STOPPED
    # Bob is a contributor: he acts on compute but cannot delete it.
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "instance-stopped.png"), full_page=True)

    page.goto("/w/vision-team/compute/new/cluster/")
    page.get_by_label("Name").fill("trainers")
    page.get_by_label("VM size").select_option(label=pick_size(page, "Standard_NC6"))
    page.get_by_label("Min nodes").fill("1")
    page.get_by_label("Max nodes").fill("3")
    page.get_by_role("button", name="Create cluster").click()
    expect(page.get_by_test_id("state").first).to_have_text("Steady", timeout=15_000)
    expect(page.locator("[data-testid=nodes] tbody tr")).to_have_count(1)

    page.get_by_role("link", name="Resize").click()
    page.get_by_label("Min nodes").fill("2")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("[data-testid=nodes] tbody tr")).to_have_count(2, timeout=15_000)
    expect(page.get_by_test_id("state").first).to_have_text("Steady", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "cluster-steady.png"), full_page=True)

    page.get_by_role("link", name="Compute").first.click()
    page.get_by_role("link", name="Clusters").click()
    expect(page.locator('tr[data-compute="trainers"]')).to_contain_text("2 · 2–3")


def why_not_running() -> list[tuple[str, str, str]]:
    return list(Compute.objects.values_list("name", "state", "last_error"))


def pick_size(page, name: str) -> str:
    """The picker's label for a size: what a user reads when choosing it."""
    return page.locator(f"#id_vm_size option:text-matches('^{name} —')").inner_text()
