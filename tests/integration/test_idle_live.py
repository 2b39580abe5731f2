"""Idle shutdown for real: an instance stopped by its idle limit with a real worker and
Docker. (Sweeps racing for the same stop, reminder or schedule: test_exactly_once.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from compute.actions import computes as actions
from compute.models import ComputeState, EventVerb, VmSize
from tests.integration.helpers import converged, driver_named, wait_for
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access
from workspace.models import Notification

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_an_idle_instance_loses_its_container_for_real(
    workers, catalog, node_image, settings, tmp_path
):
    settings.HANGAR_DRIVER = "docker"
    settings.HANGAR_SECONDS_PER_IDLE_MINUTE = 0.1  # 15 "minutes" of idle = 1.5 s
    mailbox = tmp_path / "mail"
    workers.get(
        "docker",
        HANGAR_SECONDS_PER_IDLE_MINUTE="0.1",
        # The worker's emails as files this test reads (its own outbox is in its process).
        HANGAR_TEST_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        HANGAR_TEST_EMAIL_FILE_PATH=str(mailbox),
    )
    driver = driver_named("docker")
    team = make_team("idle-live")
    try:
        box = actions.create_instance(
            get_access(team.admin, team.workspace.slug),
            name="forgotten",
            vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
            idle_shutdown_minutes=15,
        )
        wait_for(lambda: converged(driver, box, 1, ComputeState.RUNNING), what="running")
        wait_for(lambda: converged(driver, box, 0, ComputeState.STOPPED), timeout=15, what="stop")
        assert box.events.filter(verb=EventVerb.IDLE_STOPPED).count() == 1
        stopped = Notification.objects.get(title__contains="was stopped after 15 min idle")
        # Its email, sent by the sweep's email task once the stop committed.
        subject = f"Subject: {stopped.title}"
        wait_for(lambda: subject in mail_text(mailbox), timeout=10, what="the email")
        assert f"To: {stopped.user.email}" in mail_text(mailbox)
        assert mail_text(mailbox).count(subject) == 1
    finally:
        workers.stop()
        remove_all_nodes()


def mail_text(mailbox: Path) -> str:
    return "".join(path.read_text() for path in sorted(mailbox.glob("*.log")))
