"""The scoring gateway: `POST /score/<workspace>/<endpoint>` with `Authorization: Bearer
<key>`, forwarded to a ready replica of a deployment over its Unix socket.

A small ASGI app (served by uvicorn: `gateway` in the Procfile) rather than a Django
view: a request waiting on a replica holds no Django worker, and the path from socket to
socket is a few coroutines (bench/ measures it against calling the replica directly).

- The endpoint's deployment: the one the request names (`X-Hangar-Deployment`), else one
  drawn by the traffic shares (blue/green).
- The replica: the ready one with the fewest requests in flight here. One found dead
  (connect refused, socket gone) leaves the choice at once, and a request that had not
  reached it goes to another ready replica (at most RETRIES); one already in it is a 502.
- 401 for a missing or wrong key, 404 for an endpoint or deployment that is not there,
  413 over HANGAR_SCORE_BODY_LIMIT, 504 past the deployment's timeout, 502 with why when
  the replica fails, the replica's own answer otherwise.
- No replica ready (scaling from zero, or starting): the request waits for one, until its
  timeout; past HANGAR_SCORE_QUEUE_LIMIT waiting requests, 503 with Retry-After. A
  deployment at zero replicas is asked to start one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import random
import re
import time
from collections import defaultdict
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from asgiref.sync import sync_to_async  # noqa: E402 (after django.setup)
from django.conf import settings  # noqa: E402

from compute.inference.gateway.replica_client import ReplicaClient, ReplicaFailed  # noqa: E402
from compute.inference.gateway.table import (  # noqa: E402
    DeploymentRoute,
    EndpointRoute,
    RoutingTable,
)
from compute.lib import serving_load  # noqa: E402

log = logging.getLogger(__name__)
Scope = dict[str, Any]
JSON = [(b"content-type", b"application/json")]
POLL = 0.05  # seconds between looks for a ready replica while a request waits
RETRIES = 2  # other replicas a request tries when one is found dead before it was sent
DEAD_SECONDS = 60.0  # a replica found dead stays out of the choice this long
DOCKER_ID = re.compile(r"[0-9a-f]{64}")


class Refusal(Exception):
    def __init__(self, status: int, error: str, headers: list[tuple[bytes, bytes]] | None = None):
        self.status, self.error, self.headers = status, error, headers or []


class Gateway:
    def __init__(self) -> None:
        self.table = RoutingTable(settings.HANGAR_GATEWAY_REFRESH)
        self.client = ReplicaClient()
        self.in_flight: defaultdict[str, int] = defaultdict(int)  # per replica socket
        # Replica sockets found dead (connect refused, socket gone), and since when: out
        # of the choice at once, before the sweep replaces them and the routes follow.
        self.dead: dict[str, float] = {}
        self.waiting: defaultdict[int, int] = defaultdict(int)  # per deployment
        self.woken: dict[int, float] = {}  # deployment -> when it was asked to start
        self.surged: dict[int, float] = {}  # deployment -> when the autoscaler was asked
        # Per deployment, for the autoscaler: [in flight, requests, seconds in requests].
        self.load: defaultdict[int, list[float]] = defaultdict(lambda: [0, 0, 0.0])
        # Per deployment, for the pages: requests per latency bucket (running totals).
        self.latency: defaultdict[int, list[int]] = defaultdict(
            lambda: [0] * (len(serving_load.BUCKETS_MS) + 1)
        )
        self.started_at = time.time()  # the totals count from here

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, body = await self.handle(scope, receive)
            headers = JSON
        except Refusal as refusal:
            status, body = refusal.status, json.dumps({"error": refusal.error}).encode()
            headers = JSON + refusal.headers
        # With its length: otherwise uvicorn frames the answer in chunks, one more write
        # for the gateway and chunked parsing for every caller.
        headers = [*headers, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The routes read once before the first request: never a 404 for an
                # endpoint that exists because the gateway just started.
                await asyncio.to_thread(self.table.refresh)
                self.table.start(on_tick=self.publish_load)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.table.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle(self, scope: Scope, receive: Any) -> tuple[int, bytes]:
        path = scope["path"]
        if path == "/healthz":
            if not self.table.fresh.is_set():
                raise Refusal(503, "The gateway has not read its routes yet.")
            return 200, b'{"ok": true}'
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "score":
            raise Refusal(404, "Score at /score/<workspace>/<endpoint>.")
        if scope["method"] != "POST":
            raise Refusal(405, "Send the request as a POST with a JSON body.")
        headers = dict(scope["headers"])
        route = self.table.routes.get((parts[1], parts[2]))
        # An address that is no endpoint answers as a wrong key does: without a key,
        # nobody learns which workspaces and endpoints exist.
        route = check_key(route, headers.get(b"authorization", b""))
        body = await read_body(receive, settings.HANGAR_SCORE_BODY_LIMIT)
        named = headers.get(b"x-hangar-deployment", b"").decode("latin-1")
        deployment = choose_deployment(route, named)
        return await self.forward(deployment, body)

    async def forward(self, deployment: DeploymentRoute, body: bytes) -> tuple[int, bytes]:
        started = time.monotonic()
        load, latency = self.load[deployment.id], self.latency[deployment.id]
        load[0] += 1
        # When a replica first took it: the seconds before (waiting for one to start) are
        # the caller's latency, but not load on replicas — counted as load, every start
        # from zero would ask the autoscaler for a second replica.
        served = [0.0]
        try:
            return await self.forward_counted(deployment, body, started, served)
        finally:
            now = time.monotonic()
            took = now - started
            load[0] -= 1
            load[1] += 1
            load[2] += now - served[0] if served[0] else 0.0
            latency[serving_load.bucket(took * 1000)] += 1

    def publish_load(self) -> None:
        """The figures the autoscaler reads (compute/controllers/serving.py) and the
        pages show, of the deployments in the routes: a removed one's figures go."""
        if self.table.fresh.is_set():
            routed = {
                d.id for r in list(self.table.routes.values()) for d in r.deployments.values()
            }
            for gone in set(list(self.load)) - routed:
                for figures in (self.load, self.latency, self.woken):
                    figures.pop(gone, None)
                if not self.waiting.get(gone):  # a waiter's finally counts it down
                    self.waiting.pop(gone, None)
        serving_load.publish(
            {key: (int(v[0]), int(v[1]), float(v[2])) for key, v in list(self.load.items())},
            {key: list(counts) for key, counts in list(self.latency.items())},
            since=self.started_at,
        )

    async def forward_counted(
        self, deployment: DeploymentRoute, body: bytes, started: float, served: list[float]
    ) -> tuple[int, bytes]:
        """To a replica; one that turns out dead before a byte of the request reached it
        (connect refused, socket gone) is left for another ready one, at most RETRIES
        times. A request already in a replica that dies is never sent twice: 502."""
        deadline = started + deployment.timeout
        tried: list[str] = []
        failure = ""
        while True:
            try:
                socket_path = await self.replica_for(deployment, deadline, tried)
            except Refusal as refusal:
                if not tried or refusal.status != 504:
                    raise
                raise Refusal(  # its replica died and no other was ready in time
                    502, f"The replica of {deployment.name} failed ({failure}) and no other "
                    f"was ready within {deployment.timeout:g} s.",
                ) from None  # fmt: skip
            if not tried:
                self.surge(deployment)
                served[0] = time.monotonic()
            self.in_flight[socket_path] += 1
            try:
                left = max(0.001, deadline - time.monotonic())
                container = deployment.containers.get(socket_path, "")
                # asyncio.timeout, not wait_for: no task made per request (3.11's wait_for
                # wraps the call in one, a tenth of the gateway's time per request).
                async with asyncio.timeout(left):
                    answer = await self.client.score(socket_path, body, verified(container))
            except TimeoutError:
                raise Refusal(
                    504, f"The replica took longer than the {deployment.timeout:g} s timeout."
                ) from None
            except ReplicaFailed as exc:
                self.client.forget(socket_path)
                if exc.gone:
                    self.dead[socket_path] = time.monotonic()
                tried.append(socket_path)
                failure = str(exc)
                if exc.unsent and len(tried) <= RETRIES:
                    continue
                raise Refusal(502, f"The replica of {deployment.name} failed: {exc}.") from None
            finally:
                self.in_flight[socket_path] -= 1
            return answer.status, answer.body

    async def replica_for(
        self, deployment: DeploymentRoute, deadline: float, tried: list[str] | None = None
    ) -> str:
        """The ready replica with the fewest requests in flight (not one `tried`); waits
        while none is."""
        ready = self.ready(deployment, tried)
        if ready:
            return min(ready, key=lambda path: self.in_flight[path])
        if self.waiting[deployment.id] >= settings.HANGAR_SCORE_QUEUE_LIMIT:
            raise Refusal(
                503,
                f"{deployment.name} has no replica ready and {self.waiting[deployment.id]} "
                "requests already wait for one.",
                [(b"retry-after", b"1")],
            )
        self.waiting[deployment.id] += 1
        try:
            await self.wake(deployment)
            while time.monotonic() < deadline:
                await asyncio.sleep(POLL)
                ready = self.ready(self.current(deployment), tried)
                if ready:
                    return min(ready, key=lambda path: self.in_flight[path])
        finally:
            self.waiting[deployment.id] -= 1
        raise Refusal(
            504, f"No replica of {deployment.name} was ready within {deployment.timeout:g} s."
        )

    def surge(self, deployment: DeploymentRoute) -> None:
        """More requests in flight than its replicas (ready or starting) are meant to
        take, below its max: the autoscaler is asked now (once a second at most), with
        fresh figures, rather than at its next sweep — a load step reaches a new replica
        in a container's start, not a sweep and a publish later."""
        replicas = len(deployment.sockets)
        if replicas >= deployment.max_replicas or not replicas:
            return  # at its max, or at zero (the wake-up asks for one)
        if self.load[deployment.id][0] <= deployment.target_in_flight * replicas:
            return
        now = time.monotonic()
        if now - self.surged.get(deployment.id, 0.0) < 1:
            return
        self.surged[deployment.id] = now
        asyncio.get_running_loop().run_in_executor(None, self.ask_autoscaler)

    def ask_autoscaler(self) -> None:
        try:
            self.publish_load()
            from compute import enqueue

            enqueue.autoscale_replicas()
        except Exception:  # Redis away a moment: the sweep decides as it always does
            log.warning("gateway: the autoscaler was not asked", exc_info=True)

    def ready(self, deployment: DeploymentRoute, tried: list[str] | None = None) -> list[str]:
        ready = deployment.ready()
        if self.dead or tried:
            now = time.monotonic()
            for path, since in list(self.dead.items()):
                if now - since > DEAD_SECONDS:
                    del self.dead[path]  # long replaced; a path never comes back
            ready = [p for p in ready if p not in self.dead and (not tried or p not in tried)]
        return ready

    def current(self, deployment: DeploymentRoute) -> DeploymentRoute:
        """The deployment as the latest routes have it (its replicas may have started)."""
        for route in self.table.routes.values():
            found = route.deployments.get(deployment.name)
            if found is not None and found.id == deployment.id:
                return found
        return deployment

    async def wake(self, deployment: DeploymentRoute) -> None:
        """A deployment with no replica up is asked for one (once a second at most)."""
        if deployment.sockets or deployment.compute_id is None:
            return  # replicas exist, starting: wait for them
        now = time.monotonic()
        if now - self.woken.get(deployment.id, 0) < 1:
            return
        self.woken[deployment.id] = now
        await sync_to_async(start_one_replica, thread_sensitive=False)(deployment.compute_id)


