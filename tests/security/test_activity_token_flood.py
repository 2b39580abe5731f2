"""Attack: flooding an instance's activity endpoint with wrong tokens (issue 12, point 6).

On main only accepted calls were counted, and per web process (local-memory cache): a
wrong-token flood was answered 401 forever, by every process. Now failures count per client
address and per instance in the shared Redis cache. Two real `manage.py runserver`
processes on the test database and one Redis serve the calls, alternately, their clocks
frozen at one moment (mid-minute): every call counts in one window, and waits on nothing.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.urls import reverse

from compute.models import Compute, ComputeKind, ComputeState, VmSize
from compute.rules import idle
from tests.support.factories import UserFactory, WorkspaceFactory
from tests.support.worker import ARTIFACTS, ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)

FAILURES = 6  # HANGAR_ACTIVITY_FAILURES_PER_MINUTE of the web processes
ACCEPTED = 3  # HANGAR_ACTIVITY_RATE_PER_MINUTE of the web processes
# A second loopback address as the client's: another REMOTE_ADDR, still no traffic off host.
OTHER_CLIENT = "127.0.0.2"
# The web processes' frozen wall clock: 30 s into a minute, so a window ends in 30 s.
FROZEN_AT = "2026-03-27T12:00:30+00:00"
RETRY_AFTER = "30"


@dataclass
class Answer:
    status: int
    retry_after: str | None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def web_processes(count: int, **extra_env: str) -> Iterator[list[int]]:
    """`count` runserver processes sharing the test database and Redis, their wall clocks
    frozen at FROZEN_AT; all are killed when the block ends, however it ends."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "HANGAR_TEST_SITE": settings.HANGAR_SITE,
        # Shared by these processes alone: no other test's counters.
        "HANGAR_CACHE_PREFIX": f"{settings.HANGAR_SITE}-flood-{uuid.uuid4().hex[:8]}",
        **extra_env,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    processes: list[subprocess.Popen] = []
    ports = [free_port() for _ in range(count)]
    try:
        for port in ports:
            # --noreload: one process per server, so terminate() leaves no child behind.
            command = [
                sys.executable,
                "-m",
                "tests.support.frozen_clock",
                FROZEN_AT,
                "runserver",
                "--noreload",
                f"127.0.0.1:{port}",
            ]
            with open(ARTIFACTS / f"runserver-{port}.log", "w") as log:
                processes.append(
                    subprocess.Popen(
                        command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        for port, process in zip(ports, processes, strict=True):
            wait_until_listening(port, process)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_listening(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"runserver on {port} exited; see test-artifacts/")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"runserver on {port} did not listen within 60 s")


def report(port: int, pk: int, token: str, client: str = "127.0.0.1") -> Answer:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=15, source_address=(client, 0)
    )
    try:
        connection.request(
            "POST",
            reverse("compute:activity", args=[pk]),
            body=b'{"source": "test"}',
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        return Answer(response.status, response.getheader("Retry-After"))
    finally:
        connection.close()


def running_instance(name: str) -> tuple[Compute, str]:
    token, digest = idle.new_token()
    owner = UserFactory()
    compute = Compute.objects.create(
        workspace=WorkspaceFactory(),
        name=name,
        kind=ComputeKind.INSTANCE,
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        created_by=owner,
        assigned_to=owner,
        max_nodes=1,
        state=ComputeState.RUNNING,
        activity_token_hash=digest,
    )
    return compute, token


def test_wrong_tokens_are_throttled_across_two_web_processes_sharing_redis(catalog):
    box, token = running_instance("box")
    other, other_token = running_instance("other")
    with web_processes(
        2,
        HANGAR_ACTIVITY_FAILURES_PER_MINUTE=str(FAILURES),
        HANGAR_ACTIVITY_RATE_PER_MINUTE=str(ACCEPTED),
    ) as (first, second):
        # Wrong tokens, alternately to each process: one count, not one per process.
        answers = [
            report((first, second)[n % 2], box.pk, "hgr_wrong").status for n in range(FAILURES)
        ]
        assert answers == [401] * FAILURES
        for port in (first, second):
            flooded = report(port, box.pk, "hgr_wrong")
            assert flooded.status == 429
            assert flooded.retry_after == RETRY_AFTER  # the frozen window's end
            # Locked out, the client is not even checked: the right token gets 429 too.
            assert report(port, box.pk, token).status == 429
            # The lock is on the address, across instances.
            assert report(port, other.pk, other_token).status == 429

        # From another address, the flooded instance stays locked (its own count), but
        # other instances answer, within their accepted-call limit across processes.
        assert report(second, box.pk, token, client=OTHER_CLIENT).status == 429
        accepted = [
            report((first, second)[n % 2], other.pk, other_token, client=OTHER_CLIENT)
            for n in range(ACCEPTED + 1)
        ]
        assert [a.status for a in accepted] == [200] * ACCEPTED + [429]
        assert accepted[-1].retry_after == RETRY_AFTER
    other.refresh_from_db()
    assert other.last_activity == "activity from test"
