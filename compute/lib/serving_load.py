"""The load the gateway sees on each deployment, handed to the autoscaler through Redis:
requests in flight now, and running totals of requests and of seconds spent in them (their
rate of change over a sweep is the requests per second and the mean concurrency). The
gateway writes; the sweep reads and keeps its previous reading beside it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings

TTL = 30  # seconds: a gateway gone, its figures go (no load)


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def key(deployment_id: int, what: str = "load") -> str:
    return f"hangar:{settings.HANGAR_SITE}:serving:{what}:{deployment_id}"


@dataclass(frozen=True)
class Load:
    in_flight: int
    requests: int  # running total
    busy_seconds: float  # running total of request durations
    at: float  # time.time() of the reading


def publish(loads: dict[int, tuple[int, int, float]]) -> None:
    """The gateway's figures per deployment: (in flight, total requests, total seconds)."""
    if not loads:
        return
    now = time.time()
    pipe = client().pipeline(transaction=False)
    for deployment_id, (in_flight, requests, busy) in loads.items():
        name = key(deployment_id)
        pipe.hset(
            name, mapping={"in_flight": in_flight, "requests": requests, "busy": busy, "at": now}
        )
        pipe.expire(name, TTL)
    pipe.execute()


def read(deployment_ids: list[int], what: str = "load") -> dict[int, Load]:
    if not deployment_ids:
        return {}
    pipe = client().pipeline(transaction=False)
    for deployment_id in deployment_ids:
        pipe.hgetall(key(deployment_id, what))
    found = {}
    for deployment_id, row in zip(deployment_ids, pipe.execute(), strict=True):
        if row:
            found[deployment_id] = Load(
                int(row[b"in_flight"]),
                int(row[b"requests"]),
                float(row[b"busy"]),
                float(row[b"at"]),
            )
    return found


def remember(deployment_id: int, load: Load) -> None:
    """The autoscaler's previous reading, for the next one's rates."""
    name = key(deployment_id, "seen")
    client().hset(
        name,
        mapping={
            "in_flight": load.in_flight,
            "requests": load.requests,
            "busy": load.busy_seconds,
            "at": load.at,
        },
    )
    client().expire(name, 3600)


@dataclass(frozen=True)
class Marks:
    """When a deployment's load last needed its replicas, and when it last had a request."""

    needed_at: float
    request_at: float


def marks(deployment_id: int) -> Marks:
    """Unknown (a new deployment, or Redis emptied): now, so nothing goes at once."""
    row = client().hgetall(key(deployment_id, "marks"))
    now = time.time()
    if not row:
        return Marks(now, now)
    return Marks(float(row[b"needed_at"]), float(row[b"request_at"]))


def set_marks(deployment_id: int, needed_at: float, request_at: float) -> None:
    name = key(deployment_id, "marks")
    client().hset(name, mapping={"needed_at": needed_at, "request_at": request_at})
    client().expire(name, 7 * 24 * 3600)


def forget(deployment_id: int) -> None:
    """A deployment gone (ids may come again with a new database): its figures go."""
    client().delete(*(key(deployment_id, what) for what in ("load", "seen", "marks")))
