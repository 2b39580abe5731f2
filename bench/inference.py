"""Scoring gateway figures: its overhead over calling the replica's socket directly, side by
side in one run, for a trivial model (latency one request at a time, and throughput with
four callers: threads of http.client in this process, then a lean caller process). The
replica is Hangar's scoring server; the gateway runs as the Procfile runs it (uvicorn).

Then replicas on real parts (a Celery worker with its beat and sweep, Docker, the gateway
with production's route refresh): the first answer from zero replicas, side by side with
the container floor (the same container started straight through the Docker SDK, timed
until its socket appears), and a load step until a new replica answers."""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from django.conf import settings

from compute.inference.actions.endpoints import create_endpoint
from compute.inference.models import Deployment
from compute.lib import secrets
from compute.models import NodeState, VmSize
from tests.integration.test_score_server import UnixConnection
from tests.support.factories import ComputeFactory, NodeFactory
from tests.support.gateway import Processes
from tests.support.inference import make_model
from tests.support.teams import make_team
from workspace.access import get_access

TRIVIAL = "def init():\n    pass\n\n\ndef run(request_json):\n    return {'ok': 1}\n"
REQUESTS = 2000
SECONDS = 3.0
CALLERS = 4
LEAN_ROUNDS = 5
BODY = json.dumps({"data": [[1.0, 2.0, 3.0, 4.0]]}).encode()


def run() -> None:
    overhead()
    replicas_on_docker()


def overhead() -> None:
    processes = Processes()
    with TemporaryDirectory() as folder:
        try:
            socket_path, url, key = setup(processes, Path(folder))
            direct = lambda: direct_caller(str(socket_path))  # noqa: E731
            gateway = lambda: gateway_caller(url, key)  # noqa: E731
            direct_times = latencies(direct())
            gateway_times = latencies(gateway())
            report("direct to the replica's socket", direct_times)
            report("through the gateway", gateway_times)
            p50 = statistics.median(gateway_times) - statistics.median(direct_times)
            p99 = percentile(gateway_times, 99) - percentile(direct_times, 99)
            print(
                f"{'gateway overhead':<44} p50=+{p50:.2f} ms  p99=+{p99:.2f} ms "
                "(goals p50 ≤ 1.5 ms, p99 ≤ 10 ms)"
            )
            direct_rate = throughput(direct)
            gateway_rate = throughput(gateway)
            print(
                f"{'throughput, 4 callers':<44} direct {direct_rate:7.0f}/s  gateway "
                f"{gateway_rate:7.0f}/s  = {gateway_rate / direct_rate:.0%} (callers' CPU shared)"
            )
            # The goal's figure: the same with a caller that costs a fraction of the CPU
            # (bench/load.py). The http.client callers above spend more CPU per request than
            # the replica and the gateway together, on the same 2 cores: with the gateway in
            # the way they starve it (its real callers are on other machines).
            # Rounds taken in turn, the median of each side: a 3 s round on 2 cores varies by
            # a fifth from one to the next.
            host, _, path = url.removeprefix("http://").partition("/")
            to_replica = ("--unix", str(socket_path), "--path", "/score")
            to_gateway = ("--tcp", host, "--path", f"/{path}")
            authorized = ("--header", f"Authorization: Bearer {key}")
            direct_rates, gateway_rates = [], []
            for _ in range(LEAN_ROUNDS):
                direct_rates.append(lean_throughput(*to_replica))
                gateway_rates.append(lean_throughput(*to_gateway, *authorized))
            direct_rate = statistics.median(direct_rates)
            gateway_rate = statistics.median(gateway_rates)
            print(
                f"{'throughput, lean caller (bench/load.py)':<44} direct {direct_rate:7.0f}/s  "
                f"gateway {gateway_rate:7.0f}/s  = {gateway_rate / direct_rate:.0%} (goal ≥ 70%)"
            )
            print(
                f"{'':<44} rounds direct={[round(r) for r in direct_rates]} "
                f"gateway={[round(r) for r in gateway_rates]}"
            )
        finally:
            processes.stop()


def setup(processes: Processes, folder: Path) -> tuple[Path, str, str]:
    team = make_team("benchgw")
    access = get_access(team.contributor, team.workspace.slug)
    endpoint = create_endpoint(access, name="trivial")
    compute = ComputeFactory(workspace=team.workspace, serving={"deployment": 0, "model": 0})
    Deployment.objects.create(
        endpoint=endpoint, name="blue", model=make_model(team.workspace), scoring_script=TRIVIAL,
        traffic=100, target="managed_cluster", compute=compute,
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
    )  # fmt: skip
    node = NodeFactory(compute=compute, state=NodeState.IDLE)
    script = folder / "score.py"
    script.write_text(TRIVIAL)
    socket_path = processes.replica(node, script)
    # The routes reread as often as in production (the tests' gateway rereads them every
    # 0.1 s, which costs the gateway a sixth of its CPU here).
    refresh = str(settings.HANGAR_GATEWAY_REFRESH)
    url = processes.gateway(HANGAR_GATEWAY_REFRESH=refresh) + "/score/benchgw/trivial"
    return socket_path, url, secrets.decrypt(endpoint.primary_key)


