"""The home page (`/`): the signed-in user's instances and jobs, clusters with nodes up,
today's cost and idle waste per workspace, pending quota requests and invitations; live
(one htmx fragment) and fast (a fixed number of queries, only live rows read)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compute.models import Compute, ComputeState, Job, JobStatus, Node, QuotaRequest
from compute.models import RequestStatus as R
from tests.support.factories import (
    ComputeFactory,
    JobFactory,
    MembershipFactory,
    NodeFactory,
    UserFactory,
    WorkspaceFactory,
)
from workspace.models import Invitation, InvitationState, Role

pytestmark = pytest.mark.django_db
HOME = "/"


def section(body: str, testid: str) -> str:
    """One card of the page: from its marker to the next card."""
    start = body.index(f'data-testid="{testid}"')
    following = body.find('<div class="card mb-4"', start)
    return body[start : following if following != -1 else len(body)]


def home(client, user) -> str:
    client.force_login(user)
    response = client.get(HOME)
    assert response.status_code == 200
    return response.content.decode()


def instance(workspace, name: str, owner, **fields) -> Compute:
    """A running instance created by `owner`, idle shutdown due in 42 minutes."""
    made = ComputeFactory(
        workspace=workspace, instance=True, name=name, created_by=owner, idle_shutdown_minutes=60
    )
    fields.setdefault("idle_deadline", timezone.now() + timedelta(minutes=41, seconds=30))
    Compute.objects.filter(pk=made.pk).update(**fields)
    made.refresh_from_db()
    return made


def quota_request(workspace, user, status: str = R.PENDING) -> QuotaRequest:
    return QuotaRequest.objects.create(
        workspace=workspace,
        requested_limit=64,
        justification="bigger runs",
        requested_by=user,
        status=status,
    )


def invite(workspace, user, **fields) -> Invitation:
    fields.setdefault("expires_at", timezone.now() + timedelta(days=7))
    return Invitation.objects.create(
        workspace=workspace, identifier=user.username, invitee=user, role=Role.CONTRIBUTOR, **fields
    )


# Access


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(HOME)
    assert response.status_code == 302
    assert response["Location"] == reverse("login")


def test_signing_in_lands_on_the_home_page(client, team):
    response = client.post(
        reverse("login"), {"username": team.reader.username, "password": "correct-horse-battery"}
    )
    assert response["Location"] == reverse("home")


def test_the_workspace_list_stays_reachable(client, team):
    body = home(client, team.reader)
    assert f'href="{reverse("workspace:list")}"' in body
    assert f'href="{reverse("workspace:overview", args=[team.workspace.slug])}"' in body
    assert client.get(reverse("workspace:list")).status_code == 200


# Empty states: each says how to start


def test_someone_in_no_workspace_is_told_how_to_get_into_one(client, db):
    loner = UserFactory(username="loner")
    body = home(client, loner)
    assert "You are not in any workspace yet" in body
    assert "Ask a workspace admin to invite you by your username <strong>loner</strong>" in body
    assert "No invitation is waiting for you." in body


def test_a_contributor_with_nothing_running_is_shown_where_to_start(client, team):
    body = home(client, team.contributor)
    slug = team.workspace.slug
    mine = section(body, "my-instances")
    assert "None of your instances is running." in mine
    assert reverse("compute:create", args=[slug, "instance"]) in mine
    jobs = section(body, "my-jobs")
    assert "No job of yours is queued or running." in jobs
    assert reverse("compute:job-submit", args=[slug]) in jobs
    assert "No cluster has a node up" in section(body, "clusters-up")
    assert "No quota request is waiting." in section(body, "quota-requests")
    assert "No invitation is waiting for you." in section(body, "home-invitations")


def test_a_reader_is_told_which_role_starts_things(client, team):
    body = home(client, team.reader)
    assert "ask a workspace admin for the contributor role" in section(body, "my-instances")
    assert reverse("compute:create", args=[team.workspace.slug, "instance"]) not in body
    assert "Submitting jobs needs the contributor role" in section(body, "my-jobs")


# My instances


def test_my_running_instance_shows_its_idle_countdown_and_keep_running(client, team):
    box = instance(team.workspace, "box", team.contributor)
    mine = section(home(client, team.contributor), "my-instances")
    assert 'data-compute="box"' in mine
    assert "stops in <strong>42 min</strong>" in mine
    assert reverse("compute:keep-running", args=[team.workspace.slug, box.pk]) in mine
    # The confirmation every plain form of Hangar asks with (static/hangar/hangar.js).
    assert 'data-confirm="Keep box running? Its idle shutdown moves back by 60 min' in mine
    assert '<input type="hidden" name="next" value="/">' in mine


def test_keep_running_from_home_comes_back_home(client, team):
    box = instance(team.workspace, "box", team.contributor)
    client.force_login(team.contributor)
    response = client.post(
        reverse("compute:keep-running", args=[team.workspace.slug, box.pk]), {"next": "/"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    box.refresh_from_db()
    assert box.keep_running_until is not None
    assert "box keeps running; next stop at" in client.get(HOME).content.decode()


def test_states_of_my_instances_that_show_and_the_countdown_they_get(client, team):
    instance(team.workspace, "busy", team.contributor, idle_deadline=None)
    instance(team.workspace, "always", team.contributor, idle_deadline=None)
    Compute.objects.filter(name="always").update(idle_shutdown_minutes=None)
    instance(team.workspace, "rising", team.contributor, state=ComputeState.STARTING)
    instance(team.workspace, "falling", team.contributor, state=ComputeState.STOPPING)
    for state in (ComputeState.STOPPED, ComputeState.FAILED, ComputeState.DELETED):
        instance(team.workspace, f"was-{state}", team.contributor, state=state)
    mine = section(home(client, team.contributor), "my-instances")
    for name in ("busy", "always", "rising", "falling"):
        assert f'data-compute="{name}"' in mine
    assert "was-" not in mine
    assert "not while a job runs" in mine and ">off" in mine.replace("\n", "").replace(" ", "")
    assert mine.count("Keep running</button>") == 0  # no deadline, or not running


def test_my_instances_are_the_ones_i_own(client, team):
    """Mine: assigned to me, or created by me for nobody else (the burning page's owner)."""
    instance(team.workspace, "made-for-me", team.admin, assigned_to=team.contributor)
    instance(team.workspace, "admins-own", team.admin)
    instance(team.workspace, "my-own", team.contributor)
    mine = section(home(client, team.contributor), "my-instances")
    assert 'data-compute="made-for-me"' in mine and 'data-compute="my-own"' in mine
    assert "admins-own" not in mine
    admins = section(home(client, team.admin), "my-instances")
    assert 'data-compute="admins-own"' in admins
    assert "made-for-me" not in admins and "my-own" not in admins


def test_a_reader_sees_an_instance_assigned_to_them_without_keep_running(client, team):
    instance(team.workspace, "readers", team.admin, assigned_to=team.reader)
    mine = section(home(client, team.reader), "my-instances")
    assert 'data-compute="readers"' in mine and "Keep running</button>" not in mine


# Cost today and idle waste per workspace


def test_each_workspace_shows_what_its_running_instances_cost_today(client, team):
    now = timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    started = max(today, now - timedelta(hours=2))
    instance(team.workspace, "mine", team.contributor, state_changed_at=started)
    instance(team.workspace, "theirs", team.admin, state_changed_at=started)
    instance(team.workspace, "off", team.admin, state=ComputeState.STOPPED)
    body = home(client, team.contributor)
    row = section(body, "home-workspaces").split(f'data-workspace="{team.workspace.slug}"')[1]
    assert '<td class="text-end" data-testid="running-instances">2</td>' in row
    price = float(Compute.objects.get(name="mine").vm_size.price_dedicated)
    hours = (now - started).total_seconds() / 3600
    expected = 2 * hours * price
    shown = float(body.split('data-testid="cost-today">$')[1].split("<")[0])
    assert shown == pytest.approx(expected, abs=0.02)
    assert reverse("compute:burning", args=[team.workspace.slug]) in row


# My jobs


def test_my_queued_and_running_jobs_show_finished_and_others_do_not(client, team):
    cluster = ComputeFactory(workspace=team.workspace, name="pool")
    JobFactory(compute=cluster, submitted_by=team.contributor, name="waiting")
    JobFactory(compute=cluster, submitted_by=team.contributor, name="training", status="running")
    JobFactory(compute=cluster, submitted_by=team.contributor, name="starting", status="preparing")
    for status in ("completed", "failed", "canceled"):
        JobFactory(
            compute=cluster, submitted_by=team.contributor, name=f"old-{status}", status=status
        )
    JobFactory(compute=cluster, submitted_by=team.admin, name="admins-job", status="running")
    body = home(client, team.contributor)
    jobs = section(body, "my-jobs")
    for name in ("waiting", "training", "starting"):
        assert f'data-job="{name}"' in jobs
    assert "old-" not in jobs and "admins-job" not in jobs
    # Running ones first.
    assert jobs.index('data-job="waiting"') > jobs.index('data-job="training"')
    assert 'data-testid="count-my-running-jobs">2<' in body
    assert 'data-testid="count-my-queued-jobs">1<' in body
    # The workspace's column counts everyone's.
    row = section(body, "home-workspaces")
    assert 'data-testid="workspace-jobs">1 · 3<' in row


def test_a_long_queue_of_mine_is_cut_short_and_says_so(client, team):
    cluster = ComputeFactory(workspace=team.workspace, name="pool")
    JobFactory.create_batch(25, compute=cluster, submitted_by=team.contributor)
    body = home(client, team.contributor)
    jobs = section(body, "my-jobs")
    assert jobs.count("data-job=") == 20
    assert "Showing 20 of 25" in jobs
    assert 'data-testid="count-my-queued-jobs">25<' in body


# Clusters with nodes up


def test_clusters_with_live_nodes_show_with_their_counts(client, team):
    pool = ComputeFactory(workspace=team.workspace, name="pool", max_nodes=4)
    NodeFactory(compute=pool)
    NodeFactory(compute=pool, running=True)
    NodeFactory(compute=pool, preparing=True)
    NodeFactory(compute=pool, state="leaving")
    NodeFactory(compute=pool, state="preempted")
    gone = ComputeFactory(workspace=team.workspace, name="scaled-to-zero")
    NodeFactory(compute=gone, state="unusable")
    ComputeFactory(workspace=team.workspace, name="never-used")
    body = home(client, team.reader)  # clusters are everyone's
    clusters = section(body, "clusters-up")
    assert 'data-compute="pool"' in clusters
    assert "3 · 1 <span" in clusters  # preparing, idle, running; one busy
    assert "scaled-to-zero" not in clusters and "never-used" not in clusters
    assert 'data-testid="count-nodes-up">3<' in body


def test_many_clusters_up_are_all_counted_and_the_busiest_listed(client, team):
    for n in range(25):
        pool = ComputeFactory(workspace=team.workspace, name=f"pool{n:02}", max_nodes=4)
        NodeFactory(compute=pool, running=n >= 22)  # three clusters at work
        NodeFactory(compute=pool, state="unusable")  # history: not up
    body = home(client, team.reader)
    clusters = section(body, "clusters-up")
    assert clusters.count("data-compute=") == 10
    for busiest in ("pool22", "pool23", "pool24"):
        assert f'data-compute="{busiest}"' in clusters
    assert "The 10 busiest of 25" in clusters
    assert 'data-testid="count-nodes-up">25<' in body
    assert "cluster nodes up in 25 clusters" in body


# Pending quota requests and invitations


def test_pending_quota_requests_of_my_workspaces_show(client, team):
    quota_request(team.workspace, team.contributor)
    quota_request(team.workspace, team.admin, status=R.APPROVED)
    quota_request(team.workspace, team.admin, status=R.REJECTED)
    requests = section(home(client, team.contributor), "quota-requests")
    assert requests.count("data-quota-request=") == 1
    assert "64 low-priority cores" in requests and "you · " in requests
    assert reverse("compute:quota", args=[team.workspace.slug]) in requests


def test_my_open_invitations_show_and_answered_or_expired_ones_do_not(client, team):
    elsewhere = WorkspaceFactory(name="Speech", slug="speech")
    invite(elsewhere, team.reader)
    invite(WorkspaceFactory(slug="answered"), team.reader, state=InvitationState.DECLINED)
    invite(
        WorkspaceFactory(slug="too-late"),
        team.reader,
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    invite(WorkspaceFactory(slug="for-someone-else"), team.admin)
    invitations = section(home(client, team.reader), "home-invitations")
    assert 'data-invitation="speech"' in invitations
    assert invitations.count("data-invitation=") == 1
    assert reverse("invitations") in invitations


# Live


def test_htmx_polls_one_fragment_of_every_section(client, team):
    body = home(client, team.contributor)
    assert 'id="home-live" hx-get="/" hx-trigger="every 3s" hx-swap="outerHTML"' in body
    fragment = client.get(HOME, headers={"HX-Request": "true"})
    text = fragment.content.decode()
    assert text.lstrip().startswith('<div id="home-live"')
    assert "<html" not in text and 'id="messages"' not in text
    for testid in ("my-instances", "my-jobs", "clusters-up", "home-workspaces", "quota-requests"):
        assert f'data-testid="{testid}"' in text
    assert "HX-Request" in fragment["Vary"]
    assert fragment.status_code == 200  # never 286: something may start any moment


# Fast


def fill(user, workspaces: int, rows: int) -> None:
    """`workspaces` workspaces of `user`, each with `rows` of everything the page shows."""
    for n in range(workspaces):
        workspace = WorkspaceFactory(slug=f"{user.username}-w{n}", name=f"{user.username} W {n}")
        MembershipFactory(workspace=workspace, user=user, role=Role.CONTRIBUTOR)
        other = UserFactory()
        MembershipFactory(workspace=workspace, user=other, role=Role.ADMIN)
        cluster = ComputeFactory(workspace=workspace, name=f"pool{n}", max_nodes=rows + 1)
        for r in range(rows):
            instance(workspace, f"mine{n}x{r}", user)
            instance(workspace, f"theirs{n}x{r}", other, assigned_to=other)
            NodeFactory(compute=cluster, running=bool(r % 2))
            JobFactory(compute=cluster, submitted_by=user, status=("queued", "running")[r % 2])
            JobFactory(compute=cluster, submitted_by=other)
            JobFactory(compute=cluster, submitted_by=user, status="completed")
            quota_request(workspace, other)
        invite(WorkspaceFactory(slug=f"{user.username}-invites-{n}"), user)


def count_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(HOME).status_code == 200
        assert client.get(HOME, headers={"HX-Request": "true"}).status_code == 200
    return len(queries)


def test_the_number_of_queries_does_not_grow_with_workspaces_or_rows(
    client, django_assert_max_num_queries
):
    small, big = UserFactory(username="small"), UserFactory(username="big")
    fill(small, workspaces=1, rows=1)
    fill(big, workspaces=5, rows=6)
    client.force_login(small)
    few = count_queries(client)
    client.force_login(big)
    many = count_queries(client)
    assert few == many
    # The session, the user, the bell, the switcher, the user's and groups' permissions
    # (+ New workspace), and the page's 8 reads: memberships, instances, job counts, my
    # jobs, live nodes counted per workspace, the busiest clusters, quota requests,
    # invitations.
    with django_assert_max_num_queries(14):
        body = client.get(HOME).content.decode()
    # 30 instances up: the 10 stopping soonest, and how many there are.
    assert section(body, "my-instances").count("data-compute=") == 10
    assert 'data-testid="count-my-instances">30<' in body
    assert "The 10 stopping soonest of your 30" in body
    assert 'data-testid="count-my-running-jobs">15<' in body


def test_years_of_finished_jobs_are_never_read(client, team):
    """A team's history (thousands of finished jobs, nodes long gone): the page reads only
    live rows, through the partial indexes on them, never a scan of the whole table."""
    cluster = ComputeFactory(workspace=team.workspace, name="pool", max_nodes=4)
    long_ago = timezone.now() - timedelta(days=700)
    Job.objects.bulk_create(
        Job(
            workspace=team.workspace,
            compute=cluster,
            name=f"old{n}",
            command="true",
            submitted_by=team.contributor,
            status=(JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)[n % 3],
            queued_at=long_ago + timedelta(minutes=n),
            finished_at=long_ago + timedelta(minutes=n, seconds=30),
        )
        for n in range(6000)
    )
    Node.objects.bulk_create(
        Node(compute=cluster, index=n, state="unusable") for n in range(1, 3001)
    )
    NodeFactory(compute=cluster, index=5000, running=True)
    JobFactory(compute=cluster, submitted_by=team.contributor, name="now", status="running")
    JobFactory(compute=cluster, submitted_by=team.contributor, name="next")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE compute_job")
        cursor.execute("ANALYZE compute_node")
    client.force_login(team.contributor)
    with CaptureQueriesContext(connection) as queries:
        body = client.get(HOME).content.decode()
    assert 'data-job="now"' in body and 'data-job="next"' in body and "old1" not in body
    plans = []
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            sql = query["sql"]
            if "compute_job" in sql or "compute_node" in sql:
                cursor.execute(f"EXPLAIN {sql}")
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
    # Job counts, my jobs, and the live nodes per cluster (totals and the busiest).
    assert len(plans) == 3
    for plan in plans:
        assert "Seq Scan on compute_job" not in plan, plan
        assert "Seq Scan on compute_node" not in plan, plan
    assert any("job_active_idx" in plan for plan in plans), plans
    assert any("node_live_idx" in plan for plan in plans), plans
