"""Retention (issue 16): rows older than HANGAR_EVENT_RETENTION_DAYS go, a bounded batch per
table and call, from the sweep; live nodes, unread notifications, recent history and the
newest events before the cutoff of each compute stay. Real PostgreSQL, real Redis cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from compute import tasks
from compute.controllers import retention
from compute.models import (
    Compute,
    ComputeKind,
    ComputeSample,
    ComputeState,
    Event,
    EventVerb,
    Job,
    JobStatus,
    Node,
    NodeState,
    Reminder,
    VmSize,
)
from tests.unit.test_settings import manage
from workspace.models import Activity, Notification

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CUTOFF = NOW - 90 * DAY  # the default retention


@pytest.fixture
def compute(team) -> Compute:
    return Compute.objects.create(
        workspace=team.workspace,
        name="keeper",
        kind=ComputeKind.CLUSTER,
        state=ComputeState.STEADY,
        vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
    )


def events(compute: Compute, count: int, newest: datetime) -> list[Event]:
    """`count` events a minute apart, the last at `newest`."""
    return Event.objects.bulk_create(
        Event(
            compute=compute,
            verb=EventVerb.NODE_ADDED,
            message=f"event {i}",
            created_at=newest - timedelta(minutes=count - 1 - i),
        )
        for i in range(count)
    )


def left(model, **where) -> int:
    return model.objects.filter(**where).count()


def test_old_events_go_but_recent_ones_and_the_newest_before_the_cutoff_stay(compute):
    old = events(compute, 30, newest=CUTOFF - DAY)
    recent = events(compute, 5, newest=NOW - DAY)
    report = retention.prune(NOW, keep=20)
    assert report.deleted["events"] == 10
    kept = set(Event.objects.filter(compute=compute).values_list("pk", flat=True))
    # The ten oldest went; the 20 just before the cutoff explain the compute's state then.
    assert kept == {e.pk for e in old[10:]} | {e.pk for e in recent}
    assert retention.prune(NOW, keep=20).deleted["events"] == 0  # nothing more to do


def test_a_compute_with_few_events_keeps_them_all_however_old(compute):
    events(compute, 3, newest=CUTOFF - 400 * DAY)
    assert retention.prune(NOW, keep=20).deleted["events"] == 0
    assert left(Event, compute=compute) == 3


def test_a_batch_never_deletes_more_than_its_bound(compute, team):
    events(compute, 60, newest=CUTOFF - DAY)
    Reminder.objects.bulk_create(
        Reminder(compute=compute, kind="idle", deadline=CUTOFF - i * DAY, lead_minutes=5)
        for i in range(1, 31)
    )
    report = retention.prune(NOW, limit=15, keep=20)
    assert report.deleted["events"] == 15 and report.deleted["reminders"] == 15
    assert report.more  # full batches: the next sweep goes on at once
    assert left(Event) == 45 and left(Reminder) == 15
    for _ in range(3):
        retention.prune(NOW, limit=15, keep=20)
    assert left(Event) == 20 and left(Reminder) == 0
    assert not retention.prune(NOW, limit=15, keep=20).more


def test_only_ended_nodes_past_the_retention_age_go(compute):
    old = timezone.now() - 200 * DAY

    def node(index: int, state: str, ended_at: datetime | None) -> Node:
        made = Node.objects.create(compute=compute, index=index, state=state, ended_at=ended_at)
        Node.objects.filter(pk=made.pk).update(created_at=old)
        return made

    gone = node(0, NodeState.UNUSABLE, CUTOFF - DAY)
    ended_lately = node(1, NodeState.UNUSABLE, CUTOFF + DAY)
    live = node(2, NodeState.IDLE, None)  # started 200 days ago, still up
    odd = node(3, NodeState.RUNNING, CUTOFF - DAY)  # marked ended yet live: never touched
    assert retention.prune(NOW).deleted["ended nodes"] == 1
    assert set(Node.objects.values_list("pk", flat=True)) == {ended_lately.pk, live.pk, odd.pk}
    assert not Node.objects.filter(pk=gone.pk).exists()


def test_read_notifications_and_reminders_of_long_past_deadlines_go(compute, team):
    def notification(title: str, read: bool, created: datetime) -> Notification:
        made = Notification.objects.create(
            user=team.admin, title=title, read_at=created if read else None
        )
        Notification.objects.filter(pk=made.pk).update(created_at=created)
        return made

    notification("old, read", True, CUTOFF - DAY)
    unread = notification("old, unread", False, CUTOFF - DAY)
    recent = notification("recent, read", True, NOW - DAY)
    Reminder.objects.create(compute=compute, kind="idle", deadline=CUTOFF - DAY, lead_minutes=5)
    soon = Reminder.objects.create(compute=compute, kind="idle", deadline=NOW, lead_minutes=5)
    report = retention.prune(NOW)
    assert (report.deleted["read notifications"], report.deleted["reminders"]) == (1, 1)
    assert set(Notification.objects.values_list("pk", flat=True)) == {unread.pk, recent.pk}
    assert list(Reminder.objects.values_list("pk", flat=True)) == [soon.pk]


def test_activity_and_chart_samples_keep_their_newest_before_the_cutoff(compute, team):
    for i in range(25):
        made = Activity.objects.create(
            workspace=team.workspace, verb=Activity.Verb.MEMBER_ADDED, message=f"a{i}"
        )
        Activity.objects.filter(pk=made.pk).update(created_at=CUTOFF - (25 - i) * DAY)
    ComputeSample.objects.bulk_create(
        ComputeSample(compute=compute, at=CUTOFF - (25 - i) * DAY, nodes=i, queued=0)
        for i in range(25)
    )
    report = retention.prune(NOW, keep=20)
    assert (report.deleted["activity"], report.deleted["chart samples"]) == (5, 5)
    # The chart still starts at the level before its window: the newest samples stayed.
    assert sorted(ComputeSample.objects.values_list("nodes", flat=True)) == list(range(5, 25))
    assert left(Activity, workspace=team.workspace, message="a24") == 1


def test_kept_rows_do_not_stop_the_scan(team, compute):
    """The oldest rows are a quiet compute's newest, kept for good; the rows to delete come
    after them: the cursor moves past the kept ones, call after call."""
    size = VmSize.objects.get(name="Standard_D2s_v3")
    quiet = Compute.objects.create(workspace=team.workspace, name="quiet", vm_size=size)
    events(quiet, 20, newest=CUTOFF - 300 * DAY)  # all kept
    events(compute, 30, newest=CUTOFF - DAY)  # the ten oldest go
    deleted = sum(retention.prune(NOW, limit=8, keep=20).deleted["events"] for _ in range(8))
    assert deleted == 10
    assert left(Event, compute=quiet) == 20 and left(Event, compute=compute) == 20


def test_the_retention_age_is_the_setting(compute, settings):
    events(compute, 25, newest=NOW - 20 * DAY)
    assert retention.prune(NOW, keep=20).deleted["events"] == 0  # 90 days: all recent
    settings.HANGAR_EVENT_RETENTION_DAYS = 10
    assert retention.prune(NOW, keep=20).deleted["events"] == 5


def test_the_setting_comes_from_the_environment():
    code = "from django.conf import settings; print(settings.HANGAR_EVENT_RETENTION_DAYS)"
    result = manage(
        "shell",
        "-c",
        code,
        DJANGO_SETTINGS_MODULE="config.settings",
        HANGAR_EVENT_RETENTION_DAYS="30",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "30"
    result = manage("check", HANGAR_EVENT_RETENTION_DAYS="0")
    assert "HANGAR_EVENT_RETENTION_DAYS=0 is below the minimum of 1" in result.stderr


def test_jobs_are_never_deleted(compute, team):
    job = Job.objects.create(
        compute=compute,
        workspace=team.workspace,
        name="old",
        command="true",
        status=JobStatus.COMPLETED,
        queued_at=CUTOFF - 400 * DAY,
        finished_at=CUTOFF - 400 * DAY,
    )
    retention.prune(NOW)
    assert Job.objects.filter(pk=job.pk).exists()


def test_the_sweep_prunes_at_most_once_a_minute_unless_a_backlog_waits(compute, settings):
    settings.HANGAR_DRIVER = "noop"
    events(compute, 20 + retention.ROWS_PER_TABLE + 3, newest=timezone.now() - 100 * DAY)
    first = tasks.reconcile_sweep()  # the sweep beat sends, here in-process
    assert first["pruned"]["events"] == retention.ROWS_PER_TABLE
    second = tasks.reconcile_sweep()  # a full batch: the backlog goes on at once
    assert second["pruned"]["events"] == 3
    assert tasks.reconcile_sweep()["pruned"] == {}  # then it waits its minute
    assert left(Event, compute=compute) == 20


def plan_of(query: QuerySet) -> str:
    """PostgreSQL's plan with sequential scans off: whether indexes *can* serve the query
    (on a tiny test table a scan is cheaper, and would hide a missing index)."""
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize("cursor", [None, (CUTOFF - DAY, 12)], ids=["from the start", "resumed"])
@pytest.mark.parametrize("history", retention.HISTORIES, ids=lambda h: h.name)
def test_each_history_window_is_read_through_indexes(history, cursor):
    plan = plan_of(retention.window_query(history, CUTOFF, cursor, keep=20, limit=500))
    assert "Seq Scan" not in plan and "Index" in plan, plan


@pytest.mark.parametrize("table", retention.EXPIRING, ids=lambda t: t.name)
def test_each_expiring_table_is_read_through_an_index(table):
    plan = plan_of(retention.oldest_query(table, CUTOFF, limit=500))
    assert "Seq Scan" not in plan and "Index" in plan, plan
