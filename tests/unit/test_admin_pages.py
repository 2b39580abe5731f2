"""Site admin pages, by what the approver sees and what a decision really does: the list
shows the right requests with their figures and writes nothing; approving asks first, then
raises the limit; rejecting changes no limit and tells the requester why."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compute import quota
from compute.actions.quota import request_quota
from compute.models import (
    Attachment,
    Compute,
    Event,
    FamilyQuota,
    Job,
    Node,
    NodeState,
    QuotaRequest,
    RequestStatus,
    VmFamily,
    WorkspaceQuota,
)
from tests.support.admin_rows import MAKERS
from tests.support.factories import ComputeFactory, NodeFactory, UserFactory
from tests.support.teams import Team, join_group, make_team
from workspace import admin_lists
from workspace.access import get_access
from workspace.models import Activity, Membership, Notification, Workspace

CHANGELIST = reverse("admin:compute_quotarequest_changelist")

pytestmark = pytest.mark.django_db


def ask(team: Team, family: str, cores: int, why: str = "x") -> QuotaRequest:
    access = get_access(team.contributor, team.workspace.slug)
    return request_quota(
        access, family=VmFamily.objects.get(name=family), cores=cores, justification=why
    )


@pytest.fixture
def approver(db):
    return join_group(UserFactory(username="approver", is_staff=True), "Quota approvers")


def test_the_request_list_shows_each_request_with_its_figures_and_writes_nothing(
    client, team, approver
):
    made = [ask(team, "NCsv3", 12), ask(team, "NDv2", 40)]
    elsewhere = ask(make_team("rivals"), "NCsv3", 24)
    # Rows that were never made (a workspace that never used these families): the page
    # shows the site default for them and makes no row.
    FamilyQuota.objects.all().delete()
    WorkspaceQuota.objects.all().delete()
    client.force_login(approver)

    page = client.get(CHANGELIST)

    assert {row.pk for row in page.context["cl"].result_list} == {
        *(m.pk for m in made),
        elsewhere.pk,
    }
    body = page.content.decode()
    assert "Vision: NCsv3 cores → 12 cores (pending)" in body
    assert "Vision: NDv2 cores → 40 cores (pending)" in body
    assert "Rivals: NCsv3 cores → 24 cores (pending)" in body
    assert 'value="approve"' in body and 'value="reject"' in body  # an approver decides
    assert FamilyQuota.objects.count() == 0
    assert WorkspaceQuota.objects.count() == 0
    # The filters narrow the list to what they say.
    only_rivals = client.get(CHANGELIST, {"workspace__id__exact": elsewhere.workspace_id})
    assert [row.pk for row in only_rivals.context["cl"].result_list] == [elsewhere.pk]
    searched = client.get(CHANGELIST, {"q": "NDv2"})
    assert [row.pk for row in searched.context["cl"].result_list] == [made[1].pk]


def test_approving_asks_first_then_raises_the_limit(client, team, approver):
    made = ask(team, "NCsv3", 12, why="Fine-tuning a ViT")
    client.force_login(approver)

    confirm = client.post(CHANGELIST, {"action": "approve", "_selected_action": [made.pk]})

    body = confirm.content.decode()
    assert "Approving raises each workspace's limit" in body
    assert f"#{made.pk} Vision: NCsv3 cores → 12 cores (pending)" in body
    assert "Fine-tuning a ViT" in body
    assert QuotaRequest.objects.get(pk=made.pk).status == RequestStatus.PENDING
    assert quota.family_limit(team.workspace, made.family) == 0

    done = client.post(
        CHANGELIST,
        {"action": "approve", "_selected_action": [made.pk], "apply": "1", "reason": "ok"},
        follow=True,
    )

    assert f"Approved request #{made.pk}." in done.content.decode()
    assert "Vision: NCsv3 cores → 12 cores (approved)" in done.content.decode()
    made.refresh_from_db()
    assert (made.status, made.decided_by, made.reason) == (RequestStatus.APPROVED, approver, "ok")
    assert quota.family_limit(team.workspace, made.family) == 12
    assert Activity.objects.filter(
        workspace=team.workspace, message="approver approved the request for 12 NCsv3 cores: ok"
    ).exists()
    note = Notification.objects.get(user=team.contributor)
    assert note.title == "Quota request approved: 12 NCsv3 cores"


def test_rejecting_needs_a_reason_changes_no_limit_and_tells_why(client, team, approver):
    made = ask(team, "NDv2", 40)
    client.force_login(approver)
    decide = {"action": "reject", "_selected_action": [made.pk], "apply": "1"}

    missing = client.post(CHANGELIST, {**decide, "reason": ""}, follow=True)

    assert "Give the requester a reason for the rejection." in missing.content.decode()
    assert QuotaRequest.objects.get(pk=made.pk).status == RequestStatus.PENDING

    done = client.post(CHANGELIST, {**decide, "reason": "No V100s this quarter."}, follow=True)

    assert f"Rejected request #{made.pk}." in done.content.decode()
    made.refresh_from_db()
    assert (made.status, made.reason) == (RequestStatus.REJECTED, "No V100s this quarter.")
    assert quota.family_limit(team.workspace, made.family) == 0
    note = Notification.objects.get(user=team.contributor)
    assert "No V100s this quarter." in note.body


# Every admin page at two sizes of data ----------------------------------------------------

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)
WRITES = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


def admin_url(model: type[Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def statements_of(client, url: str) -> list[str]:
    """The SQL of one GET of `url`, which must be served."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return [query["sql"] for query in queries.captured_queries]


