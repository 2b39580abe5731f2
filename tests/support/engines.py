"""Extra Docker engines on this machine, as node hosts for tests and benchmarks: each a
`dockerd` of its own (its own socket, data root, exec root and pidfile; no bridge, no
iptables, so it touches none of this machine's networking), stopped and wiped after."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from django.conf import settings

from compute.drivers.base import LABEL_SITE


@dataclass
class Engine:
    name: str
    root: Path
    process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=30)

    def start(self) -> Engine:
        data = Path("/var/lib") / f"hangar-test-engine-{self.root.name}"
        log = open(self.root / "dockerd.log", "ab")
        self.process = subprocess.Popen(
            [
                "dockerd",
                "-H",
                self.url,
                "--data-root",
                str(data),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "docker.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client().ping()
                return self
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    said = (self.root / "dockerd.log").read_text()[-2000:]
                    raise RuntimeError(f"dockerd {self.name} did not start: {said}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """The engine gone (as a machine that went away): its containers die with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def site_containers(self) -> list:
        site = settings.HANGAR_SITE
        return self.client().containers.list(all=True, filters={"label": f"{LABEL_SITE}={site}"})

    def wipe(self) -> None:
        """Every container of the test site removed, the engine stopped, its files gone."""
        if self.process is not None and self.process.poll() is None:
            for container in self.site_containers():
                container.remove(force=True, v=True)
        self.stop()
        shutil.rmtree(Path("/var/lib") / f"hangar-test-engine-{self.root.name}", ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


def start_engines(count: int) -> list[Engine]:
    engines = []
    try:
        for index in range(count):
            root = Path(tempfile.mkdtemp(prefix=f"hangar-engine-{index}-", dir="/run"))
            engines.append(Engine(f"host-{chr(ord('a') + index)}", root).start())
    except BaseException:
        for engine in engines:
            engine.wipe()
        raise
    return engines


def copy_image(image: str, to: Engine) -> None:
    """An image of this machine's engine loaded into `to` (save → load, no registry)."""
    to.client().api.load_image(docker.from_env().api.get_image(image))
