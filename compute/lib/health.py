"""Worker health for the dashboard: is Redis up, how many workers answer, queue length."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache

from config.celery import app

CACHE_KEY = "hangar:worker-health"


@dataclass(frozen=True)
class WorkerHealth:
    broker_up: bool
    workers: list[str]
    queued: int
    error: str = ""

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
    return WorkerHealth(broker_up=True, workers=workers, queued=queued)


def current(max_age: int | None = None) -> WorkerHealth:
    """The last probe if it is fresh enough: many open tabs must not flood the workers."""
    max_age = settings.HANGAR_HEALTH_CACHE_SECONDS if max_age is None else max_age
    health = cache.get(CACHE_KEY)
    if health is None:
        health = probe()
        cache.set(CACHE_KEY, health, max_age)
    return health
