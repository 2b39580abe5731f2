"""The scoring gateway as a real process (uvicorn, as the Procfile runs it) on the test
database, and replicas as real scoring-server processes at the sockets the gateway looks
for: the rows of a deployment's replicas say where, the processes are Hangar's own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from compute.drivers.base import container_name
from compute.inference.runtime import score_server
from compute.lib import replicas
from compute.models import Node
from tests.support.worker import ARTIFACTS, ROOT, process_environment

SERVER = Path(score_server.__file__)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Processes:
    """What a test started: stopped whatever happens to the test."""

    started: list[subprocess.Popen] = field(default_factory=list)

    def gateway(self, **environment: str) -> str:
        port = free_port()
        ARTIFACTS.mkdir(exist_ok=True)
        log = open(ARTIFACTS / f"gateway-{port}.log", "wb")
        env = process_environment(
            "unused", "noop", {"HANGAR_GATEWAY_REFRESH": "0.1", **environment}
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "compute.inference.gateway.app:app",
             "--http", "compute.inference.gateway.protocol:OneSendPerAnswer",
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return url
            except OSError:
                pass
            assert process.poll() is None, (ARTIFACTS / f"gateway-{port}.log").read_text()
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)

    def replica(self, node: Node, script: Path, **environment: str) -> Path:
        """A scoring server at the socket the gateway expects for `node`; ready on return."""
        name = container_name(settings.HANGAR_SITE, node.compute_id, node.pk)
        path = replicas.socket_path(name)
        replicas.prepare_socket_folder(path.parent)
        process = subprocess.Popen(
            [sys.executable, str(SERVER), "--socket", str(path), "--script", str(script)],
            env={**os.environ, **environment},
        )
        self.started.append(process)
        deadline = time.monotonic() + 10
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline, "replica not ready"
            time.sleep(0.01)
        return path

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
