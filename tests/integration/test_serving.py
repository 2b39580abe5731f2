"""A deployment's replica is a node: a real container of its environment runs Hangar's
scoring server over the deployment's script and model, off the network, and answers
through its socket on this machine (the gateway's way in, once it is built)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import docker
import pytest

from compute.actions.environments import sync_curated
from compute.inference.actions.endpoints import (
    add_deployment,
    create_endpoint,
    delete_deployment,
)
from compute.inference.actions.models import register_model
from compute.lib import replicas
from compute.models import Compute, ComputeState, Environment, Node, NodeState, VmSize
from tests.integration.helpers import wait_for
from tests.integration.test_score_server import SCRIPT, call, train
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [
    pytest.mark.integration,
    pytest.mark.image_builds,  # its replica needs Python: the scikit-learn image
    pytest.mark.django_db(transaction=True),
]


def test_a_deployments_replica_answers_predictions_through_its_socket(
    workers, catalog, settings, tmp_path
):
    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    team = make_team("serving")
    access = get_access(team.contributor, team.workspace.slug)
    sync_curated()
    sklearn = Environment.objects.filter(workspace=None, name="scikit-learn").latest("version")
    train(tmp_path)
    model = register_model(
        access,
        name="centroids",
        file_name="model.json",
        data=(tmp_path / "model.json").read_bytes(),
    )
    endpoint = create_endpoint(access, name="flowers")
    deployment = add_deployment(
        access, endpoint, name="blue", model=model, scoring_script=SCRIPT,
        target="managed_cluster", vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
        environment=sklearn, min_replicas=1, max_replicas=2,
    )  # fmt: skip
    assert deployment.compute is not None and deployment.compute.is_serving
    try:
        wait_for(
            lambda: Node.objects.filter(compute=deployment.compute, state=NodeState.IDLE).exists(),
            timeout=600,
            what="the replica up (its environment built first)",
        )
        node = Node.objects.get(compute=deployment.compute, state=NodeState.IDLE)
        container = docker.from_env().containers.get(node.container_ref)
        socket = replicas.socket_path(container.name)
        wait_for(socket.exists, timeout=60, what="the scoring server ready (init() done)")
        body = json.dumps({"data": [[1, 1], [9, 9]]}).encode()
        assert call(str(socket), "POST", "/score", body) == (
            200,
            {"predictions": ["small", "large"]},
        )
        # A node like any other: off the network, read-only, not root; its model read-only.
        config = container.attrs["HostConfig"]
        assert (config["NetworkMode"], config["ReadonlyRootfs"]) == ("none", True)
        assert container.attrs["Config"]["User"] == "1000:1000"
        mounts = {m["Destination"]: m["RW"] for m in container.attrs["Mounts"]}
        assert mounts["/hangar/model"] is False and mounts["/hangar/serve"] is False
        assert Path(socket).parent.parent.stat().st_mode & 0o777 == 0o700

        # Removing the deployment stops its replicas: no container, no socket folder left.
        delete_deployment(access, deployment)
        wait_for(
            lambda: Compute.objects.get(pk=deployment.compute.pk).state == ComputeState.DELETED,
            timeout=60,
            what="the replicas removed",
        )
        with pytest.raises(docker.errors.NotFound):
            docker.from_env().containers.get(container.name)
        assert not replicas.socket_folder(container.name).exists()
    finally:
        remove_all_nodes()


def test_an_endpoint_at_zero_answers_its_first_request_scales_with_load_and_back_to_zero(
    workers, catalog, settings, tmp_path
):
    """The whole loop on real parts: the gateway process, a worker with its sweep, Docker.
    The first request finds no replica and waits while one starts; eight slow requests
    at once bring a second replica; quiet, the replicas go back to zero."""
    from tests.integration.test_gateway import post
    from tests.support.gateway import Processes

    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    team = make_team("zero")
    access = get_access(team.contributor, team.workspace.slug)
    sync_curated()
    sklearn = Environment.objects.filter(workspace=None, name="scikit-learn").latest("version")
    train(tmp_path)
    weights = (tmp_path / "model.json").read_bytes()
    model = register_model(access, name="centroids", file_name="model.json", data=weights)
    endpoint = create_endpoint(access, name="flowers")
    deployment = add_deployment(
        access, endpoint, name="blue", model=model, scoring_script=SCRIPT,
        target="managed_cluster", vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
        environment=sklearn, min_replicas=0, max_replicas=2, target_in_flight=2,
        request_timeout_ms=120_000,
    )  # fmt: skip
    assert deployment.compute is not None
    Compute.objects.filter(pk=deployment.compute.pk).update(idle_seconds_before_scaledown=2)
    from compute.inference.models import Deployment
    from compute.lib import secrets, serving_load

    serving_load.forget(deployment.pk)
    Deployment.objects.filter(pk=deployment.pk).update(scale_to_zero_seconds=10)
    key = secrets.decrypt(endpoint.primary_key)
    processes = Processes()
    try:
        url = processes.gateway() + "/score/zero/flowers"
        assert not Node.objects.filter(compute=deployment.compute).exists()
        status, answer, _ = post(url, {"data": [[9, 9]]}, key)
        assert (status, answer) == (200, {"predictions": ["large"]})

        slow: list[tuple[int, dict, dict]] = []
        callers = [
            threading.Thread(
                target=lambda: slow.append(post(url, {"data": [[1, 1]], "sleep": 3}, key))
            )
            for _ in range(8)
        ]
        for caller in callers:
            caller.start()
        wait_for(
            lambda: (
                Node.objects.filter(
                    compute=deployment.compute, state__in=[NodeState.IDLE, NodeState.RUNNING]
                ).count()
                == 2
            ),
            timeout=30,
            what="a second replica for the load",
        )
        for caller in callers:
            caller.join(timeout=120)
        failed = [answer for status, answer, _ in slow if status != 200]
        assert not failed, failed
        scaled = deployment.compute.events.filter(message__startswith="Replicas 1 → 2")
        assert scaled.exists()
        wait_for(
            lambda: (
                not Node.objects.filter(
                    compute=deployment.compute, ended_at=None, state__in=[NodeState.IDLE]
                ).exists()
                and Compute.objects.get(pk=deployment.compute.pk).replica_target == 0
            ),
            timeout=60,
            what="back to zero replicas when quiet",
        )
    finally:
        processes.stop()
        remove_all_nodes()
