"""The pages no other browser test opens, in the states a person meets them, for the axe
gate (tests/browser/accessibility.py) to check: empty states, forms answered with errors,
the inference pages, job output files (listed, refused, none) and the batch form's job
select, the Hosts page and the quota admin of site staff. Each page is checked
as it loads and again as the test leaves it."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from tests.browser.test_first_steps import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

W = "/w/vision-team"


def test_empty_states_and_forms_with_errors_pass_the_accessibility_gate(page):
    call_command("seed_demo", quiet_logins=True)
    log_in(page, "alice", "hangar-alice")
    expect(page.get_by_role("heading", name="Hello, alice")).to_be_visible()
    # Empty states.
    for path, words in (
        (f"{W}/models/", "No model"),
        (f"{W}/endpoints/", "No endpoint yet"),
        (f"{W}/batch/", "No batch job yet"),
        (f"{W}/jobs/", "No job"),
        (f"{W}/environments/", "Environments"),
        ("/notifications/", "Notifications"),
    ):
        page.goto(path)
        expect(page.locator("main")).to_contain_text(words)
    # Forms sent with mistakes: the errors shown, tied to their fields.
    for path in (
        f"{W}/compute/new/cluster/",
        f"{W}/models/new/",
        f"{W}/batch/new/",
        f"{W}/endpoints/new/",
        f"{W}/jobs/new/",
    ):
        page.goto(path)
        page.locator("main form[method=post]").last.locator("button[type=submit]").first.click()
        expect(page.locator(".invalid-feedback").first).to_be_visible()
        described = page.locator("[aria-invalid=true]").first.get_attribute("aria-describedby")
        assert described and page.locator(f"#{described.split()[-1]}").count() == 1, path
    # Site staff: the Hosts page (empty: every node on the default engine) and the quota
    # admin.
    page.context.clear_cookies()
    log_in(page, "approver", "hangar-approver")
    page.goto("/hosts/")
    expect(page.locator("main")).to_contain_text("default engine")
    page.goto("/admin/compute/quotarequest/")
    expect(page.locator("#content")).to_be_visible()
    page.goto("/admin/compute/familyquota/")
    expect(page.locator("#content")).to_be_visible()


def test_job_outputs_and_the_batch_forms_job_select_pass_the_accessibility_gate(page):
    """A job page listing its output files, one whose outputs were refused (the note), one
    that kept none and one still queued; the batch form offering a job's outputs, picked and
    sent with a mistake (the error tied to the select)."""
    from compute.models import Compute, JobStatus
    from tests.support.factories import JobFactory
    from tests.support.outputs import with_outputs
    from workspace.models import Workspace

    call_command("seed_demo", quiet_logins=True)
    workspace = Workspace.objects.get(slug="vision-team")
    compute = Compute.objects.get_or_create(workspace=workspace, name="trainers")[0]
    kept = with_outputs(JobFactory(compute=compute, name="featurize"))
    refused = JobFactory(
        compute=compute, status=JobStatus.FAILED,
        outputs_note="./outputs holds more than 1,024 MiB: none of its files were kept.",
    )  # fmt: skip
    none = JobFactory(compute=compute, status=JobStatus.COMPLETED)
    queued = JobFactory(compute=compute)
    log_in(page, "alice", "hangar-alice")
    expect(page.get_by_role("heading", name="Hello, alice")).to_be_visible()
    outputs = page.get_by_test_id("outputs")
    page.goto(f"{W}/jobs/{kept.pk}/")
    expect(outputs.get_by_role("link", name="model/weights.bin")).to_be_visible()
    expect(outputs.get_by_test_id("outputs-zip")).to_be_visible()
    page.goto(f"{W}/jobs/{refused.pk}/")
    expect(outputs.get_by_test_id("outputs-note")).to_contain_text("none of its files")
    page.goto(f"{W}/jobs/{none.pk}/")
    expect(outputs.get_by_test_id("no-outputs")).to_be_visible()
    page.goto(f"{W}/jobs/{queued.pk}/")
    expect(outputs).to_contain_text("are kept when it ends")

    page.goto(f"{W}/batch/new/")
    select = page.get_by_label("Or the outputs of a job")
    expect(select.locator("option")).to_have_count(2)
    select.select_option(str(kept.pk))
    upload = {"name": "a.txt", "mimeType": "text/plain", "buffer": b"a"}
    page.set_input_files("input[type=file][name=inputs]", files=[upload])
    page.locator("main form[method=post]").last.locator("button[type=submit]").first.click()
    expect(page.locator(".invalid-feedback").first).to_be_visible()
    expect(page.get_by_label("Or the outputs of a job")).to_have_attribute("aria-invalid", "true")
