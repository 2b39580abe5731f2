"""The idle-and-schedules page, the activity token page and "What is running", as a member
sees them: the real forms posted with the test client, then the page read back."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from compute.models import Compute, EventVerb, Schedule, VmSize
from tests.support.factories import ComputeFactory
from tests.support.teams import Team
from workspace.access import get_access

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)  # a Friday, before Europe's DST change


@pytest.fixture
def box(team: Team) -> Compute:
    """A running instance of the team's workspace, owned by its contributor."""
    return ComputeFactory(
        workspace=team.workspace,
        instance=True,
        name="box",
        created_by=team.contributor,
        assigned_to=team.contributor,
        state_changed_at=T0 - timedelta(hours=1),
    )


def idle_page(client: Client, team: Team, box: Compute) -> str:
    return client.get(reverse("compute:idle", args=[team.workspace.slug, box.pk])).content.decode()


def schedule_rows(html: str) -> list[str]:
    """The text of each schedule row of the page (up to its Remove button), tags stripped."""
    rows = re.findall(r'data-testid="schedule">(.*?)<form', html, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in rows]


def add(client: Client, team: Team, box: Compute, **data: object):
    url = reverse("compute:schedule-add", args=[team.workspace.slug, box.pk])
    return client.post(url, data, follow=True)


def test_a_weekly_stop_saved_through_the_form_is_listed_with_its_next_runs(
    client: Client, team: Team, box: Compute
) -> None:
    """The weekly form (days + time, in a zone) becomes a row showing the next three stops
    in UTC, daylight saving included: what a user checks before trusting a schedule."""
    client.force_login(team.contributor)
    assert "No schedules." in idle_page(client, team, box)
    with time_machine.travel(T0, tick=False):
        response = add(
            client,
            team,
            box,
            action="stop",
            mode="weekly",
            days=["1", "5"],
            at="19:00",
            timezone=" Europe/Berlin ",
        )
    html = response.content.decode()
    assert response.redirect_chain[-1][0].endswith(f"/compute/{box.pk}/idle/")
    assert "Schedule added." in html
    # Friday 27 March is CET (18:00 UTC); from Monday 30 March Berlin is on CEST (17:00 UTC).
    assert schedule_rows(html) == [
        "Stop 0 19 * * 1,5 · Europe/Berlin "
        "Next: Fri 27 Mar 18:00 UTC, Mon 30 Mar 17:00 UTC, Fri 3 Apr 17:00 UTC"
    ]
    assert "1 of 4" in html
    schedule = Schedule.objects.get(compute=box)
    assert (schedule.timezone, schedule.next_run_at) == ("Europe/Berlin", T0 + timedelta(hours=6))
    event = box.events.get(verb=EventVerb.SCHEDULE_ADDED)
    assert event.actor == team.contributor


def test_a_cron_start_is_saved_and_a_fifth_schedule_is_refused_on_the_page(
    client: Client, team: Team, box: Compute
) -> None:
    """Four schedules per instance: the form goes away at four, and a fifth posted anyway
    (another tab) is refused with the reason instead of being saved."""
    client.force_login(team.contributor)
    for hour in (6, 7, 8, 9):
        add(
            client, team, box, action="start", mode="cron", cron=f"0 {hour} * * 1-5", timezone="UTC"
        )
    html = idle_page(client, team, box)
    assert len(schedule_rows(html)) == 4 and "4 of 4" in html
    assert "Add schedule" not in html
    assert schedule_rows(html)[0].startswith("Start 0 6 * * 1-5 · UTC")
    refused = add(client, team, box, action="stop", mode="cron", cron="0 19 * * *", timezone="UTC")
    assert (
        'data-testid="schedule-error">An instance has at most 4 schedules.'
        in refused.content.decode()
    )
    assert Schedule.objects.filter(compute=box).count() == 4