def direct_caller(socket_path: str) -> Callable[[], None]:
    connection = UnixConnection(socket_path)

    def call() -> None:
        connection.request(
            "POST", "/score", body=BODY, headers={"Content-Type": "application/json"}
        )
        answer = connection.getresponse()
        assert answer.status == 200, answer.read()
        answer.read()

    return call


def gateway_caller(url: str, key: str) -> Callable[[], None]:
    host, _, rest = url.removeprefix("http://").partition("/")
    connection = http.client.HTTPConnection(host, timeout=10)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def call() -> None:
        connection.request("POST", f"/{rest}", body=BODY, headers=headers)
        answer = connection.getresponse()
        assert answer.status == 200, answer.read()
        answer.read()

    return call


def latencies(call: Callable[[], None]) -> list[float]:
    for _ in range(200):
        call()  # warm: connections, the gateway's kept replica connections
    timings = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return sorted(timings)


def throughput(make: Callable[[], Callable[[], None]]) -> float:
    counts = [0] * CALLERS
    stop = time.monotonic() + SECONDS

    def caller(index: int) -> None:
        call = make()
        while time.monotonic() < stop:
            call()
            counts[index] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / SECONDS


def lean_throughput(*where: str) -> float:
    seconds = str(SECONDS)
    run = subprocess.run(
        [sys.executable, "-m", "bench.load", "--seconds", seconds, "--connections", str(CALLERS),
         "--body", BODY.decode(), *where],
        capture_output=True, text=True, timeout=SECONDS + 30, check=False,
    )  # fmt: skip
    if run.returncode:
        raise SystemExit(f"bench.load failed: {run.stdout}{run.stderr}")
    return float(json.loads(run.stdout)["per_second"])


def percentile(timings: list[float], pct: int) -> float:
    return timings[min(len(timings) - 1, int(len(timings) * pct / 100))]


def report(label: str, timings: list[float]) -> None:
    print(
        f"{label:<44} n={len(timings)} p50={statistics.median(timings):6.2f} ms  "
        f"p99={percentile(timings, 99):6.2f} ms"
    )


# Replicas on real parts -------------------------------------------------------------------

WHO = """
import json, socket, time


def init():
    pass


def run(request_json):
    time.sleep(json.loads(request_json).get("sleep", 0))
    return {"replica": socket.gethostname()}
"""
ROUNDS = 3
TIMEOUT_MS = 10_000


def replicas_on_docker() -> None:
    import uuid

    import docker
    from django.conf import settings

    from config.celery import app
    from tests.support.leftovers import remove_all_nodes
    from tests.support.worker import Worker

    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.HANGAR_DRIVER = "docker"
    worker = Worker(queue, "docker", {}).start()
    processes = Processes()
    try:
        deployment, url, key = deploy_at_zero()
        # The gateway as production runs it: routes reread every 0.5 s.
        # and enqueueing to the worker's queue, as in production (one CELERY_QUEUE).
        url = processes.gateway(HANGAR_GATEWAY_REFRESH="0.5", CELERY_QUEUE=queue) + url
        client = docker.from_env()
        floors, colds = [], []
        for _ in range(ROUNDS):
            floors.append(container_floor(client, deployment))
            colds.append(first_answer_from_zero(deployment, url, key))
        floor, cold = statistics.median(floors), statistics.median(colds)
        print(
            f"{'first answer from zero replicas (median of 3)':<44} hangar={cold * 1000:6.0f} ms"
            f"  floor={floor * 1000:6.0f} ms  +{(cold - floor) * 1000:.0f} ms (goal ≤ +500 ms)"
        )
        print(
            f"{'':<44} rounds hangar={[round(c * 1000) for c in colds]} "
            f"floor={[round(f * 1000) for f in floors]}"
        )
        for steps in COLD_STEPS:
            print(f"{'':<44} ms after the request: {steps}")
        steps = [load_step(deployment, url, key) for _ in range(ROUNDS)]
        print(
            f"{'load step → new replica answers (median of 3)':<44} "
            f"{statistics.median(steps) * 1000:6.0f} ms  rounds={[round(t * 1000) for t in steps]}"
            " (goal ≤ 2000 ms)"
        )
    finally:
        processes.stop()
        worker.stop()
        remove_all_nodes()


