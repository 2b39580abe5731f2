"""Service layer of idle shutdown: keep running, tokens, idle settings, schedules."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from compute import selectors
from compute.actions.errors import StateConflict
from compute.models import Compute, ComputeState, Schedule, ScheduleAction
from compute.models.events import EventVerb, record
from compute.models.idle import record_activity, refresh_deadline
from compute.rules import idle
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Role, Workspace

MAX_SCHEDULES = 4


# What a creator passes to say "no idle shutdown" on purpose; None leaves it to the
# workspace's default for new instances (compute/actions/computes.py create_instance).
IDLE_OFF = 0


def idle_minutes_for_new(workspace: Workspace, value: int | None) -> int | None:
    """The idle shutdown a new instance gets: the creator's choice, else the workspace's
    default. IDLE_OFF means off (stored as None), allowed only where the policy allows it."""
    if value is None:
        value = workspace.idle_default_minutes
    elif value == IDLE_OFF:
        value = None
    check_idle_minutes(workspace, value)
    return value


def check_idle_minutes(workspace: Workspace, value: int | None) -> None:
    """Idle minutes must sit inside the workspace policy; 'off' only if not required."""
    low, high = workspace.idle_min_minutes, workspace.idle_max_minutes
    if value is None:
        if workspace.idle_required:
            raise ValidationError(
                {
                    "idle_shutdown_minutes": f"{workspace.name} requires idle shutdown: "
                    f"choose {low} to {high} minutes."
                }
            )
        return
    if not low <= value <= high:
        raise ValidationError(
            {
                "idle_shutdown_minutes": f"{workspace.name} allows {low} to {high} minutes of "
                "idle time before shutdown."
            }
        )


def instance_of(access: WorkspaceAccess, compute_id: int) -> Compute:
    compute = selectors.instance_of(access, compute_id)
    if compute is None:
        raise ValidationError("This instance does not exist.")
    return compute


def set_idle_minutes(access: WorkspaceAccess, compute_id: int, value: int | None) -> Compute:
    require_role(access, Role.CONTRIBUTOR, "changing idle shutdown")
    compute = instance_of(access, compute_id)
    check_idle_minutes(access.workspace, value)
    actor = access.membership.user
    if compute.idle_shutdown_minutes == value:
        return compute
    with transaction.atomic():
        old = compute.idle_shutdown_minutes
        compute.idle_shutdown_minutes = value
        Compute.objects.filter(pk=compute.pk).update(idle_shutdown_minutes=value)
        refresh_deadline(compute)
        describe = lambda v: f"{v} min" if v else "off"  # noqa: E731
        record(
            compute,
            EventVerb.IDLE_SETTINGS_CHANGED,
            f"{actor} changed idle shutdown from {describe(old)} to {describe(value)}.",
            actor=actor,
        )
    return compute


def keep_running(access: WorkspaceAccess, compute_id: int, kind: str = "idle") -> datetime:
    """Push the coming stop back by the workspace's keep-running time, within the policy."""
    require_role(access, Role.CONTRIBUTOR, "keeping an instance running")
    compute = instance_of(access, compute_id)
    actor = access.membership.user
    workspace = access.workspace
    now = timezone.now()
    extra = idle.minutes(workspace.keep_running_minutes)
    with transaction.atomic():
        compute = locked_running(compute)
        if kind == "schedule":
            return postpone_scheduled_stop(compute, actor, now, extra)
        current = compute.idle_deadline or now
        until = min(max(current, now) + extra, now + idle.minutes(workspace.idle_max_minutes))
        Compute.objects.filter(pk=compute.pk).update(keep_running_until=until)
        compute.keep_running_until = until
        record_activity(compute.pk, f"{actor} chose keep running", now)
        compute.refresh_from_db()
        record(
            compute,
            EventVerb.KEPT_RUNNING,
            f"{actor} kept {compute.name} running: idle shutdown moved to "
            f"{compute.idle_deadline:%H:%M} UTC."
            if compute.idle_deadline
            else f"{actor} kept {compute.name} running.",
            actor=actor,
        )
        return compute.idle_deadline or until


