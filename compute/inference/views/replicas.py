"""The endpoint page's live part (its last hour as charts, its replicas with their logs)
and a replica's log page."""

from __future__ import annotations

from collections.abc import Sequence

from django.http import Http404, HttpResponse

from compute.inference import figures
from compute.inference.actions.replicas import LOG_BYTES, replica_log
from compute.inference.models import Deployment, Endpoint
from compute.lib import serving_load
from compute.models import Node
from compute.views.charts import LineChart, line_chart
from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view
from workspace.views.htmx import render_htmx

POLL_SECONDS = 10  # the series' step: a new point at most this often


def hour_charts(hour: figures.Hour) -> list[LineChart]:
    ceiling = float(serving_load.BUCKETS_MS[-1])
    span = (hour.start, hour.end)
    return [
        line_chart(
            "Requests per second",
            [("requests/s", "chart-rps", "", hour.per_second)],
            *span,
        ),
        line_chart(
            "Latency",
            [
                ("p50", "chart-p50", "", hour.p50),
                ("p95", "chart-p95", "6 4", hour.p95),
            ],
            *span,
            unit=" ms",
            ceiling=ceiling,
        ),
        line_chart("Replicas", [("replicas up", "chart-replicas", "", hour.replicas)], *span),
    ]


def live_context(endpoint: Endpoint, deployments: Sequence[Deployment]) -> dict[str, object]:
    """The part of the endpoint page that htmx re-renders every POLL_SECONDS."""
    serving = [d for d in deployments if d.compute_id is not None]
    hour = figures.endpoint_hour(serving)
    by_compute = {d.compute_id: d for d in serving}
    nodes = Node.objects.filter(compute_id__in=list(by_compute), ended_at=None).order_by(
        "compute_id", "index"
    )
    replicas = [(by_compute[node.compute_id], node) for node in nodes]
    return {
        "hour": hour,
        "charts": [] if hour.empty else hour_charts(hour),
        "replicas": replicas,
        "live": bool(serving),
        "poll_seconds": POLL_SECONDS,
    }


@workspace_view()
def replica_log_page(
    request: AuthedRequest, access: WorkspaceAccess, pk: int, node_id: int
) -> HttpResponse:
    from compute.inference.views.endpoints import base, endpoint_of

    endpoint = endpoint_of(access, pk)
    node = (
        Node.objects.filter(pk=node_id, compute__deployment__endpoint=endpoint)
        .select_related("compute__deployment")
        .first()
    )
    if node is None:
        raise Http404("No such replica of this endpoint.")
    context = {
        **base(access),
        "endpoint": endpoint,
        "deployment": node.compute.deployment,
        "node": node,
        "log": replica_log(node),
        "log_kib": LOG_BYTES // 1024,
    }
    return render_htmx(request, "inference/replica_log.html", context, partial="log")
