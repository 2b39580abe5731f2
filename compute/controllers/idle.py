"""The idle and schedule sweep: stop idle instances, send reminders, fire schedules.

Cost: one transaction, and a fixed number of queries per kind of action, whatever is due.
Its first query claims the due instances (`idle_next_check_at` / a schedule's
`next_check_at` ≤ now) with the reminders already sent before their deadlines; with
nothing due that is all it does. Then, only for the kinds of action due: one query claims
the due schedules (with their reminders sent), one locks each (workspace, VM family)
quota row a scheduled start takes cores from; one UPDATE writes every instance and one
every schedule; one INSERT each writes the reminders, the events and the notifications.
The plan in between is made in memory against the claimed rows; the notifications'
emails go from a task of their own once the transaction has committed.

Exactly once, with two sweeps at once:
- rows are claimed with SELECT ... FOR UPDATE SKIP LOCKED: a row another sweep (or a
  "keep running" click) holds is left to it, and a claimed row is read fresh under its lock;
- every UPDATE is a compare-and-set against the claimed values (compute/models/bulk.py):
  where row locks do not exist (SQLite), a row changed since its claim rolls the whole
  transaction back and the sweep claims again; nothing is written for half the rows;
- a reminder's row is unique on (instance, kind, deadline, lead time): the constraint stays
  the backstop behind the claim's read of what was sent.
Locks are taken instance row first, then its schedules, then quota rows in (workspace,
family) order: "keep running" and the Start button lock in that order too, so none of
them deadlock.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from operator import or_

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from compute import enqueue, quota
from compute.controllers.idle_plan import (
    IDLE,
    SCHEDULE,
    Cores,
    IdleReport,
    Plan,
    Sent,
    check_idle,
    check_schedule,
    family_of,
    missed_start,
)
from compute.models import Compute, ComputeState, Reminder, Schedule, ScheduleAction
from compute.models.bulk import Contended, Values, claimed_values, write_changes
from compute.models.events import record_all
from compute.models.idle import leads_sent, parse_leads
from compute.models.states import SCHEDULED_START_FROM
from workspace.notify import write_notifications

__all__ = ["IdleReport", "idle_sweep"]

log = logging.getLogger(__name__)
S = ComputeState
# What the sweep writes on each kind of row (and compares, as claimed, when writing).
INSTANCE_FIELDS = ("state", "state_changed_at", "idle_deadline", "idle_next_check_at")
SCHEDULE_FIELDS = ("next_run_at", "postponed_to", "last_fired_at", "next_check_at")
# A lost compare-and-set (SQLite only) rolls back and claims again, this many times in
# all; after that the next beat sweep, a second or two later, tries.
ATTEMPTS = 3
# The most instances one sweep claims; the next sweep, a second or two later, takes the
# rest. It bounds the parameters of the one UPDATE per kind of row (PostgreSQL takes at
# most 65,535 in a statement, SQLite 32,766), with up to 4 schedules an instance.
CLAIM_AT_MOST = 500


def idle_sweep(now: datetime | None = None) -> IdleReport:
    now = now or timezone.now()
    return act_on_due(now).report


def act_on_due(now: datetime) -> Plan:
    """Claim what is due and act on it, in one transaction. Two sweeps racing both get
    here together (tests/integration/test_exactly_once.py holds them here); the claim and
    the compare-and-set decide which of them acts on each row."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return act(now)
        except Contended as lost:
            log.warning("idle sweep, attempt %d of %d: %s", attempt, ATTEMPTS, lost)
    return Plan(now)


def act(now: datetime) -> Plan:
    """Claim the due rows, plan what to do with them in memory (idle_plan.py), and write
    it all: each statement at most once (the module's docstring lists them)."""
    claim = claim_instances(now)
    if not claim.instances:
        return Plan(now)
    schedules = claim_schedules(claim, now) if claim.scheduled else []
    instances = claim.instances.values()
    plan = Plan(now, sent=claim.sent, cores=lock_cores_for_starts(schedules, now))
    claimed_instances = claimed_values(instances, INSTANCE_FIELDS)
    claimed_schedules = claimed_values(schedules, SCHEDULE_FIELDS)
    for compute in instances:
        check_idle(compute, plan)
    for schedule in schedules:
        check_schedule(schedule, plan)
    write_changes(Compute, instances, claimed_instances, as_claimed(claimed_instances, now))
    write_changes(Schedule, schedules, claimed_schedules, due_schedule_filter(now))
    if plan.reminders:
        Reminder.objects.bulk_create(plan.reminders, ignore_conflicts=True)
    record_all(plan.events)
    written = write_notifications(plan.notices)
    # From a task, once committed: mail only about what happened, and never at the pace of
    # a mail server inside the sweep. The quota skips' (`email_on_commit`) go last, as ever.
    emailed = [
        (notice.email_on_commit, row.pk)
        for notice, row in zip(plan.notices, written, strict=True)
        if notice.email
    ]
    enqueue.email_notifications([pk for _, pk in sorted(emailed, key=lambda pair: pair[0])])
    return plan


