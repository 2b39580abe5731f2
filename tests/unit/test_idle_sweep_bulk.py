"""The idle sweep at team scale: what it does (events, notifications, emails, states,
reminders, schedules, its report) for a mix of everything that can be due at once, and
that its number of queries does not grow with how much is due (issue 16).

The statements are counted with CaptureQueriesContext, which counts the ones that open
and close the sweep's transaction too: SAVEPOINT and RELEASE inside each test's own
transaction, BEGIN and COMMIT where beat runs it (and in the transactional test here)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compute.controllers import idle as idle_controller
from compute.controllers.idle import IdleReport, idle_sweep
from compute.models import (
    Compute,
    ComputeState,
    Event,
    EventVerb,
    FamilyQuota,
    Reminder,
    Schedule,
    ScheduleAction,
    VmSize,
)
from tests.support.due import (
    due_reminders,
    due_schedules,
    due_stops,
    instances,
    plenty_of_cores,
)
from tests.support.emails import send_captured_emails
from tests.support.teams import Team, make_team
from workspace.models import Notification

pytestmark = pytest.mark.django_db
S = ComputeState
T0 = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)  # a Friday, noon
DAY = timedelta(days=1)


def minutes(count: int) -> timedelta:
    return timedelta(minutes=count)


# What one sweep does with everything due at once ------------------------------------------


@pytest.fixture
def mix(team: Team) -> dict[str, Compute]:
    """One instance per case the sweep meets, in one workspace whose 16 DSv2 cores are
    all held by its six running instances, so a start fits only in the cores the stops
    before it freed. Named so the sweep meets them in this order."""
    workspace, owner = team.workspace, team.contributor
    FamilyQuota.objects.update_or_create(
        workspace=workspace,
        family=VmSize.objects.get(name="Standard_DS3_v2").family,
        defaults={"limit": 16, "approved": 16},
    )
    made = {}
    [made["a-idle"]] = due_stops(workspace, owner, 1, T0, prefix="a-idle")
    [made["b-remind"]] = due_reminders(workspace, owner, 1, T0, prefix="b-remind")
    [made["c-seeded"]] = due_reminders(workspace, None, 1, T0, prefix="c-seeded")  # no owner
    [made["s7-both"]] = due_stops(workspace, owner, 1, T0, prefix="s7-both")
    for name, state in [
        ("s1-stop", S.RUNNING),
        ("s2-start", S.STOPPED),
        ("s3-start", S.STOPPED),
        ("s4-missed", S.STOPPED),
        ("s5-soon", S.RUNNING),
        ("s6-noop", S.STOPPED),
    ]:
        [made[name]] = instances(workspace, owner, name, 1, state)
    Compute.objects.filter(pk=made["s5-soon"].pk).update(assigned_to=team.admin)
    for compute in made.values():  # names as given, without the helpers' "-0"
        Compute.objects.filter(pk=compute.pk).update(name=compute.name.removesuffix("-0"))
        compute.refresh_from_db()
    schedule = {
        "s1-stop": (ScheduleAction.STOP, "0 12 * * *", T0),
        "s2-start": (ScheduleAction.START, "0 12 * * *", T0),
        "s3-start": (ScheduleAction.START, "0 12 * * *", T0),
        "s4-missed": (ScheduleAction.START, "0 10 * * *", T0 - minutes(120)),
        "s5-soon": (ScheduleAction.STOP, "4 12 * * *", T0 + minutes(4)),
        "s6-noop": (ScheduleAction.STOP, "0 12 * * *", T0),
        "s7-both": (ScheduleAction.STOP, "0 12 * * *", T0),
    }
    for name, (action, cron, run_at) in schedule.items():
        check_at = run_at - minutes(30) if name == "s5-soon" else run_at
        Schedule.objects.create(
            compute=made[name],
            action=action,
            cron=cron,
            timezone="UTC",
            next_run_at=run_at,
            next_check_at=check_at,
        )
    return made


def sweep_at(moment: datetime, callbacks: Callable) -> IdleReport:
    # The emails go from a task once the sweep has committed: run here, in its order.
    with time_machine.travel(moment, tick=False), callbacks() as captured:
        report = idle_sweep()
    send_captured_emails(captured)
    return report


def test_everything_due_at_once_is_done_as_one_at_a_time_did_it(
    mix, team, django_capture_on_commit_callbacks
):
    """The outcome of the one-row-at-a-time sweep (commit f7c69e9) for each case, down to
    the words: these assertions pass on it unchanged."""
    report = sweep_at(T0, django_capture_on_commit_callbacks)
    pk = {name: compute.pk for name, compute in mix.items()}
    schedule = {s.compute.name: s.pk for s in Schedule.objects.select_related("compute")}
    assert report.stopped == [pk["a-idle"], pk["s7-both"]]
    assert report.reminded == [
        (pk["b-remind"], "idle", 30),
        (pk["b-remind"], "idle", 5),
        (pk["c-seeded"], "idle", 30),
        (pk["c-seeded"], "idle", 5),
        (pk["s5-soon"], "schedule", 30),
        (pk["s5-soon"], "schedule", 5),
    ]
    assert report.fired == [
        (schedule["s1-stop"], "stop"),
        (schedule["s2-start"], "start"),
        (schedule["s6-noop"], "stop"),
        (schedule["s7-both"], "stop"),
    ]
    assert report.skipped == [schedule["s3-start"], schedule["s4-missed"]]
    assert report.to_reconcile == [pk["a-idle"], pk["s7-both"], pk["s1-stop"], pk["s2-start"]]

    states = dict(Compute.objects.filter(pk__in=pk.values()).values_list("name", "state"))
    assert states == {
        "a-idle": S.STOPPING,
        "b-remind": S.RUNNING,
        "c-seeded": S.RUNNING,
        "s1-stop": S.STOPPING,
        "s2-start": S.STARTING,
        "s3-start": S.STOPPED,
        "s4-missed": S.STOPPED,
        "s5-soon": S.RUNNING,
        "s6-noop": S.STOPPED,
        "s7-both": S.STOPPING,
    }
    assert_idle_checks_and_schedules_moved_on()
    assert_events(team)
    assert_reminders_notifications_and_emails(team)


def assert_idle_checks_and_schedules_moved_on() -> None:
    """A stopped instance has no deadline left; a reminded one is looked at again at its
    next reminder (here its deadline); every schedule that fired or was skipped moved to
    its next occurrence, a reminded one to its next reminder."""
    checks = dict(Compute.objects.values_list("name", "idle_next_check_at"))
    deadlines = dict(Compute.objects.values_list("name", "idle_deadline"))
    assert (checks["a-idle"], deadlines["a-idle"]) == (None, None)
    assert (checks["s7-both"], deadlines["s7-both"]) == (None, None)
    assert checks["b-remind"] == checks["c-seeded"] == T0 + minutes(4)
    rows = {
        s.compute.name: (s.next_run_at, s.postponed_to, s.last_fired_at, s.next_check_at)
        for s in Schedule.objects.select_related("compute")
    }
    assert rows == {
        "s1-stop": (T0 + DAY, None, T0, T0 + DAY - minutes(30)),
        "s2-start": (T0 + DAY, None, T0, T0 + DAY),
        "s3-start": (T0 + DAY, None, T0, T0 + DAY),
        "s4-missed": (T0 + DAY - minutes(120), None, T0, T0 + DAY - minutes(120)),
        "s5-soon": (T0 + minutes(4), None, None, T0 + minutes(4)),
        "s6-noop": (T0 + DAY, None, T0, T0 + DAY - minutes(30)),
        "s7-both": (T0 + DAY, None, T0, T0 + DAY - minutes(30)),
    }


def assert_events(team: Team) -> None:
    contributor, admin = team.contributor, team.admin
    events = [
        (e.compute.name, e.verb, e.message, e.level)
        for e in Event.objects.select_related("compute").order_by("id")
    ]
    stopped = "Stopped after 60 min idle; last activity: notebook closed at 10:59 UTC."
    fired = "Scheduled {} (0 12 * * *, UTC) {} {} for Fri 12:00 UTC."
    short = "Short 4 cores: needs 4 DSv2 cores, limit 16, used 16."
    missed = "missed by 120 min (while Hangar was down), more than the 30 min window."
    idle_for = "Schedule for Fri 12:00 UTC: {} was {}."
    assert events == [
        ("a-idle", EventVerb.IDLE_STOPPED, stopped, "info"),
        ("b-remind", EventVerb.REMINDED, reminded(contributor, 30, "an idle shutdown"), "info"),
        ("b-remind", EventVerb.REMINDED, reminded(contributor, 5, "an idle shutdown"), "info"),
        ("s7-both", EventVerb.IDLE_STOPPED, stopped, "info"),
        ("s1-stop", EventVerb.SCHEDULED_STOP, fired.format("stop", "stopped", "s1-stop"), "info"),
        (
            "s2-start",
            EventVerb.SCHEDULED_START,
            fired.format("start", "started", "s2-start"),
            "info",
        ),
        (
            "s3-start",
            EventVerb.SCHEDULE_SKIPPED,
            f"Skipped the scheduled start of Fri 12:00 UTC: {short}",
            "warning",
        ),
        (
            "s4-missed",
            EventVerb.SCHEDULE_SKIPPED,
            f"Skipped the scheduled start of Fri 10:00 UTC: {missed}",
            "warning",
        ),
        ("s5-soon", EventVerb.REMINDED, reminded(admin, 30, "a scheduled stop"), "info"),
        ("s5-soon", EventVerb.REMINDED, reminded(admin, 5, "a scheduled stop"), "info"),
        ("s6-noop", EventVerb.SCHEDULE_IDLE, idle_for.format("s6-noop", "stopped"), "info"),
        ("s7-both", EventVerb.SCHEDULE_IDLE, idle_for.format("s7-both", "stopping"), "info"),
    ]


def reminded(user: object, lead: int, what: str) -> str:
    return f"Reminded {user} {lead} min before {what}."


def assert_reminders_notifications_and_emails(team: Team) -> None:
    contributor, admin = team.contributor, team.admin
    reminders = sorted(
        Reminder.objects.values_list("compute__name", "kind", "deadline", "lead_minutes")
    )
    soon = T0 + minutes(4)
    assert reminders == [
        ("b-remind", "idle", soon, 5),
        ("b-remind", "idle", soon, 30),
        ("c-seeded", "idle", soon, 5),
        ("c-seeded", "idle", soon, 30),
        ("s5-soon", "schedule", soon, 5),
        ("s5-soon", "schedule", soon, 30),
    ]
    notes = list(Notification.objects.order_by("id").values_list("user", "title", "body"))
    stopped = (
        "Stopped after 60 min idle; last activity: notebook closed at 10:59 UTC. "
        "Start it again whenever you need it."
    )
    reminder_body = (
        "{} will be stopped at 12:04 UTC (in about 4 min) unless you keep it running. "
        "Last activity: none."
    )
    short = (
        "Skipped the scheduled start of Fri 12:00 UTC: Short 4 cores: needs 4 DSv2 cores, "
        "limit 16, used 16. Free cores or request more, then start it."
    )
    idle_soon = "stops in about {} min (an idle shutdown)"
    stop_soon = "stops in about {} min (a scheduled stop)"
    assert notes == [
        (contributor.pk, "a-idle was stopped after 60 min idle", stopped),
        (contributor.pk, f"b-remind {idle_soon.format(30)}", reminder_body.format("b-remind")),
        (contributor.pk, f"b-remind {idle_soon.format(5)}", reminder_body.format("b-remind")),
        (contributor.pk, "s7-both was stopped after 60 min idle", stopped),
        (contributor.pk, "s3-start did not start at its scheduled time", short),
        (admin.pk, f"s5-soon {stop_soon.format(30)}", reminder_body.format("s5-soon")),
        (admin.pk, f"s5-soon {stop_soon.format(5)}", reminder_body.format("s5-soon")),
    ]
    reminder = Notification.objects.get(title__startswith="s5-soon stops in about 5")
    assert [action["label"] for action in reminder.actions] == ["Keep running", "Stop now"]
    assert reminder.actions[0]["url"].endswith("/keep-running/?kind=schedule")
    # Emails: each at once, but the quota skip's when its transaction commits (last here).
    assert [(m.subject, m.to) for m in mail.outbox] == [
        (title, [(admin if user == admin.pk else contributor).email])
        for user, title, _ in notes
        if "did not start" not in title
    ] + [("s3-start did not start at its scheduled time", [contributor.email])]
    assert "Keep running: http://127.0.0.1:8000/w/vision/compute/" in mail.outbox[1].body


def test_a_second_sweep_at_the_same_moment_does_nothing_again(
    mix, django_capture_on_commit_callbacks
):
    sweep_at(T0, django_capture_on_commit_callbacks)
    counts = (Event.objects.count(), Notification.objects.count(), Reminder.objects.count())
    again = sweep_at(T0, django_capture_on_commit_callbacks)
    assert again == IdleReport()
    assert (Event.objects.count(), Notification.objects.count(), Reminder.objects.count()) == (
        counts
    )


# Its cost: the same number of queries for 5 or 50 of each ---------------------------------


def make_stops(team: Team, count: int, round_: str) -> None:
    due_stops(team.workspace, team.contributor, count, T0, prefix=f"{round_}stop")


def make_reminders(team: Team, count: int, round_: str) -> None:
    due_reminders(team.workspace, team.contributor, count, T0, prefix=f"{round_}remind")


def make_schedules(team: Team, count: int, round_: str) -> None:
    due_schedules(team.workspace, team.contributor, count, T0, prefix=f"{round_}sched")


def make_mix(team: Team, count: int, round_: str) -> None:
    for make in (make_stops, make_reminders, make_schedules):
        make(team, count, round_)


def queries_of_a_sweep(team: Team, make: Callable[[Team, int, str], None], count: int) -> int:
    """Make `count` due items of a kind (new rows: the earlier rounds' are no longer
    due), sweep once, check all were acted on, and return the statements it ran."""
    round_ = f"r{count}"
    make(team, count, round_)
    with time_machine.travel(T0, tick=False), CaptureQueriesContext(connection) as captured:
        report = idle_sweep()
    acted = (
        len(report.stopped)
        + len([sent for sent in report.reminded if sent[2] == 30])  # one per instance
        + len(report.fired)
    )
    assert acted == count * (3 if make is make_mix else 1), report
    assert not report.skipped
    return len(captured)


# PostgreSQL's counts, as CI runs it: SQLite locks a quota row in two queries and splits
# a bulk INSERT into batches of at most 999 parameters.
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's counts (CI runs on PostgreSQL)"
)


@postgresql_only
@pytest.mark.parametrize(
    ("make", "queries"),
    [
        # claim the instances (with the reminders sent); one UPDATE; events; notifications
        (make_stops, 4),
        # claim; one UPDATE; reminders; events; notifications
        (make_reminders, 5),
        # claim the instances; claim the schedules; lock the quota row; UPDATE the
        # instances; UPDATE the schedules; events (a schedule that fires notifies nobody)
        (make_schedules, 6),
        # all of the above, each once
        (make_mix, 8),
    ],
    ids=["stops", "reminders", "schedules", "mix"],
)
def test_a_sweep_costs_the_same_queries_for_5_or_50_due(make, queries, team):
    plenty_of_cores(team.workspace)
    five = queries_of_a_sweep(team, make, 5)
    fifty = queries_of_a_sweep(team, make, 50)
    assert five == fifty == queries + 2  # + SAVEPOINT and RELEASE: see the module's doc


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_sweep_with_50_of_each_due_stays_within_10_statements():
    """The issue's budget, counted as beat's sweep runs it, outside any transaction:
    BEGIN and COMMIT are two of the statements."""
    team = make_team("scale")
    plenty_of_cores(team.workspace)
    assert queries_of_a_sweep(team, make_mix, 50) == 10


def test_a_sweep_claims_at_most_its_limit_and_the_next_one_takes_the_rest(
    team, monkeypatch, django_capture_on_commit_callbacks
):
    """The one UPDATE per kind of row has a bounded number of parameters: past the limit,
    what is due waits for the next sweep (a second or two under beat), first by name."""
    monkeypatch.setattr(idle_controller, "CLAIM_AT_MOST", 3)
    boxes = due_stops(team.workspace, team.contributor, 5, T0)
    first = sweep_at(T0, django_capture_on_commit_callbacks)
    second = sweep_at(T0, django_capture_on_commit_callbacks)
    assert first.stopped == [box.pk for box in boxes[:3]]
    assert second.stopped == [box.pk for box in boxes[3:]]
    assert sweep_at(T0, django_capture_on_commit_callbacks) == IdleReport()


def test_a_stopped_instance_with_an_idle_check_left_over_still_gets_its_scheduled_start(
    team, django_capture_on_commit_callbacks
):
    """A stop that raced an activity record left a stopped instance with a running one's
    idle check (seen in CI). Its scheduled start fires; the sweep used to lose its
    compare-and-set on that row three times and act on nothing at all."""
    plenty_of_cores(team.workspace)
    [box] = instances(team.workspace, team.contributor, "desk", 1, S.STOPPED)
    Compute.objects.filter(pk=box.pk).update(
        idle_deadline=T0 - minutes(10), idle_next_check_at=T0 - minutes(10)
    )
    [stale] = due_stops(team.workspace, team.contributor, 1, T0, prefix="other")
    schedule = Schedule.objects.create(
        compute=box, action=ScheduleAction.START, cron="0 12 * * *", timezone="UTC",
        next_run_at=T0, next_check_at=T0,
    )  # fmt: skip
    report = sweep_at(T0, django_capture_on_commit_callbacks)
    assert report.fired == [(schedule.pk, ScheduleAction.START)]
    assert report.stopped == [stale.pk]  # and the rest of the sweep is done too
    assert Compute.objects.get(pk=box.pk).state == S.STARTING
