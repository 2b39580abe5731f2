"""Logging filters (settings.LOGGING and config/celery.py install them).

- `RefusalWithoutTraceback`: Django logs a 403 or 404 raised as an exception (PermissionDenied,
  Http404) on `django.request` with the exception's traceback. A refusal is an answer, not a
  fault: it keeps its one line ("Forbidden (Permission denied): /path"), without traceback.
  5xx keep theirs.
- `QuietPeriodicTasks`: beat sends the sweep every second, and Celery logs each one three
  times at INFO (sent, received, succeeded; or discarded, when it expired unrun: a newer one
  is queued behind it, by design). Those lines about the sweep become DEBUG; the sweep task
  says itself, at INFO, when it changed something (compute/tasks.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

# Celery task names whose routine lines (sent, received, discarded, succeeded) are DEBUG.
QUIET_TASKS = frozenset({"hangar.sweep"})
# The loggers Celery writes those lines to.
CELERY_ROUTINE_LOGGERS = (
    "celery.beat",  # Scheduler: Sending due task reconcile-sweep (hangar.sweep)
    "celery.worker.strategy",  # Task hangar.sweep[id] received
    "celery.worker.request",  # Discarding revoked task: hangar.sweep[id]  (expired)
    "celery.app.trace",  # Task hangar.sweep[id] succeeded in 0.03s: {...}
)


class RefusalWithoutTraceback(logging.Filter):
    """Drop the traceback of a 4xx record; the record itself stays (one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


def names_task(args: object, names: frozenset[str]) -> bool:
    """Whether a Celery log record's arguments name one of these tasks (beat passes a
    tuple, the worker a dict with "name")."""
    if isinstance(args, Mapping):
        return args.get("name") in names
    if isinstance(args, tuple):
        return any(isinstance(arg, str) and arg in names for arg in args)
    return False


class QuietPeriodicTasks(logging.Filter):
    """Celery's INFO lines about a task in QUIET_TASKS become DEBUG lines: kept where the
    logger shows DEBUG, dropped elsewhere. Warnings and errors about them are untouched."""

    def __init__(self, names: frozenset[str] = QUIET_TASKS) -> None:
        super().__init__()
        self.names = names

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not names_task(record.args, self.names):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


def install_quiet_periodic_tasks() -> None:
    """Put QuietPeriodicTasks on Celery's loggers, once (Celery sets up its own logging after
    Django's, so the filter is attached to the loggers themselves, not to a handler)."""
    for name in CELERY_ROUTINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietPeriodicTasks) for f in logger.filters):
            logger.addFilter(QuietPeriodicTasks())
