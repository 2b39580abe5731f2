"""The compute resources as a script sees them: the pages' rules and messages, as JSON
with statuses a client acts on."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compute.models import Compute, ComputeState, Event, EventVerb, Job, QuotaRequest, VmSize
from tests.support.factories import ComputeFactory, JobFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

W = "/workspaces/vision"


def test_a_contributor_creates_a_cluster_and_reads_it_back(team, api_as):
    api = api_as(team.contributor)
    made = api.post(
        f"{W}/computes/clusters",
        {"name": "trainers", "vm_size": "Standard_DS3_v2", "min_nodes": 0, "max_nodes": 2},
    )
    assert made.status_code == 201, made.json()
    body = made.json()
    assert (body["name"], body["kind"], body["vm_size"], body["max_nodes"]) == (
        "trainers", "cluster", "Standard_DS3_v2", 2,
    )  # fmt: skip
    assert body["url"].endswith(f"/w/vision/compute/{body['id']}/")
    assert api.get(f"{W}/computes/{body['id']}").json()["name"] == "trainers"
    assert Event.objects.filter(compute_id=body["id"], verb=EventVerb.COMPUTE_CREATED).exists()


def test_bad_input_gets_the_pages_messages_and_changes_nothing(team, api_as):
    api = api_as(team.contributor)
    ComputeFactory(workspace=team.workspace, name="taken")
    before = Compute.objects.count()
    bounds = api.post(
        f"{W}/computes/clusters",
        {"name": "pool", "vm_size": "Standard_DS3_v2", "min_nodes": 3, "max_nodes": 1},
    )
    assert bounds.status_code == 422
    assert bounds.json()["errors"]["min_nodes"] == ["Min nodes (3) cannot exceed max nodes (1)."]
    assert bounds.json()["detail"] == "Min nodes (3) cannot exceed max nodes (1)."
    taken = api.post(f"{W}/computes/clusters", {"name": "taken", "vm_size": "Standard_DS3_v2"})
    assert taken.json()["errors"]["name"] == ["Vision already has a compute named taken."]
    unknown = api.post(f"{W}/computes/clusters", {"name": "pool", "vm_size": "Huge_v9"})
    assert unknown.json()["errors"]["vm_size"]
    malformed = api.post(f"{W}/computes/clusters", {"name": "pool", "max_nodes": "many"})
    assert malformed.status_code == 422
    assert set(malformed.json()["errors"]) >= {"vm_size", "max_nodes"}
    assert Compute.objects.count() == before


def test_a_state_conflict_is_409_with_the_reason(team, api_as):
    box = ComputeFactory(
        workspace=team.workspace,
        name="box",
        kind="instance",
        state=ComputeState.STOPPED,
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
    )
    refused = api_as(team.contributor).post(f"{W}/computes/{box.pk}/stop")
    assert refused.status_code == 409
    assert refused.json() == {"detail": "box is already stopped."}
    assert Compute.objects.get(pk=box.pk).state == ComputeState.STOPPED


def test_lists_page_by_cursor_and_filter(team, api_as):
    for n in range(30):
        ComputeFactory(workspace=team.workspace, name=f"c{n:02d}")
    ComputeFactory(workspace=team.workspace, name="gone", state=ComputeState.DELETED)
    api = api_as(team.reader)
    first = api.get(f"{W}/computes").json()
    assert [c["name"] for c in first["results"]] == [f"c{n:02d}" for n in range(25)]
    assert first["next"]
    rest = api.get(first["next"].removeprefix("http://testserver/api/v1")).json()
    assert [c["name"] for c in rest["results"]] == [f"c{n:02d}" for n in range(25, 30)]
    assert rest["next"] is None
    deleted = api.get(f"{W}/computes", data={"state": "deleted"}).json()["results"]
    assert [c["name"] for c in deleted] == ["gone"]
    forged = api.get(f"{W}/computes", data={"cursor": "not base64!"})
    assert forged.status_code == 422 and forged.json()["errors"] == {"cursor": ["Invalid Cursor"]}


def test_no_secret_or_script_ever_leaves_the_server(team, api_as):
    api = api_as(team.contributor)
    made = api.post(
        f"{W}/computes/instances",
        {
            "name": "notebook",
            "vm_size": "Standard_DS3_v2",
            "setup_script": "echo setting-up",
            "secret_environment": {"HF_TOKEN": "hf_supersecretvalue"},
        },
    )
    assert made.status_code == 201, made.json()
    for response in (made, api.get(f"{W}/computes/{made.json()['id']}"), api.get(f"{W}/computes")):
        text = response.content.decode()
        assert "hf_supersecretvalue" not in text and "setting-up" not in text


def test_a_non_admin_cannot_create_for_someone_else(team, api_as):
    refused = api_as(team.contributor).post(
        f"{W}/computes/instances",
        {"name": "theirs", "vm_size": "Standard_DS3_v2", "assigned_to": team.reader.username},
    )
    assert refused.status_code == 403
    assert "needs the admin role" in refused.json()["detail"]
    assert not Compute.objects.filter(name="theirs").exists()


def test_members_page_by_cursor_in_username_order(team, api_as):
    """Found by the schema fuzz: a members list long enough for a second page failed."""
    for n in range(30):
        MembershipFactory(workspace=team.workspace, user=UserFactory(username=f"m{n:02d}"))
    api = api_as(team.reader)
    first = api.get(f"{W}/members").json()
    rest = api.get(first["next"].removeprefix("http://testserver/api/v1")).json()
    names = [m["username"] for m in first["results"] + rest["results"]]
    assert names == sorted(names) and len(names) == 33


@pytest.mark.parametrize(
    "path", ["/computes", "/jobs", "/members", "/quota/requests", "/computes/{pool}/events"]
)
def test_a_list_reads_as_many_queries_for_25_rows_as_for_3(team, api_as, path):
    """No query per row (a row's link once read its workspace again, 25 times a page)."""
    pool = ComputeFactory(workspace=team.workspace, name="pool")
    api = api_as(team.reader)

    def add(count: int) -> None:
        for _ in range(count):
            other = ComputeFactory(workspace=team.workspace)
            JobFactory(compute=other, submitted_by=UserFactory())
            MembershipFactory(workspace=team.workspace, user=UserFactory())
            Event.objects.create(
                compute=pool, verb="compute.created", message="made", actor=UserFactory()
            )
            QuotaRequest.objects.create(
                workspace=team.workspace, requested_limit=10, justification="x",
                requested_by=UserFactory(),
            )  # fmt: skip

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get(W + path.format(pool=pool.pk)).status_code == 200
        return len(captured)

    add(3)
    api.get(W + path.format(pool=pool.pk))  # the token's last use is written once a minute
    few = queries()
    add(22)
    assert queries() == few
    assert Job.objects.count() >= 25
