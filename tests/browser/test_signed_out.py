"""A session that ends while a page is open (signed out in another tab, or expired): the
page's next live poll takes the user to the login page, whole, with `next` back to where
they were — never the login page put inside the page (issue 22)."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from tests.browser.test_first_steps import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_signing_out_in_one_tab_takes_the_other_to_the_login_page_cleanly(page):
    call_command("seed_demo", quiet_logins=True)
    log_in(page, "bob", "hangar-bob")
    expect(page.get_by_role("heading", name="Hello, bob")).to_be_visible()
    page.goto("/w/vision-team/compute/")
    expect(page.get_by_role("heading", name="Compute", exact=True)).to_be_visible()

    other = page.context.new_page()  # a second tab, same session
    other.goto("/")
    other.get_by_role("button", name="bob").click()  # the user menu
    other.get_by_role("button", name="Log out").click()
    expect(other).to_have_url(re.compile(r"/login/"))

    # The first tab's next poll (the navbar's worker badge at the latest, every 10 s).
    expect(page).to_have_url(
        re.compile(r"/login/\?next=%2Fw%2Fvision-team%2Fcompute%2F"), timeout=15_000
    )
    expect(page.locator("nav.navbar")).to_have_count(1)
    expect(page.locator("main")).to_have_count(1)
    expect(page.locator("#id_username")).to_have_count(1)
    # Signing in again comes back to the page that was open.
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill("hangar-bob")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/w/vision-team/compute/$"))
