"""Idle shutdown, reminders, keep running, the activity endpoint and schedules, with the
clock under control (time-machine). The sweep is called as beat would call it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from compute.actions import computes as actions
from compute.actions.idle import add_schedule, keep_running, rotate_token
from compute.controllers.idle import idle_sweep
from compute.models import Compute, ComputeState, EventVerb, Reminder, Schedule, VmSize
from compute.models.idle import record_activity, refresh_deadline
from compute.rules import idle
from tests.support.emails import send_captured_emails
from workspace.access import get_access
from workspace.models import Notification

pytestmark = pytest.mark.django_db
S = ComputeState
T0 = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)  # a Friday, before Europe's DST change


@pytest.fixture
def box(team, django_capture_on_commit_callbacks):
    """A running instance of vision-admin with 60 min idle shutdown, last active at T0."""
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks():
        made = actions.create_instance(
            get_access(team.admin, team.workspace.slug),
            name="box",
            vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
            idle_shutdown_minutes=60,
        )
        Compute.objects.filter(pk=made.pk).update(state=S.RUNNING, state_changed_at=T0)
        record_activity(made.pk, "job train-42 finished", T0)
    made.refresh_from_db()
    return made


def sweep_at(moment: datetime, callbacks):
    with time_machine.travel(moment, tick=False), callbacks() as captured:
        report = idle_sweep()
    send_captured_emails(captured)
    return report


def test_an_idle_instance_is_stopped_exactly_once_with_the_reason(
    box, django_capture_on_commit_callbacks
):
    assert box.idle_deadline == T0 + timedelta(minutes=60)
    assert (
        sweep_at(T0 + timedelta(minutes=59, seconds=59), django_capture_on_commit_callbacks).stopped
        == []
    )
    first = sweep_at(T0 + timedelta(minutes=60), django_capture_on_commit_callbacks)
    second = sweep_at(T0 + timedelta(minutes=60, seconds=1), django_capture_on_commit_callbacks)
    assert first.stopped == [box.pk] and second.stopped == []
    box.refresh_from_db()
    assert box.state == S.STOPPING
    event = box.events.get(verb=EventVerb.IDLE_STOPPED)
    assert event.message == (
        "Stopped after 60 min idle; last activity: job train-42 finished at 12:00 UTC."
    )
    assert (
        Notification.objects.filter(user=box.assigned_to, title__contains="was stopped").count()
        == 1
    )


def test_reminders_at_30_and_5_minutes_exactly_once_and_fresh_after_keep_running(
    box, team, django_capture_on_commit_callbacks
):
    deadline = box.idle_deadline
    assert (
        sweep_at(deadline - timedelta(minutes=31), django_capture_on_commit_callbacks).reminded
        == []
    )
    at_30 = sweep_at(deadline - timedelta(minutes=30), django_capture_on_commit_callbacks)
    again = sweep_at(deadline - timedelta(minutes=29), django_capture_on_commit_callbacks)
    at_5 = sweep_at(deadline - timedelta(minutes=5), django_capture_on_commit_callbacks)
    assert at_30.reminded == [(box.pk, "idle", 30)] and again.reminded == []
    assert at_5.reminded == [(box.pk, "idle", 5)]
    titles = list(Notification.objects.order_by("id").values_list("title", flat=True))
    assert titles == [
        "box stops in about 30 min (an idle shutdown)",
        "box stops in about 5 min (an idle shutdown)",
    ]
    assert (
        len(mail.outbox) == 2
        and "Keep running: http://127.0.0.1:8000/w/vision/compute/" in mail.outbox[0].body
    )

    access = get_access(team.contributor, team.workspace.slug)
    with time_machine.travel(deadline - timedelta(minutes=4), tick=False):
        new_deadline = keep_running(access, box.pk)
    assert new_deadline == deadline + timedelta(minutes=60)
    box.refresh_from_db()
    assert box.idle_deadline == new_deadline
    assert (
        sweep_at(deadline + timedelta(minutes=1), django_capture_on_commit_callbacks).stopped == []
    )
    fresh = sweep_at(new_deadline - timedelta(minutes=30), django_capture_on_commit_callbacks)
    assert fresh.reminded == [(box.pk, "idle", 30)]
    assert Reminder.objects.filter(compute=box).count() == 3


def test_keep_running_link_only_for_members_allowed_to_act(client, box, team):
    url = reverse("compute:keep-running", args=[team.workspace.slug, box.pk])
    before = Compute.objects.get(pk=box.pk).idle_deadline
    client.force_login(team.reader)
    assert client.post(url).status_code == 403
    client.force_login(team.outsider)
    assert client.post(url).status_code == 404
    assert client.get(url).status_code == 404
    assert Compute.objects.get(pk=box.pk).idle_deadline == before
    client.force_login(team.contributor)
    assert client.get(url).status_code == 200  # the email link: one click to confirm
    with time_machine.travel(T0 + timedelta(minutes=50), tick=False):
        assert client.post(url).status_code == 302
    assert Compute.objects.get(pk=box.pk).idle_deadline == before + timedelta(minutes=60)


def test_activity_endpoint_resets_the_clock_and_refuses_bad_tokens(client, box, team):
    access = get_access(team.contributor, team.workspace.slug)
    old_token = rotate_token(access, box.pk)
    token = rotate_token(access, box.pk)  # the first one is rotated away
    url = reverse("compute:activity", args=[box.pk])
    before = Compute.objects.get(pk=box.pk)
    for bad in ("", "Bearer nope", f"Bearer {old_token}", f"Token {token}"):
        response = client.post(url, HTTP_AUTHORIZATION=bad, content_type="application/json")
        assert response.status_code == 401, bad
    after = Compute.objects.get(pk=box.pk)
    assert (after.idle_deadline, after.last_activity) == (
        before.idle_deadline,
        before.last_activity,
    )
    with time_machine.travel(T0 + timedelta(minutes=40), tick=False):
        response = client.post(
            url,
            {"source": "jupyter kernel"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
    assert response.status_code == 200
    box.refresh_from_db()
    assert box.last_activity == "activity from jupyter kernel"
    assert box.idle_deadline == T0 + timedelta(minutes=100)
    assert response.json()["idle_deadline"] == box.idle_deadline.isoformat()


def test_activity_endpoint_is_rate_limited(client, box, team, settings):
    settings.HANGAR_ACTIVITY_RATE_PER_MINUTE = 3
    token = rotate_token(get_access(team.admin, team.workspace.slug), box.pk)
    url = reverse("compute:activity", args=[box.pk])
    codes = [client.post(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]


def test_weekly_stop_at_19_berlin_fires_at_the_right_utc_instant_across_dst(
    box, team, django_capture_on_commit_callbacks
):
    access = get_access(team.admin, team.workspace.slug)
    with time_machine.travel(T0, tick=False):
        schedule = add_schedule(
            access,
            box.pk,
            action="stop",
            cron=idle.weekly_cron(["1", "5"], "19:00"),
            tz="Europe/Berlin",
        )
    # Friday 27 March 2026 is still CET (UTC+1); Monday 30 March is CEST (UTC+2).
    assert schedule.next_run_at == datetime(2026, 3, 27, 18, 0, tzinfo=UTC)
    assert (
        sweep_at(
            datetime(2026, 3, 27, 17, 59, 59, tzinfo=UTC), django_capture_on_commit_callbacks
        ).fired
        == []
    )
    report = sweep_at(datetime(2026, 3, 27, 18, 0, tzinfo=UTC), django_capture_on_commit_callbacks)
    assert report.fired == [(schedule.pk, "stop")]
    schedule.refresh_from_db()
    assert schedule.next_run_at == datetime(2026, 3, 30, 17, 0, tzinfo=UTC)
    assert Compute.objects.get(pk=box.pk).state == S.STOPPING
    twice = sweep_at(
        datetime(2026, 3, 27, 18, 0, 1, tzinfo=UTC), django_capture_on_commit_callbacks
    )
    assert twice.fired == []


def test_a_missed_stop_still_stops_and_a_stale_missed_start_is_skipped(
    box, team, django_capture_on_commit_callbacks
):
    access = get_access(team.admin, team.workspace.slug)
    Compute.objects.filter(pk=box.pk).update(idle_shutdown_minutes=None)  # only schedules act
    box.refresh_from_db()
    refresh_deadline(box)
    with time_machine.travel(T0, tick=False):
        stop = add_schedule(access, box.pk, action="stop", cron="0 13 * * *", tz="UTC")
        start = add_schedule(access, box.pk, action="start", cron="0 14 * * *", tz="UTC")
    # Hangar was down from 12:30 to 17:00: both occurrences were missed.
    report = sweep_at(T0 + timedelta(hours=5), django_capture_on_commit_callbacks)
    assert (stop.pk, "stop") in report.fired
    assert report.skipped == [start.pk]
    messages = list(box.events.values_list("message", flat=True))
    assert any("missed while Hangar was down" in m and "stopped box" in m for m in messages)
    assert any(m.startswith("Skipped the scheduled start of") for m in messages)
    start.refresh_from_db()
    assert start.next_run_at == datetime(2026, 3, 28, 14, 0, tzinfo=UTC)


def test_required_idle_shutdown_blocks_creating_without_it(client, team):
    team.workspace.idle_required = True
    team.workspace.save()
    client.force_login(team.admin)
    url = reverse("compute:create", args=[team.workspace.slug, "instance"])
    size = VmSize.objects.get(name="Standard_DS3_v2")
    response = client.post(
        url, {"name": "no-idle", "vm_size": size.pk, "idle_shutdown_minutes": ""}
    )
    assert "requires idle shutdown: choose 15 to 4320 minutes" in response.content.decode()
    assert not Compute.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "cron", "cron": "61 * * * *"}, "Invalid cron expression"),
        ({"mode": "cron", "cron": "* *"}, "has 5 fields"),
        ({"mode": "weekly", "days": [], "at": "19:00"}, "Pick at least one day"),
        (
            {"mode": "weekly", "days": ["1"], "at": "19:00", "timezone": "Mars/Olympus"},
            "not a known time zone",
        ),
    ],
)
def test_bad_schedules_are_refused_and_nothing_saved(client, box, team, data, message):
    client.force_login(team.contributor)
    url = reverse("compute:schedule-add", args=[team.workspace.slug, box.pk])
    response = client.post(url, {"action": "stop", "timezone": "UTC", **data})
    assert message in response.content.decode()
    assert not Schedule.objects.exists()


def test_policy_form_validates_and_saves(client, team):
    client.force_login(team.admin)
    url = reverse("workspace:settings", args=[team.workspace.slug])
    good = {
        "idle_min_minutes": 10,
        "idle_max_minutes": 120,
        "idle_default_minutes": 30,
        "reminder_leads": "5, 15",
        "keep_running_minutes": 30,
        "missed_start_window_minutes": 15,
    }
    bad = client.post(url, {**good, "idle_min_minutes": 200})
    assert "The shortest cannot exceed the longest." in bad.content.decode()
    assert client.post(url, {**good, "idle_required": "on"}).status_code == 302
    team.workspace.refresh_from_db()
    assert (team.workspace.leads, team.workspace.idle_required) == ([15, 5], True)


def test_idle_sweep_with_nothing_due_reads_nothing(box, django_assert_num_queries):
    """One query, finding nothing due (instances and schedules together), in the sweep's
    transaction: SAVEPOINT and RELEASE here, BEGIN and COMMIT under beat."""
    with time_machine.travel(T0 + timedelta(minutes=1), tick=False):
        with django_assert_num_queries(3):
            assert idle_sweep().stopped == []


def test_wrong_activity_tokens_are_limited_per_address_and_checked_no_more(
    client, box, team, settings
):
    settings.HANGAR_ACTIVITY_FAILURES_PER_MINUTE = 3
    token = rotate_token(get_access(team.admin, team.workspace.slug), box.pk)
    url = reverse("compute:activity", args=[box.pk])

    def report(auth: str, address: str = "127.0.0.1"):
        return client.post(url, HTTP_AUTHORIZATION=auth, REMOTE_ADDR=address)

    # All in one fixed-minute window, 20 s into it: the real clock crossing a minute
    # between the calls would start a fresh count.
    with time_machine.travel(T0 + timedelta(seconds=20), tick=False):
        assert report(f"Bearer {token}").status_code == 200  # an accepted call is no failure
        assert [report("Bearer nope").status_code for _ in range(3)] == [401, 401, 401]
        locked = report(f"Bearer {token}")  # the right token, but this client is locked out
        assert locked.status_code == 429
        assert int(locked["Retry-After"]) == 40  # until that window ends
        # Another address meets the instance's own count: three failures reached it too.
        assert report(f"Bearer {token}", "127.0.0.9").status_code == 429
    # The next window counts afresh.
    with time_machine.travel(T0 + timedelta(minutes=1, seconds=1), tick=False):
        assert report(f"Bearer {token}").status_code == 200


def test_an_activity_recorded_as_a_stop_lands_gives_the_stopped_instance_no_deadline(box):
    """record_activity read the instance running; the stop landed before its write: the
    stopped instance must not get a running one's deadline back (the idle sweep would
    claim it as due)."""
    seen_running = Compute.objects.select_related("workspace").get(pk=box.pk)
    Compute.objects.filter(pk=box.pk).update(
        state=S.STOPPED, idle_deadline=None, idle_next_check_at=None
    )
    refresh_deadline(seen_running)
    stopped = Compute.objects.get(pk=box.pk)
    assert (stopped.idle_deadline, stopped.idle_next_check_at) == (None, None)
