"""Thin Celery tasks: take ids and JSON-safe arguments, call a controller or action."""

from __future__ import annotations

import socket
import time

from celery import shared_task


@shared_task(name="hangar.health.ping")
def ping(sent_at: float) -> dict:
    """Round trip through the broker and a worker: proves the wiring, measures latency."""
    return {"pong": True, "worker": socket.gethostname(), "sent_at": sent_at, "at": time.time()}
