"""`make bench`: latency figures for the pages and the Celery round trip.

Not a test: it prints numbers for closing notes. It uses a throwaway test database and a
Celery worker of its own on the test Redis database, so it never touches `make run` data.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from config.celery import app  # noqa: E402
from config.heap import freeze_loaded  # noqa: E402
from tests.support import leftovers  # noqa: E402
from tests.support.worker import CeleryProcess  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def measure(label: str, runs: int, call: Callable[[], object]) -> None:
    call()  # warm caches and connections
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    p95 = timings[int(len(timings) * 0.95) - 1]
    print(
        f"{label:<44} n={runs:<4} p50={statistics.median(timings):7.2f} ms  "
        f"p95={p95:7.2f} ms  max={timings[-1]:7.2f} ms"
    )


def bench_pages() -> None:
    from django.core.management import call_command

    call_command("seed_demo", quiet_logins=True)
    client = Client()
    client.login(username="alice", password="hangar-alice")
    htmx = {"HTTP_HX_REQUEST": "true"}

    def get(url: str, **extra: str) -> None:
        assert client.get(url, **extra).status_code == 200

    measure("workspace list (full page)", 200, lambda: get("/w/"))
    measure("workspace overview (full page)", 200, lambda: get("/w/vision-team/"))
    measure("members panel (htmx partial)", 200, lambda: get("/w/vision-team/members/", **htmx))
    measure("catalog, all sizes (full page)", 200, lambda: get("/catalog/"))
    measure("catalog filter gpu=yes (htmx partial)", 200, lambda: get("/catalog/?gpu=yes", **htmx))


def bench_celery() -> None:
    from compute.tasks import ping
    from tests.support.worker import Worker

    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    started = time.perf_counter()
    worker = Worker(queue, "noop", {}, beat=False)
    try:
        worker.start()
        print(f"{'celery worker ready after':<44} {time.perf_counter() - started:.2f} s")
        measure(
            "ping task round trip (Redis + worker)",
            200,
            lambda: ping.delay(time.time()).get(timeout=10),
        )
    finally:
        worker.stop()


def section(module: str) -> Callable[[], None]:
    """A bench module's run(), imported only when its section is asked for."""
    return lambda: importlib.import_module(f"bench.{module}").run()


SECTIONS: dict[str, Callable[[], None]] = {
    "pages": bench_pages,
    "celery": bench_celery,
    **{
        name: section(name)
        for name in (
            "compute",
            "jobs",
            "idle",
            "quota",
            "attached",
            "scale",
            "sweep",
            "cli",
            "environments",
            "inference",
            "batch",
            "hosts",
            "page_weight",
        )
    },
}


def main() -> None:
    # `python -m bench quota jobs` runs just those sections; no argument runs them all.
    sections = sys.argv[1:] or list(SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        sys.exit(f"unknown bench section(s): {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    setup_test_environment()
    ensure_node_image()
    old_name = connection.settings_dict["NAME"]
    engine = connection.settings_dict["ENGINE"].rsplit(".", 1)[-1]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    # The code loaded, frozen out of full collections as the web process and each worker
    # process do (config/heap.py): what is timed here runs as it runs there.
    freeze_loaded(load_urls=True)
    print(f"Hangar bench · database {engine} · {os.cpu_count()} cores · {time.strftime('%F %T')}")
    failed: list[str] = []
    containers = processes = 0
    try:
        for name in sections:
            try:
                SECTIONS[name]()
            except (Exception, SystemExit) as exc:  # a timeout is a SystemExit
                failed.append(name)
                print(f"bench section {name} failed: {exc!r}")
            # Each section cleans up in `finally`; counted here, not assumed.
            left = left_behind(name)
            forget_computes()
            containers, processes = (
                containers + len(left.containers),
                processes + left.process_count,
            )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(f"left behind: {containers} containers, {processes} processes")
    if failed or containers or processes:
        sys.exit(f"bench: {len(failed)} section(s) failed ({', '.join(failed) or 'none'})")


def ensure_node_image() -> None:
    """The sections that start containers use the tests' busybox image: built here in a
    second when missing (a fresh machine has none, and nothing is ever pulled)."""
    import docker
    from django.conf import settings

    from compute.lib import images

    try:
        client = docker.from_env()
        if not images.image_exists(client, settings.HANGAR_NODE_IMAGE):
            images.build_tiny(client, settings.HANGAR_NODE_IMAGE)
    except docker.errors.DockerException as error:
        print(f"no Docker engine ({error}): the sections that start containers will fail")


def forget_computes() -> None:
    """The next section starts with no compute of an earlier one: its worker's sweep would
    bring their nodes back on its own driver (the attached section's local-driver worker
    started hundreds of host-process nodes for the sweep section's 500 computes, until the
    section timed out)."""
    from compute.inference.models import Deployment
    from compute.models import Compute, Job

    Job.objects.all().delete()  # a job protects its compute
    Deployment.objects.all().delete()  # and a deployment its replicas' cluster
    Compute.objects.all().delete()


def left_behind(section: str) -> leftovers.Leftovers:
    """What a section left of the bench site (containers, host processes, celery
    processes); named and removed, so the next section starts clean."""
    running = [process for process in CeleryProcess.started if process.alive]
    leftovers.stop_celery()
    found = leftovers.find()
    found.celery = running
    if found:
        print(f"  {section} left behind {found.summary()} (removed):")
        print("    " + found.describe().replace("\n", "\n    "))
        still = leftovers.remove(found)
        if still:
            print(f"  NOT removed: {still.describe()}")
    return found


if __name__ == "__main__":
    main()
