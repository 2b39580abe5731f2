"""Node hosts from the worker's side: the driver over every host's engine, placing a new
node on a host with room, each host's health (a sweep step), draining.

Placement takes a row lock on the ready hosts and counts what their live nodes hold in
one query, so two workers placing at once never overfill a host, and the cost per node is
the same with 2 hosts or 200. A node that fits nowhere waits (PREPARING, no host) with the
reason, like a quota shortfall, and is placed by a later pass once there is room."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.utils import timezone
from redis.exceptions import LockError

from compute.drivers import Driver, get_driver
from compute.lib import secrets, serving_load
from compute.lib.image_copies import note_copy
from compute.models import Compute, HostState, Node, NodeHost, NodeState
from compute.models.events import EventVerb, record
from compute.models.hosts import GIB, HOLDING, held_by_host

log = logging.getLogger(__name__)
CONTAINER_NODE = re.compile(r"-c(\d+)-n(\d+)$")
WAITS = "waits: no host has room"
PLACEMENT_LOCK = "hangar-node-placement"
PING_SECONDS = 2.0  # a look at each host at most this often, each look at most this long


# The driver ------------------------------------------------------------------------------


def current_driver() -> Driver:
    """The default engine's driver while no host is registered (as before hosts existed);
    with hosts, one that hands each call to the engine of the node it is about."""
    # The Docker SDK is loaded only here, when the driver is: a worker starts without it.
    from compute.drivers.docker import DockerDriver
    from compute.drivers.hosts import Engine, MultiHostDriver

    default = get_driver()
    if not isinstance(default, DockerDriver):
        return default  # the local and noop drivers have no hosts
    hosts = list(NodeHost.objects.all())
    if not hosts:
        return default
    grace = timedelta(seconds=settings.HANGAR_HOST_GRACE_SECONDS)
    now = timezone.now()
    engines = []
    for host in hosts:
        since = host.unreachable_since
        down = since is not None
        lost = since is not None and now - since > grace
        engines.append(
            Engine(
                name=host.name,
                url=host.docker_url,
                tls=tls_files(host),
                cpus=host.capacity_cpus or None,
                down=down and not lost,
                lost=lost,
            )
        )
    return MultiHostDriver(
        settings.HANGAR_SITE, default, engines, Locator(), on_copy=note_copy, copy_lock=copy_lock
    )


class Locator:
    """Container name → its node's host name ("" for the default engine); one query per
    container, remembered for this driver's life (a reconcile pass)."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self.known:
            match = CONTAINER_NODE.search(name)
            host = None
            if match:
                host = (
                    Node.objects.filter(pk=int(match.group(2)))
                    .values_list("host__name", flat=True)
                    .first()
                )
            self.known[name] = host or ""
        return self.known[name]


def tls_files(host: NodeHost) -> tuple[str, str, str] | None:
    """The host's TLS material decrypted into a folder only this user reads."""
    if not (host.tls_ca and host.tls_cert and host.tls_key):
        return None
    folder = Path(settings.LOCAL_DIR) / "host-tls" / host.name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder.parent, 0o700)
    paths = []
    for name, token in (
        ("ca.pem", host.tls_ca),
        ("cert.pem", host.tls_cert),
        ("key.pem", host.tls_key),
    ):
        path = folder / name
        data = secrets.decrypt(token).encode()
        if not path.exists() or path.read_bytes() != data:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
        paths.append(str(path))
    return paths[0], paths[1], paths[2]


@contextmanager
def copy_lock(host: str, image: str) -> Iterator[None]:
    """One copy of an image to a host at a time, across workers (the others wait, then
    find it there)."""
    lock = serving_load.client().lock(
        f"hangar:{settings.HANGAR_SITE}:image-copy:{host}:{image}",
        timeout=1800,
        blocking_timeout=900,
    )
    if not lock.acquire():
        yield
        return
    try:
        yield
    finally:
        try:
            lock.release()
        except LockError:  # expired: the copy took longer than the lock
            log.warning("image copy lock of %s on %s expired", image, host)


