"""Instances and clusters through their whole life, on real containers, with a real
worker — the same cases for the docker and the local driver."""

from __future__ import annotations

import json

import docker
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from compute.actions import computes as actions
from compute.drivers.base import LABEL_COMPUTE, LABEL_NODE, LABEL_SITE, LABEL_WORKSPACE
from compute.models import ComputeState, EventVerb, VmSize
from tests.integration.helpers import (
    converged,
    driver_named,
    node_lives,
    peak_claimed_nodes,
    run_together,
    wait_for,
)
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ComputeState
DRIVERS = ["docker", "local"]


@pytest.fixture(params=DRIVERS)
def lifecycle(request, workers, catalog, node_image, settings):
    """A team, a worker on the chosen driver, and the same driver to look with."""
    settings.HANGAR_DRIVER = request.param
    worker = workers.get(request.param)
    team = make_team(f"life-{request.param}")
    yield {
        "driver": driver_named(request.param),
        "name": request.param,
        "access": get_access(team.admin, team.workspace.slug),
        "team": team,
        "worker": worker,
    }
    remove_all_nodes()


def ds3() -> VmSize:
    return VmSize.objects.get(name="Standard_DS3_v2")


def test_cluster_min_nodes_bring_up_exactly_that_many_and_delete_removes_all(lifecycle):
    driver, access = lifecycle["driver"], lifecycle["access"]
    cluster = actions.create_cluster(access, name="train", vm_size=ds3(), min_nodes=2, max_nodes=4)
    wait_for(lambda: converged(driver, cluster, 2, S.STEADY), what="2 nodes")
    for observation in driver.list_nodes(cluster.pk):
        labels, limits = labels_and_limits(lifecycle["name"], observation.name)
        assert labels[LABEL_SITE] == settings.HANGAR_SITE
        assert labels[LABEL_WORKSPACE] == access.workspace.slug
        assert labels[LABEL_COMPUTE] == str(cluster.pk)
        assert int(labels[LABEL_NODE]) == observation.node_id
        # Standard_DS3_v2: 4 vCPUs, 14 GiB, scaled by the configured factors.
        assert limits["cpus"] == pytest.approx(4 * settings.HANGAR_CPU_SCALE)
        assert limits["memory"] == int(14 * settings.HANGAR_MEMORY_SCALE * 1024**3)

    actions.update_cluster(
        access, cluster.pk, min_nodes=3, max_nodes=4, idle_seconds_before_scaledown=120
    )
    wait_for(lambda: converged(driver, cluster, 3, S.STEADY), what="3 nodes")

    actions.delete_compute(access, cluster.pk)
    wait_for(lambda: converged(driver, cluster, 0, S.DELETED), what="deleted")
    messages = list(cluster.events.values_list("message", flat=True))
    assert "Compute cluster deleted: every node is gone." in messages
    assert any("Adding n-3 (min nodes is 3)" in m for m in messages)


def labels_and_limits(driver_name: str, container: str) -> tuple[dict, dict]:
    if driver_name == "docker":
        attrs = docker.from_env().containers.get(container).attrs
        host = attrs["HostConfig"]
        assert host["Init"] is True
        assert host["NetworkMode"] == settings.HANGAR_NODE_NETWORK
        return attrs["Config"]["Labels"], {
            "cpus": host["NanoCpus"] / 1e9,
            "memory": host["Memory"],
        }
    node_dir = settings.HANGAR_LOCAL_NODES_DIR / container
    spec = json.loads((node_dir / "spec.json").read_text())
    labels = json.loads((node_dir / "labels.json").read_text())
    return labels, {"cpus": spec["cpus"], "memory": spec["memory_bytes"]}


def test_instance_stop_start_and_a_double_clicked_start(lifecycle):
    driver, access = lifecycle["driver"], lifecycle["access"]
    instance = actions.create_instance(access, name="notebook", vm_size=ds3())
    wait_for(lambda: converged(driver, instance, 1, S.RUNNING), what="running")
    actions.instance_verb(access, instance.pk, "stop")
    wait_for(lambda: converged(driver, instance, 0, S.STOPPED), what="stopped")

    # Two tabs press Start at the same moment: one wins, the other is told, one container.
    start = reverse("compute:action", args=[access.workspace.slug, instance.pk, "start"])

    def click() -> Client:
        browser_tab = Client()
        browser_tab.force_login(lifecycle["team"].contributor)
        browser_tab.post(start)
        return browser_tab

    # The test client records rendered contexts through a global signal, so each tab
    # reads its own message afterwards, one at a time.
    said = sorted(
        str(message)
        for tab in run_together(click, click)
        for message in tab.get(reverse("workspace:list")).context["messages"]
    )
    assert len(said) == 2 and said[1] == "notebook: start requested.", said
    assert said[0] in ("notebook is already starting.", "notebook is already running.")
    wait_for(lambda: converged(driver, instance, 1, S.RUNNING), what="running again")
    assert instance.events.filter(verb=EventVerb.START_REQUESTED).count() == 1

    actions.instance_verb(access, instance.pk, "restart")
    old = {o.node_id for o in driver.list_nodes(instance.pk)}
    wait_for(
        lambda: (
            converged(driver, instance, 1, S.RUNNING)
            and {o.node_id for o in driver.list_nodes(instance.pk)} != old
        ),
        what="restarted on a fresh node",
    )


