"""Logs say what happened, once: the every-second sweep is DEBUG unless it changed
something, Celery's own lines about it are DEBUG, and a refusal (403, 404) is one line
without a traceback (issue 15)."""

from __future__ import annotations

import logging
import re
import sys

import pytest
from celery import beat as celery_beat
from celery.app import trace as celery_trace
from celery.worker import request as celery_request
from django.urls import reverse

import config.celery  # noqa: F401  (installs the Celery filters, as `celery -A config` does)
from compute import tasks
from compute.controllers.idle import IdleReport
from compute.controllers.sweep import SweepReport
from config.logfilters import CELERY_ROUTINE_LOGGERS, QuietPeriodicTasks, RefusalWithoutTraceback

SWEEP_LOGGER = "compute.tasks"


def run_sweep_task(monkeypatch, idle_report: IdleReport, report: SweepReport) -> None:
    monkeypatch.setattr(tasks, "idle_sweep", lambda: idle_report)
    monkeypatch.setattr(tasks, "sweep", lambda: report)
    monkeypatch.setattr(tasks.enqueue, "reconcile_due", lambda ids: 0)
    tasks.reconcile_sweep()


def sweep_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SWEEP_LOGGER]


@pytest.mark.django_db
def test_a_sweep_with_nothing_to_do_logs_one_debug_line(caplog, settings):
    """The real sweep (no-op driver, no computes): one DEBUG line, nothing at INFO."""
    settings.HANGAR_DRIVER = "noop"
    caplog.set_level(logging.DEBUG, logger=SWEEP_LOGGER)
    tasks.reconcile_sweep()
    (record,) = sweep_records(caplog)
    assert record.levelno == logging.DEBUG
    assert re.fullmatch(r"sweep: nothing changed; due: none; took \d+ ms", record.getMessage())


@pytest.mark.django_db  # the sweep's retention step reads the database
def test_computes_due_alone_are_debug_too(caplog, monkeypatch):
    """Finding computes due changes nothing by itself (their reconcile logs its work), and
    while a job runs the sweep finds its compute due every second."""
    caplog.set_level(logging.DEBUG, logger=SWEEP_LOGGER)
    report = SweepReport(due=[7], reasons={7: "jobs to place or collect"})
    run_sweep_task(monkeypatch, IdleReport(), report)
    (record,) = sweep_records(caplog)
    assert record.levelno == logging.DEBUG
    assert record.getMessage().startswith(
        "sweep: nothing changed; due: 7 (jobs to place or collect); took "
    )


@pytest.mark.django_db
def test_thousands_due_are_counted_and_a_few_named(caplog, monkeypatch):
    """With thousands due, the line names the first ten, not a screenful a second."""
    caplog.set_level(logging.DEBUG, logger=SWEEP_LOGGER)
    due = list(range(1, 5001))
    report = SweepReport(due=due, reasons=dict.fromkeys(due, "node count differs from desired"))
    run_sweep_task(monkeypatch, IdleReport(), report)
    (record,) = sweep_records(caplog)
    said = record.getMessage()
    assert said.startswith("sweep: nothing changed; due: 5000 computes, 1 (node count differs")
    assert "10 (node count" in said and "11 (" not in said and len(said) < 600


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("idle_report", "report", "said"),
    [
        (IdleReport(stopped=[3], to_reconcile=[3]), SweepReport(), "stopped idle computes [3]"),
        (IdleReport(reminded=[(3, "idle", 5)]), SweepReport(), "sent 1 stop reminder(s)"),
        (IdleReport(fired=[(4, "start")]), SweepReport(), "fired schedules ['4:start']"),
        (IdleReport(), SweepReport(preempted=[9]), "preempted nodes [9]"),
        (
            IdleReport(),
            SweepReport(strays_removed=["hangar-x-1-1"]),
            "removed stray containers ['hangar-x-1-1']",
        ),
    ],
)
def test_a_sweep_that_changed_something_logs_it_at_info(
    caplog, monkeypatch, idle_report, report, said
):
    caplog.set_level(logging.INFO, logger=SWEEP_LOGGER)
    run_sweep_task(monkeypatch, idle_report, report)
    (record,) = sweep_records(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith(f"sweep: {said}; due: ")


# Celery's own lines, exactly as Celery writes them --------------------------------------


def celery_lines_about(task: str) -> None:
    """Sent (beat), received, discarded as expired, succeeded (worker): Celery's own
    functions and formats, in the order of CELERY_ROUTINE_LOGGERS."""
    celery_beat.info("Scheduler: Sending due task %s (%s)", "some-entry", task)
    context = {"id": "abc", "name": task, "args": "()", "kwargs": "{}", "eta": None}
    logging.getLogger("celery.worker.strategy").info(
        celery_trace.LOG_RECEIVED, context, extra={"data": context}
    )
    celery_request.info("Discarding revoked task: %s[%s]", task, "abc")
    celery_trace.info(
        celery_trace.LOG_SUCCESS, {"id": "abc", "name": task, "return_value": {}, "runtime": 0.1}
    )


def test_the_celery_filters_are_installed_by_the_celery_app():
    for name in CELERY_ROUTINE_LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, QuietPeriodicTasks) for f in filters) == 1, name


