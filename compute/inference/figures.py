"""What the endpoint pages show of serving, from the gateway's figures and the sweep's
series in Redis (compute/lib/serving_load.py): each endpoint's state, traffic split,
requests per second and latency over the last minute, and its last hour for the chart.
One database query and one Redis round trip per page, whatever the number of endpoints
and deployments on it."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

from django.db.models import Count, Q

from compute.inference.models import Deployment, Endpoint
from compute.lib import serving_load
from compute.lib.serving_load import NONE_YET, Counters, Window
from compute.models import ComputeState
from compute.models.states import NODE_UP

MINUTE = 60.0
HOUR = 3600.0
# The series' newest points the list reads: a minute back at one per SERIES_EVERY, and
# one more (a sweep may come a little late).
LIST_POINTS = int(MINUTE // serving_load.SERIES_EVERY) + 2


def with_replicas_up() -> Q:
    return Q(compute__nodes__state__in=NODE_UP, compute__nodes__ended_at=None)


def deployments_of(endpoint_ids: list[int]) -> list[Deployment]:
    return list(
        Deployment.objects.filter(endpoint_id__in=endpoint_ids)
        .select_related("compute")
        .only(
            "endpoint_id", "name", "traffic", "compute__state", "compute__replica_target",
            "compute__last_error",
        )
        .annotate(replicas_up=Count("compute__nodes", filter=with_replicas_up()))
        .order_by("endpoint_id", "name")
    )  # fmt: skip


@dataclass(frozen=True)
class Latest:
    """The last minute (or as much of it as is known) of one or more deployments."""

    requests: int = 0
    per_second: float = 0.0
    latency: tuple[int, ...] = NONE_YET
    known: bool = True  # False: requests counted, but no reading old enough to tell when

    @property
    def p50(self) -> str:
        return milliseconds(serving_load.percentile(self.latency, 0.50))

    @property
    def p95(self) -> str:
        return milliseconds(serving_load.percentile(self.latency, 0.95))

    @property
    def rate(self) -> str:
        return f"{self.per_second:.1f}" if self.per_second >= 0.1 else f"{self.per_second:.2f}"

    def plus(self, other: Latest) -> Latest:
        return Latest(
            self.requests + other.requests,
            self.per_second + other.per_second,
            tuple(a + b for a, b in zip(self.latency, other.latency, strict=True)),
            self.known and other.known,
        )


def milliseconds(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return f"> {serving_load.BUCKETS_MS[-1]:g} ms"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def last_minute(current: Counters, series: list[Counters], now: float) -> Latest:
    """From the gateway's figures now and the newest point at least a minute old (or the
    oldest there is, when the series is younger)."""
    older = [p for p in series if p.at <= now - MINUTE]
    baseline = older[-1] if older else (series[0] if series else None)
    if baseline is None:
        # No reading before: nothing counted is surely nothing in the last minute.
        return Latest(known=current.requests == 0)
    window = serving_load.between(baseline, current)
    return Latest(window.requests, window.per_second, window.latency)


@dataclass(frozen=True)
class State:
    label: str
    tone: str  # a Bootstrap colour for the badge; the label says it in words


def endpoint_state(deployments: list[Deployment]) -> State:
    """In words, from its deployments: those taking traffic decide."""
    if not deployments:
        return State("No deployment", "secondary")
    taking = [d for d in deployments if d.traffic > 0]
    if not taking:
        return State("No traffic", "secondary")
    computes = [d.compute for d in taking if d.compute is not None]
    if any(c.state == ComputeState.FAILED for c in computes):
        return State("Failed", "danger")
    if any(getattr(d, "replicas_up", 0) for d in taking):
        return State("Serving", "success")
    if computes and all(c.replica_target == 0 for c in computes):
        return State("Scaled to zero", "secondary")
    return State("Starting", "warning")


def traffic_text(deployments: list[Deployment]) -> str:
    shares = [f"{d.name} {d.traffic}" for d in deployments if d.traffic > 0]
    return " · ".join(shares) if shares else "none"


@dataclass
class Row:
    """One endpoint of the list, as shown."""

    state: State
    traffic: str
    latest: Latest


def endpoint_rows(endpoints: list[Endpoint]) -> dict[int, Row]:
    deployments = deployments_of([e.pk for e in endpoints])
    current, series = serving_load.read_page([d.pk for d in deployments], LIST_POINTS)
    now = time.time()
    by_endpoint: dict[int, list[Deployment]] = {e.pk: [] for e in endpoints}
    for deployment in deployments:
        by_endpoint[deployment.endpoint_id].append(deployment)
    rows = {}
    for endpoint_id, own in by_endpoint.items():
        latest = Latest()
        for deployment in own:
            latest = latest.plus(last_minute(current[deployment.pk], series[deployment.pk], now))
        rows[endpoint_id] = Row(endpoint_state(own), traffic_text(own), latest)
    return rows


# The endpoint page's last hour ----------------------------------------------------------


@dataclass
class Hour:
    """Per interval between two points of the series (start, end, value): requests per
    second, p50 and p95 latency (None without requests), and the replicas up."""

    per_second: list[tuple[float, float, float | None]] = field(default_factory=list)
    p50: list[tuple[float, float, float | None]] = field(default_factory=list)
    p95: list[tuple[float, float, float | None]] = field(default_factory=list)
    replicas: list[tuple[float, float, float | None]] = field(default_factory=list)
    latest: Latest = field(default_factory=Latest)
    start: float = 0.0
    end: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.replicas


def endpoint_hour(deployments: list[Deployment], now: float | None = None) -> Hour:
    """The endpoint's deployments added up, interval by interval (the sweep writes every
    deployment's point at the same moment, so their intervals coincide)."""
    now = now or time.time()
    start = now - HOUR
    ids = [d.pk for d in deployments]
    current, series = serving_load.read_page(ids, serving_load.SERIES_POINTS)
    intervals: dict[tuple[float, float], list[Window]] = {}
    replicas: dict[float, int] = {}
    latest = Latest()
    for deployment_id in ids:
        points = [p for p in series[deployment_id] if p.at >= start - serving_load.SERIES_EVERY]
        for older, newer in itertools.pairwise(points):
            window = serving_load.between(older, newer)
            intervals.setdefault((older.at, newer.at), []).append(window)
        for point in points:
            replicas[point.at] = replicas.get(point.at, 0) + point.replicas
        latest = latest.plus(last_minute(current[deployment_id], series[deployment_id], now))
    hour = Hour(latest=latest, start=start, end=now)
    for (begin, end), windows in sorted(intervals.items()):
        begin = max(begin, start)
        latency = tuple(map(sum, zip(*(w.latency for w in windows), strict=True)))
        hour.per_second.append((begin, end, sum(w.per_second for w in windows)))
        hour.p50.append((begin, end, serving_load.percentile(latency, 0.50)))
        hour.p95.append((begin, end, serving_load.percentile(latency, 0.95)))
    moments = sorted(replicas)
    for begin, end in zip(moments, [*moments[1:], now], strict=False):
        hour.replicas.append((max(begin, start), end, float(replicas[begin])))
    return hour
