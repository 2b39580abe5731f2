"""Exactly once, under a race: two beat sweeps started together at the very moment an idle
deadline, a reminder or a schedule comes due must stop, remind or fire once, with one
event, one notification and one email (PostgreSQL, as in CI: its row locks are real).

Two sweeps started together often do not overlap at all: the second reads after the first
committed, finds nothing due, and a missing claim or compare-and-set would go unnoticed. So
each race holds both sweeps at `act_on_due`, right before the transaction in which each
claims the due rows and acts on them, until both have reached it: the two claims then
compete for the same rows, every time.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError

from compute import enqueue, tasks
from compute.actions import computes as actions
from compute.actions import idle as idle_actions
from compute.actions.idle import IDLE_OFF, add_schedule
from compute.controllers import idle as idle_controller
from compute.controllers.idle import IdleReport, idle_sweep
from compute.models import Compute, ComputeState, EventVerb, Reminder, Schedule, VmSize
from compute.models.idle import record_activity, refresh_deadline
from tests.integration.helpers import none_raised, run_together
from tests.support.teams import Team, make_team
from workspace.access import get_access
from workspace.models import Notification

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ComputeState
T0 = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
BOXES = 3  # several rows per race: the sweeps meet at each of them in turn


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The compute ids of every reconcile task sent (alone or in a batch), instead of
    sending it to the broker; an email task is run here (the test outbox is this process's)."""
    sent: list[int] = []

    def send_task(name: str, args: list, **options: object) -> None:
        if name == enqueue.EMAIL_NOTIFICATIONS:
            tasks.email_notifications(*args)
            return
        assert name in (enqueue.RECONCILE, enqueue.RECONCILE_BATCH)
        # list.extend is atomic under the GIL: safe from both threads
        sent.extend(args if name == enqueue.RECONCILE else args[0])

    monkeypatch.setattr(enqueue.app, "send_task", send_task)
    return sent


@pytest.fixture
def team(catalog, workers) -> Iterator[Team]:
    workers.stop()  # no worker's sweep: the two sweeps of each race are the only ones
    yield make_team("races")


def running_boxes(team: Team, enqueued: list[int], idle_minutes: int) -> list[Compute]:
    """Running instances created by the admin for the contributor (the one to notify),
    last active at T0."""
    access = get_access(team.admin, team.workspace.slug)
    boxes = []
    with time_machine.travel(T0, tick=False):
        for i in range(BOXES):
            box = actions.create_instance(
                access,
                name=f"box-{i}",
                vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
                assigned_to=team.contributor,
                idle_shutdown_minutes=idle_minutes,
            )
            Compute.objects.filter(pk=box.pk).update(state=S.RUNNING, state_changed_at=T0)
            record_activity(box.pk, "started")
            box.refresh_from_db()
            boxes.append(box)
    enqueued.clear()  # the creations' reconciles
    return boxes


def beat_sweep() -> IdleReport:
    """The idle half of the beat task (compute/tasks.py): sweep, then enqueue reconciles."""
    report = idle_sweep()
    enqueue.reconcile_due(sorted(set(report.to_reconcile)))
    return report


def race(moment: datetime, step: str = "act_on_due") -> list[IdleReport]:
    """Two beat sweeps at `moment`, started together and held at each call of `step` until
    both reach it; every thread's result is returned, and the test fails if one raised.

    time-machine's clock is process-wide (one stack of travellers, not one per thread), so
    one travel around both threads puts both at `moment`."""
    barrier = threading.Barrier(2, timeout=10)  # a lone sweep fails instead of hanging
    original: Callable[..., object] = getattr(idle_controller, step)

    def held(*args: object, **kwargs: object) -> object:
        barrier.wait()
        return original(*args, **kwargs)

    with mock.patch.object(idle_controller, step, held), time_machine.travel(moment, tick=False):
        results = none_raised(run_together(beat_sweep, beat_sweep))
    return [report for report in results if isinstance(report, IdleReport)]


def each_once(found: list[object], expected: list[object]) -> None:
    """`found` holds every expected item exactly once, and nothing else."""
    assert Counter(found) == Counter(expected), (found, expected)


