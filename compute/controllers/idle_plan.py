"""What the idle sweep decides, in memory, against the rows it claimed (no queries):
each step changes the claimed instance or schedule and adds the events, reminders and
notifications it makes to the plan, which compute/controllers/idle.py writes at once.
The words are the same as when the sweep acted one row at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from django.contrib.auth.models import User
from django.urls import reverse

from compute import quota
from compute.models import Compute, ComputeState, Reminder, Schedule, ScheduleAction
from compute.models.events import Event, EventVerb, event
from compute.models.states import INSTANCE_UP, SCHEDULED_START_FROM, SCHEDULED_STOP_FROM
from compute.rules import idle
from compute.rules.quota import Check
from workspace.notify import Notice

S = ComputeState
# The event of each schedule action that moved the instance.
FIRED: dict[str, EventVerb] = {
    ScheduleAction.START: EventVerb.SCHEDULED_START,
    ScheduleAction.STOP: EventVerb.SCHEDULED_STOP,
}
IDLE, SCHEDULE = "idle", "schedule"
Sent = set[tuple[int, str, datetime, int]]  # (instance, kind, deadline, lead minutes)


@dataclass
class IdleReport:
    stopped: list[int] = field(default_factory=list)
    reminded: list[tuple[int, str, int]] = field(default_factory=list)
    fired: list[tuple[int, str]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    # Computes this sweep moved (stopping, starting): the task enqueues their reconcile.
    to_reconcile: list[int] = field(default_factory=list)


@dataclass
class Cores:
    """Dedicated cores of each (workspace, family) a scheduled start may need, read under
    the quota row's lock, and kept up to date as this sweep stops and starts instances:
    a start sees the cores the stops before it freed, as the Start button would."""

    usage: dict[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)

    def moved(self, compute: Compute, before: str, after: str) -> None:
        key = family_of(compute)
        if key not in self.usage or (before in INSTANCE_UP) == (after in INSTANCE_UP):
            return
        assert compute.vm_size is not None  # family_of found one
        limit, approved, used = self.usage[key]
        taken = compute.vm_size.vcpus if after in INSTANCE_UP else -compute.vm_size.vcpus
        self.usage[key] = (limit, approved, used + taken)

    def check(self, compute: Compute) -> Check:
        size = compute.vm_size
        assert size is not None  # only instances with a size have a key (`family_of`)
        limit, approved, used = self.usage[(compute.workspace_id, size.family_id)]
        return quota.family_check(size.family, size.vcpus, limit, approved, used)


# Reversed in place of a compute's slug and id: each URL is reversed once a sweep and then
# filled in for each compute. reverse() walks the URLconf; 400 calls were a tenth of a busy
# sweep. Neither marker can appear elsewhere in a reversed path of ours.
SLUG_MARK = "hangar-slug-mark"
PK_MARK = "8765432109"


class Links:
    """The pages notifications about one instance point to."""

    def __init__(self, compute: Compute, shapes: dict[tuple[str, ...], str]) -> None:
        self.compute = compute
        self.shapes = shapes  # the sweep's: (URL name, extra arguments) -> reversed shape

    def url(self, name: str, *extra: str) -> str:
        key = (name, *extra)
        shape = self.shapes.get(key)
        if shape is None:
            shape = self.shapes[key] = reverse(name, args=[SLUG_MARK, int(PK_MARK), *extra])
        # The id first: a slug may hold digits (even the id marker's), the marker no digit.
        return shape.replace(PK_MARK, str(self.compute.pk), 1).replace(
            SLUG_MARK, self.compute.workspace.slug, 1
        )

    @cached_property
    def page(self) -> str:
        return self.url("compute:detail")  # compute.get_absolute_url()

    @cached_property
    def keep_running(self) -> str:
        return self.url("compute:keep-running")

    @cached_property
    def stop(self) -> str:
        return self.url("compute:action", "stop")


@dataclass
class Plan:
    """What one sweep does, decided in memory against the claimed rows, written at the end."""

    now: datetime
    sent: Sent = field(default_factory=set)
    cores: Cores = field(default_factory=Cores)
    report: IdleReport = field(default_factory=IdleReport)
    reminders: list[Reminder] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Sent once the plan has committed (`idle_sweep`): mail only about what happened.
    notices: list[Notice] = field(default_factory=list)
    links_of: dict[int, Links] = field(default_factory=dict)
    url_shapes: dict[tuple[str, ...], str] = field(default_factory=dict)

    def links(self, compute: Compute) -> Links:
        links = self.links_of.get(compute.pk)
        if links is None:
            links = self.links_of[compute.pk] = Links(compute, self.url_shapes)
        return links

    def notify_owner(
        self, compute: Compute, title: str, body: str, email_on_commit: bool = False
    ) -> None:
        """A notification to whoever owns the compute (nobody for a seeded row)."""
        if compute.owner:
            self.notices.append(
                Notice(
                    user=compute.owner,
                    workspace=compute.workspace,
                    title=title,
                    body=body,
                    url=self.links(compute).page,
                    email_on_commit=email_on_commit,
                )
            )


def family_of(compute: Compute) -> tuple[int, int] | None:
    if compute.vm_size is None:
        return None
    return compute.workspace_id, compute.vm_size.family_id


def missed_start(compute: Compute, run_at: datetime, now: datetime) -> bool:
    """A start missed (while Hangar was down) by more than the workspace's window."""
    return now - run_at > idle.minutes(compute.workspace.missed_start_window_minutes)


