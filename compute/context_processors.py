from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def host_processes(request: HttpRequest) -> dict:
    """Every page says so while nodes are unisolated processes on Hangar's host."""
    return {"host_process_driver": settings.HANGAR_DRIVER == "local"}
