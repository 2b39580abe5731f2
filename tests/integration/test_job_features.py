"""Job features as their users see them, through a real worker and real (local) nodes:
the refusal of multi-node jobs on isolated nodes, a job whose retries run out, nodes the
sweep preempts at random, the admin's Preempt button, and a queue held at max_nodes.

Each test reads what a member reads: the page the view renders, its messages and events."""

from __future__ import annotations

import html
import os
import re
import signal
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import reverse

from compute.actions import computes as actions
from compute.actions.jobs import cancel_job, submit_job
from compute.models import Compute, ComputeState, Job, JobStatus, Node, NodeState, VmSize
from tests.integration.helpers import driver_named, wait_for
from tests.support.factories import ComputeFactory
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import Team, make_team
from workspace.access import WorkspaceAccess, get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
J = JobStatus


@pytest.fixture
def team_with_nodes(catalog, workers, settings) -> Iterator[Team]:
    """A team whose clusters get real local nodes from a real worker (started by the test,
    which picks the worker's environment)."""
    settings.HANGAR_DRIVER = "local"
    yield make_team("features")
    remove_all_nodes()


def admin_of(team: Team) -> WorkspaceAccess:
    return get_access(team.admin, team.workspace.slug)


def cluster(team: Team, name: str, **bounds: object) -> Compute:
    """A cluster, once the worker has made it steady."""
    values: dict = {"min_nodes": 0, "max_nodes": 2, "idle_seconds_before_scaledown": 60, **bounds}
    made = actions.create_cluster(
        admin_of(team), name=name, vm_size=VmSize.objects.get(name="Standard_DS3_v2"), **values
    )
    wait_for(lambda: Compute.objects.get(pk=made.pk).state == ComputeState.STEADY, what="steady")
    return made


def logged_in(user: object) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_of(client: Client, job: Job) -> str:
    return client.get(reverse("compute:job", args=[job.workspace.slug, job.pk])).content.decode()


def compute_page(client: Client, compute: Compute) -> str:
    url = reverse("compute:detail", args=[compute.workspace.slug, compute.pk])
    return client.get(url).content.decode()


def shown_by(page: str, testid: str) -> str:
    """The text of the element of `page` with data-testid `testid`, unescaped."""
    found = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</', page, re.S)
    assert found, f"no {testid} on the page"
    return html.unescape(found.group(1)).strip()


def fresh(job: Job) -> Job:
    job.refresh_from_db()
    return job


def running_on(job: Job, attempt: int) -> Node | None:
    """The node of the job's run `attempt`, once the job runs there."""
    job = fresh(job)
    if job.status != J.RUNNING or job.retries != attempt:
        return None
    run = job.runs.filter(attempt=attempt).first()
    return run.node if run else None


def kill(node: Node) -> None:
    """The node's process dies (as its machine would), under a job: a local node's
    container_ref is its process id. Removing the node through the driver instead would
    end its job first, a job that then looks as if it exited on its own."""
    node.refresh_from_db()
    os.kill(int(node.container_ref), signal.SIGKILL)


def events(compute: Compute) -> list[str]:
    return list(compute.events.order_by("created_at").values_list("message", flat=True))


@pytest.mark.django_db  # rows only: nothing it does reaches a worker
def test_a_multi_node_job_is_refused_when_nodes_are_isolated(team, settings):
    """With HANGAR_NODE_NETWORK=none Docker nodes cannot reach each other: a multi-node
    job would hang at its rendezvous, so the submit form refuses it and says why (and a
    one-node job on the same cluster is still taken)."""
    settings.HANGAR_DRIVER = "docker"
    settings.HANGAR_NODE_NETWORK = "none"
    trainers = ComputeFactory(workspace=team.workspace, name="isolated", max_nodes=2)
    client = logged_in(team.contributor)
    url = reverse("compute:job-submit", args=[team.workspace.slug])
    form = {"compute": trainers.pk, "name": "ddp", "command": "torchrun train.py"}

    refused = client.post(url, {**form, "node_count": 2})

    assert refused.status_code == 200  # the form again, with the reason
    page = refused.content.decode()
    assert "Multi-node jobs need nodes that reach each other" in page
    assert "HANGAR_NODE_NETWORK=none" in page
    assert not Job.objects.exists()
    assert not trainers.events.filter(verb="job.submitted").exists()

    taken = client.post(url, {**form, "name": "single", "node_count": 1})
    assert taken.status_code == 302
    assert Job.objects.get().name == "single"


def test_a_job_whose_node_keeps_dying_fails_once_its_retries_are_used(
    team_with_nodes, workers, settings
):
    """A lost node sends its job back to the queue, but only max_retries times: after
    that the job fails, and its page says why and how often it was tried."""
    settings.HANGAR_JOB_MAX_RETRIES = 1
    workers.get("local")
    pool = cluster(team_with_nodes, "flaky", min_nodes=2, max_nodes=2)
    job = submit_job(
        admin_of(team_with_nodes), compute_id=pool.pk, name="doomed", command="sleep 60"
    )

    first = wait_for(lambda: running_on(job, 0), what="running, first attempt")
    kill(first)  # the node dies under the job
    second = wait_for(lambda: running_on(job, 1), what="running again, after a requeue")
    assert second.pk != first.pk
    kill(second)
    wait_for(lambda: fresh(job).status == J.FAILED, what="failed")

    assert job.retries == 1 and job.error.endswith("gave up after 1 retries.")
    page = page_of(logged_in(team_with_nodes.contributor), job)
    assert "Failed" in page
    shown = shown_by(page, "job-error")
    assert (
        shown.startswith(f"node {second.name}'s container") and "gave up after 1 retries" in shown
    )
    assert "1 of 1" in page  # the Retries row
    messages = events(pool)
    assert any(f"(#{job.pk}) requeued: node {first.name}" in m for m in messages)
    assert any(m.endswith(", retries exhausted.") for m in messages)