def pages_of(model: type[Model], subject: Model) -> list[str]:
    return [admin_url(model, "changelist"), admin_url(model, "change", subject.pk)]


@pytest.fixture
def root(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_every_admin_page_reads_as_many_queries_for_50_rows_as_for_5(client, root, model):
    """No per-row query on any changelist (list_select_related, figures read per page) and
    none per inline row on a change page (a compute's nodes, a workspace's members): the
    count for 5 rows, each inline holding 5, is the count for 55 rows, inlines holding 50."""
    make = MAKERS.get(model._meta.label)
    assert make, f"tests/support/admin_rows.py has no maker for {model._meta.label}"
    few = make(5)
    for url in pages_of(model, few):
        client.get(url)  # caches filled once per process (content types) are not the data's
    with_few = [len(statements_of(client, url)) for url in pages_of(model, few)]
    many = make(50)
    with_many = [len(statements_of(client, url)) for url in pages_of(model, many)]
    assert with_many == with_few, f"changelist, change page: {with_few} → {with_many} queries"


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_no_admin_page_writes_on_get(client, root, model):
    """Reading a list or a page writes nothing (the request list once made the quota rows
    of every family it showed)."""
    subject = MAKERS[model._meta.label](3)
    for url in pages_of(model, subject):
        writes = [sql for sql in statements_of(client, url) if WRITES.match(sql)]
        assert writes == [], url


def test_a_compute_page_lists_its_live_nodes_and_links_to_all(client, root):
    compute = ComputeFactory(name="busy")
    ended = NodeFactory(compute=compute, state=NodeState.UNUSABLE, ended_at=timezone.now())
    live = NodeFactory(compute=compute, container_ref="live-ref")

    body = client.get(admin_url(Compute, "change", compute.pk)).content.decode()

    assert "live-ref" in body and ended.container_ref not in body
    link = f"{admin_url(Node, 'changelist')}?compute__id__exact={compute.pk}"
    assert f'href="{link}">All 2 nodes of this compute →' in body
    listed = client.get(link).context["cl"].result_list
    assert {node.pk for node in listed} == {ended.pk, live.pk}


def test_the_request_list_shows_each_requests_limit_and_usage(client, team, approver):
    dsv2 = VmFamily.objects.get(name="DSv2")
    FamilyQuota.objects.create(workspace=team.workspace, family=dsv2, limit=16, approved=16)
    NodeFactory(compute=ComputeFactory(workspace=team.workspace))  # one DS3_v2 node: 4 cores
    low = ComputeFactory(workspace=team.workspace, tier="low_priority")
    NodeFactory(compute=low)
    NodeFactory(compute=low)  # 8 low-priority cores
    family_request = ask(team, "DSv2", 32)
    pool_request = request_quota(
        get_access(team.contributor, team.workspace.slug), family=None, cores=128, justification="x"
    )
    client.force_login(approver)

    page = client.get(CHANGELIST)

    admin_of = page.context["cl"].model_admin
    figures = {
        row.pk: (admin_of.current_limit(row), admin_of.current_usage(row))
        for row in page.context["cl"].result_list
    }
    pool_default = quota.pool_defaults()["low_priority_limit"]
    assert figures == {family_request.pk: (16, 4), pool_request.pk: (pool_default, 8)}


def test_a_long_log_shows_an_estimate_and_a_search_counts_exactly(client, root, monkeypatch):
    """Past EXACT_UP_TO rows the list says what the planner expects, "about N", instead of
    counting every row on every page; a search is counted exactly."""
    monkeypatch.setattr(admin_lists, "EXACT_UP_TO", 2)
    MAKERS["compute.Event"](5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE compute_event")
    url = admin_url(Event, "changelist")

    listed = client.get(url)
    searched = client.get(url, {"q": "made"})

    assert listed.context["cl"].paginator.is_estimate is (connection.vendor == "postgresql")
    assert not getattr(searched.context["cl"].paginator, "is_estimate", False)
    assert searched.context["cl"].result_count == 5
    if connection.vendor == "postgresql":
        assert "about 5 events" in listed.content.decode()


def test_the_written_out_row_checkbox_is_djangos_own(team):
    """ListAdmin writes the checkbox instead of rendering the widget: the same markup."""
    listed = admin.site._registry[Workspace]
    assert isinstance(listed, admin_lists.ListAdmin)
    assert listed.action_checkbox(team.workspace) == admin.ModelAdmin.action_checkbox(
        listed, team.workspace
    )


def test_a_workspace_page_shows_its_members_and_links_to_add_one(client, root, team):
    body = client.get(admin_url(Workspace, "change", team.workspace.pk)).content.decode()

    for member in (team.admin, team.contributor, team.reader):
        assert member.username in body
    assert "data-select2-id" not in body and "admin-autocomplete" not in body  # no pickers
    add = f"{admin_url(Membership, 'add')}?workspace={team.workspace.pk}"
    assert f'href="{add}">Add a member →' in body


def test_a_list_filtered_to_nothing_counts_nothing(client, root):
    """The estimate never plans a query Django would not run (a filter matching nothing)."""
    paginator = admin_lists.EstimatingPaginator(Event.objects.filter(pk__in=[]), 50)
    assert paginator.count == 0


@pytest.mark.parametrize(
    "model", [Compute, Job, Node, Event, Attachment, QuotaRequest, Membership, Activity]
)
def test_lists_find_rows_by_workspace_name_without_listing_every_workspace(
    client, root, model, team
):
    """A filter by workspace listed every workspace of the site on every page (200 links
    at team scale, more each month): the lists' search finds a workspace's rows instead."""
    for n in range(30):
        Workspace.objects.create(name=f"Crowd {n}", slug=f"crowd-{n}")
    body = client.get(admin_url(model, "changelist")).content.decode()
    assert "Crowd 17" not in body and "workspace__id__exact" not in body
    nothing = client.get(admin_url(model, "changelist"), {"q": "Crowd 17"})
    assert list(nothing.context["cl"].result_list) == []
    mine = ComputeFactory(workspace=team.workspace, name="findme")
    found = client.get(admin_url(Compute, "changelist"), {"q": team.workspace.name})
    assert mine in found.context["cl"].result_list


def form_fields(html: str) -> dict[str, str]:
    """What a browser would post back from the changelist form as rendered: every input's
    name and value (checkboxes and buttons aside)."""
    fields = {}
    for tag in re.findall(r"<input\b[^>]*>", html):
        attrs = dict(re.findall(r'(\w[\w-]*)="([^"]*)"', tag))
        if "name" in attrs and attrs.get("type") not in ("checkbox", "submit"):
            fields[attrs["name"]] = attrs.get("value", "")
    return fields


def test_prices_are_edited_in_the_size_list_as_written_out(client, root):
    """The VM size list's price inputs are written in Python (ListAdmin): posting the form
    back as rendered saves a changed price, and a bad one is refused with nothing saved."""
    url = reverse("admin:compute_vmsize_changelist")
    page = client.get(url, {"q": "Standard_D2s_v3"})
    fields = form_fields(page.content.decode())
    size = page.context["cl"].result_list[0]
    row = next(name[: -len("-id")] for name, value in fields.items() if value == str(size.pk))
    assert fields[f"{row}-price_dedicated"] == str(size.price_dedicated)
    price_input = re.search(
        rf'<input[^>]*name="{row}-price_dedicated"[^>]*>', page.content.decode()
    )
    assert price_input and 'type="number"' in price_input[0] and 'step="0.001"' in price_input[0]

    refused = client.post(
        f"{url}?q=Standard_D2s_v3", {**fields, f"{row}-price_dedicated": "a lot", "_save": "Save"}
    )
    assert refused.status_code == 200 and "Enter a number." in refused.content.decode()
    size.refresh_from_db()
    assert fields[f"{row}-price_dedicated"] == str(size.price_dedicated)

    saved = client.post(
        f"{url}?q=Standard_D2s_v3", {**fields, f"{row}-price_dedicated": "0.5", "_save": "Save"}
    )
    assert saved.status_code == 302
    size.refresh_from_db()
    assert str(size.price_dedicated) == "0.500"
