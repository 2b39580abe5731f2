"""Fixtures shared by the whole suite: named users per role (as in healthchecks' hc/test.py),
and the real components: a Celery worker process on the test database, the node image."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from compute.lib import images
from config.celery import app
from tests.support import leftovers
from tests.support.api import api_as  # noqa: F401  (a fixture, for tests/api and tests/security)
from tests.support.catalog import ensure_catalog
from tests.support.teams import Team, make_team
from tests.support.worker import CeleryProcess, Worker
from tests.support.worker_log import unexpected_errors


@pytest.fixture(autouse=True)
def fresh_cache(settings) -> None:
    """Each test counts in a cache namespace of its own (the cache is a shared Redis): rate
    limits and cached figures of an earlier test, or of another run on the same Redis
    database, never leak into it. Web processes a test starts get their own prefix too."""
    default = settings.CACHES["default"]
    prefix = f"{default.get('KEY_PREFIX', '')}-{uuid.uuid4().hex[:8]}"
    settings.CACHES = {**settings.CACHES, "default": {**default, "KEY_PREFIX": prefix}}


@pytest.fixture
def team(db) -> Team:
    return make_team()


@pytest.fixture(autouse=True)
def catalog_present(request: pytest.FixtureRequest) -> None:
    """Every test with a database finds the VM catalog of the data migration, whatever ran
    before it: a transactional test flushes the database when it ends, and in a shuffled
    order (`--random-order`) a test that reads the catalog may come right after one. One
    query when the catalog is there; inside the test's transaction when it is not."""
    marker = request.node.get_closest_marker("django_db")
    names = request.fixturenames
    transactional = (
        "transactional_db" in names
        or "live_server" in names
        or bool(marker and (marker.kwargs.get("transaction") or marker.args[:1] == (True,)))
    )
    if transactional:
        request.getfixturevalue("transactional_db")
    elif marker or "db" in names:
        request.getfixturevalue("db")
    else:
        return
    ensure_catalog()


@pytest.fixture(scope="session", autouse=True)
def fresh_job_records() -> None:
    """Job ids restart with each test database, and a run's record is kept on purpose (a
    relaunch must find it): records, local nodes and host-process folders of an earlier
    session go (its processes were ended by its own last check, nothing_left_behind)."""
    from compute.lib import jobfiles

    def writable_then_retry(function, path, _error) -> None:
        os.chmod(os.path.dirname(path), 0o700)  # read-only code snapshots, as non-root
        function(path)

    # Local nodes too: container names come from ids, which restart as well, so a node
    # folder an earlier session left would be "adopted" by this session's compute.
    for folder in (
        jobfiles.runs_root(),
        jobfiles.code_root(),
        jobfiles.jobs_root() / "outputs",  # jobs' output files (compute/lib/output_store.py)
        settings.HANGAR_MODELS_DIR,  # registered models: their ids restart too
        settings.HANGAR_SERVING_DIR,
        settings.HANGAR_HOST_WORK_DIR,
        settings.HANGAR_LOCAL_NODES_DIR,
    ):
        if os.path.lexists(folder):
            shutil.rmtree(folder, onerror=writable_then_retry)


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
def catalog(transactional_db, workers) -> Iterator[None]:
    ensure_catalog()
    yield
    # Before the database is flushed (TRUNCATE) for the next test, no worker may hold a
    # row lock in it: a sweep racing the flush deadlocks on PostgreSQL.
    workers.stop()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Pass or fail, a session ends with no container of its site and none of its
    processes; if any remained, they are removed and the session fails, naming them.
    Set up first, so torn down last: after every other fixture cleaned up."""
    yield
    running = [process for process in CeleryProcess.started if process.alive]
    leftovers.stop_celery()  # first: no sweep may recreate what is removed next
    found = leftovers.find()
    found.celery = running  # the workers fixture stopped its own: these leaked
    if found:
        still = leftovers.remove(found)
        pytest.fail(
            f"the test session left behind {found.summary()} (now removed"
            f"{'' if not still else '; NOT removed: ' + still.describe()}):\n{found.describe()}",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def worker_logs_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test fails on an ERROR or a traceback in what its celery processes logged while
    it ran (their shutdown included: this is torn down after the fixtures that stop
    them), unless the test expects it: @pytest.mark.worker_errors_expected(regex, ...)."""
    marks = {id(process): process.log_size() for process in CeleryProcess.started}
    yield
    allowed = [
        re.compile(pattern)
        for marker in request.node.iter_markers("worker_errors_expected")
        for pattern in marker.args
    ]
    problems = [
        f"{process.log_path.name}: {line}"
        for process in CeleryProcess.started
        for line in unexpected_errors(process.log_entries(since=marks.get(id(process), 0)), allowed)
    ]
    if problems:
        pytest.fail("errors in the worker log:\n" + "\n".join(problems), pytrace=False)
