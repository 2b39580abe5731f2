"""Environment pages: the workspace's and the site's curated environments, making one,
and one's page with its image's build log, live while it builds."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from compute.actions.environments import (
    create_environment,
    request_build,
    set_default_environment,
)
from compute.forms.environments import EnvironmentForm
from compute.lib.buildlogs import log_tail
from compute.models import Environment, ImageState
from compute.selectors import default_environment_of, environments_for
from compute.views.common import add_errors
from workspace.access import AuthedRequest, WorkspaceAccess, workspace_view
from workspace.models import Role

PER_PAGE = 50


@workspace_view()
def environment_list(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    default = default_environment_of(access.workspace)
    shown = list(
        environments_for(access.workspace).order_by("workspace_id", "name", "-version")[
            : PER_PAGE + 1
        ]
    )
    return render(
        request,
        "compute/environments.html",
        {
            "nav": "environments",
            "access": access,
            "workspace": access.workspace,
            "curated": [e for e in shown[:PER_PAGE] if e.is_curated],
            "own": [e for e in shown[:PER_PAGE] if not e.is_curated],
            "more": len(shown) > PER_PAGE,
            "default": default,
        },
    )


@workspace_view(Role.CONTRIBUTOR, "making an environment")
def environment_create(request: AuthedRequest, access: WorkspaceAccess) -> HttpResponse:
    form = EnvironmentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            made = create_environment(access, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            state = made.image.get_state_display().lower()
            messages.success(request, f"Environment {made} made; its image is {state}.")
            return redirect("compute:environment", access.workspace.slug, made.pk)
    return render(
        request,
        "compute/environment_form.html",
        {"nav": "environments", "access": access, "workspace": access.workspace, "form": form},
    )


def visible_environment(access: WorkspaceAccess, pk: int) -> Environment:
    environment = environments_for(access.workspace).filter(pk=pk).first()
    if environment is None:
        raise Http404("No such environment in this workspace.")
    return environment


@workspace_view()
def environment_detail(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    environment = visible_environment(access, pk)
    image = environment.image
    log = log_tail(image.spec_hash)
    context = {
        "nav": "environments",
        "access": access,
        "workspace": access.workspace,
        "environment": environment,
        "image": image,
        "log": log,
        "building": image.state in (ImageState.QUEUED, ImageState.BUILDING),
        "build_seconds": (image.finished_at - image.started_at).total_seconds()
        if image.finished_at and image.started_at
        else None,
        "is_default": default_environment_of(access.workspace) == environment,
        "versions": environments_for(access.workspace)
        .filter(workspace=environment.workspace, name=environment.name)
        .order_by("-version")[:20],
    }
    if request.htmx:
        return render(request, "compute/environment.html#live", context)
    return render(request, "compute/environment.html", context)


@workspace_view(Role.CONTRIBUTOR, "building an environment")
@require_POST
def environment_build(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    environment = visible_environment(access, pk)
    if request_build(access, environment):
        messages.success(request, f"Building {environment}: the log follows below.")
    else:
        messages.info(request, f"{environment}'s image is already {environment.image.state}.")
    return redirect("compute:environment", access.workspace.slug, pk)


@workspace_view(Role.ADMIN, "choosing the workspace's default environment")
@require_POST
def environment_default(request: AuthedRequest, access: WorkspaceAccess, pk: int) -> HttpResponse:
    """Make this environment the one new computes start with, or (`clear`) go back to the
    site's node image."""
    environment = visible_environment(access, pk)
    if request.POST.get("clear"):
        set_default_environment(access, None)
        messages.success(request, "New computes start with the site's node image again.")
    else:
        set_default_environment(access, environment)
        messages.success(
            request, f"New computes of {access.workspace.name} start with {environment}."
        )
    return redirect("compute:environment", access.workspace.slug, pk)