# Placement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    cpus: float
    memory_bytes: int
    gpus: int


@dataclass(frozen=True)
class Placed:
    host: NodeHost | None
    why: str  # the decision, or why the node waits


def need_of(compute: Compute) -> Need:
    size = compute.vm_size
    assert size is not None
    return Need(
        cpus=size.vcpus * settings.HANGAR_CPU_SCALE,
        memory_bytes=int(float(size.memory_gib) * settings.HANGAR_MEMORY_SCALE * GIB),
        gpus=size.gpus,
    )


def hosts_exist() -> bool:
    return NodeHost.objects.exists()


# The ready host with room that placement picks, found by the database in one statement:
# what the live nodes on each host hold, grouped once (MATERIALIZED: with no statistics the
# planner would regroup them for each host), against each host's capacity, the fullest
# (binpack) or emptiest (spread) that fits first. Python sees one row, so a
# placement costs the same with 2 hosts or 200. Columns and tables are Django's names.
PICK = """
WITH held AS MATERIALIZED (
  SELECT n.host_id, SUM(s.vcpus) * %(cpu_scale)s AS cpus,
         SUM(s.memory_gib) * %(memory_scale)s * %(gib)s AS memory, SUM(s.gpus) AS gpus
  FROM compute_node n
  JOIN compute_compute c ON c.id = n.compute_id
  JOIN compute_vmsize s ON s.id = c.vm_size_id
  WHERE n.host_id IS NOT NULL AND n.ended_at IS NULL AND n.state IN ({holding})
  GROUP BY n.host_id
), room AS MATERIALIZED (
  SELECT id, COALESCE(cpus_override, cpus) AS cap_cpus,
         COALESCE(memory_gib_override * %(gib)s, memory_bytes) AS cap_memory,
         COALESCE(gpus_override, gpus) AS cap_gpus
  FROM compute_nodehost
  WHERE state = 'ready' AND (on_this_machine OR NOT %(local_only)s)
)
SELECT h.id, h.cap_cpus - COALESCE(u.cpus, 0) AS free_cpus
FROM room h LEFT JOIN held u ON u.host_id = h.id
WHERE h.cap_cpus > 0 AND h.cap_memory > 0
  AND h.cap_cpus - COALESCE(u.cpus, 0) >= %(cpus)s - 0.000000001
  AND h.cap_memory - COALESCE(u.memory, 0) >= %(memory)s
  AND h.cap_gpus - COALESCE(u.gpus, 0) >= %(gpus)s
ORDER BY free_cpus {direction}, h.id
LIMIT 1
"""


def place(compute: Compute, node: Node) -> Placed:
    """A host for `node`, written on its row; or None with why it waits. Placements are
    one at a time across workers (a transaction-long advisory lock on PostgreSQL, taken
    here and released when the caller's transaction ends), so what the hosts hold is never
    read by two placers at once: no host is overfilled."""
    need = need_of(compute)
    placement_lock()
    spread = compute.workspace.node_placement == "spread"
    # Binpack: the fullest host that fits (least left); spread: the emptiest.
    # The states are this code's own constants (never input): written into the statement.
    holding = ", ".join(f"'{state}'" for state in HOLDING)
    sql = PICK.format(direction="DESC" if spread else "ASC", holding=holding)
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "gib": GIB,
                "local_only": compute.is_serving or compute.is_batch,
                "cpu_scale": settings.HANGAR_CPU_SCALE,
                "memory_scale": settings.HANGAR_MEMORY_SCALE,
                "cpus": need.cpus,
                "memory": need.memory_bytes,
                "gpus": need.gpus,
            },
        )
        picked = cursor.fetchone()
    if picked is None:
        return Placed(None, why_waiting(compute, node, need))
    host = NodeHost.objects.get(pk=picked[0])
    Node.objects.filter(pk=node.pk, host__isnull=True).update(host_id=host.pk)
    node.host_id, node.host = host.pk, host
    free = max(float(picked[1]), 0.0)
    return Placed(
        host,
        f"{node.name} on {host.name}: {free:g} of {host.capacity_cpus:g} cores free"
        f" ({'spread' if spread else 'binpack'}).",
    )


