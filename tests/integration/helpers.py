from __future__ import annotations

import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django.conf import settings
from django.db import connection

from compute.drivers import Driver, build_driver
from compute.drivers.base import LABEL_COMPUTE, LABEL_SITE
from compute.models import Compute, EventVerb, Node, NodeState
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


# Counting nodes over a whole run ------------------------------------------------------
# A sample every 50 ms misses an overshoot that lasts less; these count every node the
# compute ever claimed, from what Hangar wrote, and every container the engine ever ran.

NODE_ENDED = (EventVerb.NODE_REMOVED, EventVerb.NODE_UNUSABLE, EventVerb.NODE_PREEMPTED)
NODE_NAME = re.compile(r"\bn-(\d+)\b")


@dataclass
class NodeLife:
    """One claimed node number: from the event announcing it to the one ending it."""

    index: int
    added: datetime
    ended: datetime | None = None


def node_lives(compute: Compute) -> dict[int, NodeLife]:
    """Every node number the compute ever claimed, with when it was announced and ended.

    The event log is checked against the claim counter (`next_node_index`, which every
    claim advances): a number claimed without its "Adding" event, or announced twice,
    fails here instead of escaping the count. A node ended without an event of its own
    (a failed start) ends at its row's `ended_at`."""
    lives: dict[int, NodeLife] = {}
    events = compute.events.filter(verb__in=(EventVerb.NODE_ADDED, *NODE_ENDED)).order_by(
        "created_at", "id"
    )
    for verb, message, at in events.values_list("verb", "message", "created_at"):
        if verb == EventVerb.NODE_ADDED:  # "Adding n-4, n-5 (why)."
            names = message.removeprefix("Adding ").split(" (", 1)[0].split(", ")
            for index in (int(name.removeprefix("n-")) for name in names):
                assert index not in lives, f"n-{index} was claimed twice: {message}"
                lives[index] = NodeLife(index, at)
        else:
            found = NODE_NAME.search(message)
            assert found and int(found[1]) in lives, f"an end of an unannounced node: {message}"
            life = lives[int(found[1])]
            life.ended = life.ended or at
    for index, ended_at in Node.objects.filter(compute=compute, ended_at__isnull=False).values_list(
        "index", "ended_at"
    ):
        if index in lives and lives[index].ended is None:
            lives[index].ended = ended_at
    claimed = set(range(1, Compute.objects.get(pk=compute.pk).next_node_index))
    assert set(lives) == claimed, f"claimed {sorted(claimed)}, announced {sorted(lives)}"
    return lives


Moment = TypeVar("Moment", datetime, int)


def peak_overlap(spans: Iterable[tuple[Moment, Moment | None]]) -> int:
    """The most spans (start, end or None for still open) open at one moment; an end and
    a start at the same moment do not overlap."""
    moments: list[tuple[Moment, int]] = []
    for start, end in spans:
        moments.append((start, 1))
        if end is not None:
            moments.append((end, -1))
    peak = open_now = 0
    for _, step in sorted(moments):  # at one moment, -1 (an end) sorts before +1
        open_now += step
        peak = max(peak, open_now)
    return peak


def peak_claimed_nodes(compute: Compute) -> int:
    """The most nodes the compute held at once, over its whole life so far."""
    return peak_overlap((life.added, life.ended) for life in node_lives(compute).values())


class ContainerEvents:
    """The engine's start and die events of this site's containers, read live while the
    block runs (`with ContainerEvents() as events:`), for `peak_running`. Not read back
    from the engine's history afterwards: it keeps only its last 256 events of every kind,
    and a busy engine (each job's execs and archive reads are events too) pushes a test's
    starts out of it before the test asks."""

    def __enter__(self) -> ContainerEvents:
        import docker

        self.seen: list[dict] = []
        self.stream = docker.from_env().events(
            since=f"{time.time():.9f}",  # from now, also what happens before the stream is up
            filters={
                "type": "container",
                "label": [f"{LABEL_SITE}={settings.HANGAR_SITE}"],
                "event": ["start", "die"],
            },
            decode=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        try:
            for event in self.stream:
                self.seen.append(event)
        except Exception:  # noqa: S110 (the stream closed under it: the block ended)
            pass

    def __exit__(self, *exc: object) -> None:
        self.stream.close()
        self.reader.join(timeout=5)

    def peak_running(self, compute: Compute) -> int:
        """The most containers of the compute the engine ran at at once (from its start
        and die events, not a sample of what is running)."""
        time.sleep(0.5)  # the last events on their way
        running: dict[str, int] = {}  # container id -> when it started (ns)
        spans: list[tuple[int, int | None]] = []
        for event in list(self.seen):
            if event["Actor"]["Attributes"].get(LABEL_COMPUTE) != str(compute.pk):
                continue
            container = event["Actor"]["ID"]
            if event["Action"] == "start":
                running[container] = event["timeNano"]
            elif container in running:
                spans.append((running.pop(container), event["timeNano"]))
        spans += [(started, None) for started in running.values()]
        return peak_overlap(spans)
