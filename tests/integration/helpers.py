from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from compute.drivers import Driver, build_driver
from compute.models import Compute, Node, NodeState
from compute.models.states import LIVE_NODE_STATES


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.05)


def driver_named(name: str) -> Driver:
    return build_driver(name, settings.HANGAR_SITE)


def containers(driver: Driver, compute: Compute) -> list:
    return driver.list_nodes(compute.pk)


def running_containers(driver: Driver, compute: Compute) -> set[int]:
    return {o.node_id for o in driver.list_nodes(compute.pk) if o.running}


def live_node_ids(compute: Compute) -> set[int]:
    return set(
        Node.objects.filter(compute=compute, state__in=LIVE_NODE_STATES).values_list(
            "pk", flat=True
        )
    )


def converged(driver: Driver, compute: Compute, count: int, state: str) -> bool:
    """The rows say `count` idle nodes and `state`, and exactly those containers run."""
    compute.refresh_from_db()
    idle = set(
        Node.objects.filter(compute=compute, state=NodeState.IDLE).values_list("pk", flat=True)
    )
    observed = driver.list_nodes(compute.pk)
    return (
        compute.state == state
        and len(idle) == count
        and live_node_ids(compute) == idle
        and {o.node_id for o in observed if o.running} == idle
        and len(observed) == count
    )


def run_together(*calls: Callable[[], object]) -> list[object]:
    """Start every call at the same instant, each on its own thread and database
    connection; a call's exception is returned in its place, for the test to inspect."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = calls[index]()
        except Exception as error:
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results
