"""alice attaches a remote VM over SSH from the browser, watches it validate, and runs a
job on it."""

from __future__ import annotations

import os

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_first_steps import log_in
from tests.support.sshd import SSHServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_attach_a_vm_watch_it_validate_and_run_a_job(page, live_server, workers):
    call_command("seed_demo", quiet_logins=True)
    workers.get("local")
    server = SSHServer().start()
    try:
        log_in(page, "alice", "hangar-alice")
        page.goto("/w/vision-team/compute/?tab=attached")
        expect(page.get_by_text("No attached computes yet")).to_be_visible()
        page.get_by_role("link", name="+ Attach").click()
        expect(page.locator("[data-kind=kubernetes]")).to_contain_text("coming soon")
        page.get_by_role("link", name="Attach Remote VM").click()
        page.locator("#id_name").fill("lab-box")
        page.locator("#id_host").fill("127.0.0.1")
        page.get_by_label("SSH port").fill(str(server.port))
        page.get_by_label("Username").fill(server.user)
        page.locator("#id_private_key").fill(server.private_key)
        page.get_by_role("button", name="Attach and validate").click()
        expect(page.get_by_test_id("state")).to_have_text("Ready", timeout=20_000)
        expect(page.get_by_test_id("facts")).to_contain_text(str(os.cpu_count()))
        expect(page.get_by_test_id("host-key")).to_contain_text("SHA256:")
        page.screenshot(path=str(ARTIFACTS / "attached-ready.png"), full_page=True)
        page.get_by_role("link", name="Submit job").click()
        page.get_by_label("Command").fill("echo hello from the lab box")
        page.get_by_role("button", name="Submit").click()
        expect(page.get_by_test_id("log")).to_contain_text("hello from the lab box", timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "attached-job.png"), full_page=True)
    finally:
        server.close()