# Claims: every row the sweep writes, locked and read fresh ----------------------------


@dataclass
class Claim:
    """The rows this sweep holds until it commits, and what the claims read with them."""

    instances: dict[int, Compute]  # by name: the order the sweep acts in
    scheduled: list[int]  # the instances with a schedule due
    # The reminders already sent before the claimed deadlines: the instances' locks keep
    # that true until commit.
    sent: Sent


def due_schedule_filter(now: datetime) -> Q:
    return Q(enabled=True, next_check_at__lte=now)


def due_schedules(now: datetime) -> QuerySet[Schedule]:
    return Schedule.objects.filter(due_schedule_filter(now)).order_by()


def idle_check_due(now: datetime) -> Q:
    return Q(state=S.RUNNING, idle_next_check_at__lte=now)


def as_claimed(claimed: dict[int, Values], now: datetime) -> Q:
    """Each instance still in the state it was claimed in and, if its idle check was due,
    still due: another sweep's stop or reminder, a click, activity or the reconciler
    would have changed one or the other. (A schedule's is `due_schedule_filter`: firing
    or reminding, postponing, all move its next check past now.)"""
    groups: dict[tuple[str, bool], list[int]] = defaultdict(list)
    for pk, values in claimed.items():
        check_at = values["idle_next_check_at"]
        # Due as the claim means it (`idle_check_due`): running, and its check come. A
        # stopped instance with a check left over is claimed for a schedule only.
        idle_due = values["state"] == S.RUNNING and check_at is not None and check_at <= now
        groups[(values["state"], idle_due)].append(pk)
    return reduce(
        or_,
        (
            Q(pk__in=pks, state=state) & (idle_check_due(now) if idle_due else Q())
            for (state, idle_due), pks in groups.items()
        ),
    )


def claim_instances(now: datetime) -> Claim:
    """The instances due for their idle check or a schedule that no one else holds (the
    first CLAIM_AT_MOST by name). One another sweep or a "keep running" click holds is
    theirs: skipped, never waited for."""
    idle_due = idle_check_due(now)
    schedule_due = Q(pk__in=due_schedules(now).values("compute_id"))
    claimed = (
        Compute.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("workspace", "assigned_to", "created_by", "vm_size__family")
        .filter(idle_due | schedule_due)
        .annotate(
            schedule_due=Exists(due_schedules(now).filter(compute=OuterRef("pk"))),
            idle_leads_sent=leads_sent(IDLE, OuterRef("pk"), OuterRef("idle_deadline")),
        )
        .order_by("name", "pk")[:CLAIM_AT_MOST]
    )
    claim = Claim(instances={}, scheduled=[], sent=set())
    for compute in claimed:
        claim.instances[compute.pk] = compute
        if compute.schedule_due:
            claim.scheduled.append(compute.pk)
        claim.sent |= sent_before(compute.pk, IDLE, compute.idle_deadline, compute.idle_leads_sent)
    return claim


def claim_schedules(claim: Claim, now: datetime) -> list[Schedule]:
    """The due schedules of the claimed instances, locked after them, by (instance name,
    id); each shares its instance's object, so a move an earlier step made is seen."""
    effective_run_at = Coalesce(OuterRef("postponed_to"), OuterRef("next_run_at"))
    claimed = (
        due_schedules(now)
        .select_for_update(skip_locked=True, of=("self",))
        .filter(compute_id__in=claim.scheduled)
        .order_by("compute__name", "id")
        .annotate(leads_sent=leads_sent(SCHEDULE, OuterRef("compute_id"), effective_run_at))
    )
    schedules: list[Schedule] = []
    for schedule in claimed:
        schedule.compute = claim.instances[schedule.compute_id]
        schedules.append(schedule)
        run_at = schedule.effective_run_at
        claim.sent |= sent_before(schedule.compute_id, SCHEDULE, run_at, schedule.leads_sent)
    return schedules


def sent_before(compute_id: int, kind: str, deadline: datetime | None, leads: str | None) -> Sent:
    """The reminders a claim read as sent before a deadline (`leads_sent`)."""
    if deadline is None:
        return set()
    return {(compute_id, kind, deadline, lead) for lead in parse_leads(leads)}


def lock_cores_for_starts(schedules: list[Schedule], now: datetime) -> Cores:
    """Lock the quota row of each (workspace, family) a start due now may take cores from,
    in one order so two sweeps never deadlock, and read its usage: one query each."""
    families = {}
    for schedule in schedules:
        compute = schedule.compute
        key = family_of(compute)
        if key and may_take_cores(schedule, now):
            assert compute.vm_size is not None  # family_of found one
            families[key] = (compute.workspace, compute.vm_size.family)
    return Cores({key: quota.locked_dedicated(*families[key]) for key in sorted(families)})


def may_take_cores(schedule: Schedule, now: datetime) -> bool:
    run_at = schedule.effective_run_at
    return (
        schedule.action == ScheduleAction.START
        and run_at is not None
        and run_at <= now
        and not missed_start(schedule.compute, run_at, now)
        and schedule.compute.state in SCHEDULED_START_FROM
    )
