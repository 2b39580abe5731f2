"""A session leaves nothing behind, pass or fail: what it leaked is found (and only what
is its own), removed, and named in the failure it causes. And a test fails on an error
its worker logged, unless it says it expects that one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import docker
import pytest
from django.conf import settings

from tests.support import leftovers
from tests.support.leftovers import Site
from tests.support.worker import ROOT

pytestmark = pytest.mark.integration
NOISY = "tests/integration/noisy_session.py"


def site_named(label: str) -> Site:
    """The site's folders as config/settings_test.py derives them from its label."""
    return Site(
        label,
        (
            f"/var/tmp/hangar-{label}",  # noqa: S108
            str(settings.LOCAL_DIR / f"test-nodes-{label}"),
            str(Path.home() / ".hangar" / label),
        ),
    )


def own_session_environment(site: str) -> dict[str, str]:
    """A pytest of its own: its site, and its own database (pytest-django would drop and
    recreate this session's test database otherwise)."""
    # Not an xdist worker, although this session may be one: its label stays as given.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    environment["HANGAR_TEST_SITE"] = site
    environment.pop("HANGAR_HOST_WORK_DIR", None)  # the site's own, by its label
    if url := environment.get("DATABASE_URL"):
        parts = urlsplit(url)
        name = f"{parts.path.rstrip('/')}_{site.replace('-', '_')}"
        environment["DATABASE_URL"] = urlunsplit(parts._replace(path=name))
    return environment  # SQLite: the test database file is per site already


def test_a_leaking_session_fails_naming_its_leftovers_and_removes_only_them(node_image):
    site = site_named(f"{settings.HANGAR_SITE}-leak"[:28])
    # Another run on this machine, whose site name starts the same: none of it is touched.
    other = site_named(site.label + "2")
    client = docker.from_env()
    other_container = client.containers.run(
        node_image,
        list(settings.HANGAR_NODE_COMMAND),
        name=f"hangar-{other.label}-c1-n1",
        labels={"hangar.site": other.label},
        network_mode="none",
        detach=True,
    )
    Path(other.roots[0]).mkdir(exist_ok=True)
    other_process = subprocess.Popen(["sleep", "120"], cwd=other.roots[0])
    queue = f"hangar-leaky-{uuid.uuid4().hex[:8]}"
    environment = {**own_session_environment(site.label), "LEAKY_QUEUE": queue}
    try:
        session = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "tests/integration/leaky_session.py"],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=180,
        )
        report = session.stdout + session.stderr
        assert session.returncode == 1, report
        assert "fails on purpose" in report  # the test's own failure is still reported
        assert "the test session left behind" in report, report
        assert f"container hangar-{site.label}-c1-n1 (running)" in report
        assert f"/nodes/hangar-{site.label}-c1-n2" in report  # the local node's process
        assert "/runs/1.a0-r0" in report  # the host-process run
        assert "compute.drivers.host_supervisor" in report  # and their supervisors
        assert "celery process test-" in report
        assert "NOT removed" not in report
        # Nothing of it is left, by its label, its folders, or its worker's queue.
        assert not leftovers.find(site)  # its containers and host processes
        assert not any(queue in " ".join(p.argv) for p in leftovers.all_processes().values())
        # The other run's container and process live on.
        other_container.reload()
        assert other_container.status == "running"
        assert other_process.poll() is None
    finally:
        other_process.kill()
        other_process.wait()
        other_container.remove(force=True)
        for folder in (*site.roots, *other.roots):
            shutil.rmtree(folder, ignore_errors=True)
        for kind in ("jobs", "nodes"):
            shutil.rmtree(settings.LOCAL_DIR / f"test-{kind}-{site.label}", ignore_errors=True)


def test_an_error_in_the_worker_log_fails_the_test_unless_it_expects_it():
    session = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", NOISY],
        cwd=ROOT,
        env=own_session_environment(f"{settings.HANGAR_SITE}-noisy"[:28]),
        capture_output=True,
        text=True,
        timeout=180,
    )
    report = session.stdout + session.stderr
    assert session.returncode == 1, report
    assert "2 passed, 1 error" in report, report
    assert "ERROR at teardown of test_an_unexpected_worker_error" in report
    # Named: the worker's log file and the line.
    assert re.search(
        r"errors in the worker log:\nworker-test-\w+\.log: \[[^]]+: ERROR/MainProcess\] "
        r"Received unregistered task of type 'hangar\.no-such-task'",
        report,
    ), report
    assert "test_an_expected_worker_error ERROR" not in report