def test_removing_a_schedule_through_its_button(client: Client, team: Team, box: Compute) -> None:
    """The Remove button deletes that schedule only, says so, and the event log names it;
    a reader may not, and another instance's schedule id removes nothing."""
    access = get_access(team.contributor, team.workspace.slug)
    from compute.actions.idle import add_schedule

    keep = add_schedule(access, box.pk, action="start", cron="0 8 * * 1-5", tz="UTC")
    gone = add_schedule(access, box.pk, action="stop", cron="0 19 * * 1-5", tz="UTC")
    other = ComputeFactory(workspace=team.workspace, instance=True, name="other")
    theirs = add_schedule(access, other.pk, action="stop", cron="0 20 * * *", tz="UTC")

    def delete_url(schedule: Schedule, compute: Compute = box) -> str:
        return reverse(
            "compute:schedule-delete", args=[team.workspace.slug, compute.pk, schedule.pk]
        )

    client.force_login(team.reader)
    assert client.post(delete_url(gone)).status_code == 403
    client.force_login(team.contributor)
    html = idle_page(client, team, box)
    assert f'action="{delete_url(gone)}"' in html  # the button posts where this test posts

    response = client.post(delete_url(gone), follow=True)
    html = response.content.decode()
    assert "Schedule removed." in html
    assert [row.split(" Next:")[0] for row in schedule_rows(html)] == ["Start 0 8 * * 1-5 · UTC"]
    assert set(Schedule.objects.values_list("pk", flat=True)) == {keep.pk, theirs.pk}
    assert box.events.get(verb=EventVerb.SCHEDULE_DELETED).message == (
        f"{team.contributor} removed the schedule Stop 0 19 * * 1-5 (UTC)."
    )

    # Through box's page, the id of other's schedule: refused, and other keeps it.
    refused = client.post(delete_url(theirs), follow=True).content.decode()
    assert "This schedule no longer exists." in refused
    assert Schedule.objects.filter(pk=theirs.pk).exists()


def test_the_token_page_shows_a_working_token_once(
    client: Client, team: Team, box: Compute
) -> None:
    """The token is shown once, never cached, and is the one the activity endpoint takes;
    issuing another retires it. Only its hash is kept."""
    url = reverse("compute:token", args=[team.workspace.slug, box.pk])
    activity = reverse("compute:activity", args=[box.pk])
    client.force_login(team.reader)
    assert client.post(url).status_code == 403
    client.force_login(team.contributor)
    assert client.get(url).status_code == 405  # issuing one is a POST (the detail page's button)

    response = client.post(url)
    html = response.content.decode()
    assert response["Cache-Control"] == "no-store"
    (first_token,) = re.findall(r'value="(hgr_[^"]+)"', html)
    assert f"http://testserver{activity}" in html  # the curl line names the real endpoint
    assert f"Bearer {first_token}" in html
    box.refresh_from_db()
    assert box.activity_token_hash and first_token not in box.activity_token_hash
    assert box.events.filter(verb=EventVerb.TOKEN_ISSUED).count() == 1

    def report(token: str) -> int:
        return client.post(activity, HTTP_AUTHORIZATION=f"Bearer {token}").status_code

    assert report(first_token) == 200
    detail = client.get(reverse("compute:detail", args=[team.workspace.slug, box.pk]))
    assert first_token not in detail.content.decode()  # shown once: nowhere else

    second = re.findall(r'value="(hgr_[^"]+)"', client.post(url).content.decode())[0]
    assert second != first_token
    assert (report(first_token), report(second)) == (401, 200)


def burning_page(client: Client, team: Team) -> str:
    return client.get(reverse("compute:burning", args=[team.workspace.slug])).content.decode()


