"""Endpoint pages: the workspace's endpoints, making one, one's page (its deployments,
keys and traffic split), adding a deployment, regenerating a key, splitting traffic."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from compute.inference import figures
from compute.inference.actions.endpoints import (
    add_deployment,
    create_endpoint,
    delete_deployment,
    endpoint_keys,
    regenerate_key,
    set_traffic,
)
from compute.inference.forms.endpoints import DeploymentForm, EndpointForm, TrafficForm
from compute.inference.models import Endpoint, KeySlot
from compute.inference.selectors import endpoints_of
from compute.inference.views.replicas import live_context
from compute.models.states import NODE_UP
from compute.views.common import add_errors
from compute.views.quota import what_if_for_form
from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view
from workspace.models import Role
from workspace.queries import KeysFirstPaginator
from workspace.views.htmx import is_partial, render_htmx

PER_PAGE = 50
# The gateway answers within the deployment's request timeout (504 past it, also while a
# replica starts from zero): the page waits that long and this much more, no longer.
TRY_MARGIN = 2.0  # seconds
TRY_SHOWN = 20_000  # bytes of an answer the page shows (and reads)


def base(access: WorkspaceAccess) -> dict[str, object]:
    return {"nav": "endpoints", "access": access, "workspace": access.workspace}


def endpoint_of(access: WorkspaceAccess, pk: int) -> Endpoint:
    endpoint = endpoints_of(access.workspace).filter(pk=pk).first()
    if endpoint is None:
        raise Http404("No such endpoint in this workspace.")
    return endpoint


@workspace_view()
def endpoint_list(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    paginator = KeysFirstPaginator(endpoints_of(access.workspace).order_by("name"), PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    # State, traffic, requests/s and p95: one query and one Redis round trip for the page.
    rows = figures.endpoint_rows(list(page.object_list))
    for endpoint in page.object_list:
        endpoint.row = rows[endpoint.pk]
    return render(request, "inference/endpoints.html", {**base(access), "page": page})


@workspace_view(Role.CONTRIBUTOR, "making endpoints")
def endpoint_create(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            made = create_endpoint(access, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Endpoint {made} made, with two keys. Add a deployment.")
            return redirect(made)
    return render(request, "inference/endpoint_form.html", {**base(access), "form": form})


@workspace_view()
def endpoint_detail(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    endpoint = endpoint_of(access, pk)
    deployments = list(
        endpoint.deployments.select_related("model", "environment", "vm_size", "compute")
        .annotate(
            replicas_up=Count("compute__nodes", filter=Q(compute__nodes__state__in=NODE_UP)),
        )
        .order_by("name")
    )
    # The chart and the replicas: re-rendered alone every few seconds (htmx polling).
    live = live_context(endpoint, deployments)
    context = {**base(access), **live, "endpoint": endpoint, "deployments": deployments}
    if not is_partial(request):
        context |= {
            "keys": endpoint_keys(access, endpoint) if access.is_contributor else None,
            "traffic_form": TrafficForm(deployments=deployments) if len(deployments) > 1 else None,
            "scoring_url": settings.HANGAR_SCORE_URL.rstrip("/") + endpoint.scoring_path,
        }
    return render_htmx(
        request, "inference/endpoint.html", context, partial="live", steady=not live["live"]
    )


@workspace_view(Role.CONTRIBUTOR, "deploying models")
def deployment_create(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    endpoint = endpoint_of(access, pk)
    form = DeploymentForm(request.POST or None, workspace=access.workspace)
    if request.method == "POST" and form.is_valid():
        try:
            made = add_deployment(access, endpoint, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            share = f"{made.traffic}% of its traffic"
            messages.success(request, f"Deployment {made.name} added, with {share}.")
            return redirect(endpoint)
    return render(
        request,
        "inference/deployment_form.html",
        {
            **base(access),
            "endpoint": endpoint,
            "form": form,
            "what_if": what_if_for_form(access.workspace, form),
        },
    )


@workspace_view(Role.CONTRIBUTOR, "regenerating endpoint keys")
@require_POST
def key_regenerate(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    endpoint = endpoint_of(access, pk)
    slot = request.POST.get("slot", "")
    try:
        regenerate_key(access, endpoint, slot)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        other = "secondary" if slot == KeySlot.PRIMARY else "primary"
        messages.success(request, f"New {slot} key made; the {other} key still works.")
    return redirect(endpoint)


@workspace_view(Role.CONTRIBUTOR, "removing deployments")
@require_POST
def deployment_delete(
    request: AuthedRequest, access: WorkspaceAccess, pk: int, deployment_id: int
) -> HttpResponse:
    endpoint = endpoint_of(access, pk)
    deployment = endpoint.deployments.filter(pk=deployment_id).first()
    if deployment is None:
        raise Http404("No such deployment of this endpoint.")
    try:
        delete_deployment(access, deployment)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Deployment {deployment.name} removed; its replicas stop.")
    return redirect(endpoint)


@workspace_view(Role.CONTRIBUTOR, "splitting endpoint traffic")
@require_POST
def traffic_split(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    endpoint = endpoint_of(access, pk)
    form = TrafficForm(request.POST, deployments=list(endpoint.deployments.order_by("name")))
    if not form.is_valid():
        messages.error(request, "Each share is a whole percent from 0 to 100.")
        return redirect(endpoint)
    try:
        set_traffic(access, endpoint, form.weights())
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, "Traffic split saved.")
    return redirect(endpoint)


@workspace_view(Role.CONTRIBUTOR, "trying endpoints")
@require_POST
def endpoint_try(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    """The "Try it" box: the JSON sent through the gateway with the endpoint's primary key,
    as a client would, and its answer shown (status, time, body)."""
    endpoint = endpoint_of(access, pk)
    body = request.POST.get("body", "")
    named = request.POST.get("deployment", "")
    result: dict[str, object]
    names = set(endpoint.deployments.values_list("name", flat=True))
    try:
        json.loads(body)
    except (ValueError, RecursionError) as exc:
        result = {"error": f"That is not JSON: {str(exc)[:200]}."}
    else:
        if named and named not in names:
            result = {"error": "Choose one of the endpoint's deployments."}
        else:
            key = endpoint_keys(access, endpoint).primary
            result = try_once(endpoint, key, body, named, try_timeout(endpoint, named))
    return render(
        request,
        "inference/endpoint.html#try-result",
        {**base(access), "endpoint": endpoint, "result": result},
    )


def try_timeout(endpoint: Endpoint, named: str) -> float:
    """How long "Try it" holds a web worker: the longest request timeout of the
    deployments the request may reach (the named one, else those taking traffic), plus a
    margin; never the minute a silent gateway would otherwise take."""
    deployments = endpoint.deployments.all()
    deployments = deployments.filter(name=named) if named else deployments.filter(traffic__gt=0)
    longest = max(deployments.values_list("request_timeout_ms", flat=True), default=5000)
    return longest / 1000 + TRY_MARGIN


def read_by(answer: Any, deadline: float) -> str:
    """At most TRY_SHOWN bytes of the answer, read until the deadline (one receive at a
    time: a body trickling in holds the worker no longer than the timeout)."""
    chunks: list[bytes] = []
    size = 0
    while size < TRY_SHOWN and time.monotonic() < deadline:
        chunk = answer.read1(TRY_SHOWN - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode(errors="replace")


def try_once(
    endpoint: Endpoint, key: str, body: str, named: str, timeout: float
) -> dict[str, object]:
    url = settings.HANGAR_SCORE_URL.rstrip("/") + endpoint.scoring_path
    outgoing = urllib.request.Request(url, data=body.encode(), method="POST")  # noqa: S310
    outgoing.add_header("Content-Type", "application/json")
    outgoing.add_header("Authorization", f"Bearer {key}")
    if named:
        outgoing.add_header("X-Hangar-Deployment", named)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(outgoing, timeout=timeout) as answer:  # noqa: S310
            status, text = answer.status, read_by(answer, started + timeout)
    except urllib.error.HTTPError as refused:
        status, text = refused.code, read_by(refused, started + timeout)
    except (OSError, ValueError) as exc:
        if isinstance(exc, TimeoutError) or "timed out" in str(exc):
            return {
                "error": f"No answer within {timeout:g} s (the deployment's request timeout "
                f"and {TRY_MARGIN:g} s more)."
            }
        return {"error": f"The gateway at {settings.HANGAR_SCORE_URL} did not answer ({exc})."}
    took = (time.monotonic() - started) * 1000
    try:
        text = json.dumps(json.loads(text), indent=2)
    except (ValueError, RecursionError):
        pass  # shown as the replica wrote it
    return {"status": status, "took_ms": round(took), "body": text[:TRY_SHOWN]}
