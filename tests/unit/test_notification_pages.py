"""The notifications page and the bell, as their owner uses them: reminders the real sweep
sent, read one or all, and the one-click buttons posted exactly as the page's forms are."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from compute.controllers.idle import idle_sweep
from compute.models import Compute, ComputeState
from compute.models.idle import record_activity
from tests.support.factories import ComputeFactory
from tests.support.teams import Team
from workspace.models import Notification
from workspace.notify import notify

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
PAGE = reverse("notifications")


@pytest.fixture
def reminded(team: Team, django_capture_on_commit_callbacks) -> Compute:
    """The contributor's instance, idle since T0 with 60 min idle shutdown; the sweep at
    T0 + 56 min has sent both reminders (30 and 5 min before the stop)."""
    box = ComputeFactory(
        workspace=team.workspace,
        instance=True,
        name="box",
        created_by=team.contributor,
        assigned_to=team.contributor,
        idle_shutdown_minutes=60,
        state_changed_at=T0,
    )
    record_activity(box.pk, "job train-42 finished", T0)
    with time_machine.travel(T0 + timedelta(minutes=56), tick=False):
        with django_capture_on_commit_callbacks():
            assert len(idle_sweep().reminded) == 2
    box.refresh_from_db()
    return box


def notes(html: str) -> list[str]:
    """Each notification block of the page, from its opening tag's classes on."""
    return html.split('<div class="p-3 border-bottom')[1:]


def is_unread(block: str) -> bool:
    return "bg-primary-subtle" in block.split(">")[0]


def unread_badge(html: str) -> str | None:
    found = re.search(r'data-testid="unread">(\d+)<', html)
    return found.group(1) if found else None


def submit(client: Client, block: str, button: str):
    """Post the form of `block` whose button says `button`, with its hidden fields, as a
    browser would."""
    for form in re.findall(r"<form .*?</form>", block, re.S):
        if f">{button}</button>" in form:
            action = re.search(r'action="([^"]+)"', form).group(1).replace("&amp;", "&")
            fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
            return client.post(action, fields, follow=True)
    raise AssertionError(f"no {button!r} button in {block[:200]}")


def test_the_page_lists_my_reminders_newest_first_and_the_bell_counts_them(
    client: Client, team: Team, reminded: Compute
) -> None:
    """Only the user's own notifications, newest first, unread ones marked and counted by
    the bell; each reminder links to its instance and offers its two buttons."""
    notify(team.admin, title="Someone else's note", workspace=team.workspace)
    client.force_login(team.contributor)
    html = client.get(PAGE).content.decode()
    assert unread_badge(html) == "2"
    blocks = notes(html)
    assert [re.search(r"box stops in about \d+ min", b).group(0) for b in blocks] == [
        "box stops in about 5 min",
        "box stops in about 30 min",
    ]
    assert "Someone else" not in html
    assert all(is_unread(block) for block in blocks)
    assert f'href="{reminded.get_absolute_url()}"' in blocks[0]
    assert "will be stopped at 13:00 UTC" in blocks[0]
    assert ">Keep running</button>" in blocks[0] and ">Stop now</button>" in blocks[0]


def test_mark_one_read_then_all_read(client: Client, team: Team, reminded: Compute) -> None:
    client.force_login(team.contributor)
    first = notes(client.get(PAGE).content.decode())[0]
    html = submit(client, first, "Mark read").content.decode()
    assert unread_badge(html) == "1"
    assert Notification.objects.filter(user=team.contributor, read_at=None).count() == 1
    read, unread = notes(html)
    assert not is_unread(read) and ">Mark read</button>" not in read
    assert is_unread(unread) and ">Mark read</button>" in unread

    html = submit(client, html, "Mark all read").content.decode()
    assert unread_badge(html) is None
    assert not Notification.objects.filter(user=team.contributor, read_at=None).exists()
    assert [is_unread(block) for block in notes(html)] == [False, False]  # read, not gone


def test_keep_running_from_the_page_moves_the_stop_and_reads_that_note(
    client: Client, team: Team, reminded: Compute
) -> None:
    """The reminder's own button: the instance keeps running past its deadline, the user
    is back on the notifications page, and only that reminder is now read."""
    deadline = reminded.idle_deadline
    client.force_login(team.contributor)
    five = notes(client.get(PAGE).content.decode())[0]
    with time_machine.travel(T0 + timedelta(minutes=57), tick=False):
        response = submit(client, five, "Keep running")
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == PAGE
    # Pushed back by the workspace's keep-running time (60 min) from the coming stop.
    assert team.workspace.keep_running_minutes == 60
    assert "box keeps running; next stop at 14:00 UTC." in html
    assert unread_badge(html) == "1"
    reminded.refresh_from_db()
    assert reminded.idle_deadline == deadline + timedelta(minutes=60)
    assert reminded.last_activity == f"{team.contributor} chose keep running"


def test_stop_now_from_the_page_stops_the_instance(
    client: Client, team: Team, reminded: Compute, django_capture_on_commit_callbacks
) -> None:
    client.force_login(team.contributor)
    thirty = notes(client.get(PAGE).content.decode())[1]
    with django_capture_on_commit_callbacks():
        html = submit(client, thirty, "Stop now").content.decode()
    assert "box: stop requested." in html
    assert Compute.objects.get(pk=reminded.pk).state == ComputeState.STOPPING
    assert unread_badge(html) == "1"


def test_the_page_is_paged_by_thirty_and_needs_a_login(client: Client, team: Team) -> None:
    for i in range(31):
        notify(team.reader, title=f"note {i}", email=False)
    assert client.get(PAGE).status_code == 302  # anonymous: to the login page
    client.force_login(team.reader)
    first = client.get(PAGE).content.decode()
    assert len(notes(first)) == 30 and "note 30" in first and "note 0<" not in first
    second = client.get(PAGE, {"page": 2}).content.decode()
    assert len(notes(second)) == 1 and "note 0<" in second


def test_the_bell_counts_up_to_99_plus_whatever_the_backlog(client: Client, team: Team) -> None:
    """Every page counts the bell: a backlog of thousands of unread reminders is counted
    no further than "99+"."""
    client.force_login(team.reader)
    Notification.objects.bulk_create(
        Notification(user=team.reader, workspace=team.workspace, title=f"n{i}") for i in range(99)
    )
    assert unread_badge(client.get(reverse("home")).content.decode()) == "99"
    Notification.objects.bulk_create(
        Notification(user=team.reader, workspace=team.workspace, title=f"m{i}") for i in range(2000)
    )
    html = client.get(reverse("home")).content.decode()
    assert 'data-testid="unread">99+<' in html
    assert "Notifications, 99+ unread" in html
    Notification.objects.filter(user=team.reader).update(read_at=datetime.now(UTC))
    html = client.get(reverse("home")).content.decode()
    assert 'data-testid="unread"' not in html and "Notifications, none unread" in html
