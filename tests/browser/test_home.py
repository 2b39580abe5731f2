"""The home page in a real browser: bob's instance comes up, he keeps it running from
home (asked first), a job of his starts and ends, the instance stops — and the page's
sections and counts follow each change without a reload, with a real worker (local
driver) doing the work."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.models import Compute, VmSize
from tests.browser.conftest import ARTIFACTS, demo_access
from tests.browser.test_first_steps import log_in
from tests.support.leftovers import remove_all_nodes
from workspace.access import get_access
from workspace.models import Membership

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def bobs_box(workers, catalog, settings):
    made = actions.create_instance(
        demo_access(workers, settings, "bob"),
        name="bob-box",
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        idle_shutdown_minutes=60,
    )
    yield made
    remove_all_nodes()


def test_home_follows_my_jobs_and_instances_live(page, bobs_box):
    access = get_access(Membership.objects.get(user__username="bob").user, "vision-team")
    log_in(page, "bob", "hangar-bob")
    expect(page.get_by_role("heading", name="Hello, bob")).to_be_visible()
    expect(page.locator('[data-workspace="vision-team"]')).to_be_visible()
    row = page.locator('[data-testid="my-instances"] tr[data-compute="bob-box"]')
    expect(row.get_by_test_id("state")).to_have_text("Running", timeout=20_000)
    expect(row.get_by_test_id("idle-countdown")).to_contain_text("stops in")
    expect(page.get_by_test_id("count-my-instances")).to_have_text("1")

    # Keep running asks first (a plain form with data-confirm), then comes back home.
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    row.get_by_role("button", name="Keep running").click()
    expect(page.get_by_text("bob-box keeps running; next stop at")).to_be_visible()
    assert asked and asked[0].startswith("Keep bob-box running?")
    assert Compute.objects.get(pk=bobs_box.pk).keep_running_until is not None

    page.evaluate("window.__stillTheSamePage = true")
    expect(page.get_by_test_id("count-my-running-jobs")).to_have_text("0")
    expect(page.get_by_text("No job of yours is queued or running.")).to_be_visible()
    submit_job(access, compute_id=bobs_box.pk, name="warm-up", command="sleep 7")
    expect(page.get_by_test_id("count-my-running-jobs")).to_have_text("1", timeout=20_000)
    jobs = page.get_by_test_id("my-jobs")
    expect(jobs.locator('tr[data-job="warm-up"]')).to_be_visible()
    expect(row.get_by_test_id("idle-countdown")).to_contain_text("not while a job runs")
    expect(
        page.locator('[data-workspace="vision-team"] [data-testid="workspace-jobs"]')
    ).to_have_text("0 · 1")
    page.screenshot(path=str(ARTIFACTS / "home-job-running.png"), full_page=True)

    expect(page.get_by_test_id("count-my-running-jobs")).to_have_text("0", timeout=30_000)
    expect(jobs.locator('tr[data-job="warm-up"]')).to_have_count(0)
    expect(page.get_by_text("No job of yours is queued or running.")).to_be_visible()
    expect(row.get_by_test_id("idle-countdown")).to_contain_text("stops in")

    actions.instance_verb(access, bobs_box.pk, "stop")
    expect(page.get_by_test_id("count-my-instances")).to_have_text("0", timeout=20_000)
    expect(page.get_by_text("None of your instances is running.")).to_be_visible()
    expect(
        page.locator('[data-workspace="vision-team"] [data-testid="running-instances"]')
    ).to_have_text("0")
    assert page.evaluate("window.__stillTheSamePage") is True  # every change came by htmx
    page.screenshot(path=str(ARTIFACTS / "home-stopped.png"), full_page=True)