def test_simulated_preemption_takes_low_priority_nodes_and_requeues_their_jobs(
    team_with_nodes, workers
):
    """HANGAR_SIMULATED_PREEMPTIONS_PER_HOUR (demo): the sweep preempts low-priority nodes
    as a cloud would. At 3600 an hour with a sweep a second, every low-priority node goes
    at the next sweep; a dedicated cluster's node is never touched."""
    workers.get("local", HANGAR_SIMULATED_PREEMPTIONS_PER_HOUR="3600")
    steady = cluster(team_with_nodes, "dedicated", min_nodes=1, max_nodes=1)
    cheap = cluster(team_with_nodes, "cheap", tier="low_priority", max_nodes=1)
    kept = Node.objects.get(compute=steady)
    job = submit_job(
        admin_of(team_with_nodes), compute_id=cheap.pk, name="cheap-run", command="sleep 60"
    )

    wait_for(lambda: fresh(job).retries >= 1, what="requeued after a preemption")
    first = Node.objects.get(compute=cheap, index=1)
    assert first.state == NodeState.PREEMPTED
    assert not [o for o in driver_named("local").list_nodes(cheap.pk) if o.node_id == first.pk]
    client = logged_in(team_with_nodes.contributor)
    page = compute_page(client, cheap)
    assert f"Node {first.name} was preempted; its container is gone." in page
    assert f"Job cheap-run (#{job.pk}) requeued: node {first.name} was preempted" in page
    # The job's own page says it went back to the queue, and why.
    assert re.fullmatch(
        r"Requeued: node n-\d+ was preempted\.", shown_by(page_of(client, job), "job-error")
    )
    kept.refresh_from_db()
    assert kept.state in (NodeState.IDLE, NodeState.RUNNING)
    assert not Node.objects.filter(compute=steady).exclude(pk=kept.pk).exists()


def test_an_admin_preempts_a_node_from_the_cluster_page_and_its_job_finishes_elsewhere(
    team_with_nodes, workers
):
    """The Preempt button of a low-priority cluster's page: only admins have it, the node
    goes, its job runs again on the other node and completes; a dedicated cluster's node
    cannot be preempted, even by a hand-made request."""
    workers.get("local")
    team = team_with_nodes
    cheap = cluster(team, "cheap", tier="low_priority", min_nodes=2, max_nodes=2)
    dedicated = cluster(team, "dedicated", min_nodes=1, max_nodes=1)
    job = submit_job(
        admin_of(team), compute_id=cheap.pk, name="resilient", command="echo try; sleep 1; echo ok"
    )
    node = wait_for(lambda: running_on(job, 0), what="running")
    admin = logged_in(team.admin)
    preempt = reverse("compute:node-preempt", args=[team.workspace.slug, cheap.pk, node.pk])
    assert f'action="{preempt}"' in compute_page(admin, cheap)
    contributor = logged_in(team.contributor)
    assert "Preempt" not in compute_page(contributor, cheap)

    assert contributor.post(preempt).status_code == 403
    assert Node.objects.get(pk=node.pk).state == NodeState.RUNNING
    page = admin.post(preempt, follow=True).content.decode()

    assert f"Node {node.name} preempted; its jobs go back to the queue." in page
    wait_for(lambda: fresh(job).status == J.COMPLETED, what="completed after the requeue")
    assert job.retries == 1 and job.runs.get(attempt=1).node_id != node.pk
    assert Node.objects.get(pk=node.pk).state == NodeState.PREEMPTED
    assert "1 of 3" in page_of(admin, job)  # the Retries row
    events_shown = compute_page(admin, cheap)
    assert f"{team.admin} preempted node {node.name}" in events_shown
    assert f"Node {node.name} was preempted; its container is gone." in events_shown

    other = Node.objects.get(compute=dedicated)
    assert "Preempt" not in compute_page(admin, dedicated)
    url = reverse("compute:node-preempt", args=[team.workspace.slug, dedicated.pk, other.pk])
    refused = admin.post(url, follow=True).content.decode()
    assert "Only nodes of low-priority clusters can be preempted." in refused
    assert Node.objects.get(pk=other.pk).state == NodeState.IDLE


def test_a_queue_held_at_max_nodes_says_so_on_the_waiting_job(team_with_nodes, workers):
    """A job waiting because its cluster is at max_nodes shows why on its page, and the
    cluster's events say it once; the job runs as soon as a node is free."""
    workers.get("local")
    access = admin_of(team_with_nodes)
    small = cluster(team_with_nodes, "small", max_nodes=1)
    busy = submit_job(access, compute_id=small.pk, name="busy", command="sleep 60")
    wait_for(lambda: running_on(busy, 0), what="the first job running")
    waiting = submit_job(access, compute_id=small.pk, name="waiting", command="echo ran")
    held = "Not scaling: at max_nodes (1); 1 job waits."
    wait_for(lambda: Compute.objects.get(pk=small.pk).autoscale_note == held, what="held")

    client = logged_in(team_with_nodes.reader)
    assert shown_by(page_of(client, waiting), "log") == f"Waiting in the queue: {held}"
    assert compute_page(client, small).count(held) == 1
    assert fresh(waiting).status == J.QUEUED

    cancel_job(access, busy.pk)
    wait_for(lambda: fresh(waiting).status == J.COMPLETED, what="the waiting job ran")
    assert small.events.filter(message=held).count() == 1
