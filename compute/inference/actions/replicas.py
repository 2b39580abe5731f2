"""A replica's own output (its scoring server's stdout and stderr), read through the
driver, cleaned of what a tenant's process may print to fool a reader."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from compute.drivers import DriverUnavailable, get_driver
from compute.drivers.base import container_name
from compute.lib.readable import readable
from compute.models import Node

LOG_BYTES = 64 * 1024  # the most of a replica's output a page shows


@dataclass(frozen=True)
class ReplicaLog:
    text: str
    available: bool
    cut: bool  # older output is not shown
    note: str


def replica_log(node: Node) -> ReplicaLog:
    """Its last LOG_BYTES, by its deterministic container name (only this site's node of
    that row has it); what the driver cannot tell is said, not raised."""
    name = container_name(settings.HANGAR_SITE, node.compute_id, node.pk)
    try:
        found = get_driver().node_log(name, LOG_BYTES)
    except DriverUnavailable as exc:
        return ReplicaLog("", False, False, f"The replica's output cannot be read now: {exc}")
    return ReplicaLog(readable(found.output), found.available, found.cut, found.note)