# The steps: each changes the claimed rows in memory and adds what it tells -----------


def check_idle(compute: Compute, plan: Plan) -> None:
    """If the instance's idle check is due (it may be claimed for a schedule only): stop
    it at its deadline, else send the reminders whose lead time has come and look again
    at the next one."""
    now = plan.now
    if compute.state != S.RUNNING or not compute.idle_next_check_at:
        return
    if compute.idle_next_check_at > now or compute.idle_deadline is None:
        return
    if compute.idle_deadline <= now:
        stop_idle(compute, plan)
        return
    remind(compute, IDLE, compute.idle_deadline, plan)
    compute.idle_next_check_at = idle.next_check(
        compute.idle_deadline, compute.workspace.leads, now
    )


def check_schedule(schedule: Schedule, plan: Plan) -> None:
    run_at = schedule.effective_run_at
    if run_at is None:
        return
    if run_at <= plan.now:
        fire(schedule, run_at, plan)
        return
    remind(schedule.compute, SCHEDULE, run_at, plan)
    schedule.next_check_at = idle.schedule_next_check(
        schedule, schedule.compute.workspace.leads, plan.now
    )


def stop_idle(compute: Compute, plan: Plan) -> None:
    last = compute.last_activity or "none recorded"
    when = (compute.last_activity_at or compute.state_changed_at).strftime("%H:%M UTC")
    reason = (
        f"Stopped after {compute.idle_shutdown_minutes} min idle; last activity: {last} at {when}."
    )
    move(compute, S.STOPPING, plan)
    plan.events.append(event(compute, EventVerb.IDLE_STOPPED, reason))
    plan.report.to_reconcile.append(compute.pk)
    plan.report.stopped.append(compute.pk)
    plan.notify_owner(
        compute,
        title=f"{compute.name} was stopped after {compute.idle_shutdown_minutes} min idle",
        body=reason + " Start it again whenever you need it.",
    )


def remind(compute: Compute, kind: str, deadline: datetime, plan: Plan) -> None:
    """Send every reminder whose lead time has come, each exactly once per deadline."""
    user = compute.owner
    for lead in compute.workspace.leads:
        sent = (compute.pk, kind, deadline, lead)
        if deadline - idle.minutes(lead) > plan.now or sent in plan.sent:
            continue
        plan.sent.add(sent)  # two stop schedules at one moment: one reminder
        plan.reminders.append(
            Reminder(compute=compute, kind=kind, deadline=deadline, lead_minutes=lead)
        )
        plan.report.reminded.append((compute.pk, kind, lead))
        if user is None:
            continue
        plan.notices.append(reminder_notice(compute, user, kind, deadline, lead, plan))
        plan.events.append(
            event(compute, EventVerb.REMINDED, f"Reminded {user} {lead} min before {what(kind)}.")
        )


def what(kind: str) -> str:
    """The stop a reminder of this kind warns of."""
    return "an idle shutdown" if kind == IDLE else "a scheduled stop"


