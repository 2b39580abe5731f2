"""A deployment's replica is a node: a real container of its environment runs Hangar's
scoring server over the deployment's script and model, off the network, and answers
through its socket on this machine (the gateway's way in, once it is built)."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import docker
import pytest
from django.urls import reverse

from compute.actions.environments import sync_curated
from compute.inference.actions.endpoints import (
    add_deployment,
    create_endpoint,
    delete_deployment,
)
from compute.inference.actions.models import register_model
from compute.lib import replicas
from compute.models import (
    Compute,
    ComputeState,
    Environment,
    EventVerb,
    Node,
    NodeState,
    VmSize,
)
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
    workers, catalog, settings, tmp_path, client
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
        # Its log page shows what the scoring server wrote, to a reader of the workspace.
        client.force_login(team.reader)
        log = reverse("inference:replica-log", args=[team.workspace.slug, endpoint.pk, node.pk])
        page = client.get(log).content.decode()
        assert re.search(r"score-server: ready in [\d.]+ s", page), page

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


def deploy(access, tmp_path, script: str, **options):
    """An endpoint `flowers` with one deployment `blue` of `script` on the scikit-learn
    environment's image (built once, then reused)."""
    sync_curated()
    sklearn = Environment.objects.filter(workspace=None, name="scikit-learn").latest("version")
    train(tmp_path)
    weights = (tmp_path / "model.json").read_bytes()
    model = register_model(access, name="centroids", file_name="model.json", data=weights)
    endpoint = create_endpoint(access, name="flowers")
    deployment = add_deployment(
        access, endpoint, name="blue", model=model, scoring_script=script,
        target="managed_cluster", vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
        environment=sklearn, **options,
    )  # fmt: skip
    assert deployment.compute is not None
    return endpoint, deployment


def serving_replicas(compute: Compute) -> list[Node]:
    """Its live replicas whose scoring server listens."""
    return [
        node
        for node in Node.objects.filter(compute=compute, ended_at=None, state=NodeState.IDLE)
        if node.container_ref
        and replicas.socket_path(docker.from_env().containers.get(node.container_ref).name).exists()
    ]


def test_a_replica_killed_under_load_loses_no_request_that_had_not_reached_it_and_is_replaced(
    workers, catalog, settings, tmp_path
):
    """Two replicas serve steady load through the gateway; one container is SIGKILLed.
    Every request started after the kill is answered (the gateway sends nothing more to
    the dead replica, and what it had not sent goes to the other); the sweep replaces
    the dead replica at once (it had served: no back-off), and the new one serves."""
    from tests.integration.test_gateway import post
    from tests.support.gateway import Processes

    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    team = make_team("killed")
    access = get_access(team.contributor, team.workspace.slug)
    endpoint, deployment = deploy(
        access, tmp_path, SCRIPT, min_replicas=2, max_replicas=2, request_timeout_ms=10_000
    )
    compute = deployment.compute
    from compute.lib import secrets

    key = secrets.decrypt(endpoint.primary_key)
    processes = Processes()
    try:
        wait_for(
            lambda: len(serving_replicas(compute)) == 2, timeout=600, what="two replicas serving"
        )
        url = processes.gateway() + "/score/killed/flowers"
        answers: list[tuple[float, int, dict]] = []
        stop = [float("inf")]

        def caller() -> None:
            while time.monotonic() < stop[0]:
                started = time.monotonic()
                status, answer, _ = post(url, {"data": [[1, 1]], "sleep": 0.01}, key)
                answers.append((started, status, answer))

        callers = [threading.Thread(target=caller) for _ in range(6)]
        for each in callers:
            each.start()
        time.sleep(1.5)
        doomed = serving_replicas(compute)[0]
        container = docker.from_env().containers.get(doomed.container_ref)
        container.kill()  # SIGKILL
        container.wait(timeout=10)
        # From here it is dead (a request sent while the engine was killing it was in it).
        killed_at = time.monotonic()
        time.sleep(3)
        stop[0] = time.monotonic()
        for each in callers:
            each.join(timeout=30)
        before = [a for a in answers if a[0] < killed_at]
        after = [a for a in answers if a[0] > killed_at]
        assert before and len(after) > 20, (len(before), len(after))
        lost = [(status, answer) for _, status, answer in after if status != 200]
        assert not lost, lost[:5]
        failed = [answer for _, status, answer in before if status != 200]
        assert len(failed) <= 6, failed  # at most one request per caller was in it

        wait_for(
            lambda: (
                len(serving := serving_replicas(compute)) == 2
                and doomed.pk not in {n.pk for n in serving}
            ),
            timeout=60,
            what="the dead replica replaced by a serving one",
        )
        unusable = compute.events.get(message__startswith=f"Node {doomed.name} is unusable")
        assert "A new node replaces it" in unusable.message, unusable.message
        assert post(url, {"data": [[9, 9]]}, key)[:2] == (200, {"predictions": ["large"]})
    finally:
        processes.stop()
        remove_all_nodes()


BROKEN = """
def init():
    print("loading the weights")
    raise ValueError("the weights are corrupt \\x1b[31m<b>bold</b>\\u202e")


def run(request_json):
    return {}
"""


def test_a_replica_whose_init_fails_is_retried_with_back_off_and_the_page_says_why(
    workers, catalog, settings, tmp_path, client
):
    """A scoring script whose init() raises: its replica exits at once. It is replaced
    after 5 s, then 10 s, … (not a new container every second), and the endpoint page and
    the events say why, with the script's last error line, cleaned of escapes."""
    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    team = make_team("broken")
    access = get_access(team.contributor, team.workspace.slug)
    endpoint, deployment = deploy(access, tmp_path, BROKEN, min_replicas=1, max_replicas=1)
    compute = deployment.compute
    try:
        first = wait_for(
            lambda: compute.events.filter(verb=EventVerb.NODE_UNUSABLE).first(),
            timeout=600,
            what="the first replica failing to start",
        )
        assert "ValueError: the weights are corrupt <b>bold</b>" in first.message, first.message
        assert "A new replica starts in 5 s" in first.message
        assert "\x1b" not in first.message and "\u202e" not in first.message
        failed_at = time.monotonic()
        held = wait_for(
            lambda: compute.events.filter(verb=EventVerb.SCALING_HELD).first(),
            timeout=10,
            what="the autoscaler holding the next replica",
        )
        assert "1 replica failed to start" in held.message
        assert "the weights are corrupt <b>bold</b>" in held.message

        client.force_login(team.reader)
        page = client.get(f"/w/broken/endpoints/{endpoint.pk}/").content.decode()
        assert "Not starting a replica before" in page
        assert "the weights are corrupt &lt;b&gt;bold&lt;/b&gt;" in page
        assert "<b>bold</b>" not in page

        # 5 s, then 10 s: in 20 s, three replicas at most (a new one every second before).
        time.sleep(max(0.0, 20 - (time.monotonic() - failed_at)))
        made = Node.objects.filter(compute=compute).count()
        assert 2 <= made <= 4, made
        second = compute.events.filter(verb=EventVerb.NODE_UNUSABLE).order_by("created_at", "id")[1]
        assert "A new replica starts in 10 s" in second.message, second.message
        assert compute.events.filter(message__contains="2 replicas in a row failed").exists()
    finally:
        remove_all_nodes()