def deploy_at_zero() -> tuple[Deployment, str, str]:
    """A deployment of WHO on the scikit-learn environment's image (built first when this
    engine lacks it), at zero replicas, back to zero a second after its last request."""
    from compute.actions.environments import sync_curated
    from compute.inference.actions.endpoints import add_deployment
    from compute.inference.actions.models import register_model
    from compute.inference.models import RegisteredModel
    from compute.lib import snapshots
    from compute.models import Compute, Environment

    # Folders an earlier bench run left (its database is gone, ids start again): never
    # reused, so removed here, for the ids no row of this run holds.
    for store, rows in (
        (snapshots.model_store(), RegisteredModel.objects),
        (snapshots.serving_store(), Deployment.objects),
    ):
        held = {str(pk) for pk in rows.values_list("pk", flat=True)}
        for folder in store.root.iterdir() if store.root.exists() else ():
            if folder.name not in held:
                snapshots.remove_tree(folder)
    team = make_team("benchzero")
    access = get_access(team.contributor, team.workspace.slug)
    sync_curated()
    sklearn = Environment.objects.filter(workspace=None, name="scikit-learn").latest("version")
    model = register_model(access, name="none", file_name="model.json", data=b"{}")
    endpoint = create_endpoint(access, name="cold")
    deployment = add_deployment(
        access, endpoint, name="blue", model=model, scoring_script=WHO,
        target="managed_cluster", vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
        environment=sklearn, min_replicas=0, max_replicas=2, target_in_flight=1,
        request_timeout_ms=TIMEOUT_MS,
    )  # fmt: skip
    assert deployment.compute is not None
    Compute.objects.filter(pk=deployment.compute.pk).update(idle_seconds_before_scaledown=1)
    Deployment.objects.filter(pk=deployment.pk).update(scale_to_zero_seconds=1)
    wait_until(lambda: image_of(deployment) != "", 900, "the environment's image built")
    return deployment, endpoint.scoring_path, secrets.decrypt(endpoint.primary_key)


def image_of(deployment: Deployment) -> str:
    from compute.models import Environment

    environment = Environment.objects.select_related("image").get(pk=deployment.environment_id)
    image = environment.image
    if image is not None and image.is_failed:
        raise SystemExit(f"bench: the environment's image failed: {image.first_error_line}")
    return image.tag if image is not None and image.is_ready else ""


def live_replicas(deployment: Deployment) -> int:
    from compute.models import Node

    return Node.objects.filter(compute_id=deployment.compute_id, ended_at=None).count()


def at_zero(deployment: Deployment) -> bool:
    from compute.models import Compute

    target = Compute.objects.get(pk=deployment.compute_id).replica_target
    return target == 0 and live_replicas(deployment) == 0


def first_answer_from_zero(deployment: Deployment, url: str, key: str) -> float:
    wait_until(lambda: at_zero(deployment), 60, "the deployment back at zero replicas")
    time.sleep(1)  # the sweep's marks settle: the next request is a cold one
    sockets: list[float] = []
    watching = threading.Event()
    watcher = threading.Thread(target=watch_socket, args=(deployment, sockets, watching))
    watcher.start()
    wall, started = time.time(), time.perf_counter()
    try:
        status, _ = post(url, key, {})
        took = time.perf_counter() - started
    finally:
        watching.set()
        watcher.join()
    assert status == 200, status
    COLD_STEPS.append(cold_steps(deployment, wall, sockets, took))
    return took


COLD_STEPS: list[str] = []


def watch_socket(deployment: Deployment, seen: list[float], done: threading.Event) -> None:
    """When the first replica's socket appears (time.time())."""
    from django.conf import settings
    from django.db import connection

    from compute.drivers.base import container_name
    from compute.lib import replicas
    from compute.models import Node

    try:
        while not done.is_set() and not seen:
            live = Node.objects.filter(compute_id=deployment.compute_id, ended_at=None)
            for pk in live.values_list("pk", flat=True):
                name = container_name(settings.HANGAR_SITE, deployment.compute_id, pk)
                if replicas.socket_path(name).exists():
                    seen.append(time.time())
            time.sleep(0.002)
    finally:
        connection.close()  # this thread's own


def cold_steps(deployment: Deployment, wall: float, sockets: list[float], took: float) -> str:
    """Where a cold start's time went, in ms from the request: the node's row, its
    container started, its socket there, the answer."""
    from compute.models import Node

    node = Node.objects.filter(compute_id=deployment.compute_id).order_by("-pk").first()
    assert node is not None and node.started_at is not None

    def ms(at: float) -> int:
        return round((at - wall) * 1000)

    return (
        f"row {ms(node.created_at.timestamp())}, container started "
        f"{ms(node.started_at.timestamp())}, socket {ms(sockets[0]) if sockets else '?'}, "
        f"answer {round(took * 1000)}"
    )


