"""Retention: the tables that grow with every day of use lose their rows older than
HANGAR_EVENT_RETENTION_DAYS, a bounded batch per table at a time, from the sweep.

What stays, whatever its age:
- every node row not ended (live nodes, and nodes still being removed);
- of each compute (workspace), the newest KEEP_BEFORE_CUTOFF events (activity, chart
  samples) older than the cutoff, besides all the newer ones: a compute untouched for
  months still explains its last state, and its chart still starts at the right level;
- unread notifications; and every job row (jobs are the user's record).

A job's output files stay as long as the job, unless HANGAR_JOB_OUTPUTS_RETENTION_DAYS says
otherwise: then those of jobs that ended longer ago go (oldest first, a bounded batch per
call), and the job row says they were removed.

Each batch picks the oldest rows through an index and deletes them by primary key, so a
call costs about the same at 500,000 rows as at 500. Rows kept by the rule above would stop
an "oldest first" scan at the same rows every time: the logs are scanned from a cursor
(in the cache) that moves on each call and starts over once it reaches the cutoff. A lost
cursor only means starting over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import models
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from compute.lib import output_store
from compute.models import ComputeSample, Event, Job, Node, Reminder
from compute.models.states import LIVE_NODE_STATES
from workspace.models import Activity, Notification

log = logging.getLogger(__name__)

ROWS_PER_TABLE = 500  # at most deleted (and, for logs, looked at) per table and call
KEEP_BEFORE_CUTOFF = 20
EVERY_SECONDS = 60
RAN_KEY = "hangar:retention:ran"
CURSOR_KEY = "hangar:retention:cursor:{}"
Cursor = tuple[datetime, int]  # (time, pk) of the last row a history's scan looked at


@dataclass(frozen=True)
class Expiring:
    """Rows that simply go once their `time_field` is older than the cutoff."""

    name: str
    model: type[models.Model]
    time_field: str
    only: Q = field(default_factory=Q)


@dataclass(frozen=True)
class History:
    """A log whose newest rows before the cutoff stay, KEEP_BEFORE_CUTOFF per owner."""

    name: str
    model: type[models.Model]
    time_field: str
    owner_field: str


EXPIRING = (
    Expiring("ended nodes", Node, "ended_at", ~Q(state__in=LIVE_NODE_STATES)),
    Expiring("reminders", Reminder, "deadline"),  # a past deadline is never reminded again
    Expiring("read notifications", Notification, "created_at", Q(read_at__isnull=False)),
)
HISTORIES = (
    History("events", Event, "created_at", "compute_id"),
    History("activity", Activity, "created_at", "workspace_id"),
    History("chart samples", ComputeSample, "at", "compute_id"),
)


@dataclass
class RetentionReport:
    deleted: dict[str, int] = field(default_factory=dict)
    # A batch came back full: more is waiting, the next sweep goes on instead of waiting.
    more: bool = False

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def prune_if_due(now: datetime | None = None) -> RetentionReport | None:
    """Prune at most once every EVERY_SECONDS (one marker in the shared cache, however
    many workers sweep), and at every sweep while a backlog is worked off. None if not
    due (or the cache cannot say: next time)."""
    try:
        if not cache.add(RAN_KEY, True, EVERY_SECONDS):
            return None
    except (redis.RedisError, OSError) as exc:
        log.debug("retention skipped: %s", exc)
        return None
    report = prune(now)
    if report.more:
        cache.delete(RAN_KEY)
    return report


def prune(
    now: datetime | None = None, limit: int = ROWS_PER_TABLE, keep: int = KEEP_BEFORE_CUTOFF
) -> RetentionReport:
    """One batch of at most `limit` rows per table."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.HANGAR_EVENT_RETENTION_DAYS)
    report = RetentionReport()
    for table in EXPIRING:
        deleted = prune_expiring(table, cutoff, limit)
        report.deleted[table.name] = deleted
        report.more |= deleted == limit
    for history in HISTORIES:
        deleted, full = prune_history(history, cutoff, limit, keep)
        report.deleted[history.name] = deleted
        # A window with nothing to delete (only kept rows) waits for the next minute.
        report.more |= full and deleted > 0
    days = settings.HANGAR_JOB_OUTPUTS_RETENTION_DAYS
    if days:
        removed = prune_outputs((now or timezone.now()) - timedelta(days=days), limit)
        report.deleted["job output files"] = removed
        report.more |= removed == limit
    return report


