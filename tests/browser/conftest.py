"""A real headless Chromium (Debian's) driven by Playwright, against pytest-django's live server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.accessibility import Gate

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
# Playwright's sync API runs an event loop in this thread; Django's ORM calls made by the
# test itself (fixtures, assertions) are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("HANGAR_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium package.")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, catalog, request) -> Iterator:
    """A fresh browser context; axe-core checks every page it loads, in every tab, and
    each tab as the test leaves it: a WCAG 2.1 A/AA violation fails the test."""
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=live_server.url)
    gate = Gate()
    context.on("page", lambda opened: opened.on("load", lambda loaded: gate.check(loaded)))
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    failed = request.node.stash.get(FAILED, False)
    if not failed:
        for each in context.pages:
            gate.check(each)
    context.close()
    if gate.found and not failed:
        pytest.fail(f"WCAG 2.1 A/AA violations (axe-core):\n{gate.report()}", pytrace=False)


def demo_access(workers, settings, username: str):
    """The demo workspace (`seed_demo`) with a live worker on local nodes, as `username`
    acts in it: the start of the browser tests that watch real jobs and instances."""
    from django.core.management import call_command

    from workspace.access import get_access
    from workspace.models import Membership

    settings.HANGAR_DRIVER = "local"
    workers.get("local")
    call_command("seed_demo", quiet_logins=True)
    user = Membership.objects.get(user__username=username).user
    return get_access(user, "vision-team")


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """A test that failed already is reported as it failed, not as an accessibility one."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report
