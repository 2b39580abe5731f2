"""Thin Celery tasks: take ids and JSON-safe arguments, call a controller or action."""

from __future__ import annotations

import logging
import socket
import time

from celery import shared_task

from compute import enqueue
from compute.controllers.idle import IdleReport, idle_sweep
from compute.controllers.reconcile import reconcile
from compute.controllers.sweep import SweepReport, sweep

log = logging.getLogger(__name__)


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
    log_sweep(idle_report, report)
    return {
        "due": report.due,
        "strays_removed": report.strays_removed,
        "idle_stopped": idle_report.stopped,
        "schedules_fired": idle_report.fired,
    }


def sweep_changes(idle_report: IdleReport, report: SweepReport) -> list[str]:
    """What the sweep itself changed, one phrase each: stopped, reminded, fired, preempted,
    removed. Finding computes due changes nothing by itself: their reconcile does the work
    and writes it in their event log."""
    changes = []
    if idle_report.stopped:
        changes.append(f"stopped idle computes {idle_report.stopped}")
    if idle_report.reminded:
        changes.append(f"sent {len(idle_report.reminded)} stop reminder(s)")
    if idle_report.fired:
        changes.append(f"fired schedules {[f'{pk}:{action}' for pk, action in idle_report.fired]}")
    if report.preempted:
        changes.append(f"preempted nodes {report.preempted}")
    if report.strays_removed:
        changes.append(f"removed stray containers {report.strays_removed}")
    return changes


def log_sweep(idle_report: IdleReport, report: SweepReport) -> None:
    """One line a sweep: INFO when it changed something, DEBUG otherwise (beat runs it
    every second: a line a second of "nothing happened" would bury everything else)."""
    changes = sweep_changes(idle_report, report)
    due = ", ".join(f"{pk} ({report.reasons.get(pk, '')})" for pk in report.due) or "none"
    driver = f"; driver unavailable: {report.driver_error}" if report.driver_error else ""
    if changes:
        log.info("sweep: %s; due: %s%s", "; ".join(changes), due, driver)
    else:
        log.debug("sweep: nothing changed; due: %s%s", due, driver)
