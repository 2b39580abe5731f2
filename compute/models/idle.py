"""Schedules of instances and the reminders sent before a stop."""

from __future__ import annotations

from django.db import models

from compute.models.compute import Compute


class ScheduleAction(models.TextChoices):
    START = "start", "Start"
    STOP = "stop", "Stop"


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

    def __str__(self) -> str:
        return f"{self.kind} reminder {self.lead_minutes} min before {self.deadline}"
