from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse

from compute.lib import health
from workspace.views.htmx import render_htmx


@login_required
def worker_health(request: HttpRequest) -> HttpResponse:
    """The navigation's status badge, polled by htmx."""
    return render_htmx(request, "compute/partials/worker_health.html", {"health": health.current()})
