"""The Docker engine goes away and comes back: the compute says so, then converges."""

from __future__ import annotations

import pytest

from compute.actions import computes as actions
from compute.models import ComputeState, EventVerb, VmSize
from tests.integration.docker_proxy import DockerRelay
from tests.integration.helpers import converged, driver_named, wait_for
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_unreachable_engine_is_a_clear_error_and_converges_when_back(
    workers, catalog, node_image, settings, tmp_path
):
    settings.HANGAR_DRIVER = "docker"
    relay = DockerRelay(tmp_path / "docker.sock")  # not started: the engine is unreachable
    workers.get("docker", HANGAR_DOCKER_URL=relay.url)
    driver = driver_named("docker")  # the test itself still sees the real engine
    team = make_team("outage")
    access = get_access(team.admin, team.workspace.slug)
    try:
        cluster = actions.create_cluster(
            access,
            name="patient",
            vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
            min_nodes=1,
            max_nodes=2,
        )

        def shows_error() -> bool:
            cluster.refresh_from_db()
            return "Docker engine unreachable" in cluster.last_error

        wait_for(shows_error, what="the error on the compute")
        assert cluster.state == ComputeState.CREATING  # nothing lost, still wanted
        assert "retries automatically" in cluster.last_error
        assert driver.list_nodes(cluster.pk) == []
        assert cluster.events.filter(verb=EventVerb.ERRORED).count() == 1  # said once, not spammed

        relay.start()  # the engine is back
        wait_for(lambda: converged(driver, cluster, 1, ComputeState.STEADY), what="steady")
        cluster.refresh_from_db()
        assert cluster.last_error == ""
        assert cluster.events.filter(verb=EventVerb.RECOVERED).exists()
    finally:
        workers.stop()
        relay.stop()
        remove_all_nodes()


def test_a_missing_image_fails_the_compute_clearly_and_never_pulls(
    workers, catalog, node_image, settings
):
    import docker

    settings.HANGAR_DRIVER = "docker"
    missing = "hangar/not-built-here:1"
    client = docker.from_env()
    before = {image.id for image in client.images.list()}
    workers.get("docker", HANGAR_NODE_IMAGE=missing)
    team = make_team("imageless")
    access = get_access(team.admin, team.workspace.slug)
    try:
        instance = actions.create_instance(
            access, name="no-image", vm_size=VmSize.objects.get(name="Standard_D2s_v3")
        )

        def failed() -> bool:
            instance.refresh_from_db()
            return instance.state == ComputeState.FAILED

        wait_for(failed, what="failed state")
        assert f"Image {missing} is not on this Docker engine" in instance.last_error
        assert "build_node_image" in instance.last_error
        assert instance.nodes.get().state == "unusable"
        assert driver_named("docker").list_nodes(instance.pk) == []
        assert {image.id for image in client.images.list()} == before  # nothing pulled
    finally:
        workers.stop()
        remove_all_nodes()
