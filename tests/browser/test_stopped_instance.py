"""What a contributor sees on a stopped instance (issue 15, point 3): Start, or Start and
submit job — never a Submit job the server would refuse; and the submit form greys out
a compute that takes no job, saying why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from compute.models import Compute, ComputeState, Job
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_compute import pick_size
from tests.browser.test_first_steps import log_in
from tests.support.factories import ComputeFactory
from tests.support.leftovers import remove_all_nodes
from workspace.models import Workspace

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stopped(catalog, settings) -> Iterator[tuple[Compute, Compute]]:
    """Two stopped instances of the demo workspace, as rows: nothing is enqueued for them."""
    settings.HANGAR_DRIVER = "noop"
    call_command("seed_demo", quiet_logins=True)
    workspace = Workspace.objects.get(slug="vision-team")
    box = ComputeFactory(workspace=workspace, name="bob-box", stopped=True)
    other = ComputeFactory(workspace=workspace, name="idle-box", stopped=True)
    yield box, other
    remove_all_nodes()  # in case a worker of an earlier test reconciled the start


def test_a_stopped_instance_offers_start_and_start_and_submit_never_submit(page, stopped):
    box, other = stopped
    log_in(page, "bob", "hangar-bob")  # a contributor
    page.goto(box.get_absolute_url())
    expect(page.get_by_test_id("state").first).to_have_text("Stopped")
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Start and submit job")).to_be_visible()
    expect(page.get_by_role("link", name="Submit job", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Submit job", exact=True)).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "stopped-instance-buttons.png"), full_page=True)

    page.get_by_role("button", name="Start and submit job").click()
    expect(page.get_by_role("heading", name="Submit a job")).to_be_visible()
    expect(page.get_by_text("Starting bob-box: your job waits for it.")).to_be_visible()
    picker = page.get_by_label("Compute target")
    expect(picker).to_have_value(str(box.pk))
    greyed = picker.locator(f'option[value="{other.pk}"]')
    expect(greyed).to_be_disabled()
    expect(greyed).to_contain_text("is stopped; start it first")
    assert Compute.objects.get(pk=box.pk).state == ComputeState.STARTING

    page.get_by_label("Command").fill("python train.py")
    page.get_by_role("button", name="Submit job").click()
    expect(page.get_by_text("Submitted python.")).to_be_visible()
    assert Job.objects.get().compute_id == box.pk


def test_the_new_instance_form_starts_from_the_workspace_default_and_applies_it(page, stopped):
    """Issue 15, point 1, as the user sees it: the admin's "default for new instances"
    fills the idle field, and an instance created without touching it gets that limit."""
    workspace = Workspace.objects.get(slug="vision-team")
    workspace.idle_default_minutes = 45
    workspace.save(update_fields=["idle_default_minutes"])
    log_in(page, "bob", "hangar-bob")
    page.goto(f"/w/{workspace.slug}/compute/new/instance/")
    idle = page.get_by_label("Idle shutdown (minutes)")
    expect(idle).to_have_value("45")
    page.get_by_label("Name").fill("fresh-box")
    page.get_by_label("VM size").select_option(label=pick_size(page, "Standard_DS3_v2"))
    page.get_by_role("button", name="Create instance").click()
    expect(page.get_by_role("heading", name="fresh-box")).to_be_visible()
    assert Compute.objects.get(name="fresh-box").idle_shutdown_minutes == 45
