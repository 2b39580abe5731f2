"""An environment made in the browser builds for real, its log streaming into the page as
the build writes it; a bad package ends it Failed with apt's words, without a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, demo_access
from tests.browser.test_first_steps import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.image_builds,
    pytest.mark.django_db(transaction=True),
]


def test_the_build_log_streams_live_and_a_bad_package_fails_with_apts_words(
    page, workers, settings
):
    demo_access(workers, settings, "bob")
    log_in(page, "bob", "hangar-bob")
    page.goto("/w/vision-team/environments/")
    page.get_by_role("link", name="+ New environment").click()
    page.get_by_label("Name").fill("typo")
    page.get_by_label("Debian packages").fill("python3-idna\nhangar-no-such-package")
    page.get_by_role("button", name="Make and build").click()
    page.evaluate("window.notReloaded = true")  # gone if the page were loaded again

    log = page.get_by_test_id("build-log")
    expect(log).to_contain_text("$ mmdebstrap", timeout=30_000)  # the build under way
    expect(page.get_by_test_id("image-state").first).to_have_text("Failed", timeout=120_000)
    expect(page.get_by_test_id("build-error")).to_contain_text(
        "Unable to locate package hangar-no-such-package"
    )
    expect(log).to_contain_text("hangar-no-such-package")
    expect(page.get_by_role("button", name="Build again")).to_be_visible()
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=str(ARTIFACTS / "environment-build-failed.png"), full_page=True)