def test_celerys_lines_about_the_sweep_are_gone_at_info(caplog):
    """A worker at --loglevel=INFO (the Procfile's): nothing about the sweep; the same lines
    about a reconcile stay at INFO."""
    for name in CELERY_ROUTINE_LOGGERS:
        caplog.set_level(logging.INFO, logger=name)
    celery_lines_about("hangar.sweep")
    assert [r.getMessage() for r in caplog.records] == []
    celery_lines_about("hangar.reconcile")
    assert [(r.name, r.levelno) for r in caplog.records] == [
        (name, logging.INFO) for name in CELERY_ROUTINE_LOGGERS
    ]
    assert "hangar.reconcile[abc] succeeded" in caplog.records[-1].getMessage()


def test_celerys_lines_about_the_sweep_are_debug_where_debug_shows(caplog):
    for name in CELERY_ROUTINE_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    celery_lines_about("hangar.sweep")
    assert [(r.name, r.levelname) for r in caplog.records] == [
        (name, "DEBUG") for name in CELERY_ROUTINE_LOGGERS
    ]
    assert "Task hangar.sweep[abc] succeeded" in caplog.records[-1].getMessage()


def test_a_failed_sweep_is_still_an_error(caplog):
    """Only the routine INFO lines are quieted: Celery's error about the sweep stays."""
    caplog.set_level(logging.INFO, logger="celery.app.trace")
    logging.getLogger("celery.app.trace").error(
        celery_trace.LOG_FAILURE,
        {"id": "abc", "name": "hangar.sweep", "description": "raised", "exc": "boom"},
    )
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


# Refusals ---------------------------------------------------------------------------------


def stream_handlers_reached(logger: logging.Logger, level: int) -> list[logging.Handler]:
    """The stream handlers (the console) a record of `level` at `logger` is written to, as
    Logger.callHandlers walks them; pytest's own handlers aside."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found += [
            h
            for h in current.handlers
            if isinstance(h, logging.StreamHandler)
            and not type(h).__module__.startswith("_pytest")
            and h.level <= level
        ]
        current = current.parent if current.propagate else None
    return found


def one_refusal_line(caplog, status: int, reason: str, path: str) -> None:
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, f"{reason}: {path}")
    ]
    (record,) = records
    assert record.status_code == status
    assert record.exc_info is None and record.exc_text is None
    # Written once (Django's own console handler no longer doubles the root's), one line.
    (console,) = stream_handlers_reached(logging.getLogger("django.request"), logging.WARNING)
    printed = console.format(record)
    assert "\n" not in printed and "Traceback" not in printed, printed


@pytest.mark.django_db
def test_a_403_logs_one_line_without_traceback(client, team, caplog):
    client.force_login(team.reader)
    url = reverse("workspace:settings", args=[team.workspace.slug])
    caplog.set_level(logging.INFO, logger="django.request")
    assert client.get(url).status_code == 403
    one_refusal_line(caplog, 403, "Forbidden (Permission denied)", url)


@pytest.mark.django_db
def test_a_404_logs_one_line_without_traceback(client, team, caplog):
    client.force_login(team.outsider)
    url = reverse("workspace:overview", args=[team.workspace.slug])
    caplog.set_level(logging.INFO, logger="django.request")
    assert client.get(url).status_code == 404
    one_refusal_line(caplog, 404, "Not Found", url)


def test_a_500_keeps_its_traceback():
    """Only refusals lose it: a server error is a fault, its traceback is the point."""
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("django.request", logging.ERROR, "", 0, "x", (), exc_info)
    record.status_code = 500
    assert RefusalWithoutTraceback().filter(record) and record.exc_info is exc_info
