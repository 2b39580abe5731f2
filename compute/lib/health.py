"""Worker health for the dashboard: is Redis up, how many workers answer, queue length,
and how long the last sweep took."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import redis
from django.conf import settings
from django.core.cache import cache

from config.celery import app

logger = logging.getLogger(__name__)

CACHE_KEY = "hangar:worker-health:v3"  # (time taken, WorkerHealth)
SWEEP_KEY = "hangar:sweep:last"  # the last sweep's SweepRun, as a dict


@dataclass(frozen=True)
class SweepRun:
    """What the last sweep reported of itself: an operator sees at a glance whether it
    keeps up with its period (HANGAR_SWEEP_SECONDS)."""

    finished_at: float  # time.time()
    took_ms: float
    due: int
    messages: int

    @property
    def summary(self) -> str:
        ago = max(0, round(time.time() - self.finished_at))
        return f"last sweep took {self.took_ms:,.0f} ms, {self.due:,} due ({ago} s ago)"


@dataclass(frozen=True)
class WorkerHealth:
    broker_up: bool
    workers: list[str]
    queued: int
    error: str = ""
    last_sweep: SweepRun | None = None

    @property
    def level(self) -> str:
        if not self.broker_up:
            return "danger"
        if not self.workers:
            return "warning"
        return "success"

    @property
    def summary(self) -> str:
        if not self.broker_up:
            return "Redis unreachable"
        if not self.workers:
            return f"No worker answering · {self.queued} queued"
        noun = "worker" if len(self.workers) == 1 else "workers"
        return f"{len(self.workers)} {noun} up · {self.queued} queued"


def probe(timeout: float = 0.5) -> WorkerHealth:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout
    )
    try:
        client.ping()
        queued = int(client.llen(settings.CELERY_TASK_DEFAULT_QUEUE))
    except redis.RedisError as exc:
        return WorkerHealth(broker_up=False, workers=[], queued=0, error=str(exc))
    finally:
        client.close()
    # Only workers that consume our queue count: another project's worker on the same
    # Redis answers pings too, but would never run a Hangar task.
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    workers = sorted(
        worker
        for worker, queues in replies.items()
        if any(q.get("name") == queue for q in queues or [])
    )
    return WorkerHealth(broker_up=True, workers=workers, queued=queued, last_sweep=last_sweep())


# The last probe, kept (with the time it was taken) far longer than it is trusted: a page's
# first paint shows it instead of a grey "checking" pill, and the badge refreshes it at once
# when it is older than HANGAR_HEALTH_CACHE_SECONDS.
KEEP_SECONDS = 3600
_last_probe: tuple[float, WorkerHealth] | None = None  # this process's, for when the cache is not


@dataclass(frozen=True)
class Known:
    """The worker health a page shows on first paint, and whether it is older than trusted."""

    health: WorkerHealth
    stale: bool


def _remember(health: WorkerHealth) -> None:
    global _last_probe
    _last_probe = (time.time(), health)
    try:
        cache.set(CACHE_KEY, _last_probe, KEEP_SECONDS)
    except (redis.RedisError, OSError) as exc:  # the cache is Redis: the probe says it is down
        logger.debug("worker health not cached: %s", exc)


def _recall() -> tuple[float, WorkerHealth] | None:
    """The newest probe known: the cache's (any process took it) or this process's."""
    try:
        shared = cache.get(CACHE_KEY)
    except (redis.RedisError, OSError):  # Redis down: this process's last probe still counts
        shared = None
    known = [entry for entry in (shared, _last_probe) if entry is not None]
    return max(known, key=lambda entry: entry[0]) if known else None


def _trusted(max_age: int | None) -> int:
    return settings.HANGAR_HEALTH_CACHE_SECONDS if max_age is None else max_age


def current(max_age: int | None = None) -> WorkerHealth:
    """The last probe if it is fresh enough: many open tabs must not flood the workers."""
    entry = _recall()
    if entry is not None and time.time() - entry[0] < _trusted(max_age):
        return entry[1]
    health = probe()
    _remember(health)
    return health


def last_known(max_age: int | None = None) -> Known:
    """For a page's first paint: the last probe, however old, marked stale when older than
    trusted (the badge then refreshes it as the page loads); a probe only when none was
    ever taken, so a page never waits for the workers' answers but that once."""
    entry = _recall()
    if entry is None:
        return Known(current(max_age), stale=False)
    taken, health = entry
    return Known(health, stale=time.time() - taken >= _trusted(max_age))


# The last sweep --------------------------------------------------------------------------


def remember_sweep(run: SweepRun) -> None:
    """Written by every sweep (one cache write); a plain dict, so a page served by an
    older or newer release still reads it."""
    try:
        cache.set(SWEEP_KEY, asdict(run), KEEP_SECONDS)
    except (redis.RedisError, OSError) as exc:  # the cache is Redis: the badge says it is down
        logger.debug("sweep duration not cached: %s", exc)


def last_sweep() -> SweepRun | None:
    try:
        known = cache.get(SWEEP_KEY)
    except (redis.RedisError, OSError):
        return None
    try:
        return SweepRun(**known) if known else None
    except TypeError:  # written by a release with other fields
        return None
