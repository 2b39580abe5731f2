"""The `hangar` command's figures (issue 17): how fast `hangar --help` answers, and a job
from `hangar job submit ... -- true` on a warm cluster to `hangar job wait` returning, end
to end: two CLI processes, the API over HTTP (a live server), a real worker, a Docker node.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from django.conf import settings
from pytest_django.live_server_helper import LiveServer

from bench.jobs import percentile, wait
from compute.actions import computes as actions
from compute.models import Compute, ComputeState, Node, NodeState, VmSize
from config.celery import app
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from tests.support.worker import Worker
from workspace.access import get_access
from workspace.tokens import create_token

ROOT = Path(__file__).resolve().parent.parent
HELP_RUNS = 20
JOB_RUNS = 10


def hangar(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hangar.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def line(label: str, timings: list[float], goal: str) -> None:
    print(
        f"{label:<44} n={len(timings):<3} p50={statistics.median(timings):7.1f} ms  "
        f"p95={percentile(timings, 0.95):7.1f} ms  ({goal})"
    )


def bench_help(env: dict[str, str]) -> None:
    timings = []
    for _ in range(HELP_RUNS):
        began = time.perf_counter()
        assert hangar("--help", env=env).returncode == 0
        timings.append((time.perf_counter() - began) * 1000)
    line("hangar --help", timings, "goal ≤ 200 ms")
    floor = []
    for _ in range(HELP_RUNS):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        floor.append((time.perf_counter() - began) * 1000)
    line("floor: python -c pass", floor, "the interpreter alone")


def run() -> None:
    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.HANGAR_DRIVER = "docker"
    settings.HANGAR_NODE_NETWORK = "host"
    worker = Worker(queue, "docker", {"HANGAR_NODE_NETWORK": "host"}).start()
    server = LiveServer("127.0.0.1:0")
    team = make_team("clibench")
    access = get_access(team.contributor, team.workspace.slug)
    secret = create_token(team.contributor, name="bench", expires_in_days=1).secret
    with tempfile.TemporaryDirectory() as config:
        env = {
            **os.environ,
            "HANGAR_URL": server.url,
            "HANGAR_TOKEN": secret,
            "XDG_CONFIG_HOME": config,
        }
        try:
            bench_help(env)
            size = VmSize.objects.get(name="Standard_DS3_v2")
            pool = actions.create_cluster(
                access, name="warm", vm_size=size, min_nodes=1, max_nodes=1
            )
            wait(lambda: Compute.objects.get(pk=pool.pk).state == ComputeState.STEADY)
            wait(lambda: Node.objects.filter(compute=pool, state=NodeState.IDLE).exists())
            timings = []
            for _ in range(JOB_RUNS + 1):  # the first warms the server and the node
                began = time.perf_counter()
                submitted = hangar(
                    "job", "submit", "--workspace", "clibench", "--compute", "warm",
                    "--output", "json", "--", "true",
                    env=env,
                )  # fmt: skip
                assert submitted.returncode == 0, submitted.stderr
                job_id = str(__import__("json").loads(submitted.stdout)["id"])
                waited = hangar("job", "wait", job_id, "--workspace", "clibench", env=env)
                assert waited.returncode == 0, waited.stderr
                timings.append((time.perf_counter() - began) * 1000)
                wait(lambda: Node.objects.filter(compute=pool, state=NodeState.IDLE).exists())
            line("hangar job submit -- true → job wait", timings[1:], "goal ≤ 400 ms, warm")
            # The same through hangar.client in this process: no CLI process to start.
            from hangar.client import Client

            client = Client(server.url, secret)
            in_process = []
            for _ in range(JOB_RUNS):
                began = time.perf_counter()
                job = client.submit("clibench", "warm", "true")
                assert client.wait("clibench", job["id"])["exit_code"] == 0
                in_process.append((time.perf_counter() - began) * 1000)
                wait(lambda: Node.objects.filter(compute=pool, state=NodeState.IDLE).exists())
            line("  the same with hangar.client, in process", in_process, "the job's own time")
            shows = []
            for _ in range(JOB_RUNS):
                began = time.perf_counter()
                shown = hangar("job", "show", str(job["id"]), "--workspace", "clibench", env=env)
                assert shown.returncode == 0, shown.stderr
                shows.append((time.perf_counter() - began) * 1000)
            line("  one CLI call: hangar job show", shows, "a process and one request")
        finally:
            server.stop()
            worker.stop()
            remove_all_nodes()
