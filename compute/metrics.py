"""Site figures for Prometheus (`GET /metrics`, compute/views/metrics.py), computed at
scrape time from the database and Redis, which every web and worker process shares: no
process keeps a figure of its own, so any web process answers the same, and no
multiprocess registry is needed (prometheus-client's custom-collector way).

Every scrape is a handful of aggregate queries whatever the years of history (the test
counts them with ten times the rows):

- computes not deleted, by state and kind (the partial index on state), with how many of
  them hold a reconcile error right now (`last_error`, cleared when they recover);
- live nodes (preparing, idle, running, leaving; ended rows are history) by state and
  host (the partial index of live nodes; `node_host_field` says where the host is read);
- jobs queued, preparing and running (the partial index of active jobs), and the Celery
  queue's length in Redis;
- the last sweep, as health.remember_sweep left it (duration, due computes, messages);
- the gateway's running totals per deployment (compute/lib/serving_load.py): requests,
  in flight, and its latency histogram.

Two figures are counters over rows that only grow: job run durations (a histogram, by
final status) and reconcile errors (events `compute.errored` and `compute.failed`, by
verb). Counting them over every row at every scrape would read years of jobs, and
retention deletes old events, so they are *tallies*: totals kept in the cache (Redis),
to which a scrape adds the rows that finished since the tally's watermark, read by a
range on an indexed timestamp (events' `created_at`; jobs' `queued_at`, bounded to
JOB_HORIZON, and `finished_at` inside it), and then moves the watermark. The watermark
trails the scrape by TALLY_LAG, so a row committed a little after its timestamp is still
counted once. One scrape at a time updates (a lock in the cache); another one at that
moment serves the totals as they are. The first scrape (or one after Redis lost its
data, or a week without a scrape) starts the tally an hour back; Prometheus reads the
restart as a counter reset.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from compute.inference.models import Deployment
from compute.lib import health, serving_load
from compute.models import (
    Compute,
    ComputeState,
    Event,
    EventVerb,
    Job,
    JobStatus,
    Node,
    NodeState,
)

logger = logging.getLogger(__name__)

# Job run durations (running → finished), in seconds: the histogram's upper bounds.
JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# A finished job is tallied when it was queued at most this long before the watermark's
# new end: the bound that keeps the read on queued_at's index. A job that waited and ran
# longer than this in all is left out of the histogram.
JOB_HORIZON = timedelta(days=7)
TALLY_LAG = timedelta(seconds=60)
TALLY_START = timedelta(hours=1)  # how far back a new tally starts
TALLY_KEY = "hangar:metrics:tally:v1"
TALLY_KEEP = 7 * 24 * 3600  # seconds: a tally nobody scraped for a week starts anew
TALLY_LOCK = "hangar:metrics:tally-lock"
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)
ERROR_VERBS = {EventVerb.ERRORED: "errored", EventVerb.FAILED: "failed"}
# The node states a row is live in: the partial index node_live_idx, exactly.
LIVE_NODES = (NodeState.PREPARING, NodeState.IDLE, NodeState.RUNNING, NodeState.LEAVING)
ACTIVE_JOBS = (JobStatus.QUEUED, JobStatus.PREPARING, JobStatus.RUNNING)
DEFAULT_HOST = "default"


def node_host_field() -> str | None:
    """The one place that says where a node's `host` label comes from: the node's host
    (its name, when `Node.host` is a relation to a model with one), or None while nodes
    have no host, when every node is on the "default" host."""
    try:
        field = Node._meta.get_field("host")
    except FieldDoesNotExist:
        return None
    related = field.related_model
    if related is None:
        return "host"
    try:
        related._meta.get_field("name")
    except FieldDoesNotExist:
        return "host_id"
    return "host__name"


# The tallies ------------------------------------------------------------------------------


def new_tally(start: datetime) -> dict:
    return {
        "watermark": start.timestamp(),
        "jobs": {
            status.value: {"buckets": [0] * len(JOB_BUCKETS), "count": 0, "sum": 0.0}
            for status in FINISHED
        },
        "errors": dict.fromkeys(ERROR_VERBS.values(), 0),
    }


def add_finished_jobs(tally: dict, since: datetime, until: datetime) -> None:
    """Jobs that ran and finished in (since, until]: one aggregate query, by status."""
    ran = ExpressionWrapper(F("finished_at") - F("running_at"), output_field=DurationField())
    buckets = {
        f"le_{index}": Count("pk", filter=Q(ran__lte=timedelta(seconds=bound)))
        for index, bound in enumerate(JOB_BUCKETS)
    }
    rows = (
        Job.objects.filter(
            queued_at__gte=until - JOB_HORIZON,
            finished_at__gt=since,
            finished_at__lte=until,
            running_at__isnull=False,
            status__in=FINISHED,
        )
        .annotate(ran=ran)
        .values("status")
        .annotate(count=Count("pk"), total=Sum("ran"), **buckets)
        .order_by()
    )
    for found in rows:
        row: dict[str, Any] = dict(found)  # the le_<n> columns are named at run time
        figures = tally["jobs"].get(row["status"])
        if figures is None:
            continue
        figures["count"] += row["count"]
        total = row["total"] or timedelta(0)
        figures["sum"] += max(total, timedelta(0)).total_seconds()
        for index in range(len(JOB_BUCKETS)):
            figures["buckets"][index] += row[f"le_{index}"]


def add_reconcile_errors(tally: dict, since: datetime, until: datetime) -> None:
    rows = (
        Event.objects.filter(
            created_at__gt=since, created_at__lte=until, verb__in=list(ERROR_VERBS)
        )
        .values("verb")
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in rows:
        label = ERROR_VERBS[EventVerb(row["verb"])]
        tally["errors"][label] += row["count"]


def tally() -> dict | None:
    """The tallies brought up to now minus TALLY_LAG (None: the cache is unreachable)."""
    try:
        known = cache.get(TALLY_KEY)
        token = uuid.uuid4().hex
        if not cache.add(TALLY_LOCK, token, timeout=30):
            return known  # another scrape is updating: its totals of a moment ago
        try:
            until = timezone.now() - TALLY_LAG
            if not known:
                known = new_tally(until - TALLY_START)
            since = datetime.fromtimestamp(known["watermark"], tz=until.tzinfo)
            if until > since:
                add_finished_jobs(known, since, until)
                add_reconcile_errors(known, since, until)
                known["watermark"] = until.timestamp()
                cache.set(TALLY_KEY, known, timeout=TALLY_KEEP)
            return known
        finally:
            if cache.get(TALLY_LOCK) == token:
                cache.delete(TALLY_LOCK)
    except (redis.RedisError, OSError) as exc:
        logger.warning("metrics tallies unavailable: %s", exc)
        return None


# The collector ----------------------------------------------------------------------------


class HangarCollector(Collector):
    def collect(self) -> Iterator:
        redis_up = True
        yield from self.computes()
        yield from self.nodes()
        yield from self.jobs()
        counted = tally()
        redis_up &= counted is not None
        yield from self.tallied(counted or new_tally(timezone.now()))
        try:
            yield from self.redis_figures()
        except (redis.RedisError, OSError) as exc:
            logger.warning("metrics: Redis figures unavailable: %s", exc)
            redis_up = False
        yield GaugeMetricFamily(
            "hangar_metrics_redis_up",
            "1 when this scrape read Redis (sweep, Celery queue, gateway, tallies), else 0",
            value=1 if redis_up else 0,
        )

    def computes(self) -> Iterator:
        by_state = GaugeMetricFamily(
            "hangar_computes",
            "Computes not deleted, by state and kind",
            labels=["state", "kind"],
        )
        errored = GaugeMetricFamily(
            "hangar_computes_with_reconcile_error",
            "Computes not deleted whose last reconcile left an error (last_error; cleared "
            "when they recover), by state and kind",
            labels=["state", "kind"],
        )
        rows = (
            Compute.objects.exclude(state=ComputeState.DELETED)
            .values("state", "kind")
            .annotate(count=Count("pk"), errored=Count("pk", filter=~Q(last_error="")))
            .order_by()
        )
        for row in rows:
            by_state.add_metric([row["state"], row["kind"]], row["count"])
            errored.add_metric([row["state"], row["kind"]], row["errored"])
        yield by_state
        yield errored

    def nodes(self) -> Iterator:
        family = GaugeMetricFamily(
            "hangar_nodes",
            "Live nodes (preparing, idle, running, leaving), by state and host",
            labels=["state", "host"],
        )
        host = node_host_field()
        columns = ["state", host] if host else ["state"]
        counts: dict[tuple[str, str], int] = {}
        rows = (
            Node.objects.filter(state__in=list(LIVE_NODES))
            .values(*columns)
            .annotate(count=Count("pk"))
            .order_by()
        )
        for row in rows:
            name = str(row[host]) if host and row[host] is not None else DEFAULT_HOST
            counts[row["state"], name] = counts.get((row["state"], name), 0) + row["count"]
        for (state, name), count in sorted(counts.items()):
            family.add_metric([state, name], count)
        yield family

    def jobs(self) -> Iterator:
        family = GaugeMetricFamily(
            "hangar_jobs",
            "Jobs not finished, by status: queued is the queue depth",
            labels=["status"],
        )
        counts = dict.fromkeys((status.value for status in ACTIVE_JOBS), 0)
        rows = (
            Job.objects.filter(status__in=list(ACTIVE_JOBS))
            .values("status")
            .annotate(count=Count("pk"))
            .order_by()
        )
        for row in rows:
            counts[row["status"]] = row["count"]
        for status, count in counts.items():
            family.add_metric([status], count)
        yield family

    def tallied(self, counted: dict) -> Iterator:
        durations = HistogramMetricFamily(
            "hangar_job_run_seconds",
            "Jobs that ran, from running to finished, by final status; counted as they "
            "finish (about a minute late), since the tally started",
            labels=["status"],
        )
        for status, figures in sorted(counted["jobs"].items()):
            buckets = [
                (str(float(bound)), figures["buckets"][index])
                for index, bound in enumerate(JOB_BUCKETS)
            ]
            buckets.append(("+Inf", figures["count"]))
            durations.add_metric([status], buckets, figures["sum"])
        yield durations
        errors = CounterMetricFamily(
            "hangar_reconcile_errors",
            "Reconcile errors written to compute event logs: errored (a new problem, "
            "retried; the same message again is not counted twice) and failed (gave up)",
            labels=["verb"],
        )
        for verb, count in sorted(counted["errors"].items()):
            errors.add_metric([verb], count)
        yield errors

    def redis_figures(self) -> Iterator:
        yield from self.sweep()
        client = serving_load.client()
        queue = GaugeMetricFamily(
            "hangar_celery_queue_length",
            "Tasks waiting in the Celery queue (Redis)",
            value=int(client.llen(settings.CELERY_TASK_DEFAULT_QUEUE)),
        )
        yield queue
        yield from self.gateway(client)

    def sweep(self) -> Iterator:
        run = health.last_sweep()
        yield GaugeMetricFamily(
            "hangar_sweep_period_seconds",
            "How often beat runs the reconcile sweep (HANGAR_SWEEP_SECONDS)",
            value=settings.HANGAR_SWEEP_SECONDS,
        )
        if run is None:
            return
        yield GaugeMetricFamily(
            "hangar_sweep_last_duration_seconds",
            "How long the last reconcile sweep took",
            value=run.took_ms / 1000,
        )
        yield GaugeMetricFamily(
            "hangar_sweep_last_finished_timestamp_seconds",
            "When the last reconcile sweep finished (Unix time)",
            value=run.finished_at,
        )
        yield GaugeMetricFamily(
            "hangar_sweep_last_due", "Computes the last sweep found due", value=run.due
        )
        yield GaugeMetricFamily(
            "hangar_sweep_last_messages",
            "Messages the last sweep sent the workers",
            value=run.messages,
        )

    def gateway(self, client: redis.Redis) -> Iterator:
        labels = ["workspace", "endpoint", "deployment"]
        requests = CounterMetricFamily(
            "hangar_gateway_requests",
            "Requests the scoring gateway served per deployment, since the gateway started",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            "hangar_gateway_in_flight", "Requests in flight per deployment", labels=labels
        )
        latency = HistogramMetricFamily(
            "hangar_gateway_request_seconds",
            "Latency of the gateway's requests per deployment, since the gateway started",
            labels=labels,
        )
        deployments = list(
            Deployment.objects.values_list(
                "pk", "name", "endpoint__name", "endpoint__workspace__slug"
            ).order_by("pk")
        )
        if deployments:
            pipe = client.pipeline(transaction=False)
            for pk, *_ in deployments:
                pipe.hgetall(serving_load.key(pk))
            now = time.time()
            for (_, name, endpoint, slug), row in zip(deployments, pipe.execute(), strict=True):
                if not row:
                    continue  # no gateway figures (none running, or none in TTL)
                figures = serving_load.counters(row, now)
                names = [slug, endpoint, name]
                requests.add_metric(names, figures.requests)
                in_flight.add_metric(names, int(row.get(b"in_flight", 0)))
                cumulative, buckets = 0, []
                for bound, count in zip(serving_load.BUCKETS_MS, figures.latency, strict=False):
                    cumulative += count
                    buckets.append((str(bound / 1000), cumulative))
                buckets.append(("+Inf", sum(figures.latency)))
                latency.add_metric(names, buckets, float(row.get(b"busy", 0)))
        yield requests
        yield in_flight
        yield latency


registry = CollectorRegistry(auto_describe=False)
registry.register(HangarCollector())
