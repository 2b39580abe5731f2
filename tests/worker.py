"""A real Celery worker process for tests and benchmarks, on the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

from config.celery import app

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
SWEEP_SECONDS = "0.5"


def database_url() -> str:
    """The test database, for a worker in another process."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """One `celery worker -B` process; `kill()` is SIGKILL, as a crash would be."""

    def __init__(self, queue: str, driver: str, extra_env: dict[str, str]) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.queue = queue
        self.driver = driver
        self.extra_env = extra_env
        self.name = f"test-{uuid.uuid4().hex[:6]}@localhost"
        self.log_path = ARTIFACTS / f"worker-{self.name.split('@')[0]}.log"
        self.schedule = Path(tempfile.mkdtemp()) / "beat-schedule"
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_QUEUE": self.queue,
            "HANGAR_DRIVER": self.driver,
            "HANGAR_TEST_SITE": settings.HANGAR_SITE,
            "HANGAR_NODE_IMAGE": settings.HANGAR_NODE_IMAGE,
            "HANGAR_SWEEP_SECONDS": SWEEP_SECONDS,
            **self.extra_env,
        }
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "config", "worker", "-B",
                "--scheduler=celery.beat:PersistentScheduler", f"--schedule={self.schedule}",
                "--pool=threads", "--concurrency=4", f"--queues={self.queue}",
                f"--hostname={self.name}", "--without-gossip", "--without-mingle",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while not app.control.ping(destination=[self.name], timeout=0.3):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start; see {self.log_path}")
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            # The embedded beat is a child process: the crash takes it too, or an orphaned
            # beat would go on sending sweeps to later tests' workers.
            subprocess.run(["pkill", "-KILL", "-P", str(self.process.pid), "-f", "celery"])
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
