"""The scoring gateway as a real process, in front of real scoring servers: keys, the
traffic split, a named deployment, timeouts, a failed replica, and a deployment with no
replica ready (the request waits, the deployment is asked to start one, and a full queue
answers 503)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest

from compute.inference.actions.endpoints import create_endpoint, regenerate_key
from compute.inference.models import Deployment, Endpoint
from compute.lib import secrets, serving_load
from compute.models import Compute, NodeState, VmSize
from tests.support.factories import ComputeFactory, NodeFactory
from tests.support.gateway import Processes
from tests.support.inference import make_model
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SCRIPT = """
import json, os, time


def init():
    pass


def run(request_json):
    request = json.loads(request_json)
    time.sleep(request.get("sleep", 0))
    return {"deployment": os.environ["WHO"], "echo": request.get("x")}
"""


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop()


@pytest.fixture
def endpoint(catalog, tmp_path):
    """An endpoint with deployments blue (80 %) and green (20 %), each with one replica
    row; the test starts the replica processes it needs."""
    team = make_team("gw")
    access = get_access(team.contributor, team.workspace.slug)
    made = create_endpoint(access, name="flowers")
    model = make_model(team.workspace)
    script = tmp_path / "score.py"
    script.write_text(SCRIPT)
    nodes = {}
    for name, share in (("blue", 80), ("green", 20)):
        compute = ComputeFactory(workspace=team.workspace, serving={"deployment": 0, "model": 0})
        Deployment.objects.create(
            endpoint=made, name=name, model=model, scoring_script=SCRIPT, traffic=share,
            target="managed_cluster", vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
            compute=compute, request_timeout_ms=2000,
        )  # fmt: skip
        nodes[name] = NodeFactory(compute=compute, state=NodeState.IDLE)
        serving_load.forget(Deployment.objects.get(endpoint=made, name=name).pk)
    return {
        "access": access,
        "script": script,
        "nodes": nodes,
        "primary": secrets.decrypt(made.primary_key),
        "secondary": secrets.decrypt(made.secondary_key),
        "path": "/score/gw/flowers",
    }


def post(url: str, body: dict, key: str | None, **headers: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read()), dict(refused.headers)


def start_both(processes: Processes, endpoint: dict) -> None:
    for name, node in endpoint["nodes"].items():
        processes.replica(node, endpoint["script"], WHO=name)


def test_keys_named_deployments_and_the_80_20_split(processes, endpoint):
    start_both(processes, endpoint)
    url = processes.gateway() + endpoint["path"]
    status, answer, _ = post(url, {"x": 7}, endpoint["primary"], **{"X-Hangar-Deployment": "green"})
    assert (status, answer) == (200, {"deployment": "green", "echo": 7})
    assert post(url, {}, endpoint["secondary"])[0] == 200
    wrong = post(url, {}, "not-the-key")
    assert wrong[0] == 401 and "not one of this endpoint's" in wrong[1]["error"]
    assert post(url, {}, None)[0] == 401
    # An address that is no endpoint answers as a wrong key: nothing to enumerate.
    assert post(url.replace("flowers", "nope"), {}, endpoint["primary"])[0] == 401
    named = post(url, {}, endpoint["primary"], **{"X-Hangar-Deployment": "red"})
    assert named[0] == 404 and "no deployment named red" in named[1]["error"]
    odd = post(url, {}, endpoint["primary"], **{"X-Hangar-Deployment": "\xff"})
    assert odd[0] == 404  # a byte that is no UTF-8: no such deployment, not a crash

    shares = Counter(post(url, {}, endpoint["primary"])[1]["deployment"] for _ in range(400))
    assert abs(shares["blue"] / 400 - 0.80) <= 0.06, shares

    # What the autoscaler reads: the gateway's running totals, in Redis.
    blue = Deployment.objects.get(name="blue").pk
    deadline = time.monotonic() + 5
    while (
        serving_load.read([blue]).get(blue) is None
        or serving_load.read([blue])[blue].requests < shares["blue"]
    ):
        assert time.monotonic() < deadline, serving_load.read([blue])
        time.sleep(0.05)


def test_a_slow_replica_times_out_and_a_dead_one_is_a_502(processes, endpoint):
    start_both(processes, endpoint)
    url = processes.gateway() + endpoint["path"]
    blue = {"X-Hangar-Deployment": "blue"}
    slow = post(url, {"sleep": 3}, endpoint["primary"], **blue)
    assert slow[0] == 504 and "2 s timeout" in slow[1]["error"]
    processes.started[0].kill()  # blue's replica dies; its socket file stays behind
    processes.started[0].wait()
    dead = post(url, {}, endpoint["primary"], **blue)
    assert dead[0] == 502 and "The replica of blue failed" in dead[1]["error"]
    assert post(url, {}, endpoint["primary"], **{"X-Hangar-Deployment": "green"})[0] == 200


def test_a_replica_killed_under_load_loses_no_request_that_had_not_reached_it(processes, endpoint):
    """Blue has two replicas and eight callers keep it busy; one replica is SIGKILLed.
    Whatever had not reached it (every request started after the kill, and any the
    gateway was about to send it) is answered by the other: only requests already in the
    dead replica may fail, with a 502."""
    blue = Deployment.objects.get(name="blue")
    second = NodeFactory(compute=blue.compute, state=NodeState.IDLE)
    processes.replica(endpoint["nodes"]["blue"], endpoint["script"], WHO="blue-1")
    processes.replica(second, endpoint["script"], WHO="blue-2")
    doomed = processes.started[-2]
    url = processes.gateway() + endpoint["path"]
    named = {"X-Hangar-Deployment": "blue"}
    answers: list[tuple[float, int, dict]] = []
    stop = time.monotonic() + 4
    killed_at = [float("inf")]

    def caller() -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            status, answer, _ = post(url, {"sleep": 0.01}, endpoint["primary"], **named)
            answers.append((started, status, answer))

    callers = [threading.Thread(target=caller) for _ in range(8)]
    for each in callers:
        each.start()
    time.sleep(1.5)
    killed_at[0] = time.monotonic()
    doomed.kill()
    doomed.wait()
    for each in callers:
        each.join(timeout=30)
    before = [a for a in answers if a[0] < killed_at[0]]
    after = [a for a in answers if a[0] > killed_at[0]]
    assert {answer["deployment"] for _, status, answer in before if status == 200} == {
        "blue-1",
        "blue-2",
    }
    assert len(after) > 50, len(after)
    lost = [(status, answer) for _, status, answer in after if status != 200]
    assert not lost, lost[:5]
    assert {answer["deployment"] for _, _, answer in after} == {"blue-2"}
    failed = [answer for _, status, answer in before if status != 200]
    # At most what was in the dead replica: one request per caller, each a 502 saying why.
    assert len(failed) <= 8 and all("The replica of blue failed" in a["error"] for a in failed)


def test_a_load_step_asks_the_autoscaler_at_once_not_at_the_next_sweep(
    processes, endpoint, workers, celery_queue
):
    """Blue has one replica, aiming at one request in flight each, at most two. Three slow
    requests at once: the gateway asks the autoscaler itself, and the deployment wants a
    second replica within a second and a half, though the sweep runs only every minute
    here (before, the step waited for the sweep)."""
    blue = Deployment.objects.get(name="blue")
    Deployment.objects.filter(pk=blue.pk).update(
        target_in_flight=1, max_replicas=2, scale_to_zero_seconds=3600
    )
    Compute.objects.filter(pk=blue.compute_id).update(
        replica_target=1, min_nodes=0, max_nodes=2, idle_seconds_before_scaledown=3600
    )
    workers.get("noop", HANGAR_SWEEP_SECONDS="60")
    time.sleep(1)  # the sweep beat runs as it starts is behind us
    processes.replica(endpoint["nodes"]["blue"], endpoint["script"], WHO="blue")
    url = processes.gateway(CELERY_QUEUE=celery_queue) + endpoint["path"]
    named = {"X-Hangar-Deployment": "blue"}
    callers = [
        threading.Thread(target=post, args=(url, {"sleep": 1.8}, endpoint["primary"]), kwargs=named)
        for _ in range(3)
    ]
    for each in callers:
        each.start()
    try:
        deadline = time.monotonic() + 1.5
        while Compute.objects.get(pk=blue.compute_id).replica_target != 2:
            assert time.monotonic() < deadline, "the autoscaler was not asked at once"
            time.sleep(0.02)
    finally:
        for each in callers:
            each.join(timeout=30)
    moved = Compute.objects.get(pk=blue.compute_id).events.get(message__startswith="Replicas 1 → 2")
    assert "in flight on average" in moved.message, moved.message


def test_with_no_replica_ready_requests_wait_are_bounded_and_wake_the_deployment(
    processes, endpoint
):
    """Blue's replica is not up (and its cluster is at zero): a request waits for it, asks
    for one, and times out here (no worker starts it in this test); past the queue limit
    the others get 503 with Retry-After at once."""
    blue = Deployment.objects.get(name="blue")
    blue.compute.nodes.all().delete()
    Compute.objects.filter(pk=blue.compute_id).update(replica_target=0)
    url = processes.gateway(HANGAR_SCORE_QUEUE_LIMIT="2") + endpoint["path"]
    answers: list[tuple[int, dict, dict]] = []
    callers = [
        threading.Thread(
            target=lambda: answers.append(
                post(url, {}, endpoint["primary"], **{"X-Hangar-Deployment": "blue"})
            )
        )
        for _ in range(4)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=30)
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [503, 503, 504, 504], answers
    full = next(a for a in answers if a[0] == 503)
    assert full[2].get("retry-after") == "1" and "already wait" in full[1]["error"]
    assert Compute.objects.get(pk=blue.compute_id).replica_target == 1  # asked to start one


def test_the_secondary_key_keeps_working_while_the_primary_is_regenerated(processes, endpoint):
    start_both(processes, endpoint)
    url = processes.gateway() + endpoint["path"]
    made = Endpoint.objects.get(name="flowers")
    regenerate_key(endpoint["access"], made, "primary")
    made.refresh_from_db()
    new_primary = secrets.decrypt(made.primary_key)
    deadline = time.monotonic() + 5  # the gateway rereads its routes every 0.1 s here
    while post(url, {}, endpoint["primary"])[0] != 401:
        assert time.monotonic() < deadline, "the old key still works"
    assert post(url, {}, new_primary)[0] == 200
    assert post(url, {}, endpoint["secondary"])[0] == 200


def test_the_try_it_box_sends_through_the_gateway_with_the_primary_key(
    processes, endpoint, settings, client
):
    start_both(processes, endpoint)
    settings.HANGAR_SCORE_URL = processes.gateway()
    client.force_login(endpoint["access"].membership.user)
    made = Endpoint.objects.get(name="flowers")
    url = f"/w/gw/endpoints/{made.pk}/try/"
    page = client.post(url, {"body": '{"x": 3}', "deployment": "green"}).content.decode()
    assert "HTTP 200" in page and "&quot;deployment&quot;: &quot;green&quot;" in page
    assert "&quot;echo&quot;: 3" in page
    refused = client.post(url, {"body": "{not json"}).content.decode()
    assert "That is not JSON" in refused


def test_a_wait_for_a_starting_replica_counts_in_latency_not_as_replica_load(processes, endpoint):
    """The autoscaler sizes replicas from the seconds requests spend in them (Little's
    law): a request that waited 1.5 s for the first replica to start is 1.5 s of latency,
    but not 1.5 s of load, or every start from zero would ask for a second replica."""
    blue = Deployment.objects.get(name="blue")
    Deployment.objects.filter(pk=blue.pk).update(request_timeout_ms=10_000)
    url = processes.gateway() + endpoint["path"]
    answers: list[tuple[int, dict, dict]] = []
    caller = threading.Thread(
        target=lambda: answers.append(
            post(url, {}, endpoint["primary"], **{"X-Hangar-Deployment": "blue"})
        )
    )
    began = time.monotonic()
    caller.start()
    time.sleep(1.5)  # the replica "starts" only now
    processes.replica(endpoint["nodes"]["blue"], endpoint["script"], WHO="blue")
    caller.join(timeout=20)
    waited = time.monotonic() - began
    assert answers and answers[0][0] == 200 and waited >= 1.5
    deadline = time.monotonic() + 5
    while not (load := serving_load.read([blue.pk]).get(blue.pk)) or not load.requests:
        assert time.monotonic() < deadline, "the gateway published nothing"
        time.sleep(0.1)
    assert load.requests == 1
    assert load.busy_seconds < 0.5, load  # served in milliseconds once a replica was up


def test_a_burst_of_callers_on_a_fresh_replica_is_answered_and_leaves_it_in_the_choice(
    processes, endpoint
):
    """Forty requests at once on a replica the gateway has no connection to yet: the
    gateway opens many connections together. A replica that takes them more slowly than
    they come is busy, not dead: every request is answered by it, and it stays in the
    choice (a replica taken for dead is left out for a minute). Its run() calls are one at
    a time: 40 × 10 ms stay well within the 2 s timeout."""
    processes.replica(endpoint["nodes"]["blue"], endpoint["script"], WHO="blue")
    url = processes.gateway() + endpoint["path"]
    named = {"X-Hangar-Deployment": "blue"}
    go = threading.Event()
    answers: list[tuple[int, dict]] = []

    def caller() -> None:
        go.wait()
        answers.append(post(url, {"sleep": 0.01}, endpoint["primary"], **named)[:2])

    callers = [threading.Thread(target=caller) for _ in range(40)]
    for each in callers:
        each.start()
    go.set()
    for each in callers:
        each.join(timeout=30)
    refused = [answer for status, answer in answers if status != 200]
    assert len(answers) == 40 and not refused, refused[:3]
    after = post(url, {}, endpoint["primary"], **named)[:2]
    assert after == (200, {"deployment": "blue", "echo": None})
