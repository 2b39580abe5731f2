"""What a page shows before any htmx request answers (issue 15, point 4): the workers badge
in its real state, and the quota line for the form as it stands, never a stale
"Pick a VM size…" once a size is picked."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from compute.lib import health
from compute.models import FamilyQuota, VmFamily
from compute.views import quota as quota_views
from tests.browser.test_first_steps import log_in
from tests.support.factories import PASSWORD
from tests.support.teams import make_team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_badge_shows_the_workers_on_first_paint(page, celery_worker, monkeypatch):
    team = make_team("painted")
    log_in(page, team.reader.username, PASSWORD)
    expect(page.get_by_role("heading", name="Workspaces")).to_be_visible()
    monkeypatch.setattr(
        health, "_last_probe", None, raising=False
    )  # nothing known: the page probes
    asked: list[str] = []

    def refuse(route) -> None:  # no htmx answer: all the badge shows is the server's paint
        asked.append(route.request.url)
        route.abort()

    page.route("**/health/workers/", refuse)
    page.goto(reverse("workspace:overview", args=[team.workspace.slug]), wait_until="commit")
    page.wait_for_load_state("domcontentloaded")
    first_paint = page.content()
    assert "checking workers" not in first_paint
    badge = page.get_by_test_id("worker-health")
    expect(badge).to_have_text("1 worker up · 0 queued")
    assert celery_worker in (badge.get_attribute("title") or "")
    page.wait_for_load_state("load")
    expect(badge).to_have_text("1 worker up · 0 queued")  # a refused refresh leaves it be


@pytest.fixture
def contributor(page):
    team = make_team("painted")
    FamilyQuota.objects.create(
        workspace=team.workspace, family=VmFamily.objects.get(name="DSv2"), limit=8, approved=8
    )
    log_in(page, team.contributor.username, PASSWORD)
    expect(page.get_by_role("heading", name="Workspaces")).to_be_visible()
    return team


def test_the_quota_line_never_lags_the_form(page, contributor, monkeypatch):
    """Every answer of the what-if takes 1.5 s, as on a busy server: the line must still
    never show what held before the pick."""
    render = quota_views.render_htmx

    def slow(*args, **kwargs):
        time.sleep(1.5)
        return render(*args, **kwargs)

    monkeypatch.setattr(quota_views, "render_htmx", slow)
    page.goto(reverse("compute:create", args=[contributor.workspace.slug, "cluster"]))
    line = page.get_by_test_id("what-if-line")
    assert "Pick a VM size to see how it sits in your quota." in line.inner_text()  # first paint

    size = page.locator("#id_vm_size option:text-matches('^Standard_DS3_v2 —')").inner_text()
    page.get_by_label("VM size").select_option(label=size)
    assert line.inner_text() == "Checking your quota…"  # at once, before the answer
    expect(line).to_contain_text("Uses 4 of your 8 free DSv2 cores.")
    expect(line).not_to_have_attribute("aria-busy", "true")

    # A change of count: the answer for the old count is marked as such until the new one.
    page.get_by_label("Min nodes").fill("2")
    page.get_by_label("Min nodes").dispatch_event("change")
    assert line.get_attribute("aria-busy") == "true"
    expect(line).to_contain_text("Uses 8 of your 8 free DSv2 cores.")
    expect(line).not_to_have_attribute("aria-busy", "true")

    # Posted back with an error (no name): the page paints the line for the size and node
    # count it shows, with no answer of the what-if to wait for.
    page.get_by_label("Min nodes").fill("3")
    page.get_by_label("Max nodes").fill("3")
    page.route("**/quota/what-if/**", lambda route: route.abort())
    page.get_by_role("button", name="Create cluster").click()
    expect(page.get_by_text("This field is required.")).to_be_visible()
    assert page.locator("#id_vm_size option:checked").inner_text() == size
    assert "Short 4 cores: needs 12 DSv2 cores, limit 8, used 0." in line.inner_text()