def locked_running(compute: Compute) -> Compute:
    """The instance's row as it is now, locked until the transaction ends, if it still runs.

    The sweep's idle stop and a schedule's fire change the row under its lock too: a click
    that read the instance as running a moment before the sweep stopped it is refused here,
    not answered "keeps running" while the instance stops; a sweep that comes second finds
    the deadline or the schedule moved and leaves the instance running."""
    locked = Compute.objects.select_for_update().get(pk=compute.pk)
    if locked.state != ComputeState.RUNNING:
        raise StateConflict(f"{locked.name} is {locked.get_state_display().lower()}.")
    locked.workspace = compute.workspace
    return locked


def postpone_scheduled_stop(compute: Compute, actor, now: datetime, extra) -> datetime:
    horizon = now + idle.minutes(max(compute.workspace.leads or [0]) + 1)
    upcoming = [
        s
        for s in compute.schedules.filter(enabled=True, action=ScheduleAction.STOP)
        if s.effective_run_at and s.effective_run_at <= horizon
    ]
    if not upcoming:
        raise ValidationError(f"No scheduled stop of {compute.name} is coming up.")
    for schedule in upcoming:
        schedule.postponed_to = schedule.effective_run_at + extra
        schedule.next_check_at = idle.schedule_next_check(schedule, compute.workspace.leads, now)
        schedule.save(update_fields=["postponed_to", "next_check_at"])
    moved = min(s.postponed_to for s in upcoming if s.postponed_to is not None)  # all, just set
    record(
        compute,
        EventVerb.SCHEDULE_POSTPONED,
        f"{actor} postponed the scheduled stop of {compute.name} to {moved:%H:%M} UTC.",
        actor=actor,
    )
    record_activity(compute.pk, f"{actor} chose keep running", now)
    return moved


def rotate_token(access: WorkspaceAccess, compute_id: int) -> str:
    """A new activity token; the old one stops working at once. Returned once, never stored."""
    require_role(access, Role.CONTRIBUTOR, "managing activity tokens")
    compute = instance_of(access, compute_id)
    token, digest = idle.new_token()
    Compute.objects.filter(pk=compute.pk).update(activity_token_hash=digest)
    actor = access.membership.user
    record(compute, EventVerb.TOKEN_ISSUED, f"{actor} issued a new activity token.", actor=actor)
    return token


def add_schedule(
    access: WorkspaceAccess, compute_id: int, *, action: str, cron: str, tz: str
) -> Schedule:
    require_role(access, Role.CONTRIBUTOR, "scheduling")
    compute = instance_of(access, compute_id)
    try:
        cron = idle.check_cron(cron)
        idle.zone(tz)
    except idle.ScheduleError as exc:
        raise ValidationError(str(exc)) from None
    now = timezone.now()
    with transaction.atomic():
        locked = Compute.objects.select_for_update().get(pk=compute.pk)
        if locked.schedules.count() >= MAX_SCHEDULES:
            raise ValidationError(f"An instance has at most {MAX_SCHEDULES} schedules.")
        schedule = Schedule(compute=compute, action=action, cron=cron, timezone=tz)
        schedule.next_run_at = idle.next_run(schedule, now)
        schedule.next_check_at = idle.schedule_next_check(schedule, access.workspace.leads, now)
        schedule.save()
        actor = access.membership.user
        record(
            compute,
            EventVerb.SCHEDULE_ADDED,
            f"{actor} added a schedule: {action} at “{cron}” ({tz}); "
            f"next {schedule.next_run_at:%a %d %b %H:%M} UTC.",
            actor=actor,
        )
    return schedule


def delete_schedule(access: WorkspaceAccess, compute_id: int, schedule_id: int) -> None:
    require_role(access, Role.CONTRIBUTOR, "scheduling")
    compute = instance_of(access, compute_id)
    schedule = compute.schedules.filter(pk=schedule_id).first()
    if schedule is None:
        raise ValidationError("This schedule no longer exists.")
    schedule.delete()
    actor = access.membership.user
    record(
        compute,
        EventVerb.SCHEDULE_DELETED,
        f"{actor} removed the schedule {schedule}.",
        actor=actor,
    )
