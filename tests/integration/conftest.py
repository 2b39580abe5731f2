"""Real components for integration tests: a Celery worker process (with its beat running
the reconcile sweep) on the test database, the real Redis, and the real Docker engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from compute import images
from compute.drivers import build_driver
from config.celery import app
from tests.catalog import ensure_catalog

ROOT = Path(__file__).resolve().parents[2]
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
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def celery_queue() -> str:
    """A queue of this test session's own, so a parallel run never steals its tasks."""
    queue = f"hangar-test-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    return queue


class WorkerPool:
    """Keeps one worker per configuration for the session; tests may kill and restart."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.current: Worker | None = None

    def get(self, driver: str = "docker", **extra_env: str) -> Worker:
        current = self.current
        alive = current and current.process and current.process.poll() is None
        if alive and current.driver == driver and current.extra_env == extra_env:
            return current
        self.stop()
        self.current = Worker(self.queue, driver, extra_env).start()
        return self.current

    def stop(self) -> None:
        if self.current:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="session")
def workers(celery_queue: str, django_db_setup, django_db_blocker) -> Iterator[WorkerPool]:
    pool = WorkerPool(celery_queue)
    yield pool
    pool.stop()


@pytest.fixture
def celery_worker(workers: WorkerPool, settings) -> str:
    settings.HANGAR_DRIVER = "local"
    return workers.get("local").name


@pytest.fixture(scope="session")
def node_image() -> str:
    """The busybox test image, built locally in about a second if it is missing."""
    import docker

    client = docker.from_env()
    if not images.image_exists(client, settings.HANGAR_NODE_IMAGE):
        images.build_tiny(client, settings.HANGAR_NODE_IMAGE)
    return settings.HANGAR_NODE_IMAGE


@pytest.fixture
def catalog(transactional_db) -> None:
    ensure_catalog()


def remove_all_nodes() -> None:
    """Whatever a test left, no container of the test site survives it."""
    for name in ("docker", "local"):
        driver = build_driver(name, settings.HANGAR_SITE)
        for observation in driver.list_nodes():
            driver.remove_node(observation.name)
