"""Schedules of instances and the reminders sent before a stop."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Expression, OuterRef, Subquery
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from compute.models.compute import Compute
from compute.models.jobs import Job
from compute.models.states import JOB_ACTIVE, ComputeKind, ScheduleAction
from compute.rules.idle import deadline_of, next_check


class Schedule(models.Model):
    """A cron expression (the weekly form is stored as one) in a time zone.

    `next_run_at` is the next occurrence in UTC; firing moves it forward by compare-and-set,
    so two sweeps can never fire one occurrence twice.
    """

    compute = models.ForeignKey(Compute, on_delete=models.CASCADE, related_name="schedules")
    action = models.CharField(max_length=8, choices=ScheduleAction.choices)
    cron = models.CharField(max_length=100)
    timezone = models.CharField(max_length=64, default="UTC")
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    # "Keep running" before a scheduled stop moves that one occurrence here.
    postponed_to = models.DateTimeField(null=True, blank=True)
    # The next moment the sweep must look: a stop reminder's lead time or the run itself.
    next_check_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["compute", "id"]
        indexes = [
            # The schedule sweep reads due and soon-due schedules (controllers/idle.py).
            models.Index(
                fields=["next_check_at"], name="schedule_due_idx", condition=models.Q(enabled=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.cron} ({self.timezone})"

    @property
    def effective_run_at(self):
        return self.postponed_to or self.next_run_at


class Reminder(models.Model):
    """One row per (instance, deadline, lead time): the unique constraint is what makes a
    reminder go out exactly once, however many sweeps race for it."""

    compute = models.ForeignKey(Compute, on_delete=models.CASCADE, related_name="reminders")
    kind = models.CharField(max_length=12)  # "idle" or "schedule"
    deadline = models.DateTimeField()
    lead_minutes = models.PositiveIntegerField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["compute", "kind", "deadline", "lead_minutes"], name="reminder_once"
            ),
        ]
        indexes = [
            # Retention deletes reminders of long-past deadlines (controllers/retention.py).
            models.Index(fields=["deadline"], name="reminder_deadline_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} reminder {self.lead_minutes} min before {self.deadline}"


class CommaJoined(models.Aggregate):
    """A group's values as one text, "30,5": STRING_AGG on PostgreSQL, GROUP_CONCAT on
    SQLite (Django 5.2 has no portable string aggregate)."""

    function = "STRING_AGG"
    template = "%(function)s(CAST(%(expressions)s AS TEXT), ',')"
    output_field = models.CharField()

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, tuple[str | int, ...]]:
        return super().as_sql(
            compiler,
            connection,
            function="GROUP_CONCAT",
            template="%(function)s(%(expressions)s, ',')",
            **extra_context,
        )


def leads_sent(kind: str, compute: OuterRef, deadline: OuterRef | Expression) -> Subquery:
    """A column for the row that claims a deadline: the lead times already reminded of
    before it, comma-joined ("30,5"), or None (`parse_leads` reads it)."""
    sent = (
        Reminder.objects.filter(compute=compute, kind=kind, deadline=deadline)
        .order_by()
        .values("compute")
        .annotate(leads=CommaJoined("lead_minutes"))
        .values("leads")
    )
    return Subquery(sent, output_field=models.CharField())


def parse_leads(joined: str | None) -> list[int]:
    return [int(lead) for lead in joined.split(",")] if joined else []


# Applying the rules (compute/rules/idle.py) to an instance's row.


def is_busy(compute: Compute) -> bool:
    return Job.objects.filter(compute=compute, status__in=JOB_ACTIVE).exists()


def refresh_deadline(compute: Compute, now: datetime | None = None) -> Compute:
    """Recompute and store the deadline and the next check after anything changed."""
    now = now or timezone.now()
    deadline = deadline_of(compute, is_busy(compute))
    compute.idle_deadline = deadline
    compute.idle_next_check_at = next_check(deadline, compute.workspace.leads, now)
    # Only onto the state it was computed for: a stop that landed since (it clears both)
    # must not get a running instance's deadline back.
    Compute.objects.filter(pk=compute.pk, state=compute.state).update(
        idle_deadline=compute.idle_deadline, idle_next_check_at=compute.idle_next_check_at
    )
    return compute


def record_activity(compute_id: int, what: str, at: datetime | None = None) -> None:
    """Something happened on the instance: the idle clock starts again from now."""
    compute = (
        Compute.objects.select_related("workspace")
        .filter(pk=compute_id, kind=ComputeKind.INSTANCE)
        .first()
    )
    if compute is None:
        return
    at = at or timezone.now()
    compute.last_activity_at, compute.last_activity = at, what[:200]
    Compute.objects.filter(pk=compute.pk).update(last_activity_at=at, last_activity=what[:200])
    refresh_deadline(compute, at)