def reminder_notice(
    compute: Compute, user: User, kind: str, deadline: datetime, lead: int, plan: Plan
) -> Notice:
    links = plan.links(compute)
    keep = f"{links.keep_running}?kind={kind}"
    left = max(1, round((deadline - plan.now).total_seconds() / 60))
    return Notice(
        user=user,
        workspace=compute.workspace,
        title=f"{compute.name} stops in about {lead} min ({what(kind)})",
        body=(
            f"{compute.name} will be stopped at {deadline:%H:%M} UTC (in about {left} min) "
            f"unless you keep it running. Last activity: {compute.last_activity or 'none'}."
        ),
        url=links.page,
        actions=[
            {"label": "Keep running", "url": keep, "method": "post", "email_url": keep},
            {"label": "Stop now", "url": links.stop, "method": "post", "email_url": links.page},
        ],
    )


def fire(schedule: Schedule, run_at: datetime, plan: Plan) -> None:
    compute, now = schedule.compute, plan.now
    schedule.next_run_at = idle.next_run(schedule, max(now, run_at))
    schedule.postponed_to, schedule.last_fired_at = None, now
    schedule.next_check_at = idle.schedule_next_check(schedule, compute.workspace.leads, now)
    at = f"{run_at:%a %H:%M} UTC"
    if schedule.action == ScheduleAction.START:
        skipped = skip_missed_start(compute, at, run_at, plan) or skip_start_for_quota(
            compute, at, plan
        )
        if skipped:
            plan.report.skipped.append(schedule.pk)
            return
    late = now - run_at
    missed = " (missed while Hangar was down)" if late.total_seconds() > 60 else ""
    done = "started" if schedule.action == ScheduleAction.START else "stopped"
    if system_verb(compute, schedule.action, plan):
        plan.report.to_reconcile.append(compute.pk)
        message = f"Scheduled {schedule.action} ({schedule.cron}, {schedule.timezone}) "
        message += f"{done} {compute.name} for {at}{missed}."
        plan.events.append(event(compute, FIRED[schedule.action], message))
    else:
        state = compute.get_state_display().lower()
        plan.events.append(
            event(
                compute, EventVerb.SCHEDULE_IDLE, f"Schedule for {at}: {compute.name} was {state}."
            )
        )
    plan.report.fired.append((schedule.pk, schedule.action))


def skip_missed_start(compute: Compute, at: str, run_at: datetime, plan: Plan) -> bool:
    if not missed_start(compute, run_at, plan.now):
        return False
    window = compute.workspace.missed_start_window_minutes
    late = plan.now - run_at
    message = (
        f"Skipped the scheduled start of {at}: missed by {late.total_seconds() / 60:.0f} min "
        f"(while Hangar was down), more than the {window} min window."
    )
    plan.events.append(event(compute, EventVerb.SCHEDULE_SKIPPED, message, level="warning"))
    return True


def skip_start_for_quota(compute: Compute, at: str, plan: Plan) -> bool:
    short = cores_short_for_start(compute, plan.cores)
    if not short:
        return False
    message = f"Skipped the scheduled start of {at}: {short}"
    plan.events.append(event(compute, EventVerb.SCHEDULE_SKIPPED, message, level="warning"))
    plan.notify_owner(
        compute,
        title=f"{compute.name} did not start at its scheduled time",
        body=f"{message} Free cores or request more, then start it.",
        email_on_commit=True,
    )
    return True


def cores_short_for_start(compute: Compute, cores: Cores) -> str:
    """Why the workspace has no cores for this instance to start ("" when it has, or when
    it is not stopped: nothing to start). A stopped instance holds no cores, so a schedule
    takes them again as the Start button does, against the usage read under the quota
    row's lock (`lock_cores_for_starts`), held until the start commits."""
    if compute.state not in SCHEDULED_START_FROM or compute.vm_size is None:
        return ""
    check = cores.check(compute)
    return "" if check.fits else check.message


def system_verb(compute: Compute, action: str, plan: Plan) -> bool:
    """Start or stop on Hangar's own authority (a schedule), from the states it may."""
    sources = SCHEDULED_START_FROM if action == ScheduleAction.START else SCHEDULED_STOP_FROM
    if compute.state not in sources:
        return False
    move(compute, S.STARTING if action == ScheduleAction.START else S.STOPPING, plan)
    return True


def move(compute: Compute, target: str, plan: Plan) -> None:
    """The claimed row's new state, written with the rest (`act`); its cores follow."""
    plan.cores.moved(compute, compute.state, target)
    compute.state, compute.state_changed_at = target, plan.now
    compute.idle_deadline = compute.idle_next_check_at = None
