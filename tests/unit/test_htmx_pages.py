"""Pages htmx updates in place, all answering through the one helper (workspace/views/htmx.py):
the whole page or its fragment, `Vary: HX-Request`, messages out of band, and confirmations
without inline script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from compute.actions import attached as attach_actions
from compute.actions import computes as actions
from compute.actions.attached import Connection
from compute.actions.idle import add_schedule
from compute.actions.jobs import submit_job
from compute.models import Compute, ComputeState, Job, JobStatus, SecretKind, VmSize
from workspace.access import get_access

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def pages(team, django_capture_on_commit_callbacks) -> dict[str, tuple[str, str]]:
    """Every page with two renders: its address and the id its fragment carries."""
    access = get_access(team.admin, team.workspace.slug)
    slug = team.workspace.slug
    with django_capture_on_commit_callbacks():  # the worker is not part of these tests
        box = actions.create_instance(
            access, name="box", vm_size=VmSize.objects.get(name="Standard_DS3_v2")
        )
        Compute.objects.filter(pk=box.pk).update(state=ComputeState.RUNNING)
        job = submit_job(access, compute_id=box.pk, name="train", command="true")
        machine = attach_actions.attach(
            access,
            target_kind="remote_vm",
            name="gpu-box",
            max_concurrent_jobs=1,
            connection=Connection("gpu-box.lab", 22, "ml", SecretKind.PASSWORD, "pw"),
        )
    return {
        "compute list": (reverse("compute:list", args=[slug]), 'id="compute-table"'),
        "compute detail": (reverse("compute:detail", args=[slug, box.pk]), 'id="live"'),
        "attached detail": (reverse("compute:detail", args=[slug, machine.pk]), 'id="live"'),
        "job list": (reverse("compute:jobs", args=[slug]), 'id="job-table"'),
        "job detail": (reverse("compute:job", args=[slug, job.pk]), 'id="live"'),
        "catalog": (reverse("compute:catalog"), 'id="results"'),
        "members": (reverse("workspace:members", args=[slug]), 'data-testid="members-table"'),
    }


def test_each_live_page_answers_htmx_with_its_fragment_and_varies_on_it(client, team, pages):
    client.force_login(team.admin)
    for name, (address, marker) in pages.items():
        page = client.get(address)
        fragment = client.get(address, **HTMX)
        # 286 when the fragment is steady: htmx swaps it in and stops polling.
        assert page.status_code == 200 and fragment.status_code in (200, 286), name
        assert "<html" in page.content.decode(), name
        body = fragment.content.decode()
        assert "<html" not in body and marker in body, name
        for response in (page, fragment):  # a shared cache must not hand one for the other
            assert "HX-Request" in response["Vary"], name


@pytest.mark.parametrize(
    "headers",
    [{"HTTP_HX_HISTORY_RESTORE_REQUEST": "true"}, {"HTTP_HX_BOOSTED": "true"}],
    ids=["back button after the history cache dropped the page", "boosted link"],
)
def test_htmx_asking_for_a_whole_page_gets_one(client, team, pages, headers):
    """The job list and the catalog push their filters into the address bar: going back to
    one whose snapshot htmx no longer holds asks the server for the whole page."""
    client.force_login(team.admin)
    for name in ("job list", "catalog"):
        address, _ = pages[name]
        body = client.get(address, {"page": "1"}, **HTMX, **headers).content.decode()
        assert "<html" in body and "</nav>" in body, name


def test_an_htmx_stop_shows_its_message_once_in_place(client, team, pages):
    client.force_login(team.admin)
    box = Compute.objects.get(name="box")
    stop = reverse("compute:action", args=[team.workspace.slug, box.pk, "stop"])
    body = client.post(stop, **HTMX).content.decode()
    assert "<html" not in body and 'id="live"' in body
    oob = re.search(r'<div id="messages" hx-swap-oob="true">(.*?)</div>\s*$', body, re.S)
    assert oob and "box: stop requested." in oob.group(1)
    page = client.get(pages["compute detail"][0]).content.decode()
    assert "stop requested" not in page  # shown once, by the fragment


def test_polling_a_list_leaves_messages_for_the_page_they_were_meant_for(client, team, pages):
    """Only fragments that answer actions carry messages: the compute list's poll does not
    take away what the next page is to show."""
    client.force_login(team.admin)
    box = Compute.objects.get(name="box")
    client.post(reverse("compute:action", args=[team.workspace.slug, box.pk, "stop"]))
    poll = client.get(pages["compute list"][0], **HTMX).content.decode()
    assert "hx-swap-oob" not in poll and "stop requested" not in poll
    assert "box: stop requested." in client.get(pages["compute detail"][0]).content.decode()


def test_confirmations_ask_through_data_attributes_the_page_script_reads(
    client, team, pages, django_capture_on_commit_callbacks
):
    client.force_login(team.admin)
    box = Compute.objects.get(name="box")
    with django_capture_on_commit_callbacks():
        add_schedule(
            get_access(team.admin, team.workspace.slug),
            box.pk,
            action="stop",
            cron="0 19 * * *",
            tz="UTC",
        )
    idle = reverse("compute:idle", args=[team.workspace.slug, box.pk])
    shown = {
        "detail": client.get(pages["compute detail"][0]).content.decode(),
        "job": client.get(pages["job detail"][0]).content.decode(),
        "attached": client.get(pages["attached detail"][0]).content.decode(),
        "idle": client.get(idle).content.decode(),
    }
    assert 'data-confirm="Issue a new activity token?' in shown["detail"]
    assert 'data-confirm="Cancel train? Its processes are stopped."' in shown["job"]
    assert 'data-confirm="Detach gpu-box?' in shown["attached"]
    assert 'data-confirm="Remove this schedule?"' in shown["idle"]
    for name, body in shown.items():
        assert "hangar/hangar.js" in body, name


INLINE_SCRIPT = re.compile(r"""\s(on[a-z]+|hx-on[:\w-]*)\s*=\s*["']""", re.I)


