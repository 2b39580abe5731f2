from __future__ import annotations

import threading
import time
import traceback
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


def run_together(*calls: Callable[[], object], timeout: float = 60.0) -> list[object]:
    """Start every call at the same instant, each on its own thread and database
    connection; a call's exception is returned in its place, for the test to inspect.
    A call still running after `timeout` seconds has a TimeoutError in its place: a hung
    thread must fail the test, not leave a None that reads like a result."""
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

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for index, thread in enumerate(threads):
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            results[index] = TimeoutError(f"call {index} still running after {timeout} s")
    return results


def none_raised(results: list[object]) -> list[object]:
    """The results of `run_together`, after failing the test with every call's traceback
    if any call raised (or hung): a crashed thread must never pass as a quiet one."""
    errors = [
        f"call {index}:\n" + "".join(traceback.format_exception(result))
        for index, result in enumerate(results)
        if isinstance(result, BaseException)
    ]
    if errors:
        raise AssertionError("a concurrent call raised:\n" + "\n".join(errors))
    return results
