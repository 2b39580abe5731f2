"""The API instance: /api/v1/, its auth, errors, rate limit and resources."""

from __future__ import annotations

from django.conf import settings
from ninja import NinjaAPI
from ninja.throttling import AuthRateThrottle

from compute.api import (
    attached,
    computes,
    environments,
    errors,
    idle,
    job_outputs,
    jobs,
    quota,
    workspaces,
)
from compute.api.auth import AUTH
from compute.api.docs import LocalSwagger
from compute.inference import api as inference

api = NinjaAPI(
    title="Hangar API",
    version="1",
    description=(
        "Everything the pages do, for scripts, notebooks and the `hangar` CLI. Authenticate "
        "with a personal access token (`Authorization: Bearer hgr_…`, made on your profile's "
        "API tokens page) or a signed-in browser session. Lists are cursor-paginated: follow "
        "`next`. Errors are `{detail, errors}` with 401, 403, 404, 409, 422 or 429."
    ),
    auth=AUTH,
    urls_namespace="api",
    docs_url="/docs",
    docs=LocalSwagger(),
    # Per credential (a token, or a signed-in user), across all its requests.
    throttle=[AuthRateThrottle(settings.HANGAR_API_RATE)],
)
errors.install(api)
api.add_router("", workspaces.router)
api.add_router("", computes.router)
api.add_router("", jobs.router)
api.add_router("", job_outputs.router)
api.add_router("", quota.router)
api.add_router("", idle.router)
api.add_router("", attached.router)
api.add_router("", environments.router)
api.add_router("", inference.router)