def test_no_template_carries_inline_script():
    """Handlers live in static/hangar/hangar.js: an inline one would need a CSP that allows
    inline script, and interpolating a name into JavaScript is an injection waiting."""
    root = Path(settings.BASE_DIR) / "templates"
    found = [
        f"{path.relative_to(root)}: {match.group(0).strip()}"
        for path in root.rglob("*.html")
        for match in INLINE_SCRIPT.finditer(path.read_text())
    ]
    assert found == []


@pytest.mark.parametrize("name", ["compute list", "attached detail", "job list", "job detail"])
def test_a_polled_fragment_answers_286_once_steady_and_200_while_changing(
    client, team, pages, name
):
    """286 is htmx's "stop polling": the page stops asking once nothing can change by itself."""
    client.force_login(team.reader)
    address, _ = pages[name]
    query = {"tab": "attached"} if name == "compute list" else {}  # gpu-box is validating
    changing = client.get(address, query, **HTMX)
    assert changing.status_code == 200 and 'hx-trigger="every' in changing.content.decode()
    Compute.objects.filter(name="gpu-box").update(state=ComputeState.STEADY)
    Job.objects.filter(name="train").update(status=JobStatus.COMPLETED)
    steady = client.get(address, query, **HTMX)
    assert steady.status_code == 286 and "hx-trigger" not in steady.content.decode()
    assert client.get(address, query).status_code == 200  # a whole page is never 286


def test_the_badge_and_the_quota_line_vary_and_leave_the_messages_alone(client, team, pages):
    """The workers badge polls on every page and the quota line follows every form: they
    vary on HX-Request like the pages, and never take a message meant for the next page."""
    client.force_login(team.admin)
    box = Compute.objects.get(name="box")
    client.post(reverse("compute:action", args=[team.workspace.slug, box.pk, "stop"]))
    badge = client.get(reverse("compute:worker-health"), **HTMX)
    quota_line = client.get(
        reverse("compute:what-if", args=[team.workspace.slug]), {"vm_size": box.vm_size_id}, **HTMX
    )
    for response in (badge, quota_line):
        body = response.content.decode()
        assert response.status_code == 200 and "<html" not in body
        assert "HX-Request" in response["Vary"] and "hx-swap-oob" not in body
    assert 'data-testid="worker-health"' in badge.content.decode()
    assert "box: stop requested." in client.get(pages["compute detail"][0]).content.decode()


def test_leaving_through_htmx_sends_the_browser_to_the_workspace_list(client, team):
    client.force_login(team.reader)
    mine = team.workspace.memberships.get(user=team.reader)
    leave = reverse("workspace:member-remove", args=[team.workspace.slug, mine.pk])
    response = client.post(leave, **HTMX)
    assert response["HX-Redirect"] == reverse("workspace:list")
    assert "You left Vision." in client.get(reverse("workspace:list")).content.decode()
    assert client.get(reverse("workspace:members", args=[team.workspace.slug])).status_code == 404
