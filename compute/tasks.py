"""Thin Celery tasks: take ids and JSON-safe arguments, call a controller or action."""

from __future__ import annotations

import socket
import time

from celery import shared_task

from compute import enqueue
from compute.controllers.idle import idle_sweep
from compute.controllers.reconcile import reconcile
from compute.controllers.sweep import sweep


@shared_task(name="hangar.health.ping")
def ping(sent_at: float) -> dict:
    """Round trip through the broker and a worker: proves the wiring, measures latency."""
    return {"pong": True, "worker": socket.gethostname(), "sent_at": sent_at, "at": time.time()}


@shared_task(name="hangar.reconcile", ignore_result=True)
def reconcile_compute(compute_id: int) -> dict:
    """Bring one compute's nodes in line. A gone compute is a quiet no-op."""
    outcome = reconcile(compute_id)
    return {"skipped": outcome.skipped, "state": outcome.state, "error": outcome.error}


@shared_task(name="hangar.sweep", ignore_result=True)
def reconcile_sweep() -> dict:
    idle_report = idle_sweep()
    report = sweep()
    enqueue.reconcile_each(sorted(set(idle_report.to_reconcile) | set(report.due)))
    return {
        "due": report.due,
        "strays_removed": report.strays_removed,
        "idle_stopped": idle_report.stopped,
        "schedules_fired": idle_report.fired,
    }
