"""Which container is which node's: matched by the node's deterministic name and, once the
node recorded it, its container id (`Node.container_ref`) — never by labels alone.

Labels are written by whoever creates a container, so a look-alike carrying a node's exact
labels (a leftover, a hand-made copy) must not stand in for the real one: it would hide the
node's loss and keep its job "running" forever. Everything of ours that matches no node is
a stray, to be removed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from compute.drivers.base import NodeObservation, container_name


@dataclass(frozen=True)
class NodeRef:
    """What the database knows of a node's container."""

    node_id: int
    compute_id: int
    container_ref: str  # "" until the node's container was started and recorded


def match(
    site: str, observations: Iterable[NodeObservation], nodes: Iterable[NodeRef]
) -> tuple[dict[int, NodeObservation], list[NodeObservation]]:
    """({node id: its container}, strays)."""
    wanted = {container_name(site, node.compute_id, node.node_id): node for node in nodes}
    matched: dict[int, NodeObservation] = {}
    strays: list[NodeObservation] = []
    for observation in observations:
        node = wanted.get(observation.name)
        if (
            node is not None
            and observation.node_id == node.node_id
            and observation.compute_id == node.compute_id
            and (not node.container_ref or observation.ref == node.container_ref)
        ):
            matched[node.node_id] = observation
        else:
            strays.append(observation)
    return matched, strays