def test_two_sweeps_at_the_idle_deadline_stop_each_instance_once(team, enqueued):
    boxes = running_boxes(team, enqueued, idle_minutes=60)
    pks = [box.pk for box in boxes]
    reports = race(T0 + timedelta(minutes=60))
    assert len(reports) == 2
    each_once([pk for report in reports for pk in report.stopped], pks)
    each_once(enqueued, pks)  # one reconcile (the stop) per instance
    assert set(Compute.objects.filter(pk__in=pks).values_list("state", flat=True)) == {S.STOPPING}
    each_once(
        list(
            Compute.objects.filter(events__verb=EventVerb.IDLE_STOPPED).values_list("pk", flat=True)
        ),
        pks,
    )
    stopped = Notification.objects.filter(title__contains="was stopped after 60 min idle")
    each_once(
        list(stopped.values_list("user", "title")),
        [(team.contributor.pk, f"{box.name} was stopped after 60 min idle") for box in boxes],
    )
    each_once(
        [(message.subject, tuple(message.to)) for message in mail.outbox],
        [(f"{box.name} was stopped after 60 min idle", (team.contributor.email,)) for box in boxes],
    )


def test_two_sweeps_at_each_reminder_send_it_once(team, enqueued):
    boxes = running_boxes(team, enqueued, idle_minutes=60)
    deadline = T0 + timedelta(minutes=60)
    for lead in (30, 5):
        mail.outbox.clear()
        reports = race(deadline - timedelta(minutes=lead))
        assert_reminded_once(team, boxes, reports, "idle", lead, "an idle shutdown")
    assert Reminder.objects.count() == 2 * BOXES
    assert enqueued == []  # a reminder moves nothing
    assert set(Compute.objects.values_list("state", flat=True)) == {S.RUNNING}


def assert_reminded_once(
    team: Team, boxes: list[Compute], reports: list[IdleReport], kind: str, lead: int, what: str
) -> None:
    """The reminder `lead` min before `kind`'s deadline went out once per instance: one in
    the reports, one row, one event, one notification and one email to the owner."""
    assert len(reports) == 2
    each_once(
        [sent for report in reports for sent in report.reminded],
        [(box.pk, kind, lead) for box in boxes],
    )
    rows = Reminder.objects.filter(kind=kind, lead_minutes=lead)
    each_once(list(rows.values_list("compute", flat=True)), [box.pk for box in boxes])
    events = Compute.objects.filter(
        events__verb=EventVerb.REMINDED, events__message__contains=f" {lead} min before {what}"
    )
    each_once(list(events.values_list("pk", flat=True)), [box.pk for box in boxes])
    titles = [f"{box.name} stops in about {lead} min ({what})" for box in boxes]
    notes = Notification.objects.filter(title__in=titles)
    each_once(
        list(notes.values_list("user", "title")),
        [(team.contributor.pk, title) for title in titles],
    )
    each_once(
        [(message.subject, tuple(message.to)) for message in mail.outbox],
        [(title, (team.contributor.email,)) for title in titles],
    )


def scheduled_boxes(team: Team, enqueued: list[int], action: str) -> list[Schedule]:
    """Instances with idle shutdown off (only the schedule acts), each with a daily
    schedule at 13:00 UTC; a start schedule's instance is stopped."""
    boxes = running_boxes(team, enqueued, idle_minutes=IDLE_OFF)
    if action == "start":
        Compute.objects.filter(pk__in=[box.pk for box in boxes]).update(state=S.STOPPED)
    access = get_access(team.admin, team.workspace.slug)
    schedules = []
    with time_machine.travel(T0, tick=False):
        for box in boxes:
            box.refresh_from_db()
            refresh_deadline(box)
            schedules.append(
                add_schedule(access, box.pk, action=action, cron="0 13 * * *", tz="UTC")
            )
    assert {schedule.next_run_at for schedule in schedules} == {T0 + timedelta(hours=1)}
    return schedules


def test_two_sweeps_before_a_scheduled_stop_send_each_reminder_once(team, enqueued):
    schedules = scheduled_boxes(team, enqueued, "stop")
    boxes = [schedule.compute for schedule in schedules]
    run_at = T0 + timedelta(hours=1)
    for lead in (30, 5):
        mail.outbox.clear()
        reports = race(run_at - timedelta(minutes=lead))
        assert_reminded_once(team, boxes, reports, "schedule", lead, "a scheduled stop")
    assert Reminder.objects.count() == 2 * BOXES
    assert enqueued == []


