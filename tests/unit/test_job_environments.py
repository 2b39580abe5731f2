"""A job may run in another environment than its cluster's: the cluster starts nodes of
that image for it, idle nodes of another image make room, a job whose environment builds
waits (and does not hold up the jobs behind it), and one whose build failed fails."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from compute.actions import computes as actions
from compute.actions.environments import set_default_environment
from compute.actions.jobs import submit_job
from compute.controllers.reconcile import reconcile
from compute.drivers.noop import NoopDriver
from compute.models import (
    Compute,
    Environment,
    EnvironmentImage,
    ImageState,
    Job,
    JobStatus,
    Node,
    NodeState,
    VmSize,
)
from workspace.access import WorkspaceAccess, get_access

pytestmark = pytest.mark.django_db
J = JobStatus
TAG = "hangar/env-0123456789abcdef"


@pytest.fixture
def driver(settings) -> NoopDriver:
    settings.HANGAR_DRIVER = "noop"
    return NoopDriver(settings.HANGAR_SITE)


@pytest.fixture
def access(team) -> WorkspaceAccess:
    return get_access(team.admin, team.workspace.slug)


def environment(team, state: str = ImageState.READY, name: str = "tabular", **image) -> Environment:
    made = EnvironmentImage.objects.create(
        spec_hash=f"{name:0<16}"[:16], tag=f"hangar/env-{name}", state=state, **image
    )
    return Environment.objects.create(workspace=team.workspace, name=name, image=made)


def cluster(access, driver, min_nodes: int = 0, max_nodes: int = 2) -> Compute:
    made = actions.create_cluster(
        access,
        name="pool",
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        min_nodes=min_nodes,
        max_nodes=max_nodes,
    )
    reconcile(made.pk, driver)
    return made


def submit(access, compute: Compute, name: str, runs_in: Environment | None = None) -> Job:
    return submit_job(access, compute_id=compute.pk, name=name, command="true", runs_in=runs_in)


def node_of(job: Job) -> Node:
    return Node.objects.get(runs__job=job)


def fresh(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def test_a_cluster_starts_a_node_of_the_jobs_environment_beside_its_own(team, access, driver):
    tabular = environment(team)
    pool = cluster(access, driver)
    own, other = submit(access, pool, "own"), submit(access, pool, "other", runs_in=tabular)
    reconcile(pool.pk, driver)
    assert (fresh(own).status, fresh(other).status) == (J.RUNNING, J.RUNNING)
    assert node_of(own).image == settings.HANGAR_NODE_IMAGE
    assert node_of(other).image == tabular.image.tag
    assert (fresh(own).image, fresh(other).image) == (settings.HANGAR_NODE_IMAGE, tabular.image.tag)


def test_idle_nodes_of_another_image_make_room_for_the_head_of_the_queue(team, access, driver):
    tabular = environment(team)
    pool = cluster(access, driver, min_nodes=1, max_nodes=1)
    assert Node.objects.get(compute=pool).image == settings.HANGAR_NODE_IMAGE
    job = submit(access, pool, "tabular-job", runs_in=tabular)
    reconcile(pool.pk, driver)  # one pass: the idle node goes, one of the job's image starts
    assert fresh(job).status == J.RUNNING
    assert node_of(job).image == tabular.image.tag
    assert Node.objects.filter(compute=pool, ended_at=None).count() == 1
    removed = pool.events.filter(message__contains="making room: job tabular-job").count()
    assert removed == 1


def test_a_busy_node_of_another_image_is_never_taken(team, access, driver):
    tabular = environment(team)
    pool = cluster(access, driver, min_nodes=1, max_nodes=1)
    busy = submit(access, pool, "busy")
    reconcile(pool.pk, driver)
    driver.finished.clear()  # the no-op driver ends a job at once: this one goes on
    waiting = submit(access, pool, "waiting", runs_in=tabular)
    reconcile(pool.pk, driver)
    assert (fresh(busy).status, fresh(waiting).status) == (J.RUNNING, J.QUEUED)
    assert node_of(busy).image == settings.HANGAR_NODE_IMAGE


def test_a_job_waits_for_its_environment_without_holding_up_the_queue(team, access, driver, client):
    building = environment(team, state=ImageState.BUILDING)
    pool = cluster(access, driver, max_nodes=1)
    first = submit(access, pool, "first", runs_in=building)
    second = submit(access, pool, "second")
    reconcile(pool.pk, driver)
    assert (fresh(first).status, fresh(second).status) == (J.QUEUED, J.RUNNING)
    assert not Node.objects.filter(compute=pool, image=building.image.tag).exists()
    client.force_login(team.admin)
    page = client.get(reverse("compute:job", args=[team.workspace.slug, first.pk])).content
    assert b"Waiting for environment tabular:1 to build (building)." in page


def test_a_job_whose_environment_failed_to_build_fails_with_the_reason(team, access, driver):
    building = environment(team, state=ImageState.BUILDING)
    pool = cluster(access, driver)
    job = submit(access, pool, "doomed", runs_in=building)
    EnvironmentImage.objects.filter(pk=building.image_id).update(
        state=ImageState.FAILED, error="E: Unable to locate package python3-nosuch\nmore"
    )
    reconcile(pool.pk, driver)
    job = fresh(job)
    assert job.status == J.FAILED
    assert job.error == (
        "Environment tabular:1 did not build: E: Unable to locate package python3-nosuch"
    )
    assert not Node.objects.filter(compute=pool, ended_at=None).exists()


def test_a_not_built_environment_is_queued_for_its_build_when_a_job_asks(
    team, access, driver, django_capture_on_commit_callbacks
):
    waiting = environment(team, state=ImageState.NOT_BUILT)
    pool = cluster(access, driver)
    with django_capture_on_commit_callbacks(execute=False):
        job = submit(access, pool, "asks", runs_in=waiting)
    assert EnvironmentImage.objects.get(pk=waiting.image_id).state == ImageState.QUEUED
    assert fresh(job).chosen_environment == waiting


@pytest.mark.parametrize("where", ["instance", "failed"])
def test_a_job_refused_its_environment_says_why_and_nothing_is_queued(team, access, driver, where):
    if where == "instance":
        chosen = environment(team)
        target = actions.create_instance(
            access, name="box", vm_size=VmSize.objects.get(name="Standard_DS3_v2")
        )
        expected = "Instance box runs the site's node image, and so do its jobs."
    else:
        chosen = environment(team, state=ImageState.FAILED, error="E: broken\n")
        target = cluster(access, driver)
        expected = "Environment tabular:1 did not build (E: broken)."
    Compute.objects.filter(pk=target.pk).update(state="running")
    with pytest.raises(ValidationError) as refused:
        submit(access, target, "refused", runs_in=chosen)
    assert expected in str(refused.value.message_dict["runs_in"])
    assert not Job.objects.filter(compute=target).exists()


def test_the_workspace_default_is_what_new_computes_start_with(team, access, client):
    tabular = environment(team)
    client.force_login(team.admin)
    default_url = reverse("compute:environment-default", args=[team.workspace.slug, tabular.pk])
    client.post(default_url)
    form = client.get(reverse("compute:create", args=[team.workspace.slug, "cluster"]))
    assert form.context["form"]["environment"].value() == str(tabular.pk)
    listing = client.get(reverse("compute:environments", args=[team.workspace.slug]))
    assert b'data-testid="default-badge"' in listing.content
    client.post(default_url, {"clear": "1"})
    form = client.get(reverse("compute:create", args=[team.workspace.slug, "cluster"]))
    assert not form.context["form"]["environment"].value()


def test_only_admins_choose_the_default(team, client):
    tabular = environment(team)
    client.force_login(team.contributor)
    default_url = reverse("compute:environment-default", args=[team.workspace.slug, tabular.pk])
    assert client.post(default_url).status_code in (403, 404)
    from compute.models import DefaultEnvironment

    assert not DefaultEnvironment.objects.exists()
    with pytest.raises(Exception, match="admin"):
        set_default_environment(get_access(team.contributor, team.workspace.slug), tabular)


def test_the_api_names_environments_and_takes_the_default_when_none_is_named(team, driver):
    from django.test import Client

    from workspace.tokens import create_token

    tabular = environment(team)
    set_default_environment(get_access(team.admin, team.workspace.slug), tabular)
    secret = create_token(team.contributor, name="ci", expires_in_days=1).secret
    api, base = Client(headers={"Authorization": f"Bearer {secret}"}), "/api/v1/workspaces/vision"

    def create(name: str, **extra) -> object:
        payload = {"name": name, "vm_size": "Standard_DS3_v2", "max_nodes": 2, **extra}
        return api.post(f"{base}/computes/clusters", payload, content_type="application/json")

    assert create("dflt").json()["environment"] == "tabular:1"
    assert create("bare", environment=None).json()["environment"] is None
    refused = create("typo", environment="nosuch:3")
    assert refused.status_code == 422 and "environment" in refused.json()["errors"]
    assert not Compute.objects.filter(name="typo").exists()

    bare = Compute.objects.get(name="bare")
    Compute.objects.filter(pk=bare.pk).update(state="steady")
    sent = api.post(
        f"{base}/jobs", {"compute": "bare", "command": "true", "runs_in": "tabular"}
    ).json()
    assert (sent["environment"], sent["status"]) == ("tabular:1", "queued")
    refused = api.post(f"{base}/jobs", {"compute": "bare", "command": "true", "runs_in": "x"})
    assert refused.status_code == 422 and "runs_in" in refused.json()["errors"]
    assert Job.objects.count() == 1


def test_a_job_template_fills_in_the_submit_form_with_its_environment(team, client):
    client.force_login(team.contributor)
    submit_url = reverse("compute:job-submit", args=[team.workspace.slug])
    page = client.get(submit_url)
    assert b"Train a classifier (scikit-learn)" in page.content  # offered on the empty form
    filled = client.get(submit_url, {"template": "train-classifier"})
    form = filled.context["form"]
    sklearn = Environment.objects.filter(workspace=None, name="scikit-learn").latest("version")
    assert form["runs_in"].value() == str(sklearn.pk)
    assert form["command"].value() == "python3 train_classifier.py"
    assert "RandomForestClassifier" in form["script"].value()
    assert b'data-testid="template-note"' in filled.content
    assert client.get(submit_url, {"template": "nosuch"}).status_code == 404


def test_a_cluster_whose_own_environment_failed_keeps_running_jobs_in_others(team, access, driver):
    tabular = environment(team)
    own = environment(team, state=ImageState.BUILDING, name="slowtorch")
    pool = actions.create_cluster(
        access, name="pool", vm_size=VmSize.objects.get(name="Standard_DS3_v2"), max_nodes=3,
        environment=own,
    )  # fmt: skip
    running = submit(access, pool, "running", runs_in=tabular)
    reconcile(pool.pk, driver)
    driver.finished.clear()  # it goes on
    queued_other = submit(access, pool, "queued-other", runs_in=tabular)
    queued_own = submit(access, pool, "queued-own")
    EnvironmentImage.objects.filter(pk=own.image_id).update(
        state=ImageState.FAILED, error="E: no torch"
    )
    reconcile(pool.pk, driver)
    pool.refresh_from_db()
    assert pool.state != "failed" and "slowtorch:1 did not build" in pool.last_error
    assert fresh(queued_own).status == J.FAILED
    assert fresh(queued_own).error == "Environment slowtorch:1 did not build: E: no torch"
    assert (fresh(running).status, fresh(queued_other).status) == (J.RUNNING, J.RUNNING)


def test_a_node_left_preparing_by_a_crash_keeps_the_image_it_was_started_from(team, access, driver):
    """A pass wrote the node's image, then died before its container was up: the next
    pass adopts the container as that image, whatever the queue wants now."""
    tabular = environment(team)
    pool = cluster(access, driver, max_nodes=2)
    left = Node.objects.create(
        compute=pool, index=50, state=NodeState.PREPARING, image=tabular.image.tag
    )
    job = submit(access, pool, "own")
    reconcile(pool.pk, driver)
    left.refresh_from_db()
    assert (left.state, left.image) == (NodeState.IDLE, tabular.image.tag)
    assert fresh(job).status == J.RUNNING
    assert node_of(job).image == settings.HANGAR_NODE_IMAGE


@pytest.mark.parametrize("max_nodes, removed", [(3, 1), (4, 0)])
def test_room_for_the_head_is_added_up_to_max_and_only_then_taken_from_idle_nodes(
    team, access, driver, max_nodes, removed
):
    tabular = environment(team)
    pool = cluster(access, driver, min_nodes=3, max_nodes=max_nodes)
    job = submit(access, pool, "tabular-job", runs_in=tabular)
    reconcile(pool.pk, driver)  # one pass
    assert fresh(job).status == J.RUNNING and node_of(job).image == tabular.image.tag
    live = Node.objects.filter(compute=pool, ended_at=None)
    assert live.filter(image=settings.HANGAR_NODE_IMAGE).count() == 3 - removed
    assert live.count() == min(4, max_nodes)
