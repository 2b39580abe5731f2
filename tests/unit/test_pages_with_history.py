"""Pages with a team's history behind them: the counts they show are right, and what they
cost in queries does not grow with the history (ended nodes, finished jobs, events,
activity, notifications). The timings at 10,000 computes are `make bench BENCH=scale`'s."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compute.models import Compute, Event, Job, JobStatus, Node, NodeState
from compute.models.events import EventVerb
from tests.support.factories import ComputeFactory, JobFactory, NodeFactory
from workspace.models import Activity, Notification

pytestmark = pytest.mark.django_db


def add_history(cluster: Compute, instance: Compute, rounds: int) -> None:
    """`rounds` of a busy past: ended nodes, finished jobs, events, activity, notifications."""
    now = timezone.now()
    start = cluster.next_node_index
    Node.objects.bulk_create(
        Node(compute=cluster, index=start + i, state=NodeState.LEAVING, ended_at=now)
        for i in range(rounds)
    )
    Compute.objects.filter(pk=cluster.pk).update(next_node_index=start + rounds)
    cluster.next_node_index = start + rounds
    for compute in (cluster, instance):
        Job.objects.bulk_create(
            Job(
                workspace=compute.workspace,
                compute=compute,
                name=f"old-{i}",
                command="true",
                status=JobStatus.COMPLETED,
                queued_at=now - timedelta(days=i + 1),
                finished_at=now - timedelta(days=i + 1),
            )
            for i in range(rounds)
        )
        Event.objects.bulk_create(
            Event(compute=compute, verb=EventVerb.NODE_ADDED, message=f"old {i}")
            for i in range(rounds)
        )
    Activity.objects.bulk_create(
        Activity(workspace=cluster.workspace, verb=Activity.Verb.MEMBER_ADDED, message="old")
        for _ in range(rounds)
    )


@pytest.fixture
def busy(team):
    """A cluster with two live nodes (one at work), queued and running jobs, and an
    instance beside it."""
    cluster = ComputeFactory(workspace=team.workspace, name="trainers", max_nodes=4)
    NodeFactory(compute=cluster, index=1, state=NodeState.RUNNING)
    NodeFactory(compute=cluster, index=2, state=NodeState.IDLE)
    Compute.objects.filter(pk=cluster.pk).update(next_node_index=3)
    cluster.refresh_from_db()
    for status in (JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.RUNNING):
        JobFactory(compute=cluster, status=status)
    instance = ComputeFactory(workspace=team.workspace, name="box", instance=True)
    return cluster, instance


def page_urls(team, cluster: Compute, instance: Compute) -> dict[str, str]:
    slug = team.workspace.slug
    job = Job.objects.filter(compute=cluster).order_by("-pk").first()
    return {
        "instances tab": reverse("compute:list", args=[slug]) + "?tab=instances",
        "clusters tab": reverse("compute:list", args=[slug]) + "?tab=clusters",
        "cluster page": reverse("compute:detail", args=[slug, cluster.pk]),
        "instance page": reverse("compute:detail", args=[slug, instance.pk]),
        "job list": reverse("compute:jobs", args=[slug]),
        "job list of the cluster": reverse("compute:jobs", args=[slug]) + f"?compute={cluster.pk}",
        "job page": reverse("compute:job", args=[slug, job.pk]),
        "overview": reverse("workspace:overview", args=[slug]),
        "activity": reverse("workspace:activity", args=[slug]),
        "notifications": reverse("notifications"),
        "home": reverse("home"),
    }


def queries_of(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200, url
    return len(captured)


def add_notifications(team, count: int) -> None:
    Notification.objects.bulk_create(
        Notification(user=team.admin, workspace=team.workspace, title=f"old {i}")
        for i in range(count)
    )


def test_no_page_costs_more_queries_with_years_of_history(client, team, busy):
    cluster, instance = busy
    client.force_login(team.admin)
    urls = page_urls(team, cluster, instance)
    # Some history first, so every list already has more than one page to count.
    add_history(cluster, instance, rounds=40)
    add_notifications(team, 40)
    for url in urls.values():
        client.get(url)  # warm: the session's first read
    before = {name: queries_of(client, url) for name, url in urls.items()}
    add_history(cluster, instance, rounds=400)
    add_notifications(team, 400)
    after = {name: queries_of(client, url) for name, url in urls.items()}
    assert after == before


def cells(body: str, compute: str) -> tuple[str, str]:
    """(nodes cell, job counts cell) of a compute's row on the list."""
    row = body.split(f'data-compute="{compute}"', 1)[1].split("</tr>", 1)[0]
    cells = [part.split("</td>", 1)[0] for part in row.split('<td class="text-end"')[1:]]
    nodes = cells[0].split(">", 1)[1].split("<", 1)[0].strip()
    jobs = cells[1].split(">", 1)[1].strip()
    return nodes, jobs


def test_the_list_counts_live_nodes_and_unfinished_jobs_only(client, team, busy):
    cluster, instance = busy
    add_history(cluster, instance, rounds=30)
    client.force_login(team.reader)
    body = client.get(reverse("compute:list", args=[team.workspace.slug]) + "?tab=clusters")
    # 2 live nodes of 32 rows; 3 queued and 1 running of 34 jobs.
    assert cells(body.content.decode(), "trainers") == ("2", "3 · 1")
    body = client.get(reverse("compute:list", args=[team.workspace.slug]) + "?tab=instances")
    assert cells(body.content.decode(), "box") == ("0", "0 · 0")


@pytest.mark.usefixtures("busy")
def test_the_list_reads_each_count_by_index_not_by_joining_history(client, team):
    """The clusters tab used to join nodes × every job ever and sort the product (3.6 s a
    request on a busy cluster): the counts are subqueries, the page's query has no join
    to nodes or jobs, and the paginator counts computes only."""
    client.force_login(team.reader)
    with CaptureQueriesContext(connection) as captured:
        client.get(reverse("compute:list", args=[team.workspace.slug]) + "?tab=clusters")
    sql = [q["sql"] for q in captured.captured_queries if '"compute_compute"' in q["sql"]]
    assert sql, "the list read no compute"
    for statement in sql:
        assert "COUNT(DISTINCT" not in statement.upper()
        assert 'JOIN "compute_node"' not in statement
        assert 'JOIN "compute_job"' not in statement


def test_the_cluster_page_lists_its_live_nodes_first_then_the_last_removed(client, team, busy):
    """Forty nodes came and went after n-1 and n-2 came up: the table still starts with
    the two live ones, and shows a bounded tail of the removed ones."""
    cluster, instance = busy
    add_history(cluster, instance, rounds=40)  # ended nodes n-3 … n-42
    client.force_login(team.reader)
    body = client.get(reverse("compute:detail", args=[team.workspace.slug, cluster.pk]))
    rows = re.findall(r'<tr data-node="(n-\d+)"', body.content.decode())
    assert rows[:2] == ["n-2", "n-1"]
    assert rows[2:5] == ["n-42", "n-41", "n-40"]
    assert len(rows) == 24
