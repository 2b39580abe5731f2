"""The load the gateway sees on each deployment, handed to the autoscaler through Redis:
requests in flight now, and running totals of requests and of seconds spent in them (their
rate of change over a sweep is the requests per second and the mean concurrency). The
gateway writes; the sweep reads and keeps its previous reading beside it.

Beside them, for the pages: a latency histogram (running totals per fixed bucket, so two
readings' difference is the histogram of the requests between them, and histograms of
several deployments add up), and the time the gateway started (its totals restart with
it). Every SERIES_EVERY seconds the sweep appends each deployment's reading, with its
replica count, to a capped list: the endpoint page's last hour, and the list page's
reading of a minute ago."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings

TTL = 30  # seconds: a gateway gone, its figures go (no load)
# Upper bounds of the latency buckets, in milliseconds; one more bucket counts the rest.
BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
SERIES_EVERY = 10  # seconds between two points of a deployment's series
SERIES_POINTS = 360  # an hour of them


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


def bucket(milliseconds: float) -> int:
    """The index of the latency bucket a request of that duration counts in."""
    for index, bound in enumerate(BUCKETS_MS):
        if milliseconds <= bound:
            return index
    return len(BUCKETS_MS)


def publish(
    loads: dict[int, tuple[int, int, float]],
    latencies: dict[int, Sequence[int]] | None = None,
    since: float = 0.0,
) -> None:
    """The gateway's figures per deployment: (in flight, total requests, total seconds),
    its latency histogram (len(BUCKETS_MS) + 1 running totals) and when it started."""
    if not loads:
        return
    now = time.time()
    latencies = latencies or {}
    pipe = client().pipeline(transaction=False)
    for deployment_id, (in_flight, requests, busy) in loads.items():
        name = key(deployment_id)
        pipe.hset(
            name,
            mapping={
                "in_flight": in_flight, "requests": requests, "busy": busy, "at": now,
                "since": since,
            },
        )  # fmt: skip
        counts = latencies.get(deployment_id)
        if counts is not None:
            pipe.hset(name, "latency", ",".join(str(int(n)) for n in counts))
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
    client().delete(*(key(deployment_id, what) for what in ("load", "seen", "marks", "series")))


# For the pages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    """A deployment's running totals at a moment: the gateway's figures as published, or
    a point of its series (with the replicas up then). `since`: when the gateway whose
    totals these are started (0: no figures, i.e. no request since it started)."""

    at: float
    requests: int
    latency: tuple[int, ...]
    since: float
    replicas: int = 0


NONE_YET = (0,) * (len(BUCKETS_MS) + 1)


def histogram(text: bytes | str | None) -> tuple[int, ...]:
    """A published histogram; zeros for none, or for one of another bucket layout."""
    if not text:
        return NONE_YET
    try:
        counts = tuple(
            int(n) for n in (text.decode() if isinstance(text, bytes) else text).split(",")
        )
    except ValueError:
        return NONE_YET
    return counts if len(counts) == len(NONE_YET) else NONE_YET


def counters(row: dict[bytes, bytes], now: float) -> Counters:
    """The gateway's hash as Counters; an empty one (no figures) counts nothing."""
    if not row:
        return Counters(now, 0, NONE_YET, 0.0)
    return Counters(
        float(row[b"at"]),
        int(row[b"requests"]),
        histogram(row.get(b"latency")),
        float(row.get(b"since", b"0")),
    )


def series_due(every: float = SERIES_EVERY) -> bool:
    """True once per `every` seconds across every sweeping process (one point each time)."""
    name = f"hangar:{settings.HANGAR_SITE}:serving:series-tick"
    return bool(client().set(name, "1", nx=True, px=int(every * 1000) - 100))


def append_series(points: dict[int, Counters]) -> None:
    """One point per deployment, each list capped at SERIES_POINTS (the newest first)."""
    if not points:
        return
    pipe = client().pipeline(transaction=False)
    for deployment_id, point in points.items():
        name = key(deployment_id, "series")
        pipe.lpush(name, json.dumps(
            [round(point.at, 3), point.requests, list(point.latency), point.since, point.replicas]
        ))  # fmt: skip
        pipe.ltrim(name, 0, SERIES_POINTS - 1)
        pipe.expire(name, 2 * 3600)  # a deployment gone unnoticed: its hour goes too
    pipe.execute()


def point(text: bytes) -> Counters | None:
    try:
        at, requests, latency, since, replicas = json.loads(text)
        return Counters(float(at), int(requests), histogram(",".join(map(str, latency))),
                        float(since), int(replicas))  # fmt: skip
    except (ValueError, TypeError):
        return None


def read_page(
    deployment_ids: list[int], points: int
) -> tuple[dict[int, Counters], dict[int, list[Counters]]]:
    """Each deployment's figures now and the newest `points` of its series (oldest first),
    in one round trip whatever their number."""
    if not deployment_ids:
        return {}, {}
    pipe = client().pipeline(transaction=False)
    for deployment_id in deployment_ids:
        pipe.hgetall(key(deployment_id))
        if points > 0:
            pipe.lrange(key(deployment_id, "series"), 0, points - 1)
    answers = iter(pipe.execute())
    now = time.time()
    current, series = {}, {}
    for deployment_id in deployment_ids:
        current[deployment_id] = counters(next(answers), now)
        found = (point(text) for text in reversed(next(answers) if points > 0 else []))
        series[deployment_id] = [p for p in found if p is not None]
    return current, series


@dataclass(frozen=True)
class Window:
    """What happened between two readings: requests, over how long, their histogram."""

    requests: int
    seconds: float
    latency: tuple[int, ...]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        return percentile(self.latency, q)


def between(older: Counters, newer: Counters) -> Window:
    """The difference of two readings. A gateway that started since the older one (or
    had no figures then) counted from zero: its totals are the window's."""
    seconds = max(0.0, newer.at - older.at)
    if newer.since != older.since or newer.requests < older.requests:
        return Window(newer.requests, seconds, newer.latency)
    latency = tuple(max(0, a - b) for a, b in zip(newer.latency, older.latency, strict=True))
    return Window(newer.requests - older.requests, seconds, latency)


def percentile(latency: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q < 1) of a histogram, in ms, interpolated linearly inside its
    bucket (as Prometheus' histogram_quantile does); None without requests; math.inf when
    it lies past the last bound."""
    total = sum(latency)
    if total <= 0:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(latency):
        if count and seen + count >= rank:
            if index == len(BUCKETS_MS):
                return math.inf
            lower = BUCKETS_MS[index - 1] if index else 0.0
            upper = BUCKETS_MS[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return math.inf
