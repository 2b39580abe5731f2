"""Beat stopped by its supervisor (SIGTERM) in the middle of sending the sweep: the sweep is
sent, beat exits at once and cleanly. Celery's own handler closed the connection under the
send: the sweep was lost, or (mid-read) beat logged "Couldn't apply scheduled task ...: I/O
operation on closed file" with a traceback and ran on until SIGKILLed (config/beatstop.py)."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.conf import settings

from tests.support.worker import Beat

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_beat_stopped_while_sending_the_sweep_sends_it_and_exits_cleanly(workers):
    workers.stop()  # this test's beat is the only one
    queue = f"hangar-beatstop-{uuid.uuid4().hex[:8]}"
    broker = redis.Redis.from_url(settings.REDIS_URL)
    beat = Beat(queue, module="tests.support.beat_stops_mid_send").start()
    try:
        assert beat.process is not None
        returncode = beat.process.wait(timeout=60)  # it stops itself, mid-send
        log = beat.log_path.read_text()
        assert returncode == 0, log
        assert broker.llen(queue) == 1, log  # the sweep it was sending went out
        assert "Traceback" not in log and "Couldn't apply" not in log, log
    finally:
        beat.stop()
        broker.delete(queue)
