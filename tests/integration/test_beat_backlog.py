"""After a worker outage of any length, at most one stale sweep runs: each sweep expires a
period after it was sent, with production's beat scheduler (django-celery-beat's
DatabaseScheduler keeps only `expire_seconds`; it dropped the `expires` we used to pass)."""

from __future__ import annotations

import re
import uuid

import pytest
import redis
from django.conf import settings

from tests.integration.helpers import wait_for
from tests.support.worker import Beat, Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
BACKLOG = 25  # sweeps beat sends (one a second) while no worker serves the queue
SENT = re.compile(r"hangar\.sweep sent\. id->([0-9a-f-]+)")
RAN = re.compile(r"Task hangar\.sweep\[([0-9a-f-]+)\] succeeded")
DISCARDED = re.compile(r"Discarding revoked task: hangar\.sweep\[([0-9a-f-]+)\]")


def test_after_an_outage_the_backlog_runs_at_most_one_stale_sweep(workers):
    workers.stop()  # this test's beat is the only one
    queue = f"hangar-backlog-{uuid.uuid4().hex[:8]}"
    broker = redis.Redis.from_url(settings.REDIS_URL)
    beat = Beat(queue).start()
    # DEBUG: Celery's "succeeded" line for a sweep is DEBUG (config/logfilters.py).
    worker = Worker(queue, "local", {}, beat=False, loglevel="DEBUG")
    try:
        # Polled, not slept: a loaded machine starts beat later, the backlog is what counts.
        wait_for(lambda: broker.llen(queue) >= BACKLOG, timeout=120, what="the backlog")
        worker.start()
        # The backlog is drained, and fresh sweeps go on running after it.
        wait_for(lambda: broker.llen(queue) == 0, timeout=30, what="the backlog drained")
        wait_for(lambda: len(fresh_runs(beat, worker)) >= 2, timeout=30, what="fresh sweeps")
    finally:
        worker.stop()
        beat.stop()
        broker.delete(queue)
    ready = worker_ready_at(worker)
    sent = sent_at(beat)
    ran = {m[1] for e in worker.log_entries() if (m := RAN.search(e.text))}
    discarded = {m[1] for e in worker.log_entries() if (m := DISCARDED.search(e.text))}
    backlog = {task for task, at in sent.items() if at < ready}
    assert len(backlog) >= BACKLOG
    stale_runs = ran & backlog
    assert len(stale_runs) <= 1, f"{len(stale_runs)} of {len(backlog)} stale sweeps ran"
    assert len(discarded & backlog) >= len(backlog) - 1  # dropped as expired, not lost
    assert len(ran - backlog) >= 2  # the expiry drops no fresh sweep


def worker_ready_at(worker: Worker):
    return next(e.at for e in worker.log_entries() if e.first_line.endswith(" ready."))


def sent_at(beat: Beat) -> dict:
    return {m[1]: e.at for e in beat.log_entries() if (m := SENT.search(e.text))}


def fresh_runs(beat: Beat, worker: Worker) -> set[str]:
    """Sweeps sent after the worker was ready, and run."""
    if not any(e.first_line.endswith(" ready.") for e in worker.log_entries()):
        return set()
    ready = worker_ready_at(worker)
    fresh = {task for task, at in sent_at(beat).items() if at >= ready}
    return fresh & {m[1] for e in worker.log_entries() if (m := RAN.search(e.text))}