@pytest.mark.parametrize(
    ("action", "before", "after", "verb"),
    [
        ("stop", S.RUNNING, S.STOPPING, EventVerb.SCHEDULED_STOP),
        ("start", S.STOPPED, S.STARTING, EventVerb.SCHEDULED_START),
    ],
)
def test_two_sweeps_at_a_schedules_moment_fire_it_once(team, enqueued, action, before, after, verb):
    schedules = scheduled_boxes(team, enqueued, action)
    pks = [schedule.compute_id for schedule in schedules]
    assert set(Compute.objects.filter(pk__in=pks).values_list("state", flat=True)) == {before}
    run_at = T0 + timedelta(hours=1)
    reports = race(run_at)
    assert len(reports) == 2
    each_once(
        [fired for report in reports for fired in report.fired],
        [(schedule.pk, action) for schedule in schedules],
    )
    each_once(enqueued, pks)  # one reconcile (the start or stop) per instance
    assert set(Compute.objects.filter(pk__in=pks).values_list("state", flat=True)) == {after}
    each_once(list(Compute.objects.filter(events__verb=verb).values_list("pk", flat=True)), pks)
    # The loser did not record "had nothing to do" either: it did nothing at all.
    assert not Compute.objects.filter(events__verb=EventVerb.SCHEDULE_IDLE).exists()
    tomorrow = run_at + timedelta(days=1)
    for schedule in Schedule.objects.filter(pk__in=[s.pk for s in schedules]):
        assert (schedule.next_run_at, schedule.last_fired_at) == (tomorrow, run_at)


def test_keep_running_that_read_the_instance_just_before_the_sweep_stopped_it_is_refused(
    team, enqueued, monkeypatch
):
    """A "Keep running" click read the instance as running; the sweep stopped it before the
    click's write. The click must say so, not "keeps running" (with a kept-running event)
    while the instance stops. The interleaving is forced, in one thread, to be certain."""
    [box] = running_boxes(team, enqueued, idle_minutes=60)[:1]
    deadline = T0 + timedelta(minutes=60)
    read = idle_actions.instance_of

    def read_then_sweep(access: object, compute_id: int) -> Compute:
        compute = read(access, compute_id)
        assert compute.state == S.RUNNING
        assert box.pk in idle_sweep().stopped  # between the click's read and its write
        return compute

    monkeypatch.setattr(idle_actions, "instance_of", read_then_sweep)
    access = get_access(team.contributor, team.workspace.slug)
    with time_machine.travel(deadline, tick=False), pytest.raises(ValidationError, match="is"):
        idle_actions.keep_running(access, box.pk)
    box.refresh_from_db()
    assert box.state == S.STOPPING
    assert not box.events.filter(verb=EventVerb.KEPT_RUNNING).exists()


def test_a_sweep_and_keep_running_at_the_deadline_one_wins(team, enqueued):
    """At the deadline, the sweep stopping and a click keeping running race: either the
    instance stops and the click is refused, or it keeps running with a later deadline and
    the sweep leaves it. Never a kept-running event on a stopped instance."""
    boxes = running_boxes(team, enqueued, idle_minutes=60)
    access = get_access(team.contributor, team.workspace.slug)
    with time_machine.travel(T0 + timedelta(minutes=60), tick=False):
        results = run_together(
            beat_sweep, *[lambda pk=box.pk: idle_actions.keep_running(access, pk) for box in boxes]
        )
    [report, *clicks] = results
    assert isinstance(report, IdleReport), results
    for box, click in zip(boxes, clicks, strict=True):
        box.refresh_from_db()
        stopped = box.events.filter(verb=EventVerb.IDLE_STOPPED).count()
        kept = box.events.filter(verb=EventVerb.KEPT_RUNNING).count()
        if box.pk in report.stopped:
            assert isinstance(click, ValidationError), click
            assert (box.state, stopped, kept) == (S.STOPPING, 1, 0)
        else:
            assert isinstance(click, datetime), click
            assert (box.state, stopped, kept) == (S.RUNNING, 0, 1)
            assert box.idle_deadline == click > T0 + timedelta(minutes=60)