def test_sweep_replaces_a_vanished_node_and_removes_a_stray(lifecycle, workers):
    driver, access = lifecycle["driver"], lifecycle["access"]
    cluster = actions.create_cluster(access, name="drift", vm_size=ds3(), min_nodes=2, max_nodes=2)
    wait_for(lambda: converged(driver, cluster, 2, S.STEADY), what="2 nodes")
    victim = driver.list_nodes(cluster.pk)[0]
    driver.remove_node(victim.name)  # behind Hangar's back
    wait_for(
        lambda: (
            converged(driver, cluster, 2, S.STEADY)
            and victim.node_id not in {o.node_id for o in driver.list_nodes(cluster.pk)}
        ),
        what="replacement",
    )
    assert cluster.nodes.get(pk=victim.node_id).state == "unusable"
    assert cluster.events.filter(verb=EventVerb.NODE_UNUSABLE).exists()

    # A container with our labels that no row expects is removed.
    from compute.drivers import NodeSpec

    stray = NodeSpec(
        site=settings.HANGAR_SITE,
        workspace=access.workspace.slug,
        compute_id=cluster.pk,
        node_id=999_999,
        node_name="n-999",
        image=settings.HANGAR_NODE_IMAGE,
        cpus=0.1,
        memory_bytes=32 * 1024**2,
        network="none",
        command=tuple(settings.HANGAR_NODE_COMMAND),
    )
    # Made while no worker runs (as after a crash), so the sweep finds it whole.
    workers.stop()
    driver.ensure_node(stray)
    assert 999_999 in {o.node_id for o in driver.list_nodes(cluster.pk)}
    workers.get(lifecycle["name"])
    # The event is written just after the container goes: wait for both.
    wait_for(
        lambda: (
            999_999 not in {o.node_id for o in driver.list_nodes(cluster.pk)}
            and cluster.events.filter(verb=EventVerb.ORPHAN_REMOVED).exists()
        ),
        what="stray removed, with its event",
    )
    assert converged(driver, cluster, 2, S.STEADY)


@pytest.mark.parametrize("during", ["create", "delete"])
def test_a_worker_killed_mid_flight_leaves_no_orphan_and_no_double(lifecycle, workers, during):
    driver, access = lifecycle["driver"], lifecycle["access"]
    worker = lifecycle["worker"]
    cluster = actions.create_cluster(access, name="crashy", vm_size=ds3(), min_nodes=3, max_nodes=3)
    if during == "delete":
        wait_for(lambda: converged(driver, cluster, 3, S.STEADY), what="3 nodes")
        actions.delete_compute(access, cluster.pk)
        wait_for(lambda: len(driver.list_nodes(cluster.pk)) < 3, timeout=10, what="delete begun")
    else:
        wait_for(lambda: driver.list_nodes(cluster.pk), timeout=10, what="first container")
    worker.kill()
    halfway = len(driver.list_nodes(cluster.pk))
    # The kill landed mid-flight: the work was neither done nor undone.
    assert 0 < halfway < 3
    cluster.refresh_from_db()
    assert cluster.state == (S.CREATING if during == "create" else S.DELETING)
    workers.get(lifecycle["name"])  # a new worker; its beat's sweep finds the stalled work
    if during == "create":
        wait_for(lambda: converged(driver, cluster, 3, S.STEADY), timeout=30, what="3 nodes")
        # No double: the new worker finished the nodes the killed one claimed (adopting a
        # container already made) instead of claiming more; counted over the whole run.
        assert set(node_lives(cluster)) == {1, 2, 3}
        assert peak_claimed_nodes(cluster) == 3
    else:
        wait_for(lambda: converged(driver, cluster, 0, S.DELETED), timeout=30, what="deleted")


def test_setup_script_runs_on_the_instance_node(lifecycle):
    driver, access = lifecycle["driver"], lifecycle["access"]
    script = "echo \"ready on $HANGAR_NODE\" > marker.txt\necho 'quotes $(are) kept'"
    instance = actions.create_instance(access, name="scripted", vm_size=ds3(), setup_script=script)
    wait_for(lambda: converged(driver, instance, 1, S.RUNNING), what="running")
    container = driver.list_nodes(instance.pk)[0].name

    def node_file(name: str) -> str:
        if lifecycle["name"] == "docker":
            result = docker.from_env().containers.get(container).exec_run(["cat", name])
            return result.output.decode() if result.exit_code == 0 else ""
        path = driver.work_dir(container) / name  # the job user's folder, not the record
        return path.read_text() if path.exists() else ""

    wait_for(lambda: node_file("setup.exit").strip() == "0", what="setup finished")
    assert node_file("marker.txt") == "ready on n-1\n"
    assert node_file("setup.log") == "quotes $(are) kept\n"
