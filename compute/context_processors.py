from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from compute.lib import health


def host_processes(request: HttpRequest) -> dict:
    """Every page says so while nodes are unisolated processes on Hangar's host."""
    return {"host_process_driver": settings.HANGAR_DRIVER == "local"}


def worker_health(request: HttpRequest) -> dict:
    """The navigation's workers badge in its real state on first paint (base.html): the last
    probe, read only when a template shows the badge (a fragment never does)."""
    return {"worker_badge": SimpleLazyObject(health.last_known)}
