"""After a worker outage of any length, at most one stale sweep runs: each sweep expires a
period after it was sent, with production's beat scheduler (django-celery-beat's
DatabaseScheduler keeps only `expire_seconds`; it dropped the `expires` we used to pass)."""

from __future__ import annotations

import re
import time
import uuid

import pytest
import redis
from django.conf import settings

from tests.integration.helpers import wait_for
from tests.support.worker import Beat, Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
OUTAGE = 30  # seconds of beat sending sweeps with no worker serving the queue
SENT = re.compile(r"hangar\.sweep sent\. id->([0-9a-f-]+)")
RAN = re.compile(r"Task hangar\.sweep\[([0-9a-f-]+)\] succeeded")
DISCARDED = re.compile(r"Discarding revoked task: hangar\.sweep\[([0-9a-f-]+)\]")


def test_after_a_30_s_outage_the_backlog_runs_at_most_one_stale_sweep(workers):
    workers.stop()  # this test's beat is the only one
    queue = f"hangar-backlog-{uuid.uuid4().hex[:8]}"
    broker = redis.Redis.from_url(settings.REDIS_URL)
    beat = Beat(queue).start()
    worker = Worker(queue, "local", {}, beat=False)
    try:
        time.sleep(OUTAGE)
        assert broker.llen(queue) >= OUTAGE - 3, "beat sent no backlog"
        worker.start()
        # The backlog is drained, and fresh sweeps go on running after it.
        wait_for(lambda: broker.llen(queue) == 0, timeout=20, what="the backlog drained")
        time.sleep(3 * int(settings.HANGAR_SWEEP_SECONDS) + 0.5)
    finally:
        worker.stop()
        beat.stop()
        broker.delete(queue)
    ready = next(e.at for e in worker.log_entries() if e.first_line.endswith(" ready."))
    sent = {m[1]: e.at for e in beat.log_entries() if (m := SENT.search(e.text))}
    ran = {m[1] for e in worker.log_entries() if (m := RAN.search(e.text))}
    discarded = {m[1] for e in worker.log_entries() if (m := DISCARDED.search(e.text))}
    backlog = {task for task, at in sent.items() if at < ready}
    assert len(backlog) >= OUTAGE - 3
    stale_runs = ran & backlog
    assert len(stale_runs) <= 1, f"{len(stale_runs)} of {len(backlog)} stale sweeps ran"
    assert len(discarded & backlog) >= len(backlog) - 1  # dropped as expired, not lost
    assert len(ran - backlog) >= 2  # the expiry drops no fresh sweep
