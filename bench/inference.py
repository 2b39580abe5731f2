"""Scoring gateway figures: its overhead over calling the replica's socket directly, side by
side in one run, for a trivial model (latency one request at a time, and throughput with
four callers). The replica is Hangar's scoring server; the gateway runs as the Procfile
runs it (uvicorn)."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

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
BODY = json.dumps({"data": [[1.0, 2.0, 3.0, 4.0]]}).encode()


def run() -> None:
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
                f"{gateway_rate:7.0f}/s  = {gateway_rate / direct_rate:.0%} (goal ≥ 70%)"
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
    url = processes.gateway() + "/score/benchgw/trivial"
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


def percentile(timings: list[float], pct: int) -> float:
    return timings[min(len(timings) - 1, int(len(timings) * pct / 100))]


def report(label: str, timings: list[float]) -> None:
    print(
        f"{label:<44} n={len(timings)} p50={statistics.median(timings):6.2f} ms  "
        f"p99={percentile(timings, 99):6.2f} ms"
    )