def load_step(deployment: Deployment, url: str, key: str) -> float:
    """One replica serving, idle; then four callers at once with 0.1 s requests (a target
    of one in flight per replica: two replicas wanted). The time until an answer comes
    from a replica other than the first."""
    from compute.models import Compute

    # One replica, kept (no scale to zero), and quiet: the step is the only load.
    Compute.objects.filter(pk=deployment.compute_id).update(min_nodes=1)
    Deployment.objects.filter(pk=deployment.pk).update(scale_to_zero_seconds=3600)
    for _ in range(5):
        wait_until(lambda: serving(deployment) == 1, 90, "one replica serving alone")
        time.sleep(2)
        status, answer = post(url, key, {})
        assert status == 200, status
        first = answer["replica"]
        time.sleep(1)
        if serving(deployment) == 1:  # still alone: the step starts from one replica
            break
    seen: list[float] = []
    stop = time.monotonic() + 15
    started = time.perf_counter()

    def caller() -> None:
        while time.monotonic() < stop and not seen:
            status, answer = post(url, key, {"sleep": 0.1})
            if status == 200 and answer["replica"] != first:
                seen.append(time.perf_counter() - started)

    callers = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for each in callers:
        each.start()
    for each in callers:
        each.join()
    if not seen:
        raise SystemExit("bench: no second replica answered within 15 s of the load step")
    return min(seen)


def serving(deployment: Deployment) -> int:
    """Its live replicas if each one's socket is there, else -1."""
    from django.conf import settings

    from compute.drivers.base import container_name
    from compute.lib import replicas
    from compute.models import Compute, Node

    live = list(
        Node.objects.filter(compute_id=deployment.compute_id, ended_at=None).values_list(
            "pk", flat=True
        )
    )
    target = Compute.objects.get(pk=deployment.compute_id).replica_target
    names = [container_name(settings.HANGAR_SITE, deployment.compute_id, pk) for pk in live]
    if target != len(live) or not all(replicas.socket_path(n).exists() for n in names):
        return -1
    return len(live)


def container_floor(client, deployment: Deployment) -> float:
    """The same image, command, folders and hardening as a replica, created and started
    straight through the SDK; timed until the scoring server's socket is there."""
    import uuid

    from django.conf import settings
    from docker.types import Mount

    from compute.controllers.nodespec import MODEL_IN_NODE, SERVE_IN_NODE, SOCKET_FOLDER_IN_NODE
    from compute.lib import replicas, snapshots

    image = image_of(deployment)
    size = deployment.vm_size
    memory = int(float(size.memory_gib) * settings.HANGAR_MEMORY_SCALE * 1024**3)
    name = f"{settings.HANGAR_SITE}-bench-floor-{uuid.uuid4().hex[:6]}"
    socket = replicas.socket_path(name)
    replicas.prepare_socket_folder(socket.parent)
    started = time.perf_counter()
    container = client.containers.create(
        image,
        command=[
            "python3", f"{SERVE_IN_NODE}/score_server.py",
            "--socket", f"{SOCKET_FOLDER_IN_NODE}/{replicas.SOCKET_NAME}",
            "--script", f"{SERVE_IN_NODE}/score.py",
        ],
        name=name, labels={"hangar.bench": "floor", "hangar.site": settings.HANGAR_SITE},
        nano_cpus=int(size.vcpus * settings.HANGAR_CPU_SCALE * 1e9), mem_limit=memory,
        memswap_limit=memory, pids_limit=settings.HANGAR_NODE_PIDS_LIMIT, init=True,
        network_mode="none",
        user="1000:1000", cap_drop=["ALL"], security_opt=["no-new-privileges"],
        read_only=True, tmpfs={"/tmp": "rw,size=64m"},  # noqa: S108
        mounts=[
            Mount(SERVE_IN_NODE, str(snapshots.serving_store().folder(deployment.pk)),
                  type="bind", read_only=True),
            Mount(MODEL_IN_NODE, str(snapshots.model_store().folder(deployment.model_id)),
                  type="bind", read_only=True),
            Mount(SOCKET_FOLDER_IN_NODE, str(socket.parent), type="bind", read_only=False),
        ],
        detach=True,
    )  # fmt: skip
    try:
        container.start()
        wait_until(socket.exists, 60, "the floor container's socket", pause=0.002)
        return time.perf_counter() - started
    finally:
        container.remove(force=True)
        snapshots.remove_tree(socket.parent)


def post(url: str, key: str, body: dict) -> tuple[int, dict]:
    host, _, rest = url.removeprefix("http://").partition("/")
    connection = http.client.HTTPConnection(host, timeout=30)
    try:
        connection.request(
            "POST", f"/{rest}", body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )  # fmt: skip
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, pause: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(pause)
