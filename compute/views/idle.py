"""Idle shutdown pages: keep running, the activity endpoint and its token, idle settings,
schedules, and the workspace's "what is burning" overview."""

from __future__ import annotations

import json

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from compute.actions import idle as idle_actions
from compute.forms.computes import IdleSettingsForm, ScheduleForm
from compute.lib import throttle
from compute.models import Compute, ComputeKind, ComputeState
from compute.models.idle import record_activity
from compute.rules import idle
from compute.selectors import burning as burning_instances
from compute.selectors import instance_of
from compute.views.common import add_errors, back
from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view
from workspace.models import Role

BURNING_PAGE_SIZE = 25


def instance_or_404(access: WorkspaceAccess, pk: int) -> Compute:
    compute = instance_of(access, pk)
    if compute is None:
        raise Http404("No such instance here.")
    return compute


@workspace_view(Role.CONTRIBUTOR, "keeping an instance running")
def keep_running(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    """GET (an email link) asks for one click; POST (that click, or the bell) does it."""
    compute = instance_or_404(access, pk)
    kind = "schedule" if request.GET.get("kind") == "schedule" else "idle"
    if request.method != "POST":
        return render(
            request,
            "compute/keep_running.html",
            {"access": access, "workspace": access.workspace, "compute": compute, "kind": kind},
        )
    try:
        until = idle_actions.keep_running(access, compute.pk, kind)
        messages.success(request, f"{compute.name} keeps running; next stop at {until:%H:%M} UTC.")
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    return back(request, compute)


@workspace_view(Role.CONTRIBUTOR, "changing idle shutdown")
def idle_settings(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    compute = instance_or_404(access, pk)
    form = IdleSettingsForm(
        request.POST or None,
        workspace=access.workspace,
        initial={"idle_shutdown_minutes": compute.idle_shutdown_minutes},
    )
    if request.method == "POST" and form.is_valid():
        try:
            idle_actions.set_idle_minutes(
                access, compute.pk, form.cleaned_data["idle_shutdown_minutes"]
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, "Idle shutdown saved.")
            return redirect(compute)
    return idle_page(request, access, compute, idle_form=form)


def idle_page(
    request: AuthedRequest,
    access: WorkspaceAccess,
    compute: Compute,
    idle_form: IdleSettingsForm | None = None,
    schedule_form: ScheduleForm | None = None,
) -> HttpResponse:
    """The idle-shutdown and schedules page, with whichever of its two forms was posted."""
    return render(
        request,
        "compute/idle_settings.html",
        {
            "nav": "compute",
            "access": access,
            "workspace": access.workspace,
            "compute": compute,
            "form": idle_form
            or IdleSettingsForm(
                workspace=access.workspace,
                initial={"idle_shutdown_minutes": compute.idle_shutdown_minutes},
            ),
            "schedule_form": schedule_form
            or ScheduleForm(initial={"timezone": settings.TIME_ZONE}),
            "schedules": schedules_with_runs(compute),
        },
    )


def schedules_with_runs(compute: Compute) -> list[tuple]:
    now = timezone.now()
    return [
        (schedule, idle.occurrences(schedule.cron, schedule.timezone, now, 3))
        for schedule in compute.schedules.all()
    ]


@workspace_view(Role.CONTRIBUTOR, "scheduling")
@require_POST
def schedule_add(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    compute = instance_or_404(access, pk)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        try:
            idle_actions.add_schedule(
                access,
                compute.pk,
                action=form.cleaned_data["action"],
                cron=form.cleaned_data["expression"],
                tz=form.cleaned_data["timezone"].strip(),
            )
            messages.success(request, "Schedule added.")
            return redirect("compute:idle", access.workspace.slug, compute.pk)
        except ValidationError as error:
            add_errors(form, error)
    return idle_page(request, access, compute, schedule_form=form)


@workspace_view(Role.CONTRIBUTOR, "scheduling")
@require_POST
def schedule_delete(
    request: AuthedRequest, access: WorkspaceAccess, pk: int, schedule_id: int
) -> HttpResponse:
    compute = instance_or_404(access, pk)
    try:
        idle_actions.delete_schedule(access, compute.pk, schedule_id)
        messages.success(request, "Schedule removed.")
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    return redirect("compute:idle", access.workspace.slug, compute.pk)


@workspace_view(Role.CONTRIBUTOR, "managing activity tokens")
@require_POST
def token_rotate(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    compute = instance_or_404(access, pk)
    token = idle_actions.rotate_token(access, compute.pk)
    endpoint = request.build_absolute_uri(f"/api/instances/{compute.pk}/activity/")
    response = render(
        request,
        "compute/token.html",
        {
            "access": access,
            "workspace": access.workspace,
            "compute": compute,
            "token": token,
            "endpoint": endpoint,
        },
    )
    response["Cache-Control"] = "no-store"  # shown once: never from a cache
    return response


def too_many(retry_after: int, what: str) -> JsonResponse:
    response = JsonResponse({"error": f"too many {what}; try again later"}, status=429)
    response["Retry-After"] = str(retry_after)
    return response


@csrf_exempt
@require_POST
def activity_endpoint(request: HttpRequest, pk: int) -> JsonResponse:
    """A kernel, IDE or script on the node says "still busy", with the instance's token.

    Failed calls are limited per client address and per instance, in the shared cache so
    the limit holds across web processes. A failure slot is taken *before* the lookup and
    given back on success: a client past the limit gets 429 without its token being
    looked at, so a flood learns nothing, not even from timing."""
    failures = settings.HANGAR_ACTIVITY_FAILURES_PER_MINUTE
    # The same address axes throttles sign-ins by: REMOTE_ADDR, no forwarded header trusted.
    address = get_client_ip_address(request) or "unknown"
    by_address = throttle.window(f"activity-failed:address:{address}")
    if throttle.take(by_address) > failures:
        return too_many(by_address.retry_after, "failed calls from this address")
    by_instance = throttle.window(f"activity-failed:instance:{pk}")
    if throttle.take(by_instance) > failures:
        throttle.refund(by_address)  # refused unchecked: not this address's failure
        return too_many(by_instance.retry_after, "failed calls for this instance")
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    compute = (
        Compute.objects.select_related("workspace").filter(pk=pk, kind=ComputeKind.INSTANCE).first()
    )
    if compute is None or not token or not idle.token_matches(compute, token):
        return JsonResponse({"error": "unknown instance or wrong token"}, status=401)
    throttle.refund(by_address)
    throttle.refund(by_instance)
    accepted = throttle.window(f"activity-accepted:{pk}")
    if throttle.take(accepted) > settings.HANGAR_ACTIVITY_RATE_PER_MINUTE:
        return too_many(accepted.retry_after, "calls")
    if compute.state != ComputeState.RUNNING:
        return JsonResponse({"error": f"{compute.name} is {compute.state}"}, status=409)
    try:
        source = json.loads(request.body or b"{}").get("source", "")
    except (ValueError, AttributeError):
        source = ""
    what = f"activity from {str(source)[:60]}" if source else "activity reported from the node"
    record_activity(compute.pk, what)
    compute.refresh_from_db()
    deadline = compute.idle_deadline.isoformat() if compute.idle_deadline else None
    return JsonResponse({"ok": True, "idle_deadline": deadline})


@workspace_view()
def burning(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    """Running instances, most idle first, with today's cost and the idle waste ahead."""
    rows = burning_instances(access.workspace, timezone.now())
    # The totals are every running instance's; the table shows a page of them.
    page = Paginator(rows, BURNING_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "compute/burning.html",
        {
            "nav": "compute",
            "access": access,
            "workspace": access.workspace,
            "page": page,
            "total_today": sum(r.cost_today for r in rows),
            "total_waste": sum(r.waste for r in rows),
        },
    )
