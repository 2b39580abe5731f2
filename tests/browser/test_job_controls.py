"""Cancel a running job from its page in a real browser: the confirm, the message, the
status going live to Canceled, and a process that really stopped."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.lib import jobfiles
from compute.models import Compute, Job, JobStatus, NodeState, VmSize
from tests.browser.conftest import ARTIFACTS, demo_access
from tests.browser.test_first_steps import log_in
from tests.integration.helpers import wait_for
from tests.support.leftovers import remove_all_nodes
from workspace.access import get_access
from workspace.models import Membership

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pool(workers, catalog, settings) -> Iterator[Compute]:
    """The demo workspace with a cluster of real local nodes and a live worker."""
    made = actions.create_cluster(
        demo_access(workers, settings, "alice"),
        name="gpu-pool",
        vm_size=VmSize.objects.get(name="Standard_NC6"),
        max_nodes=1,
    )
    yield made
    remove_all_nodes()


def output(job: Job) -> str:
    return jobfiles.read_output(job.runs.get().key)


def running_job(pool: Compute, username: str) -> Job:
    """A long job of `username`'s, once its first line is out."""
    bob = Membership.objects.get(user__username=username).user
    job = submit_job(
        get_access(bob, "vision-team"),
        compute_id=pool.pk,
        name="long-train",
        command="echo started; sleep 300; echo never",
    )
    wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.RUNNING, what="running")
    wait_for(lambda: "started" in output(job), what="first output")
    return job


def test_cancel_a_running_job_from_its_page(page, pool):
    job = running_job(pool, "bob")
    log_in(page, "bob", "hangar-bob")
    page.goto(f"/w/vision-team/jobs/{job.pk}/")
    status = page.get_by_test_id("job-status")
    expect(status).to_have_text("Running")
    expect(page.get_by_test_id("log")).to_have_text("started\n")

    asked: list[str] = []

    def agree(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", agree)
    clicked = time.monotonic()
    page.get_by_role("button", name="Cancel job").click()

    expect(page.get_by_text("Canceling long-train…")).to_be_visible()
    expect(status).to_have_text("Canceled", timeout=5_000)  # live, no reload
    assert time.monotonic() - clicked <= 4.0
    assert asked == ["Cancel long-train? Its processes are stopped."]
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    expect(page.get_by_test_id("job-error")).to_have_text("Canceled by bob.")
    page.screenshot(path=str(ARTIFACTS / "job-canceled.png"), full_page=True)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED
    assert job.runs.get().node.state == NodeState.IDLE  # free for the next job
    time.sleep(0.5)
    assert "never" not in output(job)


def test_a_dismissed_confirm_cancels_nothing_and_readers_have_no_button(page, pool):
    job = running_job(pool, "bob")
    log_in(page, "bob", "hangar-bob")
    page.goto(f"/w/vision-team/jobs/{job.pk}/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Cancel job").click()
    expect(page.get_by_test_id("job-status")).to_have_text("Running")
    time.sleep(1.0)  # a POST, had one gone out, would have landed by now
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.cancel_requested_at is None

    page.context.clear_cookies()
    log_in(page, "carol", "hangar-carol")  # a reader
    page.goto(f"/w/vision-team/jobs/{job.pk}/")
    expect(page.get_by_test_id("job-status")).to_have_text("Running")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
