"""Submit a job from the browser and watch it: queued, running, output streaming, done;
then the cluster page explains the scaling with events and a chart."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.actions import computes as actions
from compute.models import VmSize
from tests.browser.conftest import ARTIFACTS, demo_access
from tests.browser.test_first_steps import log_in
from tests.support.leftovers import remove_all_nodes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cluster(workers, catalog, settings):
    made = actions.create_cluster(
        demo_access(workers, settings, "alice"),
        name="gpu-pool",
        vm_size=VmSize.objects.get(name="Standard_NC6"),
        max_nodes=2,
        idle_seconds_before_scaledown=1,
    )
    yield made
    remove_all_nodes()


def test_submit_a_job_and_follow_it_live(page, cluster):
    log_in(page, "bob", "hangar-bob")
    page.goto("/w/vision-team/jobs/")
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    page.get_by_role("link", name="+ Submit job").click()
    page.get_by_role("button", name="Submit job").click()
    expect(page.get_by_text("This field is required.").first).to_be_visible()

    page.get_by_label("Compute target").select_option(label="gpu-pool · compute cluster · steady")
    page.get_by_label("Name", exact=True).fill("first-train")
    page.get_by_label("Command").fill(
        'for e in 1 2 3; do echo "epoch $e of $EPOCHS"; sleep 0.4; done'
    )
    page.get_by_label("Environment variables").fill("EPOCHS=3")
    page.get_by_role("button", name="Submit job").click()

    status = page.get_by_test_id("job-status")
    expect(status).to_have_text("Completed", timeout=20_000)  # live, no reload
    expect(page.get_by_test_id("log")).to_have_text("epoch 1 of 3\nepoch 2 of 3\nepoch 3 of 3\n")
    expect(page.get_by_test_id("timings")).to_contain_text("Exit code")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download").click()
    assert download.value.path().read_text().startswith("epoch 1 of 3")
    page.screenshot(path=str(ARTIFACTS / "job-completed.png"), full_page=True)

    page.get_by_role("link", name="gpu-pool").click()
    expect(page.get_by_text("Scaled 0 → 1: 1 job queued need 1 node(s)")).to_be_visible()
    expect(page.get_by_test_id("chart")).to_be_visible()
    expect(page.get_by_text("removed: idle", exact=False).first).to_be_visible(timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "cluster-autoscaled.png"), full_page=True)

    page.goto("/w/vision-team/jobs/?status=completed")
    expect(page.locator('tr[data-job="first-train"]')).to_be_visible()
