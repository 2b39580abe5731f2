"""A new user's first steps in a real browser: log in, create a workspace, invite a teammate
who accepts from the bell, browse the GPU sizes of the catalog."""

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


def test_alice_creates_a_workspace_invites_bob_and_filters_gpu_sizes(page):
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
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_text("Invitation sent to bob.")).to_be_visible()
    expect(page.locator('tr[data-invitation="bob"]')).to_be_visible()
    assert page.evaluate("window.__stillTheSamePage") is True  # htmx swapped, no reload
    assert not Membership.objects.filter(workspace__slug="nlp-lab", user__username="bob").exists()

    # A name with no account gets the very same answer, and adds nobody either.
    page.get_by_placeholder("Username or email").fill("nobody")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_text("Invitation sent to nobody.")).to_be_visible()
    expect(page.locator('tr[data-invitation="nobody"]')).to_be_visible()
    assert Membership.objects.filter(workspace__slug="nlp-lab").count() == 1
    page.screenshot(path=str(ARTIFACTS / "members.png"), full_page=True)
    # Revoking asks first, then swaps the panel.
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('tr[data-invitation="nobody"]').get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("Revoked the invitation to nobody.")).to_be_visible()
    expect(page.locator('tr[data-invitation="nobody"]')).to_have_count(0)

    # Bob finds the invitation behind the bell and accepts it.
    bob = page.context.browser.new_context(base_url=page.url.split("/w/")[0])
    bob_page = bob.new_page()
    log_in(bob_page, "bob", "hangar-bob")
    expect(bob_page.get_by_test_id("unread")).to_have_text("1")
    expect(bob_page.get_by_role("link", name="NLP lab")).to_have_count(0)
    bob_page.get_by_test_id("bell").click()
    expect(bob_page.get_by_text("alice invited you to NLP lab as contributor")).to_be_visible()
    bob_page.locator("main").get_by_role("link", name="Invitations").click()
    invitation = bob_page.locator('[data-invitation="nlp-lab"]')
    expect(invitation).to_contain_text("alice invited you as")
    invitation.get_by_role("button", name="Accept").click()
    expect(bob_page.get_by_role("heading", name="NLP lab")).to_be_visible()
    expect(bob_page.get_by_text("You joined NLP lab as contributor.")).to_be_visible()
    bob_page.screenshot(path=str(ARTIFACTS / "invitation-accepted.png"), full_page=True)
    bob.close()
    membership = Membership.objects.get(workspace__slug="nlp-lab", user__username="bob")
    assert membership.role == Role.CONTRIBUTOR

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
