"""GET /metrics: the site's figures in Prometheus' text format (compute/metrics.py).

Off (404, as any unknown address) unless HANGAR_METRICS_TOKEN is set; then only for
`Authorization: Bearer <that token>` (401 otherwise). Never behind the session login: a
scraper has no session, and a signed-in member's session does not stand in for the token.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from compute import metrics as site_metrics


def token_matches(request: HttpRequest, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    # Constant time over the token's bytes: the answer says nothing of how much matched.
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.HANGAR_METRICS_TOKEN
    if not token:
        raise Http404
    if not token_matches(request, token):
        response = HttpResponse(
            "metrics need Authorization: Bearer <HANGAR_METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if request.method not in ("GET", "HEAD"):  # after the token: off, it is not there at all
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return HttpResponse(
        generate_latest(site_metrics.registry), content_type=CONTENT_TYPE_PLAIN_0_0_4
    )
