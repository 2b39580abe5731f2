"""The page's own script (static/hangar/hangar.js) in a real browser: a plain form asks before
it acts, the activity token selects itself for copying, a live log follows its newest lines.
No worker: the no-op driver in this process brings the objects to the states the pages show."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.controllers.reconcile import reconcile
from compute.lib import jobfiles
from compute.models import Compute, ComputeState, Job, JobRun, JobStatus, VmSize
from tests.browser.test_first_steps import log_in
from tests.integration.helpers import driver_named
from tests.support.factories import PASSWORD
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def team(page):
    team = make_team("scripted")
    log_in(page, team.admin.username, PASSWORD)
    return team


@pytest.fixture
def box(team, django_capture_on_commit_callbacks) -> Compute:
    with django_capture_on_commit_callbacks():  # enqueued work would find no worker
        made = actions.create_instance(
            get_access(team.admin, team.workspace.slug),
            name="box",
            vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        )
    # Running through the real controller; the no-op driver plays the container.
    reconcile(made.pk, driver_named("noop"))
    assert Compute.objects.get(pk=made.pk).state == ComputeState.RUNNING
    return made


def test_a_plain_form_acts_only_once_the_user_agrees(page, team, box):
    page.goto(reverse("compute:detail", args=[team.workspace.slug, box.pk]))
    asked: list[str] = []

    def dismiss(dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Activity token").click()
    expect(page.get_by_role("heading", name="box")).to_be_visible()
    assert asked == ["Issue a new activity token? The current one stops working."]
    assert Compute.objects.get(pk=box.pk).activity_token_hash == ""

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Activity token").click()
    expect(page.get_by_role("heading", name="Activity token for box")).to_be_visible()
    assert Compute.objects.get(pk=box.pk).activity_token_hash != ""

    token = page.get_by_test_id("token")
    token.click()
    selected = page.evaluate(
        "() => { const t = document.getElementById('token');"
        " return t.value.slice(t.selectionStart, t.selectionEnd) }"
    )
    assert selected == token.input_value() and len(selected) > 20


def test_a_running_jobs_log_follows_its_newest_lines(
    page, team, box, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        job = submit_job(
            get_access(team.admin, team.workspace.slug),
            compute_id=box.pk,
            name="train",
            command="true",
        )
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    run = JobRun.objects.create(job=job, rank=0, node_name="n-1", container="none")
    jobfiles.prepare_run_dir(run.key)
    lines = "".join(f"epoch {n}: loss {1 / (n + 1):.4f}\n" for n in range(400))
    jobfiles.write_output(run.key, 0, lines.encode())

    page.goto(reverse("compute:job", args=[team.workspace.slug, job.pk]))
    log = page.get_by_test_id("log")
    expect(log).to_contain_text("epoch 399")
    # Once the page has polled (every second), the newest line is in view without scrolling.
    page.wait_for_function(
        "() => { const log = document.getElementById('log');"
        " return log.scrollTop > 0 && log.scrollTop + log.clientHeight >= log.scrollHeight - 2 }",
        timeout=5_000,
    )
