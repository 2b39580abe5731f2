"""Thin Celery tasks: take ids and JSON-safe arguments, call a controller or action."""

from __future__ import annotations

import logging
import socket
import time

from celery import shared_task
from django.db import connection

from compute import enqueue
from compute.controllers import batch_scoring, environments, hosts, retention, serving
from compute.controllers.idle import IdleReport, idle_sweep
from compute.controllers.reconcile import reconcile
from compute.controllers.sweep import SweepReport, sweep
from compute.lib import health
from workspace import notify

log = logging.getLogger(__name__)
# Why a compute the idle sweep moved (stopped, or started on schedule) is due.
IDLE_MOVED = "stopped or started by the idle sweep"


@shared_task(name="hangar.health.ping")
def ping(sent_at: float) -> dict:
    """Round trip through the broker and a worker: proves the wiring, measures latency."""
    return {"pong": True, "worker": socket.gethostname(), "sent_at": sent_at, "at": time.time()}


@shared_task(name="hangar.reconcile", ignore_result=True)
def reconcile_compute(compute_id: int) -> dict:
    """Bring one compute's nodes in line. A gone compute is a quiet no-op."""
    outcome = reconcile(compute_id)
    return {"skipped": outcome.skipped, "state": outcome.state, "error": outcome.error}


@shared_task(name="hangar.reconcile_batch", ignore_result=True)
def reconcile_batch(compute_ids: list[int]) -> dict:
    """Reconcile the computes of one of the sweep's batches, one after another. One
    compute's failure is logged and the rest of the batch goes on. A worker that dies
    mid-batch loses nothing: the sweep finds the computes still due and hands them out again."""
    failed = []
    for compute_id in compute_ids:
        try:
            reconcile(compute_id)
        except Exception:
            log.exception("compute %s: reconcile failed; the rest of its batch goes on", compute_id)
            failed.append(compute_id)
            # A database error may have left this thread's connection unusable: the next
            # compute gets a fresh one instead of failing the same way.
            connection.close_if_unusable_or_obsolete()
    return {"reconciled": len(compute_ids) - len(failed), "failed": failed}


@shared_task(name=enqueue.BUILD_ENVIRONMENT, ignore_result=True)
def build_environment(image_pk: int) -> str:
    """Build one environment image (minutes). Late-acked: a worker lost mid-build sends
    it again, and the build is taken over, never run twice at once."""
    return environments.build(image_pk)


@shared_task(name=enqueue.PRUNE_ENVIRONMENT_IMAGES, ignore_result=True)
def prune_environment_images(image_pks: list[int] | None) -> list[str]:
    removed = environments.prune(image_pks)
    log.info("removed unused environment images: %s", ", ".join(removed) or "none")
    return removed


@shared_task(name=enqueue.EMAIL_NOTIFICATIONS, ignore_result=True)
def email_notifications(notification_ids: list[int]) -> int:
    """The emails of inbox entries a sweep wrote. Late-acked like every task: a worker lost
    mid-batch sends the batch again (an email may come twice). Emails are a courtesy over
    the inbox, which always has the notification: one lost with the broker, or with a
    worker killed between the sweep's commit and this task's send, is not sent again."""
    return notify.email_stored(notification_ids)


@shared_task(name="hangar.autoscale_replicas", ignore_result=True)
def autoscale_replicas() -> list[int]:
    """The sweep's replica step, at once: the gateway asks when a deployment's load passes
    what its ready replicas take. The replicas it moved are reconciled now."""
    moved = serving.autoscale_replicas()
    enqueue.reconcile_due(moved)
    return moved


@shared_task(name="hangar.sweep", ignore_result=True)
def reconcile_sweep() -> dict:
    started = time.perf_counter()
    idle_report = idle_sweep()
    report = sweep()
    scaled = serving.autoscale_replicas()  # replicas from the gateway's load
    serving.record_series()  # every 10 s: the endpoint pages' figures and chart
    batches = batch_scoring.advance_open()  # mini-batches kept, retried, queued; ends
    host_health = hosts.check_hosts()  # node hosts: unreachable, back, written off, draining
    due = sorted(
        set(idle_report.to_reconcile)
        | set(report.due)
        | set(scaled)
        | set(batches)
        | set(host_health.due)
    )
    messages = enqueue.reconcile_due(due)
    # Environment builds whose task was lost (a broker or worker gone): sent again.
    for image_pk in environments.builds_to_hand_out():
        enqueue.build_environment(image_pk)
    pruned = retention.prune_if_due()
    run = health.SweepRun(
        finished_at=time.time(),
        took_ms=round((time.perf_counter() - started) * 1000, 1),
        due=len(due),
        messages=messages,
    )
    health.remember_sweep(run)
    log_sweep(idle_report, report, due, run, pruned)
    return {
        "due": len(due),
        "messages": messages,
        "took_ms": run.took_ms,
        "strays_removed": report.strays_removed,
        "idle_stopped": idle_report.stopped,
        "schedules_fired": idle_report.fired,
        "pruned": pruned.deleted if pruned else {},
    }


def sweep_changes(
    idle_report: IdleReport, report: SweepReport, pruned: retention.RetentionReport | None = None
) -> list[str]:
    """What the sweep itself changed, one phrase each: stopped, reminded, fired, preempted,
    removed, pruned. Finding computes due changes nothing by itself: their reconcile does
    the work and writes it in their event log."""
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
    if pruned and pruned.total:
        kinds = ", ".join(f"{count} {name}" for name, count in pruned.deleted.items() if count)
        changes.append(f"deleted rows past retention: {kinds}")
    return changes


def describe_due(due: list[int], reasons: dict[int, str], shown: int = 10) -> str:
    """The first few due computes with their reasons: with thousands due, a line a
    second naming them all would be a screenful each."""
    named = ", ".join(f"{pk} ({reasons.get(pk, IDLE_MOVED)})" for pk in due[:shown])
    if len(due) > shown:
        return f"{len(due)} computes, {named}, ..."
    return named or "none"


def log_sweep(
    idle_report: IdleReport,
    report: SweepReport,
    due: list[int],
    run: health.SweepRun,
    pruned: retention.RetentionReport | None = None,
) -> None:
    """One line a sweep: INFO when it changed something, DEBUG otherwise (beat runs it
    every second: a line a second of "nothing happened" would bury everything else)."""
    changes = sweep_changes(idle_report, report, pruned)
    named = describe_due(due, report.reasons)
    handed = f" in {run.messages} message(s)" if run.messages else ""
    took = f"; took {run.took_ms:.0f} ms"
    driver = f"; driver unavailable: {report.driver_error}" if report.driver_error else ""
    if changes:
        log.info("sweep: %s; due: %s%s%s%s", "; ".join(changes), named, handed, took, driver)
    else:
        log.debug("sweep: nothing changed; due: %s%s%s%s", named, handed, took, driver)
