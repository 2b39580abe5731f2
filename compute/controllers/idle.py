"""The idle and schedule sweep: stop idle instances, fire schedules, send reminders.

It reads only what is due (`idle_next_check_at` / `next_check_at` ≤ now, two indexed
queries), so with 5,000 running instances and nothing due it costs two empty queries.
Every action is a compare-and-set and every reminder a unique row, so two sweeps at once
never stop twice, fire twice, or remind twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from compute import quota
from compute.models import Compute, ComputeState, Reminder, Schedule, ScheduleAction, Tier
from compute.models.events import EventVerb, record
from compute.models.states import SCHEDULED_START_FROM, SCHEDULED_STOP_FROM
from compute.rules import idle
from workspace.notify import notify

log = logging.getLogger(__name__)
S = ComputeState
# The event of each schedule action that moved the instance.
FIRED: dict[str, EventVerb] = {
    ScheduleAction.START: EventVerb.SCHEDULED_START,
    ScheduleAction.STOP: EventVerb.SCHEDULED_STOP,
}


@dataclass
class IdleReport:
    stopped: list[int] = field(default_factory=list)
    reminded: list[tuple[int, str, int]] = field(default_factory=list)
    fired: list[tuple[int, str]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    # Computes this sweep moved (stopping, starting): the task enqueues their reconcile.
    to_reconcile: list[int] = field(default_factory=list)


def idle_sweep(now: datetime | None = None) -> IdleReport:
    now = now or timezone.now()
    report = IdleReport()
    due = Compute.objects.filter(
        state=S.RUNNING, idle_next_check_at__isnull=False, idle_next_check_at__lte=now
    ).select_related("workspace", "assigned_to", "created_by", "vm_size")
    for compute in due:
        if compute.idle_deadline is None:
            continue
        if compute.idle_deadline <= now:
            stop_idle(compute, now, report)
        else:
            remind(compute, "idle", compute.idle_deadline, now, report)
            Compute.objects.filter(pk=compute.pk, idle_deadline=compute.idle_deadline).update(
                idle_next_check_at=idle.next_check(
                    compute.idle_deadline, compute.workspace.leads, now
                )
            )
    schedules = Schedule.objects.filter(
        enabled=True, next_check_at__isnull=False, next_check_at__lte=now
    ).select_related("compute__workspace", "compute__assigned_to", "compute__created_by")
    for schedule in schedules:
        run_at = schedule.effective_run_at
        if run_at <= now:
            fire(schedule, run_at, now, report)
        else:
            remind(schedule.compute, "schedule", run_at, now, report)
            Schedule.objects.filter(pk=schedule.pk, next_check_at=schedule.next_check_at).update(
                next_check_at=idle.schedule_next_check(
                    schedule, schedule.compute.workspace.leads, now
                )
            )
    return report


def notify_owner(compute: Compute, title: str, body: str, email_on_commit: bool = False) -> None:
    """A notification to whoever owns the compute (nobody for a seeded row)."""
    if compute.owner:
        notify(
            compute.owner,
            workspace=compute.workspace,
            title=title,
            body=body,
            url=compute.get_absolute_url(),
            email_on_commit=email_on_commit,
        )


def stop_idle(compute: Compute, now: datetime, report: IdleReport) -> None:
    with transaction.atomic():
        won = Compute.objects.filter(
            pk=compute.pk, state=S.RUNNING, idle_deadline=compute.idle_deadline
        ).update(
            state=S.STOPPING, state_changed_at=now, idle_deadline=None, idle_next_check_at=None
        )
        if not won:
            return  # activity moved the deadline, or another sweep got here first
        last = compute.last_activity or "none recorded"
        when = (compute.last_activity_at or compute.state_changed_at).strftime("%H:%M UTC")
        reason = (
            f"Stopped after {compute.idle_shutdown_minutes} min idle; "
            f"last activity: {last} at {when}."
        )
        record(compute, EventVerb.IDLE_STOPPED, reason)
        report.to_reconcile.append(compute.pk)
    report.stopped.append(compute.pk)
    notify_owner(
        compute,
        title=f"{compute.name} was stopped after {compute.idle_shutdown_minutes} min idle",
        body=reason + " Start it again whenever you need it.",
    )


def remind(
    compute: Compute, kind: str, deadline: datetime, now: datetime, report: IdleReport
) -> None:
    """Send every reminder whose lead time has come, each exactly once per deadline."""
    user = compute.owner
    for lead in compute.workspace.leads:
        if deadline - idle.minutes(lead) > now:
            continue
        try:
            with transaction.atomic():
                Reminder.objects.create(
                    compute=compute, kind=kind, deadline=deadline, lead_minutes=lead
                )
        except IntegrityError:
            continue  # already sent, by this sweep earlier or by another one now
        report.reminded.append((compute.pk, kind, lead))
        if user is None:
            continue
        what = "an idle shutdown" if kind == "idle" else "a scheduled stop"
        slug = compute.workspace.slug
        keep = reverse("compute:keep-running", args=[slug, compute.pk]) + f"?kind={kind}"
        stop = reverse("compute:action", args=[slug, compute.pk, "stop"])
        left = max(1, round((deadline - now).total_seconds() / 60))
        notify(
            user,
            workspace=compute.workspace,
            title=f"{compute.name} stops in about {lead} min ({what})",
            body=(
                f"{compute.name} will be stopped at {deadline:%H:%M} UTC (in about {left} min) "
                f"unless you keep it running. Last activity: {compute.last_activity or 'none'}."
            ),
            url=compute.get_absolute_url(),
            actions=[
                {"label": "Keep running", "url": keep, "method": "post", "email_url": keep},
                {
                    "label": "Stop now",
                    "url": stop,
                    "method": "post",
                    "email_url": compute.get_absolute_url(),
                },
            ],
        )
        record(compute, EventVerb.REMINDED, f"Reminded {user} {lead} min before {what}.")


def fire(schedule: Schedule, run_at: datetime, now: datetime, report: IdleReport) -> None:
    compute = schedule.compute
    following = idle.next_run(schedule, max(now, run_at))
    with transaction.atomic():
        # The instance's row first, then the schedule's: the order in which "keep running"
        # locks them to postpone a stop (actions/idle.py), so the two never deadlock.
        locked = Compute.objects.select_for_update().filter(pk=compute.pk).first()
        won = Schedule.objects.filter(
            pk=schedule.pk, next_run_at=schedule.next_run_at, postponed_to=schedule.postponed_to
        ).update(next_run_at=following, postponed_to=None, last_fired_at=now)
        if not won:
            return  # another sweep fired this occurrence
        schedule.next_run_at, schedule.postponed_to = following, None
        Schedule.objects.filter(pk=schedule.pk).update(
            next_check_at=idle.schedule_next_check(schedule, compute.workspace.leads, now)
        )
        late = now - run_at
        policy_window = compute.workspace.missed_start_window_minutes
        at = f"{run_at:%a %H:%M} UTC"
        if schedule.action == ScheduleAction.START and late > idle.minutes(policy_window):
            record(
                compute,
                EventVerb.SCHEDULE_SKIPPED,
                f"Skipped the scheduled start of {at}: missed by "
                f"{late.total_seconds() / 60:.0f} min (while Hangar was down), more than "
                f"the {policy_window} min window.",
                level="warning",
            )
            report.skipped.append(schedule.pk)
            return
        if schedule.action == ScheduleAction.START:
            short = cores_short_for_start(locked)
            if short:
                skip_start_for_quota(compute, at, short)
                report.skipped.append(schedule.pk)
                return
        moved = system_verb(compute, schedule.action, now)
        missed = " (missed while Hangar was down)" if late.total_seconds() > 60 else ""
        done = "started" if schedule.action == ScheduleAction.START else "stopped"
        if moved:
            report.to_reconcile.append(compute.pk)
            message = f"Scheduled {schedule.action} ({schedule.cron}, {schedule.timezone}) "
            message += f"{done} {compute.name} for {at}{missed}."
            record(compute, FIRED[schedule.action], message)
        else:
            state = compute.get_state_display().lower()
            record(
                compute, EventVerb.SCHEDULE_IDLE, f"Schedule for {at}: {compute.name} was {state}."
            )
    report.fired.append((schedule.pk, schedule.action))


def cores_short_for_start(locked: Compute | None) -> str:
    """Why the workspace has no cores for this instance to start ("" when it has, or when
    it is not stopped: nothing to start). A stopped instance holds no cores, so a schedule
    takes them again as the Start button does: the instance's row locked first (`fire`),
    then the quota row (the order `instance_verb` locks them in), both until the start
    commits."""
    if locked is None or locked.state not in SCHEDULED_START_FROM or locked.vm_size is None:
        return ""
    cores = quota.check(locked.workspace, locked.vm_size, 1, Tier.DEDICATED, lock=True)
    return "" if cores.fits else cores.message


def skip_start_for_quota(compute: Compute, at: str, short: str) -> None:
    message = f"Skipped the scheduled start of {at}: {short}"
    record(compute, EventVerb.SCHEDULE_SKIPPED, message, level="warning")
    notify_owner(
        compute,
        title=f"{compute.name} did not start at its scheduled time",
        body=f"{message} Free cores or request more, then start it.",
        email_on_commit=True,
    )


def system_verb(compute: Compute, action: str, now: datetime) -> bool:
    """Start or stop on Hangar's own authority (a schedule), by compare-and-set."""
    sources = SCHEDULED_START_FROM if action == ScheduleAction.START else SCHEDULED_STOP_FROM
    target = S.STARTING if action == ScheduleAction.START else S.STOPPING
    for source in sources:
        if Compute.objects.filter(pk=compute.pk, state=source).update(
            state=target, state_changed_at=now, idle_deadline=None, idle_next_check_at=None
        ):
            return True
    return False
