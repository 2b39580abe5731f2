"""A new user's first steps in a real browser: log in, create a workspace, add a teammate,
browse the GPU sizes of the catalog."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from workspace.models import Membership, Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_alice_creates_a_workspace_adds_bob_and_filters_gpu_sizes(page):
    call_command("seed_demo", quiet_logins=True)
    log_in(page, "alice", "hangar-alice")
    expect(page.get_by_role("heading", name="Workspaces")).to_be_visible()
    expect(page.get_by_role("link", name="Vision team")).to_be_visible()

    page.get_by_role("link", name="+ New workspace").click()
    page.get_by_label("Name").fill("NLP lab")
    page.get_by_label("Description").fill("Language models <b>and</b> tokenizers")
    page.get_by_role("button", name="Create workspace").click()
    expect(page.get_by_role("heading", name="NLP lab")).to_be_visible()
    expect(page.get_by_text("Created NLP lab. You are its admin.")).to_be_visible()
    expect(page.get_by_text("Language models <b>and</b> tokenizers")).to_be_visible()
    expect(page.get_by_text("alice created NLP lab")).to_be_visible()

    page.get_by_role("link", name="Add members").click()
    page.get_by_placeholder("Username or email").fill("bob")
    page.get_by_role("combobox", name="Role", exact=True).select_option("contributor")
    page.evaluate("window.__stillTheSamePage = true")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator('tr[data-member="bob"]')).to_be_visible()
    expect(page.get_by_text("Added bob as contributor.")).to_be_visible()
    assert page.evaluate("window.__stillTheSamePage") is True  # htmx swapped, no reload
    membership = Membership.objects.get(workspace__slug="nlp-lab", user__username="bob")
    assert membership.role == Role.CONTRIBUTOR
    page.screenshot(path=str(ARTIFACTS / "members.png"), full_page=True)

    # A mistake is explained in place and adds nobody.
    page.get_by_placeholder("Username or email").fill("nobody")
    page.get_by_role("button", name="Add member").click()
    expect(page.get_by_text("No active user has the username or email")).to_be_visible()
    assert Membership.objects.filter(workspace__slug="nlp-lab").count() == 2

    page.get_by_role("link", name="VM catalog").click()
    expect(page.get_by_role("heading", name="VM catalog")).to_be_visible()
    page.evaluate("window.__stillTheSamePage = true")
    page.get_by_label("GPU", exact=True).select_option("yes")
    expect(page.get_by_test_id("cuda-guidance")).to_be_visible()
    expect(page).to_have_url(re.compile(r"gpu=yes"))
    assert page.evaluate("window.__stillTheSamePage") is True
    rows = page.locator("[data-testid=catalog-table] tbody tr")
    expect(rows.first).to_be_visible()
    gpu_cells = rows.locator("td:nth-child(5)").all_inner_texts()
    assert gpu_cells and all(" × " in cell for cell in gpu_cells)
    expect(page.get_by_test_id("result-count")).to_contain_text("size")
    page.screenshot(path=str(ARTIFACTS / "catalog-gpu.png"), full_page=True)