def verified(container_ref: str) -> str:
    """The container a replica's peer must be in: a Docker node's id. Nodes of no
    container (a test's host-process replica) are not checked: serving needs Docker."""
    return container_ref if DOCKER_ID.fullmatch(container_ref) else ""


def start_one_replica(compute_id: int) -> None:
    """Scale from zero: the replicas' cluster wants at least one, and reconciles now."""
    from compute import enqueue
    from compute.models import Compute

    if Compute.objects.filter(pk=compute_id, replica_target=0).update(replica_target=1):
        enqueue.reconcile(compute_id)


def check_key(route: EndpointRoute | None, header: bytes) -> EndpointRoute:
    scheme, _, key = header.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Refusal(
            401,
            "Send one of the endpoint's keys: Authorization: Bearer <key>.",
            [(b"www-authenticate", b"Bearer")],
        )
    digest = hashlib.sha256(key.strip().encode()).hexdigest()
    known = route.key_hashes if route is not None else ("", "")
    # Both compared, whatever the first says: no timing tells which slot matched.
    matches = [hmac.compare_digest(digest, each) for each in known]
    if route is None or not any(matches):
        raise Refusal(
            401, "That key is not one of this endpoint's.", [(b"www-authenticate", b"Bearer")]
        )
    return route


def choose_deployment(route: EndpointRoute, named: str) -> DeploymentRoute:
    if named:
        found = route.deployments.get(named)
        if found is None:
            raise Refusal(404, f"The endpoint has no deployment named {named}.")
        return found
    weighted = [d for d in route.deployments.values() if d.traffic > 0]
    if not weighted:
        raise Refusal(503, "No deployment of this endpoint takes traffic.")
    return random.choices(weighted, weights=[d.traffic for d in weighted])[0]  # noqa: S311


async def read_body(receive: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refusal(413, f"The request is over {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


app = Gateway()