def prune_outputs(cutoff: datetime, limit: int) -> int:
    """The output files of up to `limit` jobs that ended before the cutoff, oldest first
    (off the partial index job_outputs_age_idx). Files first, then the rows: a crash in
    between leaves rows whose files are gone, which the next call finds and writes off."""
    expired = list(
        Job.objects.filter(outputs_files__gt=0, finished_at__lt=cutoff)
        .order_by("finished_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not expired:
        return 0
    for job_id in expired:
        output_store.remove_job(job_id)
    days = settings.HANGAR_JOB_OUTPUTS_RETENTION_DAYS
    Job.objects.filter(pk__in=expired).update(
        outputs_files=0,
        outputs_bytes=0,
        outputs_note=f"Its output files were removed {days} days after it ended "
        "(HANGAR_JOB_OUTPUTS_RETENTION_DAYS).",
    )
    return len(expired)


def prune_expiring(table: Expiring, cutoff: datetime, limit: int) -> int:
    return delete(table.model, list(oldest_query(table, cutoff, limit)))


def oldest_query(table: Expiring, cutoff: datetime, limit: int) -> QuerySet:
    """The primary keys of the `limit` oldest rows past the cutoff, oldest first."""
    return (
        table.model._default_manager.filter(table.only, **{f"{table.time_field}__lt": cutoff})
        .order_by(table.time_field)
        .values_list("pk", flat=True)[:limit]
    )


def prune_history(history: History, cutoff: datetime, limit: int, keep: int) -> tuple[int, bool]:
    """(rows deleted, whether the window was full) for the next `limit` rows older than
    the cutoff after the cursor; the cursor moves past them, or starts over at the end."""
    window = list(window_query(history, cutoff, read_cursor(history), keep, limit))
    doomed = [pk for pk, at, first_kept in window if first_kept is not None and at < first_kept]
    full = len(window) == limit
    write_cursor(history, (window[-1][1], window[-1][0]) if full else None)
    return delete(history.model, doomed), full


def window_query(
    history: History, cutoff: datetime, cursor: Cursor | None, keep: int, limit: int
) -> QuerySet:
    """(pk, time, time of the owner's keep-th newest row before the cutoff) of the next
    `limit` rows past the cutoff, oldest first from the cursor. A row older than that time
    goes; the time is None for an owner with fewer rows, which all stay."""
    time_field, owner_field = history.time_field, history.owner_field
    rows = history.model._default_manager.filter(**{f"{time_field}__lt": cutoff})
    if cursor is not None:
        at, pk = cursor
        rows = rows.filter(**{f"{time_field}__gte": at}).exclude(**{time_field: at, "pk__lte": pk})
    kept_from = Subquery(
        history.model._default_manager.filter(
            **{owner_field: OuterRef(owner_field), f"{time_field}__lt": cutoff}
        )
        .order_by(f"-{time_field}")
        .values(time_field)[keep - 1 : keep]
    )
    return (
        rows.order_by(time_field, "pk")
        .annotate(kept_from=kept_from)
        .values_list("pk", time_field, "kept_from")[:limit]
    )


def delete(model: type[models.Model], pks: list[int]) -> int:
    if not pks:
        return 0
    _, per_model = model._default_manager.filter(pk__in=pks).delete()
    return per_model.get(model._meta.label, 0)


def read_cursor(history: History) -> Cursor | None:
    try:
        return cache.get(CURSOR_KEY.format(history.model._meta.label_lower))
    except (redis.RedisError, OSError):
        return None  # start over: correct, only slower


def write_cursor(history: History, cursor: Cursor | None) -> None:
    key = CURSOR_KEY.format(history.model._meta.label_lower)
    try:
        if cursor is None:
            cache.delete(key)
        else:
            cache.set(key, cursor, None)
    except (redis.RedisError, OSError) as exc:
        log.debug("retention cursor not kept: %s", exc)