def test_what_is_running_lists_running_instances_most_idle_first_with_costs(
    client: Client, team: Team
) -> None:
    """The page a lead opens to find forgotten instances: only what runs here, the most
    idle on top, and the day's cost and waste, totalled."""
    noon = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    size = VmSize.objects.get(name="Standard_DS3_v2")
    price = float(size.price_dedicated)
    # Running since 09:00, idle since 11:00, idle shutdown at 13:00.
    forgotten = ComputeFactory(
        workspace=team.workspace,
        instance=True,
        name="forgotten",
        created_by=team.contributor,
        state_changed_at=noon - timedelta(hours=3),
        last_activity_at=noon - timedelta(hours=1),
        last_activity="notebook cell ran",
        idle_deadline=noon + timedelta(hours=1),
    )
    # Running since 11:30 and busy just now, no idle shutdown: until midnight at least.
    busy = ComputeFactory(
        workspace=team.workspace,
        instance=True,
        name="busy",
        assigned_to=team.admin,
        state_changed_at=noon - timedelta(minutes=30),
        last_activity_at=noon,
    )
    ComputeFactory(workspace=team.workspace, stopped=True, name="parked")
    ComputeFactory(workspace=team.workspace, name="a-cluster")  # clusters are not listed here
    ComputeFactory(instance=True, name="elsewhere")  # another workspace's

    client.force_login(team.reader)  # everyone in the workspace may look
    with time_machine.travel(noon, tick=False):
        html = burning_page(client, team)
    names = re.findall(r'<tr data-compute="([^"]+)"', html)
    assert names == [forgotten.name, busy.name]
    forgotten_row = html.split('data-compute="forgotten"')[1].split("</tr>")[0]
    assert "60 min" in forgotten_row and "notebook cell ran" in forgotten_row
    assert str(team.contributor) in forgotten_row
    assert f"${3 * price:.2f}" in forgotten_row  # 3 h today
    assert f"${2 * price:.2f}" in forgotten_row  # 1 h idle + 1 h until shutdown
    assert "until idle shutdown at 13:00 UTC" in forgotten_row
    busy_row = html.split('data-compute="busy"')[1].split("</tr>")[0]
    assert str(team.admin) in busy_row and "no idle shutdown: until midnight" in busy_row
    total_today = 3 * price + 0.5 * price
    total_waste = 2 * price + 12 * price  # busy: 0 idle + 12 h until midnight
    assert f"Today so far: <strong>${total_today:.2f}</strong>" in html
    assert f"if nothing changes: <strong>${total_waste:.2f}</strong>" in html


def test_what_is_running_pages_its_rows_and_totals_them_all(client: Client, team: Team) -> None:
    """Sixty running instances: the table shows the 25 most idle, the totals count all."""
    noon = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    price = float(VmSize.objects.get(name="Standard_DS3_v2").price_dedicated)
    for n in range(60):
        ComputeFactory(
            workspace=team.workspace,
            instance=True,
            name=f"box{n:02}",
            state_changed_at=noon - timedelta(hours=1),
            last_activity_at=noon - timedelta(minutes=n),
        )
    client.force_login(team.reader)
    with time_machine.travel(noon, tick=False):
        first = burning_page(client, team)
        third = client.get(
            reverse("compute:burning", args=[team.workspace.slug]) + "?page=3"
        ).content.decode()
    assert re.findall(r'<tr data-compute="([^"]+)"', first) == [
        f"box{n:02}" for n in range(59, 34, -1)
    ]
    assert len(re.findall(r"<tr data-compute=", third)) == 10
    assert "1–25 of 60" in first and "51–60 of 60" in third
    assert f"Today so far: <strong>${60 * price:.2f}</strong>" in first


def test_what_is_running_is_empty_when_nothing_runs_and_hidden_from_outsiders(
    client: Client, team: Team
) -> None:
    ComputeFactory(workspace=team.workspace, stopped=True, name="parked")
    client.force_login(team.contributor)
    html = burning_page(client, team)
    assert "Nothing is running" in html and "parked" not in html
    assert "Today so far: <strong>$0.00</strong>" in html
    list_page = client.get(reverse("compute:list", args=[team.workspace.slug])).content.decode()
    assert reverse("compute:burning", args=[team.workspace.slug]) in list_page
    client.force_login(team.outsider)
    response = client.get(reverse("compute:burning", args=[team.workspace.slug]))
    assert response.status_code == 404
