"""Celery wiring proven for real: a task round-trips through Redis and a worker process."""

from __future__ import annotations

import time

import pytest
from django.test import override_settings
from django.urls import reverse

from compute.lib import health
from compute.tasks import ping

pytestmark = pytest.mark.integration


def test_ping_round_trips_through_redis_and_a_worker(celery_worker):
    sent = time.time()
    result = ping.delay(sent).get(timeout=20)
    assert result["pong"] is True
    assert result["sent_at"] == sent
    assert result["at"] >= sent


def test_dashboard_indicator_shows_the_worker(client, team, celery_worker):
    client.force_login(team.reader)
    body = client.get(reverse("compute:worker-health")).content.decode()
    assert "1 worker up" in body
    assert celery_worker in body


def test_probe_counts_queued_tasks_when_no_worker_serves_the_queue(db, settings):
    queue = f"hangar-idle-{time.time_ns()}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    for _ in range(3):
        ping.apply_async((0.0,), queue=queue)
    try:
        state = health.probe()
        assert state.broker_up and state.workers == [] and state.queued == 3
        assert state.summary == "No worker answering · 3 queued"
    finally:
        import redis

        redis.Redis.from_url(settings.REDIS_URL).delete(queue)


def test_probe_says_when_redis_is_unreachable():
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        state = health.probe(timeout=0.3)
    assert not state.broker_up
    assert state.summary == "Redis unreachable"
    assert state.level == "danger"
