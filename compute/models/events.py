"""A compute's event log: what happened, who or what did it, and why.

Every happening has one past-tense verb in `EventVerb`; `record` accepts no other, so the
admin's filter and any query by verb see the whole vocabulary. Stored verbs of older
releases were renamed by migration 0015 (its map is the history of the names).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db import models
from django.utils import timezone

from compute.models.compute import Compute


class EventVerb(models.TextChoices):
    # A member asked (the reconciler then does the work and says so).
    COMPUTE_CREATED = "compute.created", "Compute created"
    COMPUTE_UPDATED = "compute.updated", "Cluster bounds changed"
    START_REQUESTED = "compute.start_requested", "Start requested"
    STOP_REQUESTED = "compute.stop_requested", "Stop requested"
    RESTART_REQUESTED = "compute.restart_requested", "Restart requested"
    DELETE_REQUESTED = "compute.delete_requested", "Deletion requested"
    IDLE_SETTINGS_CHANGED = "compute.idle_settings_changed", "Idle shutdown changed"
    KEPT_RUNNING = "compute.kept_running", "Kept running"
    TOKEN_ISSUED = "compute.token_issued", "Activity token issued"
    # The reconciler got there, or could not.
    REACHED_RUNNING = "compute.reached_running", "Running"
    REACHED_STOPPED = "compute.reached_stopped", "Stopped"
    REACHED_STEADY = "compute.reached_steady", "Cluster steady"
    DELETED = "compute.deleted", "Deleted"
    ERRORED = "compute.errored", "Problem, retrying"
    RECOVERED = "compute.recovered", "Recovered"
    FAILED = "compute.failed", "Failed"
    SCALED_UP = "autoscale.scaled_up", "Scaled up"
    REPLICAS_SCALED = "serving.replicas_scaled", "Replicas scaled"
    SCALING_HELD = "autoscale.held_back", "Not scaled"
    # Idle shutdown and schedules.
    IDLE_STOPPED = "compute.idle_stopped", "Stopped for idleness"
    REMINDED = "compute.reminded", "Owner reminded"
    SCHEDULE_ADDED = "schedule.added", "Schedule added"
    SCHEDULE_DELETED = "schedule.deleted", "Schedule removed"
    SCHEDULE_POSTPONED = "schedule.postponed", "Scheduled stop postponed"
    SCHEDULED_START = "schedule.start_fired", "Scheduled start"
    SCHEDULED_STOP = "schedule.stop_fired", "Scheduled stop"
    SCHEDULE_IDLE = "schedule.had_nothing_to_do", "Schedule had nothing to do"
    SCHEDULE_SKIPPED = "schedule.skipped", "Scheduled start skipped"
    # Nodes.
    NODE_ADDED = "node.added", "Node added"
    ENVIRONMENT_WAIT = "node.waiting_for_environment", "Waiting for its environment"
    NODE_READY = "node.ready", "Node ready"
    NODE_REMOVED = "node.removed", "Node removed"
    NODE_PREEMPTED_ON_DEMAND = "node.preempted_on_demand", "Node preempted by an admin"
    NODE_PREEMPTED = "node.preempted", "Preempted node released"
    NODE_UNUSABLE = "node.marked_unusable", "Node unusable"
    ORPHAN_REMOVED = "node.orphan_removed", "Stray container removed"
    # Jobs.
    JOB_SUBMITTED = "job.submitted", "Job submitted"
    JOB_CANCELED = "job.canceled", "Job canceled"
    JOB_RELAUNCHED = "job.relaunched", "Job launched again"
    JOB_REQUEUED = "job.requeued", "Job requeued"
    JOB_GAVE_UP = "job.gave_up", "Job failed, retries exhausted"
    JOB_OUTPUT_CUT = "job.output_cut", "Job output cut"
    JOB_OUTPUTS_NOT_KEPT = "job.outputs_not_kept", "Job output files not kept"
    # Batch scoring (compute/inference): on its cluster's log.
    BATCH_SUBMITTED = "batch.submitted", "Batch scoring submitted"
    MINI_BATCH_RETRIED = "batch.mini_batch_retried", "Mini-batch failed, retrying"
    MINI_BATCH_FAILED = "batch.mini_batch_failed", "Mini-batch failed, attempts exhausted"
    BATCH_ENDED = "batch.ended", "Batch scoring ended"
    BATCH_CANCELED = "batch.canceled", "Batch scoring canceled"
    # Attached computes.
    ATTACHED = "attach.created", "Attached"
    ATTACHMENT_UPDATED = "attach.updated", "Connection changed"
    VALIDATION_REQUESTED = "attach.validation_requested", "Validation requested"
    VALIDATED = "attach.validated", "Validated"
    VALIDATION_FAILED = "attach.failed", "Validation failed"
    DETACH_REQUESTED = "attach.detach_requested", "Detach requested"
    DETACHED = "attach.detached", "Detached"
    WENT_UNREACHABLE = "health.went_down", "Unreachable"
    CAME_BACK = "health.came_back", "Reachable again"


class Event(models.Model):
    """What happened to a compute, who or what did it, and why."""

    compute = models.ForeignKey(Compute, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    verb = models.CharField(max_length=40, choices=EventVerb.choices)
    message = models.CharField(max_length=1000)
    level = models.CharField(
        max_length=8,
        default="info",
        choices=[("info", "info"), ("warning", "warning"), ("error", "error")],
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A compute's page shows its newest events: read off this index, however long
            # its history. Retention finds each compute's newest events before its cutoff,
            # which stay, off it too (controllers/retention.py).
            models.Index(fields=["compute", "-created_at", "-id"], name="event_compute_recent_idx"),
        ]

    def __str__(self) -> str:
        return self.message

    @property
    def who(self) -> str:
        return str(self.actor) if self.actor_id else "Hangar"


def event(
    compute: Compute,
    verb: EventVerb,
    message: str,
    *,
    actor: User | None = None,
    level: str = "info",
) -> Event:
    """An event not yet written: `record` writes one, `record_all` many in one INSERT."""
    # EventVerb(verb) raises for a verb outside the vocabulary: a typo fails the first test
    # that passes by, instead of writing a row no filter finds.
    return Event(
        compute=compute, actor=actor, verb=EventVerb(verb), message=message[:1000], level=level
    )


def record(
    compute: Compute,
    verb: EventVerb,
    message: str,
    *,
    actor: User | None = None,
    level: str = "info",
) -> Event:
    written = event(compute, verb, message, actor=actor, level=level)
    written.save(force_insert=True)
    return written


def record_all(events: list[Event]) -> list[Event]:
    """Write events built by `event` in one INSERT (none: no query)."""
    return Event.objects.bulk_create(events) if events else []