def placement_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [PLACEMENT_LOCK])
    else:  # SQLite (development): writes are one at a time; this makes the read one too
        NodeHost.objects.select_for_update().filter(pk=0).exists()


def why_waiting(compute: Compute, node: Node, need: Need) -> str:
    """Each ready host's room, as the user reads it (only when a node waits)."""
    hosts = list(NodeHost.objects.filter(state=HostState.READY).order_by("pk"))
    if compute.is_serving or compute.is_batch:
        hosts = [host for host in hosts if host.on_this_machine]
    used = held_by_host([host.pk for host in hosts])
    looked = []
    for host in hosts:
        if not host.capacity_cpus or not host.capacity_memory_bytes:
            looked.append(f"{host.name}: capacity not read yet")
            continue
        free = host.capacity_cpus - used.get(host.pk, (0.0, 0, 0))[0]
        looked.append(f"{host.name} {max(free, 0):g} of {host.capacity_cpus:g} cores free")
    where = "; ".join(looked) or "no ready host"
    gpu = f", {need.gpus} GPU(s)" if need.gpus else ""
    return (
        f"{node.name} {WAITS} for {need.cpus:g} cores, "
        f"{need.memory_bytes / GIB:.2f} GiB{gpu} ({where})."
    )


# Health (a sweep step) -----------------------------------------------------------------


@dataclass
class HealthReport:
    due: list[int]  # computes to reconcile: their nodes' host went or came back
    changed: list[str]


def check_hosts() -> HealthReport:
    """Each host looked at (at most every PING_SECONDS, in parallel, each look bounded):
    unreachable marked so; past the grace, its nodes written off (the reconcile replaces
    them and requeues their jobs); a host back is ready again; a new host's capacity is
    read from its engine; draining hosts lose their idle nodes."""
    report = HealthReport([], [])
    # Disabled and draining hosts too: their nodes still run there, and a look that
    # fails must write them off as for any host (their state stays what the admin chose).
    hosts = [h for h in NodeHost.objects.all() if due_for_look(h)]
    if hosts:
        with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
            futures = {pool.submit(look_at, host): host for host in hosts}
            wait(futures, timeout=PING_SECONDS + 1)
            for future, host in futures.items():
                info = future.result() if future.done() and not future.exception() else None
                error = "" if info else str(future.exception() or "no answer in time")
                settle(host, info, error, report)
    write_off_lost(report)
    drain(report)
    return report


def due_for_look(host: NodeHost) -> bool:
    """At most one look every PING_SECONDS, however many sweeps run (SET NX with expiry)."""
    key = f"hangar:{settings.HANGAR_SITE}:host-look:{host.pk}"
    return bool(serving_load.client().set(key, time.time(), nx=True, px=int(PING_SECONDS * 1000)))


def look_at(host: NodeHost) -> dict:
    from docker.tls import TLSConfig

    from compute.drivers.docker import tls_client

    files = tls_files(host)
    tls = None
    if files is not None:
        tls = TLSConfig(client_cert=(files[1], files[2]), ca_cert=files[0], verify=True)
    client = tls_client(host.docker_url, int(PING_SECONDS), tls)
    try:
        return client.info()
    finally:
        client.close()


