"""The workers badge paints its real state on first paint (issue 15, point 4): no grey
"checking workers…" pill that htmx replaces a moment later, and no page that waits for the
workers' answers but the very first one (the badge refreshes a stale state as it loads)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from compute import tasks
from compute.lib import health
from compute.models import Compute, ComputeKind, VmSize

pytestmark = pytest.mark.django_db


@pytest.fixture
def probes(monkeypatch) -> list[health.WorkerHealth]:
    """Each probe the badge takes, answering two workers and three queued tasks; no probe
    known to this process before the test."""
    taken: list[health.WorkerHealth] = []

    def probe(timeout: float = 0.5) -> health.WorkerHealth:
        taken.append(health.WorkerHealth(broker_up=True, workers=["a@x", "b@x"], queued=3))
        return taken[-1]

    monkeypatch.setattr(health, "probe", probe)
    monkeypatch.setattr(health, "_last_probe", None, raising=False)
    return taken


def badge(body: str) -> str:
    """The badge's element, from its opening tag to the end of the state it shows."""
    start = body.rindex("<span", 0, body.index('id="worker-health"'))
    return body[start : body.index("</span>", body.index('data-testid="worker-health"'))]


def test_a_page_paints_the_real_state_not_a_checking_pill(client, team, probes):
    client.force_login(team.reader)
    body = client.get(reverse("workspace:overview", args=[team.workspace.slug])).content.decode()
    assert "checking workers" not in body
    shown = badge(body)
    assert "2 workers up · 3 queued" in shown and "text-bg-success" in shown
    assert 'title="a@x, b@x"' in shown


def test_pages_reuse_the_last_probe_and_refresh_it_only_once_stale(client, team, probes, settings):
    settings.HANGAR_HEALTH_CACHE_SECONDS = 30
    client.force_login(team.reader)
    page = reverse("workspace:overview", args=[team.workspace.slug])
    first = badge(client.get(page).content.decode())
    second = badge(client.get(page).content.decode())
    assert len(probes) == 1  # the first page took the only probe; the second read it
    for shown in (first, second):  # trusted: htmx polls, but does not ask again on load
        assert 'hx-trigger="every 10s"' in shown and "2 workers up" in shown
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        stale = badge(client.get(page).content.decode())
        assert len(probes) == 1  # the page did not wait for the workers
        assert 'hx-trigger="load, every 10s"' in stale and "2 workers up" in stale
        client.get(reverse("compute:worker-health"))  # what the badge asks on load
        assert len(probes) == 2


def test_the_last_probe_survives_the_cache_being_down(probes, monkeypatch):
    health.current(max_age=0)

    class DownCache:
        def get(self, *args, **kwargs):
            raise ConnectionError("Redis is down")

        set = get

    monkeypatch.setattr(health, "cache", DownCache())
    known = health.last_known(max_age=60)
    assert known.health.summary == "2 workers up · 3 queued" and not known.stale
    assert len(probes) == 1


def test_the_badge_says_how_long_the_last_sweep_took(client, team, settings):
    """The sweep reports its own duration where an operator sees it: the badge's tooltip
    (a real sweep in-process on the no-op driver, a real probe of the real Redis)."""
    settings.HANGAR_DRIVER = "noop"
    size = VmSize.objects.get(name="Standard_D2s_v3")
    for name in ("a", "b", "c"):  # due: being created
        Compute.objects.create(
            workspace=team.workspace, name=name, kind=ComputeKind.CLUSTER, vm_size=size
        )
    result = tasks.reconcile_sweep()
    run = health.last_sweep()
    assert run is not None and (run.due, run.messages, run.took_ms) == (
        3,
        result["messages"],
        result["took_ms"],
    )
    client.force_login(team.reader)
    shown = badge(client.get(reverse("compute:worker-health")).content.decode())
    assert f"last sweep took {run.took_ms:,.0f} ms, 3 due (" in shown
