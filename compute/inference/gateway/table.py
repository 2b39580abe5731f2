"""What the gateway knows of endpoints: their key hashes, deployments, traffic shares and
ready replicas (a replica is ready once its socket is there), read from the database by
a thread every HANGAR_GATEWAY_REFRESH seconds, never on a request's path."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections

from compute.drivers.base import container_name
from compute.inference.models import Deployment, Endpoint
from compute.lib import replicas
from compute.models import Node
from compute.models.states import NODE_UP

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeploymentRoute:
    id: int
    name: str
    traffic: int
    timeout: float  # seconds
    compute_id: int | None
    sockets: tuple[str, ...]  # of its live replicas (ready when the file is there)
    target_in_flight: int = 1  # requests per replica the autoscaler aims at
    max_replicas: int = 1
    # Socket path -> the Docker id of the container that must be listening there.
    containers: dict[str, str] = field(default_factory=dict)

    def ready(self) -> list[str]:
        return [path for path in self.sockets if os.path.exists(path)]


@dataclass(frozen=True)
class EndpointRoute:
    id: int
    key_hashes: tuple[str, str]
    deployments: dict[str, DeploymentRoute] = field(default_factory=dict)


def read_routes() -> dict[tuple[str, str], EndpointRoute]:
    """Every endpoint, in three queries whatever their number."""
    close_old_connections()
    endpoints = {
        e.pk: e
        for e in Endpoint.objects.select_related("workspace").only(
            "name", "workspace__slug", "primary_key_hash", "secondary_key_hash"
        )
    }
    deployments = list(
        Deployment.objects.only(
            "endpoint_id",
            "name",
            "traffic",
            "request_timeout_ms",
            "compute_id",
            "target_in_flight",
            "max_replicas",
        )
    )
    sockets: dict[int, list[str]] = {}
    containers: dict[str, str] = {}
    live = Node.objects.filter(
        compute_id__in=[d.compute_id for d in deployments if d.compute_id],
        state__in=NODE_UP,
        ended_at=None,
    ).order_by("index")
    for compute_id, node_id, container_ref in live.values_list("compute_id", "pk", "container_ref"):
        # Container names come from (site, compute, node): so are their sockets' folders.
        path = str(replicas.socket_path(container_name(settings.HANGAR_SITE, compute_id, node_id)))
        sockets.setdefault(compute_id, []).append(path)
        containers[path] = container_ref
    routes: dict[tuple[str, str], EndpointRoute] = {}
    for endpoint in endpoints.values():
        routes[(endpoint.workspace.slug, endpoint.name)] = EndpointRoute(
            id=endpoint.pk,
            key_hashes=(endpoint.primary_key_hash, endpoint.secondary_key_hash),
        )
    for deployment in deployments:
        owner = endpoints.get(deployment.endpoint_id)
        if owner is None:
            continue
        route = routes[(owner.workspace.slug, owner.name)]
        route.deployments[deployment.name] = DeploymentRoute(
            id=deployment.pk,
            name=deployment.name,
            traffic=deployment.traffic,
            timeout=deployment.request_timeout_ms / 1000,
            compute_id=deployment.compute_id,
            sockets=tuple(sockets.get(deployment.compute_id or 0, ())),
            target_in_flight=deployment.target_in_flight,
            max_replicas=deployment.max_replicas,
            containers={
                path: containers[path] for path in sockets.get(deployment.compute_id or 0, ())
            },
        )
    return routes


class RoutingTable:
    """The latest routes, swapped whole by the refresher thread (readers never lock)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.routes: dict[tuple[str, str], EndpointRoute] = {}
        self.stopping = threading.Event()
        self.fresh = threading.Event()

    def refresh(self) -> None:
        try:
            self.routes = read_routes()
            self.fresh.set()
        except Exception:  # the database away a moment: keep the last routes
            log.exception("gateway: routes not refreshed")

    def start(self, on_tick: Callable[[], None] | None = None) -> None:
        """Reread the routes every interval; `on_tick` (the gateway's load figures for
        the autoscaler) runs after each."""

        def loop() -> None:
            while not self.stopping.is_set():
                self.refresh()
                if on_tick is not None:
                    try:
                        on_tick()
                    except Exception:  # Redis away a moment: the next tick tells
                        log.warning("gateway: load figures not published", exc_info=True)
                self.stopping.wait(self.interval)

        threading.Thread(target=loop, name="gateway-routes", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