def settle(host: NodeHost, info: dict | None, error: str, report: HealthReport) -> None:
    now = timezone.now()
    if info is not None:
        fields: dict[str, object] = {"last_seen_at": now, "last_error": ""}
        if info.get("NCPU"):
            fields |= {
                "cpus": float(info["NCPU"]),
                "memory_bytes": int(info.get("MemTotal") or 0),
                "gpus": nvidia_gpus(info),
            }
        if host.unreachable_since is not None:
            fields |= {"unreachable_since": None, "nodes_lost_at": None}
            if host.state == HostState.UNREACHABLE:
                fields["state"] = HostState.READY
            report.changed.append(f"{host.name} reachable again")
            record_on_host(host, EventVerb.CAME_BACK, f"Node host {host.name} is reachable again.")
            report.due += computes_on(host)
        NodeHost.objects.filter(pk=host.pk).update(**fields)
        return
    if host.unreachable_since is not None:
        NodeHost.objects.filter(pk=host.pk).update(last_error=error[:500])
        return
    # A ready host becomes unreachable; a draining or disabled one keeps the admin's state
    # (nothing is placed there either way) and is known unreachable by its `since`.
    state = HostState.UNREACHABLE if host.state == HostState.READY else host.state
    NodeHost.objects.filter(pk=host.pk, unreachable_since__isnull=True).update(
        state=state, unreachable_since=now, last_error=error[:500]
    )
    report.changed.append(f"{host.name} unreachable")
    grace = settings.HANGAR_HOST_GRACE_SECONDS
    record_on_host(
        host,
        EventVerb.WENT_UNREACHABLE,
        f"Node host {host.name} is unreachable ({error[:200]}); its nodes are written off "
        f"after {grace} s unless it comes back.",
    )
    report.due += computes_on(host)


def nvidia_gpus(info: dict) -> int:
    """NVIDIA devices the engine advertises (dockerd --node-generic-resource)."""
    count = 0
    for resource in info.get("GenericResources") or []:
        for spec in resource.values():
            kind = str(spec.get("Kind", ""))
            if "GPU" in kind.upper():
                count += int(spec.get("Value", 1)) if "Value" in spec else 1
    return count


def write_off_lost(report: HealthReport) -> None:
    """Hosts unreachable past the grace: their computes are reconciled once, with the host
    left out, so their nodes read as gone (replaced elsewhere, jobs requeued)."""
    cutoff = timezone.now() - timedelta(seconds=settings.HANGAR_HOST_GRACE_SECONDS)
    for host in NodeHost.objects.filter(unreachable_since__lt=cutoff, nodes_lost_at__isnull=True):
        NodeHost.objects.filter(pk=host.pk).update(nodes_lost_at=timezone.now())
        report.changed.append(f"{host.name}'s nodes written off")
        record_on_host(
            host,
            EventVerb.NODE_UNUSABLE,
            f"Node host {host.name} has been unreachable for more than "
            f"{settings.HANGAR_HOST_GRACE_SECONDS} s: its nodes are written off and replaced.",
        )
        report.due += computes_on(host)


def drain(report: HealthReport) -> None:
    """A draining host's idle nodes go (the scale step places any replacement elsewhere)."""
    idle = Node.objects.filter(
        host__state=HostState.DRAINING, state=NodeState.IDLE, ended_at__isnull=True
    ).select_related("compute", "host")
    for node in idle:
        if Node.objects.filter(pk=node.pk, state=NodeState.IDLE).update(state=NodeState.LEAVING):
            assert node.host is not None
            record(
                node.compute,
                EventVerb.NODE_REMOVED,
                f"Node {node.name} leaves: its host {node.host.name} is draining.",
            )
            report.due.append(node.compute_id)


def computes_on(host: NodeHost) -> list[int]:
    return list(
        Node.objects.filter(host=host, ended_at__isnull=True)
        .values_list("compute_id", flat=True)
        .distinct()
    )


def record_on_host(host: NodeHost, verb: EventVerb, message: str) -> None:
    """Host events go on the log of each compute with a node there (events are a
    compute's); the host page shows the host's own state and error."""
    log.info(message)
    for compute in Compute.objects.filter(pk__in=computes_on(host)):
        record(compute, verb, message, level="warning")
