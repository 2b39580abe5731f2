from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from compute.lib import health


@login_required
def worker_health(request: HttpRequest) -> HttpResponse:
    """The navigation's status badge, polled by htmx."""
    return render(request, "compute/partials/worker_health.html", {"health": health.current()})
